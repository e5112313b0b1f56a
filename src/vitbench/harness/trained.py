"""Suites and artifacts: find the artifact a trainable cell needs, or train it when the suite asks.

The harness holds one :class:`TrainedParts` and asks it for every cell of a trainable method
(DynamicViT, dTPS).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.specs import Cell, DataSpec, ModelSpec, SuiteSpec
from vitbench.methods.trainable import INIT, TrainableMethod
from vitbench.store import artifacts
from vitbench.train.config import TrainConfig
from vitbench.train.finetune import finetune

if TYPE_CHECKING:
    from accelerate import Accelerator


def artifact_key_of(model: ModelSpec, method: str, params: Any, data: DataSpec) -> artifacts.ArtifactKey:
    """The key of the artifact of ``method`` (``params``) on the model entry ``model`` trained on ``data``.

    The one place a suite's pieces become an artifact key (the harness, preflight and the cost
    tools all look artifacts up through it).
    """
    return artifacts.artifact_key(
        model.name,
        model.weights,
        method,
        params,
        (data.name, data.split, data.limit),
        model.model_args,
        model.data_config,
        (data.root, data.class_order),
    )


def default_train_data() -> DataSpec:
    """The training data of ``vitbench finetune`` without ``--data`` (what the cost tools look up)."""
    d = TrainConfig(model="", method="")
    return DataSpec(name=d.dataset, split=d.split, root=d.root, limit=d.limit, class_order=d.class_order)


def cost_params(
    cls: Any, keep: float, model: nn.Module, sets: dict[str, Any], entry: ModelSpec | None
) -> Any:
    """Params of ``cls`` at ``keep`` for the cost tools (``flops``, ``throughput``, ``export``).

    A trainable method uses the artifact a suite on :func:`default_train_data` would use for the
    model entry ``entry``, so the tools count what ``vitbench run`` evaluates (DiffRate's searched
    rates set its token counts); without one (or without ``entry``), its untrained parts
    (``artifact=init``: the setting says ``untrained``). ``sets`` naming ``artifact`` wins.
    """
    if cls.trainable and "artifact" not in sets and entry is not None:
        params = cls.params_for(keep, model, sets)
        if not params.artifact:  # the harness would look one up by key
            found = artifacts.find_artifact(artifact_key_of(entry, cls.name, params, default_train_data()))
            if found is not None:
                sets = {"artifact": str(found), **sets}
    if cls.trainable:
        sets = {"artifact": INIT, **sets}
    return cls.params_for(keep, model, sets)


def finetune_command(cell: Cell, data: DataSpec) -> str:
    """The ``vitbench finetune`` command that makes the artifact ``cell`` needs."""
    parts = [
        "vitbench finetune",
        f"--model {cell.model.name}",
        f"--weights {cell.model.weights}",
        f"--method {cell.method.name}",
        f"--keep {cell.keep_ratio:g}",
        *(f"--set {k}={v}" for k, v in cell.method.params),
        *(f"--model-arg {k}={_flag_value(v)}" for k, v in cell.model.model_args),
        *(f"--data-config {k}={_flag_value(v)}" for k, v in cell.model.data_config),
        f"--data {data.name}",
        f"--split {data.split}",
    ]
    if data.root:
        parts.append(f"--root {data.root}")
    if data.limit:
        parts.append(f"--limit {data.limit}")
    return " ".join(parts)


def _flag_value(value: Any) -> str:
    """A model argument as a shell-safe YAML flow value (tuples as lists)."""
    import json

    text = json.dumps(value, default=list)
    return f"'{text}'" if any(c in text for c in ' [],{}"') else text


class TrainedParts:
    """Provides the trained parts (predictor artifacts) of a suite's trainable token cells.

    The harness holds one and asks it for the parameters of every cell of a trainable method
    (DynamicViT, dTPS): :meth:`params` finds the cell's artifact by key in the artifact folders
    (:mod:`vitbench.store.artifacts`), or trains it now when the suite has ``train:``.

    Args:
        suite: the suite (its training data and ``train:`` options).
        accelerator: the ``accelerate.Accelerator`` training runs on.
        progress: show a tqdm bar while training (main process only).
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

    def params(self, cell: Cell, cls: type[TrainableMethod], params: Any) -> Any:
        """``params`` (the method's frozen ``Params``) with ``artifact`` set to the cell's trained artifact.

        The key is (model, weights, method, params, the suite's training data, model arguments,
        data config). Parameters that already name an artifact are returned as they are.

        Raises:
            VitbenchError: no artifact and no ``train:`` in the suite (the message gives the exact
                ``vitbench finetune`` command), or a training failure.
        """
        if params.artifact:
            return params
        suite = self.suite
        data = suite.train_data()
        key = artifact_key_of(cell.model, cls.name, params, data)
        path = artifacts.find_artifact(key)
        if path is None and suite.train is None:
            raise VitbenchError(
                f"no trained artifact for {cls.name} ({cls.setting(params)}) on {cell.model.name} "
                f"(key {key.digest[:16]}); make it with `{finetune_command(cell, data)}` "
                "or add train: to the suite"
            )
        if path is None:
            assert suite.train is not None
            cfg = TrainConfig.for_cell(cell, cls.name, data, **dict(suite.train.options))
            self.log(
                f"training {cls.name} ({cls.setting(params)}) on {data.name}/{data.split} -> {key.filename}"
            )
            path = finetune(cfg, progress=self.progress, log=self.log, accelerator=self.accelerator).path
            if path.name != key.filename:
                raise VitbenchError(
                    f"internal: trained artifact {path.name} does not match key {key.filename}"
                )
        return dataclasses.replace(params, artifact=path.name)


__all__ = ["TrainedParts", "artifact_key_of", "cost_params", "default_train_data", "finetune_command"]
