"""MCTF: multi-criteria token fusion with one-step-ahead attention (Lee, Choi, Kim, CVPR 2024).

"Multi-criteria Token Fusion with One-step-ahead Attention for Efficient Vision Transformers"
(official code: mlvlab/MCTF @ 2004da0, ``utils/mctf.py`` ``mctf`` / ``bipartite_soft_matching`` /
``merge_wavg``, ``models/modules/blocks.py`` ``Block_DEIT``, ``models/SA/MHSA.py``,
``models/deit.py``; evaluation scripts ``run/eval_deit_*_mctf*.sh``). Training-free inference,
in every merging block (the official scripts merge in every block but the first):

1. one-step-ahead attention: the block's attention probabilities ``A`` [B, H, T, T] are computed
   from ``norm1(x)`` of the ``T`` tokens entering the block (q and k only), with proportional
   attention (``log(size)`` added to the logits);
2. ``r`` tokens are fused away: ``r`` is the official count (``T - r < 10`` lowers it to
   ``T - 10``; a fraction ``r < 1`` means ``int((T - prefix) * r)``; at most half of the image
   tokens);
3. multi-criteria scores between A (even positions) and B (odd positions), on the block input
   ``x`` itself: similarity ``((cos + 1) / 2) ** (1 / tau_sim)``, informativeness
   ``(i_a * i_b) ** (1 / tau_info)`` with ``i = 1 / mean_{heads, queries} A`` normalised by its
   maximum, size ``(s_a * s_b) ** (1 / tau_size)`` with ``s = 1 / size`` normalised by its maximum;
   the score is their product (a criterion with tau 0 is left out);
4. bidirectional bipartite matching: the ``r // 2`` A tokens with the best B partner fuse into it;
   then the ``r - r // 2`` B tokens (fused ones included) with the best partner among the
   remaining A tokens fuse into it, on the same scores;
5. attentive fusion (official ``pooling_type`` 1): each token is weighted by
   ``w = mean_{heads, queries} A * size / max(size)``; ``x' = sum(w x) / sum(w)``, sizes add up;
   the attention matrix is fused the same way (keys summed, queries averaged with ``w``), and
   the block runs ``attention(fused A) @ v(norm1(x'))``, the projection and the MLP on the
   ``T - r`` fused tokens.

The output order is [prefix, remaining A tokens in position order, B tokens in descending
order of their second-direction score]. ``selection="random"``: the A-B scores are seeded
uniform draws; counts, matching rule and fusion stay the same.
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
from vitbench.measure.gmacs import vit_dims
from vitbench.methods.base import Conformance, TokenMethod, register
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

#: fusion kinds by the official ``pooling_type`` number: 0 size-weighted average, 1 attentive
#: (attention and size weighted, the official default), 2 maximum, 3 plain mean of this step.
FUSIONS = ("size", "attentive", "max", "mean")

#: ``one_step_ahead`` values: 0 fuse after the MLP with this block's attention, 1 one-step-ahead
#: attention fused with the tokens (official default), 2 "precise": attention computed again on
#: the fused tokens.
ONE_STEP_AHEAD = (0, 1, 2)

#: fewest tokens (prefix included) a merge may leave: the official ``if t - r < 10: r = t - 10``.
MIN_TOKENS = 10


def merge_count(tokens: int, prefix: int, r: float) -> int:
    """Tokens fused away in a block that ``tokens`` tokens (prefix included) enter.

    The official ``mctf``: ``r`` is lowered to ``tokens - 10`` when fewer than 10 tokens would
    remain, a fraction ``r < 1`` becomes ``int((tokens - prefix) * r)``, and at most half of the
    image tokens are fused. A result below 1 means no fusion (the official code fails on a
    negative count, which only inputs of fewer than 10 tokens reach).
    """
    if tokens - r < MIN_TOKENS:
        r = tokens - MIN_TOKENS
    count = int((tokens - prefix) * r) if r < 1 else int(r)
    return max(0, min(count, (tokens - prefix) // 2))


def active_blocks(depth: int, layers: tuple[int, ...]) -> frozenset[int]:
    """Blocks that fuse tokens: ``layers``, or every block but the first when empty (official scripts)."""
    return frozenset(layers) if layers else frozenset(range(1, depth))


def mctf_schedule(n0: int, prefix: int, depth: int, params: MCTFParams) -> tuple[list[int], list[int]]:
    """Tokens (prefix included) entering each block and leaving its fusion (= entering its MLP).

    With ``one_step_ahead=0`` the fusion follows the MLP, so the MLP sees the entering tokens.
    """
    active = active_blocks(depth, params.layers)
    enter, fused = [], []
    n = n0
    for i in range(depth):
        enter.append(n)
        if i in active:
            n -= merge_count(n, prefix, params.r)
        fused.append(n)
    return enter, fused


def mctf_block_macs(
    t: int, t2: int, dim: int, attn_dim: int, hidden: int, params: MCTFParams, matching: bool = True
) -> int:
    """Closed-form MACs of one block fusing ``t`` tokens into ``t2`` (``t2 == t``: no fusion).

    Counted as vitbench's counter and fvcore count them: LayerNorms 5 per element, every
    projection, ``q k^T``, ``attention v`` and, with ``matching``, the A-B similarity ``a b^T`` of
    the matching (on the block input, width ``dim``; scored selection only); element-wise work
    and the fusion itself are not counted.
    """
    ln = 5 * dim
    mlp = ln * t2 + 2 * t2 * dim * hidden
    if t2 == t:
        return ln * t + 4 * t * dim * attn_dim + 2 * t * t * attn_dim + mlp
    match = ((t + 1) // 2) * (t // 2) * dim if matching else 0
    if params.one_step_ahead == 1:  # q, k and logits on t; v, attention v and projection on t2
        return (
            ln * (t + t2)
            + 2 * t * dim * attn_dim
            + t * t * attn_dim
            + 2 * t2 * dim * attn_dim
            + t2 * t2 * attn_dim
            + match
            + mlp
        )
    if params.one_step_ahead == 2:  # q, k and logits on t (no grad), then the whole attention on t2
        return (
            ln * (t + t2)
            + 2 * t * dim * attn_dim
            + t * t * attn_dim
            + 4 * t2 * dim * attn_dim
            + 2 * t2 * t2 * attn_dim
            + match
            + mlp
        )
    # fusion after the MLP: the whole block on t
    return ln * t + 4 * t * dim * attn_dim + 2 * t * t * attn_dim + match + ln * t + 2 * t * dim * hidden


def mctf_macs(model: nn.Module, params: MCTFParams, matching: bool = True) -> int:
    """Closed-form MACs of the blocks of ``model`` under ``params`` (stem, final norm, head excluded).

    ``matching``: include the A-B similarity matmuls of scored selection.
    """
    dim, attn_dim, hidden, depth = vit_dims(model)
    enter, fused = mctf_schedule(input_tokens(model), prefix_tokens(model), depth, params)
    return sum(mctf_block_macs(t, t2, dim, attn_dim, hidden, params, matching) for t, t2 in zip(enter, fused))


@dataclasses.dataclass(frozen=True)
class MatchPlan:
    """Which tokens fuse into which, from the A-B scores of one block.

    Positions are indices within A (even positions of the sequence) or B (odd positions).

    Attributes:
        src_a: [B, r1] A tokens fused into B.
        dst_b: [B, r1] their B partners.
        keep_a: [B, Ta - r1] remaining A tokens, ascending (prefix A tokens first).
        src_b: [B, r2] B tokens fused into remaining A tokens (bidirectional only).
        dst_a: [B, r2] their partners, as positions in ``keep_a``.
        keep_b: [B, Tb - r2] remaining B tokens: the prefix B tokens, then descending second score.
        prefix: prefix tokens (never fused, first in the output in their order).
    """

    src_a: torch.Tensor
    dst_b: torch.Tensor
    keep_a: torch.Tensor
    src_b: torch.Tensor | None
    dst_a: torch.Tensor | None
    keep_b: torch.Tensor
    prefix: int


def match(scores: torch.Tensor, r: int, prefix: int, bidirection: bool) -> MatchPlan:
    """Bidirectional bipartite matching on A-B scores [B, Ta, Tb] (higher fuses first).

    The ``r1 = r // 2`` A tokens (``r`` without ``bidirection``) with the highest best score fuse
    into their best B token; then the ``r - r1`` B tokens with the highest best score among the
    remaining A tokens fuse into that A token (the official second direction reads the same
    scores). Prefix tokens (the first ``prefix`` positions) are excluded from both directions.
    """
    pa, pb = (prefix + 1) // 2, prefix // 2
    r1 = r // 2 if bidirection else r
    scores = scores.clone()
    if pa:
        scores[:, :pa, :] = -math.inf
    if pb:
        scores[:, :, :pb] = -math.inf
    best, partner = scores.max(dim=-1)  # [B, Ta]
    order = best.argsort(dim=-1, descending=True)
    src_a = order[:, :r1]
    dst_b = partner.gather(1, src_a)
    keep_a = order[:, r1:].sort(dim=1)[0]
    ntb = scores.shape[2]
    if not bidirection:
        keep_b = torch.arange(ntb, device=scores.device).expand(scores.shape[0], -1)
        return MatchPlan(src_a, dst_b, keep_a, None, None, keep_b, prefix)
    back = scores.gather(1, keep_a[..., None].expand(-1, -1, ntb)).transpose(1, 2)  # [B, Tb, Ta - r1]
    best2, partner2 = back[:, pb:].max(dim=-1)  # image B tokens only
    order2 = best2.sort(dim=-1, descending=True)[1] + pb
    src_b = order2[:, : r - r1]
    dst_a = partner2.gather(1, src_b - pb)
    head = torch.arange(pb, device=scores.device).expand(scores.shape[0], -1)
    keep_b = torch.cat([head, order2[:, r - r1 :]], dim=1)
    return MatchPlan(src_a, dst_b, keep_a, src_b, dst_a, keep_b, prefix)


def _index(idx: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``idx`` [B, n] viewed and expanded to index dim -2 of ``like`` [B, ..., N, C]."""
    shape = (idx.shape[0],) + (1,) * (like.dim() - 3) + (idx.shape[1], 1)
    return idx.view(shape).expand(*like.shape[:-2], idx.shape[1], like.shape[-1])


def merge_function(plan: MatchPlan) -> Merge:
    """``merge(x [B, ..., N, C], mode) -> [B, ..., N - r, C]`` fusing along dim -2 by ``mode``.

    ``mode`` is a ``scatter_reduce`` reduction (``sum``, ``amax``), the receiving token included.
    """

    def merge(x: torch.Tensor, mode: str = "sum") -> torch.Tensor:
        a, b = x[..., ::2, :], x[..., 1::2, :]
        b = b.scatter_reduce(-2, _index(plan.dst_b, b), a.gather(-2, _index(plan.src_a, a)), mode)
        a = a.gather(-2, _index(plan.keep_a, a))
        if plan.src_b is not None and plan.dst_a is not None:
            a = a.scatter_reduce(-2, _index(plan.dst_a, a), b.gather(-2, _index(plan.src_b, b)), mode)
        b = b.gather(-2, _index(plan.keep_b, b))
        pa, pb = (plan.prefix + 1) // 2, plan.prefix // 2
        head = [
            a[..., j // 2 : j // 2 + 1, :] if j % 2 == 0 else b[..., j // 2 : j // 2 + 1, :]
            for j in range(plan.prefix)
        ]
        return torch.cat([*head, a[..., pa:, :], b[..., pb:, :]], dim=-2)

    return merge


def criteria_scores(
    x: torch.Tensor, attn: torch.Tensor, size: torch.Tensor | None, params: MCTFParams
) -> torch.Tensor:
    """The multi-criteria A-B scores [B, Ta, Tb] (module docstring, step 3).

    Args:
        x: [B, T, C] the block input (the matching metric).
        attn: [B, H, T, T] attention probabilities of the block.
        size: [B, T, 1] token sizes (None: all 1, the size criterion is left out).
        params: the taus (0 leaves a criterion out).
    """
    m = x / x.norm(dim=-1, keepdim=True)
    a, b = m[..., ::2, :], m[..., 1::2, :]
    if params.tau_sim:
        scores = ((a @ b.transpose(-1, -2) + 1) / 2) ** (1 / params.tau_sim)
    else:
        scores = torch.ones(a.shape[0], a.shape[1], b.shape[1], dtype=x.dtype, device=x.device)
    if params.tau_info > 0:
        info = 1 / attn.mean(dim=(1, 2))
        info = info / info.max(1, keepdim=True)[0]  # [B, T]
        scores = scores * (info[:, ::2, None] * info[:, None, 1::2]) ** (1 / params.tau_info)
    if params.tau_size and size is not None:
        inv = 1 / size
        inv = inv / inv.max(1, keepdim=True)[0]  # [B, T, 1]
        scores = scores * (inv[:, ::2] * inv[:, 1::2].transpose(1, 2)) ** (1 / params.tau_size)
    return scores


@dataclasses.dataclass(frozen=True)
class Fused:
    """Result of one fusion: tokens [B, T', C], sizes [B, T', 1], fused attention or None."""

    x: torch.Tensor
    size: torch.Tensor
    attn: torch.Tensor | None


def fuse(
    merge: Merge, x: torch.Tensor, size: torch.Tensor | None, attn: torch.Tensor, fusion: str, with_attn: bool
) -> Fused:
    """Fuse tokens ``x`` [B, T, C] (and, ``with_attn``, the attention [B, H, T, T]) by ``fusion``.

    ``size`` [B, T, 1] (None: ones). Module docstring, step 5, for ``attentive``; ``size`` is
    the size-weighted average, ``max`` the element-wise maximum (attention: keys summed, queries
    maximised), ``mean`` the plain average of the tokens fused in this step.
    """
    if size is None:
        size = torch.ones_like(x[..., 0, None])
    new_size = merge(size, "sum")
    fused_attn: torch.Tensor | None = None
    keys = merge(attn[..., None], "sum").squeeze(-1) if with_attn else attn  # [B, H, T, T']
    if fusion == "attentive":
        rel = size / size.amax(dim=-2, keepdim=True)
        weight = attn.mean(dim=(1, 2))[..., None]  # [B, T, 1]
        norm = merge(weight * rel, "sum")
        if with_attn:
            fused_attn = merge(keys * weight[:, None] * rel[:, None], "sum") / norm[:, None]
        return Fused(merge(x * weight * rel, "sum") / norm, new_size, fused_attn)
    if fusion == "max":
        if with_attn:
            fused_attn = merge(keys, "amax")
        return Fused(merge(x, "amax"), new_size, fused_attn)
    if fusion == "mean":
        count = merge(torch.ones_like(size), "sum")
        if with_attn:
            fused_attn = merge(keys, "sum") / count[:, None]
        return Fused(merge(x, "sum") / count, new_size, fused_attn)
    if with_attn:
        fused_attn = merge(keys * size[:, None], "sum") / new_size[:, None]
    return Fused(merge(x * size, "sum") / new_size, new_size, fused_attn)


def _heads(t: torch.Tensor, attn: Any) -> torch.Tensor:
    """[B, N, H * d] -> [B, H, N, d]."""
    b, n, _ = t.shape
    return t.reshape(b, n, attn.num_heads, attn.head_dim).transpose(1, 2)


def attention_probs(attn: Any, xn: torch.Tensor, size: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention [B, H, N, N] of timm's ``attn`` on normalised tokens ``xn`` [B, N, C].

    Only q and k are projected (the official ``MHSA`` with ``_attn=True``); ``q_norm``/``k_norm``
    as timm applies them; proportional attention adds ``log(size)`` [B, N, 1] to the logits.
    """
    w, bias = attn.qkv.weight, attn.qkv.bias
    d = attn.num_heads * attn.head_dim
    qk = F.linear(xn, w[: 2 * d], None if bias is None else bias[: 2 * d])
    q, k = attn.q_norm(_heads(qk[..., :d], attn)), attn.k_norm(_heads(qk[..., d:], attn))
    logits = (q @ k.transpose(-2, -1)) * attn.scale
    if size is not None:
        logits = logits + size.log()[:, None, None, :, 0].to(logits.dtype)
    return logits.softmax(dim=-1)


def attend(attn: Any, xn: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Output of timm's ``attn`` for probabilities [B, H, N, N] and tokens ``xn`` [B, N, C]."""
    w, bias = attn.qkv.weight, attn.qkv.bias
    d = attn.num_heads * attn.head_dim
    v = _heads(F.linear(xn, w[2 * d :], None if bias is None else bias[2 * d :]), attn)
    out = (attn.attn_drop(probs) @ v).transpose(1, 2).reshape(xn.shape[0], xn.shape[1], d)
    out = attn.norm(out)
    gate = getattr(attn, "gate", None)
    if gate is not None:
        out = out * gate(xn).sigmoid()
    return attn.proj_drop(attn.proj(out))


class MCTFMixin(CountingMixin):
    """MCTF block.

    Modifications to timm's ``Block.forward``:
        - proportional attention: after the first fusion, ``log(size)`` is added to the attention
          logits (timm's fused attention with an additive ``attn_mask`` in blocks that do not fuse);
        - in a fusing block (``one_step_ahead=1``): the attention probabilities of the entering
          tokens are computed explicitly (q, k only), tokens and attention are fused
          (:func:`criteria_scores`, :func:`match`, :func:`fuse`), and the block continues on the
          fused tokens with the fused attention and ``v`` of the fused tokens;
          ``one_step_ahead=2`` computes the attention again on the fused tokens;
          ``one_step_ahead=0`` fuses after the MLP with the block's own attention;
        - prefix tokens are never fused; ``ls1``/``ls2`` (LayerScale) are kept.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: D102
        st: Any = self._vb_enter(x)
        if attn_mask is not None:
            raise VitbenchError(f"'{st.method}' does not support an attention mask; run without attn_mask")
        blk: Any = self
        i, p = self._vb_index, st.prefix
        size = st.extra.get("size")
        r = merge_count(x.shape[1], p, st.params.r) if i in st.active else 0
        if r == 0:
            bias = None if size is None else size.log()[:, None, None, :, 0].to(x.dtype)
            x = x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x), attn_mask=bias, **kw)))
            return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        ahead = st.params.one_step_ahead
        xn = blk.norm1(x)
        probs = attention_probs(blk.attn, xn, size)
        if ahead == 0:
            x = x + blk.drop_path1(blk.ls1(attend(blk.attn, xn, probs)))
            x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        fused = fuse(self._plan(st, i, x, probs, size, r), x, size, probs, st.params.fusion, ahead == 1)
        st.extra["size"] = fused.size
        if ahead == 0:
            return fused.x
        x = fused.x
        if ahead == 1:
            assert fused.attn is not None
            out = attend(blk.attn, blk.norm1(x), fused.attn)
        else:
            xn = blk.norm1(x)
            out = attend(blk.attn, xn, attention_probs(blk.attn, xn, fused.size))
        x = x + blk.drop_path1(blk.ls1(out))
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

    def _plan(
        self, st: Any, i: int, x: torch.Tensor, probs: torch.Tensor, size: torch.Tensor | None, r: int
    ) -> Merge:
        with torch.no_grad():
            if st.selection == "scored":
                scores = criteria_scores(x, probs, size, st.params)
            else:
                n = x.shape[1]
                scores = st.uniform(i, ((n + 1) // 2, n // 2), x.float())
            return merge_function(match(scores, r, st.prefix, st.params.bidirection))


@dataclasses.dataclass
class MCTFState(ForwardState):
    """:class:`ForwardState` plus the fusing blocks."""

    active: frozenset[int] = frozenset()


@dataclasses.dataclass(frozen=True)
class MCTFParams:
    """MCTF native parameters (official ``mctf_type``, ``activate_layer`` and ``r_evals``).

    Attributes:
        r: tokens fused away per fusing block (official ``r_eval``): an integer count, or a
            fraction ``0 < r < 1`` of the image tokens entering the block (MCTF-Fast: 0.35);
            0 fuses nothing.
        layers: the fusing blocks (official ``activate_layer``); empty: every block but the first
            (the official scripts' ``[1, ..., 11]``; MCTF-Fast: ``(3, 6, 9)``).
        tau_sim, tau_info, tau_size: temperatures of the similarity, informativeness and size
            criteria (official 1, 20, 40); 0 leaves a criterion out.
        bidirection: bidirectional bipartite matching (official 1).
        one_step_ahead: 1 one-step-ahead attention (official), 2 attention computed again after
            the fusion, 0 fusion after the MLP.
        fusion: ``attentive`` (official ``pooling_type`` 1), ``size``, ``max`` or ``mean``.
    """

    r: float = 16.0
    layers: tuple[int, ...] = ()
    tau_sim: float = 1.0
    tau_info: float = 20.0
    tau_size: float = 40.0
    bidirection: bool = True
    one_step_ahead: int = 1
    fusion: str = "attentive"

    def __post_init__(self) -> None:
        if self.r < 0 or (self.r >= 1 and self.r != int(self.r)):
            raise ValueError(
                f"r={self.r} is neither a token count (integer >= 0) nor a fraction in (0, 1); "
                "use e.g. r=16 or r=0.35"
            )
        if any(v < 0 for v in self.layers) or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers {self.layers} must be distinct block indices >= 0, e.g. layers=[3,6,9]")
        if min(self.tau_sim, self.tau_info, self.tau_size) < 0:
            raise ValueError("tau_sim, tau_info and tau_size must be >= 0 (0 leaves a criterion out)")
        if self.one_step_ahead not in ONE_STEP_AHEAD:
            raise ValueError(f"one_step_ahead={self.one_step_ahead} is unknown; use 0, 1 (official) or 2")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion '{self.fusion}' is unknown; use one of {', '.join(FUSIONS)}")


#: the largest r :meth:`MCTF.map_keep_ratio` tries (more than half of DeiT's 196 patches is never fused)
R_MAX = 98


@register
class MCTF(TokenMethod):
    """MCTF (CVPR'24): multi-criteria bidirectional token fusion with one-step-ahead attention."""

    name = "mctf"
    Params = MCTFParams
    requirements = Requirements(
        vit_blocks=True,
        class_token_head=True,
        uses=(
            "fused tokens carry sizes that only a class-token head ignores "
            "(the official code has DeiT's class-token head only)"
        ),
    )
    knob: ClassVar[str] = "r"
    summary = (
        "fuse r tokens per block by similarity, informativeness and size, bidirectional matching, "
        "one-step-ahead attention (Lee et al. 2024)"
    )
    #: fusing blocks fuse inside their attention (prefix tokens differ from the first fusing block
    #: on); the A-B similarity matmuls of the matching are the overhead beyond :meth:`blocks_macs`
    conformance = Conformance(changes_attention=True, fuses_in_attention=True, gmacs_overhead=0.02)

    @classmethod
    def _check(cls, model: nn.Module, params: MCTFParams) -> int:
        depth = len(check_vit(model, cls.name))
        bad = [v for v in params.layers if v >= depth]
        if bad:
            raise VitbenchError(
                f"mctf layers {bad} do not exist: the model has {depth} blocks (0..{depth - 1})"
            )
        return depth

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """The integer r (default layers) whose closed-form GMACs are closest to EViT's at the keep ratio."""
        dim, attn_dim, hidden, depth = vit_dims(model)
        n0, p = input_tokens(model), prefix_tokens(model)
        if keep_ratio >= 1.0:
            return {"r": 0}
        target = evit_macs(model, keep_ratio)
        best, best_err = 0, math.inf
        for r in range(0, (n0 - p) // 2 + 1):
            base = MCTFParams(r=r)
            enter, fused = mctf_schedule(n0, p, depth, base)
            macs = sum(mctf_block_macs(t, t2, dim, attn_dim, hidden, base) for t, t2 in zip(enter, fused))
            err = abs(macs - target)
            if err < best_err:
                best, best_err = r, err
        return {"r": best}

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch every block with :class:`MCTFMixin`."""
        depth = cls._check(model, params)
        st = MCTFState(cls.name, prefix_tokens(model), selection, seed, depth, params=params)
        st.active = active_blocks(depth, params.layers) if params.r > 0 else frozenset()
        return patch_blocks(model, st, lambda i: MCTFMixin)

    @classmethod
    def blocks_macs(cls, model: nn.Module, params: Any) -> int:
        """MCTF's closed form of the blocks without the matching (:func:`mctf_macs`)."""
        return mctf_macs(model, params, matching=False)

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block (fusion inside a block counts from the next block on)."""
        depth = cls._check(model, params)
        enter, _ = mctf_schedule(input_tokens(model), prefix_tokens(model), depth, params)
        return enter


__all__ = [
    "FUSIONS",
    "MCTF",
    "MCTFMixin",
    "MCTFParams",
    "MCTFState",
    "MatchPlan",
    "active_blocks",
    "attend",
    "attention_probs",
    "criteria_scores",
    "fuse",
    "match",
    "mctf_block_macs",
    "mctf_macs",
    "mctf_schedule",
    "merge_count",
    "merge_function",
]
