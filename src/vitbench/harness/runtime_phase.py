"""The runtime phase of a run: every (method, setting) timed in each deployment runtime.

A suite with ``throughput: {runtimes: [eager, compile, onnxruntime, openvino], batch_sizes: [1, 64]}``
gets this phase after all its cells are evaluated, so exports and compiles never run between
accuracy cells. Each setting (model, method, native parameters, selection) is built once the way
its cells were (:meth:`vitbench.harness.runner.Harness.builder`: token methods patch a copy of the
model, channel methods prune it), dense is always included (speedups are over dense in the same
runtime), and :func:`vitbench.measure.runtime_speed.measure_runtimes` checks equality with eager
and times the equal ones in interleaved rounds. Rows go to the store's ``runtime_speed`` side
table (:mod:`vitbench.store.runtimes`).
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from vitbench.core.models import data_config
from vitbench.core.specs import Cell, MethodSpec
from vitbench.core.threads import thread_count
from vitbench.core.version import VERSION
from vitbench.measure import count_gmacs
from vitbench.measure.runtime_speed import RuntimeRow, measure_runtimes
from vitbench.methods import METHODS
from vitbench.store.runtimes import load_runtime_rows, write_runtime_rows


def store_rows(
    rows: Sequence[RuntimeRow],
    meta: dict[str, dict[str, Any]],
    common: dict[str, Any],
) -> list[dict[str, Any]]:
    """Side-table rows (:data:`vitbench.store.runtimes.RUNTIME_FIELDS`) of measured rows.

    Args:
        rows: the measurements.
        meta: per variant name: ``method``, ``setting``, ``keep_ratio``, ``selection``, ``gmacs``.
        common: fields shared by every row (``suite``, ``model``, ``weights``, ``device``, ...).
    """
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    round_id = uuid.uuid4().hex[:12]
    out = []
    for r in rows:
        out.append(
            {
                **common,
                **meta[r.variant],
                "runtime": r.runtime,
                "runtime_version": r.version,
                "threads": r.threads,
                "dtype": "float32",
                "export_path": r.export_path,
                "export_s": r.export_s,
                "prepare_s": r.prepare_s,
                "batch_size": r.batch_size,
                "verdict": r.verdict,
                "equal": int(r.equal),
                "max_abs_diff": r.max_abs_diff,
                "median_ms": r.median_ms,
                "p90_ms": r.p90_ms,
                "img_per_s": r.img_per_s,
                "times_ms": list(r.times_ms),
                "round_id": round_id,
                "error": r.error,
                "vitbench_version": VERSION,
                "measured_at": stamp,
            }
        )
    return out


def run_runtime_phase(harness: Any, cells: Sequence[Cell], resumed: bool = False) -> int:
    """Time every setting of ``cells`` in the suite's runtimes; write the rows. Returns rows written.

    Settings are grouped per model; each model's settings are timed together (interleaved).
    Only the main process measures and writes. ``resumed`` (no cell was evaluated in this run):
    a model whose runtimes were all measured before for this suite is not measured again (compiles
    and exports take minutes); delete its rows from the ``runtime_speed`` table to re-measure.
    """
    tp = harness.suite.throughput
    if not tp.runtimes or not harness.main:
        return 0
    done: set[tuple] = set()
    if resumed and Path(harness.results).expanduser().is_file():
        old = load_runtime_rows(harness.results)
        old = old.loc[old["suite"] == harness.suite.name]
        done = set(zip(old["model"], old["runtime"], old["batch_size"].astype(int)))
    written = 0
    for spec in dict.fromkeys(c.model for c in cells):
        if done and all((spec.name, r, b) in done for r in tp.runtimes for b in tp.batch_sizes):
            harness.log(f"{spec.name}: runtime phase already in {harness.results}; not measured again")
            continue
        reps = _settings([c for c in cells if c.model == spec])
        dense = harness.model(spec)
        size = tuple(data_config(dense)["input_size"])
        threads = harness.threads_for(spec)[1]
        with contextlib.ExitStack() as stack:
            variants, meta = [], {}
            for cell in reps:
                name, model, info = _build(harness, cell, dense, stack)
                variants.append((name, model))
                meta[name] = {**info, "gmacs": count_gmacs(model, size)}
            harness.log(
                f"{spec.name}: runtime phase, {len(variants)} settings x {', '.join(tp.runtimes)} x "
                f"batch {', '.join(map(str, tp.batch_sizes))} on {thread_count(threads)}"
            )
            rows = measure_runtimes(
                variants,
                tp.runtimes,
                tp.batch_sizes,
                size,
                threads,
                repeats=tp.repeats,
                warmup=max(1, tp.warmup),
                log=harness.log,
            )
        common = {
            "suite": harness.suite.name,
            "model": spec.name,
            "weights": spec.weights,
            "device": f"cpu ({thread_count(threads)})",
        }
        written += write_runtime_rows(harness.results, store_rows(rows, meta, common))
    return written


def _settings(cells: Sequence[Cell]) -> list[Cell]:
    """One cell per setting (method, overrides, keep ratio, selection), dense first (added if absent)."""
    seen: dict[tuple, Cell] = {}
    for c in cells:
        key = (c.method.name, c.method.params, c.keep_ratio, c.selection)
        seen.setdefault(key, c)
    reps = list(seen.values())
    dense = [c for c in reps if c.method.name == "dense"]
    if not dense and reps:
        first = reps[0]
        dense = [
            Cell(first.model, MethodSpec("dense"), 1.0, first.noise, "scored", first.seed, first.dataset)
        ]
    return dense[:1] + [c for c in reps if c.method.name != "dense"]


def _build(
    harness: Any, cell: Cell, dense: nn.Module, stack: contextlib.ExitStack
) -> tuple[str, nn.Module, dict]:
    """The cell's model with its method applied (entered on ``stack``), its variant name and meta."""
    method: Any = METHODS.get(cell.method.name)
    params = method.params_for(cell.keep_ratio, dense, cell.method.overrides)
    built = harness.builder(method)(cell, method, params, copy.deepcopy(dense))
    stack.enter_context(built.apply)
    setting = method.setting(built.params)
    name = f"{cell.method.name} {setting} {cell.selection}"
    info = {
        "method": cell.method.name,
        "setting": setting,
        "keep_ratio": cell.keep_ratio,
        "selection": cell.selection,
    }
    return name, built.model, info
