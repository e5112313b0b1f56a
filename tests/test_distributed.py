"""Two CPU processes under ``accelerate launch`` give the same records as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vitbench.store.results import load_results

SUITE = {
    "name": "dist",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 45},  # odd count: padding is dropped
    "models": [{"name": "vitbench_demo_vit", "weights": "random"}],
    "methods": ["dense", "tome", "evit", "random-tokens"],
    "keep_ratios": [0.5],
    "noises": ["clean", {"name": "gaussian-noise", "levels": [3]}],
    "selections": ["scored", "random"],
    "batch_size": 8,
    "bootstrap": 100,
    "throughput": False,
}
COMPARED = [
    "cell_key",
    "top1",
    "top5",
    "nll",
    "ece",
    "top1_ci_low",
    "top1_ci_high",
    "gmacs",
    "n_samples",
    "tokens_per_block",
    "setting",
    "error",
]


@pytest.mark.distributed
def test_two_processes_match_one(tmp_path: Path) -> None:
    suite = tmp_path / "dist.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    one, two = tmp_path / "one.sqlite", tmp_path / "two.sqlite"
    base = ["-m", "vitbench", "run", str(suite), "--no-progress", "--results"]
    subprocess.run([sys.executable, *base, str(one)], check=True, capture_output=True, cwd=tmp_path)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        # --multi_gpu: torchrun workers (gloo on CPU here). `--cpu` would launch ONE process.
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # two CPU processes even on a GPU machine
    proc = subprocess.run([*launch, *base, str(two)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = load_results(one).sort_values("cell_key").reset_index(drop=True)[COMPARED]
    b = load_results(two).sort_values("cell_key").reset_index(drop=True)[COMPARED]
    assert len(a) == 12 and a["n_samples"].eq(45).all()
    assert a["error"].isna().all()
    assert a.equals(b), a.compare(b) if a.shape == b.shape else (a.shape, b.shape)
