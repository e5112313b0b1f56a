"""Tables never blend populations; paired comparisons; cost-only cells show no accuracy.

The store below holds two populations of the same model (suite ``demo`` on 10 images, suite
``noise`` on 4 other images) and two token selections on the first. Every per-sample vector is
written by hand, so every expected number is a count: e.g. evit keep 0.7 scored on A is right
on 8 of 10 images -> 80.00, random on A 6/10 -> 60.00, scored on B 3/4 -> 75.00. A blended
table would print one of the means of two populations/selections (95.00, 77.50, 70.00 ...),
which no view in any format may contain.
"""

from __future__ import annotations

import io
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from vitbench.core.errors import VitbenchError
from vitbench.report.format import FORMATS
from vitbench.report.tables import throughput_note
from vitbench.store.per_sample import PerSample
from vitbench.store.records import RECORD_FIELDS
from vitbench.store.results import ResultsStore, load_results, load_samples

A_IDS = np.arange(10, dtype=np.int64)
B_IDS = np.arange(100, 104, dtype=np.int64)
# per-image correctness (1 = right); A labels are all 0, B labels all 1 (used for predictions)
CORRECT = {
    ("A", "dense", 1.0, "scored", "clean"): [0, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # 90.0
    ("A", "evit", 0.7, "scored", "clean"): [1, 0, 0, 1, 1, 1, 1, 1, 1, 1],  # 80.0
    ("A", "evit", 0.7, "random", "clean"): [0, 0, 0, 0, 1, 1, 1, 1, 1, 1],  # 60.0
    ("A", "evit", 0.5, "scored", "clean"): [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],  # 50.0
    ("B", "dense", 1.0, "scored", "clean"): [1, 1, 1, 1],  # 100.0
    ("B", "evit", 0.7, "scored", "clean"): [1, 1, 1, 0],  # 75.0
    ("B", "etps", 1.0, "scored", "clean"): [1, 1, 1, 1],  # 100.0: identical to dense, Δ 0
    ("B", "dense", 1.0, "scored", "gaussian-noise"): [1, 1, 0, 0],  # 50.0 -> error 50
    ("B", "evit", 0.7, "scored", "gaussian-noise"): [1, 0, 0, 0],  # 25.0 -> error 75: CE 150
}
POP = {
    "A": {"suite": "demo", "sample_ids_hash": "aaaaaaaaaaaaaaaa", "n_samples": 10},
    "B": {"suite": "noise", "sample_ids_hash": "bbbbbbbbbbbbbbbb", "n_samples": 4},
}
GMACS = {1.0: 4.6, 0.7: 3.5, 0.5: 2.7}
#: means of two populations or selections that a blending table would print
BLENDED = ("95.00", "77.50", "70.00", "65.00", "55.00", "85.00", "87.50")


def _record(pop: str, method: str, keep: float, selection: str, noise: str) -> dict[str, Any]:
    c = CORRECT[(pop, method, keep, selection, noise)]
    top1 = 100.0 * sum(c) / len(c)
    rec: dict[str, Any] = {
        "cell_key": f"{pop}|{method}|{keep}|{selection}|{noise}",
        "model": "vit",
        "weights": "demo",
        "method": method,
        "setting": "-" if method == "dense" else f"keep_rate={keep:g}",
        "keep_ratio": keep,
        "selection": selection,
        "noise": noise,
        "level": 0.0 if noise == "clean" else 1.0,
        "calib_noise": "clean",
        "calib_level": 0.0,
        "seed": 0,
        "dataset": "digits",
        "split": "test",
        "top1": top1,
        "top1_ci_low": max(0.0, top1 - 20.0),
        "top1_ci_high": min(100.0, top1 + 10.0),
        "gmacs": GMACS[keep],
        "params_m": 0.61,
        "img_per_s": 500.0,
        "threads": 2,
        "device": "cpu: x86_64",
        **POP[pop],
    }
    return rec


def _samples(pop: str, key: tuple) -> PerSample:
    c = np.array(CORRECT[key], dtype=bool)
    ids = A_IDS if pop == "A" else B_IDS
    label = 0 if pop == "A" else 1
    pred = np.where(c, label, 7)
    return PerSample(ids, c, pred)


def build_store(path: Path) -> Path:
    """Write every record (and its per-sample outcome) through the store API."""
    with ResultsStore(path) as store:
        for key in CORRECT:
            store.write(_record(*key), samples=_samples(key[0], key))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return build_store(tmp_path / "two-pops.sqlite")


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


def _check_unblended(text: str) -> None:
    for value in BLENDED:  # a top-1 value (not a signed difference or a CI bound)
        found = re.search(rf"(?<![-+\d.]){re.escape(value)}(?!\d)", text)
        assert found is None, f"blended value {value} in\n{text}"


def test_leaderboard_keeps_populations_and_selections_apart(store: Path) -> None:
    from vitbench.report.tables import leaderboard

    df = load_results(store)
    board = _csv(leaderboard(df, fmt="csv"))
    got = {
        (h[:1], m, k): (t, d)
        for h, m, k, t, d in zip(
            board["Images"], board["Method"], board["Keep"], board["Top-1"], board["ΔTop-1"]
        )
    }
    assert got == {
        ("b", "dense", 1.0): (100.0, 0.0),
        ("b", "etps", 1.0): (100.0, 0.0),  # the issue's -1.85 came from a blended dense
        ("b", "evit", 0.7): (75.0, -25.0),
        ("a", "dense", 1.0): (90.0, 0.0),
        ("a", "evit", 0.7): (80.0, -10.0),
        ("a", "evit", 0.5): (50.0, -40.0),
    } or got == {
        ("a", "dense", 1.0): (90.0, 0.0),
        ("a", "evit", 0.7): (80.0, -10.0),
        ("a", "evit", 0.5): (50.0, -40.0),
        ("b", "dense", 1.0): (100.0, 0.0),
        ("b", "etps", 1.0): (100.0, 0.0),
        ("b", "evit", 0.7): (75.0, -25.0),
    }
    assert set(board["Seeds"]) == {1}
    random = _csv(leaderboard(df, fmt="csv", selection="random"))
    evit = random.loc[random["Method"] == "evit"]
    assert list(evit["Top-1"]) == [60.0] and list(evit["ΔTop-1"]) == [-30.0]
    text = leaderboard(df)
    assert "one seed per row" in text and "10 (aaaaaaaa)" in text and "4 (bbbbbbbb)" in text
    assert "[60.0, 90.0]" in text  # the per-cell CI column (evit 0.7 scored on A: 80 -20/+10)
    assert "machine-dependent, measured on cpu: x86_64, 2 threads" in text


def test_every_view_and_format_has_no_blended_value(store: Path) -> None:
    from vitbench.report import robust as report_robust
    from vitbench.report import tables as report
    from vitbench.report.calibration import calibration_tables
    from vitbench.report.compare import compare_table
    from vitbench.report.paper_table import paper_table

    df = load_results(store)
    samples = load_samples(store)
    for fmt in FORMATS:
        views = [
            report.leaderboard(df, fmt=fmt),
            report.leaderboard(df, fmt=fmt, selection="random"),
            report.matched_gmacs_table(df, fmt=fmt, samples=samples),
            report.selection_table(df, fmt=fmt),
            report.noise_table(df, fmt=fmt),
            report.render_all(df, fmt=fmt),
            report_robust.robustness_table(df, fmt=fmt),
            report_robust.severity_table(df, fmt=fmt),
            report_robust.corruption_table(df, fmt=fmt),
            report_robust.corruption_table(df, fmt=fmt, severity=1),
            report_robust.selection_summary_table(df, fmt=fmt),
            compare_table(df, samples, fmt=fmt),
        ]
        for text in views:
            _check_unblended(text)
    for fmt in ("github", "latex", "html"):
        _check_unblended(paper_table(df, fmt=fmt))
    _check_unblended(calibration_tables(df))
    _check_unblended(report_robust.html_report(df, samples=samples))


def test_views_against_hand_values(store: Path) -> None:
    from vitbench.report import robust as report_robust
    from vitbench.report import tables as report
    from vitbench.report.calibration import calibration_tables
    from vitbench.report.paper_table import paper_table

    df = load_results(store)
    sel = _csv(report.selection_table(df, fmt="csv"))
    assert list(sel["Top-1 scored"]) == [80.0] and list(sel["Top-1 random"]) == [60.0]
    assert list(sel["Δ (scored − random)"]) == [20.0]
    noise = _csv(report.noise_table(df, fmt="csv")).set_index(["Images", "Method"])
    assert noise.loc[("bbbbbbbbbbbbbbbb", "dense"), "gaussian-noise@1"] == 50.0
    assert noise.loc[("bbbbbbbbbbbbbbbb", "evit"), "gaussian-noise@1"] == 25.0
    assert math.isnan(noise.loc[("aaaaaaaaaaaaaaaa", "dense"), "gaussian-noise@1"])
    mce = _csv(report_robust.robustness_table(df, fmt="csv")).set_index("Method")
    # one corruption: its CE (no "mCE" of one)
    assert mce.loc["dense", "CE"] == 100.0 and mce.loc["evit", "CE"] == 150.0  # 75 / 50
    assert mce.loc["evit", "Clean top-1"] == 75.0  # population B's clean record, not A's 80
    matched = _csv(report.matched_gmacs_table(df, fmt="csv", grid=[3.5])).set_index(["Images", "Method"])
    assert matched.loc[("aaaaaaaaaaaaaaaa", "evit"), "3.50 GMACs"] == 80.0
    assert matched.loc[("bbbbbbbbbbbbbbbb", "evit"), "3.50 GMACs"] == 75.0
    assert matched.loc[("bbbbbbbbbbbbbbbb", "evit"), "Dense Top-1"] == 100.0
    paper = paper_table(df)
    assert "| Selection" in paper and "| random" in paper and "60.00" in paper and "80.00" in paper
    assert "4.6" in paper and "0.61" in paper
    calib = calibration_tables(df)
    rows = calib.splitlines()
    assert "ids aaaaaaaa" in rows[0]  # image sets by suite and count; their ids in the note
    random_row = r"demo, 10 images: evit \(random\)\s+\|\s+0\.7\s+\|.*\|\s+60(\.0)?\s+\|$"
    assert any(re.search(random_row, r) for r in rows)
    assert any(re.search(r"demo, 10 images: evit\s+\|\s+0\.7\s+\|.*\|\s+80(\.0)?\s+\|$", r) for r in rows)


def test_compare_paired_statistics_by_hand(store: Path) -> None:
    from scipy.stats import binomtest

    from vitbench.report.compare import compare_table

    df = load_results(store)
    out = _csv(compare_table(df, load_samples(store), fmt="csv"))
    row = out.loc[(out["Method"] == "evit") & (out["Keep"] == 0.7) & (out["Images"].str.startswith("a"))]
    assert row["ΔTop-1"].item() == -10.0
    # dense right / evit wrong on images 1, 2; evit right / dense wrong on image 0
    assert row["McNemar p"].item() == pytest.approx(binomtest(1, 3, 0.5).pvalue)
    assert row["Agreement %"].item() == 70.0  # 3 discordant images of 10 differ in prediction
    assert row["paired CI low"].item() <= -10.0 <= row["paired CI high"].item()
    etps = out.loc[out["Method"] == "etps"]
    assert etps["ΔTop-1"].item() == 0.0 and etps["McNemar p"].item() == 1.0
    assert etps["Agreement %"].item() == 100.0
    assert etps["paired CI low"].item() == 0.0 == etps["paired CI high"].item()
    text = compare_table(df, load_samples(store), against="evit:keep_rate=0.7")
    assert "Top-1 evit:keep_rate=0.7" in text
    with pytest.raises(VitbenchError, match="several configurations"):
        compare_table(df, load_samples(store), against="evit")
    with pytest.raises(VitbenchError, match="pass --against one of"):
        compare_table(df, load_samples(store), against="tome")


def test_different_image_sets_are_never_paired() -> None:
    from vitbench.report.paired import NotPairedError, compare, outcome

    a = outcome([PerSample(A_IDS, np.ones(10, bool), np.zeros(10, np.int64))], "aaaa")
    b = outcome([PerSample(B_IDS, np.ones(4, bool), np.zeros(4, np.int64))], "bbbb")
    with pytest.raises(NotPairedError, match=r"images aaaa.*images bbbb"):
        compare(a, b)


def test_paired_ci_is_narrower_than_unpaired_on_correlated_outcomes() -> None:
    from vitbench.measure.accuracy import bootstrap_ci_pct
    from vitbench.report.paired import compare, mcnemar_exact, outcome, unpaired_halfwidth

    rng = np.random.default_rng(0)
    ref = rng.random(2000) < 0.8
    flip = rng.random(2000) < 0.05
    method = ref ^ flip  # disagrees with the reference on ~5 % of the images
    ids = np.arange(2000, dtype=np.int64)
    preds = np.zeros(2000, np.int64)
    c = compare(outcome([PerSample(ids, method, preds)], "h"), outcome([PerSample(ids, ref, preds)], "h"))
    unpaired = unpaired_halfwidth(bootstrap_ci_pct(method), bootstrap_ci_pct(ref))
    assert (c.ci_high - c.ci_low) / 2 < unpaired / 2
    assert mcnemar_exact(np.zeros(6), np.ones(6)) == pytest.approx(2 * 0.5**6)  # 0 vs 6 discordant


def test_restrict_suite_reuses_dense_of_the_same_population(store: Path) -> None:
    from vitbench.report.population import restrict_suite
    from vitbench.report.tables import leaderboard

    with ResultsStore(store) as s:  # a second suite on population A with no dense of its own
        s.write({**_record("A", "evit", 0.5, "scored", "clean"), "cell_key": "x", "suite": "other"})
    df = restrict_suite(load_results(store), "other")
    board = _csv(leaderboard(df, fmt="csv"))
    assert list(board["Method"]) == ["dense", "evit"]
    assert list(board["ΔTop-1"]) == [0.0, -40.0]
    assert set(df["suite"]) == {"other"}


def test_cost_only_cells_show_no_accuracy(tmp_path: Path) -> None:
    from vitbench.report.paper_table import paper_table
    from vitbench.report.tables import leaderboard, matched_gmacs_table, render_all

    db = tmp_path / "cost.sqlite"
    with ResultsStore(db) as s:
        for method, keep, g in (("dense", 1.0, 4.6), ("evit", 0.7, 3.5), ("evit", 0.5, 2.7)):
            s.write(
                {
                    "cell_key": f"{method}{keep}",
                    "suite": "paper-deit-s",
                    "model": "deit_small_patch16_224",
                    "weights": "random",
                    "method": method,
                    "setting": "-" if method == "dense" else f"keep_rate={keep}",
                    "keep_ratio": keep,
                    "selection": "scored",
                    "noise": "clean",
                    "level": 0.0,
                    "seed": 0,
                    "dataset": "synthetic",
                    "top1": 0.0,
                    "top1_ci_low": 0.0,
                    "top1_ci_high": 0.0,
                    "gmacs": g,
                    "params_m": 22.05,
                    "img_per_s": 100.0,
                }
            )
    df = load_results(db)
    for fmt in ("github", "markdown", "latex", "html"):
        text = leaderboard(df, fmt=fmt)
        assert "0.00 |" not in text and ">0.00<" not in text and "+0.00" not in text
        assert "–" in text
    board = _csv(leaderboard(df, fmt="csv"))
    assert board["Top-1"].isna().all() and board["ΔTop-1"].isna().all()
    assert list(board["GMACs"]) == [4.6, 3.5, 2.7]
    with pytest.raises(VitbenchError, match="cost-only"):
        matched_gmacs_table(df)
    assert "0.00" not in render_all(df)
    assert "| 0.00" not in paper_table(df)


def test_old_store_without_per_sample_table_loads(tmp_path: Path) -> None:
    db = build_store(tmp_path / "old.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE per_sample")
    conn.commit()
    conn.close()
    assert load_samples(db) == {}
    assert len(load_results(db)) == len(CORRECT)
    with ResultsStore(db) as s:  # opened for writing: the side table is added
        s.write(
            _record("A", "dense", 1.0, "scored", "clean"),
            samples=_samples("A", ("A", "dense", 1.0, "scored", "clean")),
        )
        assert set(s.samples()) == {"A|dense|1.0|scored|clean"}
    from vitbench.report.compare import compare_table

    text = compare_table(load_results(db), load_samples(db))
    assert "no per-sample data" in text


def test_per_sample_round_trip_and_replacement(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ids = np.sort(rng.choice(50_000, size=1000, replace=False)).astype(np.int64)
    ps = PerSample(ids, rng.random(1000) < 0.7, rng.integers(0, 1000, 1000))
    back = PerSample.decode(1000, *ps.encode())
    assert np.array_equal(back.sample_ids, ids) and np.array_equal(back.correct, ps.correct)
    assert np.array_equal(back.pred, ps.pred)
    assert len(ps.encode()[1]) == 125  # 1 bit per image
    with ResultsStore(tmp_path / "s.sqlite") as s:
        s.write({"cell_key": "k", "top1": 70.0}, samples=ps)
        s.write({"cell_key": "k", "top1": None, "error": "re-run failed"})  # no stale outcome kept
        assert s.samples() == {}
    with pytest.raises(VitbenchError, match="strictly increasing"):
        PerSample(ids[::-1].copy(), ps.correct, ps.pred)


def test_from_logits_sorts_by_sample_id() -> None:
    import torch

    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    ps = PerSample.from_logits(logits, torch.tensor([1, 1, 1]), torch.tensor([5, 2, 9]))
    assert list(ps.sample_ids) == [2, 5, 9]
    assert list(ps.correct) == [False, True, True] and list(ps.pred) == [0, 1, 1]


def test_harness_stores_per_sample_outcomes(tmp_path: Path) -> None:
    """One tiny run: every successful cell has a per-sample outcome matching its top-1."""
    from vitbench.cli.main import main

    db = tmp_path / "run.sqlite"
    code = main(
        [
            "run",
            "--results",
            str(db),
            "--method",
            "dense",
            "--method",
            "evit",
            "--keep",
            "0.7",
            "--set",
            "dataset.limit=40",
            "--set",
            "noises=[clean]",
            "--set",
            "selections=[scored]",
            "--set",
            "throughput.enabled=false",
            "--no-progress",
            "--output-dir",
            "",
        ]
    )
    assert code == 0
    df = load_results(db)
    samples = load_samples(db)
    assert set(samples) == set(df["cell_key"])
    for key, top1, n in zip(df["cell_key"], df["top1"], df["n_samples"]):
        assert samples[key].sample_ids.shape == (n,)
        assert 100.0 * samples[key].correct.mean() == pytest.approx(top1)
    assert set(RECORD_FIELDS) == set(df.columns)


def test_merge_carries_per_sample_outcomes(store: Path, tmp_path: Path) -> None:
    from vitbench.harness.scaleout import merge_stores

    merged = tmp_path / "merged.sqlite"
    merge_stores(merged, [store])
    a, b = load_samples(store), load_samples(merged)
    assert set(a) == set(b) == {f"{p}|{m}|{k}|{s}|{n}" for p, m, k, s, n in CORRECT}
    assert all(np.array_equal(a[k].correct, b[k].correct) for k in a)


def test_compare_names_both_image_sets_when_the_reference_is_elsewhere(tmp_path: Path) -> None:
    from vitbench.report.compare import compare_table

    db = tmp_path / "no-dense-b.sqlite"
    with ResultsStore(db) as s:
        for key in CORRECT:
            if key[:2] != ("B", "dense"):
                s.write(_record(*key), samples=_samples(key[0], key))
    text = compare_table(load_results(db), load_samples(db))
    line = next(ln for ln in text.splitlines() if ln.startswith("not paired: evit keep_rate=0.7"))
    assert "images bbbbbbbbbbbbbbbb" in line and "(aaaaaaaaaaaaaaaa)" in line
    assert "| 4 (bbbbbbbb)" not in text  # never paired with population A's dense


def test_reference_from_two_suites_on_the_same_images_asks_for_one(tmp_path: Path) -> None:
    from vitbench.core.errors import VitbenchError
    from vitbench.report.compare import compare_table

    db = tmp_path / "two-suites.sqlite"
    with ResultsStore(db) as s:
        for key in CORRECT:
            s.write(_record(*key), samples=_samples(key[0], key))
        key = next(k for k in CORRECT if k[1] == "dense")
        other = {**_record(*key), "cell_key": "other-suite-dense", "suite": "other", "seed": 1}
        s.write(other, samples=_samples(key[0], key))
    with pytest.raises(
        VitbenchError, match=r"measured by several suites on the same images \(.*other.*\); pass --suite"
    ):
        compare_table(load_results(db), load_samples(db))


@pytest.mark.parametrize(
    ("threads", "text"), [([1], "1 thread,"), ([2], "2 threads,"), ([1, 2], "1/2 threads,")]
)
def test_throughput_note_counts_threads_in_words(threads: list[int], text: str) -> None:
    frame = pd.DataFrame(
        {"device": ["cpu: x86_64"] * len(threads), "threads": threads, "throughput_dtype": "float32"}
    )
    assert f"measured on cpu: x86_64, {text} float32;" in throughput_note(frame)
