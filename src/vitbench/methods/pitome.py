"""PiToMe: token merging that protects informative tokens by an energy score (Tran et al., NeurIPS 2024).

"Accelerating Transformers with Spectrum-Preserving Token Merging" (official code:
hchautran/PiToMe, ``algo/pitome/merge.py`` ``pitome_vision``/``pitome``/``pitome_bsm`` and
``algo/pitome/patch/timm.py``, ``deit.py``, ``mae.py``). In every block, between the attention
residual and the MLP, with ``T`` image tokens entering the merge (prefix tokens excluded):

1. ``r = floor(T - T * ratio)`` tokens are merged away (``ratio``: the official knob, the
   fraction of image tokens a block keeps);
2. metric: the head-mean keys of the block's attention, L2-normalised; ``S = m m^T`` [T, T];
3. energy of token i: ``E_i = mean_j elu(S_ij - margin_l)`` (alpha 1, the mean includes j = i)
   with the per-block margin ``margin_l = 0.75 - 0.75 * l / depth``; tokens are ordered by
   descending energy;
4. matching, one of two kinds per block:
   - ``pitome``: the ``2r`` highest-energy tokens are mergeable, the others protected; the
     mergeable ones alternate in energy order into A (ranks 0, 2, ...) and B (ranks 1, 3, ...);
     every A token merges into its most similar B token;
   - ``bsm``: all tokens alternate in energy order into A and B; every A token finds its most
     similar B token and the ``r`` A tokens with the highest similarity merge (ToMe's
     bipartite soft matching with the energy-ordered split);
   the official DeiT patch uses ``bsm`` in the first ``ceil(depth / 2)`` blocks and ``pitome``
   after, the MAE patch the reverse (``bsm_half``);
5. merge: size-weighted average (``x * size`` and ``size`` summed into the B token, then
   divided), sizes add up; the output is [prefix, unmerged tokens (protected in energy order,
   or unmerged A in edge order), B tokens].

The official block calls its attention without the token sizes, so there is no proportional
attention (unlike ToMe). ``selection="random"``: the energies, the edge scores and the B partner
of each A token are seeded uniform draws; the counts, the split rule and the size-weighted merge
stay the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.measure.gmacs import vit_dims, vit_schedule_macs
from vitbench.methods.base import Conformance, TokenMethod, register
from vitbench.methods.mergebase import patch_size_pool
from vitbench.methods.patching.patch import (
    CountingMixin,
    ForwardState,
    Handle,
    check_vit,
    input_tokens,
    patch_blocks,
    prefix_tokens,
)
from vitbench.methods.patching.stages import evit_macs
from vitbench.methods.requirements import Requirements

Merge = Callable[[torch.Tensor, str], torch.Tensor]

#: ``bsm_half`` values: which half of the blocks uses the energy-ordered bipartite matching.
BSM_HALVES = ("first", "second")

#: Ratios :meth:`PiToMe.map_keep_ratio` chooses from (steps of 0.005; the official scripts run
#: 0.9, 0.925, 0.95 and 0.975).
RATIO_GRID: tuple[float, ...] = tuple(round(1.0 - 0.005 * i, 3) for i in range(101))


def merged_count(tokens: int, ratio: float) -> int:
    """Tokens merged away from ``tokens`` image tokens at ``ratio``: the official ``floor(T - T * ratio)``."""
    return math.floor(tokens - tokens * ratio)


def margins(depth: int) -> tuple[float, ...]:
    """The official per-block energy margins ``0.75 - 0.75 * l / depth``."""
    return tuple(0.75 - 0.75 * (i / depth) for i in range(depth))


def bsm_blocks(depth: int, half: str) -> tuple[bool, ...]:
    """Per block: energy-ordered bipartite matching (``True``) or protected merging (``False``).

    ``half="first"`` (official DeiT patch): the first ``ceil(depth / 2)`` blocks use bipartite
    matching; ``"second"`` (official MAE patch): the first ``ceil(depth / 2)`` blocks do not.
    """
    first = math.ceil(depth * 0.5)
    head = half == "first"
    return tuple(head if i < first else not head for i in range(depth))


def energy_scores(metric: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy of every token and the cosine similarities.

    Args:
        metric: [B, T, d] image-token features (head-mean keys).
        margin: the block's margin.

    Returns:
        (energy [B, T] = mean_j elu(S_ij - margin), similarity S [B, T, T]).
    """
    m = F.normalize(metric, p=2, dim=-1)
    sim = m @ m.transpose(-1, -2)
    return F.elu(sim - margin, alpha=1.0).mean(dim=-1), sim


@dataclasses.dataclass(frozen=True)
class MergePlan:
    """Which image tokens survive unmerged and which A token merges into which B token.

    All indices are positions among the image tokens [0, T).

    Attributes:
        keep: [B, T - r - n_b] tokens kept unmerged, in output order.
        dst: [B, n_b] the B tokens, in output order (each receives zero or more merges).
        src: [B, r] the A tokens merged away.
        into: [B, r] for each ``src`` token, its B partner as a position in ``dst``.
    """

    keep: torch.Tensor
    dst: torch.Tensor
    src: torch.Tensor
    into: torch.Tensor


def plan_merge(
    energy: torch.Tensor,
    pair_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    r: int,
    bsm: bool,
) -> MergePlan:
    """The PiToMe merge plan from token energies (official ``pitome`` / ``pitome_bsm``).

    Args:
        energy: [B, T] token energies (or uniform draws for random selection).
        pair_scores: ``(a [B, n_a], b [B, n_b]) -> [B, n_a, n_b]`` similarity of A and B tokens.
        r: tokens to merge away, ``1 <= r <= T // 2``.
        bsm: energy-ordered bipartite matching (else protected merging of the ``2r`` highest).
    """
    order = energy.argsort(dim=-1, descending=True)  # [B, T]
    if bsm:
        a, b = order[:, ::2], order[:, 1::2]
        best, partner = pair_scores(a, b).max(dim=-1)  # [B, n_a]
        edges = best.argsort(dim=-1, descending=True)
        src_pos = edges[:, :r]
        return MergePlan(a.gather(1, edges[:, r:]), b, a.gather(1, src_pos), partner.gather(1, src_pos))
    mergeable = order[:, : 2 * r]
    a, b = mergeable[:, ::2], mergeable[:, 1::2]  # [B, r] each
    partner = pair_scores(a, b).argmax(dim=-1)
    return MergePlan(order[:, 2 * r :], b, a, partner)


def merge_function(plan: MergePlan, prefix: int) -> Merge:
    """``merge(x [B, N, C], mode) -> [B, N - r, C]``: [prefix, kept, B tokens with merges reduced in]."""

    def merge(x: torch.Tensor, mode: str = "sum") -> torch.Tensor:
        c = x.shape[-1]
        img = x[:, prefix:]

        def take(idx: torch.Tensor) -> torch.Tensor:
            return img.gather(1, idx[..., None].expand(-1, -1, c))

        dst = take(plan.dst).scatter_reduce(1, plan.into[..., None].expand(-1, -1, c), take(plan.src), mode)
        return torch.cat([x[:, :prefix], take(plan.keep), dst], dim=1)

    return merge


def merge_wavg(merge: Merge, x: torch.Tensor, size: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average merge of ``x`` [B, N, C]; ``size`` [B, N, 1] (None = ones)."""
    if size is None:
        size = torch.ones_like(x[..., 0, None])
    x = merge(x * size, "sum")
    size = merge(size, "sum")
    return x / size, size


def _gathered(sim: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``pair_scores`` reading a similarity matrix [B, T, T]."""

    def scores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        rows = sim.gather(1, a[..., None].expand(-1, -1, sim.shape[-1]))  # [B, n_a, T]
        return rows.gather(2, b[:, None, :].expand(-1, a.shape[1], -1))  # [B, n_a, n_b]

    return scores


def _random(u: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``pair_scores`` of random selection: each A token scores 1 + u_edge at a uniform B partner.

    ``u`` [B, T, 3]: column 1 the edge score, column 2 the partner draw, both read at the A
    token's position; every other pair scores 0.
    """

    def scores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ua = u.gather(1, a[..., None].expand(-1, -1, u.shape[-1]))  # [B, n_a, 3]
        n_b = b.shape[1]
        partner = (ua[..., 2] * n_b).long().clamp_(max=n_b - 1)
        out = torch.zeros(a.shape[0], a.shape[1], n_b, dtype=u.dtype, device=u.device)
        return out.scatter_(2, partner[..., None], 1.0 + ua[..., 1:2])

    return scores


class PiToMeMixin(CountingMixin):
    """PiToMe block.

    Modifications to timm's ``Block.forward``:
        - between the attention residual and the MLP, ``r`` image tokens are merged with the
          energy-protected plan of :func:`plan_merge` on the head-mean keys (captured from
          ``attn.qkv``, with ``k_norm`` applied) and :func:`merge_wavg`; token sizes are tracked;
        - prefix tokens (CLS, distillation, registers) are never merged and never receive a merge;
        - an external ``attn_mask`` is not supported;
        - the official ``PiToMeBlock`` drops LayerScale; here ``ls1``/``ls2`` are kept.
        The attention is timm's own (fused), without proportional attention, as the official block.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: D102
        st: Any = self._vb_enter(x)
        if attn_mask is not None:
            raise VitbenchError(f"'{st.method}' does not support an attention mask; run without attn_mask")
        blk: Any = self
        i = self._vb_index
        x = x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x), **kw)))
        qkv = st.qkv.pop(i, None)  # captured for scored selection
        p, n = st.prefix, x.shape[1] - st.prefix
        r = merged_count(n, st.params.ratio)
        if r > 0:
            if st.selection == "scored":
                assert qkv is not None
                b = qkv.shape[0]
                k = blk.attn.k_norm(qkv.reshape(b, p + n, 3, blk.attn.num_heads, blk.attn.head_dim)[:, :, 1])
                with torch.no_grad():
                    energy, sim = energy_scores(k.mean(dim=2)[:, p:], st.margins[i])
                    plan = plan_merge(energy, _gathered(sim), r, st.bsm[i])
            else:
                u = st.uniform(i, (n, 3), x.float())  # [B, n, 3]
                plan = plan_merge(u[..., 0], _random(u), r, st.bsm[i])
            x, st.extra["size"] = merge_wavg(merge_function(plan, p), x, st.extra.get("size"))
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


@dataclasses.dataclass
class PiToMeState(ForwardState):
    """:class:`ForwardState` plus the per-block margins and matching kinds."""

    margins: tuple[float, ...] = ()
    bsm: tuple[bool, ...] = ()


@dataclasses.dataclass(frozen=True)
class PiToMeParams:
    """PiToMe native parameters.

    Attributes:
        ratio: fraction of a block's image tokens that survive its merge (the official ``ratio``;
            ``floor(T - T * ratio)`` merged per block). In [0.5, 1]: below 0.5 a block would merge
            more than half of its tokens, which neither matching can (the official code fails).
        bsm_half: which half of the blocks uses the energy-ordered bipartite matching: ``first``
            (the official DeiT patch) or ``second`` (the official MAE patch).
    """

    ratio: float = 0.9
    bsm_half: str = "first"

    def __post_init__(self) -> None:
        if not 0.5 <= self.ratio <= 1.0:
            raise ValueError(
                f"ratio {self.ratio} is outside [0.5, 1]: below 0.5 a block merges more than half of its "
                "tokens; use e.g. 0.9 (the official scripts run 0.9 to 0.975)"
            )
        if self.bsm_half not in BSM_HALVES:
            raise ValueError(
                f"bsm_half '{self.bsm_half}' is unknown; "
                "use 'first' (official DeiT patch) or 'second' (official MAE patch)"
            )


def pitome_schedule(n0: int, prefix: int, depth: int, ratio: float) -> tuple[list[int], list[int]]:
    """Tokens (prefix included) entering the attention and the MLP of each block."""
    attn, mlp = [], []
    n = n0
    for _ in range(depth):
        attn.append(n)
        n -= merged_count(n - prefix, ratio)
        mlp.append(n)
    return attn, mlp


@register
class PiToMe(TokenMethod):
    """PiToMe (NeurIPS'24): energy-protected token merging in every block."""

    name = "pitome"
    Params = PiToMeParams
    #: no class token needed (prefix tokens are protected); the classifier reads the class token
    #: or the size-weighted average of the tokens, as the official MAE patch pools
    requirements = Requirements(
        vit_blocks=True,
        pooling=("token", "avg"),
        pooling_why="merged tokens are pooled by their sizes; a max or attention pool of them is not rebuilt",
    )
    knob: ClassVar[str] = "ratio"
    summary = "energy-score-protected bipartite merging in every block, size-weighted (Tran et al. 2024)"
    #: the energy similarities (T x T x d per block) beside the blocks
    conformance = Conformance(gmacs_overhead=0.05)

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """The ratio (grid of 0.005 in [0.5, 1]) whose GMACs are closest to EViT's at the keep ratio."""
        dim, attn_dim, hidden, depth = vit_dims(model)
        n0, p = input_tokens(model), prefix_tokens(model)
        target = evit_macs(model, keep_ratio)
        best, best_err = 1.0, math.inf
        for ratio in RATIO_GRID:  # from 1.0 down: ties keep the larger ratio
            pa, pm = pitome_schedule(n0, p, depth, ratio)
            err = abs(vit_schedule_macs(pa, pm, dim, attn_dim, hidden) - target)
            if err < best_err:
                best, best_err = ratio, err
        return {"ratio": best}

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch every block with :class:`PiToMeMixin` and an averaging model's pooling (by size).

        qkv of every block is captured for scored selection; the pooling patch is
        :func:`vitbench.methods.mergebase.patch_size_pool`.
        """
        depth = len(check_vit(model, cls.name))
        st = PiToMeState(cls.name, prefix_tokens(model), selection, seed, depth, params=params)
        st.margins = margins(depth)
        st.bsm = bsm_blocks(depth, params.bsm_half)
        capture = set(range(depth)) if selection == "scored" and params.ratio < 1.0 else set()
        handle = patch_blocks(model, st, lambda i: PiToMeMixin, capture)
        patch_size_pool(model, st, handle)
        return handle

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block."""
        depth = len(check_vit(model, cls.name))
        attn, _ = pitome_schedule(input_tokens(model), prefix_tokens(model), depth, params.ratio)
        return attn


__all__ = [
    "BSM_HALVES",
    "MergePlan",
    "PiToMe",
    "PiToMeMixin",
    "PiToMeParams",
    "PiToMeState",
    "bsm_blocks",
    "energy_scores",
    "margins",
    "merge_function",
    "merge_wavg",
    "merged_count",
    "pitome_schedule",
    "plan_merge",
]
