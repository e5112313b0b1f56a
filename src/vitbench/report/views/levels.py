"""``robustness --view levels``: top-1 per level of one swept noise (e.g. Gaussian σ)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.robust.level_table` of ``--noise``."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.robust import level_table

    return level_table(df, opts.noise, fmt=opts.fmt, model=opts.model, selection=opts.selection)


def plot(df: pd.DataFrame, opts: ViewOptions) -> Figure:
    """Top-1 vs level of ``--noise``."""
    # deferred: plots bring matplotlib
    from vitbench.report.robust import level_figure

    return level_figure(df, opts.noise, opts.model, selection=opts.selection)


def report(df: pd.DataFrame, ctx: Any) -> None:
    """One report section per continuous noise of the records."""
    # deferred: tables bring pandas and matplotlib; the noise registry numpy
    from vitbench.data.noise import NOISES
    from vitbench.report.robust import level_figure, level_table

    noises = set(ctx.ok["noise"])
    for noise in sorted(n for n in noises if n in NOISES and NOISES.get(n).levels == "continuous"):
        ctx.section(
            f"Accuracy vs {noise} level",
            ctx.table(f"Top-1 per {noise} level", level_table, noise=noise),
            ctx.image(f"levels_{noise}", level_figure, f"accuracy vs {noise}", noise=noise),
        )


VIEW = View(
    name="levels",
    command="robustness",
    help="Top-1 per level of --noise (level 0 = clean)",
    render=render,
    order=140,
    plot=plot,
    report=report,
)
