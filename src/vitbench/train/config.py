"""The configuration of one finetune run and the ``train:`` options a suite may set."""

from __future__ import annotations

import dataclasses
from typing import Any

from vitbench.core.errors import VitbenchError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One finetune run. ``model`` ... ``limit`` identify the artifact; the rest are hyper-parameters.

    Attributes:
        model: timm model name; weights: ``random``, ``demo``, ``hub`` or a file.
        model_args, data_config: the model entry's ``timm.create_model`` arguments and data-config
            overrides, sorted (name, value) pairs (see :class:`vitbench.core.specs.ModelSpec`).
        method: registry key of a trainable method; keep_ratio: its keep ratio.
        method_params: native-parameter overrides (``--set``), sorted (name, value) pairs.
        dataset, split, root, limit: training data (a registered dataset adapter).
        class_order: labelling of folder datasets (:mod:`vitbench.data.classes`; ``None``: natural).
        epochs: passes over the data (fractions allowed); max_steps: cap on optimiser steps.
        batch_size: images per optimiser step (all processes together).
        lr: peak learning rate of the new parts (``None`` = the method's: DynamicViT 1e-3, dTPS
            2.5e-4, the official scripts' values); min_lr: end of the cosine decay.
        warmup_epochs: linear warmup length; weight_decay: AdamW decay (not on norms/biases/tokens).
        backbone_lr_scale, ratio_weight, distill_weight, token_weight: ``None`` = the method's default.
        clip_grad: gradient-norm clip (``None`` = off); augment: random whole-batch shift of the inputs.
        save_backbone: store the fine-tuned backbone in the artifact (else only the parts).
        artifact_dtype: ``float16`` or ``float32`` storage of the artifact.
        checkpoint_every: steps between checkpoints; seed: every random draw derives from it.
    """

    model: str
    method: str
    weights: str = "random"
    keep_ratio: float = 0.7
    method_params: tuple[tuple[str, Any], ...] = ()
    model_args: tuple[tuple[str, Any], ...] = ()
    data_config: tuple[tuple[str, Any], ...] = ()
    dataset: str = "mnist-demo"
    split: str = "train"
    root: str | None = None
    limit: int | None = None
    class_order: str | None = None
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

    @classmethod
    def for_cell(cls, cell: Any, method: str, data: Any, **options: Any) -> TrainConfig:
        """The run that trains ``method`` for a suite cell on ``data`` (a ``DataSpec``)."""
        return cls(
            model=cell.model.name,
            method=method,
            weights=cell.model.weights,
            keep_ratio=cell.keep_ratio,
            method_params=tuple(cell.method.params),
            model_args=tuple(cell.model.model_args),
            data_config=tuple(cell.model.data_config),
            dataset=data.name,
            split=data.split,
            root=data.root,
            limit=data.limit,
            class_order=getattr(data, "class_order", None),
            **options,
        )

    def identity(self) -> dict[str, Any]:
        """Fields that must match for a checkpoint to be resumed (everything but I/O-only ones)."""
        out = dataclasses.asdict(self)
        for key in ("model_args", "data_config"):  # as before these fields existed when empty
            if not out[key]:
                out.pop(key)
        out.pop("root")
        out.pop("checkpoint_every")
        if out["class_order"] is None:  # as before the field existed
            out.pop("class_order")
        out["method_params"] = [list(p) for p in self.method_params]
        return out


#: Hyper-parameter fields a suite may set under ``train:`` (identity fields come from the cell).
TRAIN_OPTIONS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(TrainConfig)
    if f.name
    not in {
        "model",
        "method",
        "weights",
        "keep_ratio",
        "method_params",
        "model_args",
        "data_config",
        "dataset",
        "split",
        "root",
        "limit",
        "class_order",
    }
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


__all__ = ["TRAIN_OPTIONS", "TrainConfig", "coerce_options"]
