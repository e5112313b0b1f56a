"""``robustness --view corruptions``: one column per corruption (CE, or the error at one severity)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitbench.report.views import View, ViewOptions
from vitbench.report.views.mce import corrupted

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

SEVERITIES = (1, 2, 3, 4, 5)


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.robust.corruption_table` (``--severity`` picks one severity)."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.robust import corruption_table

    return corruption_table(
        df,
        fmt=opts.fmt,
        severity=opts.severity,
        model=opts.model,
        selection=opts.selection,
        reference=opts.reference,
    )


def plot(df: pd.DataFrame, opts: ViewOptions) -> Figure:
    """The heatmap of the same numbers as the table (one severity's error, or CE)."""
    # deferred: plots bring matplotlib
    from vitbench.report.robust import heatmap_figure

    return heatmap_figure(
        df,
        opts.model,
        selection=opts.selection,
        reference=opts.reference,
        severity=opts.severity,
        split="all",
    )


def report(df: pd.DataFrame, ctx: Any) -> None:
    """Report section: CE per corruption, its heatmap, and the error at each severity."""
    # deferred: tables bring pandas and matplotlib
    from vitbench.report.robust import corruption_table, heatmap_figure

    if corrupted(ctx.ok):
        ctx.section(
            "Corruption error per corruption",
            ctx.table("CE per corruption (summed over severities)", corruption_table),
            ctx.image("ce_heatmap", heatmap_figure, "CE heatmap", split="all"),
            *[ctx.table(f"Top-1 error at severity {s}", corruption_table, severity=s) for s in SEVERITIES],
        )


VIEW = View(
    name="corruptions",
    command="robustness",
    help="one column per corruption: CE, or the top-1 error at --severity",
    render=render,
    order=130,
    plot=plot,
    report=report,
)
