"""Noises: seeded per sample, validated levels, ImageNet-C Gaussian strength."""

from __future__ import annotations

import numpy as np
import pytest

from vitbench.core.errors import VitbenchError
from vitbench.data.noise import GAUSSIAN_SEVERITY_STD, NOISES, apply_noise, check_noise, noise_seed

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
    from vitbench.data.noise import corruption_names

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
    assert NOISES.names(split="sweep") == [
        "exponential-noise",
        "gaussian-sigma",
        "gaussian-sigma-mono",
        "salt-pepper",
        "uniform-noise",
    ]


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


# -- each definition reproduced by hand from the same seeded draw -------------------------------
PHOTO = np.random.default_rng(7).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)  # clips at both ends
PHOTO_IDS = np.array([5, 0, 42])


def _by_hand(name: str, level: float, draw: object) -> np.ndarray:
    """Each image of PHOTO through ``draw(img, rng)`` with the generator of (seed 3, its id, name, level)."""
    return np.stack([draw(img, noise_seed(3, int(i), name, level)) for img, i in zip(PHOTO, PHOTO_IDS)])


def _hand_gaussian_sigma(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # imagecorruptions gaussian_noise: x / 255 + normal(size=x.shape, scale=c), clip to [0, 1], * 255
    x = img / 255.0
    return np.uint8(np.clip(x + rng.normal(size=x.shape, scale=0.2), 0, 1) * 255)


def _hand_vtc_gaussian(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # VTC-LFC AddGaussianNoise(mean=0, variance=1, density=0.2)
    h, w, c = img.shape
    n = 0.2 * 255 * rng.normal(loc=0.0, scale=1.0, size=(h, w, 1))
    out = np.repeat(n, c, axis=2) + img
    out[out > 255] = 255
    out[out < 0] = 0
    return out.astype("uint8")


def _hand_vtc_uniform(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # VTC-LFC AddUniformNoise(density=0.2)
    h, w, c = img.shape
    out = np.repeat(rng.uniform(0, 0.2 * 255, size=(h, w, 1)), c, axis=2) + img
    out[out > 255] = 255
    return out.astype("uint8")


def _hand_vtc_exponential(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # VTC-LFC AddExpNoise(density=0.2)
    h, w, c = img.shape
    out = np.repeat(rng.exponential(0.2 * 255, size=(h, w, 1)), c, axis=2) + img
    out[out > 255] = 255
    return out.astype("uint8")


def _hand_vtc_salt_pepper(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # VTC-LFC AddSaltPepperNoise(density=0.2): mask 0 w.p. d/2, 1 w.p. d/2 (inverse-CDF of one uniform)
    u = np.repeat(rng.random(img.shape[:2])[..., None], 3, axis=2)
    out = img.copy()
    out[u < 0.1] = 0
    out[(u >= 0.1) & (u < 0.2)] = 255
    return out


@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("gaussian-sigma", _hand_gaussian_sigma),
        ("gaussian-sigma-mono", _hand_vtc_gaussian),
        ("uniform-noise", _hand_vtc_uniform),
        ("exponential-noise", _hand_vtc_exponential),
        ("salt-pepper", _hand_vtc_salt_pepper),
    ],
)
def test_sweep_noises_match_their_definition_by_hand(name: str, draw: object) -> None:
    out = apply_noise(PHOTO, PHOTO_IDS, name, 0.2, seed=3)
    assert np.array_equal(out, _by_hand(name, 0.2, draw))
    assert (out == 0).any() or (out == 255).any()  # the clipping branch is exercised


def test_gaussian_severity_matches_imagenet_c_by_hand() -> None:
    c = GAUSSIAN_SEVERITY_STD[2]

    def hand(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.uint8(np.clip(img / 255.0 + rng.normal(size=img.shape, scale=c), 0, 1) * 255)

    out = apply_noise(PHOTO, PHOTO_IDS, "gaussian-noise", 3, seed=3)
    assert np.array_equal(out, _by_hand("gaussian-noise", 3, hand))


@pytest.mark.parametrize("name", ["shot-noise", "fog", "impulse-noise"])
def test_imagenet_c_corruptions_are_imagecorruptions_calls(name: str) -> None:
    """The 19 corruptions are ``imagecorruptions.corrupt`` with the seed drawn from the sample's generator."""
    from imagecorruptions import corrupt

    key = name.replace("-", "_")

    def hand(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        seed = int(rng.integers(2**31))
        np.random.seed(seed)
        kwargs = {"seed": seed} if key == "impulse_noise" else {}
        return corrupt(img, severity=2, corruption_name=key, **kwargs)

    state = np.random.get_state()
    try:
        expected = _by_hand(name, 2, hand)
    finally:
        np.random.set_state(state)
    assert np.array_equal(apply_noise(PHOTO, PHOTO_IDS, name, 2, seed=3), expected)


def test_mono_noises_share_one_value_per_pixel_and_sigma_noise_does_not() -> None:
    gray = np.full((2, 32, 32, 3), 128, dtype=np.uint8)
    ids = np.arange(2)
    for name in ("gaussian-sigma-mono", "uniform-noise", "exponential-noise", "salt-pepper"):
        out = apply_noise(gray, ids, name, 0.1, seed=0)
        assert (out == out[..., :1]).all(), name  # the same value on R, G and B
    rgb = apply_noise(gray, ids, "gaussian-sigma", 0.1, seed=0)
    assert (rgb != rgb[..., :1]).mean() > 0.5  # independent draws per channel
    mono = apply_noise(gray, ids, "gaussian-sigma-mono", 0.1, seed=0).astype(float)
    assert abs(mono.std() - 0.1 * 255) / (0.1 * 255) < 0.1 and abs(rgb.astype(float).std() - 25.5) < 2.6


def test_every_noise_states_its_definition_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    from vitbench.cli.main import main

    for name in NOISES.names():
        info = NOISES.info(name)
        assert info["definition"] and info["source"], name
        vtc = name in ("gaussian-sigma-mono", "salt-pepper", "uniform-noise", "exponential-noise")
        assert ("VTC-LFC" in info["source"]) == vtc, name
        assert ("ImageNet-C" in info["source"]) == (not vtc), name
    assert main(["noises", "--split", "sweep"]) == 0
    out = capsys.readouterr().out
    assert "AddGaussianNoise" in out and "gaussian-sigma-mono" in out and "fog" not in out
