"""Inference throughput with measurement hygiene (warm-up, synchronisation, median).

:func:`time_passes` is the one timing loop (warm-up, interleaved rounds, synchronised
``perf_counter`` brackets); :func:`measure_throughput` and the ``vitbench bench-*`` commands
time through it.

Precision handling:

* ``float32``: the model runs as is.
* ``float16`` / ``bfloat16`` on CUDA: ``torch.autocast("cuda", dtype)``; weights stay fp32
  (what timm's benchmark calls AMP), the input is fp32 and cast by autocast.
* ``bfloat16`` on CPU: a deep copy of the model and the input are cast to bf16 (CPU autocast
  covers too few ops to be representative).
* ``float16`` on CPU: refused with :class:`VitbenchError` (slow, unrepresentative kernels).

The caller's model is never modified: casting, ``channels_last`` and moving to another device
happen on a ``copy.deepcopy``; its train/eval flags are restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.threads import thread_count
from vitbench.measure.modes import eval_mode

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class ThroughputResult:
    """One throughput measurement.

    Attributes:
        img_per_s: images per second, ``batch_size / median batch time``.
        ms_per_batch: median wall time of one forward pass of the batch, milliseconds.
        batch_size: images per forward pass.
        dtype: compute precision, e.g. ``"float32"``, ``"bfloat16"``.
        threads: ``torch.get_num_threads()`` during the run.
        device: device name, e.g. ``"NVIDIA H100 80GB HBM3"`` or ``"cpu (8 threads)"``.
        channels_last: whether the model and input used ``torch.channels_last``.
        compiled: whether the model ran through ``torch.compile``.
    """

    img_per_s: float
    ms_per_batch: float
    batch_size: int
    dtype: str
    threads: int
    device: str
    channels_last: bool
    compiled: bool


def _dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def _resolve_device(device: str | torch.device) -> torch.device:
    """Validate ``device`` (cpu or an available cuda device)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise VitbenchError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise VitbenchError(f"throughput supports 'cpu' and 'cuda' devices, got {device!r}")
    return dev


def _device_name(dev: torch.device, threads: int) -> str:
    """Human-readable device name for the record."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({thread_count(threads)})"


def _model_device(model: nn.Module, default: torch.device) -> torch.device:
    """Device of the model's first parameter or buffer (``default`` when it has none)."""
    for t in [*model.parameters(), *model.buffers()]:
        return t.device
    return default


def _sync(dev: torch.device) -> None:
    """Wait for queued kernels on ``dev`` (no-op on CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_passes(
    passes: Sequence[Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    min_time_s: float = 0.0,
    device: torch.device | None = None,
) -> list[list[float]]:
    """Wall seconds of each pass, timed in interleaved rounds: vitbench's one timing loop.

    ``warmup`` untimed rounds run every pass once, in order; then timed rounds run each pass
    once, in order, until every pass has at least ``repeats`` timings and its timings add up to
    at least ``min_time_s``. Each timed run is bracketed by ``torch.cuda.synchronize`` when
    ``device`` is a CUDA device and timed with ``time.perf_counter``. Interleaving makes slow
    drifts of a shared machine hit every pass alike.

    Args:
        passes: zero-argument callables (a forward of a batch, a pass over a dataset, ...).
        repeats: minimum timed runs of each pass (>= 1).
        warmup: untimed rounds before timing (>= 0).
        min_time_s: minimum total timed seconds of each pass (>= 0).
        device: where the passes queue work (``None``/CPU: no synchronisation).

    Returns:
        Seconds per timed run, one list per pass (in the order of ``passes``).

    Raises:
        VitbenchError: no passes, ``repeats`` < 1, ``warmup`` < 0 or ``min_time_s`` < 0.
    """
    if not passes or repeats < 1 or warmup < 0 or min_time_s < 0:
        raise VitbenchError(
            f"need at least one pass, repeats >= 1, warmup >= 0, min_time_s >= 0; got {len(passes)} "
            f"passes, {repeats}, {warmup}, {min_time_s}"
        )
    dev = device if device is not None else torch.device("cpu")
    for _ in range(warmup):
        for run in passes:
            run()
    times_s: list[list[float]] = [[] for _ in passes]
    while any(len(t) < repeats or sum(t) < min_time_s for t in times_s):
        for run, t in zip(passes, times_s):
            _sync(dev)
            t0 = time.perf_counter()
            run()
            _sync(dev)
            t.append(time.perf_counter() - t0)
    return times_s


def measure_throughput(
    model: nn.Module,
    input_size: tuple[int, ...] = (3, 224, 224),
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    warmup: int = 3,
    repeats: int = 10,
    channels_last: bool = False,
    compile: bool = False,
    min_time_s: float = 0.0,
    seed: int = 0,
) -> ThroughputResult:
    """Median forward-pass throughput on a synthetic batch.

    The input ``[batch_size, *input_size]`` is drawn once from a dedicated ``torch.Generator``
    (seed ``seed``) and moved to the device before timing. The model runs in eval mode under
    ``torch.inference_mode()``; ``warmup`` passes are discarded, then each timed pass is
    bracketed by ``torch.cuda.synchronize()`` on CUDA and timed with ``time.perf_counter``.
    Timed passes continue past ``repeats`` until their total reaches ``min_time_s``.

    Args:
        model: the network. It is not modified; it is deep-copied when it must be cast, moved
            to ``device`` or converted to channels_last.
        input_size: per-image input shape, ``(C, H, W)``.
        batch_size: images per forward pass.
        device: ``"cpu"`` or a CUDA device.
        dtype: ``torch.float32``, ``torch.bfloat16`` or ``torch.float16`` (CUDA only); see the
            module docstring for how each is applied.
        warmup: discarded passes before timing (at least 1 when ``compile`` is set, so that
            compilation is never timed).
        repeats: minimum number of timed passes.
        channels_last: use ``torch.channels_last`` for model and input.
        compile: wrap the model in ``torch.compile`` (default options).
        min_time_s: minimum total timed seconds; more passes are run until it is reached.
        seed: seed of the input generator.

    Returns:
        The :class:`ThroughputResult`; ``img_per_s = batch_size / median_s``.

    Raises:
        VitbenchError: bad arguments, CUDA unavailable, or ``float16`` on CPU.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0 or min_time_s < 0:
        raise VitbenchError(
            f"need batch_size >= 1, repeats >= 1, warmup >= 0, min_time_s >= 0; got {batch_size}, "
            f"{repeats}, {warmup}, {min_time_s}"
        )
    if dtype not in _DTYPES:
        raise VitbenchError(f"throughput dtype must be float32, bfloat16 or float16, got {dtype}")
    dev = _resolve_device(device)
    if dev.type == "cpu" and dtype == torch.float16:
        raise VitbenchError(
            "float16 throughput on CPU is not supported; use dtype=torch.bfloat16 or a CUDA device"
        )

    cast_on_cpu = dev.type == "cpu" and dtype == torch.bfloat16
    needs_copy = cast_on_cpu or channels_last or _model_device(model, dev) != dev
    if compile:
        warmup = max(warmup, 1)

    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn((batch_size, *input_size), generator=gen)
    x = x.to(device=dev, dtype=dtype if cast_on_cpu else torch.float32)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)

    with eval_mode(model):
        work: nn.Module = copy.deepcopy(model) if needs_copy else model
        if needs_copy:
            work.to(device=dev)
            if cast_on_cpu:
                work.to(dtype=dtype)
            if channels_last:
                work.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        runner: Any = torch.compile(work) if compile else work
        autocast: Any = (
            torch.autocast(device_type="cuda", dtype=dtype)
            if dev.type == "cuda" and dtype != torch.float32
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            times_s = time_passes([functools.partial(runner, x)], repeats, warmup, min_time_s, dev)[0]
        del runner, work

    median_s = statistics.median(times_s)
    threads = torch.get_num_threads()
    return ThroughputResult(
        img_per_s=batch_size / median_s,
        ms_per_batch=median_s * 1000.0,
        batch_size=batch_size,
        dtype=_dtype_name(dtype),
        threads=threads,
        device=_device_name(dev, threads),
        channels_last=channels_last,
        compiled=compile,
    )
