"""Fine-tuning of trainable token methods (DynamicViT, dTPS) with accelerate and distillation.

``finetune(TrainConfig(...))`` loads the model, keeps a frozen copy as the teacher, applies the
method with fresh parts (``artifact=init``) and trains with the method's paper losses:
CE + ratio_weight * keep-ratio loss + distill_weight * KL(teacher || student) on logits +
token_weight * token distillation (MSE for DynamicViT, channel-softmax KL for dTPS) over the
tokens kept at the last stage. AdamW, linear warmup then cosine decay to ``min_lr``; the parts
get ``lr`` and the backbone ``lr * backbone_lr_scale`` (DynamicViT 0.01, dTPS 1). One CPU
process by default; ``accelerate launch`` splits every batch across processes.

Every random draw is a function of (seed, step): batch order, Gumbel noise and augmentation.
A checkpoint (model, optimiser, schedule, step) is written every ``checkpoint_every`` steps and
on Ctrl-C (the current step finishes first); re-running the same command resumes from it and
gives the same artifact as an uninterrupted run. The result is an artifact keyed by
(model, weights, method, params, data) (see :mod:`vitbench.artifacts`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitbench import artifacts
from vitbench.errors import VitbenchError
from vitbench.methods.trainable import INIT, TrainableMethod, logit_distill_loss, model_shape
from vitbench.train_loop import TrainingInterrupted, run_loop


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One finetune run. ``model`` ... ``limit`` identify the artifact; the rest are hyper-parameters.

    Attributes:
        model: timm model name; weights: ``random``, ``demo``, ``hub`` or a file.
        method: registry key of a trainable method; keep_ratio: its keep ratio.
        method_params: native-parameter overrides (``--set``), sorted (name, value) pairs.
        dataset, split, root, limit: training data (a registered dataset adapter).
        epochs: passes over the data (fractions allowed); max_steps: cap on optimiser steps.
        batch_size: images per optimiser step (all processes together).
        lr: peak learning rate of the new parts (``None`` = the method's: DynamicViT 1e-3, dTPS
            2.5e-4, the official scripts' values); min_lr: end of the cosine decay.
        warmup_epochs: linear warmup length; weight_decay: AdamW decay (not on norms/biases/tokens).
        backbone_lr_scale, ratio_weight, distill_weight, token_weight: ``None`` = the method's default.
        clip_grad: gradient-norm clip (``None`` = off); augment: random affine warp of the inputs.
        save_backbone: store the fine-tuned backbone in the artifact (else only the parts).
        artifact_dtype: ``float16`` or ``float32`` storage of the artifact.
        checkpoint_every: steps between checkpoints; seed: every random draw derives from it.
    """

    model: str
    method: str
    weights: str = "random"
    keep_ratio: float = 0.7
    method_params: tuple[tuple[str, Any], ...] = ()
    dataset: str = "mnist-demo"
    split: str = "train"
    root: str | None = None
    limit: int | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 64
    lr: float | None = None
    min_lr: float = 1e-6
    warmup_epochs: float = 0.0
    weight_decay: float = 0.05
    backbone_lr_scale: float | None = None
    ratio_weight: float | None = None
    distill_weight: float | None = None
    token_weight: float | None = None
    clip_grad: float | None = None
    augment: bool = False
    save_backbone: bool = True
    artifact_dtype: str = "float16"
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": 1.0 if self.lr is None else self.lr,
        }
        positive["checkpoint_every"] = self.checkpoint_every
        for name, value in positive.items():
            if not value > 0:
                raise VitbenchError(f"finetune: {name} must be > 0, got {value!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise VitbenchError(f"finetune: max_steps must be >= 1, got {self.max_steps!r}")
        if self.limit is not None and self.limit < 1:
            raise VitbenchError(
                f"finetune: limit must be >= 1 (no training data otherwise), got {self.limit}"
            )
        if self.artifact_dtype not in ("float16", "float32"):
            raise VitbenchError(
                f"finetune: artifact_dtype must be float16 or float32, got {self.artifact_dtype!r}"
            )

    def identity(self) -> dict[str, Any]:
        """Fields that must match for a checkpoint to be resumed (everything but I/O-only ones)."""
        out = dataclasses.asdict(self)
        out.pop("root")
        out.pop("checkpoint_every")
        out["method_params"] = [list(p) for p in self.method_params]
        return out


#: Hyper-parameter fields a suite may set under ``train:`` (identity fields come from the cell).
TRAIN_OPTIONS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(TrainConfig)
    if f.name
    not in {"model", "method", "weights", "keep_ratio", "method_params", "dataset", "split", "root", "limit"}
)


def coerce_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate ``train:`` options: known names (close-match hint) and types (YAML ``1e-3`` is a str)."""
    import difflib

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in TRAIN_OPTIONS:
            close = difflib.get_close_matches(key, TRAIN_OPTIONS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise VitbenchError(
                f"{where}: unknown training option '{key}'{hint} allowed: {', '.join(TRAIN_OPTIONS)}"
            )
        default = defaults[key]
        try:
            if value is None or isinstance(default, str):
                out[key] = value
            elif isinstance(default, bool):
                out[key] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            elif isinstance(default, int) or key == "max_steps":
                out[key] = int(value)
            else:
                out[key] = float(value)
        except (TypeError, ValueError):
            raise VitbenchError(f"{where}: training option {key}={value!r} is not a number") from None
    return out


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finetune produced: artifact path and key, steps, losses, timing."""

    path: Path
    key: str
    steps: int
    resumed_from: int
    losses: dict[str, float]
    train_s: float
    img_per_s: float


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
    from vitbench.methods.trainable import PART

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


def finetune(
    cfg: TrainConfig,
    out: Path | None = None,
    work_dir: Path | None = None,
    restart: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    accelerator: Any = None,
    should_stop: Callable[[int], bool] | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train the parts of ``cfg.method`` and write the artifact.

    Args:
        cfg: the run.
        out: artifact path (default: the user artifact folder, file name from the key).
        work_dir: checkpoint folder (default: next to ``out``, ``<stem>.ckpt``); removed on success.
        restart: ignore an existing checkpoint instead of resuming from it.
        progress: tqdm bar over steps (main process only).
        log: one-line messages (main process only).
        accelerator: an ``accelerate.Accelerator`` (created when ``None``).
        should_stop: called with the number of completed steps; ``True`` stops like Ctrl-C.
        threads: torch intra-op threads while training (``None`` keeps torch's setting); on a
            CPU shared with other work, 1 thread can be several times faster than 2.

    Returns:
        :class:`TrainResult`.

    Raises:
        TrainingInterrupted: stopped by Ctrl-C or ``should_stop``; a checkpoint was saved.
        VitbenchError: bad configuration, no training data, foreign checkpoint.
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _finetune(cfg, out, work_dir, restart, progress, log, accelerator, should_stop)
    finally:
        torch.set_num_threads(old_threads)


def _finetune(
    cfg: TrainConfig,
    out: Path | None,
    work_dir: Path | None,
    restart: bool,
    progress: bool,
    log: Callable[[str], None],
    accelerator: Any,
    should_stop: Callable[[int], bool] | None,
) -> TrainResult:
    from accelerate import Accelerator

    from vitbench.methods.base import token_method
    from vitbench.models import create_model

    acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    cls = token_method(cfg.method)
    if not issubclass(cls, TrainableMethod):
        trainable = ", ".join(_trainable_names())
        raise VitbenchError(f"method '{cls.name}' has nothing to train; trainable methods: {trainable}")
    data = _training_data(cfg)
    model = create_model(cfg.model, cfg.weights).to(acc.device)
    _check_classes(model, data, cfg)
    params = cls.params_for(cfg.keep_ratio, model, {**dict(cfg.method_params), "artifact": INIT})
    key = artifacts.artifact_key(
        cfg.model, cfg.weights, cls.name, params, (cfg.dataset, cfg.split, cfg.limit)
    )
    out = Path(out) if out is not None else artifacts.user_dir() / key.filename
    work_dir = Path(work_dir) if work_dir is not None else out.with_name(out.stem + ".ckpt")
    teacher = _frozen_copy(model)
    handle = cls.apply(model, params, "scored", cfg.seed)
    try:
        state = run_loop(
            cfg,
            cls,
            handle,
            model,
            teacher,
            data,
            acc,
            work_dir,
            key.digest,
            restart,
            progress,
            log,
            should_stop,
        )
        if acc.is_main_process:
            meta = {
                "method": cls.name,
                "key": dataclasses.asdict(key),
                "sha256": key.digest,
                "model_shape": {**model_shape(model), "stages": len(cls.part_blocks(model, params))},
                "params": dataclasses.asdict(params) | {"artifact": ""},
                "train": cfg.identity(),
                "steps": state.steps,
                "final_losses": state.losses,
                "train_s": round(state.train_s, 2),
            }
            tensors = cls.export(model, params, cfg.save_backbone)
            artifacts.save(out, tensors, meta, getattr(torch, cfg.artifact_dtype))
            _remove_checkpoints(work_dir)
            log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, key {key.digest[:16]})")
        acc.wait_for_everyone()
    finally:
        handle.close()
        if accelerator is not None:  # drop the references prepare() kept (student, optimiser)
            acc.free_memory()
    img_s = state.images / state.train_s if state.train_s > 0 else 0.0
    return TrainResult(out, key.digest, state.steps, state.resumed_from, state.losses, state.train_s, img_s)


def _trainable_names() -> list[str]:
    from vitbench.methods import METHODS

    return [n for n in METHODS.names() if getattr(METHODS.get(n), "trainable", False)]


def _training_data(cfg: TrainConfig) -> Any:
    from vitbench.data import load_dataset

    data = load_dataset(cfg.dataset, root=cfg.root, split=cfg.split, limit=cfg.limit)
    if len(data) == 0:
        raise VitbenchError(
            f"no training data: dataset '{cfg.dataset}' split '{cfg.split}' is empty; "
            "check its root and limit"
        )
    return data


def _check_classes(model: nn.Module, data: Any, cfg: TrainConfig) -> None:
    n_cls = int(getattr(model, "num_classes", 0) or 0)
    top = int(np.max(data.labels)) + 1
    if n_cls and top > n_cls:
        raise VitbenchError(
            f"dataset '{cfg.dataset}' has labels up to {top - 1} but {cfg.model} has {n_cls} classes; "
            "pick matching data or model"
        )


def _frozen_copy(model: nn.Module) -> nn.Module:
    import copy

    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher


def _remove_checkpoints(work_dir: Path) -> None:
    for f in work_dir.glob("*.pt"):
        f.unlink()
    if work_dir.is_dir() and not any(work_dir.iterdir()):
        work_dir.rmdir()


__all__ = [
    "TRAIN_OPTIONS",
    "Student",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "coerce_options",
    "finetune",
    "loss_weights",
    "lr_factor",
    "param_groups",
    "peak_lr",
    "training_losses",
]


def finetune_command(cell: Any, data: Any) -> str:
    """The ``vitbench finetune`` command that makes the artifact ``cell`` needs."""
    parts = [
        "vitbench finetune",
        f"--model {cell.model.name}",
        f"--weights {cell.model.weights}",
        f"--method {cell.method.name}",
        f"--keep {cell.keep_ratio:g}",
        *(f"--set {k}={v}" for k, v in cell.method.params),
        f"--data {data.name}",
        f"--split {data.split}",
    ]
    if data.root:
        parts.append(f"--root {data.root}")
    if data.limit:
        parts.append(f"--limit {data.limit}")
    return " ".join(parts)


def trained_params(
    suite: Any, cell: Any, cls: Any, params: Any, acc: Any, progress: bool, log: Callable[[str], None]
) -> Any:
    """``params`` with ``artifact`` set to the trained artifact of ``cell`` (found, or trained now).

    The key is (model, weights, method, params, the suite's training data). Without an artifact
    and without ``train:`` in the suite this fails with the exact ``vitbench finetune`` command.
    """
    if params.artifact:
        return params
    data = suite.train_data()
    key = artifacts.artifact_key(
        cell.model.name, cell.model.weights, cls.name, params, (data.name, data.split, data.limit)
    )
    path = artifacts.find_artifact(key)
    if path is None and suite.train is None:
        raise VitbenchError(
            f"no trained artifact for {cls.name} ({cls.setting(params)}) on {cell.model.name} "
            f"(key {key.digest[:16]}); make it with `{finetune_command(cell, data)}` "
            "or add train: to the suite"
        )
    if path is None:
        cfg = TrainConfig(
            model=cell.model.name,
            method=cls.name,
            weights=cell.model.weights,
            keep_ratio=cell.keep_ratio,
            method_params=tuple(cell.method.params),
            dataset=data.name,
            split=data.split,
            root=data.root,
            limit=data.limit,
            **dict(suite.train.options),
        )
        log(f"training {cls.name} ({cls.setting(params)}) on {data.name}/{data.split} -> {key.filename}")
        path = finetune(cfg, progress=progress, log=log, accelerator=acc).path
        if path.name != key.filename:
            raise VitbenchError(f"internal: trained artifact {path.name} does not match key {key.filename}")
    return dataclasses.replace(params, artifact=path.name)
