"""The finetune step loop: seeded batches, optimisation, checkpoints, resume, graceful Ctrl-C.

Used by :func:`vitbench.train.finetune.finetune`; everything random is a function of (seed, step) (the
Gumbel noise of (seed, step, sample id)), so a run resumed from a checkpoint reproduces the
uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.models import data_config
from vitbench.data import FileImageSet, ImageSet
from vitbench.data.prep import prepare_images
from vitbench.data.samples import to_tensor
from vitbench.data.subsets import FolderBatches
from vitbench.train.config import TrainConfig
from vitbench.train.demo import shift_batch
from vitbench.train.steps import Student, loss_weights, lr_factor, param_groups, peak_lr, training_losses


class TrainingInterrupted(VitbenchError):
    """Finetune stopped early (Ctrl-C or ``should_stop``) after saving a checkpoint."""


@dataclasses.dataclass
class LoopState:
    """Progress of one run: steps done, where it resumed, last losses, loop time, images seen."""

    steps: int = 0
    resumed_from: int = 0
    losses: dict[str, float] = dataclasses.field(default_factory=dict)
    train_s: float = 0.0
    images: int = 0


def step_seed(seed: int, step: int) -> int:
    """Seed of the augmentation draws of one step."""
    return (seed * 1_000_003 + step * 7_919 + 1) % (2**63 - 1)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Global sample indices of ``step``: a seeded permutation per epoch, consecutive slices."""
    per_epoch = math.ceil(n / batch_size)
    epoch, i = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[i * batch_size : (i + 1) * batch_size]


class _StopFlag:
    """First Ctrl-C requests a stop at the next step boundary; a second one interrupts at once."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.flag = False
        self.log = log
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

    def _handler(self, signum: int, frame: Any) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        self.log("interrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)")

    def requested(self, acc: Any) -> bool:
        if acc.num_processes == 1:
            return self.flag
        t = torch.tensor([1.0 if self.flag else 0.0], device=acc.device)
        return bool(acc.reduce(t, reduction="sum").item() > 0)


def _save(path: Path, step: int, model: nn.Module, opt: Any, sched: Any, ident: dict, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "step": step,
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "identity": ident,
        "key": key,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def _resume(path: Path, model: nn.Module, opt: Any, sched: Any, ident: dict, key: str) -> int:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("key") != key or blob.get("identity") != ident:
        old = blob.get("identity") or {}
        diff = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k)) or ["artifact key"]
        raise VitbenchError(
            f"checkpoint {path} belongs to another finetune (differs in {', '.join(diff)}); "
            "rerun with the same options, pass --restart, or use another --work-dir"
        )
    model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["opt"])
    sched.load_state_dict(blob["sched"])
    return int(blob["step"])


@dataclasses.dataclass
class _Setup:
    """Everything one run's steps need (built by :func:`_setup`)."""

    images: Any  # np.ndarray [N, h, w, 3] uint8 or data.prep.FolderBatches
    labels: torch.Tensor
    ids: np.ndarray
    dcfg: dict[str, Any]
    total: int
    opt: Any
    sched: Any
    student: nn.Module
    weights: dict[str, float]


def _setup(cfg: Any, cls: Any, model: nn.Module, data: Any, acc: Any) -> _Setup:
    """Inputs at the model's size, step count, AdamW + warmup/cosine schedule, prepared student."""
    dcfg = data_config(model)
    labels = torch.from_numpy(np.asarray(data.labels, dtype=np.int64))
    per_epoch = math.ceil(len(labels) / cfg.batch_size)
    total = math.ceil(cfg.epochs * per_epoch)
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    warm = min(int(cfg.warmup_epochs * per_epoch), total)
    min_ratio = min(cfg.min_lr / peak_lr(cfg, cls), 1.0)
    opt = torch.optim.AdamW(param_groups(model, cfg, cls), betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warm, min_ratio))
    student, opt = acc.prepare(Student(model), opt)
    images: Any  # prepared uint8 [N, h, w, 3], or decoded per batch for folder datasets
    if isinstance(data, FileImageSet):
        images = FolderBatches(data, dcfg)
    else:
        images = prepare_images(data.images, dcfg)
    ids = np.asarray(data.sample_ids, dtype=np.int64)
    return _Setup(images, labels, ids, dcfg, total, opt, sched, student, loss_weights(cfg, cls))


def _step(cfg: Any, cls: Any, handle: Any, teacher: nn.Module, run: _Setup, acc: Any, step: int) -> tuple:
    """One optimiser step on the seeded batch of ``step``; returns (loss, terms, global batch size)."""
    idx = batch_indices(len(run.labels), cfg.batch_size, cfg.seed, step)
    local = idx[acc.process_index :: acc.num_processes]
    x = to_tensor(run.images[local], run.dcfg)
    if cfg.augment:
        x = shift_batch(x, torch.Generator().manual_seed(step_seed(cfg.seed, step)))
    x, y = x.to(acc.device), run.labels[local].to(acc.device)
    handle.set_sample_ids(torch.from_numpy(run.ids[local]).to(acc.device))
    handle.state.noise_step = step
    run.student.train()
    loss, terms = training_losses(cls, handle, run.student, teacher, x, y, run.weights)
    run.opt.zero_grad(set_to_none=True)
    acc.backward(loss)
    if cfg.clip_grad:
        acc.clip_grad_norm_(run.student.parameters(), cfg.clip_grad)
    run.opt.step()
    run.sched.step()
    return loss, terms, len(idx)


@dataclasses.dataclass(frozen=True)
class LoopRequest:
    """One run of :func:`run_loop`: what to train, on what, where to checkpoint, how to report.

    Attributes:
        cfg: the run's :class:`~vitbench.train.config.TrainConfig` (steps, batch size, lr, seed,
            checkpoint period, augmentation).
        method: the training "method": a trainable method class, or any class with its training
            hooks (``name``, ``default_lr``, ``backbone_lr_scale``, ``loss_weights``,
            ``aux_losses``), e.g. the pruned-model fine-tune of :mod:`vitbench.harness.pruned`.
        handle: the method's handle on ``model`` (sample ids and noise step are set per step).
        model: the student, trained in place (left in eval mode).
        teacher: the frozen dense model the losses distil from.
        data: the training images (``ImageSet`` in memory or ``FileImageSet`` decoded per batch).
        accelerator: the ``accelerate.Accelerator`` that prepares, reduces and synchronises.
        work_dir: checkpoint folder (``last.pt`` is written every ``cfg.checkpoint_every`` steps
            and on a stop request).
        key: artifact key digest stored in checkpoints; a checkpoint of another key is refused.
        restart: ignore an existing checkpoint instead of resuming from it.
        progress: tqdm bar over steps (main process only).
        log: one-line messages (main process only).
        should_stop: called with the number of completed steps; ``True`` stops like Ctrl-C.
    """

    cfg: TrainConfig
    method: Any
    handle: Any
    model: nn.Module
    teacher: nn.Module
    data: ImageSet | FileImageSet
    accelerator: Any
    work_dir: Path
    key: str
    restart: bool = False
    progress: bool = True
    log: Callable[[str], None] = print
    should_stop: Callable[[int], bool] | None = None


def run_loop(request: LoopRequest) -> LoopState:
    """Optimise ``request.model`` (patched by ``request.handle``) on ``request.data``.

    Every random draw is a function of (``cfg.seed``, step), so a run resumed from the
    checkpoint in ``request.work_dir`` reproduces the uninterrupted run exactly. See
    :func:`vitbench.train.finetune.finetune`.

    Returns:
        The :class:`LoopState` (steps done, where it resumed, last losses, loop seconds, images).

    Raises:
        TrainingInterrupted: Ctrl-C or ``should_stop`` after saving a checkpoint.
        VitbenchError: the checkpoint in ``work_dir`` belongs to another run.
    """
    from tqdm.auto import tqdm

    r = request
    cfg, cls, handle, model, teacher, acc = r.cfg, r.method, r.handle, r.model, r.teacher, r.accelerator
    key, progress, should_stop = r.key, r.progress, r.should_stop
    say = r.log if acc.is_main_process else (lambda _m: None)
    run = _setup(cfg, cls, model, r.data, acc)
    ident, ckpt = cfg.identity(), r.work_dir / "last.pt"
    start = 0
    if ckpt.is_file() and not r.restart:
        start = _resume(ckpt, model, run.opt, run.sched, ident, key)
        say(f"resuming from {ckpt} at step {start}/{run.total}")
    state = LoopState(steps=start, resumed_from=start)
    show = progress and acc.is_main_process
    bar = tqdm(total=run.total, initial=start, desc=f"finetune {cls.name}", unit="step", disable=not show)
    t0 = time.perf_counter()
    with _StopFlag(say) as stop:
        for step in range(start, run.total):
            loss, terms, n = _step(cfg, cls, handle, teacher, run, acc, step)
            done = step + 1
            state.steps, state.images = done, state.images + n
            state.losses = {k: round(float(v.detach()), 5) for k, v in terms.items()}
            state.losses["total"] = round(float(loss.detach()), 5)
            bar.update(1)
            bar.set_postfix(loss=f"{state.losses['total']:.3f}", ce=f"{state.losses['ce']:.3f}")
            stopping = stop.requested(acc) or (should_stop is not None and should_stop(done))
            if done < run.total and (stopping or done % cfg.checkpoint_every == 0):
                if acc.is_main_process:
                    _save(ckpt, done, model, run.opt, run.sched, ident, key)
                acc.wait_for_everyone()
            if stopping and done < run.total:
                bar.close()
                raise TrainingInterrupted(
                    f"finetune interrupted after step {done}/{run.total}; checkpoint saved in {ckpt}; "
                    "run the same command again to resume"
                )
    bar.close()
    state.train_s = time.perf_counter() - t0
    model.eval()
    return state


__all__ = ["LoopRequest", "LoopState", "TrainingInterrupted", "batch_indices", "run_loop", "step_seed"]
