"""The published-GMACs table: every card's published GMACs next to vitbench's count (``flops --paper``).

The cards themselves are read by :mod:`vitbench.report.cards` (no torch); this module counts
models, so it imports torch and timm.
"""

from __future__ import annotations

from typing import Any

from vitbench.core.models import create_model
from vitbench.measure import count_gmacs
from vitbench.methods import METHODS, TokenMethod
from vitbench.methods.base import token_method
from vitbench.report.cards import cards_dir, load_card, load_cards, paper_digits, paper_round
from vitbench.report.format import GMACS_NOTE, gmacs_digits


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
    misses: list[str] = []  # rows that do not match, with the card's word on why
    models: dict[str, Any] = {}

    cards = load_cards()
    todo = [
        (name, card.get("gmacs_rounding", "round"), pub)
        for name, card in cards.items()
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
        shown, digits = paper_round(g, mode), paper_digits(mode)
        if abs(shown - pub["gmacs"]) >= 1e-6:
            misses.append(f"- {arch} {name} ({cls.setting(_untagged(params))}): {pub.get('source', '')}")
        rows.append(
            [
                arch,
                name,
                cls.setting(_untagged(params)) if name != "dense" else "-",
                f"{pub['top1']:.1f}" if pub.get("top1") is not None else "-",
                f"{pub['gmacs']:.{digits}f}",
                g,
                f"{shown:.{digits}f}",
                "yes" if abs(shown - pub["gmacs"]) < 1e-6 else "NO",
            ]
        )
    head = [
        "Model",
        "Method",
        "Setting",
        "Published top-1",
        "Published GMACs",
        "vitbench GMACs",
        "rounded as paper",
        "match",
    ]
    listed = {name for name, _mode, _pub in todo}
    without = sorted(
        name
        for name in cards
        if name in METHODS
        and issubclass(METHODS.get(name), TokenMethod)
        and name not in listed | {"dense", "random-tokens"}
    )
    gd = gmacs_digits([r[5] for r in rows])
    rows = [[*r[:5], f"{r[5]:.{gd}f}", *r[6:]] for r in rows]
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
            colalign=("left", "left", "left", "right", "right", "right", "right", "left"),
        )
        + (
            "\n\nRows that do not match, as their method cards explain:\n" + "\n".join(misses)
            if misses
            else ""
        )
        + (
            f"\n\nToken methods without published GMACs rows here: {', '.join(without)} "
            "(their method cards say why)."
            if without
            else ""
        )
    )


__all__ = ["cards_dir", "load_card", "load_cards", "paper_flops_table", "paper_round"]
