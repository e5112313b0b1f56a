"""NormTop: an example out-of-tree vitbench method (the one CONTRIBUTING.md walks through).

At blocks depth/4, depth/2 and 3*depth/4, after the attention residual, keep the ``ceil(rho * n)``
image tokens whose features have the largest L2 norm and drop the rest; prefix tokens (class,
distillation, register tokens) are never dropped. ``selection="random"`` keeps the same counts
with seeded uniform scores. It reuses vitbench's stage machinery: the EViT stage schedule
(:class:`vitbench.methods.stagebase.StageMethod`) and the pruning-stage block
(:class:`vitbench.methods.patching.stageblock.StageBlockMixin`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from vitbench.methods.base import Conformance, register
from vitbench.methods.patching.patch import ForwardState
from vitbench.methods.patching.stageblock import StageBlockMixin, keep_top
from vitbench.methods.requirements import Requirements
from vitbench.methods.stagebase import StageMethod


def norm_reduce(x: torch.Tensor, st: ForwardState, index: int, attn: Any) -> torch.Tensor:
    """Keep the top ``ceil(rho * n)`` image tokens of ``x`` [B, N, C] by feature L2 norm."""
    p = st.prefix
    split = keep_top(x, st, index, lambda: x[:, p:].norm(dim=-1))  # scores [B, n]
    if split is None:
        return x
    return torch.cat([x[:, :p], split.kept], dim=1)


class NormTopMixin(StageBlockMixin):
    """NormTop block (used at the pruning stages only).

    Modifications to timm's ``Block.forward``:
        - between the attention residual and the MLP, image tokens are reduced by
          :func:`norm_reduce` (feature-norm top-k, the rest dropped);
        - an external ``attn_mask`` is not supported.
    """

    reduce = staticmethod(norm_reduce)


@dataclasses.dataclass(frozen=True)
class NormTopParams:
    """NormTop native parameters.

    Attributes:
        keep_rate: fraction rho of image tokens kept at each stage.
        drop_loc: pruning blocks; empty = depth/4, depth/2, 3*depth/4.
    """

    keep_rate: float = 0.7
    drop_loc: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"keep_rate {self.keep_rate} is outside (0, 1]; use a value such as 0.7")


@register
class NormTop(StageMethod):
    """Feature-norm top-k at 3 stages, pruned tokens dropped (example plugin)."""

    name = "normtop"  # the registry key, the entry-point name and the card's name
    family = "token"
    Params = NormTopParams
    mixin: ClassVar[type] = NormTopMixin
    needs_attention = False  # scores come from the tokens, no captured qkv
    requirements = Requirements(vit_blocks=True)  # no class token needed
    summary = "feature-norm top-k of image tokens at depth/4, depth/2, 3depth/4 (example plugin)"
    conformance = Conformance(card="normtop.yaml")


__all__ = ["NormTop", "NormTopMixin", "NormTopParams", "norm_reduce"]
