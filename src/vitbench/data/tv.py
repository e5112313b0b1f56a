"""CIFAR-10 / CIFAR-100 through torchvision from a local root (never downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitbench.core.errors import VitbenchError
from vitbench.data.base import DATASETS, ImageSet

ORDER_SEED = 0
_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _load(kind: str, root: str | None, split: str, limit: int | None) -> ImageSet:
    from torchvision import datasets

    assert root is not None
    folder = Path(root) / _FOLDERS[kind]
    if not folder.is_dir():
        raise VitbenchError(
            f"{folder} does not exist; put torchvision's extracted {_FOLDERS[kind]}/ in {root} "
            "(vitbench never downloads data)"
        )
    cls = datasets.CIFAR10 if kind == "cifar10" else datasets.CIFAR100
    try:
        ds = cls(root=root, train=split == "train", download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
        text = " ".join(str(exc).split()).split(" You can use download=True")[0]
        raise VitbenchError(f"{folder}: {text}; re-extract the archive there (no download)") from None
    x = np.asarray(ds.data, dtype=np.uint8)
    y = np.asarray(ds.targets, dtype=np.int64)
    # torchvision keeps the files' order; a fixed shuffle makes every limit prefix class-balanced
    order = np.random.default_rng(ORDER_SEED).permutation(len(y)).astype(np.int64)
    if limit is not None:
        order = order[:limit]
    return ImageSet(
        name=kind,
        split=split,
        images=np.ascontiguousarray(x[order]),
        labels=y[order],
        sample_ids=order,
        classes=tuple(ds.classes),
    )


@DATASETS.register(
    "cifar10",
    num_classes=10,
    splits=("train", "test"),
    needs_root=True,
    description="CIFAR-10 via torchvision from <root>/cifar-10-batches-py (no download)",
)
def load_cifar10(root: str | None, split: str, limit: int | None) -> ImageSet:
    """Torchvision ``CIFAR10(root, train=split == 'train', download=False)`` as uint8 ``[N, 32, 32, 3]``."""
    return _load("cifar10", root, split, limit)


@DATASETS.register(
    "cifar100",
    num_classes=100,
    splits=("train", "test"),
    needs_root=True,
    description="CIFAR-100 via torchvision from <root>/cifar-100-python (no download)",
)
def load_cifar100(root: str | None, split: str, limit: int | None) -> ImageSet:
    """Torchvision ``CIFAR100(root, train=split == 'train', download=False)`` as uint8 ``[N, 32, 32, 3]``."""
    return _load("cifar100", root, split, limit)
