"""Counter-based uniform numbers keyed by (seed, sample id, stream, element).

Random token selection must not depend on how a dataset is split into batches or processes
(one process and two processes give identical records), so draws are a pure function of the
key instead of the state of a generator that advances with every batch. The hash is the
"lowbias32" integer finaliser applied in a chain; it is computed with int64 tensor arithmetic
kept below 2**63, so it is exact and identical on every device.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for ``0 <= x < 2**32`` without overflowing int64."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def keyed_uniform(
    seed: int,
    sample_ids: torch.Tensor,
    stream: int,
    shape: tuple[int, ...],
    device: torch.device | None = None,
) -> torch.Tensor:
    """Uniform numbers in [0, 1) that depend only on the key.

    Args:
        seed: run seed.
        sample_ids: int64 [B] stable dataset ids of the batch samples.
        stream: distinguishes draws of one sample (e.g. the block index).
        shape: per-sample shape of the draw.
        device: device of the result (default: that of ``sample_ids``).

    Returns:
        float32 [B, *shape].
    """
    device = device or sample_ids.device
    ids = sample_ids.to(device=device, dtype=torch.int64)
    numel = 1
    for s in shape:
        numel *= s
    h = _mix(torch.full_like(ids, (seed * 0x9E3779B1) & _MASK32) ^ (ids & _MASK32))
    h = _mix(h ^ ((ids >> 32) & _MASK32))
    h = _mix(h ^ (stream & _MASK32))  # [B]
    elem = torch.arange(numel, device=device, dtype=torch.int64)
    h = _mix(h[:, None] ^ elem[None, :])  # [B, numel]
    h = _mix(h ^ 0x5BD1E995)
    u = h.to(torch.float64) / 4294967296.0
    return u.to(torch.float32).reshape(ids.shape[0], *shape)
