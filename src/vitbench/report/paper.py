"""Method cards (``vitbench/cards/methods/*.yaml``, shipped with the package) and the published-GMACs table.

Cards are read from the package's data only, never from the current directory, so a folder named
``methods`` where vitbench runs cannot replace them.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vitbench.core.errors import VitbenchError
from vitbench.core.models import create_model
from vitbench.measure import count_gmacs
from vitbench.methods import METHODS, TokenMethod
from vitbench.methods.base import token_method
from vitbench.report.format import GMACS_NOTE, gmacs_digits


def cards_dir() -> Path:
    """Folder of the method cards shipped with vitbench (``vitbench/cards/methods``)."""
    return Path(str(resources.files("vitbench") / "cards" / "methods"))


def load_card(path: str | Path) -> dict[str, Any]:
    """One method card read from ``path`` (a YAML mapping with at least ``name``).

    Raises:
        VitbenchError: the file is missing, not YAML, or not a mapping with a ``name``.
    """
    path = Path(path)
    if not path.is_file():
        raise VitbenchError(f"method card {path} does not exist; give the path of a card YAML file")
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise VitbenchError(
            f"method card {path} is not valid YAML ({type(exc).__name__}); fix its syntax"
        ) from None
    if not isinstance(card, dict) or "name" not in card:
        raise VitbenchError(f"method card {path} is malformed; it needs at least a 'name' key")
    return card


def load_cards() -> dict[str, dict[str, Any]]:
    """All method cards shipped with vitbench, by registry key."""
    cards = {}
    for path in sorted(cards_dir().glob("*.yaml")):
        card = load_card(path)
        cards[card["name"]] = card
    return cards


def paper_round(value: float, mode: str = "round") -> float:
    """Round to one decimal as the paper does (``truncate`` for DynamicViT's tables)."""
    if mode == "truncate":
        return math.floor(value * 10 + 1e-9) / 10
    return round(value, 1)


def _untagged(params: Any) -> Any:
    """``params`` without an ``artifact`` tag (the table's settings do not depend on weights)."""
    import dataclasses

    return dataclasses.replace(params, artifact="") if hasattr(params, "artifact") else params


def paper_flops_table(progress: bool = False) -> str:
    """Markdown table: every published GMACs value of every card next to vitbench's count.

    ``progress``: a tqdm bar on stderr, one step per published value (off when stderr is not a
    terminal).
    """
    from tabulate import tabulate
    from tqdm.auto import tqdm

    rows = []
    models: dict[str, Any] = {}

    todo = [
        (name, card.get("gmacs_rounding", "round"), pub)
        for name, card in load_cards().items()
        # channel methods' GMACs come from searched structures, not from their params
        if name in METHODS and issubclass(METHODS.get(name), TokenMethod)
        for pub in card.get("published") or []
        if pub.get("gmacs") is not None
    ]
    for name, mode, pub in tqdm(
        todo, desc="GMACs", unit="row", disable=None if progress else True, leave=False
    ):
        arch = pub["model"].split(".")[0]
        if arch not in models:  # one model per architecture (setdefault would build it every row)
            models[arch] = create_model(arch, "random")
        model = models[arch]
        cls = token_method(name)
        overrides = dict(pub.get("params") or {})
        if cls.trainable:  # GMACs do not depend on trained weights
            overrides = {"artifact": "init", **overrides}
        params = cls.params_for(1.0, model, overrides)
        with cls.apply(model, params):
            g = count_gmacs(model)
        shown = paper_round(g, mode)
        rows.append(
            [
                arch,
                name,
                cls.setting(_untagged(params)) if name != "dense" else "-",
                f"{pub['gmacs']:.1f}",
                g,
                f"{shown:.1f}",
                "yes" if abs(shown - pub["gmacs"]) < 1e-6 else "NO",
            ]
        )
    head = [
        "Model",
        "Method",
        "Setting",
        "Published GMACs",
        "vitbench GMACs",
        "rounded as paper",
        "match",
    ]
    gd = gmacs_digits([r[4] for r in rows])
    rows = [[*r[:4], f"{r[4]:.{gd}f}", *r[5:]] for r in rows]
    note = (
        "GMACs counted by vitbench on a real batch-1 forward (random weights, eval mode) in the papers' "
        f"convention (fvcore MACs, attention matmuls included, LayerNorm 5/element); {GMACS_NOTE}."
    )
    return (
        note
        + "\n\n"
        + tabulate(
            rows,
            headers=head,
            tablefmt="github",
            disable_numparse=True,  # "3.00" stays "3.00": one digits rule per column, as every table
            colalign=("left", "left", "left", "right", "right", "right", "left"),
        )
    )
