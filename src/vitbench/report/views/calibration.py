"""``robustness --view calibration``: channel pruning calibrated on clean vs noisy images."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.calibration.calibration_tables` (markdown, one table per test condition)."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.calibration import calibration_tables

    return calibration_tables(df)


def plot(df: pd.DataFrame, opts: ViewOptions) -> Figure:
    """Top-1 vs keep ratio per calibration condition."""
    # deferred: plots bring matplotlib
    from vitbench.report.calibration import calibration_figure

    return calibration_figure(df)


VIEW = View(
    name="calibration",
    command="robustness",
    help="channel methods calibrated on clean vs noisy images (markdown only)",
    render=render,
    formats=("markdown", "github"),
    order=160,
    plot=plot,
)
