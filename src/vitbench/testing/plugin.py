"""Pytest plugin of the conformance kit: ``--vitbench-method NAME`` (repeatable).

Load it with ``-p vitbench.testing.plugin`` and collect the kit's own test module::

    pytest -p vitbench.testing.plugin --pyargs vitbench.testing.test_conformance --vitbench-method mymethod
"""

from __future__ import annotations

import pytest

from vitbench.testing import case_id, conformance_cases, is_slow


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--vitbench-method``."""
    parser.addoption(
        "--vitbench-method",
        action="append",
        default=[],
        metavar="NAME",
        help="registered method to run the vitbench conformance checks on (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``slow`` marker the kit puts on the cases of slow methods."""
    config.addinivalue_line("markers", "slow: conformance cases of methods that declare conformance.slow")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize tests asking for ``vitbench_case`` over the cases of the ``--vitbench-method`` names."""
    if "vitbench_case" not in metafunc.fixturenames:
        return
    names = metafunc.config.getoption("vitbench_method")
    if not names:
        raise pytest.UsageError("name the method(s) to check with --vitbench-method NAME")
    found = [
        pytest.param(c, id=case_id(*c), marks=[pytest.mark.slow] if is_slow(*c) else [])
        for c in conformance_cases(*names)
    ]
    metafunc.parametrize("vitbench_case", found)
