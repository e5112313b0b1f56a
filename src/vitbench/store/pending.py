"""A results store that is created only when its first record is written.

A run refused during setup (a bad suite, a missing data folder, a model that cannot be built)
must leave nothing behind: :class:`PendingStore` checks the path at once, reads the cells an
existing store already holds, and creates a new store file only in :meth:`PendingStore.write`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vitbench.core.errors import VitbenchError
from vitbench.store.per_sample import PerSample
from vitbench.store.results import ResultsStore

_FIX = "pass --results to a writable path"


def check_creatable(path: Path) -> None:
    """Check that ``path`` could be created as a file, creating nothing.

    Raises:
        VitbenchError: ``path`` is a directory, or its nearest existing ancestor is not a
            writable folder (one line with the fix).
    """
    if path.is_dir():
        raise VitbenchError(f"results path {path} is a directory; pass --results to a file path")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise VitbenchError(f"cannot create results file {path}: {parent} is not a folder; {_FIX}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VitbenchError(f"results directory {parent} is not writable; {_FIX}")


class PendingStore:
    """The writing side of a run's :class:`ResultsStore`, opened lazily.

    An existing store is opened (and validated) at once, as :class:`ResultsStore` does; a new
    one is only checked (:func:`check_creatable`) and created by the first :meth:`write`.

    Args:
        path: the SQLite results file.

    Raises:
        VitbenchError: the path cannot hold a store (see :class:`ResultsStore`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._store: ResultsStore | None = None
        if self.path.exists():
            self._store = ResultsStore(self.path)
        else:
            check_creatable(self.path)

    @property
    def created(self) -> bool:
        """Whether the store file is open (it existed, or a record was written)."""
        return self._store is not None

    def done_keys(self) -> set[str]:
        """Cell keys of the successful cells already stored (none before the file exists)."""
        return self._store.done_keys() if self._store is not None else set()

    def record(self, cell_key: str) -> dict[str, Any] | None:
        """The stored successful record ``cell_key`` (:meth:`ResultsStore.record`), or ``None``."""
        return self._store.record(cell_key) if self._store is not None else None

    def samples(self, keys: Any = None) -> dict[str, PerSample]:
        """Per-sample outcomes by cell key (:meth:`ResultsStore.samples`); ``{}`` before the file exists."""
        return self._store.samples(keys) if self._store is not None else {}

    def update(self, cell_key: str, values: Mapping[str, Any]) -> None:
        """:meth:`ResultsStore.update` of a stored record (the store exists once a record was written)."""
        if self._store is None:
            raise VitbenchError(f"results file {self.path} has no record {cell_key!r}")
        self._store.update(cell_key, values)

    def write(self, record: Mapping[str, Any], samples: PerSample | None = None) -> None:
        """:meth:`ResultsStore.write`, creating the store file first when it does not exist yet."""
        if self._store is None:
            self._store = ResultsStore(self.path)
        self._store.write(record, samples=samples)

    def close(self) -> None:
        """Close the store if it was opened (idempotent)."""
        if self._store is not None:
            self._store.close()


__all__ = ["PendingStore", "check_creatable"]
