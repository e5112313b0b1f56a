"""``vitbench recount`` repairs GMACs written by an older counter and touches nothing else."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vitbench.cli.main import main
from vitbench.measure import COUNTER_VERSION
from vitbench.store.records import counter_warning
from vitbench.store.results import load_results

SUITE = {
    "name": "recount-tiny",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 8},
    "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
    "methods": ["dense", "tome", "evit", "dynamicvit", "random-channels"],
    "keep_ratios": [0.7],
    "noises": ["clean"],
    "batch_size": 8,
    "bootstrap": 10,
    "throughput": {"enabled": False},
    "calib": {"n_images": 8, "batch_size": 8},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("recount")
    suite = root / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    results = root / "r.sqlite"
    assert main(["run", str(suite), "--results", str(results), "--no-progress"]) == 0
    return suite, results


def _copy(src: Path, dst: Path) -> None:
    """Copy a WAL-mode store whole (the -wal file holds the latest pages)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def _as_counter_1(path: Path) -> None:
    """What a store written by counter 1 on torch 2.14 looks like: attention missing, no version."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE records SET gmacs = gmacs * 0.92, params_m = params_m + 1, gmacs_counter = NULL")


def test_recount_restores_the_true_counts_and_nothing_else(
    store: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite, original = store
    truth = load_results(original)
    assert set(truth["gmacs_counter"]) == {COUNTER_VERSION}
    broken = tmp_path / "broken.sqlite"
    _copy(original, broken)
    _as_counter_1(broken)
    before = load_results(broken)

    assert main(["recount", str(broken), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "5 successful records" in out and "would rewrite 4" in out
    assert "not recounted" in out and "random-channels" in out  # its suite file is not packaged
    pd.testing.assert_frame_equal(load_results(broken), before)  # dry run wrote nothing

    assert main(["recount", str(broken), "--suite", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "rewrote 5" in out and "0 could not be rebuilt" in out
    assert "+8.70 %" in out  # the demo's attention share that counter 1 missed (0.92 -> 1.0)
    pd.testing.assert_frame_equal(load_results(broken), truth, check_exact=True)


def test_channel_record_without_its_suite_is_left_untouched(store: tuple[Path, Path], tmp_path: Path) -> None:
    _, original = store
    broken = tmp_path / "broken.sqlite"
    _copy(original, broken)
    _as_counter_1(broken)
    before = load_results(broken)
    assert main(["recount", str(broken)]) == 0
    after = load_results(broken)
    channel = after["method"] == "random-channels"
    pd.testing.assert_series_equal(after.loc[channel, "gmacs"], before.loc[channel, "gmacs"])
    assert after.loc[channel, "gmacs_counter"].isna().all()
    assert (after.loc[~channel, "gmacs_counter"] == COUNTER_VERSION).all()


def test_mixed_counter_versions_are_warned_about(
    store: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, original = store
    assert counter_warning(load_results(original)) is None
    mixed = tmp_path / "mixed.sqlite"
    _copy(original, mixed)
    with sqlite3.connect(mixed) as conn:
        conn.execute("UPDATE records SET gmacs_counter = NULL WHERE method = 'tome'")
    for command in ("leaderboard", "compare"):  # every command that reads a store warns, once
        assert main([command, "--results", str(mixed)]) == 0
        err = capsys.readouterr().err
        assert err.count("mix GMACs counter versions 1, 2") == 1, (command, err)
        assert f"vitbench recount {mixed}" in err


def test_recount_of_a_missing_store_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recount", str(tmp_path / "nope.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: results file") and "does not exist" in err[0]


def test_recount_of_a_fresh_store_changes_nothing(
    store: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Run and recount count the same: trained parts (DynamicViT predictors) included in params."""
    suite, original = store
    before = load_results(original)
    assert main(["recount", str(original), "--suite", str(suite), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "0 with a different gmacs/params_m; would rewrite 0;" in out, out
    pd.testing.assert_frame_equal(load_results(original), before)
