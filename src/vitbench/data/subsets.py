"""Subsets of any dataset prepared for a model: in-memory arrays or folders decoded on demand.

Calibration subsets and training batches pick images by index; folder datasets decode only the
picked files. Both kinds go through :func:`vitbench.data.prep.eval_transform`, as evaluation does.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from vitbench.data.files import FileImageSet, decode_rgb, default_workers
from vitbench.data.prep import as_array, eval_transform, prepare_images

__all__ = ["ArraySamples", "FolderBatches", "prepared_subset"]


def prepared_subset(data: Any, idx: Any, cfg: dict[str, Any], workers: int | None = None) -> np.ndarray:
    """Images ``idx`` of ``data`` prepared for the model, uint8 ``[len(idx), h, w, 3]``.

    Array datasets (:class:`~vitbench.data.base.ImageSet`) index their in-memory images; folder
    datasets (:class:`~vitbench.data.files.FileImageSet`) decode only the requested files (any
    sizes; a pool of ``workers`` threads, default :func:`vitbench.data.default_workers`), so a
    calibration subset or a training batch never loads a whole split such as ImageNet train.
    Both go through :func:`eval_transform`, as evaluation does.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if not isinstance(data, FileImageSet):
        return prepare_images(np.asarray(data.images[idx]), cfg)
    _, h, w = cfg["input_size"]
    if len(idx) == 0:
        return np.empty((0, h, w, 3), dtype=np.uint8)
    transform = eval_transform(cfg)

    def one(i: int) -> np.ndarray:
        return as_array(transform(decode_rgb(data.path(int(i)))), h, w)

    with ThreadPoolExecutor(max(1, min(workers or default_workers(), len(idx)))) as pool:
        return np.stack(list(pool.map(one, idx)))


class FolderBatches:
    """``batches[idx]`` -> prepared uint8 ``[B, h, w, 3]`` of a folder dataset, decoded on demand.

    Stands in for the in-memory array of prepared images where a loop indexes batches (training).
    """

    def __init__(self, data: Any, cfg: dict[str, Any]) -> None:
        self.data, self.cfg = data, cfg

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx: Any) -> np.ndarray:
        return prepared_subset(self.data, idx, self.cfg)


class ArraySamples(torch.utils.data.Dataset):
    """Map-style dataset over in-memory arrays: (uint8 [H, W, 3], label, sample id)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
        self.images, self.labels, self.ids = images, labels, ids

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return torch.from_numpy(self.images[i]), int(self.labels[i]), int(self.ids[i])
