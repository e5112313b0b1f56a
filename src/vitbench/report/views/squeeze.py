"""``leaderboard --view squeeze``: pruning with squeezing (TPS) vs the same pruning without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.tables.squeeze_table`."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.tables import squeeze_table

    return squeeze_table(df, fmt=opts.fmt, model=opts.model)


VIEW = View(
    name="squeeze",
    command="leaderboard",
    help="token squeezing (eTPS/dTPS) vs the same pruning without it, same keep ratio",
    render=render,
    order=50,
)
