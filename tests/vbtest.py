"""Test helpers: the kit's tiny timm ViTs (:mod:`vitbench.testing.models`), a tiny CLI suite."""

from __future__ import annotations

from pathlib import Path

from vitbench.testing.models import CLSLESS_MODELS, TINY_MODELS, make_model, model_input

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

__all__ = ["CLSLESS_MODELS", "SHARED", "TINY_MODELS", "TINY_SUITE", "make_model", "model_input"]

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
