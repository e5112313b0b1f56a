"""Options shared by several command groups: KEY=VALUE pairs, --model-arg and --data-config."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from vitbench.core.errors import VitbenchError


def parse_sets(pairs: Sequence[str] | None, flag: str = "--set", example: str = "r=13") -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: YAML value}``; a pair without ``=`` or with bad YAML is a one-line error."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise VitbenchError(f"{flag} expects name=value, got '{pair}' (e.g. {flag} {example})")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise VitbenchError(f"{flag} {pair}: value is not valid YAML") from None
    return out


def model_options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--model-arg`` and ``--data-config`` as dicts (YAML values), the data config validated."""
    from vitbench.core.models import check_data_config

    model_args = parse_sets(getattr(args, "model_arg", None), "--model-arg", "img_size=32")
    dcfg = parse_sets(getattr(args, "data_config", None), "--data-config", "mean=[0.49,0.48,0.45]")
    check_data_config(dcfg, model_args, f"model '{args.model}'")
    return model_args, dcfg


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model-arg KEY=VALUE`` and ``--data-config KEY=VALUE`` (repeatable; YAML values)."""
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument of timm.create_model, e.g. img_size=32 (repeatable; YAML values)",
    )
    parser.add_argument(
        "--data-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the model's data config: input_size, mean, std, interpolation, crop_pct, "
        "crop_mode, e.g. mean=[0.49,0.48,0.45] (repeatable)",
    )
