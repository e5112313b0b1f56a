"""The torch side of the data layer: image arrays to normalised tensors, file images as a Dataset.

:func:`to_tensor` finishes the one preprocessing path of :mod:`vitbench.data.prep` (timm's
``ToTensor`` + ``Normalize``, bit for bit); :class:`FileSamples` decodes, crops and corrupts file
images in DataLoader workers. Kept apart from the file listing and the noise registry so that
reading suites and result stores does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vitbench.data.files import decode_rgb
from vitbench.data.noise import NOISES, check_size, noise_seed


def to_tensor(images: np.ndarray, cfg: dict[str, Any]) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> normalised float32 ``[N, 3, H, W]`` with the config's mean/std.

    The same float32 operations as timm's ``ToTensor`` (``/ 255``) + ``Normalize``
    (``(x - mean) / std``), so the result equals timm's full eval transform bit for bit.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cfg["mean"], dtype=torch.float32)[None, :, None, None]
    std = torch.tensor(cfg["std"], dtype=torch.float32)[None, :, None, None]
    return (x - mean) / std


class FileSamples(torch.utils.data.Dataset):
    """Map-style dataset: decode, resize/crop, corrupt -> (uint8 ``[H, W, 3]``, label, sample id).

    Picklable, so DataLoader workers do the decoding. The noise draw of sample ``i`` comes from
    ``noise_seed(seed, sample_id, noise, level)``, as :func:`vitbench.data.noise.apply_noise` does.
    """

    def __init__(
        self,
        paths: list[str],
        labels: np.ndarray,
        ids: np.ndarray,
        transform: Callable[[Any], Any],
        noise: str = "clean",
        level: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.paths, self.labels, self.ids = paths, labels, ids
        self.transform, self.noise, self.level, self.seed = transform, noise, level, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        img = np.array(self.transform(decode_rgb(self.paths[i])), dtype=np.uint8)  # writable copy
        if self.noise != "clean":
            check_size(self.noise, img.shape[0], img.shape[1])
            rng = noise_seed(self.seed, int(self.ids[i]), self.noise, self.level)
            img = NOISES.get(self.noise).fn(img, self.level, rng)
        return torch.from_numpy(np.ascontiguousarray(img)), int(self.labels[i]), int(self.ids[i])
