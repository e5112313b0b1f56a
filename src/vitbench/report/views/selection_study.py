"""``robustness --view selection``: the random-selection study, Δ = scored − random per method."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.robust.selection_summary_table`."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.robust import selection_summary_table

    return selection_summary_table(df, fmt=opts.fmt, model=opts.model)


def plot(df: pd.DataFrame, opts: ViewOptions) -> Figure:
    """Top-1 vs keep ratio, scored and random selection."""
    # deferred: plots bring matplotlib
    from vitbench.report.robust import selection_figure

    return selection_figure(df, opts.model)


def report(df: pd.DataFrame, ctx: Any) -> None:
    """Report section: Δ per keep ratio, both top-1s, and the figure."""
    # deferred: tables bring pandas and matplotlib
    from vitbench.report.robust import selection_figure, selection_summary_table
    from vitbench.report.tables import selection_table

    if (ctx.ok["selection"] == "random").any():
        ctx.section(
            "Random token selection (Δ = scored − random)",
            ctx.table("Δ per keep ratio", selection_summary_table),
            ctx.table("Top-1 scored and random per keep ratio", selection_table),
            ctx.image("selection", selection_figure, "scored vs random selection"),
        )


VIEW = View(
    name="selection",
    command="robustness",
    help="Δ top-1 = scored − random selection per method and keep ratio",
    render=render,
    order=150,
    plot=plot,
    report=report,
)
