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
3. ``score_j = LFE_j * a_j``; the top ``n_keep`` image tokens survive, the rest are dropped;
4. the kept image tokens follow the prefix tokens in the order ``token_order`` names
   (:func:`~vitbench.methods.lfeblock.kept_indices`): ``official`` (default) is the order of the
   official selector's output, ``torch.topk(sorted=False)`` followed by ``gather``, as the
   authors' runs produced it on CUDA: the kept tokens that score above the k-th largest score in
   index order, then the k-th ranked one (ties at the k-th score: the first in index order);
   ``spatial`` sorts them by index. The order is the sequence the next pruning block's FFT runs
   over, so it changes every later stage's LFE scores (in the VTC-LFC cascade on the demo model:
   up to 35x at the next pruning block, other kept sets on 74-80 % of the images; see the card).

Where it prunes: the official model prunes in every block to a searched per-block count
(``token_cfg``, found by the VTC-LFC cascade, :mod:`vitbench.methods.vtclfc`). As a stand-alone
token method the keep ratio maps to the stage schedule of the other stage methods (keep
``ceil(rho * n)`` image tokens in blocks depth/4, depth/2, 3*depth/4); an explicit
``token_cfg`` (image tokens kept after each block) overrides it. The attention matrix is
computed explicitly only in blocks that prune; the other blocks run timm's fused forward. The
block (scores, selection, :func:`~vitbench.methods.lfeblock.apply_lfe`) lives in
:mod:`vitbench.methods.lfeblock`, shared with the VTC-LFC cascade.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.base import TokenMethod, register
from vitbench.methods.lfeblock import apply_lfe, check_token_order
from vitbench.methods.patching.patch import (
    Handle,
    check_vit,
    input_tokens,
    prefix_tokens,
)
from vitbench.methods.patching.stages import evit_keep, stage_blocks
from vitbench.methods.requirements import Requirements


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
        token_order: order of the kept image tokens after a selection
            (:func:`~vitbench.methods.lfeblock.kept_indices`): ``official`` (the official
            selector's output order as its CUDA runs produced it) or ``spatial`` (index order,
            vitbench's behaviour before this parameter).
    """

    keep_rate: float = 0.7
    cutoff_token: float = 0.85
    drop_loc: tuple[int, ...] = ()
    token_cfg: tuple[int, ...] = ()
    token_order: str = "official"

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
        check_token_order(self.token_order)


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
    replaces_knob: ClassVar[tuple[str, ...]] = ("token_cfg",)  # explicit counts override keep_rate
    summary = "low-frequency energy x head-weighted attention top-k, pruned tokens dropped (Wang et al. 2022)"
    #: 2: kept tokens in the official selector's order by default (token_order), which changes
    #: the LFE scores of every pruning stage after the first
    version: ClassVar[int] = 2

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """The keep ratio is the per-stage keep rate rho."""
        return {"keep_rate": float(keep_ratio)}

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch ``model``: pruning blocks get LFE selection, the others only count tokens."""
        targets = block_targets(model, params, cls.name)
        return apply_lfe(
            model, targets, 1.0 - params.cutoff_token, cls.name, params, selection, seed, params.token_order
        )

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block for the model's input size (:func:`input_tokens`)."""
        return lfe_schedule(model, block_targets(model, params, cls.name))


__all__ = ["LFE", "LFEParams", "block_targets", "lfe_schedule"]
