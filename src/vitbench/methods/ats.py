"""ATS: adaptive token sampling, a different number of tokens per image (Fayyaz et al., ECCV 2022).

"Adaptive Token Sampling for Efficient Vision Transformers" (official code:
adaptivetokensampling/ATS, ``libs/models/transformers/ats_block.py``, ``transformer_block.py``,
``vit.py``; the DeiT-S setting of ``configs/ImageNet/DeiT_S.yaml``). Training-free. In each ATS
block (official DeiT-S: blocks 3 to 11), with ``T`` image tokens entering it:

1. attention over all tokens with the official ``softmax_with_policy``
   ``(exp(a - max) * m + eps / N) / (sum exp(a - max) * m + eps)`` (``eps = 1e-6``, ``m`` the
   token mask, ``N`` the image's tokens); every block from block 0 on uses it (the official model
   passes its all-ones policy to every block);
2. significance ``s_j = sum_h A_h[CLS, j] * ||v_j||`` over image tokens ``j`` (``||v_j||`` the L2
   norm of the value over all heads), normalised to sum 1 and sorted ascending;
3. inverse-transform sampling: the cumulative sum ``c`` of the sorted scores, min-max normalised
   to ``[0, 1]``; ``K`` points ``y`` evenly spaced from the smallest non-zero normalised value to 1;
   each ``y`` picks the token whose normalised ``c`` is *nearest* (when ``K < T`` only the ``K``
   highest-score tokens are candidates, as the official left-padding of the CDF does); tokens
   picked more than once are kept once;
4. the kept tokens, in ascending score order after the prefix tokens, take their rows of the
   attention output (computed over all tokens, the dropped ones included as keys); the
   projection, residual and MLP run on them only.

``K`` is the official ``n_ref_tokens - 1`` (the image tokens entering block 0, 196 on DeiT-S)
by default, so the count per image is whatever the duplicates leave; ``samples`` sets a smaller
``K`` (the same code with ``n_ref_tokens = NUM_TOKENS = K + 1``).

Batching: as the official ``drop_tokens=True`` path, the kept tokens are packed to the front and
each image is padded with zero tokens to the batch's largest count; padded tokens are masked out
of the attention, get zero significance and are zeroed after every block. Unlike the official
code, padding never changes an image's result: its ``N``, softmax maximum and CDF use its own
tokens only, so every image gets what the official code gives it at batch 1 (the official batch
lets padded zeros into the CDF's min-max normalisation and the softmax's ``eps / N``).

``selection="random"``: each image keeps, in every block, as many tokens as under scored selection
(a scored pass at block 0 fixes the counts; it runs outside the MAC counter), chosen by seeded
uniform draws keyed by sample id and original patch index.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils._python_dispatch import _disable_current_modes

from vitbench.core.errors import VitbenchError
from vitbench.measure.gmacs import vit_dims
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
)
from vitbench.methods.requirements import Requirements

#: The official softmax_with_policy constant.
EPS = 1e-6
#: The official block samples at least 8 tokens (``n_tokens < 8 -> 8``, CLS included).
MIN_SAMPLES = 7


def policy_softmax(logits: torch.Tensor, mask: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """The official ``softmax_with_policy`` of one image at batch 1, for a padded batch.

    Args:
        logits: [B, H, N, N] scaled ``q k^T``.
        mask: [B, N] bool, real tokens (padding False).
        eps: the official constant.

    Returns:
        float32 [B, H, N, N]: ``(exp(a - max) + eps / n) / (sum exp(a - max) + eps)`` over the
        image's own ``n`` real keys (max and sum over them); padded keys get 0.
    """
    keys = mask[:, None, None, :]
    a = logits.masked_fill(~keys, float("-inf"))
    a = a - a.amax(dim=-1, keepdim=True)
    e = a.float().exp()  # masked keys: exp(-inf) = 0
    n = mask.sum(dim=1).to(torch.float32)[:, None, None, None]
    return ((e + eps / n) / (e.sum(dim=-1, keepdim=True) + eps)).masked_fill(~keys, 0.0)


def significance(probs: torch.Tensor, v: torch.Tensor, prefix: int) -> torch.Tensor:
    """ATS significance of the image tokens: ``sum_h A_h[CLS, j] * ||v_j||_2``.

    Args:
        probs: [B, H, N, N] attention probabilities.
        v: [B, H, N, d] values.
        prefix: prefix tokens (dropped from the result).

    Returns:
        [B, N - prefix], not normalised.
    """
    b, h, n, d = v.shape
    v_norm = torch.linalg.norm(v.transpose(1, 2).reshape(b, n, h * d), ord=2, dim=2)
    return (probs[:, :, 0].sum(dim=1) * v_norm)[:, prefix:]


def sample_tokens(
    scores: torch.Tensor, valid: torch.Tensor, samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-transform sampling of each image's tokens (official ``inverse_transform_sampling``).

    Args:
        scores: [B, T] non-negative significance of the image tokens (padding: any value).
        valid: [B, T] bool, real tokens (padding False, anywhere in the row); each image is
            sampled from its own real tokens only, as the official code does at batch 1.
        samples: ``K``, points sampled on the CDF (>= :data:`MIN_SAMPLES`).

    Returns:
        ``(order, picked)``: ``order`` [B, T] token indices in ascending score (padding last);
        ``picked`` [B, T] bool over positions of ``order``: the tokens kept.
    """
    b, t = scores.shape
    pos = torch.arange(t, device=scores.device)
    s = scores.float().masked_fill(~valid, 0.0)
    s = s / s.sum(dim=1, keepdim=True)
    order = s.masked_fill(~valid, float("inf")).sort(dim=1, stable=True).indices
    n = valid.sum(dim=1)  # [B]
    real = pos[None] < n[:, None]  # real tokens sit first in sorted order
    cdf = s.gather(1, order).masked_fill(~real, 0.0).cumsum(dim=1)
    low = cdf.masked_fill(~real, float("inf")).amin(dim=1, keepdim=True)
    high = cdf.masked_fill(~real, float("-inf")).amax(dim=1, keepdim=True)
    norm = (cdf - low) / ((high - low) / 1.0)
    start = (norm + (norm == 0).float() * 1e8).masked_fill(~real, float("inf")).amin(dim=1, keepdim=True)
    ys = torch.linspace(0, 1.0, samples, device=scores.device)[None].expand(b, -1)
    steps = torch.arange(0, samples, device=scores.device, dtype=torch.float32)[None]
    ys = start + ((ys * (samples - 1)) - start * steps) / (samples - 1)  # [B, K]
    candidate = real & (pos[None] >= (n - samples).clamp(min=0)[:, None])  # the K highest when K < T
    dist = (ys[:, :, None] - norm[:, None, :]).abs().masked_fill(~candidate[:, None, :], float("inf"))
    pick = dist.argmin(dim=2)  # [B, K]
    picked = torch.zeros(b, t, dtype=torch.bool, device=scores.device).scatter_(1, pick, True)
    # the official de-duplication compares the largest pick with a padded 1.0: a largest pick of 1
    # counts as a duplicate and is dropped
    if t > 1:
        picked[:, 1] = torch.logical_and(picked[:, 1], pick.amax(dim=1) != 1)
    # a flat CDF (fewer than 2 tokens, or all mass on the lowest one) is 0 / 0 in the official
    # normalisation; such an image keeps its tokens
    flat = ~(high > low).squeeze(1)
    return order, torch.where(flat[:, None], real, picked)


def block_macs(
    n_attn: torch.Tensor, n_mlp: torch.Tensor, dim: int, attn_dim: int, hidden: int
) -> torch.Tensor:
    """Closed-form MACs of one ATS block per image (papers' convention, batch 1).

    Norm1, qkv, ``q k^T`` and ``A v`` on the ``n_attn`` tokens entering the block; the projection,
    norm2 and MLP on the ``n_mlp`` tokens it keeps (equal to ``n_attn`` in blocks that do not
    sample). The scores, CDF and sampling count 0 (norms, sums, sorting).

    Args:
        n_attn: int64 [...] tokens entering the block (prefix included).
        n_mlp: int64 [...] tokens the block keeps (same shape).
        dim: embedding width C.
        attn_dim: total q/k/v width.
        hidden: MLP hidden width.

    Returns:
        int64 [...] MACs.
    """
    na, nm = n_attn.to(torch.int64), n_mlp.to(torch.int64)
    return (
        5 * na * dim
        + 3 * na * dim * attn_dim
        + 2 * na * na * attn_dim
        + nm * attn_dim * dim
        + 5 * nm * dim
        + 2 * nm * dim * hidden
    )


def kept_index(order: torch.Tensor, picked: torch.Tensor, prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token indices [B, prefix + M] of the prefix then the picked tokens (in ``order``), and their mask.

    ``M`` is the largest count of the batch; shorter rows point at token 0 and are masked out.
    """
    b, t = picked.shape
    pos = torch.arange(t, device=picked.device)
    counts = picked.sum(dim=1)
    m = int(counts.max())
    first = torch.where(picked, pos, pos + t).argsort(dim=1, stable=True)[:, :m]
    keep = pos[None, :m] < counts[:, None]
    tok = (order.gather(1, first) + prefix).masked_fill(~keep, 0)
    head = torch.arange(prefix, device=picked.device)[None].expand(b, -1)
    ones = torch.ones(b, prefix, dtype=torch.bool, device=picked.device)
    return torch.cat([head, tok], dim=1), torch.cat([ones, keep], dim=1)


@dataclasses.dataclass
class ATSState(ForwardState):
    """:class:`ForwardState` plus the ATS blocks, ``K`` and the per-image counts of past forwards."""

    sampling: frozenset[int] = frozenset()
    samples: int = 0
    t0: int = 0
    dims: tuple[int, int, int] = (0, 0, 0)
    final_norm: int = 0
    blocks: list[nn.Module] = dataclasses.field(default_factory=list)
    images: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=list)


class ATSHandle(Handle):
    """Handle of ATS: reports per-image token counts and MACs (:meth:`image_costs`).

    The MACs of an image are those of its blocks (:func:`block_macs`) and of the final LayerNorm
    on the tokens leaving the last block: everything whose count depends on the image.
    """

    def image_costs(self) -> ImageCosts | None:
        """Per-image counts of the forwards since the last call (``None`` when none ran)."""
        st: Any = self.state
        if not st.images:
            return None
        ids, na, nm = (torch.cat(parts) for parts in zip(*st.images))
        st.images.clear()
        macs = block_macs(na, nm, *st.dims).sum(dim=1) + st.final_norm * nm[:, -1]
        return ImageCosts(ids, na, macs)


def _fresh(x: torch.Tensor, st: Any) -> dict[str, torch.Tensor]:
    """Trajectory state at block 0: all tokens real, original patch positions, empty counts."""
    b, n, _ = x.shape
    return {
        "mask": torch.ones(b, n, dtype=torch.bool, device=x.device),
        "pos": torch.arange(n - st.prefix, device=x.device)[None].expand(b, -1),
        "counts": torch.zeros(2, b, st.depth, dtype=torch.int64),
    }


def ats_step(blk: Any, x: torch.Tensor, run: dict[str, torch.Tensor], st: Any, i: int) -> torch.Tensor:
    """Block ``i`` of ATS on ``x`` [B, N, C] (padded batch), updating the trajectory ``run``.

    ``run`` holds ``mask`` [B, N] (real tokens), ``pos`` [B, N - prefix] (original patch index of
    each image token) and ``counts`` [2, B, depth] (tokens entering the attention / kept, per image).
    With ``run["target"]`` [B, depth] (random selection) an ATS block keeps that many tokens per
    image, chosen by seeded uniform draws; otherwise it keeps the sampled ones.
    """
    p = st.prefix
    b, n, c = x.shape
    mask = run["mask"]
    attn = blk.attn
    qkv = attn.qkv(blk.norm1(x)).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    probs = policy_softmax((q @ k.transpose(-2, -1)) * attn.scale, mask)
    out = (probs.to(v.dtype) @ v).transpose(1, 2).reshape(b, n, c)
    out = getattr(attn, "norm", nn.Identity())(out)
    run["counts"][0, :, i] = mask.sum(dim=1).cpu()
    if i in st.sampling and n > p:
        valid = mask[:, p:]
        if "target" in run:  # random: the scored pass's count, uniform draws decide which tokens
            m = run["target"][:, i : i + 1] - p
            u = st.uniform(i, (st.t0,), x.float())  # keyed by original patch index
            order = u.gather(1, run["pos"]).masked_fill(~valid, float("inf")).sort(dim=1, stable=True).indices
            rank = torch.arange(n - p, device=x.device)[None]
            real = valid.sum(dim=1, keepdim=True)
            picked = (rank >= real - m) & (rank < real)
        else:
            order, picked = sample_tokens(significance(probs, v, p), valid, st.samples)
        index, mask = kept_index(order, picked, p)
        run["pos"] = run["pos"].gather(1, (index[:, p:] - p).clamp(min=0))
        x = x.gather(1, index[..., None].expand(-1, -1, c))
        out = out.gather(1, index[..., None].expand(-1, -1, c))
        run["mask"] = mask
    keep = mask[..., None].to(x.dtype)
    x = (x + blk.drop_path1(blk.ls1(attn.proj_drop(attn.proj(out))))) * keep
    x = (x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))) * keep
    run["counts"][1, :, i] = mask.sum(dim=1).cpu()
    return x


def scored_counts(x: torch.Tensor, st: Any) -> torch.Tensor:
    """Tokens each block keeps per image under scored selection, int64 [B, depth] on ``x``'s device.

    Random selection keeps these counts (same counts, random tokens). This pass is the protocol's
    control, not part of the random baseline's network: it runs outside any MAC counter
    (``vitbench.measure.gmacs`` counts the random trajectory only, as it counts the scored one);
    throughput of random cells includes it.
    """
    run = _fresh(x, st)
    with _disable_current_modes(), torch.no_grad():
        h = x
        for i, blk in enumerate(st.blocks):
            h = ats_step(blk, h, run, st, i)
    return run["counts"][1].to(x.device)


class ATSMixin(CountingMixin):
    """ATS block (every block: the masked ``softmax_with_policy``; ATS blocks also sample).

    Modifications to timm's ``Block.forward`` (:func:`ats_step`):
        - attention is computed explicitly with :func:`policy_softmax` over the image's real
          tokens (timm's fused attention is not used: the official code computes the matrix with
          its eps in every block);
        - in ATS blocks the attention output keeps only the rows of the sampled tokens
          (:func:`sample_tokens`), then projection, residual and MLP run on them;
        - padded tokens of a batch are zeroed after every block;
        - prefix tokens (CLS, distillation, registers) are always kept (the official code keeps
          token 0 only); an external ``attn_mask`` is not supported;
        - random selection: block 0 first runs the scored trajectory (:func:`scored_counts`) to
          fix each image's counts.
        LayerScale, drop-path and q/k norms are timm's own.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: D102
        st: Any = self._vb_enter(x)
        if attn_mask is not None:
            raise VitbenchError(f"'{st.method}' does not support an attention mask; run without attn_mask")
        i = self._vb_index
        if i == 0:
            st.extra["run"] = _fresh(x, st)
            if st.selection == "random":
                st.extra["run"]["target"] = scored_counts(x, st)
        run = st.extra["run"]
        x = ats_step(self, x, run, st, i)
        if i == st.depth - 1:
            counts = run["counts"]
            st.images.append((st._ids.detach().cpu(), counts[0].clone(), counts[1].clone()))
        return x


@dataclasses.dataclass(frozen=True)
class ATSParams:
    """ATS native parameters.

    Attributes:
        samples: ``K``, points sampled on each ATS block's CDF (at most ``K`` tokens kept); 0: the
            official value, the image tokens entering block 0 (``n_ref_tokens - 1``, 196 on DeiT-S).
            Otherwise at least 7 (the official block samples at least 8 tokens with the CLS).
        blocks: the ATS blocks; empty: ``depth // 4`` to ``depth - 1`` (official DeiT-S: 3 to 11).
    """

    samples: int = 0
    blocks: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.samples != 0 and self.samples < MIN_SAMPLES:
            raise ValueError(
                f"samples {self.samples} is below {MIN_SAMPLES}; the official block samples at least "
                f"8 tokens with the class token: use samples >= {MIN_SAMPLES} or 0 (the official value)"
            )
        if any(b < 0 for b in self.blocks):
            raise ValueError(f"blocks {list(self.blocks)} has a negative index; give block indices from 0")


def ats_blocks(depth: int, blocks: tuple[int, ...]) -> frozenset[int]:
    """The ATS blocks: ``blocks``, or ``depth // 4`` to ``depth - 1`` (official DeiT-S: 3..11).

    Raises:
        VitbenchError: a block index beyond the model's depth.
    """
    chosen = frozenset(blocks) if blocks else frozenset(range(depth // 4, depth))
    beyond = sorted(b for b in chosen if b >= depth)
    if beyond:
        raise VitbenchError(
            f"ATS blocks {beyond} are beyond the model's {depth} blocks; use indices < {depth}"
        )
    return chosen


def samples_of(params: ATSParams, image_tokens: int) -> int:
    """``K``: ``params.samples``, or the image tokens entering block 0 when it is 0."""
    return params.samples or image_tokens


@register
class ATS(TokenMethod):
    """ATS (ECCV'22): inverse-transform sampling of the CLS-attention x value-norm CDF, per image."""

    name = "ats"
    Params = ATSParams
    knob: ClassVar[str] = "samples"
    requirements = Requirements(
        vit_blocks=True,
        class_token=True,
        class_token_head=True,
        uses=(
            "it samples image tokens by the class token's attention row and pads each batch with "
            "zero tokens that only a class-token head ignores"
        ),
    )
    summary = (
        "adaptive token sampling on the CLS-attention x value-norm CDF, tokens vary per image (Fayyaz 2022)"
    )
    #: changes_attention: later blocks mask the padding of a batch out of the attention (the
    #: unpatched block would attend to the zero tokens)
    conformance = Conformance(
        adaptive=True,
        changes_attention=True,
        expected_failures=(
            (
                "identity",
                "keep 1.0 is the official setting (K = all image tokens), which still drops the "
                "tokens picked more than once and the lowest-score token",
            ),
        ),
    )

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """``K = max(7, round(keep_ratio * image tokens))``: the keep ratio caps each ATS block's count."""
        tokens = input_tokens(model) - prefix_tokens(model)
        return {"samples": max(MIN_SAMPLES, round(keep_ratio * tokens))}

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch every block with :class:`ATSMixin`; the ATS blocks sample."""
        depth = len(check_vit(model, cls.name))
        p = prefix_tokens(model)
        st = ATSState(cls.name, p, selection, seed, depth, params=params)
        st.sampling = ats_blocks(depth, params.blocks)
        st.samples = samples_of(params, input_tokens(model) - p)
        st.t0 = input_tokens(model) - p
        st.blocks = list(check_vit(model, cls.name))
        dim, attn_dim, hidden, _ = vit_dims(model)
        st.dims = (dim, attn_dim, hidden)
        norm = getattr(model, "norm", None)  # runs on the last block's kept tokens
        if isinstance(norm, nn.LayerNorm):
            st.final_norm = (5 if norm.elementwise_affine else 4) * dim
        return patch_blocks(model, st, lambda i: ATSMixin, handle_cls=ATSHandle)

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Upper bound of the tokens entering each block (the counts vary per image).

        An ATS block keeps at most ``min(K, T - 1)`` of its ``T`` image tokens when ``K >= T`` (the
        lowest-score token has normalised CDF 0 and is never the nearest) and at most ``K`` otherwise.
        """
        depth = len(check_vit(model, cls.name))
        p = prefix_tokens(model)
        t = input_tokens(model) - p
        k = samples_of(params, t)
        sampling = ats_blocks(depth, params.blocks)
        out = []
        for i in range(depth):
            out.append(t + p)
            if i in sampling and t > 0:
                t = t - 1 if k >= t else k
        return out


__all__ = [
    "ATS",
    "ATSHandle",
    "ATSMixin",
    "ATSParams",
    "ATSState",
    "ats_blocks",
    "block_macs",
    "kept_index",
    "policy_softmax",
    "sample_tokens",
    "significance",
]
