"""Real-image check: a small model on real CIFAR-10 images through the evaluation pipeline.

Runs only where ``../shared/data/cifar10`` (next to the repository; see its README) exists and
skips cleanly elsewhere. The model is the demo ViT with a linear head fitted on 2,000 real
CIFAR-10 train images (frozen features, seconds on a CPU), saved as a ``.safetensors`` file and
loaded by path, so the check covers: checkpoint loading, the in-memory ``cifar10-npz`` adapter,
the same images as PNG and JPEG files through ``image-folder`` (decode in DataLoader workers,
timm transform, per-sample noise), the harness and its records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

CIFAR_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
N_TRAIN, N_TEST = 2000, 300

pytestmark = pytest.mark.skipif(
    not (CIFAR_ROOT / "test.npz").is_file(), reason=f"{CIFAR_ROOT} not present (real CIFAR-10 arrays)"
)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo ViT features + a least-squares-initialised, briefly trained linear head -> safetensors."""
    from safetensors.torch import save_file

    from vitbench.core.models import create_model, data_config
    from vitbench.data import load_dataset
    from vitbench.data.samples import to_tensor

    model = create_model("vitbench_demo_vit", "demo")
    train = load_dataset("cifar10-npz", root=str(CIFAR_ROOT), split="train", limit=N_TRAIN)
    x = to_tensor(train.images, data_config(model))
    with torch.inference_mode():
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
    feats = feats.clone()
    y = torch.from_numpy(train.labels.copy())
    head = torch.nn.Linear(feats.shape[1], 10)
    gen = torch.Generator().manual_seed(0)
    torch.nn.init.normal_(head.weight, std=0.01, generator=gen)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(head(feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state["head.weight"], state["head.bias"] = head.weight.detach().clone(), head.bias.detach().clone()
    out = tmp_path_factory.mktemp("probe") / "demo_cifar_probe.safetensors"
    save_file(state, str(out))
    return out


def _write_folder(root: Path, fmt: str) -> None:
    from PIL import Image

    from vitbench.data import load_dataset
    from vitbench.data.arrays import CIFAR10_CLASSES

    test = load_dataset("cifar10-npz", root=str(CIFAR_ROOT), split="test", limit=N_TEST)
    for img, label, sid in zip(test.images, test.labels, test.sample_ids):
        folder = root / CIFAR10_CLASSES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        ext = "png" if fmt == "PNG" else "jpg"
        Image.fromarray(img).save(folder / f"{int(sid):05d}.{ext}", format=fmt, quality=95)


def _run(tmp_path: Path, probe: Path, dataset: dict, tag: str) -> object:
    from vitbench.harness.runner import Harness
    from vitbench.harness.suites import expand, suite_from_dict
    from vitbench.store.results import load_results

    suite = suite_from_dict(
        {
            "name": tag,
            "models": [{"name": "vitbench_demo_vit", "weights": str(probe)}],
            "methods": ["dense", "evit"],
            "keep_ratios": [0.7],
            "dataset": dataset,
            "noises": ["clean", {"name": "gaussian-noise", "levels": [3]}],
            "batch_size": 64,
            "bootstrap": 50,
            "throughput": False,
        }
    )
    store = tmp_path / f"{tag}.sqlite"
    summary = Harness(suite, str(store), progress=False, log=lambda _m: None, cache=False).run(expand(suite))
    assert summary.failed == 0, summary.errors
    return load_results(store).set_index(["method", "noise"]).sort_index()


def test_small_model_on_real_cifar10(tmp_path: Path, probe: Path) -> None:
    npz = _run(tmp_path, probe, {"name": "cifar10-npz", "root": str(CIFAR_ROOT), "limit": N_TEST}, "npz")
    _write_folder(tmp_path / "png", "PNG")
    _write_folder(tmp_path / "jpg", "JPEG")
    png = _run(tmp_path, probe, {"name": "image-folder", "root": str(tmp_path / "png")}, "png")
    jpg = _run(tmp_path, probe, {"name": "image-folder", "root": str(tmp_path / "jpg")}, "jpg")
    for df in (npz, png, jpg):
        assert (df["n_samples"] == N_TEST).all() and df["error"].isna().all()
    clean = ("dense", "clean")
    # a real classifier on real images: far above chance (10 %) when clean, lower under noise
    assert npz.loc[clean, "top1"] > 18.0
    assert npz.loc[("dense", "gaussian-noise"), "top1"] < npz.loc[clean, "top1"]
    # lossless files through the file pipeline give exactly the in-memory result when clean
    for key in [clean, ("evit", "clean")]:
        assert png.loc[key, "top1"] == npz.loc[key, "top1"]
        assert np.isclose(png.loc[key, "nll"], npz.loc[key, "nll"], rtol=1e-5)
    # JPEG re-encoding moves a few predictions at most
    assert abs(jpg.loc[clean, "top1"] - npz.loc[clean, "top1"]) < 5.0
    assert png.loc[clean, "gmacs"] == npz.loc[clean, "gmacs"]
