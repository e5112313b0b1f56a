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
            ``hub`` (timm pretrained weights; with ``HF_HUB_OFFLINE`` set, only from the local
            Hugging Face cache), or a path to ``.pth``/``.safetensors``.
        num_classes: override the classifier size (random weights only).

    Raises:
        VitbenchError: unknown model, weights that do not fit, or hub weights that are neither
            reachable nor cached (after one short probe, :func:`hub_weights_file`).
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
        cached = hub_weights_file(name)
        overlay = {} if cached is None else {"pretrained_cfg_overlay": {"file": cached}}
        try:
            model = timm.create_model(name, pretrained=True, **overlay, **kwargs)  # type: ignore[attr-defined]
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


#: Seconds the one reachability probe of the hub may take (no retries).
HUB_PROBE_TIMEOUT_S = 3.0
_probe: dict[str, str] = {}  # endpoint -> "" (reachable) or why not; one probe per process


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (read now, as huggingface_hub spells truth) disables the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_unreachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str:
    """Why the Hugging Face hub cannot be reached (``""`` when it can); probed once per process.

    One HEAD request to the hub endpoint (``HF_ENDPOINT``) with a ``timeout_s`` timeout and no
    retries, through huggingface_hub's own HTTP session (proxies and certificates as it uses
    them). Any HTTP answer counts as reachable.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = str(constants.ENDPOINT)
    if endpoint not in _probe:
        try:
            get_session().head(endpoint, timeout=timeout_s)
            _probe[endpoint] = ""
        except Exception as exc:  # noqa: BLE001 - DNS, connect, TLS, timeout: all mean unreachable
            _probe[endpoint] = f"{endpoint}: {type(exc).__name__} within {timeout_s:g} s"
    return _probe[endpoint]


def hub_weights_file(name: str) -> str | None:
    """Resolve ``name``'s hub weights without long network retries.

    Returns the file in the local Hugging Face cache when the hub is offline (``HF_HUB_OFFLINE``)
    or unreachable (one :func:`hub_unreachable` probe), ``None`` when the hub is reachable (timm
    then downloads or revalidates as usual).

    Raises:
        VitbenchError: offline or unreachable and not in the local cache (one line, with the fix).
    """
    fix = (
        "pass a local file instead: weights: /path/to/model.safetensors (or .pth; --weights PATH on the "
        "command line)"
    )
    if hub_offline():
        cached = cached_hub_file(name)
        if cached is None:
            raise VitbenchError(
                f"model '{name}' needs hub weights but the hub is offline (HF_HUB_OFFLINE) and they are "
                f"not in the local cache; {fix}"
            )
        return cached
    why = hub_unreachable()
    if not why:
        return None
    cached = cached_hub_file(name)
    if cached is None:
        raise VitbenchError(
            f"model '{name}' needs hub weights but the hub is unreachable ({why}) and they are not in the "
            f"local Hugging Face cache; {fix}"
        )
    return cached


def check_weights(name: str, weights: str) -> None:
    """Raise the one-line error ``create_model(name, weights)`` would give about the weight source.

    Cheap (no model is built): ``demo`` only for the demo model, ``hub`` resolvable
    (:func:`hub_weights_file`), a file path that exists.
    """
    check_model_name(name)
    if weights == "random":
        return
    if weights == "demo":
        from vitbench.demo import ARCH as DEMO_MODEL

        if name.split(".")[0] != DEMO_MODEL:
            raise VitbenchError(
                f"weights 'demo' exist only for {DEMO_MODEL}; use weights: random, hub or a file"
            )
        return
    if weights == "hub":
        hub_weights_file(name)
        return
    if not Path(weights).expanduser().is_file():
        raise VitbenchError(
            f"weights file {weights} does not exist; use weights: random | demo | hub | /path/to/file"
        )


def cached_hub_file(name: str) -> str | None:
    """Path of ``name``'s pretrained weights in the local Hugging Face cache, or ``None``.

    Looks only at the cache (no network): the ``hf_hub_id`` of the model's pretrained cfg,
    ``model.safetensors`` then ``pytorch_model.bin``.
    """
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    arch, _, tag = name.partition(".")
    cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch, allow_unregistered=False)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    for fname in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, fname)
        if isinstance(found, str):
            return found
    return None


def check_classes(model: nn.Module, spec: Any, dataset: str, classes: tuple[str, ...]) -> None:
    """Raise when the classifier cannot score the dataset's labels.

    Trained weights need exactly one output per class; random weights (costs only) need at
    least as many outputs as classes so that every label is a valid index.
    """
    n_model = int(getattr(model, "num_classes", 0) or 0)
    n_data = len(classes)
    if not n_model or not n_data:
        return
    random = getattr(spec, "weights", "random") == "random"
    if n_model < n_data or (not random and n_model != n_data):
        raise VitbenchError(
            f"model '{getattr(spec, 'name', '?')}' has {n_model} output classes but dataset '{dataset}' has "
            f"{n_data}; use weights trained on '{dataset}' (a checkpoint with a {n_data}-class head) "
            "or a dataset with the model's classes"
        )


_PREFIXES = ("module.", "_orig_mod.")


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
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VitbenchError(f"{path.name} holds no state dict of tensors; save model.state_dict()")
    for prefix in _PREFIXES:  # DDP / torch.compile wrappers
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
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
