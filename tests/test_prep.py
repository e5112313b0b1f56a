"""One preprocessing path: evaluation, calibration and fine-tuning pixels equal timm's eval transform.

For a centre-crop, a squash and a border model (tiny timm ViTs whose pretrained cfg sets the
crop mode), on a folder dataset of mixed non-square sizes and on an in-memory array dataset,
the uint8 images every path prepares equal ``timm.data.create_transform(..., is_training=False,
use_prefetcher=True)`` (timm's uint8 output) exactly, and the normalised tensors equal timm's
full eval transform bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import vitbench.data
import vitbench.harness.pruned
from vitbench.data import load_dataset
from vitbench.data.base import ImageSet
from vitbench.data.cache import prep_rule
from vitbench.data.files import decode_rgb
from vitbench.data.prep import eval_transform, prepare_images
from vitbench.data.samples import to_tensor
from vitbench.harness.suites import expand, suite_from_dict

#: crop mode -> pretrained-cfg overlay (each with its own crop_pct, interpolation and mean/std).
MODES: dict[str, dict[str, Any]] = {
    "center": {"crop_mode": "center", "crop_pct": 0.875, "interpolation": "bicubic"},
    "squash": {"crop_mode": "squash", "crop_pct": 0.9, "interpolation": "bilinear"},
    "border": {"crop_mode": "border", "crop_pct": 1.0, "interpolation": "bicubic", "mean": (0.6, 0.4, 0.2)},
}
SIZES = ((40, 30), (25, 50), (33, 33), (64, 48), (30, 41))  # (width, height), all differ from 32x32


def tiny_model(mode: str) -> torch.nn.Module:
    """A 32x32 one-block timm ViT whose pretrained cfg has the crop mode ``mode`` (no weights)."""
    overlay = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.5, 0.5), **MODES[mode]}
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=1,
        num_classes=2,
        pretrained_cfg_overlay=overlay,
    )


def model_cfg(mode: str) -> dict[str, Any]:
    cfg = dict(timm.data.resolve_model_data_config(tiny_model(mode)))
    assert cfg["crop_mode"] == mode
    return cfg


def timm_reference(pil_images: list[Image.Image], cfg: dict[str, Any]) -> tuple[np.ndarray, torch.Tensor]:
    """timm's own eval pixels: uint8 [N, h, w, 3] (prefetcher output) and normalised [N, 3, h, w]."""
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    args = {k: cfg[k] for k in keys}
    as_uint8 = timm.data.create_transform(**args, is_training=False, use_prefetcher=True)
    full = timm.data.create_transform(**args, is_training=False)
    u8 = np.stack([as_uint8(im).permute(1, 2, 0).numpy() for im in pil_images])
    return u8, torch.stack([full(im) for im in pil_images])


def _random_images(seed: int) -> list[np.ndarray]:
    """Smooth random colour images (detail at every scale, so a one-pixel shift shows)."""
    rng = np.random.default_rng(seed)
    out = []
    for w, h in SIZES:
        small = rng.integers(0, 256, (max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
        big = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))
        out.append(np.clip(big.astype(int) + rng.integers(-20, 21, big.shape), 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image-folder dataset: two classes, images of mixed non-square sizes (PNG, lossless)."""
    root = tmp_path_factory.mktemp("prep-folder")
    for k, img in enumerate(_random_images(1) + _random_images(2)):
        path = root / f"c{k % 2}" / f"{k:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(path)
    return root


def array_set() -> ImageSet:
    """An in-memory array dataset of 40x30 (w x h) images (arrays share one size)."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (6, 8, 10, 3), dtype=np.uint8)
    images = np.stack(
        [np.asarray(Image.fromarray(s).resize((40, 30), Image.Resampling.BILINEAR)) for s in small]
    )
    return ImageSet(
        "toy-arrays", "x", images, np.arange(6, dtype=np.int64) % 2, np.arange(6, dtype=np.int64), ("a", "b")
    )


def _suite(folder: Path) -> Any:
    return suite_from_dict(
        {
            "name": "prep",
            "models": [{"name": "vitbench_demo_vit", "weights": "random"}],
            "methods": ["magnitude"],
            "keep_ratios": [0.7],
            "dataset": {"name": "image-folder", "root": str(folder), "split": "x"},
            "calib": {"n_images": 1000, "batch_size": 4, "split": "x"},
            "cache_dir": "off",
        }
    )


def _assert_same(u8: np.ndarray, x: torch.Tensor, pil: list[Image.Image], cfg: dict[str, Any]) -> None:
    ref_u8, ref_x = timm_reference(pil, cfg)
    assert u8.dtype == np.uint8 and u8.shape == ref_u8.shape
    assert np.array_equal(u8, ref_u8), f"max |diff| {np.abs(u8.astype(int) - ref_u8.astype(int)).max()}"
    assert torch.equal(x, ref_x)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_eval_transform_is_timms_without_tensor_steps(mode: str) -> None:
    cfg = model_cfg(mode)
    steps = [type(t).__name__ for t in eval_transform(cfg).transforms]  # type: ignore[attr-defined]
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    full = timm.data.create_transform(**{k: cfg[k] for k in keys}, is_training=False)
    assert steps == [type(t).__name__ for t in full.transforms][: len(steps)]
    assert not {"ToTensor", "MaybeToTensor", "Normalize"} & set(steps)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_evaluation_pixels_are_timms(mode: str, folder: Path, tmp_path: Path) -> None:
    """The harness's evaluation input (folder: DataLoader samples; arrays: prepared in memory)."""
    from vitbench.harness.runner import Harness

    cfg = model_cfg(mode)
    suite = _suite(folder)
    harness = Harness(suite, str(tmp_path / "r.sqlite"), progress=False, log=lambda _m: None, cache=False)
    cell = expand(suite)[0]
    data = harness.dataset()
    samples = harness.images(cell, cfg)
    u8 = np.stack([samples[i][0].numpy() for i in range(len(data))])  # type: ignore[index]
    _assert_same(u8, to_tensor(u8, cfg), [decode_rgb(data.path(i)) for i in range(len(data))], cfg)

    arrays = array_set()
    harness.inputs._data = arrays  # the same harness path for an in-memory dataset
    u8 = harness.images(cell, cfg)
    _assert_same(u8, to_tensor(u8, cfg), [Image.fromarray(a) for a in arrays.images], cfg)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_calibration_pixels_are_timms(mode: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Channel-pruning calibration batches (folder and array datasets), normalised."""
    from vitbench.harness.pruned import calibration_batches

    cfg = model_cfg(mode)
    suite = _suite(folder)
    cell = expand(suite)[0]
    data = load_dataset("image-folder", root=str(folder), split="x")
    batches = calibration_batches(suite, cell, cfg, cache=False)  # n_images >= len: every image, in order
    x = torch.cat([b for b, _ in batches])
    ref_u8, ref_x = timm_reference([decode_rgb(data.path(i)) for i in range(len(data))], cfg)
    assert torch.equal(x, ref_x)
    assert torch.equal(x, to_tensor(ref_u8, cfg))
    assert torch.equal(torch.cat([y for _, y in batches]), torch.from_numpy(data.labels))

    arrays = array_set()
    monkeypatch.setattr(vitbench.harness.pruned, "load_dataset", lambda *a, **k: arrays)
    x = torch.cat([b for b, _ in calibration_batches(suite, cell, cfg, cache=False)])
    _, ref_x = timm_reference([Image.fromarray(a) for a in arrays.images], cfg)
    assert torch.equal(x, ref_x)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_finetune_pixels_are_timms(mode: str, folder: Path) -> None:
    """The fine-tuning loop's images (folder: decoded per batch; arrays: prepared once)."""
    from accelerate import Accelerator

    from vitbench.methods import METHODS
    from vitbench.train.config import TrainConfig
    from vitbench.train.loop import _setup

    model = tiny_model(mode)
    cfg = model_cfg(mode)
    train = TrainConfig(model="vit_tiny_patch16_224", method="dynamicvit", batch_size=4)
    acc = Accelerator(cpu=True)
    data = load_dataset("image-folder", root=str(folder), split="x")
    run = _setup(train, METHODS.get("dynamicvit"), model, data, acc)
    assert run.dcfg == cfg
    idx = np.array([3, 0, 7, 9])
    u8 = run.images[idx]
    _assert_same(u8, to_tensor(u8, run.dcfg), [decode_rgb(data.path(int(i))) for i in idx], cfg)

    arrays = array_set()
    run = _setup(train, METHODS.get("dynamicvit"), model, arrays, acc)
    u8 = run.images[np.arange(len(arrays))]
    _assert_same(u8, to_tensor(u8, run.dcfg), [Image.fromarray(a) for a in arrays.images], cfg)


def test_real_timm_configs_center_and_squash() -> None:
    """Real timm names (no weights): DeiT (centre, crop_pct 0.875) and CLIP-384 (squash)."""
    with torch.device("meta"):
        deit = timm.create_model("deit_tiny_patch16_224", pretrained=False)
        clip = timm.create_model("vit_base_patch16_clip_384.laion2b_ft_in12k_in1k", pretrained=False)
    images = [Image.fromarray(a) for a in _random_images(5)]
    for model, mode in ((deit, "center"), (clip, "squash")):
        cfg = dict(timm.data.resolve_model_data_config(model))
        assert cfg["crop_mode"] == mode
        u8 = prepare_images_list(images, cfg)
        _assert_same(u8, to_tensor(u8, cfg), images, cfg)


def prepare_images_list(images: list[Image.Image], cfg: dict[str, Any]) -> np.ndarray:
    """:func:`prepare_images` one image at a time (the images differ in size)."""
    return np.concatenate([prepare_images(np.asarray(im)[None], cfg) for im in images])


def test_arrays_at_the_input_size_still_get_timms_resize() -> None:
    """A 32x32 array for a crop_pct 0.875 model is resized to 36 and centre-cropped, as timm does."""
    cfg = model_cfg("center")
    img = _random_images(7)[2]  # 33x33
    img = np.asarray(Image.fromarray(img).resize((32, 32)))
    got = prepare_images(img[None], cfg)
    ref, _ = timm_reference([Image.fromarray(img)], cfg)
    assert np.array_equal(got, ref) and not np.array_equal(got[0], img)


def test_demo_pixels_unchanged() -> None:
    """mnist-demo (32x32) for the 32x32 demo model (crop_pct 1): the images pass through untouched."""
    from vitbench.core.models import create_model, data_config

    cfg = data_config(create_model("vitbench_demo_vit", "random"))
    data = load_dataset("mnist-demo", split="test", limit=200)
    assert np.array_equal(prepare_images(data.images, cfg), data.images)


def test_prep_rule_changes_with_the_preparation() -> None:
    """The cache key's prep rule differs for every crop mode, crop_pct, interpolation and fill."""
    base = model_cfg("center")
    rules = {
        prep_rule(base),
        prep_rule(model_cfg("squash")),
        prep_rule(model_cfg("border")),
        prep_rule({**base, "crop_pct": 0.9}),
        prep_rule({**base, "interpolation": "bilinear"}),
        prep_rule({**model_cfg("border"), "mean": (0.5, 0.5, 0.5)}),  # border fill
    }
    assert len(rules) == 6
    assert prep_rule(base) == prep_rule(dict(base))
