"""First-order Taylor channel scores of qkv and fc1, plain or on low-pass images (VTC-LFC's LFS).

Wang et al., "VTC-LFC: Vision Transformer Compression with Low-Frequency Components",
NeurIPS 2022 (official code: Daner-Wang/VTC-LFC, ``pruning/tools/deit_pruning_tools.py``); the
definitions (loss, stochastic depth of the scored student, per-head structuring, threshold) are
given in :mod:`vitbench.methods.lfs`. This is the machinery LFS, its Taylor baseline and the
VTC-LFC cascade (:mod:`vitbench.methods.vtclfc`) share; method modules import it, never each other.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.slimming.lowpass import check_cutoff, check_filter, lowpass_images
from vitbench.methods.slimming.slim import BlockPlan, SlimPlan, model_dims, slim_model

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class Criterion:
    """How channel scores are computed.

    Attributes:
        lowpass: feed the student ``G(x)`` (LFS) instead of ``x`` (Taylor).
        cutoff: low-pass cutoff factor (sigma = side * cutoff / 2).
        lfs_lambda: weight of the CE term; the distillation term gets ``1 - lfs_lambda``.
        tau: distillation temperature.
        num_samples: at most this many calibration images are used (0 = all the loader gives).
        filter: image low-pass variant, ``official`` or ``symmetric``
            (:func:`vitbench.methods.slimming.lowpass.lowpass_images`).
        drop_path: the student's stochastic-depth rate of the last block (linear from 0 in
            block 0); 0 = none.
        seed: seed of the stochastic-depth draws.
    """

    lowpass: bool = True
    cutoff: float = 0.1
    lfs_lambda: float = 0.1
    tau: float = 1.0
    num_samples: int = 2000
    filter: str = "official"
    drop_path: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_cutoff(self.cutoff)
        check_filter(self.filter)
        if not 0.0 <= self.drop_path < 1.0:
            raise VitbenchError(
                f"drop_path {self.drop_path} is outside [0, 1) (stochastic depth of the scored student); "
                "use 0.1"
            )
        if not 0.0 <= self.lfs_lambda <= 1.0:
            raise VitbenchError(
                f"lfs_lambda {self.lfs_lambda} is outside [0, 1] (loss = lambda*CE + (1-lambda)*KD); use 0.1"
            )
        if not self.tau > 0:
            raise VitbenchError(f"distillation temperature tau {self.tau} must be positive; use 1.0")
        if self.num_samples < 0:
            raise VitbenchError(f"num_samples {self.num_samples} is negative; use 0 (all) or e.g. 2000")


TAYLOR = Criterion(lowpass=False, lfs_lambda=1.0)


class SeededDropPath(nn.Module):
    """Stochastic depth (per-sample residual-branch drop) drawing from an explicit generator.

    Modifications: (vs ``timm.layers.DropPath``, Huang et al. 2016 as used by DeiT) the keep
    decisions come from ``torch.rand`` on the given CPU ``torch.Generator`` (then moved to the
    input's device) instead of the device's global RNG; survivors are scaled by
    ``1 / (1 - rate)`` as timm's ``scale_by_keep`` default does. Active in train mode only.

    Args:
        rate: drop probability of the branch per sample, in [0, 1).
        generator: CPU generator shared by all the model's drop-path modules.
    """

    def __init__(self, rate: float, generator: torch.Generator) -> None:
        super().__init__()
        self.rate = float(rate)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [B, ...] with whole samples zeroed with probability ``rate``, the rest rescaled."""
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        draw = torch.rand(x.shape[0], generator=self.generator, dtype=torch.float64) < keep
        scale = draw.to(device=x.device, dtype=x.dtype) / keep
        return x * scale.view(-1, *([1] * (x.dim() - 1)))

    def extra_repr(self) -> str:  # noqa: D102
        return f"rate={self.rate:g}"


def add_drop_path(model: nn.Module, drop_path: float, seed: int) -> None:
    """Give every block of ``model`` (in place) stochastic depth at DeiT's linear rates.

    Block ``i`` of ``depth`` gets rate ``drop_path * i / (depth - 1)`` (timm's
    ``drop_path_rate`` rule, ``torch.linspace(0, drop_path, depth)``) on both residual branches
    (``drop_path1``, ``drop_path2``); all draws come from one CPU generator seeded with ``seed``.

    Raises:
        VitbenchError: a block without ``drop_path1``/``drop_path2`` (not a timm ViT block).
    """
    blocks: Any = model.blocks  # type: ignore[union-attr]
    rates = torch.linspace(0.0, drop_path, len(blocks), dtype=torch.float64).tolist()
    generator = torch.Generator().manual_seed(int(seed))
    for i, (blk, rate) in enumerate(zip(blocks, rates)):
        if not (hasattr(blk, "drop_path1") and hasattr(blk, "drop_path2")):
            raise VitbenchError(f"block {i} has no drop_path1/drop_path2; use drop_path 0 for this model")
        blk.drop_path1 = SeededDropPath(rate, generator)
        blk.drop_path2 = SeededDropPath(rate, generator)


def _feature_hook(model: nn.Module, block: int | None, store: dict[str, torch.Tensor]) -> Any:
    """Hook that stores the CLS feature: after ``block`` (pre-norm), or after the final norm."""
    module: Any = model.blocks[block] if block is not None else model.norm  # type: ignore[index]

    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        store["feat"] = out[:, 0]

    return module.register_forward_hook(hook)


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """Sum of KL(softmax(t / tau) || softmax(s / tau)) * tau^2 / numel(s) over [B, C] features."""
    return (
        F.kl_div(
            F.log_softmax(student / tau, dim=1),
            F.log_softmax(teacher / tau, dim=1),
            reduction="sum",
            log_target=True,
        )
        * tau
        * tau
        / student.numel()
    )


def mean_gradients(
    model: nn.Module,
    calib: Batches | None,
    crit: Criterion,
    names: list[str],
    feature_block: int | None = None,
    teacher: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Mean over calibration batches of dL/dW for the parameters ``names`` of ``model``.

    ``model`` is not modified: a deep copy runs in train mode as the student (with
    ``crit.drop_path`` stochastic depth, see :func:`add_drop_path`), a second frozen copy (or
    ``teacher``) in eval mode gives the distillation targets on the original images.

    Args:
        model: the model to score.
        calib: yields ``(images [B, 3, H, W] normalised, labels [B])``.
        crit: loss definition.
        names: parameter names to collect (e.g. ``blocks.0.attn.qkv.weight``).
        feature_block: CLS feature after this block; ``None`` = after the final norm.
        teacher: frozen model for the distillation target (default: a copy of ``model``).

    Returns:
        name -> mean gradient (same shape as the parameter, float32).
    """
    if calib is None:
        raise VitbenchError(
            "this channel criterion needs calibration data; the calibration loader is missing"
        )
    first = next(model.parameters())
    device, dtype = first.device, first.dtype
    student = copy.deepcopy(model).train()
    if crit.drop_path > 0:
        add_drop_path(student, crit.drop_path, crit.seed)
    distill = crit.lfs_lambda < 1.0
    if distill and teacher is None:
        teacher = copy.deepcopy(model).eval()
    params = dict(student.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise VitbenchError(f"model has no parameter {missing[0]}; cannot score it")
    for n, p in params.items():
        p.requires_grad_(n in names)
    sums = {n: torch.zeros_like(params[n], dtype=torch.float32) for n in names}
    s_store: dict[str, torch.Tensor] = {}
    t_store: dict[str, torch.Tensor] = {}
    hooks = [_feature_hook(student, feature_block, s_store)]
    if distill:
        assert teacher is not None
        hooks.append(_feature_hook(teacher, feature_block, t_store))
    batches = seen = 0
    try:
        for images, labels in calib:
            if crit.num_samples and seen >= crit.num_samples:
                break
            if crit.num_samples:
                images, labels = images[: crit.num_samples - seen], labels[: crit.num_samples - seen]
            x, y = images.to(device=device, dtype=dtype), labels.to(device)
            if distill:
                assert teacher is not None
                with torch.no_grad():
                    teacher(x)
            x_in = lowpass_images(x, crit.cutoff, crit.filter) if crit.lowpass else x
            student.zero_grad(set_to_none=True)
            loss = F.cross_entropy(student(x_in), y)
            if distill:
                kd = distill_kl(s_store["feat"], t_store["feat"].detach(), crit.tau)
                loss = crit.lfs_lambda * loss + (1.0 - crit.lfs_lambda) * kd
            loss.backward()
            for n in names:
                grad = params[n].grad
                if grad is not None:
                    sums[n] += grad.float()
            batches += 1
            seen += int(x.shape[0])
    finally:
        for h in hooks:
            h.remove()
    if batches == 0:
        raise VitbenchError("the calibration loader is empty; give the channel criterion at least one batch")
    return {n: s / batches for n, s in sums.items()}


def channel_scores(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``S_j = sum_i (W_ji * G_ji)^2`` per output row of a Linear weight [out, in] -> [out]."""
    return (weight.detach().float() * grad.float()).pow(2).flatten(1).sum(dim=1)


def qkv_scores(weight: torch.Tensor, grad: torch.Tensor, heads: int, d_qk: int) -> torch.Tensor:
    """Row scores of a ``[q | k | v]`` qkv weight with q and k channel ``i`` sharing ``S_q + S_k``."""
    s = channel_scores(weight, grad)
    c = heads * d_qk
    qk = s[:c] + s[c : 2 * c]
    return torch.cat([qk, qk, s[2 * c :]])


def block_score_names(block: int) -> list[str]:
    """Parameter names scored in ``block`` (qkv and fc1 weights)."""
    return [f"blocks.{block}.attn.qkv.weight", f"blocks.{block}.mlp.fc1.weight"]


def lfs_scores(
    model: nn.Module,
    calib: Batches | None,
    crit: Criterion,
    blocks: list[int] | None = None,
    feature_block: int | None = None,
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per-block (qkv row scores [h*(2 d_qk + d_v)], fc1 row scores [m]) of ``blocks`` (default all).

    One backward per calibration batch (see :func:`mean_gradients`).
    """
    dims = model_dims(model)
    blocks = list(range(len(dims.blocks))) if blocks is None else blocks
    names = [n for b in blocks for n in block_score_names(b)]
    grads = mean_gradients(model, calib, crit, names, feature_block)
    weights = dict(model.named_parameters())
    out = {}
    for b in blocks:
        h, dqk, _dv, _m = dims.blocks[b]
        qn, fn = block_score_names(b)
        out[b] = (qkv_scores(weights[qn], grads[qn], h, dqk), channel_scores(weights[fn], grads[fn]))
    return out


def structure_block(
    qkv_score: torch.Tensor, fc1_score: torch.Tensor, threshold: float, heads: int, d_qk: int, d_v: int
) -> BlockPlan:
    """The kept heads, per-head q/k and v channels and MLP units of one block (official search).

    Args:
        qkv_score: [h*(2 d_qk + d_v)] scores in qkv row order (q/k pairs already shared).
        fc1_score: [m] scores.
        threshold: channels with score >= threshold survive the first cut.
        heads: the block's current head count.
        d_qk: its current per-head q/k width.
        d_v: its current per-head v width.
    """
    c = heads * d_qk
    s_q = qkv_score[:c].reshape(heads, d_qk)
    s_k = qkv_score[c : 2 * c].reshape(heads, d_qk)
    s_v = qkv_score[2 * c :].reshape(heads, d_v)
    m_q, m_k, m_v = s_q >= threshold, s_k >= threshold, s_v >= threshold
    if not bool(m_v.any()):  # the official code keeps the single best v channel
        m_v = torch.zeros_like(m_v).flatten()
        m_v[s_v.flatten().argmax()] = True
        m_v = m_v.view(heads, d_v)
    if not bool(m_q.any() or m_k.any()):  # ... and the two best q/k channels (one q/k pair)
        top2 = torch.cat([s_q, s_k]).flatten().topk(2).indices
        m = torch.zeros(2 * c, dtype=torch.bool)
        m[top2] = True
        m_q, m_k = m[:c].view(heads, d_qk), m[c:].view(heads, d_qk)
    c_q, c_k, c_v = int(m_q.sum()), int(m_k.sum()), int(m_v.sum())
    c_qk = c_q + c_k
    kept_total = float(s_q[m_q].sum() + s_k[m_k].sum() + s_v[m_v].sum())
    order_qk = torch.argsort(s_q, dim=1, descending=True, stable=True)  # s_q == s_k by construction
    order_v = torch.argsort(s_v, dim=1, descending=True, stable=True)
    sorted_q, sorted_k = s_q.gather(1, order_qk), s_k.gather(1, order_qk)
    sorted_v = s_v.gather(1, order_v)
    h_min = max(1, math.ceil(max(c_q / d_qk, c_k / d_qk, c_v / d_v)))
    best: tuple[float, int, list[int], int, int] | None = None
    for h in range(h_min, heads + 1):
        dq = min(max(round(c_qk / h / 2), 1), d_qk)
        dv = min(max(round(c_v / h), 1), d_v)
        per_head = sorted_q[:, :dq].sum(1) + sorted_k[:, :dq].sum(1) + sorted_v[:, :dv].sum(1)  # [H]
        top = torch.topk(per_head, h, sorted=True, largest=True).indices
        loss = kept_total - float(per_head[top].sum())
        if best is None or loss < best[0]:
            best = (loss, h, sorted(int(t) for t in top), dq, dv)
    assert best is not None
    _, _h, chosen, dq, dv = best
    qk = tuple(tuple(sorted(int(i) for i in order_qk[hd, :dq])) for hd in chosen)
    v = tuple(tuple(sorted(int(i) for i in order_v[hd, :dv])) for hd in chosen)
    mlp_mask = fc1_score >= threshold
    if not bool(mlp_mask.any()):
        mlp_mask[fc1_score.argmax()] = True
    mlp = tuple(int(i) for i in mlp_mask.nonzero().flatten())
    return BlockPlan(tuple(chosen), qk, v, mlp)


def plan_from_scores(
    model: nn.Module, scores: dict[int, tuple[torch.Tensor, torch.Tensor]], threshold: float
) -> SlimPlan:
    """Slim plan: blocks in ``scores`` structured at ``threshold``, the others kept whole."""
    dims = model_dims(model)
    base = SlimPlan.identity(model)
    blocks = list(base.blocks)
    for b, (sq, sf) in scores.items():
        h, dqk, dv, _m = dims.blocks[b]
        blocks[b] = structure_block(sq, sf, threshold, h, dqk, dv)
    return SlimPlan(base.embed, tuple(blocks))


def threshold_for(scores: torch.Tensor, n_remove: int) -> float:
    """The official threshold: the ``n_remove``-th smallest score (0-based); ``S >= t`` survive."""
    if n_remove <= 0:
        return float("-inf")
    ordered = torch.sort(scores.flatten()).values
    if n_remove >= ordered.numel():
        return float("inf")
    return float(ordered[n_remove])


def prunable_channels(model: nn.Module) -> int:
    """Output channels of every block's qkv and fc1 (what LFS may remove)."""
    dims = model_dims(model)
    return sum(h * (2 * dqk + dv) + m for h, dqk, dv, m in dims.blocks)


def one_shot_prune(
    model: nn.Module, keep: float, calib: Batches | None, crit: Criterion
) -> tuple[nn.Module, SlimPlan]:
    """Global one-shot pruning (the official non-cascade mode).

    Removes ``round((1 - keep) * P)`` of the ``P`` prunable channels with the lowest scores over
    all blocks, then structures every block (:func:`structure_block`).
    """
    if keep >= 1.0:
        plan = SlimPlan.identity(model)
        return slim_model(model, plan), plan
    scores = lfs_scores(model, calib, crit, None, None)
    everything = torch.cat([torch.cat([sq, sf]) for sq, sf in scores.values()])
    n_remove = round((1.0 - keep) * prunable_channels(model))
    plan = plan_from_scores(model, scores, threshold_for(everything, n_remove))
    return slim_model(model, plan), plan


__all__ = [
    "Batches",
    "TAYLOR",
    "Criterion",
    "SeededDropPath",
    "add_drop_path",
    "block_score_names",
    "channel_scores",
    "distill_kl",
    "lfs_scores",
    "mean_gradients",
    "one_shot_prune",
    "plan_from_scores",
    "prunable_channels",
    "qkv_scores",
    "structure_block",
    "threshold_for",
]
