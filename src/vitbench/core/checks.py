"""Checks of suite and command-line values that need neither torch nor timm.

A suite file with a mistake should be refused in a fraction of a second, before the seconds that
importing torch, timm and the method modules take. The checks here are the ones every layer above
shares (the harness's suite loader, the command line, model creation, the runtime axis); those that
need a model or a method class run afterwards (:func:`vitbench.harness.suites.suite_from_dict`).
"""

from __future__ import annotations

import difflib
import importlib.util
import math
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

from vitbench.core.errors import VitbenchError

#: Keys of a ``data_config`` override (timm's data config fields).
DATA_CONFIG_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming", "random")
_CROP_MODES = ("center", "squash", "border")

#: Runtime names in the order tables list them.
RUNTIMES = ("eager", "compile", "onnxruntime", "openvino")
#: Packages each runtime needs beyond torch (all in the ``deploy`` extra).
_NEEDS = {
    "eager": (),
    "compile": (),
    "onnxruntime": ("onnx", "onnxscript", "onnxruntime"),
    "openvino": ("onnx", "onnxscript", "openvino"),
}


def check_keep_ratio(keep_ratio: float) -> None:
    """Raise a one-line error unless ``keep_ratio`` is in (0, 1]."""
    if not isinstance(keep_ratio, (int, float)) or not 0.0 < float(keep_ratio) <= 1.0:
        raise VitbenchError(f"keep ratio {keep_ratio!r} is outside (0, 1]; use a value such as 0.7")


def check_fixed_setting(
    method: str, knob: str, fixed: Mapping[str, Any], keeps: Sequence[float], where: str
) -> None:
    """Refuse a method whose given parameters fix its native setting while it runs at several keep ratios.

    A method's given parameters win over the keep-ratio mapping (``Method.params_for``): with its
    native knob given (ToMe's ``r: 13``), or a parameter that replaces the knob (ToMe's
    ``r_per_block``), every keep ratio runs the same setting, and tables would list one evaluation
    several times under different keep labels.

    Args:
        method: the method's name.
        knob: its native knob (the parameter the keep ratio maps to).
        fixed: the given parameters that fix its setting whatever the keep ratio (name -> value,
            in the order named; empty: none).
        keeps: the keep ratios it runs at (repeated values count once).
        where: what gave them, for the message (the suite file, ``suite 'demo'``).

    Raises:
        VitbenchError: ``fixed`` is not empty and ``keeps`` holds two or more distinct values.
    """
    distinct = list(dict.fromkeys(float(k) for k in keeps))
    if not fixed or len(distinct) < 2:
        return
    shown = ", ".join(f"{name}={_shown(value)}" for name, value in fixed.items())
    parts = [f"{'its native knob ' if name == knob else ''}{name}={_shown(v)}" for name, v in fixed.items()]
    what = "sets " + " and ".join(parts) + ("" if knob in fixed else f" (in place of its native knob {knob})")
    keep_text = ", ".join(f"{k:g}" for k in distinct)
    same = shown if list(fixed) == [knob] else "the same setting"
    raise VitbenchError(
        f"{where}: method '{method}' {what}, so keep ratios {keep_text} all run {same}; "
        f"give one keep ratio or drop {' and '.join(fixed)}"
    )


def _shown(value: Any) -> str:
    """A parameter value as a suite writes it (``[2, 2]`` for lists and tuples)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def method_keep_pairs(methods: Sequence[str], keeps: Sequence[float]) -> list[tuple[str, float]]:
    """(method, keep) pairs: ``name`` at every keep of ``keeps``, ``name@0.5`` at its own keep only.

    Raises:
        VitbenchError: a keep after ``@`` that is not a number in (0, 1].
    """
    out = []
    for m in methods:
        name, _, own = m.partition("@")
        if name == "dense":
            continue
        if not own:
            out += [(name, k) for k in keeps]
            continue
        try:
            keep = float(own)
        except ValueError:
            keep = -1.0
        if not 0.0 < keep <= 1.0:
            raise VitbenchError(f"--method {m}: the keep ratio after @ must be in (0, 1], e.g. magnitude@0.5")
        out.append((name, keep))
    return out


def freeze_args(args: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Sorted (name, value) pairs with lists turned into tuples (hashable, for specs)."""

    def freeze(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(freeze(x) for x in v)
        if isinstance(v, dict):
            return tuple(sorted((str(k), freeze(x)) for k, x in v.items()))
        return v

    return tuple(sorted((str(k), freeze(v)) for k, v in args.items()))


def check_data_config(dcfg: Mapping[str, Any], model_args: Mapping[str, Any], where: str) -> None:
    """Validate a ``data_config`` override without building the model.

    Raises:
        VitbenchError: unknown key, an ``input_size`` that is not 3 positive integers, a
            ``mean``/``std`` whose length is not the number of input channels (``input_size[0]``,
            else ``model_args['in_chans']``, else 3), ``std`` <= 0, an unknown interpolation or
            crop mode, or a ``crop_pct`` outside (0, 1].
    """
    for key in dcfg:
        if key not in DATA_CONFIG_KEYS:
            close = difflib.get_close_matches(key, DATA_CONFIG_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise VitbenchError(
                f"{where}: unknown data_config key '{key}'{hint} allowed: {', '.join(DATA_CONFIG_KEYS)}"
            )
    size = dcfg.get("input_size")
    if size is not None and (
        not isinstance(size, (list, tuple))
        or len(size) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise VitbenchError(
            f"{where}: data_config input_size must be [channels, height, width], got {size!r}"
        )
    chans = int(size[0]) if size is not None else int(model_args.get("in_chans", 3))
    for key in ("mean", "std"):
        value = dcfg.get(key)
        if value is None:
            continue
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        )
        if not ok or len(value) != chans:
            raise VitbenchError(
                f"{where}: data_config {key} must list {chans} numbers (one per input channel), got {value!r}"
            )
        if key == "std" and any(v <= 0 for v in value):
            raise VitbenchError(f"{where}: data_config std must be positive, got {value!r}")
    interp = dcfg.get("interpolation")
    if interp is not None and interp not in _INTERPOLATIONS:
        raise VitbenchError(
            f"{where}: data_config interpolation {interp!r} is not one of {', '.join(_INTERPOLATIONS)}"
        )
    mode = dcfg.get("crop_mode")
    if mode is not None and mode not in _CROP_MODES:
        raise VitbenchError(f"{where}: data_config crop_mode {mode!r} is not one of {', '.join(_CROP_MODES)}")
    pct = dcfg.get("crop_pct")
    if pct is not None and (
        not isinstance(pct, (int, float)) or isinstance(pct, bool) or not 0 < float(pct) <= 1
    ):
        raise VitbenchError(f"{where}: data_config crop_pct must be in (0, 1], got {pct!r}")


def check_runtimes(names: Sequence[str]) -> tuple[str, ...]:
    """Validate runtime names and that their packages are installed.

    Raises:
        VitbenchError: an unknown name (the known ones listed), or a runtime whose packages are
            missing (names the ``deploy`` extra).
    """
    out = []
    for name in names:
        if name not in _NEEDS:
            raise VitbenchError(f"unknown runtime '{name}'; use one of {', '.join(RUNTIMES)}")
        missing = [p for p in _NEEDS[name] if importlib.util.find_spec(p) is None]
        if missing:
            raise VitbenchError(
                f"runtime '{name}' needs {', '.join(missing)}: install the deploy extra "
                f'(pip install "vitbench[deploy]")'
            )
        if name not in out:
            out.append(name)
    return tuple(out)


def runtime_version(name: str) -> str:
    """The version string recorded with a runtime (``torch 2.x`` for eager and compile)."""
    pkg = {"eager": "torch", "compile": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}[name]
    try:
        return f"{pkg} {metadata.version(pkg)}"
    except metadata.PackageNotFoundError:
        return f"{pkg} (not installed)"
