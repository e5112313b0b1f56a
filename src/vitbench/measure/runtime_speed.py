"""Speed of model variants in deployment runtimes, equality checked first, rounds interleaved.

:func:`measure_runtimes` takes named model variants (dense first, then compressed ones, each with
its method applied) and runtimes (:mod:`vitbench.measure.runtimes`), and for every batch size:

1. prepares each (variant, runtime): export / compile / session build, timed apart (never inside
   a timing); a variant that cannot be exported gets ``error`` (one line naming the failing op);
2. compares its logits with eager logits of the same seeded batch at that batch size
   (:func:`vitbench.measure.runtimes.compare`); a variant that differs is ``not equal`` and is
   not timed;
3. times every equal (variant, runtime) in interleaved rounds (:func:`time_passes`: one warm-up
   round, then each pass once per round), so load drifts on a shared machine hit all alike.

Batch 1 gives latency (median and p90 over the timed runs); every batch gives img/s
(``batch / median``). The per-run times are kept so that speedups over dense can be taken round
by round (paired) and their spread reported.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.measure.runtimes import (
    ExportError,
    Prepared,
    check_runtimes,
    compare,
    compile_path,
    eager_logits,
    prepare,
    runtime_version,
    sample_input,
)
from vitbench.measure.throughput import time_passes


@dataclass(frozen=True)
class RuntimeRow:
    """One (variant, runtime, batch size) measurement.

    Attributes:
        variant: the variant's name, as given.
        runtime: runtime name.
        version: runtime package and version.
        threads: intra-op threads given to the runtime.
        export_path: how the model reached the runtime.
        export_s: ONNX export seconds (0 for eager / compile).
        prepare_s: session build / compile seconds, first calls included.
        batch_size: images per forward pass.
        verdict: ``equal (max |Δ| …)``, ``not equal (max |Δ| …)`` or ``not exportable: …``.
        equal: whether the logits matched eager within the tolerance.
        max_abs_diff: ``max |Δ|`` to eager (``None`` when not exportable).
        times_ms: wall milliseconds of each timed run, in round order (empty when not timed).
        error: why the variant could not be prepared (one line), else ``None``.
    """

    variant: str
    runtime: str
    version: str
    threads: int
    export_path: str
    export_s: float | None
    prepare_s: float | None
    batch_size: int
    verdict: str
    equal: bool
    max_abs_diff: float | None
    times_ms: tuple[float, ...] = field(default=())
    error: str | None = None

    @property
    def median_ms(self) -> float | None:
        """Median wall milliseconds per forward pass (``None`` when not timed)."""
        return statistics.median(self.times_ms) if self.times_ms else None

    @property
    def p90_ms(self) -> float | None:
        """90th percentile of the per-run milliseconds (nearest rank; ``None`` when not timed)."""
        if not self.times_ms:
            return None
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]

    @property
    def img_per_s(self) -> float | None:
        """``batch_size / median`` in images per second (``None`` when not timed)."""
        med = self.median_ms
        return self.batch_size / med * 1000.0 if med else None


def measure_runtimes(
    variants: Sequence[tuple[str, nn.Module]],
    runtimes: Sequence[str],
    batch_sizes: Sequence[int],
    input_size: Sequence[int],
    threads: int,
    repeats: int = 10,
    warmup: int = 1,
    dtype: str = "float32",
    workdir: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> list[RuntimeRow]:
    """Prepare, check and time every (variant, runtime) at every batch size.

    Args:
        variants: ``(name, model)`` pairs, each model with its method applied (kept applied by
            the caller until this returns); distinct model objects.
        runtimes: runtime names (:data:`vitbench.measure.runtimes.RUNTIMES`).
        batch_sizes: batch sizes to check and time (batch 1: latency).
        input_size: per-image input shape ``(C, H, W)``.
        threads: intra-op threads of every runtime.
        repeats: timed runs of each (variant, runtime) per batch size, interleaved (>= 1).
        warmup: untimed interleaved rounds before timing (>= 0).
        dtype: compute dtype of the equality tolerance (float32: the models run as given).
        workdir: where ONNX files go (default: a temporary folder, removed afterwards).
        log: receives one line per prepared (variant, runtime).

    Returns:
        One :class:`RuntimeRow` per (batch size, variant, runtime), in that order.

    Raises:
        VitbenchError: no variants / runtimes / batch sizes, a batch size < 1, or a runtime
            whose packages are missing (one line naming the ``deploy`` extra).
    """
    if not variants or not runtimes or not batch_sizes or min(batch_sizes) < 1 or threads < 1:
        raise VitbenchError(
            "need at least one variant, runtime and batch size, batch sizes >= 1 and threads >= 1"
        )
    check_runtimes(runtimes)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        prepared: dict[tuple[int, str], Prepared | str] = {}
        for vi, (name, model) in enumerate(variants):
            onnx_file: Path | None = None
            for rt in runtimes:
                try:
                    prep = prepare(rt, model, input_size, batch_sizes, threads, root / f"v{vi}", onnx_file)
                    onnx_file = prep.onnx_path or onnx_file
                    prepared[vi, rt] = prep
                    log(
                        f"{name} in {rt}: export {prep.export_s:.1f} s, prepare {prep.prepare_s:.1f} s "
                        f"({compile_path(prep)})"
                    )
                except ExportError as exc:
                    prepared[vi, rt] = str(exc)
                    log(f"{name} in {rt}: not exportable: {exc}")
        rows: list[RuntimeRow] = []
        for bs in batch_sizes:
            x = sample_input(input_size, bs, seed=0)
            refs = {vi: eager_logits(model, x) for vi, (_n, model) in enumerate(variants)}
            checked: dict[tuple[int, str], tuple[Prepared | str, str, bool, float | None]] = {}
            for (vi, rt), item in prepared.items():
                if isinstance(item, str):
                    checked[vi, rt] = (item, f"not exportable: {item}", False, None)
                    continue
                eq = compare(item, refs[vi], x, dtype)
                checked[vi, rt] = (item, eq.verdict(), eq.equal, eq.max_abs)
            timed = [key for key, (p, _v, ok, _d) in checked.items() if ok and not isinstance(p, str)]
            passes = [_pass(checked[key][0], x) for key in timed]  # type: ignore[arg-type]
            times = time_passes(passes, repeats, warmup) if passes else []
            ms = {key: tuple(t * 1000.0 for t in ts) for key, ts in zip(timed, times)}
            for (vi, rt), (item, verdict, ok, diff) in checked.items():
                real = item if not isinstance(item, str) else None
                rows.append(
                    RuntimeRow(
                        variant=variants[vi][0],
                        runtime=rt,
                        version=real.version if real else _version(rt),
                        threads=threads,
                        export_path=compile_path(real) if real else "",
                        export_s=real.export_s if real else None,
                        prepare_s=real.prepare_s if real else None,
                        batch_size=bs,
                        verdict=verdict,
                        equal=ok,
                        max_abs_diff=diff,
                        times_ms=ms.get((vi, rt), ()),
                        error=item if isinstance(item, str) else None,
                    )
                )
    return rows


def _pass(prep: Prepared, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return prep.run(x)

    return run


def _version(runtime: str) -> str:
    return runtime_version(runtime)
