"""Deployment runtimes of a model: eager PyTorch, ``torch.compile``, ONNX Runtime and OpenVINO.

Each runtime turns a PyTorch model (with its token method patched in, or channel-pruned) into a
callable ``[B, C, H, W] float32 tensor -> [B, K] logits`` (:meth:`Runtime.prepare`), with the
time that took recorded apart from any timing:

* ``eager``: the model itself.
* ``compile``: ``torch.compile(model, backend="inductor", dynamic=False, fullgraph=True)`` (one
  graph; a model that cannot be captured whole falls back to ``fullgraph=False`` and the record's
  ``export_path`` says so). Compilation happens at the first call of each input shape: the
  prepare step makes that call at every batch size to be timed.
* ``onnxruntime`` / ``openvino``: ``torch.onnx.export(model, ..., dynamo=True)`` with a dynamic
  batch axis (traced at batch 2, so the class-token expand is not fixed to batch 1), then an ONNX
  Runtime ``InferenceSession`` (CPU execution provider) or an OpenVINO ``CompiledModel`` (read from
  the same ONNX file, f32 inference precision: CPUs with bf16 would otherwise default to bf16).

Threads are equal across runtimes: torch's intra-op threads, ONNX Runtime's
``intra_op_num_threads`` (inter-op 1, sequential execution) and OpenVINO's
``INFERENCE_NUM_THREADS`` (one stream).

Equality before speed (:func:`compare`): the prepared model's logits are compared with eager
logits of the same inputs; ``max |Δ|`` above :data:`TOLERANCE` of the dtype (times the logits'
scale) makes it ``not equal`` and a caller never shows its speed as a result. Token methods that
pick tokens by a score can differ where scores tie (untrained predictors), because runtimes
tie-break differently: this check is what catches it.

ONNX Runtime, OpenVINO, onnx and onnxscript come with the ``deploy`` extra
(``pip install "vitbench[deploy]"``); asking for those runtimes without it is a one-line error.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import re
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# re-exported: the runtime names and package checks, kept free of torch in vitbench.core.checks
from vitbench.core.checks import RUNTIMES as RUNTIMES
from vitbench.core.checks import check_runtimes as check_runtimes
from vitbench.core.checks import runtime_version as runtime_version
from vitbench.core.errors import VitbenchError

#: Relative tolerance of ``max |Δ|`` per compute dtype, times ``max(1, max |eager logit|)``.
#: float32: kernels reorder sums (measured ≤ 3e-6 on DeiT-S logits of scale ~1); 1e-4 leaves room
#: for larger models while a different token choice (≥ 1e-2 in every case seen) fails it.
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 3e-3}
#: The batch at which ONNX exports are traced (batch 1 would be specialised away).
EXPORT_BATCH = 2


@dataclass
class Prepared:
    """A model made ready in one runtime.

    Attributes:
        runtime: the runtime name (:data:`RUNTIMES`).
        version: the runtime package and version, e.g. ``"onnxruntime 1.32.0"``.
        threads: intra-op threads the runtime was given.
        export_path: how the model got there, e.g. ``"torch.onnx.export(dynamo=True), dynamic batch"``.
        export_s: seconds spent exporting (ONNX) or 0.
        prepare_s: seconds spent building the session / compiling, first calls at each batch size
            included (never part of a timing).
        run: ``[B, C, H, W] float32 -> [B, K]`` logits (a CPU float32 tensor).
        onnx_path: the exported file (ONNX runtimes), else ``None``.
    """

    runtime: str
    version: str
    threads: int
    export_path: str
    export_s: float
    prepare_s: float
    run: Callable[[torch.Tensor], torch.Tensor]
    onnx_path: Path | None = None
    _keep: list[Any] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Equality:
    """Eager vs runtime logits on the same inputs.

    Attributes:
        max_abs: ``max |Δ|`` over all logits.
        tolerance: the bound it was held to (:data:`TOLERANCE` times the logits' scale).
        batch_size: images compared.
        rows_differing: rows whose ``max |Δ|`` exceeds the tolerance.
    """

    max_abs: float
    tolerance: float
    batch_size: int
    rows_differing: int

    @property
    def equal(self) -> bool:
        """Whether every logit is within the tolerance."""
        return self.max_abs <= self.tolerance

    def verdict(self) -> str:
        """``"equal (max |Δ| 1.2e-06)"`` or ``"not equal (max |Δ| 2.9e-02, 4 of 32 rows)"``."""
        if self.equal:
            return f"equal (max |Δ| {self.max_abs:.1e})"
        return (
            f"not equal (max |Δ| {self.max_abs:.1e}, {self.rows_differing} of {self.batch_size} rows "
            f"above {self.tolerance:.0e})"
        )


class ExportError(VitbenchError):
    """A model cannot be exported or compiled in a runtime; the message is one line naming the op."""


def failing_op(exc: BaseException) -> str:
    """One line saying why an export or compile failed: the failing op when the message names one.

    ``torch.onnx.export`` wraps the real failure (``TorchExportError`` caused by it): the innermost
    cause is read. A shape that depends on tensor values (``int(t.max())`` deciding a token
    count) is reported as a data-dependent shape with the line of code that needs it.
    """
    inner = exc
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    text = " ".join(str(inner).split())
    if "data-dependent expression" in text:
        expr = re.search(r"data-dependent expression (.+?) \(", text)
        where = re.search(
            r'raised this error: File "[^"]*?([\w.]+)", line (\d+), in (\w+) (.+?)(?: The error| $)', text
        )
        at = f" at {where.group(1)}:{where.group(2)} {where.group(3)}: {where.group(4)[:80]}" if where else ""
        return (
            f"data-dependent shape ({expr.group(1) if expr else 'a value read from a tensor'}){at}; "
            "a shape read from tensor values cannot be exported: time this method in eager or compile"
        )
    found = re.findall(r"(aten::\w+|aten\.\w+(?:\.\w+)?|torch\.ops\.aten\.\w+(?:\.\w+)?)", text)
    head = f"{type(inner).__name__}: {text}"
    if found:
        return f"unsupported op {found[0]} ({head[:160]})"
    return head[:240]


def sample_input(input_size: Sequence[int], batch_size: int, seed: int = 0) -> torch.Tensor:
    """A seeded standard-normal batch ``[batch_size, *input_size]`` (float32, CPU)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch_size, *input_size), generator=gen)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def eager_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` (eval mode, inference mode) for ``x``, as a CPU float32 tensor."""
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return model(x).float().cpu()
    finally:
        model.train(was)


def prepare(
    name: str,
    model: nn.Module,
    input_size: Sequence[int],
    batch_sizes: Sequence[int],
    threads: int,
    workdir: Path,
    onnx_file: Path | None = None,
) -> Prepared:
    """Make ``model`` ready in runtime ``name``; every batch size is run once (untimed).

    Args:
        name: one of :data:`RUNTIMES`.
        model: the network with its method applied (kept patched by the caller while it runs:
            eager and compile call it).
        input_size: per-image input shape ``(C, H, W)``.
        batch_sizes: batch sizes that will be timed (each gets one first call here).
        threads: intra-op threads (torch; ONNX Runtime ``intra_op_num_threads``; OpenVINO
            ``INFERENCE_NUM_THREADS``).
        workdir: where ONNX files are written.
        onnx_file: an ONNX export of this model made earlier (shared by ONNX Runtime and
            OpenVINO); ``None``: export here.

    Returns:
        The :class:`Prepared` model.

    Raises:
        VitbenchError: unknown runtime or missing packages (one line naming the extra).
        ExportError: the model cannot be exported or compiled (one line naming the failing op).
    """
    check_runtimes([name])
    model.eval()
    with _torch_threads(threads):
        export_s, path = 0.0, onnx_file
        if name in ("onnxruntime", "openvino") and path is None:
            path, export_s = export_onnx(model, input_size, workdir / "model.onnx")
        t0 = time.perf_counter()
        try:  # a runtime that cannot load or run the model: one line naming the op
            if name == "eager":
                prep = _eager(model, threads)
            elif name == "compile":
                prep = _compiled(model, threads)
            elif name == "onnxruntime":
                assert path is not None
                prep = _onnxruntime(path, threads)
            else:
                assert path is not None
                prep = _openvino(path, threads)
            for bs in dict.fromkeys(batch_sizes):
                prep.run(sample_input(input_size, bs, seed=1))
        except Exception as exc:
            raise ExportError(f"{name}: {failing_op(exc)}") from None
        prep.prepare_s = time.perf_counter() - t0
        prep.export_s = export_s
        prep.onnx_path = path
    return prep


def export_onnx(model: nn.Module, input_size: Sequence[int], path: Path) -> tuple[Path, float]:
    """``torch.onnx.export(..., dynamo=True)`` with a dynamic batch axis; returns (path, seconds).

    Raises:
        VitbenchError: onnx/onnxscript missing (names the ``deploy`` extra).
        ExportError: the exporter fails (one line naming the failing op).
    """
    for pkg in ("onnx", "onnxscript"):
        if importlib.util.find_spec(pkg) is None:
            raise VitbenchError(
                f'ONNX export needs {pkg}: install the deploy extra (pip install "vitbench[deploy]")'
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    x = sample_input(input_size, EXPORT_BATCH)
    hazard = onnx_hazard(model, x)
    if hazard is not None:
        raise ExportError(f"ONNX export: {hazard}")
    batch = torch.export.Dim("batch", min=1, max=4096)
    t0 = time.perf_counter()
    try:
        with _quiet_export(), torch.no_grad():
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=True,
                input_names=["x"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(f"ONNX export: {failing_op(exc)}") from None
    return path, time.perf_counter() - t0


class _ScatterMeanScan(TorchFunctionMode):
    """Records where a forward calls ``scatter_reduce(..., reduce="mean")`` (file:line of the caller)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: str | None = None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.found is None and getattr(func, "__name__", "") in ("scatter_reduce", "scatter_reduce_"):
            reduce = kwargs.get("reduce", args[4] if len(args) > 4 else None)
            if reduce == "mean":
                caller = traceback.extract_stack(limit=2)[0]
                self.found = f"{Path(caller.filename).name}:{caller.lineno}"
        return func(*args, **kwargs)


def onnx_hazard(model: nn.Module, x: torch.Tensor) -> str | None:
    """Why ``torch.onnx.export`` would translate ``model`` into a different computation, or ``None``.

    One eager forward of ``x`` [B, C, H, W] is watched for ops the exporter translates without an
    error into something else. Today one is known: ``scatter_reduce(reduce="mean")``, which
    onnxscript's ``aten::scatter_reduce`` writes as ``ScatterElements(reduction="none")`` (ONNX
    has no mean reduction): each destination is overwritten by one of its sources, not averaged
    (the ONNX Runtime / OpenVINO logits of DiffRate differed by up to 0.64 before its merge was
    written as a sum over a count). The equality check would catch the difference; this names the
    cause before the export runs.
    """
    scan = _ScatterMeanScan()
    was = model.training
    model.eval()
    try:
        with torch.inference_mode(), scan:
            model(x)
    finally:
        model.train(was)
    if scan.found is None:
        return None
    return (
        f"scatter_reduce(reduce='mean') at {scan.found} is exported by torch.onnx as an overwrite "
        "(ScatterElements reduction='none'), not a mean; compute it as a scatter sum divided by a count"
    )


#: Loggers that print whole graphs while ``torch.export`` fails (the failure itself is one line).
_EXPORT_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._export", "torch.export", "torch.onnx")


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporter while it runs; its failure is raised and reported in one line.

    Silenced: its progress lines (stdout), the partial graph it prints to stderr when
    ``torch.export`` fails, warnings, and log records below ERROR (:func:`failing_op` reports).
    """
    loggers = [logging.getLogger(n) for n in _EXPORT_LOGGERS]
    keep = _ErrorsOnly()
    for lg in loggers:
        lg.addFilter(keep)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(_Null()),
            contextlib.redirect_stderr(_Null()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg in loggers:
            lg.removeFilter(keep)


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


class _Null:
    """A write-only sink (the dynamo exporter prints progress lines)."""

    def write(self, _s: str) -> int:
        return 0

    def flush(self) -> None:
        return None


def _eager(model: nn.Module, threads: int) -> Prepared:
    def run(x: torch.Tensor) -> torch.Tensor:
        with _torch_threads(threads), torch.inference_mode():
            return model(x)

    return Prepared("eager", runtime_version("eager"), threads, "eager (nn.Module)", 0.0, 0.0, run)


def _compiled(model: nn.Module, threads: int) -> Prepared:
    import torch._dynamo as dynamo

    compiled: Any = torch.compile(model, backend="inductor", dynamic=False, fullgraph=True)
    how = ["torch.compile(inductor, fullgraph=True, dynamic=False)"]

    def run(x: torch.Tensor) -> torch.Tensor:
        nonlocal compiled
        with _torch_threads(threads), torch.inference_mode(), _recompile_room(dynamo):
            try:
                return compiled(x)
            except Exception as exc:  # graph breaks: capture what can be captured
                if "fullgraph=False" in how[0]:
                    raise
                how[0] = f"torch.compile(inductor, fullgraph=False, dynamic=False): {failing_op(exc)[:80]}"
                compiled = torch.compile(model, backend="inductor", dynamic=False)
                return compiled(x)

    prep = Prepared("compile", runtime_version("compile"), threads, "", 0.0, 0.0, run)
    prep._keep.append(how)
    return prep


@contextlib.contextmanager
def _recompile_room(dynamo: Any) -> Iterator[None]:
    """Raise dynamo's recompile limit: patched blocks share code objects across blocks and models."""
    cfg = dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    old = getattr(cfg, name)
    setattr(cfg, name, max(old, 256))
    try:
        yield
    finally:
        setattr(cfg, name, old)


def compile_path(prep: Prepared) -> str:
    """The export path of a prepared model (the compile runtime knows it after its first call)."""
    if prep.runtime == "compile" and prep._keep:
        return str(prep._keep[0][0])
    return prep.export_path


def _onnxruntime(path: Path, threads: int) -> Prepared:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        out = sess.run(None, {inp: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out)

    how = "torch.onnx.export(dynamo=True), dynamic batch; ORT CPUExecutionProvider"
    prep = Prepared("onnxruntime", runtime_version("onnxruntime"), threads, how, 0.0, 0.0, run)
    prep._keep.append(sess)
    return prep


def _openvino(path: Path, threads: int) -> Prepared:
    import openvino as ov

    core = ov.Core()
    ov_model = core.read_model(str(path))
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        res = request.infer({0: x.detach().cpu().numpy()})
        return torch.from_numpy(res[compiled.output(0)].copy())

    how = "torch.onnx.export(dynamo=True), dynamic batch; OpenVINO CPU, f32"
    prep = Prepared("openvino", runtime_version("openvino"), threads, how, 0.0, 0.0, run)
    prep._keep.append((core, compiled, request))
    return prep


def compare(prep: Prepared, reference: torch.Tensor, x: torch.Tensor, dtype: str = "float32") -> Equality:
    """Compare ``prep``'s logits on ``x`` with the eager ``reference`` logits of the same ``x``.

    Args:
        prep: the prepared model.
        reference: eager logits ``[B, K]`` of ``x``.
        x: the input batch ``[B, C, H, W]``.
        dtype: compute dtype, picks the :data:`TOLERANCE`.

    Raises:
        VitbenchError: an unknown dtype, or output shapes differ.
    """
    if dtype not in TOLERANCE:
        raise VitbenchError(f"no tolerance for dtype '{dtype}'; use one of {', '.join(TOLERANCE)}")
    with torch.inference_mode():
        got = prep.run(x).float().cpu()
    ref = reference.float().cpu()
    if got.shape != ref.shape:
        raise VitbenchError(
            f"{prep.runtime} returned logits of shape {tuple(got.shape)}, eager {tuple(ref.shape)}"
        )
    diff = (got - ref).abs()
    tol = TOLERANCE[dtype] * max(1.0, float(ref.abs().max()))
    rows = diff.reshape(diff.shape[0], -1).amax(dim=1)
    return Equality(float(diff.max()), tol, int(ref.shape[0]), int((rows > tol).sum()))
