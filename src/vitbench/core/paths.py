"""Default output locations (``$VITBENCH_RESULTS`` or ``./vitbench-results``) and the references marker."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the folder that default results (store, tables, plots) go to.
RESULTS_ENV = "VITBENCH_RESULTS"


#: Default results folder, relative to the working directory: outside the committed ``results/``.
RESULTS_DIR = "vitbench-results"


#: Marker file of a folder of committed reference outputs (``results/`` of the repository).
REFERENCES_MARKER = ".vitbench-references"


def results_dir() -> Path:
    """Folder of default outputs: ``$VITBENCH_RESULTS`` or ``./vitbench-results``."""
    env = os.environ.get(RESULTS_ENV, "").strip()
    return Path(env).expanduser() if env else Path(RESULTS_DIR)


def default_store() -> Path:
    """Default SQLite results store: ``<results dir>/vitbench.sqlite``."""
    return results_dir() / "vitbench.sqlite"


def reference_tree(path: str | Path) -> Path | None:
    """The committed reference folder (with :data:`REFERENCES_MARKER`) holding ``path``, or ``None``."""
    here = Path(path).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / REFERENCES_MARKER).is_file():
            return folder
    return None
