from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import vitbench
from vitbench.core.errors import VitbenchError
from vitbench.store.records import RECORD_FIELDS, SCHEMA_VERSION
from vitbench.store.results import ResultsStore, config_hash, decode_json, load_results, provenance

SRC = str(Path(vitbench.__file__).resolve().parent.parent)


def rec(key: str, **values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "cell_key": key,
        "model": "vit_s",
        "method": "tome",
        "keep_ratio": 0.7,
        "seed": 0,
        "top1": 79.5,
        "gmacs": 3.4,
        "params_json": {"r": 8, "prop_attn": True},
        "tokens_per_block": [197, 189, 181],
    }
    base.update(values)
    return base


def test_round_trip_types(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "results.sqlite"
    with ResultsStore(path) as store:
        store.write(rec("a"))
        store.write(
            rec(
                "b",
                top1=np.float32(70.25),
                seed=np.int64(3),
                keep_ratio=1,
                gmacs=np.array(2.5),
                tokens_per_block=np.arange(3),
            )
        )
    df = load_results(path)
    assert list(df.columns) == list(RECORD_FIELDS)
    assert list(df["cell_key"]) == ["a", "b"]
    for name, kind in RECORD_FIELDS.items():
        if kind == "REAL":
            assert df[name].dtype == np.float64, name
    assert df["top1"].tolist() == [79.5, 70.25]
    assert df["keep_ratio"].tolist() == [0.7, 1.0]
    assert df["gmacs"].tolist() == [3.4, 2.5]
    assert df["seed"].tolist() == [0, 3]
    assert df["nll"].isna().all()  # missing keys -> NULL -> NaN
    assert df["error"].isna().all()
    assert decode_json(df.loc[0, "params_json"]) == {"prop_attn": True, "r": 8}
    assert df.loc[0, "params_json"] == json.dumps({"r": 8, "prop_attn": True}, sort_keys=True)
    assert json.loads(df.loc[1, "tokens_per_block"]) == [0, 1, 2]
    assert decode_json(df.loc[0, "nll"]) is None
    assert vitbench.load_results(str(path)).shape == (2, len(RECORD_FIELDS))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert (
            conn.execute("SELECT typeof(top1), typeof(seed) FROM records").fetchall()
            == [("real", "integer")] * 2
        )


def test_insert_or_replace_and_done_keys(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as store:
        store.write(rec("a"))
        store.write(rec("b", top1=None, error="RuntimeError: CUDA out of memory"))
        store.write(rec("c"))
        assert store.done_keys() == {"a", "c"}
        store.write(rec("b", top1=78.0))  # re-run of the failed cell replaces it
        assert store.done_keys() == {"a", "b", "c"}
        df = store.frame()
    assert len(df) == 3
    assert df.set_index("cell_key").loc["b", "top1"] == 78.0
    assert df["error"].isna().all()


def test_write_validation(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(ValueError, match="unknown record field"):
            store.write(rec("a", accuracy=1.0))
        with pytest.raises(ValueError, match="top1"):
            store.write(rec("a", top1="79.5"))
        with pytest.raises(ValueError, match="seed"):
            store.write(rec("a", seed="0"))
        with pytest.raises(ValueError, match="seed"):
            store.write(rec("a", seed=0.5))
        with pytest.raises(ValueError, match="top1"):
            store.write(rec("a", top1=np.array([1.0, 2.0])))
        with pytest.raises(ValueError, match="top1"):
            store.write(rec("a", top1=True))
        with pytest.raises(ValueError, match="model"):
            store.write(rec("a", model=3))
        with pytest.raises(ValueError, match="params_json"):
            store.write(rec("a", params_json="{not json"))
        with pytest.raises(ValueError, match="cell_key"):
            store.write({"top1": 1.0})
        assert store.frame().empty


def test_schema_version_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ResultsStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(VitbenchError, match="schema version 999.*new results path") as info:
        ResultsStore(path)
    assert "\n" not in str(info.value)
    with pytest.raises(VitbenchError, match="schema version 999"):
        load_results(path)


def test_unwritable_and_foreign_paths(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("I am a file")
    with pytest.raises(VitbenchError, match="--results") as info:
        ResultsStore(blocker / "sub" / "r.sqlite")
    assert str(blocker) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(VitbenchError, match="not a writable SQLite database"):
        ResultsStore(blocker)  # a regular file that is not a database
    with pytest.raises(VitbenchError, match="directory"):
        ResultsStore(tmp_path)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE stuff (x INTEGER)")
    with pytest.raises(VitbenchError, match="not a vitbench results store"):
        ResultsStore(other)


def test_load_results_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VitbenchError, match="does not exist"):
        load_results(tmp_path / "nope.sqlite")
    assert not (tmp_path / "nope.sqlite").exists()


def test_resume_after_simulated_crash(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {SRC!r})
        from vitbench.store.results import ResultsStore
        store = ResultsStore({str(path)!r})
        for i in range(5):
            if i == 3:
                os._exit(1)  # crash: no close, no cleanup
            store.write({{"cell_key": f"cell{{i}}", "top1": 70.0 + i, "seed": i}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    with ResultsStore(path) as store:
        assert store.done_keys() == {"cell0", "cell1", "cell2"}
        store.write({"cell_key": "cell3", "top1": 73.0, "seed": 3})  # resume appends
    df = load_results(path)
    assert df["top1"].tolist() == [70.0, 71.0, 72.0, 73.0]


def test_frame_of_empty_store(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.sqlite") as store:
        df = store.frame()
    assert isinstance(df, pd.DataFrame) and df.empty and list(df.columns) == list(RECORD_FIELDS)


def test_provenance_and_config_hash() -> None:
    prov = provenance()
    assert set(prov) == {
        "vitbench_version",
        "torch_version",
        "timm_version",
        "gmacs_counter",
        "git_commit",
        "device",
        "timestamp",
    }
    assert prov["vitbench_version"] == vitbench.__version__
    assert all(isinstance(v, str) and v for v in prov.values())
    assert prov["timestamp"].endswith("+00:00")
    h = config_hash({"b": 1, "a": [1, 2], "p": Path("x")})
    assert h == config_hash({"a": [1, 2], "p": Path("x"), "b": 1})
    assert len(h) == 16 and int(h, 16) >= 0
    assert h != config_hash({"b": 2, "a": [1, 2], "p": Path("x")})


def test_git_commit_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import vitbench.store.results as store_mod

    def boom(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git")

    monkeypatch.setattr(store_mod.subprocess, "run", boom)
    # no git and no commit recorded at build time (an installed wheel has vitbench.core.build_info)
    import vitbench.core

    monkeypatch.delattr(vitbench.core, "build_info", raising=False)
    monkeypatch.setitem(sys.modules, "vitbench.core.build_info", None)
    assert store_mod.provenance()["git_commit"] == "unknown"


def _old_store(path: Path, drop: str) -> None:
    """A store as an older release wrote it: every column but ``drop``."""
    cols = ", ".join(
        f'"{n}" {k}' + (" UNIQUE" if n == "cell_key" else "") for n, k in RECORD_FIELDS.items() if n != drop
    )
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute(f"CREATE TABLE records ({cols})")
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT INTO records (cell_key, top1, gmacs) VALUES ('old', 50.0, 4.25)")


def test_older_store_gains_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _old_store(path, "gmacs_counter")
    frame = load_results(path)  # read-only: the new column reads as missing
    assert list(frame.columns) == list(RECORD_FIELDS) and frame["gmacs_counter"].isna().all()
    with ResultsStore(path) as store:  # writable: the column is added, old rows kept
        store.write({"cell_key": "new", "top1": 60.0, "gmacs": 4.608, "gmacs_counter": "2"})
        df = store.frame()
    assert list(df["cell_key"]) == ["old", "new"]
    assert df["gmacs_counter"].tolist() == [None, "2"] and df["top1"].tolist() == [50.0, 60.0]


def test_store_with_unknown_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    with ResultsStore(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute('ALTER TABLE records ADD COLUMN "from_the_future" TEXT')
    with pytest.raises(VitbenchError, match="from_the_future.*new results path"):
        ResultsStore(path)
