"""DiffRate's differentiable compression-rate search (Chen et al., ICCV 2023), training side.

Re-derived from the official ``DiffRate/ddp.py`` (``DiffRate``: the differentiable discrete
proxy), ``DiffRate/utils.py`` (``STE_Ceil``, ``STE_Min``), the training branch of
``DiffRateBlock.forward`` and ``DiffRateAttention.softmax_with_policy`` (``DiffRate/patch/deit.py``),
``calculate_flop_training`` and ``engine.train_one_epoch`` (loss ``CE + 5 (GFLOPs - target)^2``)
of OpenGVLab/DiffRate @ 91ae3e3. Only the rates are searched; the backbone stays frozen.

Per compressing block, two proxies (prune, merge) hold logits over the candidate kept counts
``P, P - g, ..., > 0`` (``P`` image tokens, granularity ``g = 4``, the official default); the
kept count is ``ceil(sum_c c softmax(logits)_c) + prefix`` with a straight-through ceil. In
training no token is dropped: pruned and merged tokens are masked out of the attention of later
blocks with a straight-through mask built from the cumulative candidate probabilities, so the
classification loss reaches the logits; the GFLOPs of the expected counts reach them through the
counts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vitbench.methods.patching.patch import split_qkv

#: Token-count gap between candidate kept counts (the official ``--granularity`` default).
GRANULARITY = 4

#: Weight of the GFLOPs loss (official ``lamb`` after the warm-up epoch).
FLOPS_WEIGHT = 5.0


class _SteCeil(torch.autograd.Function):
    """``ceil`` forward, identity backward (official ``STE_Ceil``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.ceil(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return g


class _SteMin(torch.autograd.Function):
    """``min(n, a, b)`` forward; backward passes the gradient to ``a`` and ``b`` (official ``STE_Min``)."""

    @staticmethod
    def forward(ctx: Any, n: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.minimum(torch.minimum(n, a), b)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor]:  # noqa: D102
        return None, g, g


class RateProxy(nn.Module):
    """One differentiable kept count (official ``DiffRate`` module of ``ddp.py``).

    Args:
        patches: image tokens ``P`` entering the model.
        prefix: prefix tokens, always kept (the official class token).
        granularity: gap between candidate counts.

    Attributes:
        candidates: buffer [K] candidate kept image-token counts ``P, P - g, ...``.
        logits: parameter [K] (the official ``selected_probability``), zeros at the start.
    """

    candidates: torch.Tensor

    def __init__(self, patches: int, prefix: int, granularity: int = GRANULARITY) -> None:
        super().__init__()
        self.prefix = prefix
        self.register_buffer("candidates", torch.arange(patches, 0, -granularity, dtype=torch.float32))
        self.logits = nn.Parameter(torch.zeros(self.candidates.shape[0]))

    def expected(self) -> torch.Tensor:
        """Kept count, prefix included, as a scalar tensor with a straight-through ceil."""
        return _SteCeil.apply(self.candidates @ self.logits.softmax(dim=-1)) + self.prefix

    def kept(self) -> int:
        """The kept count (prefix included) used at inference: ``int(expected())``."""
        with torch.no_grad():
            return int(self.expected().item())

    def token_probability(self, tokens: int) -> torch.Tensor:
        """[tokens] probability that each sorted position is kept (official ``get_token_probability``)."""
        pos = torch.arange(tokens, device=self.logits.device, dtype=torch.float32)
        keep = (pos[None, :] < (self.candidates + self.prefix)[:, None]).float()  # [K, tokens]
        return self.logits.softmax(dim=-1) @ keep

    def token_mask(self, kept: int, upto: int, tokens: int) -> torch.Tensor:
        """[tokens] straight-through mask, 0 on positions ``kept..upto-1`` (official ``get_token_mask``)."""
        prob = self.token_probability(tokens)
        mask = torch.ones_like(prob)
        mask[kept:upto] = 0.0
        return mask - prob.detach() + prob


class RatePart(nn.Module):
    """The searched rates of one block: a pruning and a merging proxy, and the counts they give.

    Attributes:
        prune: :class:`RateProxy` of the tokens kept after pruning.
        merge: :class:`RateProxy` of the tokens kept after merging.
        counts: int64 buffer [2] (prune, merge) kept counts, refreshed by :meth:`refresh` before an
            artifact is written; a loaded artifact's counts are used as stored.
    """

    counts: torch.Tensor

    def __init__(self, patches: int, prefix: int) -> None:
        super().__init__()
        self.prune = RateProxy(patches, prefix)
        self.merge = RateProxy(patches, prefix)
        self.register_buffer(
            "counts", torch.tensor([self.prune.kept(), self.merge.kept()], dtype=torch.int64)
        )

    def refresh(self) -> None:
        """Set :attr:`counts` from the current logits."""
        self.counts.copy_(torch.tensor([self.prune.kept(), self.merge.kept()], dtype=torch.int64))


def policy_softmax(attn: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Official ``softmax_with_policy``: masked keys get weight 0 except on the diagonal.

    Args:
        attn: [B, H, N, N] logits.
        mask: [B, N] 1 = token alive.
        eps: the official smoothing of the weights.
    """
    n = mask.shape[1]
    policy = mask.reshape(mask.shape[0], 1, 1, n)
    eye = torch.eye(n, dtype=policy.dtype, device=policy.device).view(1, 1, n, n)
    policy = policy + (1.0 - policy) * eye
    top = attn.max(dim=-1, keepdim=True)[0]
    weights = (attn - top).float().exp() * policy.float()
    return ((weights + eps / n) / (weights.sum(dim=-1, keepdim=True) + eps)).type_as(top)


def search_block(blk: Any, x: torch.Tensor, st: Any, part: RatePart | None, match: Any) -> torch.Tensor:
    """The training forward of one block (official ``DiffRateBlock.forward``, training branch).

    Args:
        blk: the timm block.
        x: [B, N0, C] all tokens (nothing is dropped in training).
        st: the forward state; ``st.extra`` holds ``search_size`` [B, N0, 1], ``search_mask``
            [B, N0] and the list ``search_counts`` of (prune, merge) expected counts per block.
        part: the block's rates, ``None`` for a block that never compresses (block 0).
        match: ``(x, keep, prefix) -> (node_max, node_idx)``, the inference matching.
    """
    b, n0, c = x.shape
    p = st.prefix
    size = st.extra.setdefault("search_size", torch.ones(b, n0, 1, device=x.device))
    mask = st.extra.setdefault("search_mask", torch.ones(b, n0, device=x.device))
    attn = blk.attn
    y = blk.norm1(x)
    q, k, v = split_qkv(attn.qkv(y), attn)
    logits = (q @ k.transpose(-2, -1)) * attn.scale + size.log()[:, None, None, :, 0].to(q.dtype)
    probs = attn.attn_drop(policy_softmax(logits, mask))
    out = attn.norm((probs @ v).transpose(1, 2).reshape(b, n0, -1))
    if getattr(attn, "gate", None) is not None:  # timm's gated attention
        out = out * attn.gate(y).sigmoid()
    out = attn.proj_drop(attn.proj(out))
    x = x + blk.drop_path1(blk.ls1(out))
    if part is None:
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    order = torch.sort(probs[:, :, 0, p:].mean(dim=1), dim=-1, descending=True).indices + p
    idx = torch.cat([torch.arange(p, device=x.device).expand(b, p), order], dim=1)
    x = x.gather(1, idx[..., None].expand(-1, -1, c))
    size, mask = size.gather(1, idx[..., None]), mask.gather(1, idx)
    last = int(mask[0].sum().item())
    prune_kept = part.prune.expected()
    if prune_kept < last:
        mask = mask * part.prune.token_mask(int(prune_kept), last, n0)[None]
    mid = min(last, int(prune_kept))
    merge_kept = part.merge.expected()
    st.extra.setdefault("search_counts", []).append((prune_kept, merge_kept))
    mk = int(merge_kept)
    if mk < mid:
        merge_mask = part.merge.token_mask(mk, mid, n0)
        node_max, node_idx = match(x[:, :mid].detach(), mk, p)
        dst = x[:, :mk].scatter_reduce(1, node_idx[..., None].expand(-1, -1, c), x[:, mk:mid], reduce="mean")
        x = torch.cat([dst, x[:, mk:]], dim=1)
        head = torch.cat([size[:, :mk], size[:, mk:mid] * node_max[..., None]], dim=1).clamp(1)
        merged = head[:, :mk].scatter_reduce(1, node_idx[..., None], head[:, mk:], reduce="sum")
        size = torch.cat([merged, head[:, mk:], size[:, mid:]], dim=1)
        mask = mask * merge_mask[None]
    st.extra["search_size"], st.extra["search_mask"] = size, mask
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


def search_gflops(
    counts: list[tuple[torch.Tensor, torch.Tensor]], tokens: int, dims: tuple[int, int, int], depth: int
) -> torch.Tensor:
    """Differentiable GFLOPs of the expected counts (official ``calculate_flop_training``).

    ``4NC^2 + 2N^2C`` per attention and ``8NC^2`` per MLP with ``N`` the tokens after the block's
    ``ste_min``; the patch stem on ``tokens`` (prefix included, as the official) and the head.

    Args:
        counts: (prune, merge) expected counts of the compressing blocks 1..depth-1.
        tokens: tokens entering block 0.
        dims: (embed dim C, patch pixels x channels, classes).
        depth: number of blocks.
    """
    c, stem, classes = dims
    n = torch.tensor(float(tokens))
    total = torch.tensor(tokens * c * stem + c * classes, dtype=torch.float32)
    steps: list[tuple[torch.Tensor, torch.Tensor] | None] = [None, *counts]
    for i in range(depth):
        total = total + 4 * n * c * c + 2 * n * n * c
        step = steps[i]
        if step is not None:
            pk, mk = step
            n = _SteMin.apply(n.to(pk.device), pk.float(), mk.float())
        total = total.to(n.device) + 8 * n * c * c
    return total / 1e9


def official_gflops(n_attn: list[int], n_mlp: list[int], tokens: int, dims: tuple[int, int, int]) -> float:
    """The official counter's GFLOPs of a token schedule (``calculate_flop_inference``)."""
    c, stem, classes = dims
    blocks = sum(4 * a * c * c + 2 * a * a * c + 8 * m * c * c for a, m in zip(n_attn, n_mlp))
    return (tokens * c * stem + c * classes + blocks) / 1e9


def flops_loss(gflops: torch.Tensor, target: float) -> torch.Tensor:
    """``(GFLOPs - target)^2`` (official ``loss_flops``)."""
    return (gflops - target) ** 2


__all__ = [
    "FLOPS_WEIGHT",
    "GRANULARITY",
    "RatePart",
    "RateProxy",
    "flops_loss",
    "official_gflops",
    "policy_softmax",
    "search_block",
    "search_gflops",
]
