"""Cell-parallel worker processes: the default run uses idle cores and writes the same records."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vbtest import TINY_SUITE
from vitbench.cli.main import main
from vitbench.core.errors import VitbenchError
from vitbench.harness.workers import plan_workers
from vitbench.store.results import load_results

#: Columns that depend on the process (times, threads, provenance), not on what was measured.
PROCESS_COLUMNS = ("wall_s", "timestamp", "eval_threads", "threads", "img_per_s", "ms_per_batch")


def test_plan_uses_idle_cores_only_when_numbers_cannot_change() -> None:
    base = dict(cells=10, eval_threads=1, cores=2, throughput=False, launched=False, gpu=False)
    assert plan_workers(None, **base).count == 2
    assert plan_workers(None, **{**base, "cores": 8, "cells": 3}).count == 3
    for change, why in (
        ({"throughput": True}, "throughput"),
        ({"eval_threads": 2}, "2 threads"),
        ({"launched": True}, "launch"),
        ({"gpu": True}, "GPU"),
        ({"cells": 1}, "fewer than two"),
        ({"cores": 1}, "one usable core"),
    ):
        plan = plan_workers(None, **{**base, **change})
        assert plan.count == 1 and why in plan.why, (change, plan)
    assert plan_workers(3, **{**base, "cells": 2}).count == 2
    with pytest.raises(VitbenchError, match="positive"):
        plan_workers(0, **base)
    with pytest.raises(VitbenchError, match="GPU"):
        plan_workers(2, **{**base, "gpu": True})


def test_two_workers_write_the_records_of_one_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump({**TINY_SUITE, "keep_ratios": [1.0, 0.7, 0.5]}))  # 4 cells, one reused
    one, two = tmp_path / "one.sqlite", tmp_path / "two.sqlite"
    assert main(["run", str(suite), "--results", str(one), "--workers", "1", "--output-dir", ""]) == 0
    assert main(["run", str(suite), "--results", str(two), "--workers", "2", "--output-dir", ""]) == 0
    out = capsys.readouterr()
    assert "workers: set by --workers" in out.out + out.err
    assert "done: 4 evaluated, 0 resumed, 0 failed" in out.out
    a, b = (load_results(p).sort_values("cell_key").reset_index(drop=True) for p in (one, two))
    assert len(a) == len(b) == 4 and a["reused_from"].notna().sum() == 1
    keep = [c for c in a.columns if c not in PROCESS_COLUMNS]
    assert a[keep].equals(b[keep])
    assert main(["run", str(suite), "--results", str(two), "--workers", "2", "--output-dir", ""]) == 0
    assert "done: 0 evaluated, 4 resumed" in capsys.readouterr().out  # nothing left: no workers


def test_bad_workers_value_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(TINY_SUITE))
    assert main(["run", str(suite), "--results", str(tmp_path / "r.sqlite"), "--workers", "two"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --workers 'two'") and "\n" not in err
