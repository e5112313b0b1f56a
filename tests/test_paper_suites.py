"""Paper-table suites validate without running; the paper table pairs records with card rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from vitbench.harness.suites import expand, load_suite
from vitbench.methods import METHODS
from vitbench.report.format import NA
from vitbench.report.paper import load_cards
from vitbench.report.paper_table import paper_table, published_rows

SUITES = ("paper-deit-t", "paper-deit-s", "paper-deit-b")
TOKEN_METHODS = ("dense", "evit", "tome", "dynamicvit", "etps", "dtps")


@pytest.mark.parametrize("name", SUITES)
def test_paper_suite_resolves(name: str) -> None:
    suite = load_suite(name)  # validates model names, method names and parameters, dataset
    cells = expand(suite)
    assert cells and all(c.method.name in METHODS for c in cells)
    assert {c.method.name for c in cells} == set(TOKEN_METHODS)
    assert suite.dataset.name == "synthetic" and all(m.weights == "random" for m in suite.models)


def test_paper_suites_cover_every_published_setting() -> None:
    """Each card row of DeiT-T/S/B has a cell whose native parameters match it."""
    from vitbench.core.models import create_model
    from vitbench.methods.base import token_method

    cards = load_cards()
    covered: set[tuple[str, str, str]] = set()
    for name in SUITES:
        suite = load_suite(name)
        model = create_model(suite.models[0].name, "random")
        for cell in expand(suite):
            cls = token_method(cell.method.name)
            params = cls.params_for(cell.keep_ratio, model, cell.method.overrides)
            import dataclasses

            for pub in published_rows(cards, cell.model.name, cls.name, dataclasses.asdict(params)):
                covered.add((pub["model"], cls.name, json.dumps(pub.get("params") or {}, sort_keys=True)))
    wanted = {
        (pub["model"], name, json.dumps(pub.get("params") or {}, sort_keys=True))
        for name, card in cards.items()
        if name in TOKEN_METHODS
        for pub in card.get("published") or []
        if pub["model"].split("_patch")[0] in ("deit_tiny", "deit_small", "deit_base")
    }
    assert wanted and wanted <= covered, sorted(wanted - covered)


def _rec(**kw: object) -> dict:
    base = {
        "model": "deit_small_patch16_224",
        "weights": "hub",
        "method": "tome",
        "params_json": json.dumps({"r": 13, "r_per_block": [], "prop_attn": True}),
        "setting": "r=13",
        "noise": "clean",
        "dataset": "imagenet",
        "top1": 78.0,
        "gmacs": 2.712,
        "params_m": 22.05,
        "img_per_s": 2000.0,
        "error": None,
    }
    return {**base, **kw}


def test_paper_table_pairs_published_numbers() -> None:
    df = pd.DataFrame(
        [
            _rec(),
            _rec(
                method="evit",
                params_json=json.dumps({"keep_rate": 0.7, "fuse_token": False, "drop_loc": []}),
                setting="keep_rate=0.7, fuse_token=False",
                top1=79.0,
                gmacs=3.003,
            ),
            _rec(
                method="dense",
                params_json="{}",
                setting="-",
                weights="random",
                dataset="synthetic",
                gmacs=4.608,
                top1=0.1,
            ),
            _rec(noise="gaussian-noise", top1=10.0),  # not clean: left out
        ]
    )
    text = paper_table(df, fmt="tsv")
    # the cost-only dense row is another population (random weights, synthetic images): the
    # table gains a Dataset column, dropped here to keep the column positions below
    rows = [[c.strip() for c in ln.split("\t")] for ln in text.splitlines() if "\t" in ln]
    at = rows[0].index("Dataset")
    rows = [r[:at] + r[at + 1 :] for r in rows]
    lines = {r[1] + r[2]: r for r in rows if "deit" in r[0]}
    tome = lines["tomer=13"]
    assert tome[3:9] == ["2.71", "2.7", "22.05", "78.00", "79.40", "-1.40"]  # measured: 3 significant digits
    evit = lines["evitkeep_rate=0.7, fuse_token=False"]
    assert evit[4] == "3.0" and evit[7] == "79.40"  # the no-fusion row (79.4), not the fused one (79.5)
    dense = lines["dense-"]
    assert dense[6] == NA and dense[7] == "79.80" and dense[8] == NA  # random weights: no top-1


def test_paper_table_note_names_adaptive_methods() -> None:
    plain = pd.DataFrame([_rec(), _rec(method="ppt", setting="r=15", params_json="{}", gmacs=3.1)])
    assert "placed at the mean" not in paper_table(plain)
    adaptive = plain.assign(gmacs_p50=[None, 3.0], tokens_p10=[None, "[197]"], tokens_p90=[None, "[197]"])
    note = paper_table(adaptive).splitlines()[0]
    assert "ppt: GMACs per image vary (same tokens, per-image operation), placed at the mean GMACs" in note
