"""One generic registry for methods, datasets and noises.

Registration happens by decorator at the definition site; third-party methods arrive through
the entry-point group ``vitbench.methods`` and are loaded the first time a name is looked up.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def close_hint(name: str, names: Iterable[str]) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the names close to ``name`` (empty when none is)."""
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class UnknownNameError(KeyError):
    """A name that is not registered; the message carries close matches and the full list."""

    def __str__(self) -> str:  # KeyError quotes its argument; print the sentence as is.
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> object table with metadata and helpful unknown-name errors.

    Args:
        kind: what the registry holds, used in messages ("method", "dataset", "noise").
        entry_point_group: optional entry-point group scanned once, lazily, for plugins.

    Example:
        >>> R = Registry("method")
        >>> @R.register("tome", family="token")
        ... class ToMe: ...
        >>> R.get("tmoe")  # doctest: +SKIP
        UnknownNameError: unknown method 'tmoe'; did you mean 'tome'? available: tome
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._group = entry_point_group
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` with free-form metadata."""

        def deco(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> None:
        """Register ``obj`` under ``name``; a second registration of one name is an error."""
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.kind} '{name}' is registered twice; pick another name")
        self._items[name] = obj
        self._meta[name] = dict(meta)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        assert self._group is not None
        for ep in metadata.entry_points(group=self._group):
            if ep.name in self._items:
                continue
            obj = ep.load()
            if ep.name not in self._items:  # the plugin module may register itself on import
                self.add(ep.name, obj, plugin=ep.value)

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` or raise with close matches."""
        if name not in self._items:
            self._load_plugins()
        if name not in self._items:
            raise UnknownNameError(self.unknown_message(name))
        return self._items[name]

    def unknown_message(self, name: str) -> str:
        """The one-line error for an unknown ``name``."""
        names = self.names()
        return f"unknown {self.kind} '{name}'{close_hint(name, names)} available: {', '.join(names)}"

    def info(self, name: str) -> dict[str, Any]:
        """Metadata given at registration."""
        self.get(name)
        return dict(self._meta[name])

    def names(self, **filters: Any) -> list[str]:
        """Sorted names, optionally only those whose metadata matches ``filters``."""
        self._load_plugins()
        return sorted(n for n, m in self._meta.items() if all(m.get(k) == v for k, v in filters.items()))

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
