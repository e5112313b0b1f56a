"""`vitbench bench-data`: evaluation on a folder of JPEGs vs bare forward (figures, not a speed test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitbench.bench.speed import make_jpeg_folder
from vitbench.cli.main import main


def test_bench_data_prints_both_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_jpeg_folder(tmp_path / "jpegs", 6, size=(64, 48), classes=2)
    assert sorted(p.name for p in root.iterdir()) == ["c000", "c001"]
    args = ["bench-data", "--folder", str(root), "--model", "test_vit", "--batch-size", "4", "--repeats", "1"]
    assert main([*args, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "on 6 images from" in out and "DataLoader workers" in out
    figures = {ln.split(":")[0].split(" (")[0]: ln.split(":")[1].split()[0] for ln in out.splitlines()[1:]}
    assert float(figures["evaluation"]) > 0 and float(figures["bare forward"]) > 0
    ev, bare = float(figures["evaluation"]), float(figures["bare forward"])
    # both figures are printed to 0.1 img/s and the ratio to 0.001: allow exactly that rounding
    tolerance = ev / bare * (0.05 / ev + 0.05 / bare) + 0.0005 + 1e-9
    assert abs(float(figures["ratio"]) - ev / bare) <= tolerance
