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
(model, weights, method, params, data) (see :mod:`vitbench.store.artifacts`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.models import create_model
from vitbench.data import load_dataset
from vitbench.methods import METHODS
from vitbench.methods.base import token_method
from vitbench.methods.trainable import INIT, TrainableMethod, model_shape
from vitbench.store import artifacts
from vitbench.train.config import TRAIN_OPTIONS, TrainConfig, coerce_options
from vitbench.train.loop import LoopRequest, TrainingInterrupted, run_loop


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

    acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    cls = token_method(cfg.method)
    if not issubclass(cls, TrainableMethod):
        trainable = ", ".join(_trainable_names())
        raise VitbenchError(f"method '{cls.name}' has nothing to train; trainable methods: {trainable}")
    data = training_data(cfg)
    model = create_model(
        cfg.model, cfg.weights, model_args=dict(cfg.model_args), data_config=dict(cfg.data_config)
    ).to(acc.device)
    _check_classes(model, data, cfg)
    params = cls.params_for(cfg.keep_ratio, model, {**dict(cfg.method_params), "artifact": INIT})
    key = artifacts.artifact_key(
        cfg.model,
        cfg.weights,
        cls.name,
        params,
        (cfg.dataset, cfg.split, cfg.limit),
        cfg.model_args,
        cfg.data_config,
        (cfg.root, cfg.class_order),
    )
    out = Path(out) if out is not None else artifacts.user_dir() / key.filename
    work_dir = Path(work_dir) if work_dir is not None else out.with_name(out.stem + ".ckpt")
    teacher = _frozen_copy(model)
    handle = cls.apply(model, params, "scored", cfg.seed)
    try:
        state = run_loop(
            LoopRequest(
                cfg=cfg,
                method=cls,
                handle=handle,
                model=model,
                teacher=teacher,
                data=data,
                accelerator=acc,
                work_dir=work_dir,
                key=key.digest,
                restart=restart,
                progress=progress,
                log=log,
                should_stop=should_stop,
            )
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

    return [n for n in METHODS.names() if getattr(METHODS.get(n), "trainable", False)]


def training_data(cfg: TrainConfig) -> Any:
    """The training images of ``cfg`` (dataset, root, split, limit): an ``ImageSet`` or ``FileImageSet``.

    Raises:
        VitbenchError: unknown dataset or root, or an empty split (one line with the fix).
    """
    data = load_dataset(
        cfg.dataset, root=cfg.root, split=cfg.split, limit=cfg.limit, class_order=cfg.class_order
    )
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
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "coerce_options",
    "finetune",
    "training_data",
]
