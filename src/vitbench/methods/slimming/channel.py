"""Global structural pruning on the NViT structure, shared by ``nvit``, ``magnitude`` and ``random-channels``.

Prunable "layers" (NViT ``model_pruning.py``): the embedding width (one layer shared by the
whole model) and, per block, heads, q/k index (one index shared by q, k and every head), v index
(shared by every head) and MLP hidden units. A criterion gives one score per unit of every
layer; units are sorted within their layer and chunked into groups (NViT ``group_criteria``:
group score = sum of its units' scores); all groups of all layers are ranked globally and the
lowest are removed, one by one, while the model stays above the step's target (so a group that
would overshoot the final target by more than the tolerance is skipped), never removing a
layer's last group. ``steps`` pruning iterations reach the target geometrically; each one
re-scores the current (physically slimmed) model. GMACs are computed in closed form from the
dims (:func:`vitbench.methods.slimming.slim.dims_macs`, equal to the counter on the rebuilt model).

Group sizes: NViT's (E 16, heads 2, q/k 8, v 8, MLP 16 for DeiT-B: 768 wide, 12 heads of 64,
MLP 3072) scaled to the model's widths by the same fractions, at least 1 unit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.models import input_grid
from vitbench.methods.slimming.slim import (
    BlockPlan,
    ModelDims,
    SlimAttention,
    SlimPlan,
    dims_macs,
    model_dims,
)

#: Structure kinds in NViT's layer order (per block: head, qk, v, mlp).
KINDS: tuple[str, ...] = ("embed", "head", "qk", "v", "mlp")
#: NViT's group sizes on DeiT-B and the DeiT-B widths they refer to.
NVIT_GROUPS: dict[str, int] = {"embed": 16, "head": 2, "qk": 8, "v": 8, "mlp": 16}
DEIT_B_WIDTH: dict[str, int] = {"embed": 768, "head": 12, "qk": 64, "v": 64, "mlp": 3072}
#: Relative tolerance on the achieved GMACs (issue: within 2 %).
TOLERANCE = 0.02

Layer = tuple[str, int]  # (kind, block); block -1 for the embedding width
Scores = dict[Layer, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ChannelParams:
    """Parameters every channel method on this structure has.

    Attributes:
        keep: target as a fraction of the dense model's GMACs (the harness keep-ratio axis).
        steps: pruning iterations (scores recomputed on the slimmed model after each).
        finetune_epochs: epochs of fine-tuning after pruning (done by the harness, with
            distillation from the dense model; 0 = none).
    """

    keep: float = 0.7
    steps: int = 1
    finetune_epochs: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"keep {self.keep} is outside (0, 1]")
        if self.steps < 1:
            raise ValueError(f"steps {self.steps} must be >= 1")
        if self.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs {self.finetune_epochs} must be >= 0")


def layer_sizes(dims: ModelDims) -> dict[Layer, int]:
    """Units of every prunable layer of a model with ``dims``."""
    out: dict[Layer, int] = {("embed", -1): dims.embed}
    for b, (h, dqk, dv, m) in enumerate(dims.blocks):
        out.update({("head", b): h, ("qk", b): dqk, ("v", b): dv, ("mlp", b): m})
    return out


def group_sizes(dense: ModelDims) -> dict[str, int]:
    """NViT's group sizes scaled to ``dense``'s widths (same fraction of the layer, >= 1)."""
    h, dqk, dv, m = dense.blocks[0]
    width = {"embed": dense.embed, "head": h, "qk": dqk, "v": dv, "mlp": m}
    return {k: max(1, round(NVIT_GROUPS[k] * width[k] / DEIT_B_WIDTH[k])) for k in KINDS}


def macs_function(model: nn.Module) -> Callable[[ModelDims], float]:
    """Closed-form MACs of ``model``'s geometry for any dims (tokens, stem and heads fixed)."""
    pe: Any = model.patch_embed
    fc = not isinstance(getattr(model, "fc_norm", nn.Identity()), nn.Identity)
    heads = 2 if isinstance(getattr(model, "head_dist", None), nn.Linear) else 1
    classes = int(getattr(model, "num_classes", 0) or 0)
    patches = _patches(model)
    n = patches + int(getattr(model, "num_prefix_tokens", 1))
    patch_in = int(pe.proj.in_channels) * int(pe.proj.kernel_size[0]) * int(pe.proj.kernel_size[1])

    def macs(dims: ModelDims) -> float:
        return dims_macs(dims, n, patches, patch_in, classes, heads, 0 if fc else None, fc)

    return macs


def _patches(model: nn.Module) -> int:
    """Patches of the images ``model`` is fed (its configured input grid, :func:`input_grid`)."""
    rows, cols = input_grid(model)
    return rows * cols


def tokens_of(model: nn.Module) -> int:
    """Tokens entering every block (patches of the input grid + prefix tokens)."""
    return _patches(model) + int(getattr(model, "num_prefix_tokens", 1))


def _remove(dims: ModelDims, layer: Layer, n: int) -> ModelDims:
    kind, b = layer
    if kind == "embed":
        return ModelDims(dims.embed - n, dims.blocks)
    blocks = list(dims.blocks)
    h, dqk, dv, m = blocks[b]
    blocks[b] = {
        "head": (h - n, dqk, dv, m),
        "qk": (h, dqk - n, dv, m),
        "v": (h, dqk, dv - n, m),
        "mlp": (h, dqk, dv, m - n),
    }[kind]
    return ModelDims(dims.embed, tuple(blocks))


def min_dims(dims: ModelDims, groups: dict[str, int]) -> ModelDims:
    """The smallest legal model: one group left in every layer (one head, minimum widths)."""
    e = min(dims.embed, groups["embed"])
    blocks = tuple(
        (min(h, groups["head"]), min(dqk, groups["qk"]), min(dv, groups["v"]), min(m, groups["mlp"]))
        for h, dqk, dv, m in dims.blocks
    )
    return ModelDims(e, blocks)


@dataclasses.dataclass
class Group:
    """A group of units of one layer (indices in the current model) and its score."""

    layer: Layer
    units: np.ndarray
    score: float


def make_groups(scores: Scores, groups: dict[str, int]) -> list[Group]:
    """Per layer: sort units by score, chunk into groups of the kind's size, score = sum."""
    out = []
    for layer, s in scores.items():
        size = groups[layer[0]]
        order = np.argsort(s, kind="stable")
        for g in range(math.ceil(len(order) / size)):
            units = order[g * size : (g + 1) * size]
            out.append(Group(layer, units, float(s[units].sum())))
    return out


def select(
    model: nn.Module,
    scores: Scores,
    groups: dict[str, int],
    stop_macs: float,
    floor_macs: float,
    macs: Callable[[ModelDims], float],
) -> tuple[SlimPlan, ModelDims]:
    """Remove the globally lowest groups until MACs <= ``stop_macs``; never go below ``floor_macs``.

    Args:
        model: the current (slimmed) model.
        scores: one score array per layer of ``model`` (higher = keep).
        groups: group size per kind.
        stop_macs: this step's target.
        floor_macs: the final target minus the tolerance; a group whose removal would go below
            it is skipped (a smaller group further down the ranking is taken instead).
        macs: closed-form MACs of dims.

    Returns:
        The plan relative to ``model`` and the resulting dims.
    """
    dims = model_dims(model)
    left = layer_sizes(dims)
    removed: dict[Layer, list[int]] = {layer: [] for layer in left}
    current = macs(dims)
    ranked = sorted(make_groups(scores, groups), key=lambda g: g.score)
    for g in ranked:
        if current <= stop_macs:
            break
        n = len(g.units)
        if left[g.layer] - n < 1:
            continue  # leave at least one group in every layer
        trial = _remove(dims, g.layer, n)
        trial_macs = macs(trial)
        if trial_macs < floor_macs:
            continue
        dims, current = trial, trial_macs
        left[g.layer] -= n
        removed[g.layer].extend(int(u) for u in g.units)
    return plan_from_removed(model_dims(model), removed), dims


def plan_from_removed(dims: ModelDims, removed: dict[Layer, list[int]]) -> SlimPlan:
    """The :class:`SlimPlan` keeping everything but ``removed`` (q/k and v indices shared by heads)."""

    def keep(n: int, drop: Iterable[int]) -> tuple[int, ...]:
        gone = set(drop)
        return tuple(i for i in range(n) if i not in gone)

    blocks = []
    for b, (h, dqk, dv, m) in enumerate(dims.blocks):
        heads = keep(h, removed.get(("head", b), []))
        qk = keep(dqk, removed.get(("qk", b), []))
        v = keep(dv, removed.get(("v", b), []))
        blocks.append(
            BlockPlan(heads, (qk,) * len(heads), (v,) * len(heads), keep(m, removed.get(("mlp", b), [])))
        )
    return SlimPlan(keep(dims.embed, removed.get(("embed", -1), [])), tuple(blocks))


# -- per-unit views of the parameters -------------------------------------------------------------


def unit_sums(model: nn.Module, values: Callable[[torch.Tensor], torch.Tensor | None]) -> Scores:
    """Per unit, the sum of ``values(param)`` over the unit's *scored* parameter slices (NViT).

    ``values`` maps a parameter to a same-shaped tensor (e.g. ``p * p.grad`` or ``p.abs()``) or
    ``None`` (counts 0). Scored slices (NViT ``model_pruning.py``):

    * embedding channel c: patch-embed conv row c (+bias), and in every block the q/k/v input
      column c, proj output row c (+bias), fc1 input column c, fc2 output row c (+bias);
    * head: its q, k and v rows (+bias) of ``qkv``;
    * q/k index j: the q rows (+bias) at position j of every head (k is removed alongside);
    * v index j: the v rows (+bias) at position j of every head;
    * MLP unit: its fc1 row (+bias).

    ``model`` must be slimmed (every attention a :class:`SlimAttention`). Returns float64 numpy.
    """

    def val(p: torch.Tensor | None) -> torch.Tensor | None:
        return None if p is None else values(p)

    def rows(t: torch.Tensor | None) -> torch.Tensor:  # per output row, summed over the rest
        return t.reshape(t.shape[0], -1).sum(1).double() if t is not None else torch.zeros(())

    blocks: Any = model.blocks
    pe: Any = model.patch_embed
    embed = rows(val(pe.proj.weight)) + rows(val(pe.proj.bias))
    out: dict[Layer, torch.Tensor] = {}
    for b, blk in enumerate(blocks):
        attn = blk.attn
        if not isinstance(attn, SlimAttention):
            raise VitbenchError(
                "unit_sums needs a slimmed model; call slim_model(model, SlimPlan.identity(model))"
            )
        h, dq, dv = attn.num_heads, attn.qk_dim, attn.v_dim
        w, bias = val(attn.qkv.weight), val(attn.qkv.bias)
        row = rows(w) + (rows(bias) if bias is not None else 0.0)  # [h*(2dq+dv)]
        q, k, v = row.split([h * dq, h * dq, h * dv])
        out[("head", b)] = q.reshape(h, dq).sum(1) + k.reshape(h, dq).sum(1) + v.reshape(h, dv).sum(1)
        out[("qk", b)] = q.reshape(h, dq).sum(0)
        out[("v", b)] = v.reshape(h, dv).sum(0)
        f1w, f1b = val(blk.mlp.fc1.weight), val(blk.mlp.fc1.bias)
        out[("mlp", b)] = rows(f1w) + (rows(f1b) if f1b is not None else 0.0)
        if w is not None:
            embed = embed + w.sum(0).double()
        for lin in (attn.proj, blk.mlp.fc2):
            embed = embed + rows(val(lin.weight)) + (rows(val(lin.bias)) if lin.bias is not None else 0.0)
        f1 = val(blk.mlp.fc1.weight)
        if f1 is not None:
            embed = embed + f1.sum(0).double()
    out[("embed", -1)] = embed
    return {k: v.detach().cpu().numpy().astype(np.float64) for k, v in out.items()}


def unit_counts(model: nn.Module) -> Scores:
    """Number of scored parameters of every unit (same slices as :func:`unit_sums`)."""
    return unit_sums(model, lambda p: torch.ones_like(p))


# -- the driver -----------------------------------------------------------------------------------


__all__ = [
    "DEIT_B_WIDTH",
    "KINDS",
    "NVIT_GROUPS",
    "TOLERANCE",
    "ChannelParams",
    "Group",
    "group_sizes",
    "layer_sizes",
    "macs_function",
    "make_groups",
    "min_dims",
    "plan_from_removed",
    "select",
    "tokens_of",
    "unit_counts",
    "unit_sums",
]
