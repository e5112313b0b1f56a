"""Stage schedules shared by the stage methods (EViT, random tokens, and later DynamicViT/TPS/LFE)."""

from __future__ import annotations

import math

from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.measure.gmacs import vit_dims, vit_schedule_macs
from vitbench.methods.patching.patch import input_tokens, prefix_tokens


def stage_blocks(depth: int, drop_loc: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Blocks where a stage method reduces tokens: depth/4, depth/2, 3*depth/4 unless given.

    For 12 blocks this is (3, 6, 9), the papers' setting.
    """
    if drop_loc:
        bad = [b for b in drop_loc if not 0 <= b < depth]
        if bad:
            raise VitbenchError(f"drop_loc {bad} outside blocks 0..{depth - 1}; pick block indices in range")
        return tuple(sorted(set(drop_loc)))
    locs = tuple(sorted({depth // 4, depth // 2, (3 * depth) // 4}))
    if 0 in locs:
        raise VitbenchError(f"a model with {depth} blocks is too shallow for 3 pruning stages; set drop_loc")
    return locs


def evit_keep(keep_rate: float, n: int) -> int:
    """Image tokens EViT keeps out of ``n``: ceil(keep_rate * n), as the official code rounds."""
    return max(1, math.ceil(keep_rate * n))


def stage_schedule(
    n0: int, prefix: int, depth: int, locs: tuple[int, ...], keep_rate: float, fuse: bool
) -> tuple[list[int], list[int]]:
    """Tokens entering attention and the MLP of each block for an in-block stage method.

    Args:
        n0: tokens entering block 0, prefix included.
        prefix: prefix tokens never pruned.
        depth: number of blocks.
        locs: blocks that reduce tokens between attention and MLP.
        keep_rate: fraction of image tokens kept at each stage.
        fuse: EViT's extra fused token.

    Returns:
        (tokens entering attention, tokens entering the MLP), one entry per block.
    """
    attn, mlp = [], []
    n = n0
    for i in range(depth):
        attn.append(n)
        if i in locs and keep_rate < 1:
            img = n - prefix
            left = evit_keep(keep_rate, img)
            if left < img:
                n = prefix + left + (1 if fuse else 0)
        mlp.append(n)
    return attn, mlp


def evit_macs(model: nn.Module, keep_ratio: float) -> float:
    """Closed-form MACs of EViT (fused token, default stages) at ``keep_ratio`` on ``model``.

    The target the keep-ratio knobs of the merging methods (ToMe's r, PiToMe's ratio, MCTF's and
    PPT's r) are matched to: each picks its setting whose GMACs are closest to this.
    """
    dim, attn_dim, hidden, depth = vit_dims(model)
    n0, p = input_tokens(model), prefix_tokens(model)
    ea, em = stage_schedule(n0, p, depth, stage_blocks(depth), keep_ratio, fuse=True)
    return vit_schedule_macs(ea, em, dim, attn_dim, hidden)
