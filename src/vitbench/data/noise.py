"""Image noises: corruptions x severity and continuous noise levels on uint8 HWC images.

Every draw comes from a generator seeded by (seed, sample id, noise name, level) — never a
global RNG — so a corrupted image is the same whatever the batch, process, chunking or order.
Noises act on uint8 RGB images after resize/crop and before normalisation, as ImageNet-C was
made (``make_imagenet_c.py`` corrupts the 224 px centre crop).

Registered noises (``NOISES``), with registry metadata ``family``, ``split`` and ``levels``:

* the 19 ``imagecorruptions`` corruptions (package ``imagecorruptions-imaug``, the maintained
  fork of bethgelab/imagecorruptions) at severities 1-5, hyphenated
  (``gaussian-noise``, ``jpeg-compression``, ...). ``split='test'``: the 15 ImageNet-C test
  corruptions that enter mCE, in the families of Hendrycks & Dietterich (ICLR 2019):
  noise = gaussian, shot, impulse; blur = defocus, glass, motion, zoom; weather = snow, frost,
  fog, brightness; digital = contrast, elastic, pixelate, jpeg. ``split='validation'``
  (``Noise.extra``): the 4 held-out ones, speckle-noise (noise), gaussian-blur (blur),
  spatter (weather), saturate (digital); they never enter mCE.
* continuous sweeps (``split='sweep'``, family ``noise``), the level in units of the 0-255
  range (level 0.1 = 25.5 grey levels):

  - ``gaussian-sigma``: ImageNet-C's ``gaussian_noise`` formula with a continuous std
    sigma = level: an independent N(0, sigma^2) value per pixel *and channel* (colour noise).
  - VTC-LFC's four noises, as ``datasets.py`` of Daner-Wang/VTC-LFC defines them (one value
    per pixel, *shared by the three channels*; clipped to [0, 255], truncated to uint8):
    ``gaussian-sigma-mono`` (``AddGaussianNoise``: level x 255 x N(0, 1), so the same sigma
    units as ``gaussian-sigma``), ``salt-pepper`` (``AddSaltPepperNoise``, density d),
    ``uniform-noise`` (``AddUniformNoise``: U(0, d x 255)) and ``exponential-noise``
    (``AddExpNoise``: Exp with mean d x 255).

Every noise states its ``definition`` and ``source`` (``vitbench noises`` lists them). A name
never changes meaning: records and cache entries are keyed by the name, so a new definition
gets a new name.

Images smaller than a noise supports (``Noise.min_size``; 32 px for ``imagecorruptions``)
raise a one-line :class:`VitbenchError`; in a sweep that cell is recorded as failed with that
line and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator

import numpy as np

from vitbench.core.errors import VitbenchError
from vitbench.core.registry import Registry

NoiseFn = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]

FAMILIES = ("noise", "blur", "weather", "digital")
SPLITS = ("test", "validation", "sweep")


@dataclasses.dataclass(frozen=True)
class Noise:
    """A registered noise.

    Attributes:
        name: registry key (hyphenated, e.g. ``gaussian-noise``).
        family: ``noise`` | ``blur`` | ``weather`` | ``digital`` (``clean`` for no noise).
        fn: ``(image uint8 [H, W, 3], level, rng) -> uint8 [H, W, 3]``.
        levels: ``"severity"`` (integers 1-5) or ``"continuous"`` (a real level >= 0).
        min_size: smallest image side the noise supports.
        split: ``test`` (the 15 ImageNet-C corruptions of mCE), ``validation`` (the 4 extra
            ImageNet-C corruptions) or ``sweep`` (continuous noise levels).
        max_level: largest valid continuous level (``None``: unbounded).
        definition: what the noise does, in one line (units of ``level`` included).
        source: where the definition comes from (paper, package or official code file).
    """

    name: str
    family: str
    fn: NoiseFn
    levels: str = "severity"
    min_size: int = 1
    split: str = "test"
    max_level: float | None = None
    definition: str = ""
    source: str = ""

    @property
    def extra(self) -> bool:
        """True for the 4 ImageNet-C validation corruptions (excluded from mCE)."""
        return self.split == "validation"

    @property
    def imagenet_c_name(self) -> str:
        """The ImageNet-C / imagecorruptions spelling (``gaussian_noise``)."""
        return self.name.replace("-", "_")


NOISES: Registry[Noise] = Registry("noise")


def _register(noise: Noise) -> None:
    NOISES.add(
        noise.name,
        noise,
        family=noise.family,
        split=noise.split,
        levels=noise.levels,
        definition=noise.definition,
        source=noise.source,
    )


#: The official code of VTC-LFC's noise transforms (commit the method cards follow).
VTC_LFC_SOURCE = "VTC-LFC (NeurIPS 2022), datasets.py of Daner-Wang/VTC-LFC @ cfea7ee"
IMAGENET_C_SOURCE = "ImageNet-C (Hendrycks & Dietterich, ICLR 2019) via imagecorruptions-imaug"


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
    """Per-channel Gaussian noise: ImageNet-C's ``gaussian_noise`` formula with std ``level``.

    ``uint8(clip(img / 255 + N(0, level^2), 0, 1) * 255)`` with an independent draw for every
    pixel and channel (``rng.normal(size=(H, W, 3), scale=level)``).

    Args:
        img: uint8 [H, W, 3].
        level: std sigma as a fraction of 255 (>= 0).
        rng: the per-sample generator.

    Returns:
        uint8 [H, W, 3].
    """
    return _gaussian_std(img, float(level), rng)


def gaussian_sigma_mono(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """VTC-LFC ``AddGaussianNoise``: one N(0, (level x 255)^2) value per pixel, same on all channels.

    ``N = level * 255 * normal(0, 1, size=(H, W, 1))`` is added to R, G and B alike, the sum
    clipped to [0, 255] and truncated (``astype('uint8')``), as ``datasets.py`` does (its
    ``density`` is ``level``, its ``mean``/``variance`` keep their defaults 0 and 1).

    Args:
        img: uint8 [H, W, 3].
        level: std sigma as a fraction of 255 (>= 0), the units of ``gaussian-sigma``.
        rng: the per-sample generator.

    Returns:
        uint8 [H, W, 3].
    """
    n = float(level) * 255.0 * rng.normal(loc=0.0, scale=1.0, size=(*img.shape[:2], 1))
    return np.clip(img.astype(np.float64) + n, 0.0, 255.0).astype(np.uint8)


def exponential_noise(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """VTC-LFC ``AddExpNoise``: add Exp(mean d x 255) per pixel (same on all channels), clip.

    Args:
        img: uint8 [H, W, 3].
        level: density d >= 0 (the mean of the added value as a fraction of 255).
        rng: the per-sample generator.

    Returns:
        uint8 [H, W, 3] (clipped to [0, 255], then truncated as ``astype('uint8')``).
    """
    n = rng.exponential(float(level) * 255.0, size=(*img.shape[:2], 1))
    return np.clip(img.astype(np.float64) + n, 0.0, 255.0).astype(np.uint8)


def salt_pepper(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """VTC-LFC ``AddSaltPepperNoise``: a pixel becomes 0 w.p. d/2 and 255 w.p. d/2.

    One mask per pixel, shared by the three channels (``d = level`` in [0, 1]).

    Args:
        img: uint8 [H, W, 3].
        level: density d.
        rng: the per-sample generator.

    Returns:
        uint8 [H, W, 3].
    """
    u = rng.random(img.shape[:2])
    out = img.copy()
    out[u < level / 2.0] = 0
    out[(u >= level / 2.0) & (u < level)] = 255
    return out


def uniform_noise(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """VTC-LFC ``AddUniformNoise``: add U(0, d x 255) per pixel (same on all channels), clip.

    Args:
        img: uint8 [H, W, 3].
        level: density d >= 0.
        rng: the per-sample generator.

    Returns:
        uint8 [H, W, 3] (clipped to [0, 255], then truncated as ``astype('uint8')``).
    """
    n = rng.uniform(0.0, float(level) * 255.0, size=(*img.shape[:2], 1))
    return np.clip(img.astype(np.float64) + n, 0.0, 255.0).astype(np.uint8)


#: imagecorruptions name -> (family, split), in ImageNet-C order within each split.
CORRUPTIONS: dict[str, tuple[str, str]] = {
    "gaussian_noise": ("noise", "test"),
    "shot_noise": ("noise", "test"),
    "impulse_noise": ("noise", "test"),
    "defocus_blur": ("blur", "test"),
    "glass_blur": ("blur", "test"),
    "motion_blur": ("blur", "test"),
    "zoom_blur": ("blur", "test"),
    "snow": ("weather", "test"),
    "frost": ("weather", "test"),
    "fog": ("weather", "test"),
    "brightness": ("weather", "test"),
    "contrast": ("digital", "test"),
    "elastic_transform": ("digital", "test"),
    "pixelate": ("digital", "test"),
    "jpeg_compression": ("digital", "test"),
    "speckle_noise": ("noise", "validation"),
    "gaussian_blur": ("blur", "validation"),
    "spatter": ("weather", "validation"),
    "saturate": ("digital", "validation"),
}
#: corruptions whose randomness imagecorruptions draws from a ``seed=`` argument, not np.random.
_SEED_KWARG = ("impulse_noise", "glass_blur")


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

        seed = int(rng.integers(2**31))
        kwargs = {"seed": seed} if name in _SEED_KWARG else {}
        # np.errstate: e.g. spatter divides by the max of an all-black region (0/0 -> NaN -> 0);
        # that is the reference behaviour, only its RuntimeWarnings are silenced.
        with _scoped_global_seed(seed), np.errstate(divide="ignore", invalid="ignore"):
            return corrupt(img, severity=int(level), corruption_name=name, **kwargs)

    fn.__name__ = name
    fn.__doc__ = f"imagecorruptions '{name}' at severity 1-5 (ImageNet-C definition)."
    return fn


_register(
    Noise(
        "gaussian-noise",
        "noise",
        gaussian_noise,
        definition="ImageNet-C gaussian_noise: + N(0, c^2) per pixel and channel on [0, 1], "
        f"c = {', '.join(map(str, GAUSSIAN_SEVERITY_STD))} for severity 1-5",
        source=f"{IMAGENET_C_SOURCE} (same formula and constants, vitbench's seeded generator)",
    )
)
for _n, (_family, _split) in CORRUPTIONS.items():
    _key = _n.replace("_", "-")
    if _key not in NOISES:
        _register(
            Noise(
                _key,
                _family,
                _imagecorruption(_n),
                min_size=32,
                split=_split,
                definition=f"imagecorruptions corrupt(corruption_name='{_n}', severity 1-5)",
                source=IMAGENET_C_SOURCE,
            )
        )


def _sweep(name: str, fn: NoiseFn, definition: str, source: str, max_level: float | None = None) -> None:
    _register(Noise(name, "noise", fn, "continuous", 1, "sweep", max_level, definition, source))


_sweep(
    "gaussian-sigma",
    gaussian_sigma,
    "+ N(0, sigma^2) per pixel and channel (independent draws), sigma = level x 255",
    "ImageNet-C gaussian_noise formula (Hendrycks & Dietterich, ICLR 2019) with a continuous sigma",
)
_sweep(
    "gaussian-sigma-mono",
    gaussian_sigma_mono,
    "+ level x 255 x N(0, 1), one value per pixel shared by the 3 channels",
    f"{VTC_LFC_SOURCE}, AddGaussianNoise",
)
_sweep(
    "salt-pepper",
    salt_pepper,
    "pixel -> 0 w.p. d/2, -> 255 w.p. d/2 (one mask for the 3 channels), d = level",
    f"{VTC_LFC_SOURCE}, AddSaltPepperNoise",
    max_level=1.0,
)
_sweep(
    "uniform-noise",
    uniform_noise,
    "+ U(0, d x 255), one value per pixel shared by the 3 channels, d = level",
    f"{VTC_LFC_SOURCE}, AddUniformNoise",
)
_sweep(
    "exponential-noise",
    exponential_noise,
    "+ Exp(mean d x 255), one value per pixel shared by the 3 channels, d = level",
    f"{VTC_LFC_SOURCE}, AddExpNoise",
)

CLEAN = Noise(
    "clean",
    "clean",
    lambda img, lv, rng: img,
    levels="continuous",
    split="clean",
    definition="no noise",
)


def corruption_names(split: str = "test") -> list[str]:
    """Registry names of the ImageNet-C corruptions of ``split`` (``test``, ``validation``, ``all``).

    Returns:
        Names in ImageNet-C order (noise, blur, weather, digital).

    Raises:
        VitbenchError: unknown ``split``.
    """
    if split not in ("test", "validation", "all"):
        raise VitbenchError(f"unknown corruption split '{split}'; use test, validation or all")
    return [n.replace("_", "-") for n, (_, s) in CORRUPTIONS.items() if split in ("all", s)]


def noise_seed(seed: int, sample_id: int, name: str, level: float) -> np.random.Generator:
    """Generator keyed by (seed, sample id, noise name, level)."""
    digest = hashlib.sha256(f"{name}|{float(level)!r}".encode()).digest()
    key = [int(seed), int(sample_id), int.from_bytes(digest[:8], "little")]
    return np.random.default_rng(np.random.SeedSequence(key))


def check_noise(name: str, level: float) -> Noise:
    """Validate a (noise, level) pair; return the registered noise.

    Raises:
        UnknownNameError: unknown noise (the message suggests close matches).
        VitbenchError: severity outside 1-5, negative or too large continuous level.
    """
    if name == "clean":
        return CLEAN
    noise = NOISES.get(name)
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise VitbenchError(f"level {level!r} of '{name}' is not a number") from None
    if noise.levels == "severity":
        if value not in (1.0, 2.0, 3.0, 4.0, 5.0):
            raise VitbenchError(f"severity {level!r} of '{name}' is outside 1-5; use an integer 1..5")
    elif not value >= 0.0:
        raise VitbenchError(f"level {level!r} of '{name}' is negative; use a value >= 0")
    elif noise.max_level is not None and value > noise.max_level:
        raise VitbenchError(
            f"level {level!r} of '{name}' is above {noise.max_level:g}; "
            f"use a value in [0, {noise.max_level:g}]"
        )
    return noise


def check_size(name: str, height: int, width: int) -> None:
    """Raise a one-line error when ``name`` cannot corrupt images of ``height x width``."""
    noise = NOISES.get(name) if name != "clean" else CLEAN
    if min(height, width) < noise.min_size:
        raise VitbenchError(
            f"'{name}' needs images of at least {noise.min_size}px; these are {height}x{width} "
            "(use a model with a larger input size or drop this noise)"
        )


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

    Raises:
        VitbenchError: bad level, or images smaller than the noise supports.
    """
    noise = check_noise(name, level)
    if name == "clean":
        return images
    check_size(name, images.shape[1], images.shape[2])
    out = np.empty_like(images)
    for i, (img, sid) in enumerate(zip(images, sample_ids)):
        out[i] = noise.fn(img, level, noise_seed(seed, int(sid), name, level))
    return out
