"""Names a reader knows: models by name, differing model_args or label; image sets by suite and count.

* :func:`model_title`: a suite's ``label:`` of the model entry when it has one, else the timm
  name followed by the ``model_args`` that differ from the defaults the name spells
  (``vit_tiny_patch16_224 (img_size=32, patch_size=4, num_classes=10)``: ``patch16`` and
  ``_224`` spell ``patch_size=16`` and ``img_size=224``; ``num_classes`` defaults to 1000).
* :func:`image_set_names`: ``"demo, 1000 images"`` -- the suite(s) that measured an image set
  and its image count; the sample-ids hash goes to a footnote (:func:`image_set_footnote`).

Pure functions of record values; nothing here imports pandas, torch or timm.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

_PATCH = re.compile(r"patch(\d+)")
_SIZE = re.compile(r"_(\d+)$")
#: ``model_args`` defaults that no name spells: timm's ``num_classes`` of an ImageNet-1k model.
IMPLICIT_DEFAULTS: dict[str, Any] = {"num_classes": 1000}


def name_defaults(name: str) -> dict[str, Any]:
    """The ``model_args`` a timm-style model name spells (``patch16`` -> 16, ``_224`` -> 224).

    ``hf-hub:`` ids and names without these parts give only :data:`IMPLICIT_DEFAULTS`.
    """
    out = dict(IMPLICIT_DEFAULTS)
    arch = name.split(".")[0]
    if arch.startswith("hf-hub:"):
        return out
    patch = _PATCH.search(arch)
    if patch:
        out["patch_size"] = int(patch.group(1))
    size = _SIZE.search(arch)
    if size:
        out["img_size"] = int(size.group(1))
    return out


def _args(value: Any) -> dict[str, Any]:
    """``model_args`` as stored (JSON text, a mapping, or nothing) as a dict."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    try:
        loaded = json.loads(str(value))
    except ValueError:
        return {}
    return dict(loaded) if isinstance(loaded, dict) else {}


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    return str(v)


def model_title(name: str, model_args: Any = None, label: str | None = None) -> str:
    """How figures and tables name a model entry.

    Args:
        name: the timm model name (or ``hf-hub:`` id).
        model_args: the entry's ``model_args`` (JSON text or a mapping; empty: none).
        label: the suite's ``label:`` of the entry; when set it is the whole title.

    Returns:
        ``label``, or ``name`` plus ``(k=v, ...)`` of the ``model_args`` that differ from
        :func:`name_defaults` (in the stored key order), or ``name`` alone.
    """
    if label:
        return str(label)
    defaults = name_defaults(name)
    differ = [(k, v) for k, v in _args(model_args).items() if k not in defaults or defaults[k] != v]
    if not differ:
        return name
    return f"{name} ({', '.join(f'{k}={_value(v)}' for k, v in differ)})"


def model_titles(models: Iterable[Any], args: Iterable[Any], labels: Iterable[Any]) -> list[str]:
    """:func:`model_title` per row, a label applying to every row of its (name, model_args).

    A label given by one suite names the entry in every row of the same model and
    ``model_args`` (a dense record another suite reused included); several labels of one entry
    are joined with ``" / "``.
    """
    rows = [
        (str(m), "" if a is None or (isinstance(a, float) and a != a) else str(a), lb)
        for m, a, lb in zip(models, args, labels)
    ]
    found: dict[tuple[str, str], set[str]] = {}
    for m, a, lb in rows:
        text = "" if lb is None or (isinstance(lb, float) and lb != lb) else str(lb)
        if text:
            found.setdefault((m, a), set()).add(text)
    return [model_title(m, a, " / ".join(sorted(found.get((m, a), set()))) or None) for m, a, _ in rows]


def _count(n: Any) -> str:
    try:
        return f"{int(n)} images"
    except (TypeError, ValueError):
        return "images"


def image_set_names(rows: Iterable[tuple[Any, Any, Any, Any, Any]]) -> dict[tuple[str, str, str], str]:
    """Names of image sets: ``"demo, 1000 images"`` (suite(s) and count), unique per set.

    Args:
        rows: ``(dataset, split, sample_ids_hash, n_samples, suite)`` of every row.

    Returns:
        ``(dataset, split, hash) -> name``. Sets that would share a name get their dataset and
        split added, then a letter (``"demo, 1000 images (b)"``); the hash is left to
        :func:`image_set_footnote`.
    """
    suites: dict[tuple[str, str, str], set[str]] = {}
    counts: dict[tuple[str, str, str], Any] = {}
    for dataset, split, digest, n, suite in rows:
        key = (str(dataset), str(split), str(digest))
        suites.setdefault(key, set()).add(str(suite or ""))
        counts.setdefault(key, n)

    def base(key: tuple[str, str, str], detail: bool) -> str:
        names = sorted(s for s in suites[key] if s)
        who = "+".join(names[:2]) + (f"+{len(names) - 2}" if len(names) > 2 else "")
        where = f"{key[0]}/{key[1]}, " if detail or not who else ""
        return f"{who + ', ' if who else ''}{where}{_count(counts[key])}"

    out = {k: base(k, False) for k in suites}
    for detail in (True, None):
        clash: dict[str, list[tuple[str, str, str]]] = {}
        for k, v in out.items():
            clash.setdefault(v, []).append(k)
        for v, keys in clash.items():
            if len(keys) < 2:
                continue
            for i, k in enumerate(sorted(keys)):
                out[k] = base(k, True) if detail else f"{v} ({chr(ord('a') + i)})"
    return out


def image_set_footnote(names: Mapping[tuple[str, str, str], str]) -> str:
    """``"Images: demo, 1000 images = mnist-demo/test, ids e4338569"`` for every named set."""
    parts = [f"{v} = {d}/{s}, ids {h[:8]}" for (d, s, h), v in sorted(names.items(), key=lambda kv: kv[1])]
    return "Images: " + "; ".join(parts)


__all__ = [
    "IMPLICIT_DEFAULTS",
    "image_set_footnote",
    "image_set_names",
    "model_title",
    "model_titles",
    "name_defaults",
]
