"""Conformance kit: the checks every vitbench method must pass, runnable by any method author.

In a test file (one line per method)::

    from vitbench.testing import conformance_tests

    test_mymethod = conformance_tests("mymethod")

or without a test file::

    pytest -p vitbench.testing.plugin --pyargs vitbench.testing.test_conformance --vitbench-method mymethod

Every check runs on tiny random-weight timm ViTs (:mod:`vitbench.testing.models`, and the model
variants of :mod:`vitbench.testing.variants`) on the CPU in seconds and never downloads. The
checks and what they assert: :mod:`vitbench.testing.checks`.
A method states what the checks should expect in its ``conformance`` attribute
(:class:`vitbench.methods.base.Conformance`).
"""

from __future__ import annotations

from collections.abc import Callable

from vitbench.core.errors import VitbenchError
from vitbench.methods.base import METHODS, Conformance
from vitbench.testing.checks import CHECKS, cases, run_check
from vitbench.testing.models import CLSLESS_MODELS, TINY_MODELS, make_model, model_input
from vitbench.testing.variants import VARIANTS, variant_model


def conformance_cases(*names: str) -> list[tuple[str, str, str]]:
    """``(method, check, model key)`` for every check that applies to each named method.

    Raises:
        UnknownNameError: a name that is not registered (close matches in the message).
    """
    return [(name, check, key) for name in names for check, key in cases(METHODS.get(name))]


def case_id(method: str, check: str, key: str) -> str:
    """Test id of one case: ``method-check-model`` (``method-card`` for the card)."""
    return "-".join(part for part in (method, check, key) if part)


def is_slow(method: str, check: str, key: str) -> bool:
    """Whether the case runs a method that declares ``conformance.slow`` (card and refusal never do)."""
    return METHODS.get(method).conformance.slow and check not in ("card", "refusal")


def run_case(method: str, check: str, key: str) -> None:
    """Run one case; a check the method lists in ``conformance.expected_failures`` must fail.

    Raises:
        AssertionError: the check failed, or an expected failure passed.
    """
    import pytest

    cls = METHODS.get(method)
    expected = dict(cls.conformance.expected_failures)
    if check not in expected:
        run_check(cls, check, key)
        return
    try:
        run_check(cls, check, key)
    except AssertionError:
        pytest.xfail(f"{method} declares: {expected[check]}")
    raise AssertionError(f"{method}: check '{check}' passed on {key} but is declared an expected failure")


def conformance_tests(*names: str) -> Callable[[str, str, str], None]:
    """A pytest test function parametrized over every conformance case of the named methods.

    Assign it to a module-level name starting with ``test`` and pytest collects one test per
    (method, check, tiny model), with ids such as ``tome-undo-vit``.

    Raises:
        VitbenchError: no method named.
    """
    import pytest  # deferred: importing vitbench.testing does not need pytest

    if not names:
        raise VitbenchError(
            "conformance_tests needs at least one method name, e.g. conformance_tests('tome')"
        )
    all_cases = [
        pytest.param(*c, id=case_id(*c), marks=[pytest.mark.slow] if is_slow(*c) else [])
        for c in conformance_cases(*names)
    ]

    @pytest.mark.parametrize(("method", "check", "key"), all_cases)
    def test_conformance(method: str, check: str, key: str) -> None:
        run_case(method, check, key)

    return test_conformance


__all__ = [
    "CHECKS",
    "CLSLESS_MODELS",
    "Conformance",
    "TINY_MODELS",
    "VARIANTS",
    "case_id",
    "conformance_cases",
    "conformance_tests",
    "is_slow",
    "make_model",
    "model_input",
    "run_case",
    "variant_model",
]
