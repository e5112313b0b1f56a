"""``vitbench throughput --runtime ...`` and ``vitbench export``: compressed models in deployment runtimes.

:func:`runtime_table` builds dense and each (method, keep ratio) on one model (random weights
unless given: speed does not depend on them), checks each in each runtime against eager and times
the equal ones in interleaved rounds (:func:`vitbench.measure.runtime_speed.measure_runtimes`),
then prints the runtimes view (:func:`vitbench.report.runtimes.runtimes_table`) and optionally
stores the rows in a results store's ``runtime_speed`` side table.

:func:`export_model` writes one compressed model as ONNX with a dynamic batch axis and checks it
in ONNX Runtime / OpenVINO against eager at the given batch sizes.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vitbench.core.checks import method_keep_pairs
from vitbench.core.errors import VitbenchError
from vitbench.core.models import create_model, data_config, freeze_args
from vitbench.core.specs import ModelSpec
from vitbench.core.threads import thread_count
from vitbench.harness.runtime_phase import store_rows
from vitbench.harness.trained import cost_params
from vitbench.measure import count_gmacs
from vitbench.measure.runtime_speed import measure_runtimes
from vitbench.measure.runtimes import (
    Equality,
    ExportError,
    check_runtimes,
    compare,
    eager_logits,
    export_onnx,
    failing_op,
    prepare,
    sample_input,
)
from vitbench.methods import METHODS
from vitbench.methods.base import ChannelMethod, token_method
from vitbench.report.format import NA
from vitbench.report.runtimes import runtimes_table
from vitbench.store.runtimes import RUNTIME_FIELDS, write_runtime_rows


def _random_calib(model: Any, size: tuple) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two seeded batches of 32 standard-normal images and uniform labels (costs only)."""
    gen = torch.Generator().manual_seed(0)
    classes = max(int(getattr(model, "num_classes", 0) or 0), 1)
    return [
        (torch.randn(32, *size, generator=gen), torch.randint(0, classes, (32,), generator=gen))
        for _ in range(2)
    ]


def build_variant(
    base: torch.nn.Module,
    name: str,
    keep: float,
    sets: dict[str, Any],
    selection: str,
    stack: contextlib.ExitStack,
    entry: ModelSpec | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A copy of ``base`` with method ``name`` at ``keep`` applied (kept applied by ``stack``).

    Token methods patch a deep copy (trainable ones with the artifact a suite would use for the
    model entry ``entry``, else untrained parts: :func:`vitbench.harness.trained.cost_params`);
    channel methods prune a copy (calibration: two seeded batches of random images). Returns the
    model and its meta (method, setting, keep ratio, selection).
    """
    cls: Any = METHODS.get(name)
    own = {k: v for k, v in sets.items() if k in cls.defaults()}
    model = copy.deepcopy(base).eval()
    params = cost_params(cls, keep if cls.knob else 1.0, model, own, entry)
    if issubclass(cls, ChannelMethod):
        size = tuple(data_config(model)["input_size"])
        model = cls.prune(model, params, _random_calib(model, size)).eval()
        handle = cls.token_handle(model, params, 0)
        if handle is not None:
            stack.enter_context(handle)
    else:
        stack.enter_context(token_method(name).apply(model, params, selection))
    setting = cls.setting(params)
    return model, {"method": name, "setting": setting, "keep_ratio": keep, "selection": selection}


def runtime_table(
    model_name: str,
    methods: list[str],
    keeps: list[float],
    batch_sizes: list[int],
    runtimes: list[str],
    selection: str = "scored",
    sets: dict[str, Any] | None = None,
    threads: int | None = None,
    warmup: int = 1,
    repeats: int = 10,
    weights: str = "random",
    results: str | None = None,
    model_args: dict[str, Any] | None = None,
    data_cfg: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """Runtimes view of dense and every (method, keep) on ``model_name``; see the module docstring.

    Args:
        model_name: timm model name.
        methods: methods besides dense, each at every keep ratio of ``keeps``; ``name@0.5``: at
            keep 0.5 only.
        keeps: keep ratios.
        batch_sizes: batch sizes to check and time (1: latency).
        runtimes: runtime names (:data:`vitbench.measure.runtimes.RUNTIMES`).
        selection: token selection of token methods.
        sets: method parameters (``NAME=VALUE``), applied to the methods that have them.
        threads: intra-op threads of every runtime (default: torch's current setting).
        warmup: untimed interleaved rounds.
        repeats: timed runs of each (setting, runtime) per batch size, interleaved.
        weights: ``random`` (default: speed does not depend on weights), ``demo``, ``hub`` or a path.
        model_args: ``timm.create_model`` arguments of an own architecture.
        data_cfg: data config overrides.
        results: also write the rows to this store's ``runtime_speed`` side table.
        log: receives progress lines (prepare / export times, the load average).

    Raises:
        VitbenchError: unknown runtime, missing packages (one line naming the ``deploy`` extra).
    """
    check_runtimes(runtimes)
    n_threads = threads or torch.get_num_threads()
    base = create_model(model_name, weights, model_args=model_args, data_config=data_cfg).eval()
    size = tuple(data_config(base)["input_size"])
    with contextlib.ExitStack() as stack:
        variants, meta = [], {}
        for name, keep in [("dense", 1.0), *method_keep_pairs(methods, keeps)]:
            entry = ModelSpec(model_name, weights, freeze_args(model_args or {}), freeze_args(data_cfg or {}))
            model, info = build_variant(base, name, keep, sets or {}, selection, stack, entry)
            label = f"{name} {info['setting']}"
            if label in meta:
                continue
            info["gmacs"] = count_gmacs(model, size)
            variants.append((label, model))
            meta[label] = info
        log(f"load average before timing: {_load()}")
        rows = measure_runtimes(
            variants, runtimes, batch_sizes, size, n_threads, repeats=repeats, warmup=warmup, log=log
        )
        log(f"load average after timing: {_load()}")
    common = {
        "suite": "vitbench throughput",
        "model": model_name,
        "weights": weights,
        "device": f"cpu ({thread_count(n_threads)})",
    }
    stored = store_rows(rows, meta, common)
    if results:
        write_runtime_rows(results, stored)
        log(f"wrote {len(stored)} runtime rows to {results}")
    frame = pd.DataFrame(stored, columns=list(RUNTIME_FIELDS))
    return runtimes_table(frame, fmt="github")


def _load() -> str:
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class ExportCheck:
    """One compressed model exported as ONNX and checked against eager.

    Attributes:
        method: the method name.
        setting: its native setting (``""`` when it could not be built).
        export_s: export seconds (``None`` when the model could not be built or exported).
        checks: ``(runtime, batch size, Equality)`` for every check made.
        error: why it could not be built, exported or run (one line), else ``None``.
    """

    method: str
    setting: str
    export_s: float | None
    checks: tuple[tuple[str, int, Equality], ...]
    error: str | None = None

    @property
    def equal(self) -> bool:
        """Whether it exported and every check was equal."""
        return self.error is None and all(eq.equal for _r, _b, eq in self.checks)


def _check_variant(
    base: torch.nn.Module,
    method: str,
    keep: float,
    size: tuple,
    checks: tuple[str, ...],
    sizes: list[int],
    n_threads: int,
    workdir: Path,
    selection: str,
    sets: dict[str, Any],
    entry: ModelSpec | None = None,
) -> tuple[ExportCheck, Path]:
    """Build ``method`` at ``keep`` on a copy of ``base``, export it to ``workdir`` and check it.

    Raises:
        VitbenchError: the method cannot be built (unknown, unsupported model, bad parameters).
        ExportError: the export or a runtime fails (one line naming the failing op).
    """
    with contextlib.ExitStack() as stack:
        model, info = build_variant(base, method, keep, sets, selection, stack, entry)
        path, export_s = export_onnx(model, size, workdir / "model.onnx")
        found = []
        for rt in checks:
            prep = prepare(rt, model, size, sizes, n_threads, workdir, onnx_file=path)
            for bs in sizes:
                x = sample_input(size, bs, seed=0)
                found.append((rt, bs, compare(prep, eager_logits(model, x), x)))
    return ExportCheck(method, str(info["setting"]), export_s, tuple(found)), path


def _export_args(
    check: list[str] | None, batch_sizes: list[int] | None, threads: int | None
) -> tuple[tuple[str, ...], list[int], int]:
    checks = check_runtimes(check or ["onnxruntime", "openvino"])
    if any(r not in ("onnxruntime", "openvino") for r in checks):
        raise VitbenchError("vitbench export checks in onnxruntime and/or openvino; use --check for those")
    return checks, batch_sizes or [1, 32], threads or torch.get_num_threads()


def export_model(
    model_name: str,
    method: str,
    keep: float,
    out: str | Path,
    weights: str = "random",
    selection: str = "scored",
    sets: dict[str, Any] | None = None,
    check: list[str] | None = None,
    batch_sizes: list[int] | None = None,
    threads: int | None = None,
    model_args: dict[str, Any] | None = None,
    data_cfg: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """Write ``method`` at ``keep`` on ``model_name`` as ONNX (dynamic batch) and check it; one line.

    The exported file is loaded in each runtime of ``check`` (default ONNX Runtime and OpenVINO)
    and its logits compared with eager on the same seeded batches at each batch size (default
    1 and 32). Returns the line (the file, the export seconds and every verdict) and whether every
    check was equal; the file is written either way.

    Raises:
        VitbenchError: unknown method/runtime, missing packages (names the ``deploy`` extra), a
            method that cannot export (``ExportError``: one line naming the failing op), or an
            unwritable ``out``.
    """
    checks, sizes, n_threads = _export_args(check, batch_sizes, threads)
    out = Path(out)
    if out.suffix != ".onnx":
        raise VitbenchError(f"export writes ONNX: give an output path ending in .onnx, got {out}")
    base = create_model(model_name, weights, model_args=model_args, data_config=data_cfg).eval()
    size = tuple(data_config(base)["input_size"])
    entry = ModelSpec(model_name, weights, freeze_args(model_args or {}), freeze_args(data_cfg or {}))
    with tempfile.TemporaryDirectory() as tmp:
        res, path = _check_variant(
            base, method, keep, size, checks, sizes, n_threads, Path(tmp), selection, sets or {}, entry
        )
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)
        except OSError as exc:
            raise VitbenchError(f"cannot write {out} ({exc.strerror}); pass a writable --output") from None
    verdicts = [f"{rt} b{bs} {eq.verdict()}" for rt, bs, eq in res.checks]
    what = f"{model_name} {method} {res.setting}".rstrip()
    line = f"wrote {out} ({what}, export {res.export_s:.1f} s, dynamic batch): " + "; ".join(verdicts)
    return line, res.equal


def export_matrix(
    model_name: str,
    methods: list[str] | None = None,
    keep: float = 0.7,
    weights: str = "random",
    selection: str = "scored",
    sets: dict[str, Any] | None = None,
    check: list[str] | None = None,
    batch_sizes: list[int] | None = None,
    threads: int | None = None,
    model_args: dict[str, Any] | None = None,
    data_cfg: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[str, list[ExportCheck]]:
    """Export and check every method (default: every registered one) at ``keep``; a markdown table.

    Each method goes through the same build, export and check as :func:`export_model` (no file
    kept). A method that cannot be built on the model, exported or run in a runtime gets its
    one-line reason (the failing op) in the table instead of verdicts; the others get one cell
    per (runtime, batch size): ``equal (max |Δ| …)`` or ``not equal (max |Δ| …, k of B rows …)``.

    Returns:
        The table (GitHub markdown, one row per method) and the per-method results.

    Raises:
        VitbenchError: unknown runtime, missing packages (names the ``deploy`` extra), an unknown
            method name.
    """
    checks, sizes, n_threads = _export_args(check, batch_sizes, threads)
    names = methods or sorted(METHODS.names())
    for name in names:
        METHODS.get(name)  # an unknown name is one line before any export
    base = create_model(model_name, weights, model_args=model_args, data_config=data_cfg).eval()
    size = tuple(data_config(base)["input_size"])
    entry = ModelSpec(model_name, weights, freeze_args(model_args or {}), freeze_args(data_cfg or {}))
    results = []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                res, _p = _check_variant(
                    base, name, keep, size, checks, sizes, n_threads, Path(tmp), selection, sets or {}, entry
                )
            except ExportError as exc:
                res = ExportCheck(name, "", None, (), f"not exportable: {' '.join(str(exc).split())}")
            except VitbenchError as exc:  # the method does not apply to this model
                res = ExportCheck(name, "", None, (), f"not built: {' '.join(str(exc).split())}")
            except Exception as exc:  # a failure in eager itself: one line in the table, not a traceback
                res = ExportCheck(name, "", None, (), f"failed in eager: {failing_op(exc)}")
        results.append(res)
        log(_matrix_line(res))
    head = ["method", "setting", "export s", *(f"{rt} b{bs}" for rt in checks for bs in sizes)]
    rows = []
    for res in results:
        if res.error is not None:
            cells = [res.error] + [NA] * (len(head) - 3)
        else:
            cells = [f"{res.export_s:.1f}", *(eq.verdict() for _r, _b, eq in res.checks)]
        rows.append([res.method, res.setting or NA, *cells])
    table = "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    )
    return table, results


def _matrix_line(res: ExportCheck) -> str:
    if res.error is not None:
        return f"{res.method}: {res.error}"
    verdicts = "; ".join(f"{rt} b{bs} {eq.verdict()}" for rt, bs, eq in res.checks)
    return f"{res.method} {res.setting} (export {res.export_s:.1f} s): {verdicts}"
