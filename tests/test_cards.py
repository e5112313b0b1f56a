"""Method cards against the registry; cards and suites come from the package, never the cwd."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vitbench.core.errors import VitbenchError
from vitbench.harness.suites import find_suite, load_suite, suite_names, suites_dir
from vitbench.methods import METHODS
from vitbench.report.paper import cards_dir, load_card, load_cards
from vitbench.testing.checks import card


def test_every_method_has_a_card_and_every_card_a_method() -> None:
    files = {p.stem for p in cards_dir().glob("*.yaml")}
    assert files == set(METHODS.names())
    assert set(load_cards()) == set(METHODS.names())


@pytest.mark.parametrize("name", METHODS.names())
def test_card_agrees_with_the_registered_method(name: str) -> None:
    cls = METHODS.get(name)
    data = load_cards()[name]
    assert data["name"] == name == cls.name and (cards_dir() / f"{name}.yaml").is_file()
    assert data["family"] == cls.family == METHODS.info(name)["family"]
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in cls.defaults().items()}
    assert data["defaults"] == want
    card(cls)  # the kit's card check agrees


def test_card_check_names_each_disagreement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = METHODS.get("evit")
    shipped = yaml.safe_load((cards_dir() / "evit.yaml").read_text())
    for change, words in (
        ({"name": "evit2"}, "names 'evit2'"),
        ({"family": "channel"}, "family 'channel'"),
        ({"defaults": {**shipped["defaults"], "keep_rate": 0.5}}, "defaults"),
    ):
        (tmp_path / "evit.yaml").write_text(yaml.safe_dump({**shipped, **change}))
        monkeypatch.setattr("vitbench.testing.common.cards_dir", lambda: tmp_path)
        with pytest.raises(AssertionError, match=words):
            card(cls)
    (tmp_path / "evit.yaml").unlink()
    with pytest.raises(AssertionError, match="has no card"):
        card(cls)


def test_load_card_bad_files(tmp_path: Path) -> None:
    with pytest.raises(VitbenchError, match="does not exist"):
        load_card(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(VitbenchError, match="not valid YAML"):
        load_card(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(VitbenchError, match="needs at least a 'name' key"):
        load_card(tmp_path / "list.yaml")


def test_cwd_folders_do_not_replace_shipped_cards_or_suites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``./methods/*.yaml`` and ``./benchmark/*.yaml`` are ignored; a suite is used when passed by path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "tome.yaml").write_text(yaml.safe_dump({"name": "tome", "family": "channel"}))
    (tmp_path / "benchmark").mkdir()
    mine = {**yaml.safe_load((suites_dir() / "demo.yaml").read_text()), "name": "mine", "keep_ratios": [0.5]}
    (tmp_path / "benchmark" / "demo.yaml").write_text(yaml.safe_dump(mine))
    (tmp_path / "benchmark" / "only-here.yaml").write_text(yaml.safe_dump(mine))
    assert load_cards()["tome"]["family"] == "token"
    assert cards_dir().resolve() != (tmp_path / "methods").resolve()
    assert find_suite("demo") == suites_dir() / "demo.yaml" and load_suite("demo").name == "demo"
    assert "only-here" not in suite_names()
    with pytest.raises(VitbenchError, match="suite 'only-here' not found"):
        find_suite("only-here")
    assert load_suite("benchmark/demo.yaml").name == "mine"  # by path: the user's own file
    with pytest.raises(VitbenchError, match="suite file elsewhere/demo.yaml does not exist"):
        find_suite("elsewhere/demo.yaml")


def test_paper_flops_table_says_why_a_row_does_not_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """A published row that vitbench's count does not round to is marked NO, with its card's note."""
    from vitbench.report import paper

    card = {
        "gmacs_rounding": "round",
        "published": [
            {"model": "deit_tiny_patch16_224", "gmacs": 1.3, "source": "matches"},
            {"model": "deit_tiny_patch16_224", "gmacs": 0.5, "source": "the paper counts another input size"},
        ],
    }
    monkeypatch.setattr(paper, "load_cards", lambda: {"dense": card})
    text = paper.paper_flops_table()
    assert text.count("| yes") == 1 and text.count("| NO") == 1
    assert "do not match" in text
    assert "deit_tiny_patch16_224 dense (-): the paper counts another input size" in text


def test_paper_flops_table_names_the_token_methods_without_published_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token method whose card has no published GMACs row is named under the table, not left out."""
    from vitbench.report import paper

    cards = {
        "dense": {"published": [{"model": "deit_tiny_patch16_224", "gmacs": 1.3, "source": "s"}]},
        "pitome": {"published": []},
        "ats": {"published": [{"model": "deit_small_patch16_224", "top1": 79.0}]},  # no GMACs
    }
    monkeypatch.setattr(paper, "load_cards", lambda: cards)
    text = paper.paper_flops_table()
    assert text.splitlines()[-1] == (
        "Token methods without published GMACs rows here: ats, pitome (their method cards say why)."
    )
