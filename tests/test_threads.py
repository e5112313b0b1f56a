"""Evaluation threads: automatic rule, --threads / threads: validation, records, restore, equal numbers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch
import yaml

from vitbench.cli.main import main
from vitbench.core.errors import VitbenchError
from vitbench.core.threads import (
    SMALL_WORK_GMACS,
    auto_threads,
    check_threads,
    intra_op_threads,
    local_processes,
    thread_count,
    usable_cores,
)
from vitbench.harness.runner import Harness
from vitbench.harness.scaleout import merge_stores
from vitbench.harness.suites import expand, suite_from_dict
from vitbench.store.records import RECORD_FIELDS
from vitbench.store.results import ResultsStore, config_hash, load_results

SUITE = {
    "name": "threads",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 60},
    "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
    "methods": ["dense", "evit", "tome"],
    "keep_ratios": [0.5],
    "noises": ["clean", {"name": "gaussian-noise", "levels": [3]}],
    "batch_size": 25,
    "bootstrap": 20,
    "throughput": {"batch_size": 4, "warmup": 0, "repeats": 1},
}


def test_rule_small_work_one_thread_large_work_all_cores() -> None:
    assert auto_threads(0.018, 250, cores=8) == 1  # the demo: 4.5 GMACs per batch
    assert auto_threads(4.6, 128, cores=8) == 8  # DeiT-S at batch 128: 589 GMACs per batch
    assert auto_threads(4.6, 1, cores=8) == 1  # batch 1 latency: 4.6 GMACs
    assert auto_threads(SMALL_WORK_GMACS / 10, 10, cores=3) == 3  # the threshold itself: cores
    assert usable_cores(1) >= 1 and usable_cores(10**6) == 1


def test_local_processes_from_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert local_processes(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert local_processes(8) == 2  # 8 processes on 4 machines: 2 share this one


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_bad_thread_counts_are_one_line_errors(bad: object) -> None:
    with pytest.raises(VitbenchError, match=r"threads must be a positive integer or auto, got .*; use"):
        check_threads(bad, "--threads", "use --threads 1")
    assert check_threads(None, "x", "") is None and check_threads("auto", "x", "") is None
    assert check_threads(3, "x", "") == 3


def test_intra_op_threads_restores_the_callers_setting() -> None:
    old = torch.get_num_threads()
    with intra_op_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == old
    with pytest.raises(RuntimeError), intra_op_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == old


def test_suite_keys_validated_and_not_in_config_hash() -> None:
    base = suite_from_dict(SUITE)
    fixed = suite_from_dict({**SUITE, "threads": 2, "throughput": {**SUITE["throughput"], "threads": 1}})
    assert (base.threads, base.throughput.threads) == (None, None)
    assert (fixed.threads, fixed.throughput.threads) == (2, 1)
    assert config_hash(base.to_dict()) == config_hash(fixed.to_dict())  # threads are not a result
    assert [c.key() for c in expand(base)] == [c.key() for c in expand(fixed)]
    with pytest.raises(VitbenchError, match="threads must be a positive integer or auto, got 0; set"):
        suite_from_dict({**SUITE, "threads": 0})
    with pytest.raises(VitbenchError, match=r"throughput.threads must be .* got -2"):
        suite_from_dict({**SUITE, "throughput": {"threads": -2}})


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_cli_threads_flag_one_line_exit_2_before_any_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    results = tmp_path / "r.sqlite"
    assert main(["run", str(suite), "--results", str(results), "--threads", value, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --threads must be a positive integer or auto") and "\n" not in err
    assert "--threads 1" in err and not results.exists()
    assert main(["bench-contention", "--threads", value]) == 2


def test_auto_choice_for_the_demo_model(tmp_path: Path) -> None:
    h = Harness(suite_from_dict(SUITE), str(tmp_path / "r.sqlite"), progress=False, log=lambda _m: None)
    assert h.threads_for(h.suite.models[0]) == (1, 1)  # 0.018 GMACs x 25 and x 4: small work
    lines: list[str] = []
    fixed = suite_from_dict({**SUITE, "threads": 2, "throughput": False})
    h = Harness(fixed, str(tmp_path / "f.sqlite"), progress=False, log=lines.append)
    assert h.threads_for(fixed.models[0]) == (2, 1) and not h._models  # nothing to count
    assert lines == [f"vitbench_demo_vit: evaluation on 2 thread(s) (set); {usable_cores()} usable core(s)"]


def _run(tmp_path: Path, name: str, threads: int | None) -> tuple[Harness, object]:
    suite = suite_from_dict({**SUITE, "threads": threads})
    h = Harness(suite, str(tmp_path / f"{name}.sqlite"), progress=False, log=lambda _m: None)
    keep = {("dense", "clean"), ("evit", "gaussian-noise"), ("tome", "clean")}
    cells = [c for c in expand(suite) if (c.method.name, c.noise.name) in keep]
    summary = h.run(cells)
    assert summary.failed == 0, summary.errors
    return h, load_results(tmp_path / f"{name}.sqlite").sort_values("cell_key").reset_index(drop=True)


def test_one_and_two_threads_give_identical_numbers(tmp_path: Path) -> None:
    """Thread count changes wall times and img/s only: same top-1, NLL, ECE, GMACs and logits."""
    old = torch.get_num_threads()
    h1, one = _run(tmp_path, "one", 1)
    h2, two = _run(tmp_path, "two", 2)
    assert torch.get_num_threads() == old  # the caller's setting is restored after each run
    assert len(one) == 3 and list(one["eval_threads"]) == [1] * 3 and list(two["eval_threads"]) == [2] * 3
    assert list(two["threads"]) == [1] * 3  # throughput (4 images) keeps its own, automatic, count
    for col in ("cell_key", "top1", "top5", "nll", "ece", "top1_ci_low", "top1_ci_high", "gmacs"):
        assert one[col].tolist() == two[col].tolist(), col
    assert one["tokens_per_block"].tolist() == two["tokens_per_block"].tolist()
    # logits of the harness's own evaluation, bit for bit
    from vitbench.core.models import data_config
    from vitbench.methods.base import token_method

    cell = next(c for c in expand(h1.suite) if c.method.name == "evit" and c.noise.name != "clean")
    model = h1.model(cell.model)
    cfg = data_config(model)
    cls = token_method("evit")
    params = cls.params_for(cell.keep_ratio, model)
    logits = []
    for n in (1, 2):
        with intra_op_threads(n), cls.apply(model, params) as handle:
            logits.append(h1.evaluate(model, handle, h1.images(cell, cfg), cfg)[0])
    assert torch.equal(logits[0], logits[1])


def test_store_without_eval_threads_gains_the_column(tmp_path: Path) -> None:
    """A store written before ``eval_threads`` existed opens, reads NULL, and merges."""
    old = tmp_path / "old.sqlite"
    cols = {k: v for k, v in RECORD_FIELDS.items() if k != "eval_threads"}
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(f"CREATE TABLE records ({', '.join(f'{k} {v}' for k, v in cols.items())})")
    conn.execute("INSERT INTO records (cell_key, top1, threads) VALUES ('k1', 90.0, 2)")
    conn.commit()
    conn.close()
    df = load_results(old)  # read-only: the column reads as NULL
    assert list(df.columns) == list(RECORD_FIELDS) and df["eval_threads"].isna().all()
    merged = tmp_path / "merged.sqlite"
    assert merge_stores(merged, [old]).added == 1
    assert load_results(merged)["top1"].tolist() == [90.0]
    with ResultsStore(old) as store:  # writable: the column is added, old rows keep NULL
        store.write({"cell_key": "k2", "top1": 80.0, "threads": 1, "eval_threads": 1})
    df = load_results(old)
    assert df["eval_threads"].isna().tolist() == [True, False] and df["threads"].tolist() == [2, 1]


def test_thread_count_reads_as_words() -> None:
    assert [thread_count(1), thread_count(4), thread_count("1/2")] == ["1 thread", "4 threads", "1/2 threads"]
