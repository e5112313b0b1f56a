"""``leaderboard --view matched``: top-1 of each method at common GMACs budgets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd

#: The heading of its table in the ``all`` view and of its section in the HTML report.
TITLE = "Accuracy at matched GMACs (clean, scored selection)"


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.tables.matched_gmacs_table` (ties marked with per-sample outcomes).

    At most :data:`vitbench.report.tables.MAX_GRID_POINTS` budgets (the caption says when some
    were left out), every measured one with ``opts.all_budgets``.
    """
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.tables import MAX_GRID_POINTS, matched_gmacs_table

    most = None if opts.all_budgets else MAX_GRID_POINTS
    return matched_gmacs_table(
        df, fmt=opts.fmt, model=opts.model, samples=opts.load_samples(), max_budgets=most
    )


def report(df: pd.DataFrame, ctx: Any) -> None:
    """Report section: the matched-GMACs table."""
    # deferred: tables bring pandas
    from vitbench.report.tables import matched_gmacs_table

    ctx.section(
        TITLE,
        ctx.table("Top-1 interpolated at common GMACs budgets", matched_gmacs_table, samples=ctx.samples),
    )


VIEW = View(
    name="matched",
    command="leaderboard",
    help="Top-1 of each method at common GMACs budgets (ties: paired bootstrap)",
    render=render,
    order=20,
    title=TITLE,
    report=report,
)
