"""Per-method keep ratios in suites: expansion, cell identity, CLI override, bad input."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from vitbench.cli.main import main
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


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"r": 13}, "method 'tome' sets its native knob r=13, so keep ratios 0.9, 0.7, 0.5 all run r=13; "),
        ({"r_per_block": [2] * 12}, "sets r_per_block=[2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2] (in place of"),
    ],
)
def test_given_knob_with_several_keep_ratios_is_refused(params: dict, message: str) -> None:
    """Given parameters win over the keep-ratio mapping: every keep ratio would run one setting."""
    with pytest.raises(VitbenchError) as info:
        expand(suite_from_dict({**BASE, "methods": [{"name": "tome", "params": params}]}, where="s.yaml"))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_parameter_that_fixes_the_setting_is_named() -> None:
    """The suite loader names a given knob without torch; the expansion names every fixing parameter."""
    suite = suite_from_dict({**BASE, "keep_ratios": [0.7], "methods": ["tome"]})
    both = MethodSpec("tome", (("r", 13), ("r_per_block", (2,) * 12)))
    suite = dataclasses.replace(suite, keep_ratios=(0.7, 0.5), methods=(both,))
    named = "sets its native knob r=13 and r_per_block=.*drop r and r_per_block$"
    with pytest.raises(VitbenchError, match=named):
        expand(suite)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("evit", {"fuse_token": False}),  # not the knob: the keep ratio still chooses keep_rate
        ("pitome", {"bsm_half": "second"}),
        ("tome", {"r_per_block": []}),  # empty: r (mapped from the keep ratio) stays in charge
        ("diffrate", {"merge_rate": 0.0}),  # no constant rates: the target still follows the keep ratio
        ("lfe", {"token_order": "official", "token_cfg": []}),
    ],
)
def test_other_parameters_with_several_keep_ratios_still_run(method: str, params: dict) -> None:
    cells = expand(suite_from_dict({**BASE, "methods": [{"name": method, "params": params}]}))
    assert [c.keep_ratio for c in cells] == [0.9, 0.7, 0.5]


@pytest.mark.parametrize(
    ("method", "params", "named"),
    [
        ("diffrate", {"prune_rate": 0.1, "merge_rate": 0.25}, "drop prune_rate and merge_rate"),
        ("diffrate", {"target": "2.9"}, "sets its native knob target=2.9"),
        ("lfe", {"token_cfg": [10] * 12}, "drop token_cfg"),
        ("random-channels", {"keep": 0.5}, "sets its native knob keep=0.5"),
    ],
)
def test_parameters_that_fix_other_methods_are_refused(method: str, params: dict, named: str) -> None:
    with pytest.raises(VitbenchError, match=re.escape(named)):
        expand(suite_from_dict({**BASE, "methods": [{"name": method, "params": params}]}))


def test_a_given_knob_at_one_keep_ratio_runs() -> None:
    """One keep ratio (the method's own, or the suite's) runs the given setting once."""
    one = {"name": "tome", "params": {"r": 13}, "keep_ratios": [0.7]}
    assert [c.keep_ratio for c in expand(suite_from_dict({**BASE, "methods": [one]}))] == [0.7]
    tome = {"name": "tome", "params": {"r": 13}}
    suite = suite_from_dict({**BASE, "keep_ratios": [0.5], "methods": [tome]})
    assert len(expand(suite)) == 1


def test_run_refuses_a_given_knob_with_several_keep_ratios_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--set r=13`` with two ``--keep``: one line, exit 2, before any cell or store."""
    store = tmp_path / "r.sqlite"
    args = ["run", "--method", "tome", "--set", "r=13", "--keep", "0.7", "--keep", "0.5"]
    assert main([*args, "--results", str(store), "--output-dir", ""]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: suite 'demo': method 'tome' sets its native knob r=13, so keep ratios 0.7, 0.5 all run "
        "r=13; give one keep ratio or drop r"
    )
    assert not store.exists()
