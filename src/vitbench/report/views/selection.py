"""``leaderboard --view selection``: scored vs random token selection per keep ratio."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.tables.selection_table`."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.tables import selection_table

    return selection_table(df, fmt=opts.fmt, model=opts.model)


def has_random(ok: pd.DataFrame) -> bool:
    """Whether any successful row used random selection."""
    return bool((ok["selection"] == "random").any())


VIEW = View(
    name="selection",
    command="leaderboard",
    help="Top-1 with scored and random token selection per method and keep ratio (clean)",
    render=render,
    order=30,
    title="Token selection: scored vs random (clean)",
    in_all=has_random,
)
