"""A user's own ViT through suites and the CLI: model_args, data_config, self-describing checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml

from vitbench.cli.main import main
from vitbench.core.errors import VitbenchError
from vitbench.core.models import check_model_spec, create_model, data_config
from vitbench.core.specs import ModelSpec
from vitbench.harness.suites import expand, load_suite, suite_from_dict

# A CIFAR-sized ViT: 32 px, 4 px patches (64 tokens), width 32, 2 blocks, 10 classes.
ARCH = {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 10}
NAME = "vit_tiny_patch16_224"  # any registered ViT name: model_args replace its architecture
MEAN, STD = [0.1, 0.1, 0.1], [0.3, 0.3, 0.3]
N_TEST = 200


def _fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """A few seeded AdamW steps on random batches of 64, then eval mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _normalise(images: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny ViT trained for 60 steps on 1,000 demo digits, saved as {"model": ..., "cfg": ...}."""
    from vitbench.data import load_dataset

    torch.manual_seed(0)
    model = timm.create_model(NAME, **ARCH)
    train = load_dataset("mnist-demo", split="train", limit=1000)
    x, y = _normalise(train.images, MEAN, STD), torch.from_numpy(train.labels.copy())
    _fit(model, x, y, steps=60)
    test = load_dataset("mnist-demo", split="test", limit=N_TEST)
    with torch.inference_mode():
        pred = model(_normalise(test.images, MEAN, STD)).argmax(-1).numpy()
    top1 = 100.0 * float((pred == test.labels).mean())
    folder = tmp_path_factory.mktemp("own")
    ckpt = folder / "own_vit.pth"
    torch.save({"model": model.state_dict(), "cfg": dict(ARCH)}, ckpt)
    bare = folder / "own_vit_bare.pth"
    torch.save(model.state_dict(), bare)
    return {"ckpt": ckpt, "bare": bare, "top1": top1, "folder": folder}


def _suite(folder: Path, model: dict, name: str = "own") -> Path:
    suite = {
        "name": name,
        "dataset": {"name": "mnist-demo", "split": "test", "limit": N_TEST},
        "models": [model],
        "methods": ["dense"],
        "bootstrap": 10,
        "throughput": {"enabled": False},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def _run(suite: Path, results: Path) -> int:
    return main(["run", str(suite), "--results", str(results), "--output-dir", "", "--no-progress"])


def _records(results: Path) -> list[dict]:
    with sqlite3.connect(results) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM records")]


def test_own_model_through_a_suite_matches_the_model_built_by_hand(
    own: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert own["top1"] > 20.0  # trained: far above chance, so preprocessing mistakes would show
    # the checkpoint carries the architecture; model_args may repeat an agreeing value
    entry = {
        "name": NAME,
        "weights": str(own["ckpt"]),
        "model_args": {"img_size": 32},
        "data_config": {"mean": MEAN, "std": STD, "crop_pct": 1.0},
    }
    results = tmp_path / "r.sqlite"
    assert _run(_suite(tmp_path, entry), results) == 0
    printed = capsys.readouterr().out  # throughput disabled: no img/s column, a one-line note
    assert "img/s: not measured by this suite" in printed and "| img/s" not in printed
    (rec,) = _records(results)
    assert rec["error"] is None
    assert rec["top1"] == pytest.approx(own["top1"], abs=1e-9)
    assert json.loads(rec["model_args"]) == {"img_size": 32}
    used = json.loads(rec["data_config"])
    assert used["mean"] == MEAN and used["std"] == STD and used["input_size"] == [3, 32, 32]
    # the same model from a bare state dict with every argument in model_args gives the same top-1
    entry2 = {**entry, "weights": str(own["bare"]), "model_args": ARCH}
    results2 = tmp_path / "r2.sqlite"
    assert _run(_suite(tmp_path, entry2, "own2"), results2) == 0
    (rec2,) = _records(results2)
    assert rec2["top1"] == pytest.approx(own["top1"], abs=1e-9)
    assert rec2["cell_key"] != rec["cell_key"]


def test_checkpoint_architecture_is_used_and_must_agree(own: dict) -> None:
    model = create_model(NAME, str(own["ckpt"]), data_config={"mean": MEAN, "std": STD})
    assert model.embed_dim == 32 and len(model.blocks) == 2 and model.patch_embed.num_patches == 64
    cfg = data_config(model)
    assert cfg["input_size"] == (3, 32, 32) and cfg["mean"] == tuple(MEAN)
    with pytest.raises(VitbenchError, match=r"model_args embed_dim=64 conflicts with embed_dim=32 stored"):
        create_model(NAME, str(own["ckpt"]), model_args={"embed_dim": 64})


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ({"model_args": {"img_sise": 32}}, r"unknown model_args key 'img_sise' \(not an argument of Vision"),
        (
            {"model_args": {**ARCH, "embed_dim": 48}},
            r"'cls_token' has shape \(1, 1, 32\) but the model "
            r"expects \(1, 1, 48\)",
        ),
        (
            {"model_args": {"img_size": 32}},
            r"'cls_token' has shape \(1, 1, 32\) but the model expects "
            r"\(1, 1, 192\)",
        ),
    ],
)
def test_bad_model_entries_fail_before_any_cell(
    own: dict, tmp_path: Path, capsys: pytest.CaptureFixture, entry: dict, pattern: str
) -> None:
    results = tmp_path / "r.sqlite"
    suite = _suite(tmp_path, {"name": NAME, "weights": str(own["bare"]), **entry})
    assert _run(suite, results) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert __import__("re").search(pattern, err), err
    assert not results.exists() or not _records(results)


@pytest.mark.parametrize(
    ("data_cfg", "pattern"),
    [
        ({"mean": [0.5, 0.5]}, r"data_config mean must list 3 numbers"),
        ({"std": [0.5, 0.5, 0.5, 0.5]}, r"data_config std must list 3 numbers"),
        ({"means": [0.5, 0.5, 0.5]}, r"unknown data_config key 'means'; did you mean 'mean'\?"),
        ({"input_size": [32, 32]}, r"input_size must be \[channels, height, width\]"),
        ({"interpolation": "cubic"}, r"interpolation 'cubic' is not one of"),
        ({"crop_pct": 1.5}, r"crop_pct must be in \(0, 1\]"),
    ],
)
def test_bad_data_config_is_one_line_at_load(data_cfg: dict, pattern: str) -> None:
    raw = {"name": "x", "models": [{"name": NAME, "data_config": data_cfg}], "methods": ["dense"]}
    with pytest.raises(VitbenchError, match=pattern):
        suite_from_dict(raw)


def test_input_size_must_fit_the_model() -> None:
    fits = r"input_size \[3, 64, 64\] does not fit the model, which takes \[3, 32, 32\]"
    with pytest.raises(VitbenchError, match=fits):
        check_model_spec(ModelSpec(NAME, "random", (("img_size", 32),), (("input_size", (3, 64, 64)),)))
    # a non-default img_size becomes the model's input size without a data_config
    model = create_model(NAME, model_args={"img_size": 32, "patch_size": 4})
    assert data_config(model)["input_size"] == (3, 32, 32)


def test_hf_hub_ids_fail_offline_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for weights in ("random", "hub"):
        with pytest.raises(VitbenchError, match=r"needs the Hugging Face hub, which is offline"):
            create_model("hf-hub:timm/vit_tiny_patch16_224.augreg_in21k", weights)
    with pytest.raises(VitbenchError, match=r"offline"):
        check_model_spec(ModelSpec("hf-hub:someone/own-vit", "random"))


def test_cell_keys_separate_architectures_and_keep_plain_keys() -> None:
    # The shipped suites' cell keys and config hashes are those written before model_args existed
    # (computed with the previous code), so existing stores resume.
    from vitbench.store.results import config_hash

    demo = load_suite("demo")
    keys = hashlib.sha256("".join(c.key() for c in expand(demo)).encode()).hexdigest()[:16]
    assert keys == "fdc839c2b2bdcfe9"  # the demo suite with PiToMe, DiffRate, MCTF, ATS, PPT
    # the config hash of a suite without model_args/data_config is the one of its old plain form
    old_form = dataclasses.asdict(demo)
    old_form.pop("cache_dir")
    old_form.pop("threads")  # thread counts never change a result: not hashed
    old_form["throughput"].pop("threads")
    for speed_only in ("runtimes", "batch_sizes"):  # the runtime phase changes no record: not hashed
        old_form["throughput"].pop(speed_only)
    old_form["dataset"].pop("class_order")  # None: hashed as before the key existed
    for m in old_form["models"]:
        del m["model_args"], m["data_config"], m["label"]  # label: display only, never hashed
    assert config_hash(demo.to_dict()) == config_hash(old_form)
    from vitbench.core.specs import Cell, DataSpec, MethodSpec, NoiseSpec

    def key(m: ModelSpec) -> str:
        return Cell(m, MethodSpec("dense"), 1.0, NoiseSpec(), "scored", 0, DataSpec()).key()

    plain = ModelSpec(NAME, "random")
    others = [
        ModelSpec(NAME, "random", (("img_size", 32),)),
        ModelSpec(NAME, "random", (("img_size", 64),)),
        ModelSpec(NAME, "random", (), (("mean", (0.5, 0.5, 0.5)),)),
    ]
    assert len({key(m) for m in [plain, *others]}) == 4
    raw = {"name": "k", "methods": ["dense"], "models": [{"name": NAME, "model_args": {}}]}
    parsed = suite_from_dict(raw)
    assert parsed.models[0] == plain


def test_old_store_gains_the_new_columns(tmp_path: Path) -> None:
    from vitbench.store.records import RECORD_FIELDS
    from vitbench.store.results import ResultsStore, load_results

    path = tmp_path / "old.sqlite"
    old = [n for n in RECORD_FIELDS if n not in ("model_args", "data_config")]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("CREATE TABLE records (" + ", ".join(f'"{n}" {RECORD_FIELDS[n]}' for n in old) + ")")
        conn.execute("INSERT INTO records (cell_key, top1) VALUES ('k0', 50.0)")
    frame = load_results(path)  # read-only: missing columns read as NULL
    assert frame.loc[0, "top1"] == 50.0 and frame.loc[0, "model_args"] is None
    with ResultsStore(path) as store:
        store.write({"cell_key": "k1", "top1": 60.0, "model_args": {"img_size": 32}})
        assert store.done_keys() == {"k0", "k1"}
    frame = load_results(path)
    assert json.loads(frame.loc[1, "model_args"]) == {"img_size": 32}


def test_flops_and_throughput_take_model_args(capsys: pytest.CaptureFixture) -> None:
    args = ["--model", NAME, *(f"--model-arg={k}={v}" for k, v in {**ARCH, "depth": 4}.items())]
    assert main(["flops", *args, "--method", "tome", "--keep", "0.7"]) == 0
    out = capsys.readouterr().out
    assert "tokens per block [65," in out
    assert main(["flops", *args, "--model-arg", "img_sise=32"]) == 2
    assert "unknown model_args key 'img_sise'" in capsys.readouterr().err
    assert main(["flops", *args, "--data-config", "mean=[0.5]"]) == 2
    assert "data_config mean must list 3 numbers" in capsys.readouterr().err
    timing = ["--repeats", "1", "--warmup", "0", "--rounds", "1", "--batch-size", "2"]
    rc = main(["throughput", *args, "--method", "evit", "--keep", "0.5", *timing])
    assert rc == 0
    assert "evit" in capsys.readouterr().out


def test_finetune_config_and_artifact_key_carry_model_args() -> None:
    from vitbench.cli.main import build_parser
    from vitbench.cli.train import config_from_args
    from vitbench.methods.dynamicvit import DynamicViTParams
    from vitbench.store import artifacts

    args = build_parser().parse_args(
        ["finetune", "--model", NAME, "--weights", "random", "--method", "dynamicvit"]
        + ["--model-arg", "img_size=32", "--data-config", "crop_pct=1.0"]
    )
    cfg = config_from_args(args)
    assert cfg.model_args == (("img_size", 32),) and cfg.data_config == (("crop_pct", 1.0),)
    params = DynamicViTParams()
    data = ("mnist-demo", "train", None)
    plain = artifacts.artifact_key(NAME, "random", "dynamicvit", params, data)
    own = artifacts.artifact_key(NAME, "random", "dynamicvit", params, data, cfg.model_args, cfg.data_config)
    assert plain.arch == "" and own.digest != plain.digest


def test_artifact_key_carries_the_training_folder(tmp_path: Path) -> None:
    """Artifacts trained on one folder are not found for another folder under the same dataset name."""
    from vitbench.methods.dynamicvit import DynamicViTParams
    from vitbench.store import artifacts

    params, data = DynamicViTParams(), ("image-folder", "train", None)
    a = artifacts.artifact_key(NAME, "random", "dynamicvit", params, data, source=(str(tmp_path / "a"), None))
    b = artifacts.artifact_key(NAME, "random", "dynamicvit", params, data, source=(str(tmp_path / "b"), None))
    lex = artifacts.artifact_key(
        NAME, "random", "dynamicvit", params, data, source=(str(tmp_path / "a"), "lexicographic")
    )
    assert len({a.digest, b.digest, lex.digest}) == 3
    assert json.loads(a.data)["root"] == str((tmp_path / "a").resolve())
    # packaged datasets (no root) keep the keys of the shipped artifacts
    packaged = artifacts.artifact_key(NAME, "random", "dynamicvit", params, ("mnist-demo", "train", None))
    assert json.loads(packaged.data) == {"name": "mnist-demo", "split": "train", "limit": None}


CIFAR_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


@pytest.mark.skipif(not (CIFAR_ROOT / "test.npz").is_file(), reason=f"{CIFAR_ROOT} not present")
def test_own_cifar_vit_on_real_images_matches_the_model_built_by_hand(tmp_path: Path) -> None:
    """Real CIFAR-10 images: a tiny own ViT (briefly trained) through a suite = by hand."""
    from vitbench.data import load_dataset

    root = str(CIFAR_ROOT)
    torch.manual_seed(0)
    model = timm.create_model(NAME, **ARCH)
    train = load_dataset("cifar10-npz", root=root, split="train", limit=1000)
    x, y = _normalise(train.images, CIFAR_MEAN, CIFAR_STD), torch.from_numpy(train.labels.copy())
    _fit(model, x, y, steps=40)
    test = load_dataset("cifar10-npz", root=root, split="test", limit=300)
    with torch.inference_mode():
        pred = model(_normalise(test.images, CIFAR_MEAN, CIFAR_STD)).argmax(-1).numpy()
    top1 = 100.0 * float((pred == test.labels).mean())
    ckpt = tmp_path / "cifar_vit.pth"
    torch.save({"model": model.state_dict(), "cfg": dict(ARCH)}, ckpt)
    entry = {
        "name": NAME,
        "weights": str(ckpt),
        "data_config": {"mean": CIFAR_MEAN, "std": CIFAR_STD, "crop_pct": 1.0},
    }
    suite = {
        "name": "own-cifar",
        "dataset": {"name": "cifar10-npz", "root": root, "split": "test", "limit": 300},
        "models": [entry],
        "methods": ["dense"],
        "bootstrap": 10,
        "throughput": {"enabled": False},
    }
    path = tmp_path / "own-cifar.yaml"
    path.write_text(yaml.safe_dump(suite))
    results = tmp_path / "r.sqlite"
    assert _run(path, results) == 0
    (rec,) = _records(results)
    assert rec["error"] is None and top1 > 15.0
    assert rec["top1"] == pytest.approx(top1, abs=1e-9)
