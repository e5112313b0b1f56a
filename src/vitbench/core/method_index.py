"""What every view needs to know about a method, without importing torch.

The method classes live in :mod:`vitbench.methods`, whose modules import torch and timm (seconds of
CPU). Commands that only read a results store (``leaderboard``, ``compare``, ``robustness``,
``report``) or list the methods (``vitbench methods``) need a few facts per method: its family,
keep-ratio knob, selection modes, semantics version, summary, default parameters and needs. For
the methods shipped with vitbench these facts are read from ``vitbench/assets/methods.json``,
written from the classes themselves by ``python -m vitbench.core.method_index`` (a test fails when
it no longer matches them). Methods of plugin packages (entry-point group ``vitbench.methods``) are
looked up in the registry, which imports them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from vitbench.core.registry import METHODS, UnknownNameError, close_hint

#: The entry-point group of plugin methods (as :data:`vitbench.core.registry.METHODS` scans).
PLUGIN_GROUP = "vitbench.methods"


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """The facts about one method that views and listings need.

    Attributes:
        name: registry key.
        family: ``token``, ``channel`` or ``baseline``.
        knob: the native parameter the keep ratio maps to (``""``: none).
        selections: selection modes (``scored``, ``random``).
        version: semantics version (:attr:`vitbench.methods.base.Method.version`).
        summary: one line for ``vitbench methods``.
        token: a token method (patches a model) rather than a channel method.
        trainable: learned parts come from an artifact.
        params: default native parameters, ``name=repr(value)`` joined by ``, `` (``-``: none).
        needs: what a model must have beyond timm ViT blocks (``-``: nothing).
        param_names: the names of its native parameters (what a suite's ``params:`` may set).
        adaptive: its tokens or GMACs vary per image (``Conformance.adaptive``: ATS, PPT).
    """

    name: str
    family: str
    knob: str
    selections: tuple[str, ...]
    version: int
    summary: str
    token: bool
    trainable: bool
    params: str
    needs: str
    param_names: tuple[str, ...] = ()
    adaptive: bool = False

    def given_knob(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``{knob: value}`` when ``params`` give the native knob (fixing the setting), else ``{}``.

        The torch-free part of :meth:`vitbench.methods.base.Method.fixed_by` (which also reads
        the parameters that replace the knob from the method classes).
        """
        return {self.knob: params[self.knob]} if self.knob and self.knob in params else {}


def index_file() -> Path:
    """Path of the shipped index (``vitbench/assets/methods.json``)."""
    return Path(str(resources.files("vitbench") / "assets" / "methods.json"))


@cache
def shipped() -> dict[str, MethodInfo]:
    """The index of the methods shipped with vitbench (empty when the file is missing)."""
    path = index_file()
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {
        name: MethodInfo(
            **{
                **entry,
                "selections": tuple(entry["selections"]),
                "param_names": tuple(entry.get("param_names", ())),
            }
        )
        for name, entry in data.items()
    }


@cache
def _plugins() -> bool:
    """Whether any plugin method package is installed (reads package metadata only)."""
    return bool(list(metadata.entry_points(group=PLUGIN_GROUP)))


def info_of(cls: Any) -> MethodInfo:
    """The :class:`MethodInfo` of a method class (imports nothing; the class is loaded already).

    Token methods are those with the token contract's ``schedule`` (channel methods have none).
    """
    params = ", ".join(f"{k}={v!r}" for k, v in cls.defaults().items()) or "-"
    return MethodInfo(
        name=cls.name,
        family=cls.family,
        knob=cls.knob or "",
        selections=tuple(cls.selections),
        version=int(cls.version),
        summary=cls.summary,
        token=callable(getattr(cls, "schedule", None)),
        trainable=bool(cls.trainable),
        params=params,
        needs=cls.requirements.short(),
        param_names=tuple(f.name for f in dataclasses.fields(cls.Params)),
        adaptive=bool(getattr(getattr(cls, "conformance", None), "adaptive", False)),
    )


def method_info(name: str) -> MethodInfo | None:
    """The facts about method ``name``; ``None`` when no method has that name.

    Shipped methods come from the index; other names are looked up in the registry (which imports
    the method modules) only when a plugin package is installed.
    """
    found = shipped().get(name)
    if found is not None:
        return found
    if not _plugins() and shipped():
        return None
    return info_of(METHODS.get(name)) if name in METHODS else None


def require_method(name: str) -> MethodInfo:
    """The facts about method ``name`` (no torch for shipped methods).

    Raises:
        UnknownNameError: no method has that name (close matches and the full list named, as the
            method registry says it).
    """
    info = method_info(name)
    if info is None:
        names = [m.name for m in all_methods()]
        raise UnknownNameError(
            f"unknown method '{name}'{close_hint(name, names) or ';'} available: {', '.join(names)}"
        )
    return info


def adaptive_methods(names: Iterable[str]) -> list[str]:
    """The adaptive methods among ``names`` (:attr:`MethodInfo.adaptive`), sorted, each once."""
    return sorted(n for n in set(names) if (info := method_info(n)) is not None and info.adaptive)


def all_methods() -> list[MethodInfo]:
    """Every method, sorted by name: the shipped index plus installed plugins (imported)."""
    infos = dict(shipped())
    if _plugins() or not infos:
        for name in METHODS.names():
            infos[name] = info_of(METHODS.get(name))
    return [infos[n] for n in sorted(infos)]


def build_index() -> dict[str, dict[str, Any]]:
    """The index of every method registered by the package ``vitbench.methods`` (imports torch)."""
    out = {}
    for name in METHODS.names():
        cls = METHODS.get(name)
        if not cls.__module__.startswith("vitbench.methods"):
            continue  # a plugin: never shipped in the index
        entry = dataclasses.asdict(info_of(cls))
        entry["selections"] = list(entry["selections"])
        entry["param_names"] = list(entry["param_names"])
        out[name] = entry
    return out


def write_index(path: Path | None = None) -> Path:
    """Write :func:`build_index` to ``path`` (default :func:`index_file`); returns the path."""
    target = path or index_file()
    target.write_text(json.dumps(build_index(), indent=1, sort_keys=True) + "\n")
    return target


if __name__ == "__main__":
    print(f"wrote {write_index()}")
