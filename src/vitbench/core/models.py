"""timm adapter: build a model by name with weights from the package, a file, the hub, or random.

A model is a timm name plus optional ``model_args`` (keyword arguments of ``timm.create_model``,
as timm's own scripts pass ``--model-kwargs``) and ``data_config`` (overrides of the model's
pretrained data config: input size, mean, std, interpolation, crop). A checkpoint may carry its
architecture next to the state dict (``{"model": state_dict, "cfg": {...}}`` or ``"model_args"``);
those arguments are used as if given, and an explicit value must agree with them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import vitbench.core.demo  # noqa: F401  (registers vitbench_demo_vit with timm)

# re-exported: model creation's own checks, kept free of torch in vitbench.core.checks
from vitbench.core.checks import DATA_CONFIG_KEYS as DATA_CONFIG_KEYS
from vitbench.core.checks import check_data_config as check_data_config
from vitbench.core.checks import freeze_args as freeze_args
from vitbench.core.demo import ARCH as DEMO_MODEL
from vitbench.core.demo import load_demo_model
from vitbench.core.errors import VitbenchError

#: Weight sources besides a file path.
WEIGHT_SOURCES = ("random", "demo", "hub")

#: Prefix of Hugging Face hub model ids (``hf-hub:ORG/NAME``), resolved by timm through the hub.
HF_HUB_PREFIX = "hf-hub:"


def _timm() -> object:
    import timm

    return timm


def check_model_name(name: str) -> None:
    """Raise a one-line error with close matches if timm does not know ``name``."""
    timm = _timm()
    if name.startswith(HF_HUB_PREFIX):
        if len(name) == len(HF_HUB_PREFIX):
            raise VitbenchError("model 'hf-hub:' names no repository; write hf-hub:ORG/NAME")
        return
    arch = name.split(".")[0]
    if arch not in timm.list_models():  # type: ignore[attr-defined]
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)  # type: ignore[attr-defined]
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise VitbenchError(
            f"unknown model '{name}'{hint} (any timm ViT/DeiT name works, see timm.list_models())"
        )


def create_model(
    name: str,
    weights: str = "random",
    num_classes: int | None = None,
    model_args: Mapping[str, Any] | None = None,
    data_config: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Create a timm ViT in eval mode.

    Args:
        name: timm model name, optionally with a pretrained tag (``deit_small_patch16_224.fb_in1k``),
            or a Hugging Face hub id ``hf-hub:ORG/NAME`` (needs the hub or its local cache).
        weights: ``random`` (GMACs/throughput only), ``demo`` (the packaged demo weights),
            ``hub`` (timm pretrained weights; with ``HF_HUB_OFFLINE`` set, only from the local
            Hugging Face cache), or a path to ``.pth``/``.safetensors``.
        num_classes: override the classifier size (random weights only).
        model_args: keyword arguments of ``timm.create_model`` (``img_size``, ``patch_size``,
            ``embed_dim``, ...). A checkpoint's own ``cfg``/``model_args`` are merged in.
        data_config: overrides of the pretrained data config (keys :data:`DATA_CONFIG_KEYS`);
            :func:`data_config` returns the result.

    Raises:
        VitbenchError: unknown name or model argument, a checkpoint that does not fit, an
            invalid data config, or hub weights that are neither reachable nor cached (after
            one short probe, :func:`hub_weights_file`).
    """
    timm = _timm()
    check_model_name(name)
    args, state, ckpt_data = resolve_model_args(name, weights, model_args)
    dcfg = merge_data_config(ckpt_data, data_config, name)
    if num_classes is not None:
        args["num_classes"] = num_classes
    if weights == "demo":
        if name.split(".")[0] != DEMO_MODEL:
            raise VitbenchError(
                f"weights 'demo' exist only for {DEMO_MODEL}; use weights: random, hub or a file"
            )
        if args:
            raise VitbenchError(
                f"weights 'demo' fix the architecture of {DEMO_MODEL}; drop model_args "
                f"({', '.join(sorted(args))})"
            )
        return apply_data_config(load_demo_model(), dcfg, name)
    if weights == "hub":
        cached = None if name.startswith(HF_HUB_PREFIX) else hub_weights_file(name)
        overlay = {} if cached is None else {"pretrained_cfg_overlay": {"file": cached}}
        model = _build(timm, name, True, {**overlay, **args})
        return apply_data_config(model, dcfg, name).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # "random" weights are the same in every process and every run
        model = _build(timm, name, False, args)
    if state is not None:
        load_state(model, state, Path(weights).name)
    return apply_data_config(model, dcfg, name).eval()


def model_from_spec(spec: Any) -> nn.Module:
    """:func:`create_model` of a :class:`~vitbench.core.specs.ModelSpec`."""
    return create_model(
        spec.name, spec.weights, model_args=dict(spec.model_args), data_config=dict(spec.data_config)
    )


def check_model_spec(spec: Any) -> None:
    """Fail fast on a model entry that cannot be built, before any cell runs.

    Builds the architecture on the ``meta`` device (no memory, no weights), so unknown
    ``model_args`` keys, a checkpoint whose tensors do not fit, a data config that does not fit
    the model and hub ids that are offline are reported at once.

    Raises:
        VitbenchError: the same one-line errors as :func:`create_model`.
    """
    if spec.weights in ("demo", "hub") and not spec.name.startswith(HF_HUB_PREFIX):
        if spec.weights == "demo" or not spec.model_args:
            return  # built from the package or the hub cache: create_model checks those
    timm = _timm()
    check_model_name(spec.name)
    args, state, ckpt_data = resolve_model_args(spec.name, spec.weights, dict(spec.model_args))
    dcfg = merge_data_config(ckpt_data, dict(spec.data_config), spec.name)
    with torch.device("meta"):
        model = _build(timm, spec.name, False, args)
    if state is not None:
        check_shapes(model, state, Path(spec.weights).name)
    apply_data_config(model, dcfg, spec.name)


_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']+)'")


def _build(timm: Any, name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model`` with one-line errors for unknown arguments and unreachable hubs."""
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)  # type: ignore[no-any-return]
    except TypeError as exc:
        found = _UNEXPECTED.search(str(exc))
        if found is None:
            raise VitbenchError(f"model '{name}' rejects its model_args: {exc}") from None
        raise VitbenchError(
            f"model '{name}': unknown model_args key '{found.group(1)}' (not an argument of "
            f"{type_name(str(exc))}); check the spelling against the timm model's signature"
        ) from None
    except Exception as exc:  # network/hub failures come in many types
        if not (pretrained or name.startswith(HF_HUB_PREFIX)):
            raise
        if hub_offline():
            raise VitbenchError(
                f"model '{name}' needs the Hugging Face hub, which is offline (HF_HUB_OFFLINE), and it "
                "is not in the local cache; fetch it once online, or pass a local file: "
                "weights: /path/to/model.safetensors with the timm name and model_args"
            ) from None
        raise VitbenchError(
            f"could not fetch hub weights for '{name}' ({type(exc).__name__}); "
            "pass a local file with weights=/path/to.pth or .safetensors"
        ) from None


def type_name(message: str) -> str:
    """The class named in a ``Class.__init__() got ...`` TypeError message (or ``the model``)."""
    head = message.split("(", 1)[0].strip()
    return head.removesuffix(".__init__") if head.endswith(".__init__") else "the model"


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
_ARCH_KEYS = ("model_args", "cfg")  # architecture dicts saved next to a state dict


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and stored architecture arguments of a ``.pth``/``.pt``/``.safetensors`` file.

    A ``.pth`` may hold the bare state dict or a dict with the state dict under ``model``,
    ``state_dict`` or ``model_ema``, and the architecture as a dict under ``model_args`` or
    ``cfg``; a ``.safetensors`` file may hold the architecture as JSON in its ``model_args``
    metadata. DDP/``torch.compile`` key prefixes are stripped.

    Raises:
        VitbenchError: missing file, no state dict of tensors, or an architecture that is not a dict.
    """
    if not path.is_file():
        raise VitbenchError(
            f"weights file {path} does not exist; use weights: random | demo | hub | /path/to/file"
        )
    arch: Any = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "model_args" in meta:
            try:
                arch = json.loads(meta["model_args"])
            except json.JSONDecodeError:
                arch = None
    else:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state = raw
        if isinstance(raw, dict):
            for key in ("model", "state_dict", "model_ema"):
                if key in raw and isinstance(raw[key], dict):
                    state = raw[key]
                    break
            if state is not raw:
                found = [k for k in _ARCH_KEYS if k in raw]
                arch = raw[found[0]] if found else {}
    if not isinstance(arch, dict) or not all(isinstance(k, str) for k in arch):
        raise VitbenchError(f"{path.name}: its stored model_args/cfg is not a mapping of names to values")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VitbenchError(f"{path.name} holds no state dict of tensors; save model.state_dict()")
    for prefix in _PREFIXES:  # DDP / torch.compile wrappers
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state, dict(arch)


def load_checkpoint(model: nn.Module, path: Path) -> None:
    """Load a ``.pth``/``.pt``/``.safetensors`` state dict into ``model`` with clear shape errors."""
    state, _ = read_checkpoint(path)
    load_state(model, state, path.name)


def check_shapes(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise when ``state`` does not fit ``model``: names the tensor and both shapes, or the key sets."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise VitbenchError(
                f"{source}: '{key}' has shape {tuple(value.shape)} but the model expects "
                f"{tuple(own[key].shape)}; check the model name, model_args or num_classes"
            )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise VitbenchError(
            f"{source} does not match the model: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}); check the model name and model_args"
        )


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Check ``state`` against ``model`` (:func:`check_shapes`) and load it as float32."""
    check_shapes(model, state, source)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def resolve_model_args(
    name: str, weights: str, model_args: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None, dict[str, Any]]:
    """Merge explicit ``model_args`` with the architecture a checkpoint carries.

    Returns:
        (model arguments, the checkpoint's state dict or ``None``, the checkpoint's data-config
        keys). Data-config keys (``mean``, ``std``, ...) in a checkpoint's ``cfg`` are returned
        apart from the model arguments.

    Raises:
        VitbenchError: an explicit value differs from the checkpoint's (one line naming the key).
    """
    args = dict(model_args or {})
    if weights in WEIGHT_SOURCES:
        return args, None, {}
    state, stored = read_checkpoint(Path(weights).expanduser())
    ckpt_data = {k: v for k, v in stored.items() if k in DATA_CONFIG_KEYS}
    for key, value in stored.items():
        if key in DATA_CONFIG_KEYS:
            continue
        if key in args and not _same(args[key], value):
            raise VitbenchError(
                f"model '{name}': model_args {key}={args[key]!r} conflicts with {key}={value!r} stored "
                f"in {Path(weights).name}; drop {key} from model_args (the checkpoint's value is used)"
            )
        args[key] = value
    return args, state, ckpt_data


def _same(a: Any, b: Any) -> bool:
    def norm(v: Any) -> Any:
        return [norm(x) for x in v] if isinstance(v, (list, tuple)) else v

    return bool(norm(a) == norm(b))


def merge_data_config(
    stored: Mapping[str, Any], given: Mapping[str, Any] | None, name: str
) -> dict[str, Any]:
    """A checkpoint's data-config keys plus explicit ones (which must agree where both are set)."""
    out = dict(stored)
    for key, value in (given or {}).items():
        if key in out and not _same(out[key], value):
            raise VitbenchError(
                f"model '{name}': data_config {key}={value!r} conflicts with {key}={out[key]!r} stored in "
                f"its checkpoint; drop {key} from data_config (the checkpoint's value is used)"
            )
        out[key] = value
    return out


def dynamic_input(model: nn.Module) -> bool:
    """Whether ``model`` takes any input size: timm's ``VisionTransformer(dynamic_img_size=True)``.

    timm sets the flag on the model (``model.dynamic_img_size``) and builds the patch embedding
    with ``strict_img_size=False``; the patch embedding itself carries no such attribute.
    """
    return bool(getattr(model, "dynamic_img_size", False))


def native_input_size(model: nn.Module) -> tuple[int, int, int] | None:
    """``(C, H, W)`` the ViT was built for (its patch embedding's ``img_size``); ``None`` without one."""
    pe = getattr(model, "patch_embed", None)
    size = getattr(pe, "img_size", None)
    if pe is None or size is None:
        return None
    proj = getattr(pe, "proj", None)
    chans = int(getattr(proj, "in_channels", 3))
    return (chans, int(size[0]), int(size[1]))


def input_size(model: nn.Module) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images ``model`` is fed: what token counts and GMACs are computed for.

    A fixed-size ViT takes its native size. A ``dynamic_img_size`` ViT takes the ``input_size``
    of the data config vitbench gave it (:func:`apply_data_config`, which the harness's images
    follow), else its native size.

    Raises:
        VitbenchError: a model without a patch embedding that states its image size.
    """
    native = native_input_size(model)
    if native is None:
        raise VitbenchError(f"cannot find the input size of {type(model).__name__} (no patch_embed.img_size)")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if dynamic_input(model) and hasattr(model, "vitbench_data_config") and "input_size" in cfg:
        c, h, w = (int(v) for v in cfg["input_size"])
        return (c, h, w)
    return native


def input_grid(model: nn.Module) -> tuple[int, int]:
    """Patch grid ``(rows, cols)`` of the images ``model`` is fed (:func:`input_size`).

    The grid of a ``dynamic_img_size`` ViT follows the input (``patch_embed.dynamic_feat_size``,
    which rounds up when the model pads, ``dynamic_img_pad``); a fixed-size ViT has its own grid.
    """
    pe: Any = getattr(model, "patch_embed", None)
    _, h, w = input_size(model)
    if dynamic_input(model) and hasattr(pe, "dynamic_feat_size"):
        gh, gw = pe.dynamic_feat_size((h, w))
        return int(gh), int(gw)
    grid = getattr(pe, "grid_size", None)
    if grid is None:
        num = int(pe.num_patches)
        return 1, num
    return int(grid[0]), int(grid[1])


def apply_data_config(model: nn.Module, overrides: Mapping[str, Any], name: str) -> nn.Module:
    """Write ``overrides`` into ``model.pretrained_cfg`` so every data-config resolution sees them.

    A ViT built with a non-default ``img_size`` gets its native input size as ``input_size``
    unless the override gives one; timm's :func:`~timm.data.resolve_model_data_config` (and
    :func:`data_config`) then return the overridden values, so every preprocessing path that
    resolves the model's data config uses them. A ``dynamic_img_size`` ViT takes any
    ``input_size``; token methods then count tokens on its grid (:func:`input_grid`).

    Raises:
        VitbenchError: an ``input_size`` a fixed-size model cannot take, or a mean/std whose length
            differs from the model's input channels.
    """
    if "input_size" in overrides:
        check_data_config(overrides, {}, f"model '{name}'")
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    native = native_input_size(model)
    if native is not None and tuple(cfg.get("input_size", native)) != native:
        cfg["input_size"] = native
        cfg.pop("test_input_size", None)
    for key, value in overrides.items():
        cfg[key] = tuple(value) if isinstance(value, (list, tuple)) else value
    size = tuple(cfg.get("input_size", native or (3, 224, 224)))
    if native is not None and size != native and (not dynamic_input(model) or size[0] != native[0]):
        raise VitbenchError(
            f"model '{name}': data_config input_size {list(size)} does not fit the model, which takes "
            f"{list(native)} (img_size in model_args sets it; dynamic_img_size: true accepts any)"
        )
    for key in ("mean", "std"):
        if key in overrides and len(overrides[key]) != size[0]:
            raise VitbenchError(
                f"model '{name}': data_config {key} has {len(overrides[key])} values but the model "
                f"takes {size[0]} input channels"
            )
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    model.vitbench_data_config = dict(overrides)  # type: ignore[assignment]
    return model


def data_config(model: nn.Module) -> dict:
    """Timm data config (input_size, mean, std, interpolation, crop_pct, crop_mode) of ``model``.

    Includes the ``data_config`` overrides given to :func:`create_model` (they are written into
    ``model.pretrained_cfg``, which timm's ``resolve_model_data_config`` reads).
    """
    from timm.data import resolve_model_data_config

    return dict(resolve_model_data_config(model))
