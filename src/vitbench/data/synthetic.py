"""Seeded random images for cost-only runs (GMACs, params, throughput) of ImageNet-sized models."""

from __future__ import annotations

import numpy as np

from vitbench.data.base import DATASETS, ImageSet

SYNTHETIC_SEED = 0
SYNTHETIC_SIZE = 224
SYNTHETIC_CLASSES = 1000
SYNTHETIC_DEFAULT_N = 32


@DATASETS.register(
    "synthetic",
    num_classes=SYNTHETIC_CLASSES,
    splits=(),
    needs_root=False,
    description="seeded uniform-noise 224x224 images with random labels (1000 classes); costs only",
)
def load_synthetic(root: str | None, split: str, limit: int | None) -> ImageSet:
    """``limit`` (default 32) noise images uint8 ``[N, 224, 224, 3]`` and labels in 0..999.

    For paper-table suites run offline with random weights: every cell gets real GMACs, params
    and throughput; its accuracy is meaningless by construction and the paper table hides it.
    """
    n = SYNTHETIC_DEFAULT_N if limit is None else limit
    rng = np.random.default_rng([SYNTHETIC_SEED, sum(map(ord, split))])
    images = rng.integers(0, 256, size=(n, SYNTHETIC_SIZE, SYNTHETIC_SIZE, 3), dtype=np.uint8)
    labels = rng.integers(0, SYNTHETIC_CLASSES, size=n).astype(np.int64)
    return ImageSet(
        name="synthetic",
        split=split,
        images=images,
        labels=labels,
        sample_ids=np.arange(n, dtype=np.int64),
        classes=tuple(str(i) for i in range(SYNTHETIC_CLASSES)),
    )
