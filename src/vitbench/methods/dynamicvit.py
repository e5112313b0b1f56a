"""DynamicViT: a learned predictor drops image tokens before blocks depth/4, depth/2, 3*depth/4.

Rao et al., NeurIPS 2021 (official code: raoyongming/DynamicViT, ``models/dyvit.py``); see
``references/methods.md`` section 5. Before pruning block ``loc_s`` a ``PredictorLG`` scores
the image tokens; inference keeps the top ``int(n0 * rho^s)`` (``n0`` = image tokens at the
input; 137/96/67 for DeiT at rho 0.7) ordered by keep score and drops the rest physically, with
timm's fused attention everywhere. Training keeps dense shapes: hard Gumbel-softmax decisions
(tau 1, straight-through) accumulate into a policy and every later block attends with
``softmax_with_policy``. The decision "before block loc" is taken at the end of block loc - 1
(the same computation), so every block's output keeps its prefix tokens as timm computes them.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from vitbench.methods.base import Conformance, register
from vitbench.methods.predictorbase import PredictorMethod


@dataclasses.dataclass(frozen=True)
class DynamicViTParams:
    """DynamicViT native parameters.

    Attributes:
        keep_rate: rho; stage s keeps int(n0 * rho^s) image tokens (the paper's base rate).
        drop_loc: pruning locations (decisions before these blocks); empty = depth/4, depth/2,
            3*depth/4 (3, 6, 9 for 12 blocks).
        artifact: trained parts: a file in the artifact folders, a path, or ``init`` (untrained).
    """

    keep_rate: float = 0.7
    drop_loc: tuple[int, ...] = ()
    artifact: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"keep_rate {self.keep_rate} is outside (0, 1]")


@register
class DynamicViT(PredictorMethod):
    """DynamicViT (NeurIPS'21): learned keep scores before 3 stages, tokens dropped physically."""

    name = "dynamicvit"
    Params: ClassVar[type] = DynamicViTParams
    summary = "learned PredictorLG before depth/4, depth/2, 3depth/4; keep int(n0*rho^s) (Rao et al. 2021)"
    conformance = Conformance(gmacs_overhead=0.06)  # the predictor MLPs (large next to tiny blocks)
    #: 2: equal keep scores are ordered by token index (predictorbase.descending_order), not by
    #: the sort kernel; changes the kept set only where scores tie at the keep/drop boundary
    version: ClassVar[int] = 2


__all__ = ["DynamicViT", "DynamicViTParams"]
