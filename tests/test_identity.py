"""Results keyed by what was measured: weights digests, method versions, label order, lazy stores."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from vbtest import TINY_SUITE
from vitbench.cli.main import main
from vitbench.core import digests, method_index
from vitbench.core.digests import file_digest, state_digest, weights_digest
from vitbench.core.specs import ModelSpec
from vitbench.data.classes import class_list_digest, dataset_class_digest
from vitbench.harness.runner import Harness
from vitbench.harness.suites import expand, suite_from_dict
from vitbench.methods import METHODS
from vitbench.store.records import current_records
from vitbench.store.results import ResultsStore, load_results

DENSE_ONLY = {**TINY_SUITE, "methods": ["dense"], "keep_ratios": [1.0]}


def _suite(weights: str, **changes: Any) -> Any:
    d = dict(DENSE_ONLY)
    d["models"] = [{"name": "vitbench_demo_vit", "weights": weights}]
    return suite_from_dict({**d, **changes})


def _run(suite: Any, results: Path) -> Any:
    h = Harness(suite, str(results), progress=False, log=lambda _m: None, cache=False)
    try:
        return h.run(expand(suite))
    finally:
        h.close()


def _demo_checkpoint(path: Path, scale: float = 1.0) -> None:
    from vitbench.core.demo import load_demo_model

    state = load_demo_model().state_dict()
    if scale != 1.0:
        state = {k: v * scale if k.startswith("head.") else v for k, v in state.items()}
    torch.save(state, path)


def test_file_digest_is_content_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    first = file_digest(f)
    assert len(first) == 16 and first == file_digest(tmp_path / "w.bin")
    digests._MEMORY.clear()  # a new process: the disk cache answers without reading the file
    monkeypatch.setattr(digests.hashlib, "sha256", lambda: (_ for _ in ()).throw(AssertionError("re-hashed")))
    assert file_digest(f) == first
    monkeypatch.undo()
    f.write_bytes(b"b" * 1000)  # same name and size, new content (new modification time)
    assert file_digest(f) != first
    with pytest.raises(Exception, match=r"cannot read weights file .*missing"):
        file_digest(tmp_path / "missing")


def test_weights_digest_of_each_source(tmp_path: Path) -> None:
    from vitbench.core.demo import default_weights_path

    assert weights_digest(ModelSpec("vit_tiny_patch16_224", "random")) == "random"
    assert weights_digest(ModelSpec("vitbench_demo_vit", "demo")) == file_digest(default_weights_path())
    f = tmp_path / "w.pth"
    _demo_checkpoint(f)
    assert weights_digest(ModelSpec("vitbench_demo_vit", str(f))) == file_digest(f)
    hub_file = tmp_path / "model.safetensors"
    hub_file.write_bytes(b"weights of one revision")
    spec = ModelSpec("deit_small_patch16_224.fb_in1k", "hub")
    assert weights_digest(spec, resolve_hub=lambda _n: str(hub_file)) == file_digest(hub_file)
    assert weights_digest(spec, resolve_hub=lambda _n: None) is None  # digested after loading
    a = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
    assert state_digest(a) == state_digest(dict(reversed(a.items())))
    assert state_digest(a) != state_digest({**a, "b": torch.ones(3)})


def test_rewritten_checkpoint_is_evaluated_again_and_kept_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, results = tmp_path / "w.pth", tmp_path / "r.sqlite"
    _demo_checkpoint(ckpt)
    suite = _suite(str(ckpt))
    first = _run(suite, results)
    assert (first.done, first.skipped) == (1, 0)
    assert _run(suite, results).skipped == 1  # same content: resumed
    _demo_checkpoint(ckpt, scale=-1.0)  # retrained under the same file name
    again = _run(suite, results)
    assert (again.done, again.skipped) == (1, 0)  # re-evaluated, never resumed from the old record
    df = load_results(results)
    assert len(df) == 2 and df["weights_digest"].nunique() == 2
    assert df["top1"].iloc[0] != df["top1"].iloc[1]
    shown, notes = current_records(df)
    assert shown["weights"].nunique() == 2 and all("(" in w for w in shown["weights"])
    assert len(notes) == 1 and "different weight contents" in notes[0] and "\n" not in notes[0]
    assert main(["leaderboard", "--results", str(results), "--view", "main"]) == 0
    err = capsys.readouterr().err
    assert "kept apart" in err


def test_new_method_version_is_evaluated_again_and_old_rows_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "r.sqlite"
    suite = _suite("demo")
    assert _run(suite, results).done == 1
    dense = METHODS.get("dense")
    monkeypatch.setattr(dense, "version", dense.version + 1)
    real = method_index.method_info  # the shipped index follows the classes (tests/test_startup.py)
    monkeypatch.setattr(
        "vitbench.store.records.method_info",
        lambda n: dataclasses.replace(real(n), version=dense.version) if n == "dense" else real(n),
    )
    again = _run(suite, results)
    assert (again.done, again.skipped) == (1, 0)
    df = load_results(results)
    assert sorted(df["method_version"].tolist()) == [dense.version - 1, dense.version]
    shown, notes = current_records(df)
    assert len(shown) == 1 and int(shown["method_version"].iloc[0]) == dense.version
    assert len(notes) == 1 and "earlier method version" in notes[0] and "dense (version 1" in notes[0]


def test_store_of_an_earlier_release_is_readable_and_re_evaluated(tmp_path: Path) -> None:
    """Rows without content columns (written before digests) are shown apart, never resumed."""
    results = tmp_path / "r.sqlite"
    suite = _suite("demo")
    assert _run(suite, results).done == 1
    with sqlite3.connect(results) as conn:  # what an earlier release wrote: spec-only key, no content
        (cell,) = expand(suite)
        conn.execute(
            "UPDATE records SET cell_key = ?, weights_digest = NULL, method_version = NULL, "
            "labels_digest = NULL, top1 = 12.5",
            (cell.key(),),
        )
    old = load_results(results)
    assert _run(suite, results).done == 1  # not resumed from the spec-only key
    df = load_results(results)
    assert len(df) == 2
    shown, notes = current_records(df)
    digest = weights_digest(ModelSpec("vitbench_demo_vit", "demo"))
    assert sorted(shown["weights"]) == [f"demo ({digest[:8]})", "demo (digest unrecorded)"]
    assert len(notes) == 2 and "digest unrecorded" in notes[0] and "labels unrecorded" in notes[1]
    assert len(old) == 1


def test_label_order_is_part_of_the_key(tmp_path: Path) -> None:
    assert class_list_digest(["0", "1", "10", "2"]) != class_list_digest(["0", "1", "2", "10"])
    suite = _suite("demo")
    h = Harness(suite, str(tmp_path / "r.sqlite"), progress=False, log=lambda _m: None, cache=False)
    (cell,) = expand(suite)
    key = h.cell_key(cell)
    h._labels = class_list_digest(["b", "a"])
    assert h.cell_key(cell) != key
    assert cell.key() != key  # the spec alone is not the store key
    assert not (tmp_path / "r.sqlite").exists()  # a harness opens its store at the first record


def test_refused_run_creates_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.yaml"
    bad = dict(DENSE_ONLY)
    bad["models"] = [{"name": "vitbench_demo_vit", "weights": str(tmp_path / "missing.pth")}]
    suite.write_text(yaml.safe_dump(bad))
    results = tmp_path / "out" / "r.sqlite"
    assert main(["run", str(suite), "--results", str(results), "--no-progress"]) == 2
    assert "missing.pth" in capsys.readouterr().err
    assert not results.exists()


def test_content_columns_are_recorded(tmp_path: Path) -> None:
    results = tmp_path / "r.sqlite"
    _run(_suite("demo"), results)
    with ResultsStore(results, readonly=True) as store:
        row = store.frame().iloc[0]
    from vitbench.data import load_dataset

    data = load_dataset("mnist-demo", split="test", limit=16)
    assert row["weights_digest"] == weights_digest(ModelSpec("vitbench_demo_vit", "demo"))
    assert int(row["method_version"]) == METHODS.get("dense").version
    assert row["labels_digest"] == dataset_class_digest(data)
