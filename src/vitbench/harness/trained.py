"""Suites and artifacts: find the artifact a trainable cell needs, or train it when the suite asks.

Called by the harness for every cell of a trainable method (DynamicViT, dTPS).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from vitbench.core.errors import VitbenchError
from vitbench.store import artifacts
from vitbench.train.config import TrainConfig
from vitbench.train.finetune import finetune


def finetune_command(cell: Any, data: Any) -> str:
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
        cell.model.name,
        cell.model.weights,
        cls.name,
        params,
        (data.name, data.split, data.limit),
        cell.model.model_args,
        cell.model.data_config,
    )
    path = artifacts.find_artifact(key)
    if path is None and suite.train is None:
        raise VitbenchError(
            f"no trained artifact for {cls.name} ({cls.setting(params)}) on {cell.model.name} "
            f"(key {key.digest[:16]}); make it with `{finetune_command(cell, data)}` "
            "or add train: to the suite"
        )
    if path is None:
        cfg = TrainConfig.for_cell(cell, cls.name, data, **dict(suite.train.options))
        log(f"training {cls.name} ({cls.setting(params)}) on {data.name}/{data.split} -> {key.filename}")
        path = finetune(cfg, progress=progress, log=log, accelerator=acc).path
        if path.name != key.filename:
            raise VitbenchError(f"internal: trained artifact {path.name} does not match key {key.filename}")
    return dataclasses.replace(params, artifact=path.name)


__all__ = ["finetune_command", "trained_params"]
