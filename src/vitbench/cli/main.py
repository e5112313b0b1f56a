"""The vitbench command line (run, leaderboard, plot, methods, flops, throughput, train-demo, ...)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import vitbench
from vitbench.cli import bench, compare, data, measure, results, run, train
from vitbench.cli.options import AddCommand, ParserContext
from vitbench.core.errors import VitbenchError
from vitbench.core.paths import default_store, results_dir

#: The command group modules; each maps its command names to the function that registers them.
GROUPS = (run, results, compare, measure, data, train, bench)

#: The order in which ``vitbench --help`` lists the commands; a command missing here comes last.
HELP_ORDER = (
    "run",
    "leaderboard",
    "plot",
    "methods",
    "noises",
    "flops",
    "throughput",
    "merge",
    "data",
    "train-demo",
    "bench-eval",
    "bench-data",
    "bench-channel",
    "cache",
    "robustness",
    "report",
    "bench-contention",
    "bench-cache",
    "regenerate-references",
    "recount",
    "export",
    "finetune",
    "bench-train",
    "compare",
)


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: every command group's commands, in :data:`HELP_ORDER`."""
    store, folder = str(default_store()), results_dir()
    store_help = f"SQLite results store (default {store}; folder: $VITBENCH_RESULTS or ./vitbench-results)"
    ctx = ParserContext(results=store, results_help=store_help, folder=folder, execute=main)
    p = argparse.ArgumentParser(prog="vitbench", description=__doc__)
    p.add_argument("--version", action=_VersionAction, help="print the vitbench, torch and timm versions")
    sub = p.add_subparsers(dest="command")
    commands: dict[str, AddCommand] = {name: add for group in GROUPS for name, add in group.COMMANDS.items()}
    for name in (*HELP_ORDER, *(n for n in commands if n not in HELP_ORDER)):
        commands[name](sub, ctx)
    return p


class _VersionAction(argparse.Action):
    """``--version``: vitbench (with its git commit or release), torch and timm versions."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        # deferred: only --version needs them
        import platform
        from importlib import metadata

        # deferred: the store brings pandas and SQLite; `vitbench --help` stays free of them
        from vitbench.store.results import source_version

        def version(name: str) -> str:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                return "not installed"

        print(
            f"vitbench {vitbench.__version__} ({source_version()}), torch {version('torch')}, "
            f"timm {version('timm')}, Python {platform.python_version()}"
        )
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vitbench`` console script; bad input exits 2 with one line."""
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(given)
    if not getattr(args, "command", None):
        given = ["run", *given]
        args = parser.parse_args(given)
    args.argv = given  # the arguments as given (worker processes of `run` repeat them)
    try:
        return int(args.fn(args))
    except VitbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except KeyError as exc:  # registry lookups raise UnknownNameError (a KeyError)
        # deferred: the registry module brings importlib.metadata; `vitbench --help` does without
        from vitbench.core.registry import UnknownNameError

        if isinstance(exc, UnknownNameError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
