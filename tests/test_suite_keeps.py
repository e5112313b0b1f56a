"""Per-method keep ratios in suites: expansion, cell identity, CLI override, bad input."""

from __future__ import annotations

import pytest

from vitbench.core.errors import VitbenchError
from vitbench.core.specs import Cell, MethodSpec
from vitbench.harness.suites import expand, suite_from_dict

BASE = {
    "name": "t",
    "models": [{"name": "vitbench_demo_vit", "weights": "random"}],
    "keep_ratios": [0.9, 0.7, 0.5],
}


def test_method_keep_ratios_replace_the_suite_ones() -> None:
    suite = suite_from_dict({**BASE, "methods": ["dense", "evit", {"name": "tome", "keep_ratios": [0.5]}]})
    keeps: dict[str, list[float]] = {}
    for cell in expand(suite):
        keeps.setdefault(cell.method.name, []).append(cell.keep_ratio)
    assert keeps == {"dense": [1.0], "evit": [0.9, 0.7, 0.5], "tome": [0.5]}


def test_method_keep_ratios_are_not_part_of_the_cell_key() -> None:
    """A store made before a method got its own keep ratios resumes: same keys."""
    suite = suite_from_dict({**BASE, "methods": [{"name": "evit", "keep_ratios": [0.7]}]})
    (cell,) = expand(suite)
    plain = Cell(
        cell.model, MethodSpec("evit"), cell.keep_ratio, cell.noise, cell.selection, cell.seed, cell.dataset
    )
    assert cell.key() == plain.key()
    other = Cell(cell.model, MethodSpec("evit"), 0.5, cell.noise, cell.selection, cell.seed, cell.dataset)
    assert other.key() != cell.key()


@pytest.mark.parametrize("keeps, match", [([], "empty"), ([1.5], "outside"), ([0], "outside")])
def test_bad_method_keep_ratios(keeps: list[float], match: str) -> None:
    with pytest.raises(VitbenchError, match=match):
        suite_from_dict({**BASE, "methods": [{"name": "evit", "keep_ratios": keeps}]})
