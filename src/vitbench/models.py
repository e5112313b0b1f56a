"""timm adapter: build a model by name with weights from the package, a file, the hub, or random."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitbench.errors import VitbenchError

#: Weight sources besides a file path.
WEIGHT_SOURCES = ("random", "demo", "hub")


def _timm() -> object:
    import timm

    import vitbench.demo  # noqa: F401  (registers vitbench_demo_vit with timm)

    return timm


def check_model_name(name: str) -> None:
    """Raise a one-line error with close matches if timm does not know ``name``."""
    timm = _timm()
    arch = name.split(".")[0]
    if arch not in timm.list_models():  # type: ignore[attr-defined]
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)  # type: ignore[attr-defined]
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise VitbenchError(
            f"unknown model '{name}'{hint} (any timm ViT/DeiT name works, see timm.list_models())"
        )


def create_model(name: str, weights: str = "random", num_classes: int | None = None) -> nn.Module:
    """Create a timm ViT in eval mode.

    Args:
        name: timm model name, optionally with a pretrained tag (``deit_small_patch16_224.fb_in1k``).
        weights: ``random`` (GMACs/throughput only), ``demo`` (the packaged demo weights),
            ``hub`` (timm pretrained download; needs network), or a path to ``.pth``/``.safetensors``.
        num_classes: override the classifier size (random weights only).
    """
    timm = _timm()
    check_model_name(name)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if weights == "demo":
        from vitbench.demo import ARCH as DEMO_MODEL
        from vitbench.demo import load_demo_model

        if name.split(".")[0] != DEMO_MODEL:
            raise VitbenchError(
                f"weights 'demo' exist only for {DEMO_MODEL}; use weights: random, hub or a file"
            )
        return load_demo_model()
    if weights == "hub":
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise VitbenchError(
                f"model '{name}' needs hub weights but HF_HUB_OFFLINE=1; "
                "pass a local file with weights=/path/to.pth"
            )
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)  # type: ignore[attr-defined]
        except Exception as exc:  # network/hub failures come in many types
            raise VitbenchError(
                f"could not fetch hub weights for '{name}' ({type(exc).__name__}); "
                "pass a local file with weights=/path/to.pth or .safetensors"
            ) from None
        return model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # "random" weights are the same in every process and every run
        model = timm.create_model(name, pretrained=False, **kwargs)  # type: ignore[attr-defined]
    if weights != "random":
        load_checkpoint(model, Path(weights))
    return model.eval()


def load_checkpoint(model: nn.Module, path: Path) -> None:
    """Load a ``.pth``/``.pt``/``.safetensors`` state dict into ``model`` with clear shape errors."""
    if not path.is_file():
        raise VitbenchError(
            f"weights file {path} does not exist; use weights: random | demo | hub | /path/to/file"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict", "model_ema"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
                break
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise VitbenchError(
                f"{path.name}: '{key}' has shape {tuple(value.shape)} but the model expects "
                f"{tuple(own[key].shape)}; check the model name or num_classes"
            )
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise VitbenchError(
            f"{path.name} does not match the model: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}); check the model name"
        )


def data_config(model: nn.Module) -> dict:
    """Timm data config (input_size, mean, std, crop_pct, interpolation) of ``model``."""
    from timm.data import resolve_model_data_config

    return dict(resolve_model_data_config(model))
