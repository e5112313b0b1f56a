"""The calib_noise axis (list of calibration noises) and the noisy-calibration tables."""

from __future__ import annotations

import pandas as pd
import pytest

from vitbench.core.errors import VitbenchError
from vitbench.core.specs import NoiseSpec
from vitbench.harness.suites import expand, load_suite, suite_from_dict
from vitbench.report.calibration import calibration_tables, plot_calibration

BASE = {
    "name": "x",
    "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
    "methods": ["dense", "lfs", "taylor", "evit", "lfe", "vtc-lfc"],
    "keep_ratios": [0.5],
}


def test_calib_noise_list_expands_for_channel_methods_only() -> None:
    suite = suite_from_dict({**BASE, "calib_noise": ["clean", {"name": "salt-pepper", "levels": [0.1, 0.3]}]})
    want = (NoiseSpec(), NoiseSpec("salt-pepper", 0.1), NoiseSpec("salt-pepper", 0.3))
    assert suite.calib_noises == want and suite.calib_noise == NoiseSpec()
    by = {}
    for c in expand(suite):
        by.setdefault(c.method.name, []).append(c.calib_noise)
    for name in ("lfs", "taylor", "vtc-lfc"):
        assert tuple(by[name]) == want
    for name in ("dense", "evit", "lfe"):
        assert by[name] == [NoiseSpec()]
    assert len({c.key() for c in expand(suite)}) == len(expand(suite))


def test_single_calib_noise_still_works() -> None:
    suite = suite_from_dict({**BASE, "calib_noise": {"name": "salt-pepper", "level": 0.2}})
    assert suite.calib_noises == (NoiseSpec("salt-pepper", 0.2),)
    assert {c.calib_noise for c in expand(suite)} == {NoiseSpec("salt-pepper", 0.2)}
    with pytest.raises(VitbenchError, match="empty list"):
        suite_from_dict({**BASE, "calib_noise": []})


def test_noisy_calibration_suite_resolves() -> None:
    suite = load_suite("noisy-calibration")
    cells = expand(suite)
    assert {c.method.name for c in cells} == {"dense", "taylor", "lfs", "evit", "lfe"}
    assert len(suite.calib_noises) == 4


def _rec(method, keep, calib, clevel, noise, level, top1):
    return {
        "method": method,
        "keep_ratio": keep,
        "calib_noise": calib,
        "calib_level": clevel,
        "noise": noise,
        "level": level,
        "top1": top1,
        "gmacs": 0.005,
        "error": None,
    }


def test_calibration_tables_and_plot(tmp_path) -> None:
    df = pd.DataFrame(
        [
            _rec("lfs", 0.5, "clean", 0.0, "clean", 0.0, 90.0),
            _rec("lfs", 0.5, "salt-pepper", 0.1, "clean", 0.0, 88.5),
            _rec("taylor", 0.5, "clean", 0.0, "clean", 0.0, 91.0),
            _rec("taylor", 0.5, "salt-pepper", 0.1, "clean", 0.0, 80.0),
            _rec("evit", 0.5, "clean", 0.0, "clean", 0.0, 85.0),
            _rec("evit", 0.5, "clean", 0.0, "salt-pepper", 0.1, 70.0),
        ]
    )
    text = calibration_tables(df)
    assert "### test images: clean" in text and "### test images: salt-pepper@0.1" in text
    assert "88.5 (-1.5)" in text and "80.0 (-11.0)" in text
    evit_row = next(line for line in text.splitlines() if line.startswith("| evit"))
    assert evit_row.rstrip(" |").endswith("-")
    assert plot_calibration(df, tmp_path / "c.png").stat().st_size > 0


def _cells(text: str, heading: str) -> dict[str, dict[str, str]]:
    """The markdown table under ``heading`` as {method: {column: cell}} (first row per method)."""
    lines = text.split(heading, 1)[1].strip().split("\n\n", 1)[0].splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    out: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out.setdefault(cells[0], dict(zip(head, cells)))
    return out


def test_calibration_table_puts_uncalibrated_methods_in_their_own_column() -> None:
    # one noisy calibration condition: token rows carry it although they never read calibration images
    df = pd.DataFrame(
        [
            _rec("taylor", 0.5, "salt-pepper", 0.2, "clean", 0.0, 91.0),
            _rec("evit", 0.5, "salt-pepper", 0.2, "clean", 0.0, 85.0),
            _rec("dense", 1.0, "salt-pepper", 0.2, "clean", 0.0, 97.0),
        ]
    )
    text = calibration_tables(df)
    rows = _cells(text, "### test images: clean")
    assert list(rows["evit"]) == ["method", "keep", "GMACs (mean)", "no calibration", "calib salt-pepper@0.2"]
    assert rows["evit"]["no calibration"] == "85.0" and rows["evit"]["calib salt-pepper@0.2"] == "-"
    assert rows["dense"]["no calibration"] == "97.0" and rows["dense"]["calib salt-pepper@0.2"] == "-"
    assert rows["taylor"]["no calibration"] == "-" and rows["taylor"]["calib salt-pepper@0.2"] == "91.0"
    caption = text.splitlines()[0]
    assert "'no calibration': methods that read no calibration images" in caption
    assert "'-': the column does not apply to the row's method" in caption
    # token methods alone: no calibration columns at all, and the caption names none
    token_only = calibration_tables(df[df["method"] != "taylor"])
    assert list(_cells(token_only, "### test images: clean")["evit"])[3:] == ["no calibration"]
    assert "'calib X'" not in token_only.splitlines()[0]


def test_cli_robustness_calibration_view(tmp_path, monkeypatch, capsys) -> None:
    import vitbench.store.results
    from vitbench.cli.main import main

    df = pd.DataFrame(
        [
            _rec("lfs", 0.5, "clean", 0.0, "clean", 0.0, 90.0),
            _rec("lfs", 0.5, "salt-pepper", 0.1, "clean", 0.0, 88.5),
        ]
    )
    monkeypatch.setattr(vitbench.store.results, "load_results", lambda _path: df)
    out, plot = tmp_path / "c.md", tmp_path / "c.png"
    args = ["robustness", "--view", "calibration", "--output", str(out), "--plot", str(plot)]
    assert main(args) == 0
    assert "88.5 (-1.5)" in out.read_text() and plot.stat().st_size > 0
    assert "calib salt-pepper@0.1" in capsys.readouterr().out
