"""Method cards (``vitbench/cards/methods/*.yaml``, shipped with the package) and the papers' rounding.

Cards are read from the package's data only, never from the current directory, so a folder named
``methods`` where vitbench runs cannot replace them. Reading cards needs neither torch nor timm
(the paper view of a store uses them); the published-GMACs table that counts models lives in
:mod:`vitbench.report.paper`.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vitbench.core.errors import VitbenchError


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


#: decimals a paper prints its GMACs with, by a card's ``gmacs_rounding``: ``round`` and
#: ``truncate`` (DynamicViT's tables) one, ``round2`` two (MCTF's tables: 2.60, 0.71)
ROUNDING_DIGITS = {"round": 1, "truncate": 1, "round2": 2}


def paper_digits(mode: str = "round") -> int:
    """Decimals of the GMACs a paper prints under ``gmacs_rounding`` ``mode``.

    Raises:
        ValueError: an unknown mode (one line naming the known ones).
    """
    if mode not in ROUNDING_DIGITS:
        raise ValueError(f"gmacs_rounding '{mode}' is unknown; use one of {', '.join(ROUNDING_DIGITS)}")
    return ROUNDING_DIGITS[mode]


def paper_round(value: float, mode: str = "round") -> float:
    """Round as the paper does: one decimal (``truncate`` for DynamicViT's tables), two for ``round2``."""
    digits = paper_digits(mode)
    if mode == "truncate":
        return math.floor(value * 10 + 1e-9) / 10
    return round(value, digits)
