"""Default results folder, the committed-reference guard and `vitbench regenerate-references`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vbtest import TINY_SUITE
from vitbench.cli.main import main
from vitbench.store.results import load_results

TINY = TINY_SUITE


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory, no ``$VITBENCH_RESULTS``, and a shipped suite ``tiny`` (suites folder patched)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VITBENCH_RESULTS", raising=False)
    shipped = tmp_path / "shipped-suites"
    shipped.mkdir()
    (shipped / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    monkeypatch.setattr("vitbench.harness.suites.suites_dir", lambda: shipped)
    return tmp_path


def test_run_writes_under_vitbench_results_by_default(workdir: Path) -> None:
    assert main(["run", "tiny", "--no-progress"]) == 0
    assert len(load_results(workdir / "vitbench-results" / "vitbench.sqlite")) == 2
    assert (workdir / "vitbench-results" / "tiny" / "leaderboard.md").is_file()
    assert (workdir / "vitbench-results" / "tiny" / "pareto.png").is_file()
    assert main(["leaderboard", "--view", "main"]) == 0  # the other commands read the same default


def test_results_folder_from_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITBENCH_RESULTS", str(workdir / "mine"))
    assert main(["run", "tiny", "--no-progress"]) == 0
    assert (workdir / "mine" / "vitbench.sqlite").is_file() and (
        workdir / "mine" / "tiny" / "leaderboard.md"
    ).is_file()
    assert not (workdir / "vitbench-results").exists()


def test_run_refuses_to_write_tables_into_committed_references(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = workdir / "results"
    (refs / "tiny").mkdir(parents=True)
    (refs / ".vitbench-references").write_text("committed\n")
    (refs / "tiny" / "leaderboard.md").write_text("committed table\n")
    assert main(["run", "tiny", "--results", "results/x.sqlite", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the leaderboard would go to results/tiny, inside the committed references")
    assert "vitbench regenerate-references" in err and "\n" not in err
    assert (refs / "tiny" / "leaderboard.md").read_text() == "committed table\n"
    assert not (refs / "x.sqlite").exists()  # refused before the store was opened
    out = workdir / "elsewhere"
    assert (
        main(["run", "tiny", "--results", "results/x.sqlite", "--output-dir", str(out), "--no-progress"]) == 0
    )
    assert (out / "leaderboard.md").is_file()


def test_repository_results_folder_is_marked() -> None:
    from vitbench.core.paths import REFERENCES_MARKER, reference_tree

    results = Path(__file__).resolve().parents[1] / "results"
    assert (results / REFERENCES_MARKER).is_file()
    assert reference_tree(results / "nvit-demo") == results


def test_regenerate_references_lists_every_committed_output(capsys: pytest.CaptureFixture[str]) -> None:
    """Every committed file under results/ is written by one of the listed commands (or is prose)."""
    root = Path(__file__).resolve().parents[1]
    assert main(["regenerate-references", "--list", "--into", str(root / "results")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("$ vitbench run demo --results ") and all(
        ln.startswith("$ vitbench ") for ln in lines
    )
    written = {
        Path(tok)
        for ln in lines
        for flag, tok in zip(ln.split()[:-1], ln.split()[1:])
        if flag in ("--output", "--plot")
    }
    for ln in lines:
        parts = ln.split()
        if parts[2] == "run" and parts[parts.index("--output-dir") + 1] != "''":
            folder = Path(parts[parts.index("--output-dir") + 1])
            written |= {folder / "leaderboard.md", folder / "pareto.png"}
    committed = {
        p for p in (root / "results").rglob("*") if p.is_file() and p.suffix in (".md", ".png", ".html")
    }
    # prose and hand-assembled measurements (export-matrix.md: two `vitbench export --all --table`
    # runs with the reasons written out; its commands are in the file)
    prose = {p for p in committed if p.name in ("README.md", "measurements.md", "export-matrix.md")}
    assert committed - prose == written, sorted(map(str, (committed - prose) ^ written))


def test_regenerate_references_runs_into_the_folder(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vitbench.harness import references
    from vitbench.harness.references import Reference

    tiny = Reference(
        "tiny",
        "tiny",
        "tiny",
        (("leaderboard", "--results", "{store}", "--view", "main", "--output", "{out}/main/main.md"),),
    )
    monkeypatch.setattr(references, "REFERENCES", (tiny,))
    refs = workdir / "refs"
    refs.mkdir()
    assert main(["regenerate-references", "--into", "refs", "--no-progress"]) == 0
    assert len(load_results(refs / "tiny.sqlite")) == 2
    assert (refs / "tiny" / "leaderboard.md").is_file() and (refs / "tiny" / "main" / "main.md").is_file()
    stamp = load_results(refs / "tiny.sqlite")["timestamp"].tolist()
    assert main(["regenerate-references", "tiny", "--into", "refs", "--no-progress"]) == 0  # resumes
    assert load_results(refs / "tiny.sqlite")["timestamp"].tolist() == stamp
    assert main(["regenerate-references", "--into", "refs", "--fresh", "--no-progress"]) == 0
    assert len(load_results(refs / "tiny.sqlite")) == 2


def test_regenerate_references_bad_input(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regenerate-references", "--into", "missing"]) == 2
    assert "reference folder missing does not exist" in capsys.readouterr().err
    (workdir / "results").mkdir()
    assert main(["regenerate-references", "nvit"]) == 2
    assert "did you mean 'nvit-demo'" in capsys.readouterr().err
