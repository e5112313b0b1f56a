"""Checks of the ``vitbench flops``, ``throughput`` and ``export`` flags that need no torch.

These commands import torch, timm and the method modules (seconds) before they build a model. A
misspelt method, runtime, dtype or method parameter, a keep ratio outside (0, 1], a batch size
of 0 or a runtime whose packages are missing is refused before that, in one line (exit 2), as
``vitbench run`` refuses a suite file with a mistake (:mod:`vitbench.core.checks`). The shipped
methods' facts come from the method index (:mod:`vitbench.core.method_index`); what needs a
model (a model name timm does not know, a parameter value a method refuses) is checked after.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vitbench.core.checks import check_fixed_setting, check_keep_ratio, method_keep_pairs
from vitbench.core.errors import VitbenchError
from vitbench.core.method_index import MethodInfo, all_methods, require_method
from vitbench.core.registry import close_hint
from vitbench.core.threads import check_threads

#: ``--dtype`` names and the torch dtype (attribute of ``torch``) each names.
DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def check_method(name: str, token_only: bool = False) -> MethodInfo:
    """The facts about method ``name``.

    Args:
        name: the ``--method`` value.
        token_only: the command takes token methods only (``vitbench flops``).

    Raises:
        UnknownNameError: no method has that name (close matches named).
        VitbenchError: a channel method where only token methods are taken.
    """
    info = require_method(name)
    if token_only and not info.token:
        raise VitbenchError(f"'{name}' is a {info.family} method; this command takes token methods")
    return info


def check_sets(infos: Sequence[MethodInfo], sets: Mapping[str, Any]) -> None:
    """Every ``--set NAME=VALUE`` names a parameter of one of the command's methods.

    Raises:
        VitbenchError: a name no method has (close matches and the parameters named).
    """
    names = sorted({p for info in infos for p in info.param_names})
    for key in sets:
        if key in names:
            continue
        hint = close_hint(key, names) or ";"
        if len(infos) == 1 and not names:
            raise VitbenchError(f"--set {key}: method '{infos[0].name}' has no parameters; leave out --set")
        if len(infos) == 1:
            raise VitbenchError(
                f"--set {key}: method '{infos[0].name}' has no parameter '{key}'{hint} "
                f"its parameters are: {', '.join(names)}"
            )
        methods = ", ".join(info.name for info in infos)
        raise VitbenchError(
            f"--set {key}: none of the methods {methods} has a parameter '{key}'{hint} see `vitbench methods`"
        )


def check_keep(keep: float, flag: str = "--keep") -> float:
    """A keep ratio in (0, 1] (one-line error naming ``flag`` otherwise)."""
    try:
        check_keep_ratio(keep)
    except VitbenchError as exc:
        raise VitbenchError(f"{flag}: {exc}") from None
    return keep


def check_positive(values: Iterable[int] | int | None, flag: str, example: str) -> None:
    """Each of ``values`` is an integer >= 1 (``None``: the default, nothing to check)."""
    items = [values] if isinstance(values, int) else list(values or ())
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise VitbenchError(f"{flag} {v}: must be a positive integer, e.g. {flag} {example}")


def check_dtypes(names: Iterable[str] | None) -> None:
    """Each ``--dtype`` is one of :data:`DTYPES`."""
    for name in names or ():
        if name not in DTYPES:
            raise VitbenchError(f"unknown dtype '{name}'; use float32, bfloat16 or float16")


def check_runtime_flags(dtypes: Sequence[str] | None, device: str, gpu_options: bool) -> None:
    """``throughput --runtime`` measures float32 on CPU: no other dtype, device, compile or layout."""
    if dtypes and set(dtypes) - {"float32", "fp32"}:
        raise VitbenchError("--runtime measures float32 only; leave out --dtype")
    if device != "cpu" or gpu_options:
        raise VitbenchError("--runtime measures on CPU; leave out --device, --compile and --channels-last")


def check_threads_flag(threads: int | None) -> None:
    """``--threads``: absent, or a positive integer."""
    check_threads(threads, "--threads", "use --threads 1 (or N >= 1), or leave it out")


def check_flops(method: str, keep: float, sets: Mapping[str, Any]) -> None:
    """``vitbench flops``: a token method, its ``--set`` parameters and the keep ratio."""
    info = check_method(method, token_only=True)
    check_sets([info], sets)
    check_keep(keep)


def check_throughput(
    methods: Sequence[str], keeps: Sequence[float], sets: Mapping[str, Any], runtime: bool
) -> None:
    """``vitbench throughput``: methods (``NAME@KEEP`` with ``--runtime``), keeps, ``--set``.

    A method whose knob ``--set`` gives (``r=13``) is refused when it runs at several keep ratios:
    every ratio would time the same setting (:func:`vitbench.core.checks.check_fixed_setting`).
    """
    for keep in keeps:
        check_keep(keep)
    for m in methods:
        if "@" in m and not runtime:
            name, _, own = m.partition("@")
            raise VitbenchError(
                f"--method {m}: NAME@KEEP is read with --runtime; give --method {name} --keep {own}"
            )
    pairs = method_keep_pairs(methods, keeps) if runtime else [(m, k) for m in methods for k in keeps]
    infos = {name: check_method(name) for name in ["dense", *(m.partition("@")[0] for m in methods)]}
    check_sets(list(infos.values()), sets)
    for name, info in infos.items():
        keeps = [k for n, k in pairs if n == name]
        check_fixed_setting(name, info.knob, info.given_knob(sets), keeps, "vitbench throughput")


def check_export(method: str, keep: float, sets: Mapping[str, Any], every: bool) -> None:
    """``vitbench export``: the method (any family), keep, ``--set`` (of any method with ``--all``)."""
    check_keep(keep)
    check_sets(all_methods() if every else [check_method(method)], sets)


def check_writable(path: str | None, flag: str) -> None:
    """A file can be written at ``path`` (the value of ``flag``), checked before any work runs.

    The nearest existing folder of ``path`` must take a new file (tried with a temporary file,
    removed at once: permission bits do not tell for root or special file systems such as
    ``/proc``); missing folders below it are created later by the command. ``None``: nothing
    to check.

    Raises:
        VitbenchError: ``path`` is a folder, or nothing can be written there (one line).
    """
    if not path:
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise VitbenchError(f"{flag} {path} is a folder; give a file path, e.g. {flag} {p / 'out'}")
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vitbench-write-check-"):
            pass
    except OSError as exc:
        raise VitbenchError(
            f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc}); pass a writable path"
        ) from None
