"""Test helpers: tiny timm ViTs built offline (pretrained=False) and small inputs."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

import vitbench.core.demo  # noqa: F401  (registers the demo architecture)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

#: name -> (timm name, kwargs): plain, LayerScale + avg pool + 1 register (no class token), register
#: tokens, distilled, 12 blocks, LayerScale with a class token.
TINY_MODELS = {
    "vit": ("test_vit", {}),
    "layerscale": ("test_vit2", {}),
    "registers": ("test_vit", {"reg_tokens": 3}),
    "distilled": ("deit_tiny_distilled_patch16_224", {"img_size": 64, "depth": 4}),
    "depth12": ("vitbench_demo_vit", {}),
    "layerscale-cls": ("test_vit2", {"class_token": True, "reg_tokens": 0, "global_pool": "token"}),
}

#: Models without a class token (methods that need one refuse them): average pooling, and
#: average pooling with 4 register tokens (token 0 is register 0), as *_gap_* / *_reg4_gap_* in timm.
CLSLESS_MODELS = {
    "gap": ("test_vit", {"class_token": False, "global_pool": "avg"}),
    "reg4-gap": ("test_vit", {"class_token": False, "global_pool": "avg", "reg_tokens": 4}),
}


def make_model(key: str) -> torch.nn.Module:
    name, kwargs = TINY_MODELS[key] if key in TINY_MODELS else CLSLESS_MODELS[key]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    # random init gives near-uniform attention; sharpen it so selections are not ties
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(4.0)
    return model


def model_input(model: torch.nn.Module, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Seeded standard-normal images [batch, 3, H, W] at the model's input size."""
    h, w = model.patch_embed.img_size
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


#: A 2-cell demo suite (dense, EViT 0.7 on 16 test digits) for CLI-level tests.
TINY_SUITE = {
    "name": "tiny",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 16},
    "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
    "methods": ["dense", "evit"],
    "keep_ratios": [0.7],
    "batch_size": 8,
    "bootstrap": 20,
    "throughput": False,
}
