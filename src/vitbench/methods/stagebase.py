"""Shared base of the stage methods: token reduction inside the EViT stage blocks.

:class:`StageMethod` is the base of every method that reduces tokens inside the blocks of the
EViT stage schedule (depth/4, depth/2 and 3*depth/4, after the attention residual, keep
``ceil(rho * n)`` image tokens): EViT, the random-token baseline, eTPS and out-of-tree methods
such as the NormTop plugin example. Its default block is EViT's (Liang et al., ICLR 2022,
official code youweiliang/evit): class-token attention top-k, the inattentive tokens optionally
fused into one. Method modules import this module, never each other.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from vitbench.methods.base import TokenMethod
from vitbench.methods.patching.patch import (
    CountingMixin,
    ForwardState,
    Handle,
    check_vit,
    input_tokens,
    patch_blocks,
    prefix_tokens,
)
from vitbench.methods.patching.stageblock import StageBlockMixin, keep_top
from vitbench.methods.patching.stages import stage_blocks, stage_schedule


def cls_attention(qkv: torch.Tensor, attn: Any, prefix: int) -> torch.Tensor:
    """Head-mean attention of the first (CLS) token to every image token.

    Args:
        qkv: [B, N, 3 * H * d] captured output of ``attn.qkv``.
        attn: the timm ``Attention`` module (heads, head_dim, scale, q_norm, k_norm).
        prefix: prefix tokens; their columns are dropped from the result.

    Returns:
        [B, N - prefix]: mean_h softmax_j(q_0 . k_j * scale)[j] for image tokens j; the softmax
        runs over all N keys as in the official code.
    """
    b, n, _ = qkv.shape
    qkv = qkv.reshape(b, n, 3, attn.num_heads, attn.head_dim)
    q0 = attn.q_norm(qkv[:, :1, 0].transpose(1, 2))  # [B, H, 1, d]
    k = attn.k_norm(qkv[:, :, 1].transpose(1, 2))  # [B, H, N, d]
    logits = (q0 @ k.transpose(-2, -1)) * attn.scale  # [B, H, 1, N]
    return logits.softmax(dim=-1).mean(dim=1)[:, 0, prefix:]  # [B, N - prefix]


def reduce_tokens(x: torch.Tensor, st: ForwardState, index: int, attn: Any) -> torch.Tensor:
    """Keep the top ``ceil(rho * n)`` image tokens of ``x`` [B, N, C]; optionally fuse the rest.

    Scores are CLS attention (``selection="scored"``) or seeded uniform numbers (``"random"``,
    same counts, same fusion weighted by the real CLS attention).
    """
    p = st.prefix
    fuse = bool(getattr(st.params, "fuse_token", False))
    split = keep_top(x, st, index, lambda: cls_attention(st.qkv.pop(index), attn, p), need_scores=fuse)
    if split is None:
        return x
    parts = [x[:, :p], split.kept]
    if fuse:
        assert split.scores is not None
        weights = split.scores.gather(1, split.pruned_idx)[..., None]  # [B, n - left, 1]
        parts.append((split.pruned * weights).sum(dim=1, keepdim=True))
    return torch.cat(parts, dim=1)


class EViTMixin(StageBlockMixin):
    """EViT block (used at the pruning stages only).

    Modifications to timm's ``Block.forward`` (:class:`StageBlockMixin`):
        - between the attention residual and the MLP, image tokens are reduced by
          :func:`reduce_tokens` (CLS-attention top-k, optional fused token);
        - prefix tokens (CLS, distillation, registers) are never pruned (the official code
          treats a distillation token as an image token);
        - an external ``attn_mask`` is not supported.
        LayerScale, drop-path, q/k norms and fused attention are timm's own.
    """

    reduce = staticmethod(reduce_tokens)


class StageMethod(TokenMethod):
    """A method that reduces tokens inside the stage blocks (EViT-style schedule)."""

    mixin: ClassVar[type] = EViTMixin
    needs_attention: ClassVar[bool] = True
    knob: ClassVar[str] = "keep_rate"

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """The keep ratio is the per-stage keep rate rho."""
        return {"keep_rate": float(keep_ratio)}

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch ``model``: stage blocks get the reduction, the others only count tokens."""
        blocks = check_vit(model, cls.name)
        locs = stage_blocks(len(blocks), params.drop_loc)
        st = ForwardState(cls.name, prefix_tokens(model), selection, seed, len(blocks), params=params)
        fuse = bool(getattr(params, "fuse_token", False))
        capture = set(locs) if (cls.needs_attention and (fuse or selection == "scored")) else set()
        return patch_blocks(model, st, lambda i: cls.mixin if i in locs else CountingMixin, capture)

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block for the model's input size (:func:`input_tokens`)."""
        depth = len(check_vit(model, cls.name))
        locs = stage_blocks(depth, params.drop_loc)
        fuse = bool(getattr(params, "fuse_token", False))
        attn, _ = stage_schedule(
            input_tokens(model), prefix_tokens(model), depth, locs, params.keep_rate, fuse
        )
        return attn


__all__ = ["EViTMixin", "StageMethod", "cls_attention", "reduce_tokens"]
