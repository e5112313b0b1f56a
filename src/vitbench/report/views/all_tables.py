"""``leaderboard --view all``: every table of the ``all`` view in one document."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.tables.render_all` of the frame."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.tables import render_all

    return render_all(df, fmt=opts.fmt, samples=opts.load_samples())


VIEW = View(
    name="all",
    command="leaderboard",
    help="every table below that has rows, one after another (the default)",
    render=render,
    order=0,
)
