"""Structured channel pruning as a method family: score units, pick groups under a GMACs budget, slim."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.base import ChannelMethod
from vitbench.methods.slimming.channel import TOLERANCE, Scores, group_sizes, macs_function, min_dims, select
from vitbench.methods.slimming.slim import (
    ModelDims,
    SlimPlan,
    model_dims,
    slim_model,
)
from vitbench.methods.slimming.slim import supported as slim_supported


class StructuredChannelMethod(ChannelMethod):
    """Iterative global group pruning to a GMACs target; subclasses give the unit scores.

    Subclasses implement :meth:`scores` (and may override :meth:`target_of` for another
    budget, e.g. latency).
    """

    knob: ClassVar[str] = "keep"

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """``keep`` = the keep ratio, read as a fraction of the dense model's GMACs."""
        return {"keep": float(keep_ratio)}

    @classmethod
    def scores(
        cls, model: nn.Module, params: Any, calib: Sequence[tuple[torch.Tensor, torch.Tensor]], state: dict
    ) -> Scores:
        """One score per unit of every layer of the current ``model`` (higher = keep).

        ``state`` persists across the pruning steps of one ``prune`` call (``state["step"]``,
        ``state["plan"]`` = the current model's plan relative to the dense model).
        """
        raise NotImplementedError

    @classmethod
    def budget(cls, model: nn.Module, params: Any, state: dict) -> Callable[[ModelDims], float]:
        """What the target is a fraction of (default: closed-form MACs)."""
        macs = macs_function(model)
        return lambda d: float(macs(d))

    @classmethod
    def needs_calib(cls) -> bool:
        """Whether :meth:`scores` reads calibration data."""
        return True

    @classmethod
    def prune(
        cls, model: nn.Module, params: Any, calib: Iterable[tuple[torch.Tensor, torch.Tensor]] | None
    ) -> nn.Module:
        """Prune a copy of ``model`` to ``params.keep`` of its budget in ``params.steps`` steps."""
        batches = list(calib) if calib is not None else []
        if cls.needs_calib() and not batches:
            raise VitbenchError(
                f"method '{cls.name}': the calibration loader is empty; give calib.n_images >= 1 "
                "and a split with images"
            )
        reason = slim_supported(model)
        if reason:
            raise VitbenchError(f"method '{cls.name}': {reason}")
        dense_dims = model_dims(model)
        groups = group_sizes(dense_dims)
        current = slim_model(model, SlimPlan.identity(model))
        state: dict[str, Any] = {"step": 0, "dense": model}
        budget = cls.budget(model, params, state)
        full = budget(dense_dims)
        target = params.keep * full
        smallest = budget(min_dims(dense_dims, groups))
        if target < smallest * (1 - TOLERANCE):
            raise VitbenchError(
                f"method '{cls.name}': keep {params.keep:g} asks for {target / full:.1%} of the dense "
                f"budget but the smallest legal model (one head, minimum widths) has {smallest / full:.1%}; "
                "use a larger keep"
            )
        if params.keep >= 1.0:
            return current
        floor = max(target * (1 - TOLERANCE), smallest)
        for step in range(params.steps):
            state["step"] = step
            now = budget(model_dims(current))
            if now <= target:
                break
            stop = full * params.keep ** ((step + 1) / params.steps)
            sc = cls.scores(current, params, batches, state)
            plan, _ = select(current, sc, groups, stop, floor, budget)
            current = slim_model(current, plan)
        final = budget(model_dims(current))
        if final > target * (1 + TOLERANCE):
            raise VitbenchError(
                f"method '{cls.name}': reached {final / full:.1%} of the dense budget, target "
                f"{params.keep:.1%}; no group fits the remaining gap (try steps=1 or another keep)"
            )
        return current.eval()


def loss_grads(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    """One forward/backward of cross-entropy on ``batch`` (fills ``p.grad``; eval-mode forward)."""
    x, y = batch
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()


def original_indices(plan: Any, kind: str, block: int, n: int) -> list[int]:
    """Indices in the dense model of the current units of one layer (positions if unknown)."""
    if plan is None:
        return list(range(n))
    if kind == "embed":
        return list(plan.embed)
    bp = plan.blocks[block]
    return list({"head": bp.heads, "qk": bp.qk[0], "v": bp.v[0], "mlp": bp.mlp}[kind])


__all__ = ["StructuredChannelMethod", "loss_grads", "original_indices"]
