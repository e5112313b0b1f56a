"""ToMe: token merging by bipartite soft matching (Bolya et al., ICLR 2023).

In every block, between the attention residual and the MLP, ``r`` tokens are merged away:
tokens alternate into sets A (even positions) and B (odd positions); each A token finds its most
similar B token by cosine similarity of the head-mean keys; the ``r`` A tokens with the highest
similarity are averaged into their B partners weighted by token size; sizes add up. Attention
is proportional: log(size) is added to the attention logits, passed to timm's own attention
as an additive ``attn_mask`` so the fused kernel stays in use. Prefix tokens are protected
(an A-side prefix token is never merged away, a B-side prefix token never receives a merge),
which reproduces the official handling of CLS and distillation tokens. On a model that
averages its tokens (``global_pool='avg'``, with or without a class token) the average weights
every token by its size, as the official code pools MAE's models (``tome/patch/mae.py``), so
the pooled feature is the mean over the original patches; max and attention pooling cannot be
rebuilt from merged tokens and are refused. Official code: facebookresearch/ToMe
(``tome/merge.py``, ``tome/patch/timm.py``, ``tome/patch/mae.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch
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


def bipartite_soft_matching(
    metric: torch.Tensor, r: int, prefix: int, random_scores: Callable[[int, int], tuple] | None = None
) -> Merge:
    """Plan a merge of ``r`` tokens of ``metric`` [B, N, d] and return the function applying it.

    Args:
        metric: [B, N, d] similarity features (head-mean keys).
        r: tokens to remove (already clipped to (N - prefix) // 2).
        prefix: leading tokens that are never merged away nor merged into.
        random_scores: for random selection, ``(n_a, n_b) -> (node_max [B, n_a], node_idx [B, n_a])``
            replacing the similarity-based best match.

    Returns:
        ``merge(x [B, N, C], mode) -> [B, N - r, C]`` with order [prefix (original order),
        unmerged A (original order), B].
    """
    pa, pb = (prefix + 1) // 2, prefix // 2
    with torch.no_grad():
        n_a, n_b = (metric.shape[1] + 1) // 2, metric.shape[1] // 2
        if random_scores is None:
            metric = metric / metric.norm(dim=-1, keepdim=True)
            a, b = metric[..., ::2, :], metric[..., 1::2, :]
            scores = a @ b.transpose(-1, -2)  # [B, n_a, n_b]
            if pa:
                scores[..., :pa, :] = -float("inf")
            if pb:
                scores[..., :, :pb] = -float("inf")
            node_max, node_idx = scores.max(dim=-1)  # [B, n_a]
        else:
            node_max, node_idx = random_scores(n_a, n_b)
            if pa:
                node_max[..., :pa] = -float("inf")
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]  # [B, n_a, 1]
        unm_idx = edge_idx[..., r:, :]
        src_idx = edge_idx[..., :r, :]
        dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)
        if prefix:
            unm_idx = unm_idx.sort(dim=1)[0]  # keeps prefix tokens first, image tokens in order

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        src, dst = x[..., ::2, :], x[..., 1::2, :]
        bsz, t1, c = src.shape
        unm = src.gather(dim=-2, index=unm_idx.expand(bsz, t1 - r, c))
        src = src.gather(dim=-2, index=src_idx.expand(bsz, r, c))
        dst = dst.scatter_reduce(-2, dst_idx.expand(bsz, r, c), src, reduce=mode)
        if not prefix:
            return torch.cat([unm, dst], dim=1)
        head = [
            unm[:, j // 2 : j // 2 + 1] if j % 2 == 0 else dst[:, j // 2 : j // 2 + 1] for j in range(prefix)
        ]
        return torch.cat([*head, unm[:, pa:], dst[:, pb:]], dim=1)

    return merge


def merge_wavg(merge: Merge, x: torch.Tensor, size: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average merge of ``x`` [B, N, C]; ``size`` [B, N, 1] (None = ones)."""
    if size is None:
        size = torch.ones_like(x[..., 0, None])
    x = merge(x * size, "sum")
    size = merge(size, "sum")
    return x / size, size


class ToMeMixin(CountingMixin):
    """ToMe block.

    Modifications to timm's ``Block.forward``:
        - proportional attention: log(token size) [B, 1, 1, N] is passed to timm's attention as an
          additive ``attn_mask`` (after the first merge);
        - between the attention residual and the MLP, ``r`` tokens are merged with
          :func:`bipartite_soft_matching` on the head-mean keys (captured from ``attn.qkv``, with
          ``k_norm`` applied) and :func:`merge_wavg`;
        - the official ``ToMeBlock`` drops LayerScale; here ``ls1``/``ls2`` are kept.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: D102
        st = self._vb_enter(x)
        blk: Any = self
        size = st.extra.get("size")
        bias = attn_mask
        if st.params.prop_attn and size is not None:
            log_size = size.log()[:, None, None, :, 0].to(x.dtype)  # [B, 1, 1, N]
            bias = log_size if attn_mask is None else attn_mask + log_size
        x = x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x), attn_mask=bias, **kw)))
        qkv = st.qkv.pop(self._vb_index)
        r = min(st.params.r_per_block[self._vb_index], (x.shape[1] - st.prefix) // 2)
        if r > 0:
            if st.selection == "scored":
                b, n, _ = qkv.shape
                k = blk.attn.k_norm(qkv.reshape(b, n, 3, blk.attn.num_heads, blk.attn.head_dim)[:, :, 1])
                merge = bipartite_soft_matching(k.mean(dim=2), r, st.prefix)  # metric [B, N, d]
            else:
                merge = bipartite_soft_matching(x, r, st.prefix, _random_matcher(st, self._vb_index, x))
            x, st.extra["size"] = merge_wavg(merge, x, size)
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


def _random_matcher(st: ForwardState, index: int, x: torch.Tensor) -> Callable[[int, int], tuple]:
    """Random selection: uniform edge scores and a uniform partner among non-prefix B tokens."""

    def draw(n_a: int, n_b: int) -> tuple[torch.Tensor, torch.Tensor]:
        u = st.uniform(index, (n_a, 2), x.float())  # [B, n_a, 2]
        pb = st.prefix // 2
        node_idx = pb + (u[..., 1] * (n_b - pb)).long().clamp_(max=n_b - pb - 1)
        return u[..., 0].clone(), node_idx

    return draw


@dataclasses.dataclass(frozen=True)
class ToMeParams:
    """ToMe native parameters.

    Attributes:
        r: tokens merged in every block (clipped per block to (N - prefix) // 2, as the official code).
        r_per_block: explicit per-block list overriding ``r`` (the official ``parse_r`` list form).
        prop_attn: proportional attention (official default for off-the-shelf models).
    """

    r: int = 0
    r_per_block: tuple[int, ...] = ()
    prop_attn: bool = True

    def __post_init__(self) -> None:
        if self.r < 0 or any(v < 0 for v in self.r_per_block):
            raise ValueError(f"r must be >= 0, got r={self.r} r_per_block={self.r_per_block}")


@register
class ToMe(TokenMethod):
    """ToMe (ICLR'23): bipartite soft matching on head-mean keys, size-weighted merge, every block."""

    name = "tome"
    Params = ToMeParams
    #: no class token needed (prefix tokens, if any, are protected; the official code ran MAE's
    #: average-pooled ViTs); proportional attention goes through timm's ``attn_mask``; the
    #: classifier reads the class token or the size-weighted average of the tokens
    requirements = Requirements(
        vit_blocks=True,
        attn_mask=True,
        pooling=("token", "avg"),
        pooling_why="merged tokens are pooled by their sizes; a max or attention pool of them is not rebuilt",
    )
    #: 2: average-pooled models pool the merged tokens by size (version 1 averaged them unweighted)
    version = 2
    knob: ClassVar[str] = "r"
    replaces_knob: ClassVar[tuple[str, ...]] = ("r_per_block",)  # the per-block list overrides r
    summary = (
        "merge r tokens per block by bipartite soft matching, proportional attention (Bolya et al. 2023)"
    )
    #: proportional attention: prefix tokens differ from timm's after the first merge; matching MACs
    conformance = Conformance(changes_attention=True, gmacs_overhead=0.01)

    @classmethod
    def _resolve(cls, model: nn.Module, params: ToMeParams) -> ToMeParams:
        """Per-block ``r`` for ``model``; refuses an ``r`` that no block of the model can merge.

        A block merges at most half of its non-prefix tokens; the official code clips ``r`` to
        that per block (kept here: deep blocks of DeiT-S at r=16 merge fewer). An ``r`` above
        what even the first block can merge is never realised anywhere (on a model with 16
        image tokens every r >= 8 gives the same model), so it is an error, not a silent clip.
        """
        depth = len(check_vit(model, cls.name))
        n0, prefix = input_tokens(model), prefix_tokens(model)
        most = (n0 - prefix) // 2
        asked = max(params.r_per_block or (params.r,))
        if asked > most:
            arch = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
            raise VitbenchError(
                f"tome r={asked} cannot be realised on {arch}: a block merges at most half of its "
                f"{n0 - prefix} image tokens ({most}); use r <= {most}"
            )
        if params.r_per_block:
            if len(params.r_per_block) != depth:
                raise VitbenchError(
                    f"tome r_per_block has {len(params.r_per_block)} entries; the model has {depth} blocks"
                )
            return params
        return dataclasses.replace(params, r_per_block=(params.r,) * depth)

    @classmethod
    def setting(cls, params: Any) -> str:
        """``r=13``, or the explicit per-block list; ``prop_attn=False`` when switched off."""
        rs = params.r_per_block
        text = (
            "r=[" + ",".join(map(str, rs)) + "]"
            if rs and len(set(rs)) > 1
            else f"r={rs[0] if rs else params.r}"
        )
        return text if params.prop_attn else f"{text}, prop_attn=False"

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """The constant r whose GMACs are closest to EViT's at the same keep ratio."""
        dims = vit_dims(model)
        dim, attn_dim, hidden, depth = dims
        n0, p = input_tokens(model), prefix_tokens(model)
        target = evit_macs(model, keep_ratio)
        best, best_err = 0, None
        for r in range(0, (n0 - p) // 2 + 1):
            ta, tm = tome_schedule(n0, p, (r,) * depth)
            err = abs(vit_schedule_macs(ta, tm, dim, attn_dim, hidden) - target)
            if best_err is None or err < best_err:
                best, best_err = r, err
        return {"r": best}

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch every block with :class:`ToMeMixin` (qkv captured), and the pooling of an averaging model."""
        params = cls._resolve(model, params)
        depth = len(params.r_per_block)
        st = ForwardState(cls.name, prefix_tokens(model), selection, seed, depth, params=params)
        st.tokens = input_tokens(model)  # r was resolved for this input's token count
        capture = set(range(depth))
        handle = patch_blocks(model, st, lambda i: ToMeMixin, capture)
        patch_size_pool(model, st, handle)
        return handle

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block."""
        params = cls._resolve(model, params)
        attn, _ = tome_schedule(input_tokens(model), prefix_tokens(model), params.r_per_block)
        return attn


def tome_schedule(n0: int, prefix: int, rs: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Tokens entering attention and MLP of each block for per-block merge counts ``rs``."""
    attn, mlp = [], []
    n = n0
    for r in rs:
        attn.append(n)
        n -= min(r, (n - prefix) // 2)
        mlp.append(n)
    return attn, mlp
