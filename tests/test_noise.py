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
