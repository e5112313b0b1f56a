"""The provenance block of the HTML report: what the records were measured on, and with what.

From the records alone (every record carries its identity and provenance, see
:mod:`vitbench.store.records`): datasets and splits with image counts and the ids hash; models as
shown in the tables, their timm names, ``model_args``, weights file names and digests; the
calibration of channel-pruning cells; noises and levels; seeds and token selections; vitbench,
torch and timm versions, git commits, devices and the GMACs counter.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import pandas as pd

from vitbench.report.rows import image_sets, successful_rows

_DASH = "–"


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return _DASH
    return str(v)


def _table(
    head: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[str] = (), wrap: Sequence[str] = ()
) -> str:
    """A small HTML table; cells escaped; ``numeric`` columns right-aligned, ``wrap`` ones may wrap."""
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = []
    for r in rows:
        tds = "".join(
            f"<td style='text-align:right'>{html.escape(_text(v))}</td>"
            if h in numeric
            else f"<td class='wrap'>{html.escape(_text(v))}</td>"
            if h in wrap
            else f"<td>{html.escape(_text(v))}</td>"
            for h, v in zip(head, r)
        )
        body.append(f"<tr>{tds}</tr>")
    return (
        f"<div class='tbl'><table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _suites(frame: pd.DataFrame) -> str:
    return ", ".join(sorted({str(s) for s in frame["suite"].dropna()})) if "suite" in frame else _DASH


def _datasets(ok: pd.DataFrame) -> str:
    sets = image_sets(ok)
    rows = []
    for (dataset, split, digest), grp in ok.groupby(["dataset", "split", "sample_ids_hash"], sort=True):
        n = grp["n_samples"].dropna()
        labels = sorted({str(v)[:12] for v in grp.get("labels_digest", pd.Series(dtype=object)).dropna()})
        rows.append(
            [
                sets.get((str(dataset), str(split), str(digest)), ""),
                dataset,
                split,
                int(n.iloc[0]) if len(n) else None,
                str(digest)[:16],
                ", ".join(labels) or _DASH,
                _suites(grp),
                len(grp),
            ]
        )
    head = ["Image set", "Dataset", "Split", "Images", "Ids hash", "Labels digest", "Suites", "Records"]
    return _table(head, rows, numeric=("Images", "Records"))


def _models(ok: pd.DataFrame) -> str:
    rows = []
    keys = ["model_shown", "model", "model_args", "weights"]
    for (shown, model, args, weights), grp in ok.groupby(keys, sort=True, dropna=False):
        digests = sorted({str(v) for v in grp.get("weights_digest", pd.Series(dtype=object)).dropna()})
        name = PurePath(str(weights)).name if str(weights) not in ("random", "demo", "hub") else str(weights)
        params = pd.to_numeric(grp["params_m"], errors="coerce").dropna()
        rows.append(
            [
                shown,
                model,
                json.dumps(json.loads(args), sort_keys=False) if args else _DASH,
                name,
                ", ".join(digests) or "unrecorded",
                f"{params.iloc[0]:.2f}" if len(params) else None,
                _suites(grp),
            ]
        )
    head = [
        "Model (as shown)",
        "timm name",
        "model_args",
        "Weights file",
        "Weights digest",
        "Params (M)",
        "Suites",
    ]
    return _table(head, rows, numeric=("Params (M)",))


def _calibration(ok: pd.DataFrame) -> str:
    if "family" not in ok:
        return "<p>No channel-pruning cells (nothing was calibrated).</p>"
    channel = ok.loc[ok["family"].astype(str) == "channel"]
    if channel.empty:
        return "<p>No channel-pruning cells (nothing was calibrated).</p>"
    extra = sorted(
        c for c in channel.columns if c.startswith("calib_") and c not in ("calib_noise", "calib_level")
    )
    head = ["Method", "Setting", "Keep", "Calibration noise", *extra, "Parameters", "Suites"]
    rows = []
    keys = ["method", "setting", "keep_ratio", "calib_noise", "calib_level"]
    for key, grp in channel.groupby(keys, sort=True, dropna=False):
        method, setting, keep, cnoise, clevel = key
        first = grp.iloc[0]
        params = str(first.get("params_json") or "")
        rows.append(
            [
                method,
                setting,
                f"{float(keep):.2f}",
                "clean" if str(cnoise) == "clean" else f"{cnoise}@{float(clevel):g}",
                *[first.get(c) for c in extra],
                params or _DASH,
                _suites(grp),
            ]
        )
    return _table(head, rows, numeric=("Keep",), wrap=("Parameters",))


def _noises(ok: pd.DataFrame) -> str:
    """One row per set of levels: the noises measured at exactly those levels."""
    groups: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for noise, grp in ok.groupby("noise", sort=True):
        levels = sorted({float(v) for v in grp["level"]})
        shown = ", ".join(f"{v:g}" for v in levels) if noise != "clean" else _DASH
        groups.setdefault(shown, []).append(str(noise))
        counts[shown] = counts.get(shown, 0) + len(grp)
    rows = [[", ".join(names), shown, counts[shown]] for shown, names in groups.items()]
    return _table(["Noises", "Levels", "Records"], rows, numeric=("Records",), wrap=("Noises",))


def _software(df: pd.DataFrame) -> str:
    cols = ["vitbench_version", "torch_version", "timm_version", "git_commit", "gmacs_counter", "device"]
    present = [c for c in cols if c in df]
    frame = df[present].astype(object).where(df[present].notna(), "unrecorded").astype(str)
    if "git_commit" in frame:
        frame["git_commit"] = frame["git_commit"].str[:12]
    counts = frame.value_counts(sort=False).reset_index(name="records")
    head = ["vitbench", "torch", "timm", "commit", "GMACs counter", "device"][: len(present)] + ["Records"]
    return _table(head, counts.values.tolist(), numeric=("Records",))


def provenance_html(df: pd.DataFrame, model: str | None = None) -> str:
    """The report's provenance block (an HTML ``section``) for the records of ``df``.

    Args:
        df: records frame (every record, failed ones included in the software table).
        model: only this model's records.

    Returns:
        HTML: datasets/splits/image counts, models and weights, calibration of channel cells,
        noises, seeds and selections, software versions and commits.
    """
    ok = successful_rows(df)
    if model is not None:
        ok = ok.loc[ok["model"] == model]
        df = df.loc[df["model"] == model] if "model" in df else df
    seeds = ", ".join(str(int(s)) for s in sorted({int(s) for s in ok["seed"].dropna()})) or _DASH
    selections = ", ".join(sorted({str(s) for s in ok["selection"]}))
    parts = [
        "<section class='prov'>",
        "<h2>What was measured</h2>",
        "<h3>Datasets and image sets</h3>",
        _datasets(ok),
        "<h3>Models and weights</h3>",
        _models(ok),
        "<h3>Calibration of channel-pruning cells</h3>",
        _calibration(ok),
        "<h3>Noises</h3>",
        _noises(ok),
        f"<p><b>Seeds:</b> {html.escape(seeds)} · <b>token selection:</b> {html.escape(selections)}</p>",
        "<h3>Software</h3>",
        _software(df),
        "</section>",
    ]
    return "\n".join(parts)


__all__ = ["provenance_html"]
