"""The LFE block: VTC-LFC's token selection by low-frequency energy x head-weighted attention.

Wang et al., NeurIPS 2022 (official code: Daner-Wang/VTC-LFC, ``selector`` in
``models/deit/deit.py``); the score is defined in :mod:`vitbench.methods.lfe`. This is the block
the LFE token method and the VTC-LFC cascade (:mod:`vitbench.methods.vtclfc`) share; method
modules import it, never each other.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.patching.patch import (
    CountingMixin,
    ForwardState,
    Handle,
    check_vit,
    input_tokens,
    patch_blocks,
    prefix_tokens,
)
from vitbench.methods.slimming.lowpass import low_frequency_energy


def attention_dims(attn: Any) -> tuple[int, int, int]:
    """(heads, per-head q/k dim, per-head v dim) of a timm ``Attention`` or a ``SlimAttention``."""
    heads = int(attn.num_heads)
    d_qk = int(getattr(attn, "qk_dim", None) or attn.head_dim)
    d_v = int(getattr(attn, "v_dim", None) or attn.head_dim)
    return heads, d_qk, d_v


def attention_with_probs(attn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Timm ``Attention.forward`` (non-fused path) that also returns the attention probabilities.

    Uses the module's own ``qkv``, ``q_norm``/``k_norm``, ``scale``, ``attn_drop``, ``norm``,
    optional ``gate``, ``proj`` and ``proj_drop``; qkv rows are ``[q | k | v]``, each head-major,
    with per-head q/k dim and v dim that may differ (slimmed attention).

    Args:
        attn: the attention module.
        x: normalised tokens [B, N, C].

    Returns:
        (output [B, N, C] before the residual, probabilities [B, H, N, N]).
    """
    b, n, _ = x.shape
    heads, d_qk, d_v = attention_dims(attn)
    gate_mod = getattr(attn, "gate", None)
    gate = gate_mod(x).sigmoid() if gate_mod is not None else None
    qkv = attn.qkv(x)
    qk = qkv[..., : 2 * heads * d_qk].reshape(b, n, 2, heads, d_qk).permute(2, 0, 3, 1, 4)
    ident = nn.Identity()
    q, k = getattr(attn, "q_norm", ident)(qk[0]), getattr(attn, "k_norm", ident)(qk[1])  # [B, H, N, d_qk]
    v = qkv[..., 2 * heads * d_qk :].reshape(b, n, heads, d_v).transpose(1, 2)  # [B, H, N, d_v]
    probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    out = (attn.attn_drop(probs) @ v).transpose(1, 2).reshape(b, n, heads * d_v)
    out = getattr(attn, "norm", ident)(out)
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out)), probs


def head_weighted_attention(probs: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """VTC-LFC's attention score of every image token, [B, n] (n = N - prefix).

    ``cls term = mean_h(A_h[0, j] * w_h)`` with ``w_h = mean_{i image} A_h[i, 0]``;
    ``img term = mean_h(mean_{i image} A_h[i, j] * A_h[0, 0])``; score = cls term + img term.

    Args:
        probs: softmax attention [B, H, N, N].
        prefix: prefix tokens (CLS first); image tokens are ``prefix:``.
    """
    a = probs.float()
    cls_weight = a[:, :, prefix:, 0].mean(dim=-1, keepdim=True)  # [B, H, 1]
    cls_term = (a[:, :, 0, prefix:] * cls_weight).mean(dim=1)  # [B, n]
    img_weight = a[:, :, 0, 0][..., None]  # [B, H, 1]
    img_term = (a[:, :, prefix:, prefix:].mean(dim=2) * img_weight).mean(dim=1)  # [B, n]
    return cls_term + img_term


def lfe_scores(x: torch.Tensor, probs: torch.Tensor, prefix: int, cutoff: float) -> torch.Tensor:
    """Final LFE token importance ``LFE_j * a_j`` of the image tokens of ``x`` [B, N, C] -> [B, n]."""
    energy = low_frequency_energy(x[:, prefix:].detach(), cutoff)
    return energy * head_weighted_attention(probs, prefix)


#: Orders of the kept image tokens after a selection (:func:`kept_indices`).
TOKEN_ORDERS: tuple[str, ...] = ("official", "spatial")


def check_token_order(order: str) -> str:
    """Return ``order`` or raise a one-line ``ValueError`` unless it is one of :data:`TOKEN_ORDERS`."""
    if order not in TOKEN_ORDERS:
        raise ValueError(
            f"token_order {order!r} is unknown; use one of: {', '.join(TOKEN_ORDERS)} "
            "(official = the order the VTC-LFC code's selector produced, spatial = index order)"
        )
    return order


def kept_indices(scores: torch.Tensor, keep: int, order: str = "official") -> torch.Tensor:
    """Indices [B, keep] of the ``keep`` highest ``scores`` [B, n], in the order they are kept.

    ``spatial``: ascending index. ``official``: the order of the official selector's output
    (``torch.topk(scores, keep, sorted=False)``, Daner-Wang/VTC-LFC ``models/deit/deit.py``) as
    CUDA's radix-select top-k writes it, the order of the authors' runs: first every index
    whose score is above the k-th largest score, in index order, then indices whose score
    equals it, in index order, until ``keep`` are taken (with distinct scores: the k-th ranked
    token last). Both orders keep the same set when the scores are distinct.

    Args:
        scores: [B, n] float scores (higher = kept).
        keep: tokens to keep, 1 <= keep <= n.
        order: one of :data:`TOKEN_ORDERS`.

    Raises:
        ValueError: an unknown ``order``.
    """
    check_token_order(order)
    if order == "spatial":
        return scores.topk(keep, dim=1, largest=True, sorted=False).indices.sort(dim=1).values
    n = scores.shape[1]
    kth = scores.topk(keep, dim=1, largest=True, sorted=True).values[:, -1:]  # [B, 1]
    above = scores > kth
    tied = scores == kth
    need = keep - above.sum(dim=1, keepdim=True)  # [B, 1] tied tokens still to take
    take = tied & (tied.cumsum(dim=1) <= need)
    pos = torch.arange(n, device=scores.device).expand_as(scores)
    rank = torch.where(above, pos, torch.where(take, pos + n, pos + 2 * n))  # above, then ties, then dropped
    return rank.topk(keep, dim=1, largest=False, sorted=True).indices


@dataclasses.dataclass
class LFEState(ForwardState):
    """:class:`ForwardState` plus the per-block image-token targets (``-1``: no pruning)."""

    targets: tuple[int, ...] = ()
    cutoff: float = 0.15
    order: str = "official"


def select_tokens(x: torch.Tensor, probs: torch.Tensor | None, st: LFEState, index: int) -> torch.Tensor:
    """Keep the prefix tokens and the top ``st.targets[index]`` image tokens of ``x`` [B, N, C].

    Kept image tokens follow the prefix tokens in the order ``st.order`` names
    (:func:`kept_indices`); ``selection="random"`` replaces the scores by seeded uniform
    numbers (same counts, same ordering rule).
    """
    p = st.prefix
    b, n_all, c = x.shape
    n = n_all - p
    keep = min(st.targets[index], n)
    if keep >= n or keep < 0:
        return x
    if keep == 0:
        return x[:, :p]
    if st.selection == "scored":
        assert probs is not None
        scores = lfe_scores(x, probs, p, st.cutoff)
    else:
        scores = st.uniform(index, (n,), x)
    idx = kept_indices(scores, keep, st.order)  # [B, keep]
    kept = x[:, p:].gather(1, idx[..., None].expand(-1, -1, c))
    return torch.cat([x[:, :p], kept], dim=1)


class LFEMixin(CountingMixin):
    """LFE block (used in the blocks that prune).

    Modifications to timm's ``Block.forward``:
        - the attention runs unfused (:func:`attention_with_probs`, the module's own layers) to
          expose its probabilities, skipped when the selection is random;
        - between the attention residual and the MLP the image tokens are reduced by
          :func:`select_tokens` (LFE x head-weighted attention top-k; pruned tokens dropped;
          kept tokens in the ``token_order`` of the parameters);
        - prefix tokens (CLS, distillation, registers) are never pruned;
        - an external ``attn_mask`` is not supported.
        LayerScale, drop-path and the MLP are timm's own.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: D102
        st: Any = self._vb_enter(x)
        if attn_mask is not None:
            raise VitbenchError(f"'{st.method}' does not support an attention mask; run without attn_mask")
        blk: Any = self
        h = blk.norm1(x)
        n = x.shape[1] - st.prefix
        if st.selection == "scored" and 0 < st.targets[self._vb_index] < n:  # scores needed
            out, probs = attention_with_probs(blk.attn, h)
        else:
            out, probs = blk.attn(h, **kw), None
        x = x + blk.drop_path1(blk.ls1(out))
        x = select_tokens(x, probs, st, self._vb_index)
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


def apply_lfe(
    model: nn.Module,
    targets: tuple[int, ...],
    cutoff: float,
    name: str,
    params: Any,
    selection: str,
    seed: int,
    token_order: str = "official",
) -> Handle:
    """Patch ``model`` with LFE selection to per-block ``targets``; returns the undo handle.

    ``token_order``: order of the kept image tokens (:func:`kept_indices`).
    """
    blocks = check_vit(model, name)
    st = LFEState(name, prefix_tokens(model), selection, seed, len(blocks), params=params)
    st.tokens = input_tokens(model)  # the targets are counts on this input's grid
    st.targets = targets
    st.cutoff = cutoff
    st.order = check_token_order(token_order)
    return patch_blocks(model, st, lambda i: LFEMixin if targets[i] >= 0 else CountingMixin)


__all__ = [
    "TOKEN_ORDERS",
    "LFEMixin",
    "LFEState",
    "apply_lfe",
    "check_token_order",
    "kept_indices",
    "attention_dims",
    "attention_with_probs",
    "head_weighted_attention",
    "lfe_scores",
    "select_tokens",
]
