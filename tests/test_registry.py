"""Registry: close-match errors, metadata, entry-point plugins; no shadowing of installed packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from vitbench.core.registry import Registry, UnknownNameError
from vitbench.methods import METHODS


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(UnknownNameError) as info:
        METHODS.get("tmoe")
    msg = str(info.value)
    assert msg.startswith("unknown method 'tmoe'; did you mean 'tome'") and "evit" in msg


def test_register_info_and_duplicates() -> None:
    reg: Registry[object] = Registry("thing")

    @reg.register("a", family="x")
    class A: ...

    assert reg.get("a") is A and reg.info("a") == {"family": "x"} and reg.names(family="x") == ["a"]
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", object())


def test_entry_point_plugins_load_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = []

    class Plugin: ...

    def fake_entry_points(group: str) -> list[SimpleNamespace]:
        assert group == "test.plugins"
        loaded.append(group)
        return [SimpleNamespace(name="third-party", value="pkg:Plugin", load=lambda: Plugin)]

    monkeypatch.setattr("vitbench.core.registry.metadata.entry_points", fake_entry_points)
    reg: Registry[object] = Registry("method", entry_point_group="test.plugins")
    assert not loaded
    assert reg.get("third-party") is Plugin and reg.info("third-party")["plugin"] == "pkg:Plugin"
    assert "third-party" in reg.names()


def test_no_shadowing_of_installed_packages() -> None:
    root = Path(__file__).resolve().parents[1]
    for folder in ("benchmark", "methods", "datasets", "results"):
        assert not (root / folder / "__init__.py").exists()
        assert not list((root / folder).glob("*.py")), f"{folder}/ must hold declarative files only"
    spec = importlib.util.find_spec("datasets")
    if spec is not None and spec.origin:
        assert root not in Path(spec.origin).resolve().parents


def test_register_self_reads_name_and_family_once() -> None:
    from vitbench.core.registry import describe_method

    reg: Registry[type] = Registry("method", describe=describe_method)

    @reg.register_self
    class Mine:
        name, family = "mine", "channel"

    assert reg.get("mine") is Mine and reg.info("mine") == {"family": "channel"}

    class Nameless:
        name, family = "", "token"

    with pytest.raises(ValueError, match="has no name; set the class attribute name"):
        reg.register_self(Nameless)

    class Odd:
        name, family = "odd", "tokens"

    with pytest.raises(ValueError, match="family 'tokens'; set the class attribute family to one of token"):
        reg.register_self(Odd)
    with pytest.raises(ValueError, match="needs a name"):
        Registry("thing").register_self(Mine)


def test_builtin_registration_matches_class_attributes() -> None:
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert cls.name == name and METHODS.info(name) == {"family": cls.family}
