"""Training of the embedded demo ViT from scratch (``vitbench train-demo``).

The architecture and the packaged weights live in :mod:`vitbench.core.demo`; this module
recreates the weights: AdamW, warmup then cosine decay, label smoothing, random whole-batch
shifts, fp16 safetensors with the training record next to them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from vitbench.core.demo import ARCH, DEMO_DATASET, DEMO_MEAN, DEMO_STD, to_model_input
from vitbench.data import load_dataset
from vitbench.measure.accuracy import top1_pct

DEFAULT_EPOCHS = 100
DEFAULT_LR = 1e-3

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "DemoTrainConfig",
    "shift_batch",
    "train_demo",
    "write_demo_record",
]


def write_demo_record(result: dict[str, Any], path: Path, command: str) -> dict[str, Any]:
    """Write the training record of :func:`train_demo` as JSON.

    Args:
        result: the dict returned by :func:`train_demo`.
        path: JSON file to write (e.g. :func:`default_record_path`).
        command: the command line that produced the weights.

    Returns:
        The record written: ``test_top1``, ``train_wall_s``, ``epochs``, ``seed``, ``command``,
        ``n_train``, ``n_test`` and the remaining hyper-parameters.
    """
    keys = ("test_top1", "train_wall_s", "epochs", "seed", "n_train", "n_test")
    record: dict[str, Any] = {k: result[k] for k in keys}
    record["test_top1"] = round(float(record["test_top1"]), 2)
    record["train_wall_s"] = round(float(record["train_wall_s"]), 1)
    record["command"] = command
    record.update({k: v for k, v in result.items() if k not in record and k != "path"})
    Path(path).write_text(json.dumps(record, indent=2) + "\n")
    return record


def shift_batch(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate a whole batch by one random offset of up to ``max_shift`` pixels per axis.

    Args:
        x: normalised images ``[B, C, H, W]``.
        gen: CPU generator of the offset (two draws per call).
        max_shift: largest translation in pixels.

    Returns:
        ``[B, C, H, W]``; pixels moved in from outside take the batch minimum (the background).
    """
    if max_shift <= 0:
        return x
    h, w = x.shape[-2:]
    pad = F.pad(x, (max_shift,) * 4, value=float(x.min()))
    i, j = torch.randint(0, 2 * max_shift + 1, (2,), generator=gen).tolist()
    return pad[:, :, i : i + h, j : j + w]


def train_demo(
    out_path: Path,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 64,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
    limit: int | None = None,
    test_limit: int | None = None,
    weight_decay: float = 0.05,
    warmup_epochs: float = 1.5,
    drop_path_rate: float = 0.0,
    max_shift: int = 2,
    label_smoothing: float = 0.1,
    progress: bool = True,
    num_threads: int | None = None,
    eval_every: int = 5,
) -> dict[str, Any]:
    """Train the demo ViT from scratch on the ``mnist-demo`` train split and save fp16 safetensors.

    Uses accelerate's ``Accelerator`` (CPU is fine), AdamW with linear warmup then cosine decay,
    label smoothing, optional stochastic depth, and a random whole-batch shift drawn from an explicit
    ``torch.Generator``. Weight init uses ``torch.manual_seed(seed)``.

    Args:
        out_path: where to write the safetensors file (parent folders are created).
        epochs: passes over the training images.
        batch_size: images per optimiser step.
        lr: peak learning rate.
        seed: seeds weight init, shuffling and augmentation.
        log: receives one progress line per epoch and a summary; None is silent.
        limit: train on only the first ``limit`` training images (smoke tests).
        test_limit: evaluate on only the first ``test_limit`` test images (smoke tests).
        weight_decay: AdamW weight decay (not applied to biases, norms, tokens, pos-embed).
        warmup_epochs: length of the linear warmup.
        drop_path_rate: stochastic depth rate during training (does not change the weights' shapes).
        label_smoothing: cross-entropy label smoothing.
        max_shift: random whole-batch translation in pixels (augmentation).
        progress: show a tqdm bar over optimiser steps.
        eval_every: log test top-1 every this many epochs (and after the last).
        num_threads: torch intra-op threads while training (None keeps torch's default); on a
            CPU shared with other work, 1 thread can be faster than oversubscribing.

    Returns:
        ``{"test_top1", "train_wall_s", "epochs", "seed", "n_train", "n_test", "path"}``; top-1 in
        percent on the ``mnist-demo`` test split, measured with the fp16-rounded saved weights.
    """
    cfg = DemoTrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        limit=limit,
        test_limit=test_limit,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        drop_path_rate=drop_path_rate,
        label_smoothing=label_smoothing,
        max_shift=max_shift,
    )
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _train(Path(out_path), cfg, log, progress, eval_every)
    finally:
        torch.set_num_threads(old_threads)


@dataclass(frozen=True)
class DemoTrainConfig:
    """Hyper-parameters of :func:`train_demo` (see there)."""

    epochs: int
    batch_size: int
    lr: float
    seed: int
    limit: int | None
    test_limit: int | None
    weight_decay: float
    warmup_epochs: float
    drop_path_rate: float
    label_smoothing: float
    max_shift: int


def _train(
    out_path: Path,
    cfg: DemoTrainConfig,
    log: Callable[[str], None] | None,
    progress: bool,
    eval_every: int,
) -> dict[str, Any]:
    from accelerate import Accelerator
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    epochs, batch_size, seed = cfg.epochs, cfg.batch_size, cfg.seed
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    train = load_dataset(DEMO_DATASET, split="train", limit=cfg.limit)
    test = load_dataset(DEMO_DATASET, split="test", limit=cfg.test_limit)
    x_train = to_model_input(train.images, DEMO_MEAN, DEMO_STD)
    y_train = torch.from_numpy(train.labels.copy())
    x_test = to_model_input(test.images, DEMO_MEAN, DEMO_STD)
    y_test = torch.from_numpy(test.labels.copy())

    accelerator = Accelerator()
    torch.manual_seed(seed)
    model = timm.create_model(ARCH, pretrained=False, drop_path_rate=cfg.drop_path_rate)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in ("cls_token", "pos_embed") else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.999),
    )
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    total = max(epochs * steps_per_epoch, 1)
    warm = min(max(int(cfg.warmup_epochs * steps_per_epoch), 1), total)

    def lr_lambda(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    bar = tqdm(total=total, desc="train-demo", unit="step", disable=not progress)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y_train), generator=gen)
        running, seen = 0.0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            xb = shift_batch(x_train[idx], gen, cfg.max_shift).to(accelerator.device)
            yb = y_train[idx].to(accelerator.device)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running / seen:.3f}")
        if epoch == epochs - 1 or (epoch + 1) % max(eval_every, 1) == 0:
            acc = top1_pct(model, x_test, y_test, batch_size=250)
            say(f"epoch {epoch + 1}/{epochs}  loss {running / max(seen, 1):.4f}  test top-1 {acc:.2f}%")
    bar.close()

    unwrapped = accelerator.unwrap_model(model)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in unwrapped.state_dict().items()}
    # Measure what ships: the fp16-rounded weights, loaded back into a float32 model.
    check = timm.create_model(ARCH, pretrained=False)
    check.load_state_dict({k: v.float() for k, v in state.items()})
    test_top1 = top1_pct(check, x_test, y_test, batch_size=250)
    wall = time.perf_counter() - t0
    meta = {
        **{k: str(v) for k, v in dataclasses.asdict(cfg).items()},
        "architecture": ARCH,
        "dataset": DEMO_DATASET,
        "n_train": str(len(y_train)),
        "test_top1": f"{test_top1:.2f}",
        "mean": json.dumps(DEMO_MEAN),
        "std": json.dumps(DEMO_STD),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_path), metadata=meta)
    say(
        f"saved {out_path} ({out_path.stat().st_size / 1e6:.2f} MB): "
        f"test top-1 {test_top1:.2f}% in {wall:.0f} s"
    )
    return {
        "test_top1": test_top1,
        "train_wall_s": wall,
        "epochs": epochs,
        "seed": seed,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "path": str(out_path),
        "batch_size": batch_size,
        "lr": cfg.lr,
        "num_threads": torch.get_num_threads(),
    }
