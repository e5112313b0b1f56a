"""Trainable token methods: learned parts that come from artifacts, and their training losses.

A :class:`TrainableMethod` (DynamicViT, dTPS) owns one small module ("part", e.g. a keep-score
predictor) per decision block and may ship a fine-tuned backbone. Its ``Params`` carry an
``artifact`` field:

* ``""`` (default): not resolved yet; the harness looks the artifact up by key (see
  :mod:`vitbench.store.artifacts`) and passes its file name; ``apply`` refuses to run without one;
* ``"init"``: fresh, untrained parts from a fixed seed (conformance tests, GMACs, the start of
  ``vitbench finetune``);
* a file name in the artifact folders, or a path to a ``.safetensors`` artifact.

Artifact tensors: ``part.<stage>.<name>`` for the parts and ``backbone.<state-dict key>`` for
the backbone. ``apply`` swaps trained backbone weights in and the handle swaps them back.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.base import TokenMethod
from vitbench.methods.patching.patch import Handle, check_vit, input_tokens, prefix_tokens
from vitbench.store import artifacts

PART = "vb_part"
INIT = "init"


def model_shape(model: nn.Module) -> dict[str, int]:
    """What an artifact must match: embed dim, depth, heads, image tokens and prefix tokens."""
    blocks: Any = check_vit(model, "trainable method")
    return {
        "embed_dim": int(getattr(model, "embed_dim", blocks[0].norm1.normalized_shape[0])),
        "depth": len(blocks),
        "num_heads": int(blocks[0].attn.num_heads),
        "patches": input_tokens(model) - prefix_tokens(model),
        "prefix": prefix_tokens(model),
    }


class TrainableMethod(TokenMethod):
    """A token method with learned parts (see the module docstring).

    Class attributes:
        default_lr: peak learning rate of the parts when the run does not set one.
        backbone_lr_scale: learning-rate factor of the backbone relative to the parts.
        loss_weights: default weights of ``ratio`` (keep-ratio loss), ``distill`` (KL on
            logits) and ``token`` (token distillation) in ``vitbench finetune``.
        token_loss: ``"mse"`` or ``"kl"`` (over the channel softmax) for token distillation.
    """

    trainable: ClassVar[bool] = True
    default_lr: ClassVar[float] = 1e-3
    backbone_lr_scale: ClassVar[float] = 1.0
    loss_weights: ClassVar[dict[str, float]] = {"ratio": 2.0, "distill": 0.5, "token": 0.5}
    token_loss: ClassVar[str] = "mse"

    @classmethod
    @abstractmethod
    def part_blocks(cls, model: nn.Module, params: Any) -> list[int]:
        """Indices of the blocks that hold a part, in stage order."""

    @classmethod
    @abstractmethod
    def new_part(cls, dim: int, gen: torch.Generator) -> nn.Module:
        """A freshly initialised part for embedding width ``dim``."""

    @classmethod
    @abstractmethod
    def aux_losses(cls, handle: Handle, feats: torch.Tensor, teacher_feats: torch.Tensor) -> dict[str, Any]:
        """Unweighted method losses (``ratio``, ``token``) of the last training forward."""

    @classmethod
    def setting(cls, params: Any) -> str:
        """Native setting without the artifact file name; ``untrained`` for ``artifact=init``."""
        text = super().setting(dataclasses.replace(params, artifact=""))
        return f"{text}, untrained" if params.artifact == INIT else text

    @classmethod
    def attach(cls, model: nn.Module, params: Any, handle: Handle) -> None:
        """Put the parts (fresh or from ``params.artifact``) on their blocks; undo on handle close."""
        ref = params.artifact
        if not ref:
            raise VitbenchError(
                f"method '{cls.name}' needs trained parts: pass artifact=<file> (see `vitbench finetune`) "
                "or artifact=init for untrained ones; suites look artifacts up automatically"
            )
        blocks: Any = check_vit(model, cls.name)
        where = cls.part_blocks(model, params)
        shape = model_shape(model)
        gen = torch.Generator().manual_seed(0)
        parts = [cls.new_part(shape["embed_dim"], gen) for _ in where]
        backbone: dict[str, torch.Tensor] = {}
        if ref != INIT:
            path = artifacts.resolve(ref)
            tensors, meta = artifacts.load(path)
            check_meta(cls.name, path.name, meta, shape, len(where))
            for s, part in enumerate(parts):
                sub = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"part.{s}.")}
                load_strict(part, sub, f"{path.name} part {s}")
            backbone = {k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")}
        if backbone:
            _swap_backbone(model, backbone, handle, ref)
        device = next(model.parameters()).device
        for i, part in zip(where, parts):
            setattr(blocks[i], PART, part.to(device).train(model.training))

            def undo(blk: nn.Module = blocks[i]) -> None:
                delattr(blk, PART)

            handle._undo.append(undo)

    @classmethod
    def export(cls, model: nn.Module, params: Any, with_backbone: bool) -> dict[str, torch.Tensor]:
        """Tensors of an artifact: the parts, and the backbone when ``with_backbone``."""
        blocks: Any = check_vit(model, cls.name)
        out = {
            f"part.{s}.{k}": v
            for s, i in enumerate(cls.part_blocks(model, params))
            for k, v in getattr(blocks[i], PART).state_dict().items()
        }
        if with_backbone:
            out.update({f"backbone.{k}": v for k, v in model.state_dict().items() if f".{PART}." not in k})
        return out


def check_meta(method: str, name: str, meta: dict[str, Any], shape: dict[str, int], stages: int) -> None:
    """Refuse an artifact ``name`` whose metadata names another method or model shape (one line).

    Raises:
        VitbenchError: ``meta['method']`` is not ``method``, or ``meta['model_shape']`` differs
            from ``shape`` plus ``stages``.
    """
    if meta.get("method") != method:
        raise VitbenchError(f"artifact {name} was trained for method '{meta.get('method')}', not '{method}'")
    want = {**shape, "stages": stages}
    have = meta.get("model_shape", {})
    if any(have.get(k) != v for k, v in want.items()):
        fmt = ", ".join(f"{k} {have.get(k)}" for k in want)
        raise VitbenchError(
            f"artifact {name} is for another model shape ({fmt}); this model has "
            f"{', '.join(f'{k} {v}' for k, v in want.items())}"
        )


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module`` when every key and shape matches; else one line naming ``what``."""
    own = module.state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if bad or set(state) - set(own):
        raise VitbenchError(
            f"{what} does not fit this model (e.g. '{(bad or sorted(state))[0]}'); retrain it"
        )
    module.load_state_dict(state)


def _swap_backbone(model: nn.Module, weights: dict[str, torch.Tensor], handle: Handle, ref: str) -> None:
    """Copy fine-tuned weights into the model in place; the handle copies the originals back."""
    own = model.state_dict()
    for k, v in weights.items():
        if k not in own or own[k].shape != v.shape:
            raise VitbenchError(f"artifact {ref}: backbone tensor '{k}' does not fit this model; retrain it")
    saved = {k: own[k].clone() for k in weights}
    with torch.no_grad():
        for k, v in weights.items():
            own[k].copy_(v)

    def undo() -> None:
        with torch.no_grad():
            for k, v in saved.items():
                own[k].copy_(v)

    handle._undo.append(undo)


# -- losses (DynamicViT losses.py / TPS losses/loss.py) -------------------------------------------
def keep_ratio_loss(decisions: list[torch.Tensor], targets: list[float]) -> torch.Tensor:
    """``(1/S) sum_s mean_b (mean_n D_s - target_s)^2`` over the hard decisions D_s [B, n]."""
    terms = [((d.mean(dim=1) - t) ** 2).mean() for d, t in zip(decisions, targets)]
    return torch.stack(terms).mean()


def logit_distill_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) on logits: log-softmax both, batchmean, ``log_target``."""
    return F.kl_div(
        F.log_softmax(logits, dim=-1),
        F.log_softmax(teacher_logits, dim=-1),
        reduction="batchmean",
        log_target=True,
    )


def token_distill_loss(
    feats: torch.Tensor, teacher_feats: torch.Tensor, keep: torch.Tensor, kind: str
) -> torch.Tensor:
    """Distillation of the final-normed image tokens kept at the last stage.

    Args:
        feats: student tokens [B, n, C].
        teacher_feats: teacher tokens [B, n, C].
        keep: last-stage keep decisions [B, n]; tokens with ``keep > 0.5`` count.
        kind: ``"mse"`` (DynamicViT-DeiT) or ``"kl"`` over the channel softmax (TPS).

    Returns:
        Scalar; 0 when no token is kept (as the official code).
    """
    mask = keep.reshape(-1) > 0.5
    if keep.sum() < 0.1:
        return feats.new_zeros(())
    s = feats.reshape(-1, feats.shape[-1])[mask]
    t = teacher_feats.reshape(-1, teacher_feats.shape[-1])[mask]
    if kind == "mse":
        return ((s - t) ** 2).mean()
    return logit_distill_loss(s, t)


__all__ = [
    "INIT",
    "PART",
    "TrainableMethod",
    "check_meta",
    "keep_ratio_loss",
    "load_strict",
    "logit_distill_loss",
    "model_shape",
    "token_distill_loss",
]
