"""Baselines: ``dense`` (identity) and ``random-tokens`` (seeded random keep at the stage schedule)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from vitbench.methods.base import Conformance, NoParams, TokenMethod, register
from vitbench.methods.patching.patch import (
    CountingMixin,
    ForwardState,
    Handle,
    check_vit,
    input_tokens,
    patch_blocks,
)
from vitbench.methods.requirements import Requirements
from vitbench.methods.stagebase import StageMethod


@register
class Dense(TokenMethod):
    """The unmodified model; its handle only counts tokens."""

    name = "dense"
    family = "baseline"
    Params = NoParams
    selections: ClassVar[tuple[str, ...]] = ("scored",)
    summary = "unmodified model (reference row of every table)"
    conformance = Conformance(reduces=False)

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch every block with the token counter only."""
        depth = len(check_vit(model, cls.name))
        st = ForwardState(cls.name, 0, selection, seed, depth, params=params)
        return patch_blocks(model, st, lambda i: CountingMixin)

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Every block sees all tokens."""
        return [input_tokens(model)] * len(check_vit(model, cls.name))

    @classmethod
    def setting(cls, params: Any) -> str:
        """No knob."""
        return "-"


@dataclasses.dataclass(frozen=True)
class RandomTokensParams:
    """Random-token baseline parameters.

    Attributes:
        keep_rate: fraction of image tokens kept at each stage.
        drop_loc: pruning blocks; empty = depth/4, depth/2, 3*depth/4.
    """

    keep_rate: float = 0.7
    drop_loc: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"keep_rate {self.keep_rate} is outside (0, 1]")


@register
class RandomTokens(StageMethod):
    """Drop image tokens uniformly at random (seeded per sample) at the EViT stage schedule."""

    name = "random-tokens"
    family = "baseline"
    Params = RandomTokensParams
    selections: ClassVar[tuple[str, ...]] = ("random",)
    needs_attention = False
    requirements = Requirements(vit_blocks=True)  # random scores: no class token needed
    summary = "seeded random keep of ceil(rho*n) image tokens at the 3 stages, pruned tokens dropped"

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "random", seed: int = 0) -> Handle:
        """Always random selection."""
        return super().apply(model, params, "random", seed)
