"""EViT: keep the image tokens the CLS token attends to most; fuse the rest into one token.

Liang et al., "Not All Patches are What You Need: Expediting Vision Transformers via Token
Reorganizations", ICLR 2022 (official code: youweiliang/evit). Inside blocks depth/4, depth/2
and 3*depth/4, after the attention residual: a_j = mean over heads of A_h[CLS, j];
keep ceil(rho * n) image tokens by top-k of a (descending attention order); the inattentive
tokens are fused into one extra token sum_j a_j x_j (not normalised); then the MLP runs on the
shorter sequence. Timm's fused attention stays in use: only the CLS row of the attention
matrix is computed beside it. The block and its scores (:class:`~vitbench.methods.stagebase.EViTMixin`,
:func:`~vitbench.methods.stagebase.cls_attention`) live in :mod:`vitbench.methods.stagebase`, the base
the other stage methods share.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from vitbench.methods.base import Conformance, register
from vitbench.methods.requirements import Requirements
from vitbench.methods.stagebase import EViTMixin, StageMethod


@dataclasses.dataclass(frozen=True)
class EViTParams:
    """EViT native parameters.

    Attributes:
        keep_rate: fraction rho of image tokens kept at each stage (the paper's keep rate).
        fuse_token: fuse the pruned tokens into one extra token (the paper's default).
        drop_loc: pruning blocks; empty = depth/4, depth/2, 3*depth/4 (3, 6, 9 for 12 blocks).
    """

    keep_rate: float = 0.7
    fuse_token: bool = True
    drop_loc: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"keep_rate {self.keep_rate} is outside (0, 1]")


@register
class EViT(StageMethod):
    """EViT (ICLR'22): CLS-attention top-k at 3 stages, inattentive tokens fused into one."""

    name = "evit"
    Params = EViTParams
    requirements = Requirements(
        vit_blocks=True, class_token=True, uses="it ranks image tokens by the class token's attention row"
    )
    summary = "CLS-attention top-k at depth/4, depth/2, 3depth/4; pruned tokens fused (Liang et al. 2022)"
    conformance = Conformance(gmacs_overhead=0.001)  # the class-token attention row
    mixin: ClassVar[type] = EViTMixin


__all__ = ["EViT", "EViTParams"]
