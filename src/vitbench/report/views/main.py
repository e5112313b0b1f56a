"""``leaderboard --view main``: the main leaderboard (clean, scored selection)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd

#: The heading of its table in the ``all`` view and of its section in the HTML report.
TITLE = "Leaderboard (clean, scored selection)"


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.tables.leaderboard`: Top-1, ΔTop-1 vs dense and costs per configuration."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.tables import leaderboard

    return leaderboard(df, fmt=opts.fmt, model=opts.model)


def report(df: pd.DataFrame, ctx: Any) -> None:
    """Report section: the table and the accuracy-vs-GMACs figure."""
    # deferred: tables bring pandas and matplotlib
    from vitbench.report.tables import leaderboard, pareto_figure

    ctx.section(
        TITLE,
        ctx.table("Top-1, ΔTop-1 vs dense and costs", leaderboard),
        ctx.image("pareto", pareto_figure, "accuracy vs GMACs"),
    )


VIEW = View(
    name="main",
    command="leaderboard",
    help="Top-1, ΔTop-1 vs dense, GMACs and params per configuration (clean, scored)",
    render=render,
    order=10,
    title=TITLE,
    report=report,
    aliases=("paper",),
)
