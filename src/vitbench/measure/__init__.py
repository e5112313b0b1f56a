"""Measurements: accuracy metrics, GMACs (papers' convention), parameters, throughput."""

from __future__ import annotations

from vitbench.measure.accuracy import (
    bootstrap_ci_pct,
    classification_metrics,
    expected_calibration_error_pct,
)
from vitbench.measure.gmacs import (
    COUNTER_VERSION,
    GmacsCounterError,
    MacsReport,
    count_gmacs,
    count_macs,
    count_macs_report,
    gmacs_by_op,
    macs_by_kind,
    op_kind,
    self_check,
    vit_block_macs,
    vit_dims,
    vit_schedule_macs,
)
from vitbench.measure.params import count_params_m
from vitbench.measure.throughput import ThroughputResult, measure_throughput

__all__ = [
    "COUNTER_VERSION",
    "GmacsCounterError",
    "MacsReport",
    "ThroughputResult",
    "bootstrap_ci_pct",
    "classification_metrics",
    "count_gmacs",
    "count_macs",
    "count_macs_report",
    "count_params_m",
    "expected_calibration_error_pct",
    "gmacs_by_op",
    "macs_by_kind",
    "measure_throughput",
    "op_kind",
    "self_check",
    "vit_block_macs",
    "vit_dims",
    "vit_schedule_macs",
]
