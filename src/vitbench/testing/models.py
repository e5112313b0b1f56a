"""Tiny random-weight timm ViTs for conformance checks: built offline in milliseconds, never downloaded."""

from __future__ import annotations

from typing import Any

import timm
import torch

import vitbench.core.demo  # noqa: F401  (registers the demo architecture with timm)
from vitbench.core.errors import VitbenchError
from vitbench.core.models import input_size

#: key -> (timm name, kwargs): plain, LayerScale + avg pool + 1 register (no class token), register
#: tokens, distilled, 12 blocks, LayerScale with a class token.
TINY_MODELS: dict[str, tuple[str, dict]] = {
    "vit": ("test_vit", {}),
    "layerscale": ("test_vit2", {}),
    "registers": ("test_vit", {"reg_tokens": 3}),
    "distilled": ("deit_tiny_distilled_patch16_224", {"img_size": 64, "depth": 4}),
    # 12 blocks, 32x32 images, 8x8 patches (16 image tokens), width 64, 2 heads
    "depth12": ("vitbench_demo_vit", {"patch_size": 8, "depth": 12, "embed_dim": 64, "num_heads": 2}),
    "layerscale-cls": ("test_vit2", {"class_token": True, "reg_tokens": 0, "global_pool": "token"}),
}

#: Models without a class token (methods that need one refuse them): average pooling, and
#: average pooling with 4 register tokens (token 0 is register 0), as *_gap_* / *_reg4_gap_* in timm.
CLSLESS_MODELS: dict[str, tuple[str, dict]] = {
    "gap": ("test_vit", {"class_token": False, "global_pool": "avg"}),
    "reg4-gap": ("test_vit", {"class_token": False, "global_pool": "avg", "reg_tokens": 4}),
}

#: Every model key the kit knows.
ALL_MODELS: tuple[str, ...] = tuple(sorted({*TINY_MODELS, *CLSLESS_MODELS}))


def make_model(key: str) -> torch.nn.Module:
    """The tiny model ``key`` in eval mode: seeded random weights, attention sharpened.

    Random initialisation gives near-uniform attention; the qkv weights are scaled by 4 so that
    scored selections are not ties.

    Raises:
        VitbenchError: unknown ``key`` (the message lists the known keys).
    """
    if key not in TINY_MODELS and key not in CLSLESS_MODELS:
        raise VitbenchError(f"unknown tiny model '{key}'; use one of {', '.join(ALL_MODELS)}")
    name, kwargs = TINY_MODELS[key] if key in TINY_MODELS else CLSLESS_MODELS[key]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    blocks: Any = model.blocks
    with torch.no_grad():
        for blk in blocks:
            blk.attn.qkv.weight.mul_(4.0)
    return model


def model_input(model: torch.nn.Module, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Seeded standard-normal images [batch, C, H, W] at the model's input size (global RNG untouched).

    The input size is :func:`vitbench.core.models.input_size`: the native one, or the configured
    input of a ``dynamic_img_size`` model.
    """
    c, h, w = input_size(model)
    return torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(seed))


def calib_batches(
    model: torch.nn.Module, n: int = 2, batch: int = 4
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` calibration batches ``(images [batch, 3, H, W], labels [batch])`` for channel methods.

    Labels are the model's own predictions, so the dense model is right on all of them.
    """
    out = []
    for i in range(n):
        x = model_input(model, batch, seed=100 + i)
        with torch.no_grad():
            out.append((x, model(x).argmax(-1)))
    return out


__all__ = ["ALL_MODELS", "CLSLESS_MODELS", "TINY_MODELS", "calib_batches", "make_model", "model_input"]
