"""Shared base of the DynamicViT family: a learned predictor drops tokens before stage blocks.

Rao et al., NeurIPS 2021 (official code: raoyongming/DynamicViT, ``models/dyvit.py``); see
``references/methods.md`` section 5, and :mod:`vitbench.methods.dynamicvit` for the schedule.
:class:`PredictorMethod` holds everything DynamicViT and dTPS (:mod:`vitbench.methods.tps`)
share: the decision :func:`decide`, the block :class:`DynamicViTMixin`, the keep counts, the
trained predictors and their losses. Method modules import this module, never each other.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.base import Conformance
from vitbench.methods.patching.patch import (
    CountingMixin,
    ForwardState,
    Handle,
    check_vit,
    input_tokens,
    patch_blocks,
    prefix_tokens,
)
from vitbench.methods.patching.policy import PredictorLG, gumbel_keep, policy_attention
from vitbench.methods.patching.squeeze import squeeze, squeeze_dense
from vitbench.methods.patching.stages import stage_blocks
from vitbench.methods.requirements import Requirements
from vitbench.methods.trainable import PART, TrainableMethod, keep_ratio_loss, token_distill_loss


@dataclasses.dataclass
class DynamicState(ForwardState):
    """:class:`ForwardState` plus the DynamicViT schedule.

    Attributes:
        decide: decision block index -> stage s (the block before pruning location ``loc_s``).
        keeps: image tokens kept after each stage, ``int(n0 * rho^(s+1))``.
        targets: keep-ratio loss targets ``rho^(s+1)``.
        squeeze: squeeze pruned tokens into hosts (dTPS) instead of dropping them.
        temperature: TPS similarity temperature.
        noise_step: training step; the Gumbel noise is keyed by (seed, sample id, step, block),
            so it does not depend on batching or processes and a resumed run redraws it exactly.
        policy: training-mode decisions: ``"gumbel"`` (hard Gumbel-softmax, the papers'
            training) or ``"topk"`` (the inference top-k among kept tokens, as a dense mask;
            deterministic, for checking the masked path against physical dropping).
    """

    decide: dict[int, int] = dataclasses.field(default_factory=dict)
    keeps: tuple[int, ...] = ()
    targets: tuple[float, ...] = ()
    squeeze: bool = False
    temperature: float = 1.0
    noise_step: int = 0
    policy: str = "gumbel"


def decide(
    x: torch.Tensor, st: DynamicState, stage: int, predictor: nn.Module, index: int, train: bool
) -> torch.Tensor:
    """The pruning decision of ``stage`` on ``x`` [B, N, C] (prefix tokens first).

    Eval: top-k by keep log-probability (or seeded uniform scores for ``selection="random"``,
    same counts), kept tokens in descending score order, the rest dropped (or squeezed, dTPS).
    Training: Gumbel decisions multiplied into the previous ones; the policy for the following
    blocks and the decisions for the keep-ratio loss go into ``st.extra``.
    """
    p, (b, n_all, _) = st.prefix, x.shape
    img = x[:, p:]
    n = n_all - p
    k = st.keeps[stage]
    if k >= n:  # keep rate 1: no decision, no reordering (identical to the dense model)
        return x
    if train:
        prev = st.extra.get("prev")
        if prev is None:
            prev = torch.ones(b, n, 1, dtype=x.dtype, device=x.device)
        log_probs = predictor(img, prev)
        if st.policy == "topk":
            score = log_probs[..., 0].masked_fill(prev[..., 0] == 0, float("-inf"))
            top = score.topk(k, dim=1).indices
            keep = torch.zeros_like(prev).scatter_(1, top[..., None], 1.0)
        else:
            u = st.uniform(st.noise_step * st.depth + index, (n, 2), log_probs)
            keep = gumbel_keep(log_probs, u) * prev  # [B, n, 1]
        if st.squeeze:
            img = squeeze_dense(img, keep, (1.0 - keep) * prev, st.temperature)
            x = torch.cat([x[:, :p], img], dim=1)
        st.extra["prev"] = keep
        st.extra.setdefault("decisions", []).append(keep[..., 0])
        st.extra["policy"] = torch.cat([torch.ones(b, p, 1, dtype=x.dtype, device=x.device), keep], dim=1)
        return x
    log_probs = predictor(img, None)  # computed for random selection too, as the official shuffle
    scores = log_probs[..., 0] if st.selection == "scored" else st.uniform(index, (n,), x)
    order = descending_order(scores)
    c = x.shape[-1]
    kept = img.gather(1, order[:, :k, None].expand(-1, -1, c))
    if st.squeeze:
        kept = squeeze(kept, img.gather(1, order[:, k:, None].expand(-1, -1, c)), st.temperature)
    return torch.cat([x[:, :p], kept], dim=1)


def descending_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices [B, n] sorting ``scores`` [B, n] by descending score, equal scores by lower index.

    The official code's ``torch.argsort(descending=True)`` leaves the order of equal scores to the
    sort kernel; untrained (and saturated trained) predictors give equal keep log-probabilities
    at the keep/drop boundary (log-probs near 0 are quantised in float32), so the kept set then
    depended on the kernel: ONNX Runtime and OpenVINO kept other tokens than eager PyTorch on 4-6
    of 32 demo images (issue 21). Here each score's rank (scores above it, plus equal scores at a
    lower index) is counted and the distinct ranks sorted: the order of a stable descending sort,
    the same in every runtime (``sort(stable=True)`` has no ONNX export), identical to
    ``argsort`` wherever no scores tie. O(n^2) comparisons per image: tiny next to attention.
    """
    idx = torch.arange(scores.shape[1], device=scores.device)
    above = scores[:, None, :] > scores[:, :, None]  # [B, i, j]: score j beats score i
    tied_before = (scores[:, None, :] == scores[:, :, None]) & (idx[None, None, :] < idx[None, :, None])
    rank = (above | tied_before).sum(dim=-1)  # [B, n], a permutation of 0..n-1 per row
    return torch.argsort(rank, dim=1)


class DynamicViTMixin(CountingMixin):
    """DynamicViT block (blocks from the first decision block on).

    Modifications to timm's ``Block.forward``:
        - training mode with a keep policy (blocks after a decision): the attention runs
          unfused with ``softmax_with_policy`` (timm's own qkv/q_norm/k_norm/proj modules);
          LayerScale and drop-path are timm's;
        - eval mode: timm's own forward (fused attention);
        - decision blocks (the block before each pruning location) end with :func:`decide` on
          their output; prefix tokens are always kept and never hosts;
        - an external ``attn_mask`` is not supported.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: D102
        st: Any = self._vb_enter(x)  # a DynamicState
        if attn_mask is not None:
            raise VitbenchError(f"'{st.method}' does not support an attention mask; run without attn_mask")
        blk: Any = self
        policy = st.extra.get("policy") if blk.training else None
        if policy is None:
            x = super(CountingMixin, self).forward(x, **kw)  # type: ignore[misc]
        else:
            x = x + blk.drop_path1(blk.ls1(policy_attention(blk.attn, blk.norm1(x), policy)))
            x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        stage = st.decide.get(self._vb_index)
        if stage is None:
            return x
        return decide(x, st, stage, getattr(blk, PART), self._vb_index, blk.training)


def keep_counts(n0: int, keep_rate: float, stages: int, method: str) -> tuple[int, ...]:
    """``int(n0 * rho^(s+1))`` image tokens after each stage; zero tokens is an error."""
    keeps = tuple(int(n0 * keep_rate ** (s + 1)) for s in range(stages))
    if keeps and keeps[-1] < 1:
        raise VitbenchError(
            f"'{method}' at keep ratio {keep_rate:g} keeps int({n0} * {keep_rate:g}^{stages}) = 0 of {n0} "
            "image tokens at its last stage; use a larger keep ratio"
        )
    return keeps


class PredictorMethod(TrainableMethod):
    """Base of the DynamicViT family: a learned predictor decides before each stage block.

    Subclasses set ``name``, ``Params`` (``keep_rate``, ``drop_loc``, ``artifact`` and, with
    ``squeeze``, ``temperature``), ``summary`` and the training constants below.
    """

    knob: ClassVar[str] = "keep_rate"
    conformance = Conformance(gmacs_overhead=0.06)  # the predictor MLPs (large next to tiny blocks)
    mixin: ClassVar[type] = DynamicViTMixin
    squeeze: ClassVar[bool] = False
    default_lr: ClassVar[float] = 1e-3  # --lr 1e-3 (absolute), predictors
    backbone_lr_scale: ClassVar[float] = 0.01
    token_loss: ClassVar[str] = "mse"
    #: training keeps pruned tokens in the sequence (masked out of attention, as the official
    #: code); only a class-token head ignores them, average pooling would read them in training
    #: but not at inference
    requirements = Requirements(
        vit_blocks=True,
        class_token_head=True,
        uses="its training keeps pruned tokens in the sequence, so the head must read the class token",
    )

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """The keep ratio is the base rate rho."""
        return {"keep_rate": float(keep_ratio)}

    @classmethod
    def params_for(cls, keep_ratio: float, model: nn.Module, overrides: Any = None) -> Any:
        """Params as usual, checked against ``model`` (no stage may keep zero tokens)."""
        params = super().params_for(keep_ratio, model, overrides)
        cls._plan(model, params)
        return params

    @classmethod
    def _plan(cls, model: nn.Module, params: Any) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """(depth, pruning locations, kept image tokens per stage) for ``model``."""
        depth = len(check_vit(model, cls.name))
        locs = stage_blocks(depth, params.drop_loc)
        if locs[0] == 0:
            raise VitbenchError(f"'{cls.name}' prunes before a block; drop_loc 0 has no block before it")
        n0 = input_tokens(model) - prefix_tokens(model)
        return depth, locs, keep_counts(n0, params.keep_rate, len(locs), cls.name)

    @classmethod
    def part_blocks(cls, model: nn.Module, params: Any) -> list[int]:
        """Decision blocks: the block before each pruning location."""
        return [loc - 1 for loc in cls._plan(model, params)[1]]

    @classmethod
    def new_part(cls, dim: int, gen: torch.Generator) -> nn.Module:
        """A ``PredictorLG`` with the official initialisation."""
        return PredictorLG(dim).reset(gen)

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch ``model`` from the first decision block on and attach the predictors."""
        depth, locs, keeps = cls._plan(model, params)
        st = DynamicState(cls.name, prefix_tokens(model), selection, seed, depth, params=params)
        st.tokens = input_tokens(model)  # keeps are int(n0 * rho^s) of this input's image tokens
        st.decide = {loc - 1: s for s, loc in enumerate(locs)}
        st.keeps, st.squeeze = keeps, cls.squeeze
        st.targets = tuple(params.keep_rate ** (s + 1) for s in range(len(locs)))
        st.temperature = float(getattr(params, "temperature", 1.0))
        first = locs[0] - 1
        handle = patch_blocks(model, st, lambda i: cls.mixin if i >= first else CountingMixin)
        try:
            cls.attach(model, params, handle)
        except BaseException:
            handle.close()
            raise
        return handle

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block for the model's input size (:func:`input_tokens`; inference)."""
        depth, locs, keeps = cls._plan(model, params)
        p, n = prefix_tokens(model), input_tokens(model) - prefix_tokens(model)
        out = []
        for i in range(depth):
            if i in locs:
                n = min(n, keeps[locs.index(i)])
            out.append(p + n)
        return out

    @classmethod
    def aux_losses(cls, handle: Handle, feats: torch.Tensor, teacher_feats: torch.Tensor) -> dict[str, Any]:
        """Keep-ratio loss over the stages' decisions; token distillation over last-stage keeps."""
        st: Any = handle.state  # a DynamicState
        decisions = st.extra.get("decisions", [])
        p = st.prefix
        if not decisions:
            zero = feats.new_zeros(())
            return {"ratio": zero, "token": zero}
        return {
            "ratio": keep_ratio_loss(decisions, list(st.targets[: len(decisions)])),
            "token": token_distill_loss(feats[:, p:], teacher_feats[:, p:], decisions[-1], cls.token_loss),
        }


__all__ = ["DynamicState", "DynamicViTMixin", "PredictorMethod", "decide", "keep_counts"]
