"""NViT: global structural pruning with Hessian-aware saliency and latency awareness (CVPR'23).

Official code NVlabs/NViT @ 48feca4 (``nvit/pruning_core/pruning_engine_general.py``, method 23;
``nvit/model_pruning.py``; ``nvit/main_full_global_latency.py``). Structure, groups, global
ranking and GMACs targeting: :mod:`vitbench.methods.slimming.channel`.

Saliency (``saliency=hessian``, NViT "method 23"): per calibration batch, for every unit u,
``c_u = sum_{theta in scored slices of u} theta * dL/dtheta`` (L = cross-entropy), divided by the
kind's constant (embedding 12, head 6*2 = 12, q/k 2, v 2, MLP 1 -- the official code's
``/12``, ``/6`` plus the ``qkv.Q``/``qkv.V`` flag ``/2``), then squared: ``s_u = mean over
batches of (c_u / k)^2`` (the Fisher approximation of the Hessian term, constant dropped). Over
pruning steps the scores are smoothed with momentum 0.9 (config ``group8_m23_m09``:
``pruning_momentum`` 0.9), keyed by the unit's index in the dense model.

Latency (``latency_weight`` > 0): ``s_u <- s_u - beta * dLat_u`` where dLat_u = LUT(current dims)
- LUT(one unit fewer) (embedding: summed over all blocks), as in NViT, applied only while the
layer has more than one group left (the official ``head > 2``, ``qk > 8``, ``v > 8``, ``MLP >
16``). The LUT is measured on this device (:mod:`vitbench.methods.slimming.latency`). Deviation: NViT's
``beta`` = 5e-4 multiplies raw DeiT-B saliencies and V100 milliseconds; neither scale transfers,
so both terms are divided by their mean over the step's units first (``beta`` is then unitless).
``target=latency`` makes ``keep`` a fraction of the LUT-predicted latency instead of GMACs.

``saliency=taylor`` is the plain first-order Taylor baseline on the same structure:
``s_u = |mean over batches of sum theta * dL/dtheta|``, no per-kind normalisation, no momentum,
no latency term (the registry name ``taylor`` belongs to VTC-LFC's spatial per-block baseline).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.base import Conformance, register
from vitbench.methods.slimming.channel import ChannelParams, Layer, Scores, group_sizes, unit_sums
from vitbench.methods.slimming.latency import get_table
from vitbench.methods.slimming.slim import ModelDims, model_dims, source_plan
from vitbench.methods.structured import StructuredChannelMethod, loss_grads, original_indices

#: Per-kind divisor of the summed Taylor term before squaring (official method 23).
NORMALISE: dict[str, float] = {"embed": 12.0, "head": 12.0, "qk": 2.0, "v": 2.0, "mlp": 1.0}
SALIENCIES: tuple[str, ...] = ("hessian", "taylor")
TARGETS: tuple[str, ...] = ("gmacs", "latency")


@dataclasses.dataclass(frozen=True)
class NViTParams(ChannelParams):
    """NViT parameters.

    Attributes:
        keep: fraction of the dense model's GMACs (``target=gmacs``) or LUT latency to keep.
        steps: pruning iterations (saliency recomputed on the slimmed model each time).
        finetune_epochs: fine-tune after pruning (harness; 0 = none).
        saliency: ``hessian`` (NViT) or ``taylor`` (plain first-order baseline).
        target: ``gmacs`` or ``latency`` (what ``keep`` is a fraction of).
        latency_weight: beta of the latency penalty (unitless, see the module docstring); 0 = off.
        momentum: smoothing of scores across steps (official 0.9).
        latency_batch: batch of the latency table's timings.
        latency_table: a table file to use instead of the cached/measured one (same device only).
    """

    steps: int = 4
    saliency: str = "hessian"
    target: str = "gmacs"
    latency_weight: float = 0.1
    momentum: float = 0.9
    latency_batch: int = 32
    latency_table: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.saliency not in SALIENCIES:
            raise ValueError(f"saliency {self.saliency!r} is not one of {', '.join(SALIENCIES)}")
        if self.target not in TARGETS:
            raise ValueError(f"target {self.target!r} is not one of {', '.join(TARGETS)}")
        if self.latency_weight < 0 or not 0 <= self.momentum < 1:
            raise ValueError("latency_weight must be >= 0 and momentum in [0, 1)")
        if self.latency_batch < 1:
            raise ValueError(f"latency_batch {self.latency_batch} must be >= 1")


@register
class NViT(StructuredChannelMethod):
    """Hessian-aware global structural pruning with latency awareness (embed, heads, q/k, v, MLP)."""

    name = "nvit"
    family = "channel"
    Params = NViTParams
    knob: ClassVar[str] = "keep"
    summary = "(sum theta*grad/k)^2 per unit, global group ranking (embed/heads/q-k/v/MLP), latency LUT"
    #: the kit: no latency table (measuring one takes minutes), one pruning step
    conformance = Conformance(fast={"latency_weight": 0.0, "steps": 1})

    @classmethod
    def budget(cls, model: nn.Module, params: Any, state: dict) -> Callable[[ModelDims], float]:
        """GMACs (closed form) or the LUT-predicted latency."""
        if params.target == "latency":
            table = cls.table(model, params, state)
            return table.predict
        return super().budget(model, params, state)

    @classmethod
    def table(cls, model: nn.Module, params: Any, state: dict) -> Any:
        """The latency table of the dense model (measured once per device and cached)."""
        if "table" not in state:
            dense = state.get("dense", model)
            dev = next(dense.parameters()).device
            state["table"], _, _ = get_table(dense, params.latency_batch, dev, params.latency_table or None)
        return state["table"]

    @classmethod
    def scores(
        cls, model: nn.Module, params: Any, calib: Sequence[tuple[torch.Tensor, torch.Tensor]], state: dict
    ) -> Scores:
        """NViT saliency (or the Taylor baseline) of every unit of the current model."""
        raw = saliency(model, calib, params.saliency)
        if params.saliency == "taylor":
            return raw
        plan = source_plan(model)
        prev: dict[Layer, dict[int, float]] = state.setdefault("momentum", {})
        out: Scores = {}
        for layer, s in raw.items():
            orig = original_indices(plan, layer[0], layer[1], len(s))
            old = prev.get(layer)
            if old is not None and params.momentum > 0:
                s = np.array(
                    [params.momentum * old.get(o, v) + (1 - params.momentum) * v for o, v in zip(orig, s)]
                )
            prev[layer] = dict(zip(orig, s.tolist()))
            out[layer] = s
        if params.latency_weight > 0:
            groups = group_sizes(model_dims(state.get("dense", model)))
            table = cls.table(model, params, state)
            out = latency_penalised(out, model_dims(model), table, params.latency_weight, groups)
        return out


def saliency(model: nn.Module, calib: Sequence[tuple[torch.Tensor, torch.Tensor]], kind: str) -> Scores:
    """Per-unit saliency over the calibration batches (``hessian``: mean (c/k)^2; ``taylor``: |mean c|).

    Args:
        model: a slimmed model (its parameters get gradients; their values are not changed).
        calib: batches ``(images [B, 3, H, W], labels [B])``.
        kind: ``hessian`` or ``taylor``.
    """
    if not calib:
        raise VitbenchError("nvit: the calibration loader is empty; give calib.n_images >= 1")
    total: Scores = {}
    was_training = model.training
    model.eval()
    req = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        for batch in calib:
            loss_grads(model, batch)
            with torch.no_grad():
                contrib = unit_sums(
                    model, lambda p: p.detach() * p.grad if p.grad is not None else torch.zeros_like(p)
                )
            for layer, c in contrib.items():
                v = (c / NORMALISE[layer[0]]) ** 2 if kind == "hessian" else c
                total[layer] = total[layer] + v if layer in total else v
    finally:
        model.zero_grad(set_to_none=True)
        for n, p in model.named_parameters():
            p.requires_grad_(req[n])
        model.train(was_training)
    mean = {k: v / len(calib) for k, v in total.items()}
    return mean if kind == "hessian" else {k: np.abs(v) for k, v in mean.items()}


def latency_deltas(dims: ModelDims, table: Any, groups: dict[str, int]) -> dict[Layer, float]:
    """Milliseconds saved by removing one unit of each layer (0 where only one group is left, as NViT)."""
    out: dict[Layer, float] = {}
    rows, keys = [], []
    for b, (h, dqk, dv, m) in enumerate(dims.blocks):
        here = [dims.embed, h, dqk, dv, m]
        for j, kind in enumerate(("head", "qk", "v", "mlp"), start=1):
            fewer = list(here)
            fewer[j] -= 1
            rows += [here, fewer]
            keys.append(((kind, b), here[j] > groups[kind]))
        fewer_e = list(here)
        fewer_e[0] -= 1
        rows += [here, fewer_e]
    ms = table.blocks(np.array(rows, dtype=np.float64)).reshape(-1, 2)
    ms_delta = ms[:, 0] - ms[:, 1]
    i = 0
    embed = 0.0
    for b in range(len(dims.blocks)):
        for _ in range(4):
            layer, active = keys[4 * b + _]
            out[layer] = float(ms_delta[i]) if active else 0.0
            i += 1
        embed += float(ms_delta[i])
        i += 1
    embed += table.tail(dims.embed) - table.tail(dims.embed - 1)
    out[("embed", -1)] = embed if dims.embed > groups["embed"] else 0.0
    return out


def latency_penalised(
    scores: Scores, dims: ModelDims, table: Any, beta: float, groups: dict[str, int]
) -> Scores:
    """``s_u / mean(s) - beta * dLat_u / mean(dLat)`` (NViT's ``s - beta*dLat`` on unitless scales)."""
    deltas = latency_deltas(dims, table, groups)
    s_mean = float(np.mean(np.concatenate([s for s in scores.values()]))) or 1.0
    n_units = {k: len(v) for k, v in scores.items()}
    d_mean = sum(abs(deltas[k]) * n_units[k] for k in scores) / max(sum(n_units.values()), 1) or 1.0
    return {k: s / s_mean - beta * deltas[k] / d_mean for k, s in scores.items()}


__all__ = ["NORMALISE", "NViT", "NViTParams", "latency_deltas", "latency_penalised", "saliency"]
