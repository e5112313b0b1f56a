"""The example plugin (docs/examples/vitbench-normtop) found through a real entry point; the kit on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vitbench.core.registry import Registry, describe_method
from vitbench.methods import METHODS
from vitbench.testing import conformance_cases, run_case

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "vitbench-normtop"


def _install(site: Path) -> None:
    """What ``pip install`` leaves behind: the package and a dist-info with its entry points."""
    shutil.copytree(EXAMPLE / "src" / "vitbench_normtop", site / "vitbench_normtop")
    text = (EXAMPLE / "pyproject.toml").read_text()
    section = text.split('[project.entry-points."vitbench.methods"]\n', 1)[1].split("\n\n", 1)[0]
    entries = [line for line in section.splitlines() if "=" in line and not line.startswith("#")]
    assert entries == ['normtop = "vitbench_normtop:NormTop"']
    info = site / "vitbench_normtop-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vitbench-normtop\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[vitbench.methods]\n" + entries[0].replace('"', "") + "\n")


@pytest.fixture
def normtop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``normtop`` installed into a fresh site folder on ``sys.path``; METHODS re-scans its plugins."""
    _install(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    METHODS.names()  # built-ins loaded first
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(METHODS, "_meta", {k: dict(v) for k, v in METHODS._meta.items()})
    monkeypatch.setattr(METHODS, "_plugins_loaded", False)
    yield "normtop"
    sys.modules.pop("vitbench_normtop", None)


def test_entry_point_registers_the_plugin(normtop: str) -> None:
    cls = METHODS.get(normtop)
    assert cls.__module__ == "vitbench_normtop" and METHODS.info(normtop) == {
        "family": "token",
        "plugin": "vitbench_normtop:NormTop",
    }
    assert normtop in METHODS.names(family="token")


def test_kit_runs_on_the_plugin(normtop: str) -> None:
    found = conformance_cases(normtop)
    checks = {c for _, c, _ in found}
    assert checks == {
        "identity",
        "undo",
        "schedule",
        "prefix",
        "random",
        "gmacs",
        "refusal",
        "card",
        "variant",
    }
    for case in found:
        run_case(*case)


def test_kit_catches_a_broken_plugin(normtop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A method whose schedule is off by one fails the schedule check with a one-line reason."""
    cls = METHODS.get(normtop)
    real = cls.schedule.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(cls, "schedule", classmethod(lambda c, m, p: [t + 1 for t in real(c, m, p)]))
    with pytest.raises(AssertionError, match="counted .* schedule"):
        run_case(normtop, "schedule", "vit")


def test_entry_point_name_must_match_the_method_name(monkeypatch: pytest.MonkeyPatch) -> None:
    class Odd:
        name, family = "odd", "token"

    class EP:
        name, value = "even", "pkg:Odd"

        def load(self) -> type:
            return Odd

    monkeypatch.setattr("vitbench.core.registry.metadata.entry_points", lambda group: [EP()])
    reg: Registry[type] = Registry("method", entry_point_group="g", describe=describe_method)
    with pytest.raises(
        ValueError, match="entry point 'even' .* loads the method 'odd'; name the entry point 'odd'"
    ):
        reg.names()


def test_one_pytest_line_runs_the_kit_on_the_installed_plugin(tmp_path: Path) -> None:
    """The command CONTRIBUTING.md documents, in a fresh interpreter that finds the plugin by entry point."""
    site = tmp_path / "site"
    site.mkdir()
    _install(site)
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]  # vitbench as this run imports it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    cmd = ["-p", "vitbench.testing.plugin", "--pyargs", "vitbench.testing.test_conformance"]
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *cmd,
        "--vitbench-method",
        "normtop",
    ]
    done = subprocess.run(
        [*args, "-k", "card or refusal or undo-vit"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "5 passed" in done.stdout  # card, 3 refusals, undo, done.stdout[-500:]
