"""Latency lookup table (LUT) of slimmed ViT blocks, measured on the current device and cached.

NViT (``pruning_engine_general.py``) interpolates a per-block latency table over
(EMB, heads, QK, V, MLP) measured on a V100 (``latency_head.json``) with a linear
``RegularGridInterpolator``; model latency = sum over blocks. Here vitbench measures the table
itself, for the model being pruned, on the device it runs on:

* grid: embedding width ``E * {1/4, 1/2, 3/4, 1}``, heads ``{1, H/2, H}``, q/k and v widths
  ``{1, d/2, d}``, MLP ``{1, m/4, m/2, 3m/4, m}`` (deduplicated), the dense model's token count,
  a fixed batch; each point is one :class:`~vitbench.methods.slimming.slim.SlimAttention` block timed as
  the minimum of ``repeats`` forwards under ``torch.inference_mode`` (the least-disturbed run: on
  a CPU shared with other processes a median still catches stalls of 100x the block's time);
* the stem + tail (patch embedding, final norm, head) is timed over the E grid and added, so the
  prediction is the whole model's forward latency;
* the table is cached as JSON under ``<cache>/latency/`` keyed by (device, geometry, batch,
  grid); a table is only ever used on the device it was measured on (a table file from another
  device is refused with a one-line error).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.models import input_grid, input_size
from vitbench.methods.slimming.slim import BlockPlan, ModelDims, SlimPlan, model_dims, slim_model

FORMAT = 2  # 2: minimum over repeats (1: median, corrupted by interference on a shared CPU)


def device_id(device: torch.device | str = "cpu") -> str:
    """Stable description of the device latencies are measured on (and torch's thread count)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu:{cpu}:threads={torch.get_num_threads()}"


def cache_dir() -> Path:
    """``$VITBENCH_CACHE/latency`` or ``~/.cache/vitbench/latency``."""
    root = os.environ.get("VITBENCH_CACHE")
    base = Path(root).expanduser() if root and root != "off" else Path.home() / ".cache" / "vitbench"
    return base / "latency"


@dataclasses.dataclass(frozen=True)
class LatencyTable:
    """Measured block and stem/tail latencies (ms per batch) and the grid they were measured on.

    Attributes:
        device: :func:`device_id` of the measuring device.
        geometry: the model geometry the table is for (tokens, dense dims, classes, ...).
        batch: images per timed forward.
        axes: grid of (embed, heads, qk, v, mlp).
        block_ms: ms of one block at every grid point, shape = lengths of ``axes``.
        tail_ms: ms of stem + final norm + head at every embed grid value.
    """

    device: str
    geometry: dict[str, Any]
    batch: int
    axes: tuple[tuple[int, ...], ...]
    block_ms: np.ndarray
    tail_ms: np.ndarray

    def block(self, e: float, h: float, qk: float, v: float, m: float) -> float:
        """Interpolated ms of one block (NViT: linear ``RegularGridInterpolator``)."""
        from scipy.interpolate import RegularGridInterpolator

        interp = RegularGridInterpolator(self.axes, self.block_ms, bounds_error=False, fill_value=None)
        return float(interp(np.array([[e, h, qk, v, m]], dtype=np.float64))[0])

    def blocks(self, points: np.ndarray) -> np.ndarray:
        """Interpolated ms of many blocks: ``points`` [P, 5] -> [P]."""
        from scipy.interpolate import RegularGridInterpolator

        interp = RegularGridInterpolator(self.axes, self.block_ms, bounds_error=False, fill_value=None)
        return np.asarray(interp(np.asarray(points, dtype=np.float64)))

    def tail(self, e: float) -> float:
        """Interpolated ms of stem + tail at embedding width ``e``."""
        return float(np.interp(e, self.axes[0], self.tail_ms))

    def predict(self, dims: ModelDims) -> float:
        """Predicted ms of a whole forward of a model with ``dims`` (tail + sum of blocks)."""
        pts = np.array([[dims.embed, *b] for b in dims.blocks], dtype=np.float64)
        return self.tail(dims.embed) + float(self.blocks(pts).sum())

    def to_json(self) -> str:
        """JSON text (the cache file)."""
        return json.dumps(
            {
                "format": FORMAT,
                "device": self.device,
                "geometry": self.geometry,
                "batch": self.batch,
                "axes": [list(a) for a in self.axes],
                "block_ms": self.block_ms.tolist(),
                "tail_ms": self.tail_ms.tolist(),
            }
        )

    @staticmethod
    def from_json(text: str, where: str = "latency table") -> LatencyTable:
        """Inverse of :meth:`to_json`; one-line error for foreign or malformed files."""
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}")
            return LatencyTable(
                d["device"],
                d["geometry"],
                int(d["batch"]),
                tuple(tuple(int(x) for x in a) for a in d["axes"]),
                np.asarray(d["block_ms"], dtype=np.float64),
                np.asarray(d["tail_ms"], dtype=np.float64),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise VitbenchError(f"{where} is not a vitbench latency table ({exc}); measure it anew") from None


def geometry(model: nn.Module) -> dict[str, Any]:
    """What the table depends on besides the device: tokens, dense dims, stem and head sizes."""
    pe: Any = model.patch_embed
    d = model_dims(model)
    rows, cols = input_grid(model)
    return {
        "tokens": rows * cols + int(getattr(model, "num_prefix_tokens", 1)),
        "img": list(_img_size(model)),
        "patch": list(pe.patch_size),
        "embed": d.embed,
        "block": list(d.blocks[0]),
        "classes": int(getattr(model, "num_classes", 0) or 0),
        "arch": type(model).__name__,
    }


def grid(dims: ModelDims) -> tuple[tuple[int, ...], ...]:
    """The measurement grid for a dense model with ``dims`` (see the module docstring)."""
    e = dims.embed
    h, dqk, dv, m = dims.blocks[0]

    def pts(n: int, fracs: tuple[float, ...]) -> tuple[int, ...]:
        return tuple(sorted({max(1, round(n * f)) for f in fracs} | {1, n}))

    return (
        tuple(sorted({max(1, round(e * f)) for f in (0.25, 0.5, 0.75, 1.0)})),
        pts(h, (0.5,)),
        pts(dqk, (0.5,)),
        pts(dv, (0.5,)),
        pts(m, (0.25, 0.5, 0.75)),
    )


def _img_size(model: nn.Module) -> tuple[int, int]:
    """``(H, W)`` of the images ``model`` is fed (:func:`vitbench.core.models.input_size`)."""
    _, h, w = input_size(model)
    return h, w


def _time_ms(fn: Any, x: torch.Tensor, warmup: int, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            times.append((time.perf_counter() - t0) * 1e3)
    return min(times)


def _sub_plan(dims: ModelDims, e: int, h: int, qk: int, v: int, m: int) -> SlimPlan:

    hh = tuple(range(h))
    bp = BlockPlan(hh, (tuple(range(qk)),) * h, (tuple(range(v)),) * h, tuple(range(m)))
    return SlimPlan(tuple(range(e)), (bp,) * len(dims.blocks))


def measure_table(
    model: nn.Module, batch: int = 32, warmup: int = 2, repeats: int = 7, device: str | torch.device = "cpu"
) -> LatencyTable:
    """Time every grid point of ``model``'s geometry on ``device`` (see the module docstring)."""
    dims = model_dims(model)
    axes = grid(dims)
    tokens = geometry(model)["tokens"]
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    block_ms = np.zeros([len(a) for a in axes])
    tail_ms = np.zeros(len(axes[0]))
    h0, _, _, _ = dims.blocks[0]
    for ie, e in enumerate(axes[0]):
        slim = slim_model(model, _sub_plan(dims, e, 1, 1, 1, 1)).to(dev).eval()
        img = torch.randn(batch, 3, *_img_size(model), generator=gen).to(dev)
        blocks: Any = slim.blocks
        one_block = blocks[0]
        with torch.inference_mode():
            total = _time_ms(slim, img, warmup, repeats)
            x = torch.randn(batch, tokens, e, generator=gen).to(dev)
            tail_ms[ie] = max(total - len(blocks) * _time_ms(one_block, x, warmup, repeats), 0.0)
        for ih, h in enumerate(axes[1]):
            for iq, q in enumerate(axes[2]):
                for iv, v in enumerate(axes[3]):
                    for im, m in enumerate(axes[4]):
                        sub = slim_model(model, _sub_plan(dims, e, min(h, h0), q, v, m))
                        blk: Any = sub.blocks[0]  # type: ignore[index]
                        blk = blk.to(dev).eval()
                        block_ms[ie, ih, iq, iv, im] = _time_ms(blk, x, warmup, repeats)
    return LatencyTable(device_id(dev), geometry(model), batch, axes, block_ms, tail_ms)


def table_key(model: nn.Module, batch: int, device: str | torch.device) -> str:
    """Cache key (sha256[:16]) of (table format, device, geometry, batch, grid)."""
    blob = json.dumps(
        {
            "format": FORMAT,
            "device": device_id(device),
            "geometry": geometry(model),
            "batch": batch,
            "grid": grid(model_dims(model)),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_table(path: Path | str, model: nn.Module, device: str | torch.device = "cpu") -> LatencyTable:
    """A table file, checked against the current device and the model geometry."""
    path = Path(path)
    if not path.is_file():
        raise VitbenchError(f"latency table {path} does not exist; leave latency_table empty to measure one")
    table = LatencyTable.from_json(path.read_text(), str(path))
    here = device_id(device)
    if table.device != here:
        raise VitbenchError(
            f"latency table {path} was measured on '{table.device}', this device is '{here}'; "
            "latencies do not transfer between devices: measure a table here (leave latency_table empty)"
        )
    if table.geometry != geometry(model):
        raise VitbenchError(f"latency table {path} is for another model geometry; measure one for this model")
    return table


def _check_batch(batch: int) -> None:
    if not isinstance(batch, int) or batch < 1:
        raise VitbenchError(f"latency batch {batch!r} must be a positive integer, e.g. 32")


def get_table(
    model: nn.Module,
    batch: int = 32,
    device: str | torch.device = "cpu",
    path: str | None = None,
    log: Any = None,
) -> tuple[LatencyTable, Path, bool]:
    """The table for ``model`` on ``device``: ``path`` if given, else the cached one, else measured.

    Returns:
        ``(table, file, measured_now)``.
    """
    _check_batch(batch)
    if path:
        return load_table(path, model, device), Path(path), False
    file = cache_dir() / f"lut-{table_key(model, batch, device)}.json"
    if file.is_file():
        return load_table(file, model, device), file, False
    if log is not None:
        log(f"measuring the latency table on {device_id(device)} (batch {batch}) -> {file}")
    table = measure_table(model, batch=batch, device=device)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(table.to_json())
    os.replace(tmp, file)
    return table, file, True


def measure_model_ms(
    model: nn.Module, batch: int = 32, device: str | torch.device = "cpu", warmup: int = 2, repeats: int = 15
) -> float:
    """Minimum ms of ``repeats`` forwards of ``model`` on a seeded batch (as the table's points)."""
    _check_batch(batch)
    gen = torch.Generator().manual_seed(1)
    img = torch.randn(batch, 3, *_img_size(model), generator=gen).to(device)
    return _time_ms(model.eval(), img, warmup, repeats)


__all__ = [
    "LatencyTable",
    "cache_dir",
    "device_id",
    "geometry",
    "get_table",
    "grid",
    "load_table",
    "measure_model_ms",
    "measure_table",
    "table_key",
]
