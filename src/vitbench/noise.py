"""Image noises: corruptions x severity on uint8 HWC images, seeded per sample.

Every draw comes from a generator seeded by (seed, sample id, noise name, level) — never a
global RNG — so a corrupted image is the same whatever the batch, process or order. Noises act
on uint8 RGB images after resize/crop and before normalisation, as ImageNet-C was made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator

import numpy as np

from vitbench.errors import VitbenchError
from vitbench.registry import Registry

NoiseFn = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Noise:
    """A registered noise.

    Attributes:
        name: registry key (hyphenated, e.g. ``gaussian-noise``).
        family: ``noise`` | ``blur`` | ``weather`` | ``digital`` | ``extra``.
        fn: ``(image uint8 [H, W, 3], level, rng) -> uint8 [H, W, 3]``.
        levels: ``"severity"`` (integers 1-5) or ``"continuous"`` (a real level >= 0).
        min_size: smallest image side the noise supports.
    """

    name: str
    family: str
    fn: NoiseFn
    levels: str = "severity"
    min_size: int = 1


NOISES: Registry[Noise] = Registry("noise")

# ImageNet-C Gaussian noise standard deviations (fraction of the 0-255 range) for severities 1-5.
GAUSSIAN_SEVERITY_STD = (0.08, 0.12, 0.18, 0.26, 0.38)


def _gaussian_std(img: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float64) / 255.0
    x = np.clip(x + rng.normal(size=x.shape, scale=std), 0.0, 1.0) * 255.0
    return np.uint8(x)  # truncation, as imagecorruptions converts its float output


def gaussian_noise(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C Gaussian noise at severity 1-5 (same formula and constants)."""
    return _gaussian_std(img, GAUSSIAN_SEVERITY_STD[int(level) - 1], rng)


def gaussian_sigma(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise with standard deviation ``level`` (fraction of 255), clipped."""
    return _gaussian_std(img, float(level), rng)


NOISES.add("gaussian-noise", Noise("gaussian-noise", "noise", gaussian_noise))
NOISES.add("gaussian-sigma", Noise("gaussian-sigma", "extra", gaussian_sigma, levels="continuous"))

_FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}


@contextlib.contextmanager
def _scoped_global_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's legacy global RNG for one call and restore its previous state afterwards.

    ``imagecorruptions`` draws from the global RNG; scoping keeps draws keyed per sample and
    leaves the caller's RNG state untouched.
    """
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


def _imagecorruption(name: str) -> NoiseFn:
    def fn(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        from imagecorruptions import corrupt

        seed = int(rng.integers(2**32))
        with _scoped_global_seed(seed):
            return corrupt(img, severity=int(level), corruption_name=name)

    fn.__name__ = name
    fn.__doc__ = f"imagecorruptions '{name}' at severity 1-5 (ImageNet-C definition)."
    return fn


for _family, _names in _FAMILIES.items():
    for _n in _names:
        _key = _n.replace("_", "-")
        if _key not in NOISES:
            NOISES.add(_key, Noise(_key, _family, _imagecorruption(_n), min_size=32))


def noise_seed(seed: int, sample_id: int, name: str, level: float) -> np.random.Generator:
    """Generator keyed by (seed, sample id, noise name, level)."""
    digest = hashlib.sha256(f"{name}|{float(level)!r}".encode()).digest()
    key = [int(seed), int(sample_id), int.from_bytes(digest[:8], "little")]
    return np.random.default_rng(np.random.SeedSequence(key))


def check_noise(name: str, level: float) -> Noise:
    """Validate a (noise, level) pair; return the registered noise."""
    if name == "clean":
        return Noise("clean", "clean", lambda img, lv, rng: img)
    noise = NOISES.get(name)
    if noise.levels == "severity":
        if float(level) not in (1.0, 2.0, 3.0, 4.0, 5.0):
            raise VitbenchError(f"severity {level!r} of '{name}' is outside 1-5; use an integer 1..5")
    elif not float(level) >= 0.0:
        raise VitbenchError(f"level {level!r} of '{name}' is negative; use a value >= 0")
    return noise


def apply_noise(images: np.ndarray, sample_ids: np.ndarray, name: str, level: float, seed: int) -> np.ndarray:
    """Corrupt a stack of images.

    Args:
        images: uint8 [N, H, W, 3].
        sample_ids: int64 [N] dataset ids (keys of the per-sample generators).
        name: registered noise name or ``clean``.
        level: severity or continuous level.
        seed: run seed.

    Returns:
        uint8 [N, H, W, 3] (the input itself for ``clean``).
    """
    noise = check_noise(name, level)
    if name == "clean":
        return images
    if min(images.shape[1:3]) < noise.min_size:
        raise VitbenchError(
            f"'{name}' needs images of at least {noise.min_size}px; "
            f"these are {images.shape[1]}x{images.shape[2]}"
        )
    out = np.empty_like(images)
    for i, (img, sid) in enumerate(zip(images, sample_ids)):
        out[i] = noise.fn(img, level, noise_seed(seed, int(sid), name, level))
    return out
