"""The embedded demo model's architecture and packaged weights (training: :mod:`vitbench.train.demo`).

``vitbench_demo_vit`` is registered as a timm architecture so every method sees an ordinary
``timm.models.VisionTransformer`` (8 blocks, 32x32 input, 4x4 patches -> 64 patches + CLS =
65 tokens, width 48, 3 heads), so that every keep ratio of the demo suite is a different ToMe r
and EViT token count. Its trained weights ship in the package as float16 safetensors
(``vitbench/assets/demo_vit.safetensors``); :func:`vitbench.train.demo.train_demo` recreates
them from scratch.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vitbench.core.errors import VitbenchError

__all__ = [
    "ARCH",
    "DEMO_DATASET",
    "DEMO_MEAN",
    "DEMO_STD",
    "default_record_path",
    "default_weights_path",
    "load_demo_model",
    "load_weights",
    "to_model_input",
]  # register_model appends "vitbench_demo_vit"

ARCH = "vitbench_demo_vit"
DEMO_DATASET = "mnist-demo"
IMG_SIZE = 32
PATCH_SIZE = 4
DEPTH = 8
EMBED_DIM = 48
NUM_HEADS = 3
NUM_CLASSES = 10

# Per-channel mean/std of the mnist-demo *train* split (4,000 digits, zero-padded to 32x32, the
# gray value replicated to R, G and B), on pixel values scaled to [0, 1]; computed once with
#   x = load_dataset("mnist-demo", split="train").images / 255.0; x.mean(), x.std()
# which gives 0.10026 and 0.27519 (identical for the three channels).
DEMO_MEAN = (0.1003, 0.1003, 0.1003)
DEMO_STD = (0.2752, 0.2752, 0.2752)


def _pretrained_cfg() -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": NUM_CLASSES,
        "input_size": (3, IMG_SIZE, IMG_SIZE),
        "pool_size": None,
        "crop_pct": 1.0,
        "crop_mode": "center",
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": DEMO_MEAN,
        "std": DEMO_STD,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
    }


# timm's register_model reads the module attribute ``default_cfgs`` to attach the pretrained cfg,
# so that ``timm.data.resolve_model_data_config(model)`` gives 32x32 input and the MNIST mean/std.
default_cfgs = generate_default_cfgs({ARCH: _pretrained_cfg()})


@register_model
def vitbench_demo_vit(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Demo ViT: depth 8, width 48, 3 heads, 32x32 input, 4x4 patches (64 patches + CLS = 65 tokens).

    Args:
        pretrained: load the packaged demo weights (a local file; nothing is downloaded).
        **kwargs: passed to timm's ``build_model_with_cfg`` (``pretrained_cfg``,
            ``pretrained_cfg_overlay``, ``cache_dir``, ``drop_path_rate``, ...).

    Returns:
        ``VisionTransformer`` mapping ``[B, 3, 32, 32]`` to logits ``[B, 10]``.
    """
    model_args: dict[str, Any] = dict(
        img_size=IMG_SIZE,
        patch_size=PATCH_SIZE,
        in_chans=3,
        num_classes=NUM_CLASSES,
        embed_dim=EMBED_DIM,
        depth=DEPTH,
        num_heads=NUM_HEADS,
        mlp_ratio=4.0,
        class_token=True,
        global_pool="token",
        init_values=None,  # no LayerScale
    )
    model_args.update(kwargs)
    model = build_model_with_cfg(VisionTransformer, ARCH, pretrained=False, **model_args)
    if pretrained:
        load_weights(model, default_weights_path())
    return model


def default_weights_path() -> Path:
    """Path of the packaged demo weights (``vitbench/assets/demo_vit.safetensors``)."""
    return Path(str(resources.files("vitbench") / "assets" / "demo_vit.safetensors"))


def load_weights(model: nn.Module, path: Path) -> dict[str, str]:
    """Load float16/float32 safetensors into ``model`` (cast to the model's dtype); returns metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise VitbenchError(
            f"demo model weights {path} are missing; run `vitbench train-demo` to recreate them"
        )
    state = load_file(str(path))
    ref = model.state_dict()
    state = {k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return dict(meta)


def load_demo_model(weights: str | Path | None = None) -> nn.Module:
    """The trained demo ViT in eval mode, float32, on CPU.

    Args:
        weights: safetensors file to load; defaults to the packaged ``demo_vit.safetensors``.

    Returns:
        ``timm.models.VisionTransformer``; input ``[B, 3, 32, 32]`` normalised with
        ``DEMO_MEAN``/``DEMO_STD`` (see ``timm.data.resolve_model_data_config``), output logits ``[B, 10]``.

    Raises:
        VitbenchError: the weights file does not exist.
    """
    import timm

    model = timm.create_model(ARCH, pretrained=False)
    load_weights(model, Path(weights) if weights is not None else default_weights_path())
    return model.eval()


def default_record_path() -> Path:
    """Path of the JSON training record next to the packaged weights (``assets/demo_vit.json``)."""
    return default_weights_path().with_suffix(".json")


def to_model_input(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Convert uint8 images ``[N, H, W, 3]`` to a normalised float tensor ``[N, 3, H, W]``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s
