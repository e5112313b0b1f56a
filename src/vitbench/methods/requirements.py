"""What a method needs from a model, declared once per method and checked before any cell runs.

Every method class carries a frozen :class:`Requirements` (``Method.requirements``);
``Method.supported`` and ``Method.check_model`` are derived from it, ``Method.params_for`` checks
it (so every command that configures a method for a model refuses an unsupported one), and the
harness checks every (model, method) pair of a run on skeleton models before its first cell.
The checks read the model's structure only (attributes, module types, signatures), so a model
built on the ``meta`` device (:func:`skeleton`) answers them without weights or memory.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable
from typing import Any

from torch import nn

import vitbench.core.demo  # noqa: F401  (registers vitbench_demo_vit with timm)
from vitbench.core.errors import VitbenchError
from vitbench.core.models import check_model_name
from vitbench.core.registry import METHODS
from vitbench.methods.slimming.slim import supported

#: Parts of a timm ViT block the token patches use (:func:`vitbench.methods.patching.patch.check_vit`).
BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")

_POOLS = {
    "avg": "global average pooling",
    "avgmax": "average+max pooling",
    "max": "global max pooling",
    "map": "attention pooling",
    "token": "class-token pooling",
    "": "no pooling",
}


class UnsupportedModelError(VitbenchError):
    """A method was asked to run on a model that lacks what its :class:`Requirements` declare."""


@dataclasses.dataclass(frozen=True)
class Requirements:
    """What a model must have for a method to run on it.

    Attributes:
        vit_blocks: timm ViT blocks (``norm1``, ``attn`` with a fused ``qkv`` Linear, ``ls1``,
            ``drop_path1``, ``norm2``, ``mlp``, ``ls2``, ``drop_path2``): the token patches swap
            these blocks' classes and capture ``attn.qkv``.
        attn_mask: every block's attention takes ``attn_mask`` (timm >= 1.0.16): ToMe passes
            its proportional-attention bias through it.
        class_token: token 0 is a class token (``model.cls_token``): the method ranks image
            tokens by its attention row or distils its feature.
        class_token_head: the classifier reads the class token (``global_pool='token'``).
        slimmable: channel pruning can slim the model (:func:`vitbench.methods.slimming.slim.supported`).
        pooling: the ``global_pool`` types the method reads correctly (empty: any), e.g. ToMe
            weights ``'avg'`` by token size but cannot reproduce a max or an attention pool over
            merged tokens.
        pooling_why: why other pooling is refused (for the error message).
        uses: what the method does with the class token / its head (for the error message).
    """

    vit_blocks: bool = False
    attn_mask: bool = False
    class_token: bool = False
    class_token_head: bool = False
    slimmable: bool = False
    pooling: tuple[str, ...] = ()
    pooling_why: str = ""
    uses: str = ""

    def short(self) -> str:
        """The needs beyond timm ViT blocks, e.g. ``class token`` (``-`` for none), for tables."""
        names = {
            "class_token": "class token",
            "class_token_head": "class-token head",
            "attn_mask": "attn_mask",
            "slimmable": "slimmable",
        }
        pools = f"pooling {'/'.join(self.pooling)}" if self.pooling else ""
        needs = [text for field, text in names.items() if getattr(self, field)] + ([pools] if pools else [])
        return ", ".join(needs) or "-"

    def unmet(self, model: nn.Module) -> tuple[str, str] | None:
        """The first need ``model`` does not meet as ``(need, what the model has)``, else ``None``."""
        if self.vit_blocks and (has := _vit_blocks(model)):
            return "timm ViT blocks (norm1, attn.qkv, ls1, mlp, ...)", has
        if (self.class_token or self.class_token_head) and getattr(model, "cls_token", None) is None:
            return "a class token", describe_tokens(model)
        pool = getattr(model, "global_pool", "token")
        if self.class_token_head and pool != "token":
            return "a classifier on the class token (global_pool='token')", (
                f"has {_POOLS.get(str(pool), str(pool))} (global_pool='{pool}')"
            )
        if self.pooling and pool not in self.pooling:
            kinds = " or ".join(f"{_POOLS.get(k, k)} (global_pool='{k}')" for k in self.pooling)
            why = f" ({self.pooling_why})" if self.pooling_why else ""
            return f"{kinds}{why}", f"has {_POOLS.get(str(pool), str(pool))} (global_pool='{pool}')"
        if self.attn_mask and (has := _no_attn_mask(model)):
            return "attention that takes attn_mask (timm >= 1.0.16)", has
        if self.slimmable:
            if reason := supported(model):
                return "a model channel pruning can slim", f"does not qualify: {reason}"
        return None


def model_label(model: nn.Module) -> str:
    """The timm architecture name of ``model`` (``pretrained_cfg['architecture']``), else its class."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def describe_tokens(model: nn.Module) -> str:
    """What a model without a class token has: ``has global average pooling and no class token``."""
    regs = int(getattr(model, "num_reg_tokens", 0) or 0)
    pool = str(getattr(model, "global_pool", ""))
    parts = [f"{regs} register token{'s' if regs != 1 else ''}"] if regs else []
    parts.append(_POOLS.get(pool, f"global_pool='{pool}'"))
    text = ", ".join(parts) + " and no class token"
    return "has " + text + (" (token 0 is register 0)" if regs else "")


def unsupported_line(method: Any, model: nn.Module, model_name: str | None = None) -> str | None:
    """One-line refusal of ``method`` (a method class) on ``model``, or ``None`` when it runs.

    E.g. ``evit needs a class token (it ranks image tokens by the class token's attention row);
    vit_medium_patch16_gap_256 has global average pooling and no class token; methods that run
    on it: dense, random-tokens, ...``.
    """
    found = method.requirements.unmet(model)
    if found is None:
        return None
    need, has = found
    why = f" ({method.requirements.uses})" if method.requirements.uses and "class" in need else ""
    others = runnable_methods(model)
    fix = f"; methods that run on it: {', '.join(others)}" if others else ""
    return f"{method.name} needs {need}{why}; {model_name or model_label(model)} {has}{fix}"


def runnable_methods(model: nn.Module) -> list[str]:
    """Registered methods whose requirements ``model`` meets, in registry order."""
    return [n for n in METHODS.names() if METHODS.get(n).requirements.unmet(model) is None]


def skeleton(name: str) -> nn.Module:
    """The timm model ``name`` built on the ``meta`` device: structure only, no weights, no memory."""
    import timm
    import torch

    check_model_name(name)
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False)


def check_pairs(pairs: Iterable[tuple[str, str]]) -> None:
    """Refuse a run with any unsupported (model name, method name) pair, before its first cell.

    Models are built as :func:`skeleton` (once per name).

    Raises:
        UnsupportedModelError: one line for the first unsupported pair (and how many more).
    """
    models: dict[str, nn.Module] = {}
    bad: list[str] = []
    for model_name, method_name in dict.fromkeys(pairs):
        if model_name not in models:
            models[model_name] = skeleton(model_name)
        line = unsupported_line(METHODS.get(method_name), models[model_name], model_name)
        if line:
            bad.append(line)
    if bad:
        more = f" (and {len(bad) - 1} more unsupported model/method pair(s))" if len(bad) > 1 else ""
        raise UnsupportedModelError(bad[0] + more)


def _vit_blocks(model: nn.Module) -> str | None:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        return f"is a {type(model).__name__} without `.blocks`"
    for i, blk in enumerate(blocks):
        missing = [p for p in BLOCK_PARTS if not hasattr(blk, p)]
        if not isinstance(getattr(getattr(blk, "attn", None), "qkv", None), nn.Linear):
            missing.append("attn.qkv (Linear)")
        if missing:
            return f"has block {i} of type {type(blk).__name__}, without {', '.join(missing)}"
    return None


def _no_attn_mask(model: nn.Module) -> str | None:
    import timm

    for i, blk in enumerate(getattr(model, "blocks", ())):
        attn = blk.attn
        if "attn_mask" not in inspect.signature(attn.forward).parameters:
            return (
                f"has block {i} attention of type {type(attn).__name__} taking no attn_mask "
                f"(timm {timm.__version__}; upgrade timm)"
            )
    return None
