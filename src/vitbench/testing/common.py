"""Helpers every check of the conformance kit shares: parameters, logits, the method card."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitbench.methods.base import Method
from vitbench.methods.patching.patch import prefix_tokens
from vitbench.report.cards import cards_dir


def params(cls: type[Method], keep: float, model: nn.Module) -> Any:
    """``Params`` at ``keep`` with the method's ``conformance.fast`` overrides.

    Trainable methods get fresh untrained parts (``artifact=init``).
    """
    cls.check_model(model)
    mapped = cls.map_keep_ratio(keep, model)  # the keep ratio's own settings win over ``fast``
    over = {k: v for k, v in cls.conformance.fast.items() if k not in mapped}
    if cls.trainable:
        over.setdefault("artifact", "init")
    return cls.params_for(keep, model, over)


def logits(
    model: nn.Module, x: torch.Tensor, handle: Any = None, ids: torch.Tensor | None = None
) -> torch.Tensor:
    """``model(x)`` in inference mode; ``handle`` (a token method's) gets the sample ``ids`` first."""
    if handle is not None:
        handle.set_sample_ids(ids)
    with torch.inference_mode():
        return model(x)


def check_prefix_outputs(
    cls: type[Method], model: nn.Module, seen: list[tuple[int, torch.Tensor, torch.Tensor]], where: str
) -> None:
    """Prefix tokens leave each recorded block as the unpatched block computes them.

    Args:
        cls: the method (``conformance.changes_attention`` stops the check at the first block that
            reduces tokens: later blocks attend with the method's own attention;
            ``conformance.fuses_in_attention`` stops it before that block).
        model: the patched model; its first block's class before patching is the reference.
        seen: ``(block index, block input [B, N, C], block output [B, N', C])`` of one forward.
        where: what the messages name, e.g. ``"tome"`` or ``"tome on cls-gap"``.
    """
    blocks: Any = model.blocks
    p = prefix_tokens(model)
    original = type(blocks[0])
    for i, inp, out in seen:
        if cls.conformance.fuses_in_attention and out.shape[1] < inp.shape[1]:
            break
        with torch.inference_mode():
            ref = original.forward(blocks[i], inp)
        torch.testing.assert_close(
            out[:, :p], ref[:, :p], rtol=1e-4, atol=1e-5, msg=f"{where}: block {i} changed a prefix token"
        )
        if cls.conformance.changes_attention and out.shape[1] < inp.shape[1]:
            break


def card_path(cls: type[Method]) -> Path:
    """The method's card: ``conformance.card`` next to its module, else the one shipped with vitbench."""
    if cls.conformance.card:
        return Path(inspect.getfile(cls)).resolve().parent / cls.conformance.card
    return cards_dir() / f"{cls.name}.yaml"


__all__ = ["card_path", "check_prefix_outputs", "logits", "params"]
