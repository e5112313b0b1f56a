"""Channel baselines on the NViT structure: ``random-channels`` (seeded) and ``magnitude`` (L1).

Both use the same layers, groups, global ranking, GMACs targeting and steps as ``nvit``
(:mod:`vitbench.methods.slimming.channel`); only the unit score differs, so a gap to NViT is the
criterion's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vitbench.methods.base import register
from vitbench.methods.slimming.channel import ChannelParams, Scores, unit_counts, unit_sums
from vitbench.methods.slimming.slim import source_plan
from vitbench.methods.structured import StructuredChannelMethod, original_indices


@dataclasses.dataclass(frozen=True)
class RandomChannelsParams(ChannelParams):
    """Random-channel parameters (``keep``, ``steps``, ``finetune_epochs`` as every channel method).

    Attributes:
        seed: seed of the uniform unit scores.
    """

    seed: int = 0


@register
class RandomChannels(StructuredChannelMethod):
    """Uniform random unit scores (seeded), same groups, global ranking and GMACs target as NViT."""

    name = "random-channels"
    family = "baseline"
    Params = RandomChannelsParams
    summary = "seeded uniform scores on the NViT structure (embed, heads, q/k, v, MLP), GMACs target"

    @classmethod
    def needs_calib(cls) -> bool:
        """No data needed."""
        return False

    @classmethod
    def scores(
        cls, model: nn.Module, params: Any, calib: Sequence[tuple[torch.Tensor, torch.Tensor]], state: dict
    ) -> Scores:
        """Uniform [0, 1) per unit, keyed by (seed, step, layer, original unit index)."""
        plan = source_plan(model)
        out: Scores = {}
        for layer, count in unit_counts(model).items():
            kind, b = layer
            orig = original_indices(plan, kind, b, len(count))
            rng = np.random.default_rng([params.seed, state["step"], KIND_ID[kind], b + 1])
            draws = rng.random(int(max(orig)) + 1)
            out[layer] = draws[np.asarray(orig)]
        return out


@dataclasses.dataclass(frozen=True)
class MagnitudeParams(ChannelParams):
    """Magnitude parameters (``keep``, ``steps``, ``finetune_epochs`` as every channel method)."""


@register
class Magnitude(StructuredChannelMethod):
    """L1 norm of each unit's scored weights, divided by their count (comparable across kinds)."""

    name = "magnitude"
    family = "baseline"
    Params = MagnitudeParams
    summary = "mean abs(w) of each unit's scored weights on the NViT structure, global ranking, GMACs target"

    @classmethod
    def needs_calib(cls) -> bool:
        """Weights only."""
        return False

    @classmethod
    def scores(
        cls, model: nn.Module, params: Any, calib: Sequence[tuple[torch.Tensor, torch.Tensor]], state: dict
    ) -> Scores:
        """``sum |theta| / n_theta`` over the unit's scored slices (NViT's, see ``unit_sums``)."""
        with torch.no_grad():
            l1 = unit_sums(model, lambda p: p.detach().abs())
        counts = unit_counts(model)
        return {k: l1[k] / np.maximum(counts[k], 1.0) for k in l1}


KIND_ID = {"embed": 0, "head": 1, "qk": 2, "v": 3, "mlp": 4}


__all__ = ["Magnitude", "MagnitudeParams", "RandomChannels", "RandomChannelsParams"]
