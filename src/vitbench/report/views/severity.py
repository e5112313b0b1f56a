"""``robustness --view severity``: top-1 per corruption severity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitbench.report.views import View, ViewOptions
from vitbench.report.views.mce import corrupted

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.robust.severity_table`."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.robust import severity_table

    return severity_table(df, fmt=opts.fmt, model=opts.model, selection=opts.selection)


def plot(df: pd.DataFrame, opts: ViewOptions) -> Figure:
    """Top-1 vs severity per corruption family."""
    # deferred: plots bring matplotlib
    from vitbench.report.robust import severity_figure

    return severity_figure(df, opts.model, selection=opts.selection)


def report(df: pd.DataFrame, ctx: Any) -> None:
    """Report section: the severity table and its figure."""
    # deferred: tables bring pandas and matplotlib
    from vitbench.report.robust import severity_figure, severity_table

    if corrupted(ctx.ok):
        ctx.section(
            "Accuracy vs severity",
            ctx.table("Top-1 per severity", severity_table),  # the caption says what it averages
            ctx.image("severity", severity_figure, "accuracy vs severity per family"),
        )


VIEW = View(
    name="severity",
    command="robustness",
    help="Top-1 at each severity, mean over the test corruptions",
    render=render,
    order=120,
    plot=plot,
    report=report,
)
