"""Paper-style table: measured records next to the published numbers of the method cards.

One row per (model, method, native setting) of the clean, successful records of a results
store. Published values come from ``methods/<name>.yaml`` ``published:`` rows of the same
architecture whose parameters (card defaults filled in) equal the record's native parameters
(``artifact`` ignored). Measured top-1 is shown only for real weights on real data: records
with ``weights: random`` or the ``synthetic`` dataset give costs only.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from vitbench.errors import VitbenchError
from vitbench.paper import load_cards, paper_round

COST_ONLY_DATASETS = ("synthetic",)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), abs_tol=1e-9)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def published_rows(cards: dict[str, dict[str, Any]], model: str, method: str, params: dict) -> list[dict]:
    """Card rows of ``method`` on ``model``'s architecture whose full parameters equal ``params``."""
    card = cards.get(method) or {}
    arch = model.split(".")[0]
    defaults = dict(card.get("defaults") or {})
    mine = {k: v for k, v in params.items() if k != "artifact"}
    out = []
    for pub in card.get("published") or []:
        if str(pub.get("model", "")).split(".")[0] != arch:
            continue
        full = {**defaults, **(pub.get("params") or {})}
        full.pop("artifact", None)
        if all(k in mine and _same(mine[k], v) for k, v in full.items()):
            out.append(pub)
    return out


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.{digits}f}"


def _pub(rows: list[dict], key: str, digits: int = 1) -> str:
    vals = [r.get(key) for r in rows if r.get(key) is not None]
    return " / ".join(_fmt(v, digits) for v in vals) if vals else "-"


def paper_table(df: pd.DataFrame, fmt: str = "github", model: str | None = None) -> str:
    """Render the paper-style table (see module docstring) in a tabulate format.

    Raises:
        VitbenchError: no successful clean records (for ``model``).
    """
    from tabulate import tabulate

    ok = df[df["error"].isna() & (df["noise"].fillna("clean") == "clean")]
    if model is not None:
        ok = ok[ok["model"] == model]
    if ok.empty:
        where = f" for model '{model}'" if model else ""
        raise VitbenchError(
            f"no successful clean records{where} in {df.attrs.get('source', 'the store')}; "
            "run a paper suite first, e.g. `vitbench run paper-deit-s`"
        )
    cards = load_cards()
    groups: dict[tuple, list[dict]] = {}
    for rec in ok.to_dict("records"):
        params = json.loads(rec["params_json"]) if isinstance(rec.get("params_json"), str) else {}
        params.pop("artifact", None)
        key = (rec["model"], rec["method"], json.dumps(params, sort_keys=True))
        groups.setdefault(key, []).append({**rec, "_params": params})
    rows = []
    for (mdl, method, _), recs in groups.items():
        pubs = published_rows(cards, mdl, method, recs[0]["_params"])
        mode = (cards.get(method) or {}).get("gmacs_rounding", "round")
        real = [r for r in recs if r["weights"] != "random" and r["dataset"] not in COST_ONLY_DATASETS]
        top1 = sum(r["top1"] for r in real) / len(real) if real else None
        pub_top1 = next((p["top1"] for p in pubs if p.get("top1") is not None), None)
        gmacs = recs[0]["gmacs"]
        ips = [
            r["img_per_s"] for r in recs if r.get("img_per_s") is not None and not math.isnan(r["img_per_s"])
        ]
        setting = recs[0]["setting"] or "-"
        setting = ", ".join(
            p for p in setting.split(", ") if not p.startswith("artifact=") and p != "untrained"
        )
        rows.append(
            [
                -(gmacs if gmacs is not None and not math.isnan(gmacs) else 0.0),
                mdl,
                method,
                "-" if method == "dense" or not setting else setting,
                _fmt(paper_round(gmacs, mode) if gmacs is not None and not math.isnan(gmacs) else None),
                _pub(pubs, "gmacs"),
                _fmt(recs[0]["params_m"]),
                _fmt(top1, 2),
                _pub(pubs, "top1", 2),
                "-" if top1 is None or pub_top1 is None else f"{top1 - pub_top1:+.2f}",
                _fmt(max(ips) if ips else None, 0),
                _pub(pubs, "img_per_s", 0),
                ", ".join(sorted({r["weights"] if len(r["weights"]) < 24 else "file" for r in recs})),
            ]
        )
    rows.sort(key=lambda r: (r[1], r[2] != "dense", r[2], r[0]))  # model, dense first, method, GMACs desc
    rows = [r[1:] for r in rows]
    head = [
        "Model",
        "Method",
        "Setting",
        "GFLOPs (MACs)",
        "published",
        "Params (M)",
        "Top-1 (%)",
        "published",
        "Δ top-1",
        "img/s",
        "published",
        "weights",
    ]
    note = (
        "Measured next to published (methods/*.yaml; '/' joins several published rows). Top-1 only for "
        "real weights on real data; published rows marked trained in the cards are fine-tuned with the "
        "method. img/s: this store's device and dtype, the papers' on their GPUs."
    )
    return note + "\n\n" + tabulate(rows, headers=head, tablefmt=fmt, disable_numparse=True)
