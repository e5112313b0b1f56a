"""One training step's pieces: the student wrapper, the loss, AdamW groups, the lr schedule.

Shared by :func:`vitbench.train.finetune.finetune` and the bare-loop benchmark (``vitbench bench-train``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.methods.trainable import PART, TrainableMethod, logit_distill_loss

if TYPE_CHECKING:
    from vitbench.train.config import TrainConfig


class Student(nn.Module):
    """Wraps the patched model so one ``forward`` gives (logits [B, K], final-normed tokens [B, N, C])."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        feats = self.model.forward_features(x)  # type: ignore[operator]
        return self.model.forward_head(feats), feats  # type: ignore[operator]


def loss_weights(cfg: TrainConfig, cls: type[TrainableMethod]) -> dict[str, float]:
    """Weights of ``ratio``, ``distill`` and ``token``: the config's, else the method's defaults."""
    given = {"ratio": cfg.ratio_weight, "distill": cfg.distill_weight, "token": cfg.token_weight}
    return {k: float(v if v is not None else cls.loss_weights[k]) for k, v in given.items()}


def training_losses(
    cls: type[TrainableMethod],
    handle: Any,
    student: nn.Module,
    teacher: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: dict[str, float],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training forward: the weighted total loss and its unweighted terms.

    Args:
        cls: the trainable method (its ``aux_losses``).
        handle: the method's handle on the student (decisions of the forward).
        student: :class:`Student` (or its accelerate wrapper) giving (logits, tokens).
        teacher: the frozen dense model.
        x: normalised images [B, 3, H, W].
        y: int64 labels [B].
        weights: from :func:`loss_weights`.
    """
    logits, feats = student(x)
    with torch.no_grad():
        t_feats = teacher.forward_features(x)  # type: ignore[operator]
        t_logits = teacher.forward_head(t_feats)  # type: ignore[operator]
    terms = {"ce": F.cross_entropy(logits, y), "distill": logit_distill_loss(logits, t_logits)}
    terms.update(cls.aux_losses(handle, feats, t_feats))
    total = terms["ce"] + sum(weights[k] * terms[k] for k in ("ratio", "distill", "token"))
    return total, terms


def peak_lr(cfg: TrainConfig, cls: type[TrainableMethod]) -> float:
    """The parts' peak learning rate: the config's, else the method's default."""
    return float(cfg.lr if cfg.lr is not None else cls.default_lr)


def param_groups(model: nn.Module, cfg: TrainConfig, cls: type[TrainableMethod]) -> list[dict[str, Any]]:
    """AdamW groups: parts vs backbone (lr scale), with / without weight decay."""
    scale = cls.backbone_lr_scale if cfg.backbone_lr_scale is None else cfg.backbone_lr_scale
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = f".{PART}." in name
        decay = p.ndim > 1 and name not in ("cls_token", "pos_embed", "reg_token", "dist_token")
        groups.setdefault((part, decay), []).append(p)
    return [
        {
            "params": ps,
            "lr": peak_lr(cfg, cls) * (1.0 if part else scale),
            "weight_decay": cfg.weight_decay if decay else 0.0,
        }
        for (part, decay), ps in sorted(groups.items())
        if part or scale > 0
    ]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from 1 to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


__all__ = ["Student", "loss_weights", "lr_factor", "param_groups", "peak_lr", "training_losses"]
