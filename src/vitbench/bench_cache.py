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

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vitbench.cache import BuildStats, CorruptionCache
from vitbench.noise import corruption_names


def _suite(method: str, keep: float, limit: int | None, batch_size: int, weights: str) -> Any:
    from vitbench.config import suite_from_dict
    from vitbench.demo import ARCH, DEMO_DATASET

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
) -> dict[str, float]:
    """Measure cache build speed-up and the data share of a cached sweep; print the figures.

    Args:
        limit: demo test images to use (default: all 1,000).
        workers: processes of the parallel build (compared with 1).
        method: the method swept over the cached conditions.
        keep: its keep ratio.
        batch_size: evaluation batch size.
        weights: demo model weights (default ``demo`` when the packaged file exists, else ``random``).

    Returns:
        ``build_1_s``, ``build_n_s``, ``speedup``, ``sweep_s``, ``data_s``, ``data_share``,
        ``passes`` (corruption passes during the sweep).
    """
    from vitbench.demo import default_weights_path
    from vitbench.harness import Harness, _ArraySet, prepare_images, to_tensor
    from vitbench.models import data_config

    weights = weights or ("demo" if default_weights_path().is_file() else "random")
    suite = _suite(method, keep, limit, batch_size, weights)
    from vitbench.config import expand

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
            f"images {clean.shape[1]}x{clean.shape[2]} = {n_img} corrupted images; {_cores()} CPU cores"
        )
        times = {}
        for w in (1, workers):
            t0 = time.perf_counter()
            caches[w].build(clean, data.sample_ids, keys)
            times[w] = time.perf_counter() - t0
            print(
                f"  build, {w} process{'es' if w > 1 else ''}: {times[w]:7.2f} s "
                f"({n_img / times[w]:,.0f} img/s)"
            )
        same = all(caches[1].path(k).read_bytes() == caches[workers].path(k).read_bytes() for k in keys)
        out.update(build_1_s=times[1], build_n_s=times[workers], speedup=times[1] / times[workers])
        print(f"  speed-up {workers} vs 1 processes: {out['speedup']:.2f}x  (byte-identical entries: {same})")

        # the sweep of a second method over the cached conditions
        built_before = caches[workers].built_total
        data_s, loader_s, wall_s = 0.0, 0.0, 0.0
        for cell in cells:
            t0 = time.perf_counter()
            images = h.images(cell, cfg)
            t1 = time.perf_counter()
            loader = torch.utils.data.DataLoader(
                _ArraySet(images, data.labels, data.sample_ids), batch_size=batch_size
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
    """A cache that counts the entries it corrupts (the corruption passes)."""

    built_total = 0

    def build(self, *args: Any, **kwargs: Any) -> BuildStats:
        stats = super().build(*args, **kwargs)
        self.built_total += stats.built
        return stats


def _cores() -> int:
    from vitbench.cache import default_workers

    return default_workers()


__all__ = ["bench_cache"]
