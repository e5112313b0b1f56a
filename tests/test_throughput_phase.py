"""Throughput is timed in a quiet phase after every cell is evaluated, once per setting."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from vbtest import TINY_SUITE
from vitbench.harness import costs as costs_module
from vitbench.harness import runner
from vitbench.harness.runner import Harness
from vitbench.harness.suites import expand, suite_from_dict
from vitbench.store.results import load_results

SUITE = {
    **TINY_SUITE,
    "keep_ratios": [0.7],
    "noises": ["clean", {"name": "gaussian-noise", "levels": [1]}],
    "throughput": {"batch_size": 2, "warmup": 1, "repeats": 1, "threads": 1},
}


def test_timings_follow_every_evaluation_once_per_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_cell, real_time = runner.Harness.run_cell, costs_module.measure_throughput

    def cell(self: Any, c: Any) -> Any:
        events.append("eval")
        return real_cell(self, c)

    def timed(*a: Any, **k: Any) -> Any:
        events.append("time")
        return real_time(*a, **k)

    monkeypatch.setattr(runner.Harness, "run_cell", cell)
    monkeypatch.setattr(costs_module, "measure_throughput", timed)
    suite = suite_from_dict(SUITE)
    h = Harness(suite, str(tmp_path / "r.sqlite"), progress=False, log=lambda _m: None, cache=False)
    assert h.run(expand(suite)).failed == 0
    h.close()
    assert events == ["eval"] * 4 + ["time"] * 2  # 2 methods x 2 noises; one timing per setting
    df = load_results(tmp_path / "r.sqlite")
    assert (df["img_per_s"] > 0).all() and (df["batch_size"] == 2).all()
    by_setting = df.groupby("method")["img_per_s"].nunique()
    assert (by_setting == 1).all()  # the cells of one setting share its timing


def test_records_left_without_timings_get_them_on_resume(tmp_path: Path) -> None:
    suite = suite_from_dict(SUITE)
    path = tmp_path / "r.sqlite"
    h = Harness(suite, str(path), progress=False, log=lambda _m: None, cache=False)
    h.run(expand(suite))
    h.close()
    with sqlite3.connect(path) as conn:  # as if the run had stopped before its timings
        conn.execute("UPDATE records SET img_per_s = NULL, ms_per_batch = NULL WHERE method = 'evit'")
    h = Harness(suite, str(path), progress=False, log=lambda _m: None, cache=False)
    summary = h.run(expand(suite))
    h.close()
    assert summary.skipped == 4 and summary.done == 0
    assert (load_results(path)["img_per_s"] > 0).all()
