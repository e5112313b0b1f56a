"""The conformance kit as a test module (cases from :mod:`vitbench.testing.plugin`).

Run: ``pytest -p vitbench.testing.plugin --pyargs vitbench.testing.test_conformance --vitbench-method NAME``.
"""

from __future__ import annotations

from vitbench.testing import run_case


def test_conformance(vitbench_case: tuple[str, str, str]) -> None:
    """One (method, check, tiny model) case."""
    run_case(*vitbench_case)
