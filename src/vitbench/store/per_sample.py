"""Per-sample outcome of one evaluated cell, stored compactly next to its record.

Paired comparisons (:mod:`vitbench.report.compare`) need, for two cells evaluated on the same images,
which samples each got right and what each predicted. The harness keeps both per cell, keyed by
sample id: ids as little-endian int64, correctness as a packed bit array (``numpy.packbits``,
1 bit per sample) and predicted classes as little-endian int32, the two integer arrays
zlib-compressed. 1,000 samples take about 1.5 kB; ImageNet val (50,000) about 100 kB.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from vitbench.core.errors import VitbenchError


@dataclass(frozen=True)
class PerSample:
    """Which samples one cell got right, and what it predicted, sorted by sample id.

    Attributes:
        sample_ids: [N] int64 sample ids, strictly increasing.
        correct: [N] bool, top-1 prediction equals the label.
        pred: [N] int64 predicted class (argmax of the logits).
    """

    sample_ids: np.ndarray
    correct: np.ndarray
    pred: np.ndarray

    def __post_init__(self) -> None:
        n = self.sample_ids.shape[0]
        if self.sample_ids.ndim != 1 or self.correct.shape != (n,) or self.pred.shape != (n,):
            raise VitbenchError(
                f"per-sample arrays must be [N] each, got ids {self.sample_ids.shape}, "
                f"correct {self.correct.shape}, pred {self.pred.shape}"
            )
        if n > 1 and not bool(np.all(np.diff(self.sample_ids) > 0)):
            raise VitbenchError("per-sample ids must be strictly increasing; sort them by sample id")

    @classmethod
    def from_logits(cls, logits: object, labels: object, sample_ids: object) -> PerSample:
        """Build from logits [N, K], labels [N] and sample ids [N] (tensors or arrays, any order)."""
        lg = np.asarray(_numpy(logits))
        y = np.asarray(_numpy(labels)).astype(np.int64).reshape(-1)
        ids = np.asarray(_numpy(sample_ids)).astype(np.int64).reshape(-1)
        pred = lg.argmax(axis=1).astype(np.int64)
        order = np.argsort(ids, kind="stable")
        return cls(ids[order], (pred == y)[order], pred[order])

    def encode(self) -> tuple[bytes, bytes, bytes]:
        """``(sample_ids, correct, pred)`` blobs for the store."""
        return (
            zlib.compress(np.ascontiguousarray(self.sample_ids, dtype="<i8").tobytes()),
            np.packbits(self.correct.astype(bool)).tobytes(),
            zlib.compress(np.ascontiguousarray(self.pred, dtype="<i4").tobytes()),
        )

    @classmethod
    def decode(cls, n: int, ids_blob: bytes, correct_blob: bytes, pred_blob: bytes) -> PerSample:
        """Inverse of :meth:`encode` for ``n`` samples."""
        ids = np.frombuffer(zlib.decompress(ids_blob), dtype="<i8").astype(np.int64)
        correct = np.unpackbits(np.frombuffer(correct_blob, dtype=np.uint8), count=n).astype(bool)
        pred = np.frombuffer(zlib.decompress(pred_blob), dtype="<i4").astype(np.int64)
        return cls(ids, correct, pred)


def _numpy(x: object) -> object:
    """A torch tensor as a CPU numpy array; anything else unchanged."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()  # type: ignore[attr-defined]
    return x
