"""PPT: token pruning and pooling, chosen per image and per block (Wu et al., arXiv 2310.01812).

"PPT: Token Pruning and Pooling for Efficient Vision Transformers" (official code:
xjwu1024/PPT, ``ppt_deit.py`` ``PPTAttention``/``pp_block_adaptive``/``apply_patch``, ``tome.py``
``bipartite_soft_matching``/``merge_wavg``/``parse_r``; the evaluation command of its README:
``--r_tokens 50 --pp_loc_list 3 6 9 --threshold 7e-5`` on DeiT-S). Training-free. In each PPT
block (blocks 3, 6 and 9 of DeiT-S), between the attention residual and the MLP, with ``N``
tokens entering the block and ``p`` prefix tokens, ``r' = min(r, (N - p) // 2)`` tokens go:

1. significance of image token j: ``s_j = sum_h A_h[CLS, j] * ||v_j||_2`` (``A`` the block's
   attention, with the proportional-attention bias log(size), ``||v_j||`` the norm of the value
   over all heads), normalised to sum 1 over the image tokens (the official ATS-style
   ``score_assignment_step``);
2. the redundancy criterion: the unbiased variance of ``s`` over the image tokens; an image whose
   variance is below ``threshold`` is *pooled*, the others are *pruned* (per image, per block);
3. pooling: ToMe's bipartite soft matching on the head-mean keys (tokens alternate into A and B,
   each A token's most similar B token by cosine similarity, the ``r'`` best-matched A tokens are
   averaged into their partners weighted by token size, sizes add up; output [prefix, unmerged A
   in order, B]);
4. pruning: the ``r'`` image tokens with the lowest significance are dropped; the kept image
   tokens follow the prefix tokens in descending significance (the official sort), their sizes
   kept;
5. proportional attention: from the first PPT block on every block adds log(size) to its
   attention logits (passed to timm's fused attention as ``attn_mask``).

Every image loses ``r'`` tokens either way, so the token counts per block are the same for every
image; what varies per image is the operation, and with it the MACs of the matching (the A-B
similarity matrix of pooled images). The handle reports each image's MACs
(:meth:`PPTHandle.image_costs`); records keep their mean and p10/p50/p90.

Batching: as the official block, the images of a batch are split by their decision into a
pooled and a pruned sub-batch, each reduced on its own, and put back in batch order; both have
``N - r'`` tokens, so nothing is padded and every image's result is that of the image alone.

``selection="random"``: the variance rule still decides pooling or pruning on the real
significance (the operation of an image is the method's schedule, as the counts of a stage
method); which tokens a pruned image drops (seeded uniform scores) and which A tokens a pooled
image merges into which B tokens (uniform edge scores, uniform partners) are random.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.measure.gmacs import vit_dims, vit_schedule_macs
from vitbench.methods.base import Conformance, TokenMethod, register
from vitbench.methods.patching.patch import (
    CountingMixin,
    ForwardState,
    Handle,
    ImageCosts,
    check_vit,
    input_tokens,
    patch_blocks,
    prefix_tokens,
    split_qkv,
)
from vitbench.methods.patching.stages import evit_macs, stage_blocks
from vitbench.methods.requirements import Requirements

Merge = Callable[[torch.Tensor, str], torch.Tensor]

#: The official pruning sort gives the class token the score 2 (image scores sum to 1), so the
#: prefix always sorts first.
PREFIX_SCORE = 2.0


def ppt_blocks(depth: int, blocks: tuple[int, ...]) -> tuple[int, ...]:
    """The PPT blocks: ``blocks``, or ``depth // 4``, ``depth // 2``, ``3 * depth // 4`` (3, 6, 9 of 12).

    Raises:
        VitbenchError: a block index beyond the model's depth.
    """
    chosen = tuple(sorted(set(blocks))) if blocks else tuple(stage_blocks(depth))
    beyond = [b for b in chosen if b >= depth]
    if beyond:
        raise VitbenchError(
            f"PPT blocks {beyond} are beyond the model's {depth} blocks; use indices < {depth}"
        )
    return chosen


def reduced(n: int, r: int, prefix: int) -> int:
    """Tokens a PPT block removes from ``n`` (prefix included): ``min(r, (n - prefix) // 2)``."""
    return max(0, min(r, (n - prefix) // 2))


def ppt_schedule(
    n0: int, prefix: int, depth: int, blocks: tuple[int, ...], r: int
) -> tuple[list[int], list[int]]:
    """Tokens (prefix included) entering the attention and the MLP of each block."""
    attn, mlp = [], []
    n = n0
    for i in range(depth):
        attn.append(n)
        if i in blocks:
            n -= reduced(n, r, prefix)
        mlp.append(n)
    return attn, mlp


def significance(
    qkv: torch.Tensor, attn: Any, prefix: int, size: torch.Tensor | None, prop_attn: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPT significance of the image tokens and the head-mean keys.

    Args:
        qkv: [B, N, 3 * H * d] captured ``attn.qkv`` output of the block.
        attn: the block's timm ``Attention`` (heads, scale, q/k norms).
        prefix: prefix tokens (token 0 is the class token).
        size: [B, N, 1] token sizes, or ``None`` (all 1).
        prop_attn: add log(size) to the class token's attention logits (proportional attention).

    Returns:
        ``(s, metric)``: ``s`` [B, N - prefix] float32, ``sum_h softmax(q_0 k^T * scale + log size)_j
        * ||v_j||`` normalised to sum 1 over the image tokens; ``metric`` [B, N, d] the keys
        averaged over heads (the official ``k.mean(1)``).
    """
    q, k, v = split_qkv(qkv, attn)  # [B, H, N, d]
    logits = (q[:, :, :1] @ k.transpose(-2, -1)) * attn.scale  # [B, H, 1, N]
    if prop_attn and size is not None:
        logits = logits + size.log()[:, None, None, :, 0].to(logits.dtype)
    cls_row = logits.softmax(dim=-1)[:, :, 0].sum(dim=1)  # [B, N]
    b, h, n, d = v.shape
    v_norm = torch.linalg.norm(v.transpose(1, 2).reshape(b, n, h * d), ord=2, dim=2)
    s = (cls_row * v_norm)[:, prefix:].float()
    return s / s.sum(dim=1, keepdim=True), k.mean(dim=1)


@dataclasses.dataclass(frozen=True)
class PoolPlan:
    """A bipartite merge of ``r`` tokens (positions among all N tokens of the block).

    Attributes:
        unm: [B, n_a - r] A-side positions (even) kept unmerged, in ascending order.
        src: [B, r] A-side positions merged away.
        dst: [B, r] for each ``src`` token, the index of its B partner among the B tokens.
    """

    unm: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor


def plan_pool(
    metric: torch.Tensor, r: int, prefix: int, random_scores: torch.Tensor | None = None
) -> PoolPlan:
    """ToMe's bipartite soft matching as the official PPT ``tome.py`` runs it.

    Args:
        metric: [B, N, d] head-mean keys.
        r: tokens to merge away, ``1 <= r <= (N - prefix) // 2``.
        prefix: leading tokens never merged away nor merged into.
        random_scores: random selection: [B, n_a, 2] uniform numbers (edge score, partner draw)
            replacing the cosine similarities; partners are uniform over non-prefix B tokens.

    Returns:
        The plan (A tokens are the even positions, B tokens the odd ones).
    """
    pa, pb = (prefix + 1) // 2, prefix // 2
    with torch.no_grad():
        if random_scores is None:
            m = metric / metric.norm(dim=-1, keepdim=True)
            scores = m[..., ::2, :] @ m[..., 1::2, :].transpose(-1, -2)  # [B, n_a, n_b]
            if pa:
                scores[..., :pa, :] = -math.inf
            if pb:
                scores[..., :, :pb] = -math.inf
            node_max, node_idx = scores.max(dim=-1)
        else:
            n_b = metric.shape[1] // 2
            node_max = random_scores[..., 0].clone()
            node_idx = pb + (random_scores[..., 1] * (n_b - pb)).long().clamp_(max=n_b - pb - 1)
            if pa:
                node_max[..., :pa] = -math.inf
        edge = node_max.argsort(dim=-1, descending=True)
        src = edge[..., :r]
        unm = edge[..., r:]
        if prefix:
            unm = unm.sort(dim=-1)[0]  # the prefix first, the image tokens in order
        return PoolPlan(unm, src, node_idx.gather(1, src))


def pool_merge(plan: PoolPlan, prefix: int) -> Merge:
    """``merge(x [B, N, C], mode) -> [B, N - r, C]``: [prefix, unmerged A, B with merges reduced in]."""
    pa, pb = (prefix + 1) // 2, prefix // 2

    def merge(x: torch.Tensor, mode: str) -> torch.Tensor:
        a, b = x[..., ::2, :], x[..., 1::2, :]
        c = x.shape[-1]
        unm = a.gather(1, plan.unm[..., None].expand(-1, -1, c))
        src = a.gather(1, plan.src[..., None].expand(-1, -1, c))
        dst = b.scatter_reduce(1, plan.dst[..., None].expand(-1, -1, c), src, reduce=mode)
        if not prefix:
            return torch.cat([unm, dst], dim=1)
        head = [
            unm[:, j // 2 : j // 2 + 1] if j % 2 == 0 else dst[:, j // 2 : j // 2 + 1] for j in range(prefix)
        ]
        return torch.cat([*head, unm[:, pa:], dst[:, pb:]], dim=1)

    return merge


def prune_index(ranking: torch.Tensor, r: int, prefix: int) -> torch.Tensor:
    """Token positions [B, N - r] a pruned image keeps: the prefix, then image tokens by descending rank.

    Args:
        ranking: [B, N - prefix] scores of the image tokens (higher is kept).
        r: image tokens dropped.
        prefix: prefix tokens (kept first, in order: the official class token sorts first with
            its score 2).
    """
    b, n = ranking.shape
    order = ranking.sort(dim=1, descending=True, stable=True).indices[:, : n - r] + prefix
    head = torch.arange(prefix, device=ranking.device)[None].expand(b, -1)
    return torch.cat([head, order], dim=1)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


@dataclasses.dataclass
class PPTState(ForwardState):
    """:class:`ForwardState` plus the PPT blocks, the MAC constants and the per-image costs.

    Attributes:
        pp: the PPT blocks.
        dims: ``(dim, attn_dim, mlp hidden, head_dim)`` for the per-image MACs.
        final_norm: MACs per token of the final LayerNorm (0 without one).
        trace: keep ``extra["source"]`` [B, N, N0], which input tokens each token holds (the
            official ``trace_source``; for tests and visualisation).
        images: per forward: ``(sample ids, tokens entering each block [depth], tokens entering
            each MLP [depth], pooled [B, number of PPT blocks])``.
    """

    pp: tuple[int, ...] = ()
    dims: tuple[int, int, int, int] = (0, 0, 0, 0)
    final_norm: int = 0
    trace: bool = False
    images: list[tuple[torch.Tensor, list[int], list[int], torch.Tensor]] = dataclasses.field(
        default_factory=list
    )


class PPTHandle(Handle):
    """Handle of PPT: per-image MACs (:meth:`image_costs`); the token counts are the same for every image.

    ``token_sizes`` is ``None``: PPT's sizes (``state.extra["sizes"]``) do not add up to the patches
    once an image is pruned (pruned tokens are gone, not merged).
    """

    def image_costs(self) -> ImageCosts | None:
        """Per-image counts and MACs of the forwards since the last call (``None`` when none ran).

        MACs of an image: its blocks (attention on the tokens entering each block, projection,
        norm2 and MLP on the tokens after its reduction), the class token's attention row of each
        reducing PPT block (``N * attn_dim``), the A-B similarity matrix of each block that pools
        it (``ceil(N / 2) * floor(N / 2) * head_dim``, scored selection only) and the final norm.
        """
        st: Any = self.state
        if not st.images:
            return None
        dim, attn_dim, hidden, head_dim = st.dims
        ids, tokens, macs = [], [], []
        for sid, n_attn, n_mlp, pooled in st.images:
            common = vit_schedule_macs(n_attn, n_mlp, dim, attn_dim, hidden) + st.final_norm * n_mlp[-1]
            match = torch.zeros(len(sid), dtype=torch.int64)
            for j, i in enumerate(st.pp):
                n = n_attn[i]
                if n_mlp[i] < n:
                    common += n * attn_dim
                    if st.selection == "scored":
                        match += pooled[:, j].to(torch.int64) * (((n + 1) // 2) * (n // 2) * head_dim)
            ids.append(sid)
            tokens.append(torch.tensor(n_attn, dtype=torch.int64)[None].expand(len(sid), -1))
            macs.append(common + match)
        st.images.clear()
        return ImageCosts(torch.cat(ids), torch.cat(tokens), torch.cat(macs))


def ppt_reduce(
    blk: Any, x: torch.Tensor, st: Any, i: int, r: int, qkv: torch.Tensor, size: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block ``i``'s reduction of ``x`` [B, N, C] (after the attention residual) by ``r`` tokens.

    Returns:
        ``(x [B, N - r, C], sizes [B, N - r, 1], pooled [B] bool)``.
    """
    p, params = st.prefix, st.params
    b, n, c = x.shape
    s, metric = significance(qkv, blk.attn, p, size, params.prop_attn)
    pooled = s.var(dim=1) < params.threshold  # the official criterion, per image
    if size is None:
        size = torch.ones_like(x[..., :1])
    random = st.selection == "random"
    u = st.uniform(i, (n, 2), x.float()) if random else None  # pooling: [B, n_a, 2]; pruning: [B, n - p]
    out_x = x.new_empty(b, n - r, c)
    out_size = size.new_empty(b, n - r, 1)
    source = st.extra.get("source")
    out_source = source.new_empty(b, n - r, source.shape[-1]) if source is not None else None
    for rows, pool in ((pooled.nonzero()[:, 0], True), ((~pooled).nonzero()[:, 0], False)):
        if rows.numel() == 0:
            continue
        whole = rows.numel() == b
        xs, ss = (x, size) if whole else (x[rows], size[rows])
        src_s = None if source is None else (source if whole else source[rows])
        if pool:
            ms = metric if whole else metric[rows]
            draws = None
            if u is not None:
                draws = (u if whole else u[rows])[:, : (n + 1) // 2]
            merge = pool_merge(plan_pool(ms, r, p, draws), p)
            xs = merge(xs * ss, "sum")
            ss = merge(ss, "sum")
            xs = xs / ss
            if src_s is not None:
                src_s = merge(src_s, "amax")
        else:
            ranking = s if whole else s[rows]
            if u is not None:
                ranking = (u if whole else u[rows])[:, p:, 0]
            keep = prune_index(ranking, r, p)
            xs, ss = _take(xs, keep), _take(ss, keep)
            if src_s is not None:
                src_s = _take(src_s, keep)
        if whole:
            out_x, out_size, out_source = xs, ss, src_s
        else:
            out_x[rows], out_size[rows] = xs, ss
            if out_source is not None and src_s is not None:
                out_source[rows] = src_s
    if out_source is not None:
        st.extra["source"] = out_source
    return out_x, out_size, pooled


class PPTMixin(CountingMixin):
    """PPT block (every block: proportional attention after the first reduction; PPT blocks reduce).

    Modifications to timm's ``Block.forward``:
        - proportional attention: once a PPT block has reduced, log(token size) [B, 1, 1, N] is
          passed to timm's attention as an additive ``attn_mask`` (the official blocks add it to
          their explicit logits);
        - in PPT blocks, between the attention residual and the MLP, :func:`ppt_reduce` pools or
          prunes ``min(r, (N - prefix) // 2)`` tokens per image; the significance needs only the
          class token's attention row, computed beside timm's fused attention from the captured
          qkv (with q/k norms);
        - prefix tokens (CLS, distillation, registers) are never pooled or pruned; an external
          ``attn_mask`` is not supported;
        - the official blocks have no LayerScale; here ``ls1``/``ls2`` are kept.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: D102
        st: Any = self._vb_enter(x)
        if attn_mask is not None:
            raise VitbenchError(f"'{st.method}' does not support an attention mask; run without attn_mask")
        blk: Any = self
        i = self._vb_index
        if i == 0:
            st.extra["mlp"] = [0] * st.depth
            st.extra["pooled"] = []
            if st.trace:
                st.extra["source"] = torch.eye(x.shape[1], device=x.device, dtype=x.dtype)[None].expand(
                    x.shape[0], -1, -1
                )
        # without proportional attention the official PPT block weights every merge by sizes of 1
        # (it passes ones, not the tracked sizes, to merge_wavg)
        size = st.extra.get("sizes") if st.params.prop_attn else None
        bias = size.log()[:, None, None, :, 0].to(x.dtype) if size is not None else None  # [B, 1, 1, N]
        x = x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x), attn_mask=bias, **kw)))
        qkv = st.qkv.pop(i, None)
        r = reduced(x.shape[1], st.params.r, st.prefix) if i in st.pp else 0
        if r > 0:
            assert qkv is not None
            x, st.extra["sizes"], pooled = ppt_reduce(blk, x, st, i, r, qkv, size)
            st.extra["pooled"].append(pooled.cpu())
        elif i in st.pp:
            st.extra["pooled"].append(torch.zeros(x.shape[0], dtype=torch.bool))
        st.extra["mlp"][i] = x.shape[1]
        x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        if i == st.depth - 1:
            pooled_all = (
                torch.stack(st.extra["pooled"], dim=1) if st.extra["pooled"] else torch.zeros(x.shape[0], 0)
            )
            st.images.append((st._ids.detach().cpu(), list(st.tokens_in), list(st.extra["mlp"]), pooled_all))
        return x


@dataclasses.dataclass(frozen=True)
class PPTParams:
    """PPT native parameters (the official command-line arguments).

    Attributes:
        r: tokens each PPT block removes (``--r_tokens``; clipped per block to
            ``(N - prefix) // 2``, as the official block clips it to ``(N - 1) // 2``); 0: none.
        blocks: the PPT blocks (``--pp_loc_list``); empty: depth/4, depth/2, 3*depth/4 (3, 6, 9).
        threshold: pool an image when the variance of its significance is below this
            (``--threshold``), else prune it.
        prop_attn: proportional attention (official default on). Off, as the official block, the
            merges of every PPT block weight its tokens equally (sizes are not carried over).
    """

    r: int = 50
    blocks: tuple[int, ...] = ()
    threshold: float = 7e-5
    prop_attn: bool = True

    def __post_init__(self) -> None:
        if self.r < 0:
            raise ValueError(f"r must be >= 0, got r={self.r}")
        if any(b < 0 for b in self.blocks):
            raise ValueError(f"blocks {list(self.blocks)} has a negative index; give block indices from 0")
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"threshold {self.threshold} must be a finite number >= 0, e.g. 7e-5")


@register
class PPT(TokenMethod):
    """PPT (arXiv'23): per image and block, prune by CLS-attention significance or pool by matching."""

    name = "ppt"
    Params = PPTParams
    knob: ClassVar[str] = "r"
    requirements = Requirements(
        vit_blocks=True,
        class_token=True,
        class_token_head=True,
        attn_mask=True,
        uses=(
            "it scores image tokens by the class token's attention row, and its pooled tokens carry "
            "sizes that only a class-token head ignores"
        ),
    )
    summary = (
        "per image and block: prune by CLS-attention x value-norm or pool by bipartite matching, "
        "chosen by score variance (Wu et al. 2023)"
    )
    #: adaptive: the operation (and the matching MACs) varies per image; the counts do not.
    #: changes_attention: proportional attention after the first reduction
    conformance = Conformance(adaptive=True, changes_attention=True)

    @classmethod
    def _check(cls, model: nn.Module, params: PPTParams) -> tuple[int, ...]:
        """The PPT blocks of ``model``; refuses an ``r`` that no block can realise."""
        depth = len(check_vit(model, cls.name))
        blocks = ppt_blocks(depth, params.blocks)
        n0, p = input_tokens(model), prefix_tokens(model)
        most = (n0 - p) // 2
        if params.r > most:
            arch = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
            raise VitbenchError(
                f"ppt r={params.r} cannot be realised on {arch}: a block removes at most half of its "
                f"{n0 - p} image tokens ({most}); use r <= {most}"
            )
        return blocks

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """The ``r`` (default blocks) whose GMACs are closest to EViT's at the same keep ratio; 1.0 -> 0."""
        dim, attn_dim, hidden, depth = vit_dims(model)
        n0, p = input_tokens(model), prefix_tokens(model)
        target = evit_macs(model, keep_ratio)
        blocks = ppt_blocks(depth, ())
        best, best_err = 0, math.inf
        for r in range((n0 - p) // 2 + 1):  # ties keep the smaller r
            pa, pm = ppt_schedule(n0, p, depth, blocks, r)
            err = abs(vit_schedule_macs(pa, pm, dim, attn_dim, hidden) - target)
            if err < best_err:
                best, best_err = r, err
        return {"r": best}

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch every block with :class:`PPTMixin`; capture qkv in the PPT blocks."""
        blocks = cls._check(model, params)
        depth = len(check_vit(model, cls.name))
        st = PPTState(cls.name, prefix_tokens(model), selection, seed, depth, params=params)
        st.tokens = input_tokens(model)  # the counts follow this input's tokens
        st.pp = blocks
        dim, attn_dim, hidden, _ = vit_dims(model)
        first: Any = model.blocks[0]  # type: ignore[index]
        st.dims = (dim, attn_dim, hidden, int(first.attn.head_dim))
        norm = getattr(model, "norm", None)  # runs on the last block's tokens
        if isinstance(norm, nn.LayerNorm):
            st.final_norm = (5 if norm.elementwise_affine else 4) * dim
        capture = set(blocks) if params.r > 0 else set()
        return patch_blocks(model, st, lambda i: PPTMixin, capture, handle_cls=PPTHandle)

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block (the same for every image)."""
        blocks = cls._check(model, params)
        depth = len(check_vit(model, cls.name))
        attn, _ = ppt_schedule(input_tokens(model), prefix_tokens(model), depth, blocks, params.r)
        return attn


__all__ = [
    "PPT",
    "PPTHandle",
    "PPTMixin",
    "PPTParams",
    "PPTState",
    "PoolPlan",
    "plan_pool",
    "pool_merge",
    "ppt_blocks",
    "ppt_reduce",
    "ppt_schedule",
    "prune_index",
    "reduced",
    "significance",
]
