"""Stores that survive: read-only folders, damaged pages, unsafe suite names, setup refusals, Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vitbench.cli.main import main
from vitbench.core.errors import VitbenchError
from vitbench.harness.suites import check_suite_name, load_suite
from vitbench.store.pending import PendingStore
from vitbench.store.results import DamagedStoreError, ResultsStore, load_results


def rec(key: str, **values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "cell_key": key,
        "model": "vit_s",
        "method": "dense",
        "keep_ratio": 1.0,
        "seed": 0,
        "top1": 79.5,
        "gmacs": 3.4,
        "noise": "clean",
        "level": 0.0,
        "selection": "scored",
        "suite": "s",
        "error": None,
        "params_json": {"padding": "x" * 200},  # a few rows per page: many pages
    }
    base.update(values)
    return base


def _store(path: Path, n: int) -> None:
    with ResultsStore(path) as store:
        for i in range(n):
            store.write(rec(f"k{i}", top1=float(i)))


@pytest.fixture
def read_only() -> Iterator[list[Path]]:
    """Folders made read-only by the test (made writable again afterwards, for clean-up)."""
    folders: list[Path] = []
    yield folders
    for f in folders:
        f.chmod(stat.S_IRWXU)


def _freeze(folder: Path, held: list[Path]) -> None:
    """Make ``folder`` and its files read-only; as root (permission bits do not bind), block the
    ``-shm`` index file as a read-only mount would, so SQLite cannot create it either way."""
    if os.geteuid() == 0:
        for db in folder.glob("*.sqlite"):
            os.symlink("/nonexistent/vitbench-ro", db.with_name(db.name + "-shm"))
    for f in folder.iterdir():
        if not f.is_symlink():
            f.chmod(stat.S_IRUSR)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    held.append(folder)


def test_store_in_a_read_only_folder_is_readable(tmp_path: Path, read_only: list[Path]) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    _store(folder / "r.sqlite", 3)
    content = (folder / "r.sqlite").read_bytes()
    _freeze(folder, read_only)
    df = load_results(folder / "r.sqlite")
    assert df["top1"].tolist() == [0.0, 1.0, 2.0]
    assert (folder / "r.sqlite").read_bytes() == content


def test_read_only_store_with_a_pending_log_is_read_whole(tmp_path: Path, read_only: list[Path]) -> None:
    live = tmp_path / "live.sqlite"
    store = ResultsStore(live)  # left open: its last commits are only in the -wal file
    try:
        for i in range(4):
            store.write(rec(f"k{i}", top1=float(i)))
        folder = tmp_path / "ro"
        folder.mkdir()
        shutil.copyfile(live, folder / "r.sqlite")
        shutil.copyfile(live.with_name("live.sqlite-wal"), folder / "r.sqlite-wal")
    finally:
        store.close()
    assert (folder / "r.sqlite-wal").stat().st_size > 0
    _freeze(folder, read_only)
    assert load_results(folder / "r.sqlite")["top1"].tolist() == [0.0, 1.0, 2.0, 3.0]


def _damage(path: Path) -> None:
    """Overwrite one page in the middle of the file with garbage."""
    size, page = path.stat().st_size, 4096
    assert size >= 8 * page
    with open(path, "r+b") as fh:
        fh.seek((size // page // 2) * page)
        fh.write(b"\xa5" * page)


def test_damaged_store_is_one_line_from_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.sqlite"
    _store(bad, 200)
    _damage(bad)
    with pytest.raises(DamagedStoreError, match="is damaged"):
        ResultsStore(bad, readonly=True)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmodels: [{name: vitbench_demo_vit, weights: demo}]\nmethods: [dense]\n")
    commands = [
        ["leaderboard", "--results", str(bad)],
        ["compare", "--results", str(bad)],
        ["robustness", "--results", str(bad)],
        ["merge", str(tmp_path / "out.sqlite"), str(bad)],
        ["run", str(suite), "--results", str(bad), "--no-progress"],
    ]
    for argv in commands:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: results file {bad} is damaged"), (argv, err)
        assert f"sqlite3 {bad} .recover" in err[0] and "PRAGMA integrity_check" in err[0]
    assert not (tmp_path / "out.sqlite").exists()  # merge reads its sources before creating the target


@pytest.mark.parametrize("name", ["../x/evil", "a/b", ".hidden", "x" * 300, "", "a b", "a..b"])
def test_unsafe_suite_names_are_refused_before_any_file(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(VitbenchError, match="suite name"):
        check_suite_name(name, "s.yaml")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"name: {name!r}\nmodels: [{{name: vitbench_demo_vit, weights: demo}}]\nmethods: [dense]\n"
    )
    results = tmp_path / "out" / "r.sqlite"
    assert main(["run", str(suite), "--results", str(results), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "suite name" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_good_suite_names_pass() -> None:
    for name in ("demo", "paper-deit-s", "my_suite.v2", "a+b", "x" * 100):
        assert check_suite_name(name, "s.yaml") == name
    assert load_suite("demo").name == "demo"


def test_run_refused_during_setup_creates_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nmodels: [{name: vitbench_demo_vit, weights: demo}]\nmethods: [dense]\n"
        f"dataset: {{name: image-folder, root: {tmp_path / 'no-such-folder'}}}\n"
    )
    results = tmp_path / "out" / "r.sqlite"
    assert main(["run", str(suite), "--results", str(results), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not results.exists() and not results.parent.exists()


def test_pending_store_creates_the_file_with_the_first_record(tmp_path: Path) -> None:
    path = tmp_path / "a" / "r.sqlite"
    pending = PendingStore(path)
    assert pending.done_keys() == set() and not path.exists() and not pending.created
    pending.write(rec("k0"))
    pending.close()
    assert PendingStore(path).done_keys() == {"k0"}
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VitbenchError, match="is not a folder"):
        PendingStore(blocker / "r.sqlite")


def test_ctrl_c_during_a_write_lands_after_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python's own Ctrl-C handler, as in a terminal: a shell starts background jobs (`cmd &`) with
    # SIGINT ignored, and Python then installs none
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        path = tmp_path / "r.sqlite"
        store = ResultsStore(path)
        inner = store._write

        def interrupted(*args: object) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives mid-transaction
            inner(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "_write", interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.write(rec("k0"))
        store.close()
        assert load_results(path)["cell_key"].tolist() == ["k0"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_run_is_one_line_and_exit_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vitbench.harness import runner

    def stop(self: object, cells: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.Harness, "run", stop)
    monkeypatch.setattr("vitbench.harness.preflight.preflight", lambda *a, **k: None)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmodels: [{name: vitbench_demo_vit, weights: demo}]\nmethods: [dense]\n")
    assert main(["run", str(suite), "--results", str(tmp_path / "r.sqlite"), "--no-progress"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted: every finished cell is in")
