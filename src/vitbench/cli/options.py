"""Shared by the command groups: --set/--model-arg/--data-config/--threads, the parser context, results."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from vitbench.core.errors import VitbenchError
from vitbench.core.threads import check_threads

if TYPE_CHECKING:
    import pandas as pd

#: Suite of ``vitbench run`` and ``vitbench bench-contention`` when none is given.
DEMO_SUITE = "demo"

_THREADS_FIX = "use --threads 1 (or N >= 1), or leave it out for the automatic choice"


class ParserContext(NamedTuple):
    """What a command group needs to register its commands (immutable).

    A typed ``NamedTuple`` rather than a dataclass: ``import vitbench.cli.main`` then does not
    load ``dataclasses`` (and ``inspect``), which only the handlers need.

    Attributes:
        results: default of ``--results`` (``$VITBENCH_RESULTS`` or ``./vitbench-results``, then
            ``vitbench.sqlite``).
        results_help: help text of ``--results``.
        folder: default folder of written outputs (plots, reports).
        execute: runs one ``vitbench`` command line in this process and returns its exit code
            (``vitbench.cli.main.main``; ``regenerate-references`` calls it for each step).
    """

    results: str
    results_help: str
    folder: Path
    execute: Callable[[Sequence[str]], int]


#: Registers one command (its subparser, options and handler) on the ``vitbench`` subparsers.
AddCommand = Callable[[Any, ParserContext], None]


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
    # deferred: the torch-free checks, only once a command runs
    from vitbench.core.checks import check_data_config

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


def threads_arg(text: str) -> int | str:
    """``--threads`` value: an integer (validated by the command: one-line error) or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        return text  # check_threads names the problem and the fix


def threads_option(value: int | str | None) -> int | None:
    """A parsed ``--threads`` value checked: ``None`` (automatic) or a positive thread count.

    Raises:
        VitbenchError: zero, negative or not an integer; the message says how to give a good value.
    """
    return check_threads(value, "--threads", _THREADS_FIX)


def load_results(path: str) -> pd.DataFrame:
    """The records of the results store ``path``, one row per cell.

    Records of an earlier method version are left out and rows measured on different weight
    contents or label orders are kept apart (:func:`vitbench.store.records.current_records`), one
    line on stderr each; a one-line warning when the records mix GMACs counter versions.

    Raises:
        VitbenchError: the file does not exist or is not a vitbench results store.
    """
    # deferred: the store brings pandas and SQLite; `vitbench --help` stays free of them
    from vitbench.store.records import counter_warning, current_records
    from vitbench.store.results import load_results as load_store

    frame, notes = current_records(load_store(path))
    for line in notes:
        print(line, file=sys.stderr)
    if note := counter_warning(frame):
        print(note, file=sys.stderr)
    return frame
