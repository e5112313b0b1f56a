"""TPS: joint token pruning and squeezing — eTPS (EViT selection) and dTPS (DynamicViT selection).

Wei et al., CVPR 2023 (official code: megvii-research/TPS-CVPR2023); ``references/methods.md``
section 3. The pruning half is EViT's (eTPS: CLS attention inside blocks depth/4, depth/2,
3*depth/4 after the attention residual, keep ceil(rho * n), no fused token) or DynamicViT's
(dTPS: trained predictor before those blocks, keep int(n0 * rho^s)); the squeezing half fuses
every pruned token into its most cosine-similar kept token (:mod:`vitbench.methods.patching.squeeze`).
``selection: random`` draws the pruned set at random with the same counts and keeps the squeeze
(the TPS robustness protocol); the draws equal those of ``random-tokens`` (eTPS) and of
``dynamicvit`` (dTPS), so squeeze vs plain pruning is compared on identical keep sets.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from vitbench.methods.base import Conformance, register
from vitbench.methods.patching.patch import ForwardState
from vitbench.methods.patching.squeeze import squeeze
from vitbench.methods.patching.stageblock import StageBlockMixin, keep_top
from vitbench.methods.predictorbase import PredictorMethod
from vitbench.methods.requirements import Requirements
from vitbench.methods.stagebase import StageMethod, cls_attention


def etps_reduce(x: torch.Tensor, st: ForwardState, index: int, attn: Any) -> torch.Tensor:
    """Keep the top ``ceil(rho * n)`` image tokens of ``x`` [B, N, C]; squeeze the others into them.

    Scores are the head-mean CLS attention (``selection="scored"``) or the seeded uniform
    numbers ``random-tokens`` uses (``"random"``). Kept tokens stay in descending score order.
    """
    p = st.prefix
    split = keep_top(x, st, index, lambda: cls_attention(st.qkv.pop(index), attn, p))
    if split is None:
        return x
    return torch.cat([x[:, :p], squeeze(split.kept, split.pruned, st.params.temperature)], dim=1)


class ETPSMixin(StageBlockMixin):
    """eTPS block (used at the pruning stages only).

    Modifications to timm's ``Block.forward`` (:class:`StageBlockMixin`):
        - between the attention residual and the MLP, image tokens are reduced by
          :func:`etps_reduce` (CLS-attention top-k, pruned tokens squeezed into hosts);
        - prefix tokens are never pruned and never hosts;
        - an external ``attn_mask`` is not supported.
        LayerScale, drop-path, q/k norms and fused attention are timm's own.
    """

    reduce = staticmethod(etps_reduce)


def _check_temperature(t: float) -> None:
    if not t > 0:
        raise ValueError(f"temperature {t} must be > 0")


@dataclasses.dataclass(frozen=True)
class ETPSParams:
    """eTPS native parameters.

    Attributes:
        keep_rate: fraction rho of image tokens kept at each stage (ceil(rho * n)).
        drop_loc: pruning blocks; empty = depth/4, depth/2, 3*depth/4.
        temperature: T dividing the cosine similarity of the squeeze.
    """

    keep_rate: float = 0.7
    drop_loc: tuple[int, ...] = ()
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"keep_rate {self.keep_rate} is outside (0, 1]")
        _check_temperature(self.temperature)


@register
class ETPS(StageMethod):
    """eTPS (CVPR'23): EViT's CLS-attention top-k without a fused token, pruned tokens squeezed."""

    name = "etps"
    Params = ETPSParams
    requirements = Requirements(
        vit_blocks=True, class_token=True, uses="it ranks image tokens by the class token's attention row"
    )
    mixin = ETPSMixin
    summary = (
        "CLS-attention top-k at 3 stages; pruned tokens squeezed into nearest kept host (Wei et al. 2023)"
    )
    conformance = Conformance(gmacs_overhead=0.015)  # class-token row and the squeeze similarities


@dataclasses.dataclass(frozen=True)
class DTPSParams:
    """dTPS native parameters.

    Attributes:
        keep_rate: rho; stage s keeps int(n0 * rho^s) image tokens.
        drop_loc: pruning locations; empty = depth/4, depth/2, 3*depth/4.
        temperature: T dividing the cosine similarity of the squeeze.
        artifact: trained parts: a file in the artifact folders, a path, or ``init`` (untrained).
    """

    keep_rate: float = 0.7
    drop_loc: tuple[int, ...] = ()
    temperature: float = 1.0
    artifact: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"keep_rate {self.keep_rate} is outside (0, 1]")
        _check_temperature(self.temperature)


@register
class DTPS(PredictorMethod):
    """dTPS (CVPR'23): DynamicViT's trained predictor; pruned tokens squeezed into hosts."""

    name = "dtps"
    Params = DTPSParams
    squeeze = True
    default_lr = 2.5e-4  # dtps_deit_s_30e.sh: --lr 2.5e-4 --unscale-lr
    backbone_lr_scale = 1.0  # the official scripts train all parameters with one lr
    token_loss = "kl"  # TPS's DistillKLLoss: KL over the channel softmax, not MSE
    summary = "DynamicViT predictor + squeeze of pruned tokens into nearest kept host (Wei et al. 2023)"
    #: 2: equal keep scores are ordered by token index (predictorbase.descending_order), not by
    #: the sort kernel; changes kept and squeezed sets only where scores tie at the boundary
    version: ClassVar[int] = 2


__all__ = ["DTPS", "DTPSParams", "ETPS", "ETPSMixin", "ETPSParams", "etps_reduce"]
