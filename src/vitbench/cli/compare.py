"""``vitbench compare``: paired comparison of every method with a reference on the same images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vitbench.cli.options import AddCommand, ParserContext, load_results


def cmd_compare(args: argparse.Namespace) -> int:
    """Print ΔTop-1 with paired bootstrap CI, exact McNemar p and agreement vs ``--against``."""
    # deferred: tables bring pandas and the method registry (torch); `vitbench --help` stays free of them
    from vitbench.report.compare import compare_table
    from vitbench.report.population import restrict_suite
    from vitbench.store.results import load_samples

    df = load_results(args.results)
    if args.suite:
        df = restrict_suite(df, args.suite)
    samples = load_samples(args.results)
    text = compare_table(
        df,
        samples,
        fmt=args.format,
        against=args.against,
        model=args.model,
        noise=args.noise,
        level=args.level,
        selection=args.selection,
        seed=args.seed,
    )
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


def _add_compare(sub: Any, ctx: ParserContext) -> None:
    co = sub.add_parser(
        "compare",
        help="paired ΔTop-1 (bootstrap CI), exact McNemar p and agreement of each method vs a reference",
    )
    co.add_argument("--results", default=ctx.results, help="results store (.sqlite)")
    co.add_argument(
        "--against",
        default="dense",
        help="reference method, or METHOD:SETTING when it has several (e.g. evit:keep_rate=0.7)",
    )
    co.add_argument("--format", default="github", help="markdown | github | latex | csv | html")
    co.add_argument("--model", default=None, help="only this model")
    co.add_argument("--suite", default=None, help="only this suite (plus the dense records it reuses)")
    co.add_argument("--noise", default="clean", help="noise condition (clean or a noise name)")
    co.add_argument("--level", type=float, default=0.0, help="noise level (with --noise)")
    co.add_argument("--selection", default="scored", choices=["scored", "random"], help="token selection")
    co.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    co.add_argument("--output", default=None, help="also write the table here")
    co.set_defaults(fn=cmd_compare)


#: The commands of this group by name.
COMMANDS: dict[str, AddCommand] = {"compare": _add_compare}
