"""``vitbench recount``: recompute ``gmacs`` and ``params_m`` of stored records with today's counter.

A store written by a counter that missed an op (e.g. fused attention on torch 2.14 before
counter version 2) holds GMACs that are several percent low. Every other column (accuracy,
calibration, throughput, provenance) stays as it was measured; only ``gmacs``, ``params_m`` and
``gmacs_counter`` are rewritten, in place, one committed update per record.

Each successful record is rebuilt from its cell description:

* token methods and ``dense``: the model (``model``, ``weights``) with the method applied with
  the record's own native parameters (``params_json``, trained artifacts included), counted on
  the harness's batch-1 synthetic input;
* channel methods: the cell is looked up by ``cell_key`` in its suite (the record's ``suite``, or
  ``--suite`` for a suite file) and its pruned model is taken from the pruned-model artifact, or
  pruned again exactly as the harness does (seeded, same calibration images).

Records that cannot be rebuilt (weights not available offline, a suite that no longer produces
the cell) are listed with the reason and left untouched.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vitbench.core.errors import VitbenchError
from vitbench.core.models import create_model, data_config
from vitbench.core.specs import Cell
from vitbench.harness.runner import Harness
from vitbench.harness.suites import expand, load_suite
from vitbench.measure import COUNTER_VERSION, count_gmacs, count_params_m, self_check
from vitbench.methods import METHODS, ChannelMethod
from vitbench.methods.base import NoParams, make_params
from vitbench.store.results import ResultsStore


@dataclasses.dataclass(frozen=True)
class RecountChange:
    """One group of records that share a cost setting, before and after the recount."""

    method: str
    setting: str
    selection: str
    model: str
    n_records: int
    old_gmacs: float | None
    new_gmacs: float
    old_params_m: float | None
    new_params_m: float
    old_counter: str


@dataclasses.dataclass
class RecountSummary:
    """What :func:`recount` did.

    Attributes:
        records: successful records seen.
        updated: records whose ``gmacs``/``params_m``/``gmacs_counter`` were rewritten.
        changes: one entry per cost setting (method, params, model) with old and new values.
        skipped: ``"label: reason"`` for records that could not be rebuilt (left untouched).
    """

    records: int = 0
    updated: int = 0
    changes: list[RecountChange] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _differs(row: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether a record's gmacs, params_m or counter version differ from the recounted ``values``."""
    if (row.get("gmacs_counter") or "1") != values["gmacs_counter"]:
        return True
    for name in ("gmacs", "params_m"):
        old = _num(row[name])
        if old is None or not math.isclose(old, values[name], rel_tol=1e-9):
            return True
    return False


def _group_key(row: dict[str, Any], channel: bool) -> tuple[Any, ...]:
    base = (row["model"], row["weights"], row["method"], row["params_json"], row["selection"])
    if channel:  # a pruned model also depends on its calibration images
        return (*base, row["calib_noise"], row["calib_level"], row["seed"], row["cell_key"])
    return base


def recount(
    results: str | Path,
    suite: str | None = None,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
) -> RecountSummary:
    """Recompute ``gmacs`` and ``params_m`` of every successful record of a store.

    Args:
        results: path of an existing results store.
        suite: suite name or YAML path for channel records (default: each record's ``suite``).
        dry_run: report what would change without writing.
        log: where progress lines go.

    Returns:
        The :class:`RecountSummary`.

    Raises:
        VitbenchError: the store does not exist or is not a vitbench store; the counter's
            self-check fails on this torch release.
    """
    import torch

    path = Path(results).expanduser()
    if not path.is_file():
        raise VitbenchError(f"results file {path} does not exist; pass the store to recount")
    self_check("cpu")
    with ResultsStore(path, readonly=True) as ro:
        frame = ro.frame()
    rows = [r for r in frame.to_dict("records") if r.get("error") is None]
    summary = RecountSummary(records=len(rows))
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        channel = row["method"] in METHODS and issubclass(METHODS.get(row["method"]), ChannelMethod)
        groups.setdefault(_group_key(row, channel), []).append(row)
    builder = _Builder(suite, path, log)
    updates: list[tuple[str, dict[str, Any]]] = []
    with torch.no_grad():
        for members in groups.values():
            first = members[0]
            label = f"{first['method']} {first.get('setting') or ''} on {first['model']}".strip()
            try:
                gmacs, params_m = builder.costs(first)
            except VitbenchError as exc:
                summary.skipped.extend(f"{r['cell_key'][:12]} {label}: {exc}" for r in members)
                continue
            olds = Counter(
                (_num(r["gmacs"]), _num(r["params_m"]), r.get("gmacs_counter") or "1") for r in members
            )
            for (old_g, old_p, old_c), n in sorted(olds.items(), key=str):
                summary.changes.append(
                    RecountChange(
                        first["method"],
                        str(first.get("setting") or ""),
                        str(first.get("selection") or ""),
                        first["model"],
                        n,
                        old_g,
                        gmacs,
                        old_p,
                        params_m,
                        old_c,
                    )
                )
            values = {"gmacs": gmacs, "params_m": params_m, "gmacs_counter": COUNTER_VERSION}
            updates.extend((r["cell_key"], values) for r in members if _differs(r, values))
    if not dry_run and updates:
        with ResultsStore(path) as store:
            for key, values in updates:
                store.update(key, values)
    summary.updated = len(updates)  # with dry_run: the records that would be rewritten
    return summary


class _Builder:
    """Rebuilds the measured model of a record and counts it (models and suites memoised)."""

    def __init__(self, suite: str | None, results: Path, log: Callable[[str], None]) -> None:
        self.suite_arg, self.results, self.log = suite, results, log
        self._models: dict[tuple[str, str], Any] = {}
        self._harness: dict[str, tuple[Harness, dict[str, Cell]]] = {}

    def model(self, name: str, weights: str) -> Any:

        key = (name, weights)
        if key not in self._models:
            self._models.clear()
            self._models[key] = create_model(name, weights).eval()
        return self._models[key]

    def costs(self, row: dict[str, Any]) -> tuple[float, float]:

        spread = row.get("gmacs_p50")
        if spread is not None and not math.isnan(float(spread)):  # adaptive: a mean over the images
            raise VitbenchError(
                "per-image GMACs of an adaptive method need its images; rerun the cell to recount it"
            )
        cls: Any = METHODS.get(row["method"])
        values = json.loads(row["params_json"]) if row.get("params_json") else {}
        params = make_params(cls, values)
        if issubclass(cls, ChannelMethod):
            model = self.pruned(row, cls, params)
            apply = cls.token_handle(model, params, int(row["seed"] or 0))
            dense: Any = METHODS.get("dense")
            apply = apply or dense.apply(model, NoParams(), "scored", 0)
        else:
            model = self.model(row["model"], row["weights"])
            apply = cls.apply(model, params, row["selection"] or "scored", int(row["seed"] or 0))
        size = tuple(data_config(model)["input_size"])
        with apply as handle:  # params inside: trained parts (predictors) are attached here
            handle.set_sample_ids(None)
            gmacs = count_gmacs(model, size)
            params_m = count_params_m(model)
        return gmacs, params_m

    def pruned(self, row: dict[str, Any], cls: Any, params: Any) -> Any:

        name = self.suite_arg or row.get("suite")
        if not name:
            raise VitbenchError("channel record without a suite; pass --suite SUITE")
        if name not in self._harness:
            spec = load_suite(name)
            harness = Harness(spec, str(self.results), progress=False, log=self.log)
            every = expand(spec)  # keyed as today's runs key them, and as stores before content keys
            self._harness[name] = (
                harness,
                {**{c.key(): c for c in every}, **{harness.cell_key(c): c for c in every}},
            )
        harness, cells = self._harness[name]
        cell = cells.get(row["cell_key"])
        if cell is None:
            raise VitbenchError(
                f"suite '{name}' no longer produces this cell; pass --suite with the suite file that ran it"
            )
        return harness.pruned.model(cell, cls, params, harness.model(cell.model), harness.cache)


def format_summary(summary: RecountSummary, dry_run: bool) -> str:
    """The recount report: one line of totals, a table of changed settings, skipped records."""
    from tabulate import tabulate

    changed = [
        c
        for c in summary.changes
        if c.old_gmacs is None
        or not math.isclose(c.old_gmacs, c.new_gmacs, rel_tol=1e-9)
        or c.old_params_m is None
        or not math.isclose(c.old_params_m, c.new_params_m, rel_tol=1e-9)
    ]
    n_changed = sum(c.n_records for c in changed)
    verb = "would rewrite" if dry_run else "rewrote"
    lines = [
        f"recount (GMACs counter {COUNTER_VERSION}): {summary.records} successful records; "
        f"{n_changed} with a different gmacs/params_m; {verb} "
        f"{summary.updated}; "
        f"{len(summary.skipped)} could not be rebuilt"
    ]
    if changed:
        rows = []
        for c in changed:
            delta = f"{100 * (c.new_gmacs / c.old_gmacs - 1):+.2f} %" if c.old_gmacs else "–"
            rows.append(
                [
                    c.method,
                    c.setting,
                    c.selection,
                    c.model,
                    c.n_records,
                    c.old_counter,
                    c.old_gmacs,
                    c.new_gmacs,
                    delta,
                    c.old_params_m,
                    c.new_params_m,
                ]
            )
        lines.append(
            tabulate(
                rows,
                headers=[
                    "method",
                    "setting",
                    "selection",
                    "model",
                    "records",
                    "counter",
                    "GMACs before",
                    "GMACs after",
                    "Δ GMACs",
                    "params (M) before",
                    "after",
                ],
                tablefmt="github",
                floatfmt=".6g",
            )
        )
    lines.extend(f"not recounted: {s}" for s in summary.skipped)
    return "\n".join(lines)


__all__ = ["RecountChange", "RecountSummary", "format_summary", "recount"]
