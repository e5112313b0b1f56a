"""``leaderboard --view compare``: paired ΔTop-1 of every configuration vs dense."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.compare.compare_table` on the store's per-sample outcomes."""
    # deferred: the comparison brings pandas and scipy
    from vitbench.report.compare import compare_table

    return compare_table(df, opts.load_samples(), fmt=opts.fmt, model=opts.model)


def report(df: pd.DataFrame, ctx: Any) -> None:
    """Report section (with per-sample outcomes only): the paired comparison."""
    # deferred: the comparison brings pandas and scipy
    from vitbench.report.compare import compare_table

    if ctx.samples:
        ctx.section(
            "Paired comparison with dense (clean, scored selection)",
            ctx.table(
                "ΔTop-1 vs dense on the same images", lambda d, **kw: compare_table(d, ctx.samples, **kw)
            ),
        )


VIEW = View(
    name="compare",
    command="leaderboard",
    help="paired ΔTop-1 vs dense on the same images, McNemar p (see `vitbench compare`)",
    render=render,
    order=25,
    report=report,
)
