"""Parameter counts."""

from __future__ import annotations

from torch import nn


def count_params_m(model: nn.Module) -> float:
    """Number of parameters in millions (all parameters, trainable or not; shared ones once).

    Args:
        model: any module.

    Returns:
        Parameter count / 1e6.
    """
    return sum(p.numel() for p in model.parameters()) / 1e6
