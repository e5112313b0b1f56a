"""Inference throughput with measurement hygiene (warm-up, synchronisation, median).

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
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
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
    return f"cpu ({threads} threads)"


def _model_device(model: nn.Module, default: torch.device) -> torch.device:
    """Device of the model's first parameter or buffer (``default`` when it has none)."""
    for t in [*model.parameters(), *model.buffers()]:
        return t.device
    return default


def _sync(dev: torch.device) -> None:
    """Wait for queued kernels on ``dev`` (no-op on CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


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
        times_s: list[float] = []
        with torch.inference_mode(), autocast:
            for _ in range(warmup):
                runner(x)
            _sync(dev)
            while len(times_s) < repeats or sum(times_s) < min_time_s:
                _sync(dev)
                t0 = time.perf_counter()
                runner(x)
                _sync(dev)
                times_s.append(time.perf_counter() - t0)
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
