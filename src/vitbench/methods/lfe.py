"""LFE: VTC-LFC's token pruning by low-frequency energy times head-weighted attention.

Wang et al., "VTC-LFC: Vision Transformer Compression with Low-Frequency Components",
NeurIPS 2022 (official code: Daner-Wang/VTC-LFC, ``selector`` in ``models/deit/deit.py``; see
``references/methods.md`` section 2.3). In a pruning block, after the attention residual and
before the MLP:

1. attention score of image token j from that block's softmax attention A [B, H, N, N]:
   ``a_j = mean_h(A_h[0, j] * mean_i A_h[i, 0]) + mean_h(mean_i A_h[i, j] * A_h[0, 0])``
   (i over image tokens);
2. low-frequency energy: 1-D FFT of the image tokens over the sequence axis per channel, the
   Gaussian filter of :func:`vitbench.methods.slimming.lowpass.token_lowpass_kernel` on the
   unshifted spectrum,
   inverse FFT, complex magnitude; ``LFE_j = sum_c |X_lf[j, c]| / mean_j' sum_c |X[j', c]|``;
3. ``score_j = LFE_j * a_j``; the top ``n_keep`` image tokens survive, the rest are dropped.

Where it prunes: the official model prunes in every block to a searched per-block count
(``token_cfg``, found by the VTC-LFC cascade, :mod:`vitbench.methods.vtclfc`). As a stand-alone
token method the keep ratio maps to the stage schedule of the other stage methods (keep
``ceil(rho * n)`` image tokens in blocks depth/4, depth/2, 3*depth/4); an explicit
``token_cfg`` (image tokens kept after each block) overrides it. The attention matrix is
computed explicitly only in blocks that prune; the other blocks run timm's fused forward.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.base import TokenMethod, register
from vitbench.methods.patching.patch import (
    CountingMixin,
    ForwardState,
    Handle,
    check_vit,
    input_tokens,
    patch_blocks,
    prefix_tokens,
)
from vitbench.methods.patching.stages import evit_keep, stage_blocks
from vitbench.methods.requirements import Requirements
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


@dataclasses.dataclass
class LFEState(ForwardState):
    """:class:`ForwardState` plus the per-block image-token targets (``-1``: no pruning)."""

    targets: tuple[int, ...] = ()
    cutoff: float = 0.15


def select_tokens(x: torch.Tensor, probs: torch.Tensor | None, st: LFEState, index: int) -> torch.Tensor:
    """Keep the prefix tokens and the top ``st.targets[index]`` image tokens of ``x`` [B, N, C].

    Kept image tokens are returned in their current (spatial) order; ``selection="random"``
    replaces the scores by seeded uniform numbers (same counts).
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
    idx = scores.topk(keep, dim=1, largest=True, sorted=False).indices.sort(dim=1).values  # [B, keep]
    kept = x[:, p:].gather(1, idx[..., None].expand(-1, -1, c))
    return torch.cat([x[:, :p], kept], dim=1)


class LFEMixin(CountingMixin):
    """LFE block (used in the blocks that prune).

    Modifications to timm's ``Block.forward``:
        - the attention runs unfused (:func:`attention_with_probs`, the module's own layers) to
          expose its probabilities, skipped when the selection is random;
        - between the attention residual and the MLP the image tokens are reduced by
          :func:`select_tokens` (LFE x head-weighted attention top-k; pruned tokens dropped);
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


@dataclasses.dataclass(frozen=True)
class LFEParams:
    """LFE native parameters.

    Attributes:
        keep_rate: fraction rho of image tokens kept at each stage (stage schedule).
        cutoff_token: the official ``--cutoff-token`` (0.85); the token filter's sigma is
            ``n * (1 - cutoff_token) / 2``. Must be in [0, 1).
        drop_loc: stage blocks; empty = depth/4, depth/2, 3*depth/4.
        token_cfg: explicit image tokens kept after each block's selection (one per block,
            non-increasing; the official ``token_cfg``); overrides ``keep_rate``/``drop_loc``.
    """

    keep_rate: float = 0.7
    cutoff_token: float = 0.85
    drop_loc: tuple[int, ...] = ()
    token_cfg: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"keep_rate {self.keep_rate} is outside (0, 1]")
        if not 0.0 <= self.cutoff_token < 1.0:
            raise ValueError(
                f"cutoff_token {self.cutoff_token} gives sigma <= 0 (sigma = n * (1 - cutoff_token) / 2); "
                "use a value in [0, 1) such as 0.85"
            )
        if any(int(t) < 0 for t in self.token_cfg):
            raise ValueError(f"token_cfg {list(self.token_cfg)} has negative counts")
        if any(b > a for a, b in zip(self.token_cfg, self.token_cfg[1:], strict=False)):
            raise ValueError(f"token_cfg {list(self.token_cfg)} must be non-increasing")


def block_targets(model: nn.Module, params: LFEParams, name: str = "lfe") -> tuple[int, ...]:
    """Image tokens to keep after each block's selection (``-1``: the block does not select)."""
    depth = len(check_vit(model, name))
    if params.token_cfg:
        if len(params.token_cfg) != depth:
            raise VitbenchError(
                f"token_cfg has {len(params.token_cfg)} entries but the model has {depth} blocks; "
                "give one per block"
            )
        return tuple(int(t) for t in params.token_cfg)
    locs = stage_blocks(depth, params.drop_loc)
    n = input_tokens(model) - prefix_tokens(model)
    out = []
    for i in range(depth):
        if i in locs and params.keep_rate < 1:
            n = min(n, evit_keep(params.keep_rate, n))
            out.append(n)
        else:
            out.append(-1)
    return tuple(out)


def lfe_schedule(model: nn.Module, targets: tuple[int, ...]) -> list[int]:
    """Tokens (prefix included) entering each block for per-block targets."""
    p = prefix_tokens(model)
    n = input_tokens(model) - p
    attn = []
    for t in targets:
        attn.append(p + n)
        if 0 <= t < n:
            n = t
    return attn


def apply_lfe(
    model: nn.Module,
    targets: tuple[int, ...],
    cutoff: float,
    name: str,
    params: Any,
    selection: str,
    seed: int,
) -> Handle:
    """Patch ``model`` with LFE selection to per-block ``targets``; returns the undo handle."""
    blocks = check_vit(model, name)
    st = LFEState(name, prefix_tokens(model), selection, seed, len(blocks), params=params)
    st.tokens = input_tokens(model)  # the targets are counts on this input's grid
    st.targets = targets
    st.cutoff = cutoff
    return patch_blocks(model, st, lambda i: LFEMixin if targets[i] >= 0 else CountingMixin)


@register
class LFE(TokenMethod):
    """VTC-LFC's LFE token pruning: low-frequency energy x head-weighted attention, top-k, dropped."""

    name = "lfe"
    Params = LFEParams
    requirements = Requirements(
        vit_blocks=True,
        class_token=True,
        uses="its token score weights the class token's attention row and column",
    )
    knob: ClassVar[str] = "keep_rate"
    summary = "low-frequency energy x head-weighted attention top-k, pruned tokens dropped (Wang et al. 2022)"

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """The keep ratio is the per-stage keep rate rho."""
        return {"keep_rate": float(keep_ratio)}

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch ``model``: pruning blocks get LFE selection, the others only count tokens."""
        targets = block_targets(model, params, cls.name)
        return apply_lfe(model, targets, 1.0 - params.cutoff_token, cls.name, params, selection, seed)

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block for the model's input size (:func:`input_tokens`)."""
        return lfe_schedule(model, block_targets(model, params, cls.name))


__all__ = [
    "LFE",
    "LFEParams",
    "apply_lfe",
    "attention_with_probs",
    "block_targets",
    "head_weighted_attention",
    "lfe_schedule",
    "lfe_scores",
    "select_tokens",
]
