"""Matched-GMACs view at measured points: a budget on a method's own point shows that point."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from vitbench.methods import METHODS
from vitbench.report.tables import matched_gmacs_table
from vitbench.store.per_sample import PerSample
from vitbench.store.records import RECORD_FIELDS

N = 1000
DENSE_GMACS = 0.018035  # the demo model's dense cost, as stored


def _cell(
    key: str, method: str, keep: float, gmacs: float, n_correct: int
) -> tuple[dict[str, Any], PerSample]:
    rec: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
    rec.update(
        cell_key=key,
        model="vitbench_demo_vit",
        weights="demo",
        dataset="mnist-demo",
        split="test",
        sample_ids_hash="h" * 16,
        n_samples=N,
        method=method,
        setting={"dense": "-", "tome": f"r={round(10 * (1 - keep))}"}.get(method, f"keep_rate={keep}"),
        keep_ratio=keep,
        selection="scored",
        noise="clean",
        level=0.0,
        seed=0,
        gmacs=gmacs,
        top1=100.0 * n_correct / N,
        method_version=METHODS.get(method).version,  # records of the current semantics
    )
    correct = np.arange(N) < n_correct
    return rec, PerSample(np.arange(N, dtype=np.int64), correct, correct.astype(np.int64))


def _store() -> tuple[pd.DataFrame, dict[str, PerSample]]:
    cells = [
        _cell("d", "dense", 1.0, DENSE_GMACS, 976),
        _cell("e1", "evit", 1.0, DENSE_GMACS, 976),  # keep 1.0 is the dense model
        _cell("e9", "evit", 0.9, 0.015812, 966),
        _cell("t1", "tome", 1.0, DENSE_GMACS, 976),
        _cell("t9", "tome", 0.9, 0.017501, 975),
        _cell("l1", "lfe", 1.0, 0.0180412, 975),  # prints as 0.0180 too, measured a bit above
        _cell("l9", "lfe", 0.9, 0.0159, 960),
        _cell("p1", "etps", 1.0, 0.0180351, 976),  # 1e-7 above the budget: prints the same 97.60
        _cell("p9", "etps", 0.9, 0.0150, 970),
    ]
    return pd.DataFrame([r for r, _ in cells]), {r["cell_key"]: s for r, s in cells}


def test_dense_budget_shows_the_measured_points() -> None:
    df, samples = _store()
    table = pd.read_csv(io.StringIO(matched_gmacs_table(df, fmt="csv", samples=samples))).set_index("Method")
    assert table.loc["evit", "0.0180 GMACs"] == 97.6  # its own point, not 97.58 interpolated at 0.0180
    assert table.loc["tome", "0.0180 GMACs"] == 97.6
    assert table.loc["lfe", "0.0180 GMACs"] < 97.5  # measured above the budget: interpolated below it
    text = matched_gmacs_table(df, fmt="github", samples=samples)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    dense_col = [c.strip() for c in rows["evit"].split("|")].index("97.60 ▲")
    assert 97.59 < table.loc["etps", "0.0180 GMACs"] < 97.6
    for method in ("evit", "tome", "etps"):  # the best value as printed: every one ▲, none "tied"
        assert [c.strip() for c in rows[method].split("|")][dense_col] == "97.60 ▲"
    assert "▲" not in rows["lfe"].split("|")[dense_col]
