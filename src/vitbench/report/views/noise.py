"""``leaderboard --view noise``: top-1 under every recorded noise condition."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.tables.noise_table`."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.tables import noise_table

    return noise_table(df, fmt=opts.fmt, model=opts.model)


def has_noise(ok: pd.DataFrame) -> bool:
    """Whether any successful row was measured on noisy images."""
    return bool((ok["noise"] != "clean").any())


VIEW = View(
    name="noise",
    command="leaderboard",
    help="Top-1 per noise condition, one column per noise@level (scored selection)",
    render=render,
    order=40,
    title="Robustness under noise (Top-1, scored selection)",
    in_all=has_noise,
)
