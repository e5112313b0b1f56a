"""Keep 1.0 of a token method reuses the dense record: the same numbers, shown as reused, not re-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vbtest import TINY_SUITE
from vitbench.harness.runner import Harness, dense_twin
from vitbench.harness.suites import expand, suite_from_dict
from vitbench.store.results import load_results, load_samples

SUITE = {
    **TINY_SUITE,
    "methods": ["dense", "evit", "tome"],
    "keep_ratios": [1.0, 0.7],
    "selections": ["scored", "random"],
}


def _run(tmp_path: Path, name: str, reuse: bool, **changes: Any) -> Any:
    suite = suite_from_dict({**SUITE, **changes})
    h = Harness(
        suite, str(tmp_path / f"{name}.sqlite"), progress=False, log=lambda _m: None, cache=False, reuse=reuse
    )
    try:
        summary = h.run(expand(suite))
    finally:
        h.close()
    assert summary.failed == 0, summary.errors
    return load_results(tmp_path / f"{name}.sqlite").set_index("cell_key")


def test_which_cells_reuse_the_dense_record() -> None:
    cells = expand(
        suite_from_dict(
            {
                **SUITE,
                "methods": ["dense", "evit", {"name": "tome", "params": {"prop_attn": False}}, "nvit", "ats"],
            }
        )
    )
    reused = {(c.method.name, c.keep_ratio, c.selection) for c in cells if dense_twin(c) is not None}
    assert reused == {
        ("evit", 1.0, "scored"),
        ("evit", 1.0, "random"),
    }  # not dense, explicit params, channels
    twin = dense_twin(next(c for c in cells if c.method.name == "evit" and c.keep_ratio == 1.0))
    assert twin is not None and twin.method.name == "dense" and twin.selection == "scored"


def test_keep_one_rows_equal_an_evaluation_and_say_they_reuse(tmp_path: Path) -> None:
    reused = _run(tmp_path, "reused", reuse=True)
    evaluated = _run(tmp_path, "evaluated", reuse=False)
    assert set(reused.index) == set(evaluated.index)  # the same cells and keys
    ones = reused[(reused["keep_ratio"] == 1.0) & (reused["method"] != "dense")]
    assert len(ones) == 4 and ones["reused_from"].notna().all()
    dense_key = reused.index[reused["method"] == "dense"][0]
    assert set(ones["reused_from"]) == {dense_key}
    assert reused["reused_from"].isna().sum() == len(reused) - 4
    assert evaluated["reused_from"].isna().all()
    cols = [
        "top1",
        "top5",
        "nll",
        "ece",
        "top1_ci_low",
        "top1_ci_high",
        "gmacs",
        "params_m",
        "tokens_per_block",
    ]
    assert reused.loc[ones.index, cols].equals(evaluated.loc[ones.index, cols])  # identical numbers
    samples = load_samples(tmp_path / "reused.sqlite")
    for key in ones.index:
        assert (samples[key].pred == samples[dense_key].pred).all()


def test_without_a_dense_record_keep_one_is_evaluated(tmp_path: Path) -> None:
    df = _run(tmp_path, "alone", reuse=True, methods=["evit"])
    assert df["reused_from"].isna().all() and len(df) == 4


def test_leaderboard_says_which_rows_reuse(tmp_path: Path) -> None:
    from vitbench.report.tables import leaderboard

    df = _run(tmp_path, "note", reuse=True, selections=["scored"]).reset_index()
    text = leaderboard(df)
    assert "keep 1.0 of evit, tome: the dense record (identical by the method contract), not re-run" in text
