"""Channel cells in the harness: calibration data, prune once (cached artifact), optional fine-tune.

For a cell of a :class:`~vitbench.methods.base.ChannelMethod` the harness asks its
:class:`PrunedModels` provider (:meth:`PrunedModels.model`), which

1. builds the calibration batches (:func:`calibration_batches`): ``suite.calib.n_images``
   images of the dataset's ``suite.calib.split`` (train by default, never the evaluation
   images), drawn with the cell's seed, resized like the evaluation images, corrupted with the
   cell's ``calib_noise`` through the corrupted-image cache (or in memory when it is off) and
   cut into batches of ``suite.calib.batch_size``;
2. prunes once per (model, weights, method, params without ``finetune_epochs``, calibration
   data and noise, seed): the pruned model is stored as a safetensors artifact (weights + its
   :class:`~vitbench.methods.slimming.slim.SlimPlan` in the metadata, see :mod:`vitbench.store.artifacts`) and
   reused by every noise level / sweep that needs it;
3. when the method's ``finetune_epochs`` > 0, fine-tunes the pruned model through the training
   loop of ``vitbench finetune`` (CE + ``distill_weight`` x KL to the dense model, the suite's
   ``train:`` options), again cached as an artifact.

The harness then evaluates and measures the pruned model exactly like a token method's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.models import data_config
from vitbench.core.specs import Cell, SuiteSpec
from vitbench.data import load_dataset
from vitbench.data.cache import CorruptionCache, cache_key, prep_rule
from vitbench.data.files import ids_hash
from vitbench.data.noise import apply_noise
from vitbench.data.samples import to_tensor
from vitbench.data.subsets import prepared_subset
from vitbench.methods.base import ChannelMethod, NoParams
from vitbench.methods.baselines import Dense
from vitbench.methods.slimming.slim import TOKEN_CFG_ATTR, SlimPlan, slim_model, source_plan
from vitbench.store import artifacts
from vitbench.train.config import TrainConfig
from vitbench.train.finetune import training_data
from vitbench.train.loop import LoopRequest, run_loop

if TYPE_CHECKING:
    from accelerate import Accelerator

#: Default post-pruning fine-tune learning rate (NViT ``finetune_dense.py``: 2e-4, cosine).
FINETUNE_LR = 2e-4


def _calibration_split(suite: SuiteSpec) -> Any:
    """The dataset split calibration images come from (``suite.calib.split``), non-empty."""
    spec, d = suite.calib, suite.dataset
    try:
        data = load_dataset(d.name, root=d.root, split=spec.split, class_order=d.class_order)
    except VitbenchError as exc:
        raise VitbenchError(f"calibration loader: {exc}") from None
    if len(data) == 0:
        raise VitbenchError(
            f"calibration loader is empty: dataset '{d.name}' split '{spec.split}' has no images; "
            "set calib.split to a split with images"
        )
    return data


def calibration_pick(available: int, n_images: int, seed: int) -> np.ndarray:
    """Sorted indices of the ``min(n_images, available)`` calibration images drawn with ``seed``."""
    n = min(n_images, available)
    return np.sort(np.random.default_rng([seed, 0xCA11B]).permutation(available)[:n])


def calibration_source(suite: SuiteSpec, cell: Cell) -> dict[str, Any]:
    """Record fields saying which images calibrated a channel cell.

    Returns:
        ``calib_images`` (images drawn), ``calib_split`` (the split they come from) and
        ``calib_ids_hash`` (hash of their sample ids, as ``sample_ids_hash`` hashes the evaluated
        ones); the calibration noise is the cell's ``calib_noise``/``calib_level``.

    Raises:
        VitbenchError: the calibration split is empty.
    """
    data = _calibration_split(suite)
    pick = calibration_pick(len(data), suite.calib.n_images, cell.seed)
    return {
        "calib_images": len(pick),
        "calib_split": suite.calib.split,
        "calib_ids_hash": ids_hash(np.asarray(data.sample_ids)[pick]),
    }


def calibration_batches(
    suite: SuiteSpec, cell: Cell, cfg: dict[str, Any], cache: CorruptionCache | Literal[False] = False
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Calibration batches ``(images [B, 3, H, W] float, labels [B] int64)`` of one cell.

    Args:
        suite: the suite (its ``dataset`` and ``calib``).
        cell: the cell (its ``seed`` and ``calib_noise``).
        cfg: the model's data config (input size, mean/std, crop rule).
        cache: a :class:`~vitbench.data.cache.CorruptionCache`, or ``False`` to corrupt in memory.

    Raises:
        VitbenchError: the calibration split is empty (one line, with the fix).
    """
    spec, d = suite.calib, suite.dataset
    data = _calibration_split(suite)
    pick = calibration_pick(len(data), spec.n_images, cell.seed)
    n = len(pick)
    labels = np.asarray(data.labels)[pick].astype(np.int64)
    ids = np.asarray(data.sample_ids)[pick].astype(np.int64)
    images = prepared_subset(data, pick, cfg)  # folder datasets: only the picked files are decoded
    noise = cell.calib_noise
    if noise.name != "clean":
        if cache is not False:
            key = cache_key(d.name, spec.split, ids, images, cfg, noise.name, noise.level, cell.seed)
            images = cache.get(key, images, ids)
        else:
            images = apply_noise(images, ids, noise.name, noise.level, cell.seed)
    b = spec.batch_size
    return [
        (to_tensor(np.ascontiguousarray(images[i : i + b]), cfg), torch.from_numpy(labels[i : i + b]))
        for i in range(0, n, b)
    ]


# -- keys -----------------------------------------------------------------------------------------


def _params_json(params: Any, **extra: Any) -> str:
    values = {k: v for k, v in dataclasses.asdict(params).items() if k != "finetune_epochs"}
    return json.dumps({**values, **extra}, sort_keys=True, default=list)


def prune_key(
    suite: SuiteSpec, cell: Cell, cls: type[ChannelMethod], params: Any, prep: str | None = None
) -> artifacts.ArtifactKey:
    """Artifact key of the pruned (not fine-tuned) model of ``cell``.

    ``prep`` is the calibration images' preparation (:func:`vitbench.data.cache.prep_rule` of the
    model's data config), so a change of preprocessing never reuses a model pruned on other pixels.
    """
    c, n = suite.calib, cell.calib_noise
    calib = {
        "n_images": c.n_images,
        "batch_size": c.batch_size,
        "noise": n.name,
        "level": n.level,
        "seed": cell.seed,
    }
    return artifacts.ArtifactKey(
        model=cell.model.name,
        weights=artifacts.weights_id(cell.model.weights),
        method=cls.name,
        params=_params_json(params, calib=calib),
        data=json.dumps(
            {"name": suite.dataset.name, "split": c.split, "limit": None}
            | ({"prep": prep} if prep is not None else {}),
            sort_keys=True,
        ),
    )


def finetune_key(base: artifacts.ArtifactKey, params: Any, train: dict[str, Any]) -> artifacts.ArtifactKey:
    """Artifact key of the fine-tuned model: the pruning key plus epochs and training options."""
    extra = json.dumps({"finetune_epochs": params.finetune_epochs, **train}, sort_keys=True, default=str)
    return dataclasses.replace(base, params=base.params + "|finetune=" + extra)


# -- artifacts ------------------------------------------------------------------------------------


def save_pruned(path: Path, model: nn.Module, key: artifacts.ArtifactKey, extra: dict[str, Any]) -> Path:
    """Write ``model``'s weights and its slim plan (relative to the dense model) to ``path``."""
    plan = source_plan(model)
    if plan is None:
        raise VitbenchError(
            f"channel method '{key.method}' returned a model not built by slim_model; "
            "build pruned models with vitbench.methods.slimming.slim.slim_model"
        )
    meta = {
        "kind": "pruned",
        "method": key.method,
        "key": dataclasses.asdict(key),
        "sha256": key.digest,
        "plan": plan.to_dict(),
        **extra,
    }
    tokens = getattr(model, TOKEN_CFG_ATTR, None)  # a token schedule that goes with the channels
    if tokens is not None:
        meta[TOKEN_CFG_ATTR] = [int(t) for t in tokens]
    return artifacts.save(path, model.state_dict(), meta, torch.float32)


def load_pruned(path: Path, dense: nn.Module) -> nn.Module:
    """Rebuild a pruned model: slim ``dense`` with the stored plan, then load the stored weights."""
    tensors, meta = artifacts.load(path)
    if meta.get("kind") != "pruned" or "plan" not in meta:
        raise VitbenchError(f"{path} is not a pruned-model artifact (no slim plan in its metadata)")
    model = slim_model(dense, SlimPlan.from_dict(meta["plan"]))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise VitbenchError(
            f"{path} does not fit its slim plan "
            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )
    if meta.get(TOKEN_CFG_ATTR) is not None:
        setattr(model, TOKEN_CFG_ATTR, tuple(int(t) for t in meta[TOKEN_CFG_ATTR]))
    return model.eval()


# -- the cell -------------------------------------------------------------------------------------


class PrunedModels:
    """Provides the pruned (and, if asked, fine-tuned) models of a suite's channel cells.

    The harness holds one and asks it for the model of every channel cell (see the module
    docstring); the last model made is kept in memory (one at a time), so the noise levels of one
    pruning setting reuse it.

    Args:
        suite: the suite (its ``dataset``, ``calib`` and ``train:`` options).
        accelerator: the ``accelerate.Accelerator``: calibration batches go to its device,
            fine-tuning runs on it, and only its main process writes artifacts.
        progress: show a tqdm bar while fine-tuning (main process only).
        log: where one-line messages go.
    """

    def __init__(
        self,
        suite: SuiteSpec,
        accelerator: Accelerator,
        progress: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.suite = suite
        self.accelerator = accelerator
        self.progress = progress
        self.log = log
        self._memo: dict[str, nn.Module] = {}

    def model(
        self,
        cell: Cell,
        cls: type[ChannelMethod],
        params: Any,
        dense: nn.Module,
        cache: CorruptionCache | Literal[False] = False,
    ) -> nn.Module:
        """The pruned (and, if ``params.finetune_epochs`` > 0, fine-tuned) model of a channel cell.

        Args:
            cell: the cell (model, seed, calibration noise).
            cls: its channel method.
            params: the method's native ``Params`` for the cell.
            dense: the dense model on the accelerator's device (never modified).
            cache: the corrupted-image cache for noisy calibration images, or ``False`` to
                corrupt them in memory (same images).

        Returns:
            The pruned model in eval mode (its slim plan attached; a VTC-LFC token schedule too).

        Raises:
            VitbenchError: empty calibration split, an artifact that does not fit its plan, a
                method that does not build its model with ``slim_model``.
        """
        suite, log = self.suite, self.log
        cfg = data_config(dense)
        key = prune_key(suite, cell, cls, params, prep_rule(cfg))
        ft = getattr(params, "finetune_epochs", 0.0) or 0.0
        train = dict(suite.train.options) if suite.train is not None else {}
        final = finetune_key(key, params, train) if ft > 0 else key
        if final.digest in self._memo:
            return self._memo[final.digest]
        path = artifacts.find_artifact(key)
        if path is not None:
            pruned = load_pruned(path, dense)
        else:
            calib = calibration_batches(suite, cell, cfg, cache)
            device = self.accelerator.device
            start = time.perf_counter()
            plain = dataclasses.replace(params, finetune_epochs=0.0) if ft > 0 else params
            pruned = cls.prune(dense, plain, [(x.to(device), y.to(device)) for x, y in calib])
            prune_s = time.perf_counter() - start
            if self.accelerator.is_main_process:
                out = save_pruned(
                    artifacts.user_dir() / key.filename, pruned, key, {"prune_s": round(prune_s, 2)}
                )
                log(f"pruned {cls.name} ({cls.setting(params)}) in {prune_s:.1f} s -> {out}")
            pruned = pruned.eval()
        if ft > 0:
            path = artifacts.find_artifact(final)
            if path is not None:
                pruned = load_pruned(path, dense)
            else:
                pruned = self.finetune(cell, cls, pruned, dense, ft, train, final)
        self._memo.clear()  # one pruned model in memory at a time
        self._memo[final.digest] = pruned
        return pruned

    def finetune(
        self,
        cell: Cell,
        cls: type[ChannelMethod],
        pruned: nn.Module,
        dense: nn.Module,
        epochs: float,
        train: dict[str, Any],
        key: artifacts.ArtifactKey,
    ) -> nn.Module:
        """Fine-tune a copy of ``pruned`` on the suite's training data, distilling from ``dense``.

        CE + ``distill_weight`` x KL to the dense model through the ``vitbench finetune`` loop
        (the suite's ``train:`` options, ``epochs`` passes); the main process writes the result
        as the artifact of ``key``.

        Returns:
            The fine-tuned copy, in eval mode.
        """
        import copy

        log, acc = self.log, self.accelerator
        data_spec = self.suite.train_data()
        options = {k: v for k, v in train.items() if k not in ("epochs",)}
        cfg = TrainConfig.for_cell(cell, cls.name, data_spec, epochs=epochs, **options)
        data = training_data(cfg)
        student = copy.deepcopy(pruned)
        teacher = copy.deepcopy(dense).eval().requires_grad_(False)
        out = artifacts.user_dir() / key.filename
        trainer = type(f"Finetune_{cls.name}", (_PrunedTraining,), {"name": cls.name})
        handle = cls.token_handle(student, params_of(cls, cell, dense)) or Dense.apply(student, NoParams())
        try:
            log(
                f"fine-tuning {cls.name} (keep {cell.keep_ratio:g}) for {epochs:g} epochs on {data_spec.name}"
            )
            work = out.with_name(out.stem + ".ckpt")
            request = LoopRequest(
                cfg=cfg,
                method=trainer,
                handle=handle,
                model=student,
                teacher=teacher,
                data=data,
                accelerator=acc,
                work_dir=work,
                key=key.digest,
                progress=self.progress,
                log=log,
            )
            state = run_loop(request)
        finally:
            handle.close()
        student.eval()
        if acc.is_main_process:
            info = {"finetune": cfg.identity(), "steps": state.steps, "final_losses": state.losses}
            save_pruned(out, student, key, {**info, "train_s": round(state.train_s, 2)})
            for f in work.glob("*.pt"):
                f.unlink()
            if work.is_dir() and not any(work.iterdir()):
                work.rmdir()
            log(f"wrote {out} (fine-tuned {state.steps} steps in {state.train_s:.1f} s)")
        return student


def params_of(cls: type[ChannelMethod], cell: Cell, dense: nn.Module) -> Any:
    """The cell's native parameters of ``cls`` on ``dense``."""
    return cls.params_for(cell.keep_ratio, dense, cell.method.overrides)


class _PrunedTraining:
    """What the finetune loop needs from a "method" when the student is a pruned model.

    Loss: CE + ``distill`` x KL(dense || pruned) on logits (NViT and VTC-LFC both distil from
    the unpruned model during fine-tuning); no parts, the whole pruned model is trained.
    """

    name = "pruned"
    default_lr = FINETUNE_LR
    backbone_lr_scale = 1.0
    loss_weights = {"ratio": 0.0, "distill": 1.0, "token": 0.0}

    @staticmethod
    def aux_losses(handle: Any, feats: torch.Tensor, teacher_feats: torch.Tensor) -> dict[str, Any]:
        zero = feats.new_zeros(())
        return {"ratio": zero, "token": zero}


__all__ = [
    "FINETUNE_LR",
    "PrunedModels",
    "calibration_batches",
    "finetune_key",
    "load_pruned",
    "params_of",
    "prune_key",
    "save_pruned",
]
