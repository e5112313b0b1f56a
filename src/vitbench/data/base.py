"""Dataset adapter protocol: an in-memory image set and the registry of loaders.

An adapter is a function ``load(root, split, limit) -> ImageSet`` registered in :data:`DATASETS`
with metadata ``num_classes``, ``splits``, ``needs_root`` and ``description``. Folder adapters
(metadata ``class_order=True``) also take ``class_order=`` (:mod:`vitbench.data.classes`). Datasets are
small enough to live in memory as uint8 arrays; normalisation is the model's business (its
pretrained data config), never the adapter's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitbench.core.errors import VitbenchError
from vitbench.core.registry import Registry
from vitbench.data.classes import check_class_order

Loader = Callable[[str | None, str, int | None], Any]
"""Adapter signature: ``load(root, split, limit) -> ImageSet`` (or a ``FileImageSet`` read from files)."""

DATASETS: Registry[Loader] = Registry("dataset")


@dataclass(frozen=True)
class ImageSet:
    """A labelled split of images held in memory.

    Attributes:
        name: registry key of the dataset, e.g. ``"mnist-demo"``.
        split: split name, e.g. ``"test"``.
        images: uint8 RGB images, shape ``[N, H, W, 3]``.
        labels: int64 class indices, shape ``[N]``.
        sample_ids: int64 ids of the samples, stable within the dataset, shape ``[N]``.
        classes: class names in label order.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    sample_ids: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N,H,W,3], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (n,) or self.sample_ids.shape != (n,):
            raise ValueError(
                f"labels {self.labels.shape} and sample_ids {self.sample_ids.shape} must have shape ({n},)"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None) -> ImageSet:
        """The first ``n`` samples in stored order (all of them when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        if n < 0:
            raise ValueError(f"subset size must be >= 0, got {n}")
        return ImageSet(
            name=self.name,
            split=self.split,
            images=self.images[:n],
            labels=self.labels[:n],
            sample_ids=self.sample_ids[:n],
            classes=self.classes,
        )

    def ids_hash(self) -> str:
        """Short sha256 (16 hex chars) of the sample ids, identifying exactly which samples are used."""
        ids = np.ascontiguousarray(self.sample_ids, dtype="<i8")
        return hashlib.sha256(ids.tobytes()).hexdigest()[:16]


def load_dataset(
    name: str,
    root: str | None = None,
    split: str = "test",
    limit: int | None = None,
    class_order: str | None = None,
) -> Any:
    """Load a registered dataset after checking the split and the data root.

    Args:
        name: registry key, e.g. ``"mnist-demo"`` or ``"cifar10-npz"``.
        root: data folder for adapters with ``needs_root=True``; ignored otherwise.
        split: one of the adapter's ``splits``.
        limit: keep only the first ``limit`` samples of the split (None keeps all).
        class_order: which folder gets which label, for folder datasets: ``natural`` (the
            default, as timm), ``lexicographic`` or a file of class names
            (:func:`vitbench.data.classes.order_classes`); ``None`` = the default.

    Returns:
        The split as an :class:`ImageSet`, or a :class:`vitbench.data.files.FileImageSet` for
        folder datasets (decoded on demand).

    Raises:
        VitbenchError: unknown dataset, unknown split, a missing/nonexistent root, a
            ``class_order`` for a dataset whose classes are fixed, or a split whose files were all
            skipped as unusable.
    """
    if name not in DATASETS:
        raise VitbenchError(DATASETS.unknown_message(name))
    loader = DATASETS.get(name)
    meta = DATASETS.info(name)
    splits = tuple(meta.get("splits", ()))
    if splits and split not in splits:
        raise VitbenchError(f"dataset '{name}' has no split '{split}'; valid splits: {', '.join(splits)}")
    if limit is not None and limit < 0:
        raise VitbenchError(f"data limit must be >= 0, got {limit}")
    if meta.get("needs_root", False):
        if root is None or str(root) == "":
            raise VitbenchError(
                f"dataset '{name}' needs a data path; "
                "pass --set dataset.root=PATH or set dataset: {root: PATH} in the suite"
            )
        if not Path(root).expanduser().exists():
            raise VitbenchError(
                f"data path {root} does not exist; "
                "pass an existing folder with --set dataset.root=PATH or the suite's dataset.root"
            )
        root = str(Path(root).expanduser())
    class_order = check_class_order(class_order, f"dataset '{name}'")
    if class_order is None:
        data = loader(root, split, limit)
    elif not meta.get("class_order", False):
        raise VitbenchError(
            f"dataset '{name}' has a fixed class order; class_order applies to folder datasets "
            f"({', '.join(n for n in DATASETS.names() if DATASETS.info(n).get('class_order'))}): drop it"
        )
    else:
        data = loader(root, split, limit, class_order=class_order)  # type: ignore[call-arg]
    if len(data) == 0 and getattr(data, "skipped", None):
        path, reason = data.skipped[0]
        raise VitbenchError(
            f"dataset '{name}' split '{split}': all {len(data.skipped)} image files are unusable "
            f"(e.g. {path}: {reason}); check the files under {root}"
        )
    return data
