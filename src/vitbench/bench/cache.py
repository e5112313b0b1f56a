"""``vitbench bench-cache``: corruption-cache build speed (1 vs N processes) and the data share of a sweep.

Figures printed (and returned):

1. the wall time to corrupt the demo test split under all 19 corruptions x 5 severities
   (95 entries) into an empty cache with 1 process and with ``workers`` processes, their
   ratio, and whether both caches hold byte-identical images;
2. a sweep of a second method over the already-cached 95 conditions through the harness:
   corruption passes it triggered (0 expected), the wall time of its cells, and the time spent
   on data — reading the cache entry (``Harness.images``) plus a separate pass of the same
   DataLoader and normalisation ``Harness.evaluate`` uses — as a share of that wall time.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vitbench.core.demo import ARCH, DEMO_DATASET, default_weights_path
from vitbench.core.models import data_config
from vitbench.data.cache import BuildStats, CorruptionCache
from vitbench.data.files import usable_cpus
from vitbench.data.noise import corruption_names
from vitbench.data.prep import prepare_images
from vitbench.data.samples import to_tensor
from vitbench.data.subsets import ArraySamples
from vitbench.harness.runner import Harness
from vitbench.harness.suites import expand, suite_from_dict


def _suite(method: str, keep: float, limit: int | None, batch_size: int, weights: str) -> Any:

    return suite_from_dict(
        {
            "name": "bench-cache",
            "models": [{"name": ARCH, "weights": weights}],
            "methods": [method],
            "keep_ratios": [keep],
            "dataset": {"name": DEMO_DATASET, "split": "test", "limit": limit},
            "noises": [{"name": n, "levels": [1, 2, 3, 4, 5]} for n in corruption_names("all")],
            "batch_size": batch_size,
            "bootstrap": 200,
            "throughput": False,
        },
        where="bench-cache",
    )


def bench_cache(
    limit: int | None = None,
    workers: int = 2,
    method: str = "evit",
    keep: float = 0.7,
    batch_size: int = 250,
    weights: str | None = None,
    sweep: bool = True,
) -> dict[str, float]:
    """Measure cache build speed-up and the data share of a cached sweep; print the figures.

    Args:
        limit: demo test images to use (default: all 1,000).
        workers: processes of the parallel build (compared with 1).
        method: the method swept over the cached conditions.
        keep: its keep ratio.
        batch_size: evaluation batch size.
        weights: demo model weights (default ``demo`` when the packaged file exists, else ``random``).
        sweep: also time the sweep of ``method`` over the cached conditions (part 2).

    Returns:
        ``build_1_s``, ``build_n_s``, ``speedup``, ``sweep_s``, ``data_s``, ``data_share``,
        ``passes`` (corruption passes during the sweep).
    """
    weights = weights or ("demo" if default_weights_path().is_file() else "random")
    suite = _suite(method, keep, limit, batch_size, weights)
    cells = expand(suite)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vitbench-bench-cache-") as tmp:
        caches = {w: _CountingCache(Path(tmp) / f"cache-{w}", workers=w) for w in (1, workers)}
        h = Harness(suite, f"{tmp}/r.sqlite", progress=False, log=lambda _m: None, cache=caches[workers])
        model = h.model(cells[0].model)
        cfg = data_config(model)
        data = h.dataset()
        clean = prepare_images(data.images, cfg)
        keys = [h.cache_key(cfg, c.noise.name, c.noise.level, c.seed) for c in cells]
        n_img = len(clean) * len(keys)
        print(
            f"corruption cache: {len(keys)} entries (19 corruptions x 5 severities) x {len(clean)} demo "
            f"images {clean.shape[1]}x{clean.shape[2]} = {n_img} corrupted images; {_cores()} CPU cores, "
            f"load average {_load()}"
        )
        times, cpu = {}, {}
        for w in (1, workers):
            c0, t0 = time.process_time(), time.perf_counter()
            caches[w].build(clean, data.sample_ids, keys)
            times[w], cpu[w] = time.perf_counter() - t0, time.process_time() - c0
            workers_cpu = caches[w].worker_cpu_s
            print(
                f"  build, {w} process{'es' if w > 1 else ''}: {times[w]:7.2f} s wall "
                f"({n_img / times[w]:,.0f} img/s); CPU s: main {cpu[w]:.1f}"
                + (f", workers {' + '.join(f'{c:.1f}' for c in workers_cpu)}" if workers_cpu else "")
            )
        same = all(caches[1].path(k).read_bytes() == caches[workers].path(k).read_bytes() for k in keys)
        out.update(build_1_s=times[1], build_n_s=times[workers], speedup=times[1] / times[workers])
        print(f"  load average after the builds: {_load()}")
        print(f"  speed-up {workers} vs 1 processes (wall): {out['speedup']:.2f}x  (byte-identical: {same})")
        wcpu = caches[workers].worker_cpu_s
        if wcpu:
            # wall time on `workers` idle cores: the busiest worker, or all CPU spread evenly
            ideal = max(max(wcpu), (sum(wcpu) + cpu[workers]) / workers)
            out["speedup_cpu"] = cpu[1] / ideal
            print(
                f"  speed-up on {workers} idle cores (from CPU seconds, load-independent): "
                f"{out['speedup_cpu']:.2f}x  (= 1-process CPU {cpu[1]:.1f} s / {ideal:.1f} s)"
            )

        if not sweep:
            return out
        # the sweep of a second method over the cached conditions
        built_before = caches[workers].built_total
        data_s, loader_s, wall_s = 0.0, 0.0, 0.0
        for cell in cells:
            t0 = time.perf_counter()
            images = h.images(cell, cfg)
            t1 = time.perf_counter()
            loader = torch.utils.data.DataLoader(
                ArraySamples(images, data.labels, data.sample_ids), batch_size=batch_size
            )
            for raw, _y, _sid in loader:
                to_tensor(raw.numpy(), cfg)
            t2 = time.perf_counter()
            h.run_cell(cell)
            t3 = time.perf_counter()
            data_s += t1 - t0
            loader_s += t2 - t1
            wall_s += (t1 - t0) + (t3 - t2)  # the cell as the harness runs it: images() + run_cell
        passes = caches[workers].built_total - built_before
        share = (data_s + loader_s) / wall_s
        out.update(sweep_s=wall_s, data_s=data_s + loader_s, data_share=share, passes=float(passes))
        print(
            f"sweep of {method} keep {keep:g} ({weights} weights) over the cached {len(cells)} conditions: "
            f"{passes} corruption passes, {wall_s:.2f} s wall"
        )
        print(f"  cache reads (Harness.images):            {data_s:7.3f} s")
        print(f"  DataLoader + normalisation (same as eval): {loader_s:7.3f} s")
        print(f"  data share of wall time: {100 * share:.1f} %  (target <= 10 %)")
    return out


class _CountingCache(CorruptionCache):
    """A cache that counts the entries it corrupts and the CPU seconds of its worker processes."""

    built_total = 0
    worker_cpu_s: tuple[float, ...] = ()

    def _pool_done(self, pool: Any) -> None:
        """CPU seconds (user + system, start-up included) of each live worker, from /proc."""
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        found = []
        for pid in list(getattr(pool, "_processes", {}) or {}):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found.append((int(fields[11]) + int(fields[12])) / ticks)  # utime + stime
        self.worker_cpu_s = tuple(found)

    def build(self, *args: Any, **kwargs: Any) -> BuildStats:
        stats = super().build(*args, **kwargs)
        self.built_total += stats.built
        return stats


def _load() -> str:
    """1-minute load average (other processes on the machine distort the timings)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover - not available on every platform
        return "n/a"


def _cores() -> int:
    """CPU cores this process may use."""
    return usable_cpus()


__all__ = ["bench_cache"]
