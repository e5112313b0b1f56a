"""vitbench: benchmark and robustness-evaluation suite for Vision Transformer compression."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_results"]


def load_results(path: str):  # noqa: ANN201 - pandas imported lazily
    """Load a results store (SQLite file) as a pandas DataFrame, one row per cell."""
    from vitbench.store import load_results as _load

    return _load(path)
