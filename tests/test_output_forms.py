"""Output forms: csv is exactly one table, whatever the view."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from test_report import make_df
from vitbench.cli.main import main
from vitbench.store.results import ResultsStore


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store of the report tests' records: dense, two methods, random selection, one noise."""
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as st:
        for rec in make_df().to_dict("records"):
            st.write({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()})
    return path


def _one_table(text: str, method: bool = True) -> pd.DataFrame:
    assert not any(line.startswith(("#", "_")) for line in text.splitlines()), text[:200]
    frame = pd.read_csv(io.StringIO(text))
    assert len(frame) >= 1 and ("Method" in frame.columns or not method)
    return frame


def test_csv_of_the_all_view_asks_for_a_view(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--results", str(store), "--format", "csv"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1
    assert "pick one with --view (main, matched, selection, noise)" in out.err


def test_all_budgets_is_an_option_of_the_matched_view(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["leaderboard", "--results", str(store), "--view", "matched", "--all-budgets"]) == 0
    assert "| Method" in capsys.readouterr().out
    assert main(["leaderboard", "--results", str(store), "--all-budgets"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --all-budgets applies to --view matched only, not --view all; add --view matched"


def test_csv_of_the_all_view_writes_one_file_per_table(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "board.csv"
    assert main(["leaderboard", "--results", str(store), "--format", "csv", "--output", str(out)]) == 0
    written = sorted(p.name for p in tmp_path.glob("board-*.csv"))
    views = ["failed", "main", "matched", "noise", "selection"]  # the store has one failed cell
    assert written == [f"board-{v}.csv" for v in views]
    for name in written:
        _one_table((tmp_path / name).read_text(), method=name != "board-failed.csv")
    assert not out.exists()
    assert capsys.readouterr().out.count("wrote ") == 5


@pytest.mark.parametrize("view", ["main", "matched", "selection", "noise", "squeeze", "compare"])
def test_every_single_view_is_one_csv_table(
    store: Path, view: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["leaderboard", "--results", str(store), "--format", "csv", "--view", view])
    out = capsys.readouterr()
    if rc == 2:  # a view with nothing to show says so in one line
        assert view == "squeeze" and len(out.err.strip().splitlines()) == 1
        return
    assert rc == 0
    _one_table(out.out)


def test_paper_table_csv_is_one_table(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--results", str(store), "--format", "csv", "--paper"]) == 0
    frame = _one_table(capsys.readouterr().out)
    assert {"GMACs published", "Top-1 (%) published", "img/s published"} <= set(frame.columns)
