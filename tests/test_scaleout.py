"""Cell sharding across processes/machines and merging results stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from vitbench.cli.main import main
from vitbench.core.errors import VitbenchError
from vitbench.harness.scaleout import merge_stores, parse_shard, results_path, shard_cells
from vitbench.store.results import ResultsStore, load_results

SUITE = {
    "name": "shards",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 30},
    "models": [{"name": "vitbench_demo_vit", "weights": "random"}],
    "methods": ["dense", "tome", "evit"],
    "keep_ratios": [0.5],
    "noises": ["clean", {"name": "gaussian-noise", "levels": [3]}],
    "batch_size": 8,
    "bootstrap": 50,
    "throughput": False,
    "cache_dir": "off",
}
COMPARED = [
    "cell_key",
    "top1",
    "top5",
    "nll",
    "ece",
    "gmacs",
    "n_samples",
    "tokens_per_block",
    "setting",
    "error",
]


def _frame(path: Path) -> object:
    return load_results(path).sort_values("cell_key").reset_index(drop=True)[COMPARED]


def _run(suite: Path, results: Path, *extra: str) -> int:
    return main(["run", str(suite), "--no-progress", "--output-dir", "", "--results", str(results), *extra])


def test_parse_shard() -> None:
    assert parse_shard("1/4") == (1, 4, 1)
    assert parse_shard("auto", {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (3, 8, 1)
    assert parse_shard("auto", {"SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0"}) == (2, 4, 0)
    assert parse_shard("auto", {}) == (0, 1, 0)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(VitbenchError, match="--shard"):
            parse_shard(bad)
    assert shard_cells(list(range(7)), 1, 3) == [1, 4]
    assert results_path("r/run-{shard}.sqlite", 1, 3) == "r/run-1-of-3.sqlite"


def test_shards_merge_to_the_single_run(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    assert _run(suite, tmp_path / "one.sqlite") == 0
    for i in range(2):
        assert _run(suite, tmp_path / "part-{shard}.sqlite", "--shard", f"{i}/2") == 0
    parts = [tmp_path / "part-0-of-2.sqlite", tmp_path / "part-1-of-2.sqlite"]
    sizes = [len(load_results(p)) for p in parts]
    assert sizes == [3, 3]  # 6 cells (3 methods x 2 noises) round-robin
    res = merge_stores(tmp_path / "all.sqlite", parts)
    assert (res.added, res.replaced, res.kept, res.disagreements) == (6, 0, 0, [])
    a, b = _frame(tmp_path / "one.sqlite"), _frame(tmp_path / "all.sqlite")
    assert a.equals(b), a.compare(b) if a.shape == b.shape else (a.shape, b.shape)
    again = merge_stores(tmp_path / "all.sqlite", parts)  # idempotent
    assert (again.added, again.kept) == (0, 6)


def test_merge_prefers_success_and_flags_disagreement(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "a.sqlite") as s:
        s.write({"cell_key": "k1", "top1": 50.0})
        s.write({"cell_key": "k2", "error": "VitbenchError: boom"})
    with ResultsStore(tmp_path / "b.sqlite") as s:
        s.write({"cell_key": "k1", "top1": 51.0})
        s.write({"cell_key": "k2", "top1": 70.0})
        s.write({"cell_key": "k3", "top1": 10.0})
    res = merge_stores(tmp_path / "a.sqlite", [tmp_path / "b.sqlite"])
    assert (res.added, res.replaced, res.kept) == (1, 1, 1) and "k1" in res.disagreements[0]
    df = load_results(tmp_path / "a.sqlite").set_index("cell_key")
    assert df.loc["k1", "top1"] == 50.0 and df.loc["k2", "top1"] == 70.0 and df["error"].isna().all()
    (tmp_path / "junk.sqlite").write_text("not sqlite")
    with pytest.raises(VitbenchError):
        merge_stores(tmp_path / "c.sqlite", [tmp_path / "junk.sqlite"])
    assert main(["merge", str(tmp_path / "d.sqlite"), str(tmp_path / "missing.sqlite")]) == 2


@pytest.mark.distributed
def test_two_processes_shard_cells_into_one_store(tmp_path: Path) -> None:
    """`accelerate launch -n 2 ... --shard auto`: each process runs half the cells on all data."""
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    assert _run(suite, tmp_path / "one.sqlite") == 0
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd = [*launch, "-m", "vitbench.cli.main", "run", str(suite), "--no-progress", "--shard", "auto"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # --multi_gpu: torchrun workers, CPU here
    proc = subprocess.run(
        [*cmd, "--results", str(tmp_path / "two.sqlite")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "shard 0/2" in proc.stdout and "shard 1/2" in proc.stdout
    a, b = _frame(tmp_path / "one.sqlite"), _frame(tmp_path / "two.sqlite")
    assert a.equals(b), a.compare(b) if a.shape == b.shape else (a.shape, b.shape)


@pytest.mark.distributed
def test_two_processes_on_a_folder_dataset(tmp_path: Path) -> None:
    """Data-parallel over files: DataLoader workers in 2 processes give the 1-process records."""
    from PIL import Image

    from vitbench.data import load_dataset

    demo = load_dataset("mnist-demo", split="test", limit=33)  # odd: padding must be dropped
    for img, label, sid in zip(demo.images, demo.labels, demo.sample_ids):
        folder = tmp_path / "digits" / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{int(sid)}.png")
    spec = {**SUITE, "dataset": {"name": "image-folder", "split": "test", "root": str(tmp_path / "digits")}}
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(spec))
    assert _run(suite, tmp_path / "one.sqlite") == 0
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd = [*launch, "-m", "vitbench.cli.main", "run", str(suite), "--no-progress", "--output-dir", ""]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "VITBENCH_WORKERS": "1"}
    proc = subprocess.run(
        [*cmd, "--results", str(tmp_path / "two.sqlite")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _frame(tmp_path / "one.sqlite"), _frame(tmp_path / "two.sqlite")
    assert (a["n_samples"] == 33).all() and a["error"].isna().all()
    # the padded last batch has another size in each process count: logits may differ in the last
    # float bits (another GEMM shape), so NLL/ECE are compared to 1e-5; predictions exactly
    exact = [c for c in COMPARED if c not in ("nll", "ece")]
    assert a[exact].equals(b[exact]), a[exact].compare(b[exact])
    assert np.allclose(
        a[["nll", "ece"]].to_numpy(float), b[["nll", "ece"]].to_numpy(float), rtol=1e-5, atol=1e-6
    )
