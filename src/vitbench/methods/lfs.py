"""LFS channel pruning (VTC-LFC) and its spatial-domain first-order Taylor baseline.

Wang et al., "VTC-LFC: Vision Transformer Compression with Low-Frequency Components",
NeurIPS 2022 (official code: Daner-Wang/VTC-LFC, ``pruning/tools/deit_pruning_tools.py``:
``filtering``, ``Pruning.get_weight_mgrad``, ``taylor_score``, ``get_mask_and_newcfg``; see
``references/methods.md`` section 2.2).

Low-frequency sensitivity of a weight ``W_ji`` is the first-order Taylor term of a loss on
low-pass images: for every calibration batch (x, y) the student (the model in train mode, with
stochastic depth ``drop_path``) sees ``G(x)`` (:func:`vitbench.methods.slimming.lowpass.lowpass_images`, by
default the ``official`` filter the paper's code ran) and a frozen copy (eval mode) sees ``x``;

    L = lambda * CE(student(G(x)), y) + (1 - lambda) * KL(teacher_feat(x) || student_feat(G(x)))

with ``lambda = 0.1`` and the KL over the channel softmax (temperature 1, summed, divided by the
feature's numel) of the CLS feature: the final normalised CLS token in one-shot pruning, the CLS
token after block ``l`` when the cascade prunes block ``l``. One backward per batch; the
gradients are averaged over batches (Gbar) and ``S_j = sum_i (W_ji * Gbar_ji)^2`` per output
channel of ``qkv`` and ``fc1``; a q channel and the k channel with the same index share
``S_q + S_k``.

Scoring mode (``pruning/pruning_py/pruning_deit.py``, ``--drop-path 0.1``; ``get_weight_mgrad``
runs the student in train mode): the student's blocks get stochastic depth with DeiT's linear
rule, rate ``drop_path * i / (depth - 1)`` in block ``i`` (timm's ``drop_path_rate``), the same
per-sample drop of each residual branch with survivors scaled by ``1 / (1 - rate)``
(:class:`~vitbench.methods.slimming.taylor.SeededDropPath`). Its draws come from a CPU
``torch.Generator`` seeded with ``seed``, so scores are reproducible and identical on every
device, and the global RNG is not touched.
``drop_path = 0`` gives deterministic gradients.

Structure (``get_mask_and_newcfg``): channels with ``S >= threshold`` survive (threshold = the
``P``-th smallest score, ``P`` channels to remove); in each block the MLP keeps its surviving
units (at least one) and the attention is rebuilt with ``h`` heads of uniform widths: with
``c_qk``/``c_v`` the surviving q+k / v channels, every ``h`` from ``ceil(max(c_q, c_k, c_v) / d)``
to ``H`` gives ``d_qk = max(round(c_qk / 2h), 1)`` and ``d_v = max(round(c_v / h), 1)``; each
head keeps its top-``d_qk`` q/k and top-``d_v`` v channels; the head subset with the highest
retained score is chosen (the official exhaustive search over combinations; the best subset is
the ``h`` heads with the highest per-head retained score, which is what is computed), and the
``h`` with the smallest lost score wins (the smallest ``h`` on ties). The attention scale stays
at the original ``head_dim**-0.5`` (``--keep-qk-scale``).

``taylor``: the same pipeline in the spatial domain (plain first-order Taylor importance,
Molchanov et al. 2019, as the VTC-LFC paper's "Taylor" criterion): CE on the original images,
no low-pass filter, no distillation.

The scores and the structuring live in :mod:`vitbench.methods.slimming.taylor`, shared with the
VTC-LFC cascade.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.base import ChannelMethod, register
from vitbench.methods.requirements import Requirements
from vitbench.methods.slimming.slim import SlimPlan, source_plan
from vitbench.methods.slimming.taylor import TAYLOR, Batches, Criterion, one_shot_prune


@dataclasses.dataclass(frozen=True)
class LFSParams:
    """LFS native parameters.

    Attributes:
        keep_channels: fraction of the prunable channels (qkv and fc1 outputs of every block)
            that survive the threshold (before the per-head structuring rounds it).
        cutoff: low-pass cutoff factor (``--cutoff-channel``, 0.1); sigma = side * cutoff / 2.
        lfs_lambda: CE weight (``--lfs-lambda``, 0.1); the CLS-feature distillation gets 1 - lambda.
        tau: distillation temperature (1.0).
        num_samples: calibration images used at most (``--num-samples``, 2000; 0 = all).
        lowpass: image low-pass filter: ``official`` (what the paper's code ran: one-sided real
            inverse transform) or ``symmetric`` (real part of the full inverse transform).
        drop_path: stochastic depth of the scored student (``--drop-path``, 0.1; 0 = none).
        seed: seed of the stochastic-depth draws.
        finetune_epochs: fine-tune after pruning with distillation from the dense model
            (harness; 0 = none).
    """

    keep_channels: float = 0.7
    cutoff: float = 0.1
    lfs_lambda: float = 0.1
    tau: float = 1.0
    num_samples: int = 2000
    lowpass: str = "official"
    drop_path: float = 0.1
    seed: int = 0
    finetune_epochs: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_channels <= 1.0:
            raise ValueError(f"keep_channels {self.keep_channels} is outside (0, 1]")
        self.criterion()  # one-line errors for sigma <= 0, lambda outside [0, 1], ...

    def criterion(self) -> Criterion:
        """The score definition."""
        return Criterion(
            True,
            self.cutoff,
            self.lfs_lambda,
            self.tau,
            self.num_samples,
            self.lowpass,
            self.drop_path,
            self.seed,
        )


@dataclasses.dataclass(frozen=True)
class TaylorParams:
    """Spatial first-order Taylor native parameters.

    Attributes:
        keep_channels: fraction of the prunable channels (qkv and fc1 outputs) kept.
        num_samples: calibration images used at most (0 = all).
        finetune_epochs: fine-tune after pruning (harness; 0 = none).
    """

    keep_channels: float = 0.7
    num_samples: int = 2000
    finetune_epochs: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_channels <= 1.0:
            raise ValueError(f"keep_channels {self.keep_channels} is outside (0, 1]")
        self.criterion()

    def criterion(self) -> Criterion:
        """CE on the original images, no low-pass, no distillation."""
        return dataclasses.replace(TAYLOR, num_samples=self.num_samples)


def plan_of(pruned: nn.Module) -> SlimPlan:
    """The slim plan (indices into the input model) recorded on a model this module pruned."""
    plan = source_plan(pruned)
    if plan is None:
        raise VitbenchError("this model carries no slim plan; it was not built by slim_model")
    return plan


class TaylorFamily(ChannelMethod):
    """One-shot channel pruning of qkv and fc1 by a first-order Taylor criterion."""

    knob: ClassVar[str] = "keep_channels"
    needs_calibration: ClassVar[bool] = True

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """The keep ratio is the fraction of prunable channels kept."""
        return {"keep_channels": float(keep_ratio)}

    @classmethod
    def prune(cls, model: nn.Module, params: Any, calib: Batches | None) -> nn.Module:
        """A slimmed copy of ``model`` (``model`` is not modified)."""
        pruned, _plan = one_shot_prune(model, params.keep_channels, calib, params.criterion())
        return pruned


@register
class LFS(TaylorFamily):
    """VTC-LFC's LFS: Taylor importance of a low-pass CE + CLS distillation loss (qkv, fc1)."""

    name = "lfs"
    Params = LFSParams
    requirements = Requirements(
        vit_blocks=True,
        slimmable=True,
        class_token=True,
        uses="its distillation term reads the class token's feature",
    )
    summary = (
        "low-frequency sensitivity (Taylor on low-pass images + CLS distillation), qkv/fc1 (Wang et al. 2022)"
    )


@register
class Taylor(TaylorFamily):
    """Spatial-domain first-order Taylor importance (CE on original images), qkv/fc1."""

    name = "taylor"
    Params = TaylorParams
    summary = "first-order Taylor importance (CE on original images), qkv/fc1; LFS's spatial baseline"


__all__ = ["LFS", "LFSParams", "Taylor", "TaylorFamily", "TaylorParams", "plan_of"]
