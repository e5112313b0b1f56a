"""Paired statistics of two cells on the same images.

The bootstrap CI of the top-1 difference and the exact McNemar test, from per-sample outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vitbench.core.errors import VitbenchError
from vitbench.store.per_sample import PerSample

N_BOOTSTRAP = 2000


class NotPairedError(VitbenchError):
    """Two cells were evaluated on different image sets and cannot be paired."""


@dataclass(frozen=True)
class Outcome:
    """Per-image outcome of one configuration (mean over its seeds), sorted by sample id.

    Attributes:
        sample_ids_hash: the records' sample-ids hash (identifies the image set).
        sample_ids: [N] int64 sample ids.
        correct: [N] float64 fraction of seeds right on each image (0/1 with one seed).
        pred: [N] int64 predictions of the first seed (agreement uses them).
        n_seeds: seeds averaged.
    """

    sample_ids_hash: str
    sample_ids: np.ndarray
    correct: np.ndarray
    pred: np.ndarray
    n_seeds: int

    @property
    def top1(self) -> float:
        """Top-1 in percent."""
        return float(self.correct.mean() * 100.0)


def outcome(samples: Sequence[PerSample], sample_ids_hash: str) -> Outcome:
    """Average the per-sample outcomes of one configuration's seeds (same images) per image.

    Raises:
        VitbenchError: no per-sample data, or the seeds' sample ids differ.
    """
    if not samples:
        raise VitbenchError(
            "no per-sample outcomes stored for this configuration; re-run it with this vitbench "
            "version (stores written before per-sample data can only be compared unpaired)"
        )
    ids = samples[0].sample_ids
    for s in samples[1:]:
        if not np.array_equal(s.sample_ids, ids):
            raise VitbenchError("seeds of one configuration were evaluated on different sample ids")
    correct = np.mean([s.correct.astype(np.float64) for s in samples], axis=0)
    return Outcome(sample_ids_hash, ids, correct, samples[0].pred, len(samples))


def check_paired(a: Outcome, b: Outcome, names: tuple[str, str] = ("method", "reference")) -> None:
    """Raise :class:`NotPairedError` unless ``a`` and ``b`` cover the same images."""
    if a.sample_ids_hash != b.sample_ids_hash or not np.array_equal(a.sample_ids, b.sample_ids):
        raise NotPairedError(
            f"{names[0]} (images {a.sample_ids_hash or '?'}) and {names[1]} (images "
            f"{b.sample_ids_hash or '?'}) were evaluated on different image sets; they cannot be paired"
        )


def paired_bootstrap_ci(
    diff: np.ndarray, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-image differences, in percentage points.

    Args:
        diff: [N] per-image difference of correctness (method − reference), values in [-1, 1].
        n_bootstrap: resamples.
        seed: seed of the numpy Generator.
        level: two-sided coverage.

    Returns:
        ``(low, high)`` in percentage points.
    """
    values = np.asarray(diff, dtype=np.float64).reshape(-1)
    n = values.shape[0]
    if n == 0:
        raise VitbenchError("cannot bootstrap an empty comparison; evaluate at least one image")
    rng = np.random.default_rng(seed)
    rows = max(1, (1 << 22) // n)
    means = np.empty(n_bootstrap, dtype=np.float64)
    for start in range(0, n_bootstrap, rows):
        stop = min(n_bootstrap, start + rows)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low) * 100.0, float(high) * 100.0


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> float:
    """Exact two-sided McNemar p-value: binomial test of the discordant pairs at p = 0.5.

    Args:
        a_correct: [N] 0/1 correctness of one classifier.
        b_correct: [N] 0/1 correctness of the other on the same images.

    Returns:
        The p-value (1.0 when there is no discordant pair).
    """
    from scipy.stats import binomtest

    a = np.asarray(a_correct).astype(bool)
    b = np.asarray(b_correct).astype(bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class Comparison:
    """One method against a reference on the same images (percent / percentage points)."""

    top1: float
    ref_top1: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    agreement: float
    n_images: int

    @property
    def tied(self) -> bool:
        """The paired 95 % CI of Δ contains 0 (no significant difference)."""
        return self.ci_low <= 0.0 <= self.ci_high


def compare(
    a: Outcome, b: Outcome, seed: int = 0, names: tuple[str, str] = ("method", "reference")
) -> Comparison:
    """Compare ``a`` (method) with ``b`` (reference) image by image.

    Raises:
        NotPairedError: different image sets.
    """
    check_paired(a, b, names)
    lo, hi = paired_bootstrap_ci(a.correct - b.correct, seed=seed)
    single = a.n_seeds == 1 and b.n_seeds == 1
    return Comparison(
        top1=a.top1,
        ref_top1=b.top1,
        delta=a.top1 - b.top1,
        ci_low=lo,
        ci_high=hi,
        p_value=mcnemar_exact(a.correct, b.correct) if single else math.nan,
        agreement=float((a.pred == b.pred).mean() * 100.0),
        n_images=int(a.sample_ids.shape[0]),
    )


def unpaired_halfwidth(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Half-width of the unpaired combination of two per-cell CIs: ``sqrt(h_a² + h_b²)``."""
    ha, hb = (a[1] - a[0]) / 2.0, (b[1] - b[0]) / 2.0
    return math.sqrt(ha * ha + hb * hb)


def outcomes_of(rows: pd.DataFrame, samples: Mapping[str, PerSample]) -> Outcome | None:
    """The :class:`Outcome` of the records ``rows`` (one configuration's seeds), or ``None``."""
    got = [samples[k] for k in rows["cell_key"] if k in samples] if "cell_key" in rows else []
    if not got or len(got) != len(rows):
        return None
    return outcome(got, str(rows["sample_ids_hash"].iloc[0]))
