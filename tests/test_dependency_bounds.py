"""constraints/oldest.txt pins every direct dependency to the lower bound pyproject.toml declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _lower_bounds() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    bounds: dict[str, str] = {}
    for text in reqs:
        req = Requirement(text)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        if lower:
            bounds[canonicalize_name(req.name)] = lower[0]
    return bounds


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints" / "oldest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_oldest_constraints_pin_every_lower_bound() -> None:
    bounds, pins = _lower_bounds(), _pins()
    assert bounds.keys() >= {"torch", "timm", "numpy", "pandas", "accelerate"}
    assert set(pins) == set(bounds), "constraints/oldest.txt and pyproject.toml name different packages"
    for name, lower in bounds.items():
        assert Version(pins[name]) == Version(lower), f"{name}: pinned {pins[name]}, lower bound {lower}"


def test_tox_oldest_env_uses_the_constraints_file() -> None:
    tox = (ROOT / "tox.ini").read_text()
    assert "[testenv:oldest]" in tox and "-c {toxinidir}/constraints/oldest.txt" in tox
    assert "[testenv:latest]" in tox
    assert "tox run -r -e oldest" in (ROOT / ".ci" / "run").read_text()
