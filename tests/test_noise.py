"""Noises: seeded per sample, validated levels, ImageNet-C Gaussian strength."""

from __future__ import annotations

import numpy as np
import pytest

from vitbench.errors import VitbenchError
from vitbench.noise import GAUSSIAN_SEVERITY_STD, NOISES, apply_noise, check_noise

IMAGES = np.full((4, 32, 32, 3), 128, dtype=np.uint8)
IDS = np.array([3, 1, 4, 1_000_000_007])


def test_gaussian_noise_is_keyed_per_sample() -> None:
    a = apply_noise(IMAGES, IDS, "gaussian-noise", 3, seed=0)
    b = apply_noise(IMAGES[::-1].copy(), IDS[::-1].copy(), "gaussian-noise", 3, seed=0)
    assert np.array_equal(a, b[::-1])  # order of samples does not matter
    assert not np.array_equal(a, apply_noise(IMAGES, IDS, "gaussian-noise", 3, seed=1))
    assert not np.array_equal(a[0], a[1])
    state = np.random.get_state()
    apply_noise(IMAGES, IDS, "shot-noise", 2, seed=0)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG untouched


@pytest.mark.parametrize("severity", [1, 2])  # no clipping at mid-gray
def test_gaussian_strength_matches_imagenet_c(severity: int) -> None:
    out = apply_noise(IMAGES, IDS, "gaussian-noise", severity, seed=0).astype(float)
    expected = GAUSSIAN_SEVERITY_STD[severity - 1] * 255
    assert abs(out.std() - expected) / expected < 0.05


def test_levels_validated() -> None:
    with pytest.raises(VitbenchError, match="outside 1-5"):
        check_noise("gaussian-noise", 6)
    with pytest.raises(VitbenchError, match="outside 1-5"):
        check_noise("fog", 0)
    with pytest.raises(VitbenchError, match="negative"):
        check_noise("gaussian-sigma", -0.1)
    with pytest.raises(KeyError, match="did you mean 'gaussian-noise'"):
        check_noise("gausian-noise", 1)
    with pytest.raises(VitbenchError, match="at least 32px"):
        apply_noise(np.zeros((1, 16, 16, 3), np.uint8), IDS[:1], "fog", 1, seed=0)


def test_all_19_corruptions_registered_with_families() -> None:
    families = {NOISES.get(n).family for n in NOISES.names()}
    assert {"noise", "blur", "weather", "digital"} <= families
    assert len([n for n in NOISES.names() if NOISES.get(n).levels == "severity"]) == 19


def test_imagenet_c_families_and_splits() -> None:
    from vitbench.noise import corruption_names

    test, val = corruption_names("test"), corruption_names("validation")
    assert len(test) == 15 and val == ["speckle-noise", "gaussian-blur", "spatter", "saturate"]
    fams = {
        f: [n for n in test if NOISES.get(n).family == f] for f in ("noise", "blur", "weather", "digital")
    }
    assert fams["noise"] == ["gaussian-noise", "shot-noise", "impulse-noise"]
    assert fams["blur"] == ["defocus-blur", "glass-blur", "motion-blur", "zoom-blur"]
    assert fams["weather"] == ["snow", "frost", "fog", "brightness"]
    assert fams["digital"] == ["contrast", "elastic-transform", "pixelate", "jpeg-compression"]
    assert all(NOISES.get(n).extra for n in val) and not any(NOISES.get(n).extra for n in test)
    assert NOISES.names(split="sweep") == ["gaussian-sigma", "salt-pepper", "uniform-noise"]


@pytest.mark.parametrize("name", ["impulse-noise", "glass-blur"])  # seeded via seed=, not np.random
def test_seed_kwarg_corruptions_are_deterministic(name: str) -> None:
    imgs = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    a = apply_noise(imgs, IDS[:2], name, 3, seed=0)
    assert np.array_equal(a, apply_noise(imgs, IDS[:2], name, 3, seed=0))
    assert not np.array_equal(a, apply_noise(imgs, IDS[:2], name, 3, seed=1))


def test_salt_pepper_and_uniform_follow_vtc_lfc() -> None:
    big = np.full((8, 64, 64, 3), 128, dtype=np.uint8)
    ids = np.arange(8)
    sp = apply_noise(big, ids, "salt-pepper", 0.4, seed=0)
    assert set(np.unique(sp)) == {0, 128, 255}
    assert (sp == sp[..., :1]).all()  # one mask for the three channels
    assert abs((sp == 0).mean() - 0.2) < 0.02 and abs((sp == 255).mean() - 0.2) < 0.02
    un = apply_noise(big, ids, "uniform-noise", 0.2, seed=0).astype(float)
    assert (un == un[..., :1]).all() and un.min() >= 128 and un.max() <= 128 + 0.2 * 255
    assert abs(un.mean() - (128 + 0.1 * 255 - 0.5)) < 1.0  # U(0, d*255) added, then truncated
    assert (apply_noise(big, ids, "uniform-noise", 1.0, seed=0) == 255).mean() > 0.4  # clipped
    assert np.array_equal(apply_noise(big, ids, "salt-pepper", 0.0, seed=0), big)
    with pytest.raises(VitbenchError, match="above 1; use a value in \\[0, 1\\]"):
        check_noise("salt-pepper", 1.5)
    with pytest.raises(VitbenchError, match="negative"):
        check_noise("uniform-noise", -1)
