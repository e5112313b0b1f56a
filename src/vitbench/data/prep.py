"""The one preprocessing path: timm's eval transform of the model's data config, up to the crop.

Evaluation (array and folder datasets), channel-pruning calibration and fine-tuning all get
their pixels here. :func:`eval_transform` builds ``timm.data.create_transform(**cfg,
is_training=False)`` and keeps its PIL stages (resize by ``crop_pct`` with the config's
interpolation, then the ``crop_mode`` crop: ``center``, ``squash`` or ``border``), dropping only
its ``ToTensor``/``Normalize`` steps. Noise is applied to the uint8 ``[h, w, 3]`` result, and
:func:`vitbench.data.samples.to_tensor` then normalises exactly as timm's ``ToTensor`` +
``Normalize`` do, so a clean image gives the same tensor as timm's full transform, bit for bit.

:func:`prep_rule` describes the transform (its timm steps, their sizes and fill) for the
corrupted-image cache key, so a change of preprocessing never reuses stale cached images.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

#: timm transform steps that are not part of the pixel preparation (done by :func:`to_tensor`).
_TENSOR_STEPS = ("ToTensor", "MaybeToTensor", "PILToTensor", "MaybePILToTensor", "Normalize")


def resolved(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` completed with timm's defaults (``timm.data.resolve_data_config`` of it as a pretrained cfg).

    A model's data config (:func:`vitbench.core.models.data_config`) comes back unchanged; a partial
    dict (tests, hand-written configs) gets timm's defaults (bicubic, crop_pct 0.875, ImageNet
    mean/std, centre crop).
    """
    from timm.data import resolve_data_config

    out = dict(resolve_data_config(args={}, pretrained_cfg=dict(cfg)))
    for key in ("crop_border_pixels",):  # create_transform options resolve_data_config leaves out
        if cfg.get(key) is not None:
            out[key] = cfg[key]
    return out


def eval_transform(cfg: dict[str, Any]) -> Callable[[Any], Any]:
    """The eval transform timm builds for the data config ``cfg``, less its tensor steps (PIL in, PIL out).

    ``timm.data.create_transform(**cfg, is_training=False)``, then every step except
    ``ToTensor``/``MaybeToTensor``/``Normalize`` (timm's own steps and rounding; nothing redone).
    """
    from timm.data import create_transform
    from torchvision import transforms

    full = create_transform(**_transform_args(cfg), is_training=False)
    return transforms.Compose([t for t in full.transforms if type(t).__name__ not in _TENSOR_STEPS])


def _transform_args(cfg: dict[str, Any]) -> dict[str, Any]:
    from timm.data import create_transform

    known = inspect.signature(create_transform).parameters
    return {k: v for k, v in resolved(cfg).items() if k in known}


def prep_rule(cfg: dict[str, Any]) -> str:
    """The preparation of ``cfg`` as a key string: timm's steps with their sizes, modes and fill.

    E.g. ``"Resize(size=248, interpolation=bicubic, max_size=None, antialias=True);
    CenterCrop(size=(224, 224))"`` (one line).
    Any change of crop_pct, crop_mode, interpolation, input size or of timm's rounding changes it.
    """
    parts = []
    for t in eval_transform(cfg).transforms:  # type: ignore[attr-defined]
        text = " ".join(repr(t).split())
        fill = getattr(t, "fill", None)
        parts.append(f"{text}[fill={fill}]" if fill is not None and "fill" not in text else text)
    return "; ".join(parts)


def prepare_images(images: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` -> uint8 ``[N, h, w, 3]`` through :func:`eval_transform` of ``cfg``.

    ``(h, w)`` is ``cfg["input_size"][1:]``. Every image goes through timm's transform (PIL),
    whatever its size, so arrays get exactly the pixels files get.
    """
    from PIL import Image

    _, h, w = cfg["input_size"]
    transform = eval_transform(cfg)
    out = np.empty((len(images), h, w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = as_array(transform(Image.fromarray(np.ascontiguousarray(img), "RGB")), h, w)
    return out


def as_array(img: Any, h: int, w: int) -> np.ndarray:
    """A transformed PIL image as uint8 ``[h, w, 3]``; ValueError when it is not that size."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if arr.shape != (h, w, 3):  # timm's transform always ends at input_size; guard the contract
        raise ValueError(f"eval transform gave {arr.shape}, expected {(h, w, 3)}")
    return arr
