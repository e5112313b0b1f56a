"""vitbench: benchmark and robustness-evaluation suite for Vision Transformer compression."""

from __future__ import annotations

from vitbench.core.version import VERSION as __version__

__all__ = ["__version__", "load_results"]


def load_results(path: str):  # noqa: ANN201 - pandas imported lazily
    """Load a results store (SQLite file) as a pandas DataFrame, one row per cell."""
    # deferred: `import vitbench` stays light (no pandas, no SQLite) until results are loaded
    from vitbench.store.results import load_results as _load

    return _load(path)
