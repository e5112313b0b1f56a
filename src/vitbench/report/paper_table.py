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

from vitbench.core.errors import VitbenchError
from vitbench.report.cards import load_cards
from vitbench.report.format import GMACS_NOTE, NA, fmt_num, gmacs_digits
from vitbench.report.population import COST_ONLY_DATASETS, normalise, seeds_note
from vitbench.report.rows import adaptive_note
from vitbench.report.runtimes import REALIZED_NOTE, realized_columns

#: What a row measured besides model, method and parameters (shown as columns when they vary).
_POPULATION = ("weights", "dataset", "split", "sample_ids_hash", "selection", "calib_noise", "calib_level")
_POP_HEAD = {
    "weights": "Weights",
    "dataset": "Dataset",
    "split": "Split",
    "sample_ids_hash": "Images",
    "selection": "Selection",
    "calib_noise": "Calib. noise",
    "calib_level": "Calib. level",
}


def _pop_text(column: str, value: str, rec: dict) -> str:
    if column == "sample_ids_hash":
        n = rec.get("n_samples")
        return f"{'' if n is None or pd.isna(n) else int(n)} ({value[:8]})"
    return value


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
        return NA
    return fmt_num(value, digits)


def _pub(rows: list[dict], key: str, digits: int = 1) -> str:
    vals = [r.get(key) for r in rows if r.get(key) is not None]
    return " / ".join(_fmt(v, digits) for v in vals) if vals else NA


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
    ok = normalise(ok)
    groups: dict[tuple, list[dict]] = {}
    # one row per measured configuration: seeds are the only records ever averaged
    for rec in ok.to_dict("records"):
        params = json.loads(rec["params_json"]) if isinstance(rec.get("params_json"), str) else {}
        params.pop("artifact", None)
        pop = tuple(str(rec[c]) for c in _POPULATION)
        variant = json.dumps([params, rec["setting"], rec["keep_ratio"]], sort_keys=True, default=str)
        key = (rec["model"], rec["method"], variant, pop, rec["model_shown"])
        groups.setdefault(key, []).append({**rec, "_params": params})
    several = {c: len({k[3][i] for k in groups}) > 1 for i, c in enumerate(_POPULATION)}
    # the one rule of every table: a GMACs column's decimals come from its largest value
    gd = gmacs_digits([recs[0]["gmacs"] for recs in groups.values()])
    rows = []
    seeds = []
    keys = []  # (model, method, setting) of each row: the runtime columns are matched on them
    for (mdl, method, _, pop, _shown), recs in groups.items():
        keys.append((mdl, method, recs[0]["setting"]))
        seeds.append(len(recs))
        pubs = published_rows(cards, mdl, method, recs[0]["_params"])
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
        extra = [_pop_text(c, v, recs[0]) for c, v in zip(_POPULATION, pop) if several[c] and c != "weights"]
        rows.append(
            [
                -(gmacs if gmacs is not None and not math.isnan(gmacs) else 0.0),
                recs[0]["model_shown"],
                method,
                "-" if method == "dense" or not setting else setting,
                *extra,
                _fmt(gmacs, gd),
                _pub(pubs, "gmacs"),
                _fmt(recs[0]["params_m"], 2),
                _fmt(top1, 2),
                _pub(pubs, "top1", 2),
                NA if top1 is None or pub_top1 is None else f"{top1 - pub_top1:+.2f}",
                str(len(recs)),
                _fmt(max(ips) if ips else None, 0),
                _pub(pubs, "img_per_s", 0),
                ", ".join(sorted({r["weights"] if len(r["weights"]) < 24 else "file" for r in recs})),
            ]
        )
    keyed = pd.DataFrame(keys, columns=["model", "method", "setting"])
    realized = realized_columns(keyed, df.attrs.get("source"), df.attrs.get("suite"))
    rows = [row + [c.shown[i] for c in realized] for i, row in enumerate(rows)]
    rows.sort(key=lambda r: (r[1], r[2] != "dense", r[2], r[0]))  # model, dense first, method, GMACs desc
    rows = [r[1:] for r in rows]
    head = [
        "Model",
        "Method",
        "Setting",
        *(_POP_HEAD[c] for c in _POPULATION if several[c] and c != "weights"),
        "GMACs",
        "published",
        "Params (M)",
        "Top-1 (%)",
        "published",
        "Δ top-1",
        "Seeds",
        "img/s",
        "published",
        "weights",
        *(c.header for c in realized),
    ]
    if len(set(seeds)) == 1:  # one seed count: said in the note, no column
        at = head.index("Seeds")
        head.pop(at)
        rows = [r[:at] + r[at + 1 :] for r in rows]
    note = (
        "Measured next to published (methods/*.yaml; '/' joins several published rows). Top-1 only for "
        "real weights on real data; published rows marked trained in the cards are fine-tuned with the "
        "method. img/s: machine-dependent (this store's device, threads and dtype; the papers' on their "
        f"GPUs). Top-1: {seeds_note(seeds)}; rows of different images or token selection are never averaged; "
        f"{GMACS_NOTE}; published GMACs as the papers print them (one decimal)"
        + "".join(f"; {n}" for n in (adaptive_note(ok), REALIZED_NOTE if realized else "") if n)
        + "."
    )
    if fmt == "csv":  # one table, no note; each 'published' column named after what it publishes
        named = [f"{head[i - 1]} {h}" if h == "published" else h for i, h in enumerate(head)]
        return pd.DataFrame(rows, columns=named).to_csv(index=False, lineterminator="\n").rstrip("\n")
    numeric = {"GMACs", "published", "Params (M)", "Top-1 (%)", "Δ top-1", "Seeds", "img/s"}
    numeric |= {c.header for c in realized}
    align = ["right" if h in numeric else "left" for h in head]
    return note + "\n\n" + tabulate(rows, headers=head, tablefmt=fmt, disable_numparse=True, colalign=align)
