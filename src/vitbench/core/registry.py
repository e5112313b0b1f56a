"""One generic registry for methods, datasets and noises, and the method registry itself.

Registration happens by decorator at the definition site (``register(name)``, or
``register_self`` for objects that state their own name). The method registry :data:`METHODS`
lives here, at the bottom of the package, so that every layer can look a method's metadata up
by name; its entries are found the first time a name is looked up: every module of the package
``vitbench.methods`` is imported (a new method is one file there, no list to extend), and
third-party methods arrive through the entry-point group ``vitbench.methods``.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
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
        package: optional package whose modules are imported once, lazily, before the plugins
            (each module registers what it defines when imported).
        describe: optional ``obj -> (name, metadata)`` for objects that state their own name:
            :meth:`register_self` (a decorator without arguments) and entry-point plugins use it,
            so a name is written once, on the object.

    Example:
        >>> R = Registry("method")
        >>> @R.register("tome", family="token")
        ... class ToMe: ...
        >>> R.get("tmoe")  # doctest: +SKIP
        UnknownNameError: unknown method 'tmoe'; did you mean 'tome'? available: tome
    """

    def __init__(
        self,
        kind: str,
        entry_point_group: str | None = None,
        package: str | None = None,
        describe: Callable[[Any], tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.kind = kind
        self._describe = describe
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._group = entry_point_group
        self._package = package
        self._plugins_loaded = entry_point_group is None and package is None

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` with free-form metadata."""

        def deco(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return deco

    def register_self(self, obj: T) -> T:
        """Decorator registering ``obj`` under the name and metadata it states (``describe``).

        Raises:
            ValueError: the registry has no ``describe``, or the name is taken.
        """
        if self._describe is None:
            raise ValueError(f"the {self.kind} registry needs a name; use register(name)")
        name, meta = self._describe(obj)
        self.add(name, obj, **meta)
        return obj

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
        if self._package is not None:
            # Discovery by name keeps this bottom layer free of imports of the layers above it.
            pkg = importlib.import_module(self._package)
            for mod in pkgutil.iter_modules(pkg.__path__, prefix=f"{self._package}."):
                if not mod.ispkg:
                    importlib.import_module(mod.name)
        if self._group is None:
            return
        for ep in metadata.entry_points(group=self._group):
            if ep.name in self._items:
                continue
            obj = ep.load()
            if self._describe is not None:
                stated, meta = self._describe(obj)
                if stated != ep.name:
                    raise ValueError(
                        f"entry point '{ep.name}' ({ep.value}) loads the {self.kind} '{stated}'; "
                        f"name the entry point '{stated}'"
                    )
                if stated in self._items:  # the plugin module registered itself on import
                    self._meta[stated]["plugin"] = ep.value
                else:
                    self.add(stated, obj, **meta, plugin=ep.value)
            elif ep.name not in self._items:  # the plugin module may register itself on import
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


#: Method families: token reduction, channel pruning, and baselines standing in for either.
FAMILIES: tuple[str, ...] = ("token", "channel", "baseline")


def describe_method(cls: Any) -> tuple[str, dict[str, Any]]:
    """``(name, {"family": family})`` of a method class, read from its ``name``/``family`` attributes.

    Raises:
        ValueError: the class has no ``name`` or an unknown ``family``.
    """
    name, family = getattr(cls, "name", ""), getattr(cls, "family", "")
    label = getattr(cls, "__qualname__", repr(cls))
    if not isinstance(name, str) or not name:
        raise ValueError(f"method class {label} has no name; set the class attribute name = '...'")
    if family not in FAMILIES:
        raise ValueError(
            f"method '{name}' has family {family!r}; "
            f"set the class attribute family to one of {', '.join(FAMILIES)}"
        )
    return name, {"family": family}


#: Every compression method, by name: the built-in modules of ``vitbench.methods`` and the
#: plugins of the entry-point group ``vitbench.methods`` (loaded on the first lookup). Values are
#: ``Method`` subclasses (:mod:`vitbench.methods.base`, typed there as ``Registry[type[Method]]``);
#: each states its name and family once, as class attributes (:func:`describe_method`).
METHODS: Registry[Any] = Registry(
    "method", entry_point_group="vitbench.methods", package="vitbench.methods", describe=describe_method
)
