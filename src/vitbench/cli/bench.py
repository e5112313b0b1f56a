"""``vitbench bench-eval``, ``bench-data``, ``bench-channel``, ``bench-cache`` and ``bench-contention``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vitbench.cli.options import DEMO_SUITE, AddCommand, ParserContext, threads_arg, threads_option


class _DeprecatedAlias(argparse.Action):
    """A hidden old spelling of an option: stores the value and warns once on stderr."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        new = "--" + self.dest.replace("_", "-")
        print(f"warning: {option} is deprecated; use {new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def cmd_bench_eval(args: argparse.Namespace) -> int:
    """Harness overhead: evaluation img/s through the harness vs bare forward img/s."""
    # deferred: timing loads torch and timm; `vitbench --help` stays free of them
    from vitbench.bench.speed import bench_eval

    bench_eval(args.batch_size, args.repeats)
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    """Data pipeline on a folder of JPEGs: evaluation img/s vs bare forward img/s."""
    # deferred: timing loads torch and timm; `vitbench --help` stays free of them
    from vitbench.bench.speed import bench_data

    bench_data(args.folder, args.model, args.batch_size, args.limit, args.repeats, args.device)
    return 0


def cmd_bench_channel(args: argparse.Namespace) -> int:
    """LUT-predicted vs measured latency of channel-pruned models (``vitbench.bench.channel``)."""
    # deferred: timing loads torch and timm; `vitbench --help` stays free of them
    from vitbench.bench.channel import latency_table

    print(latency_table(args.model, args.weights, args.batch_size, args.rounds))
    return 0


def cmd_bench_cache(args: argparse.Namespace) -> int:
    """Corruption-cache build time with 1 vs N processes, and the data share of a cached sweep."""
    # deferred: timing loads torch and timm; `vitbench --help` stays free of them
    from vitbench.bench.cache import bench_cache

    bench_cache(
        limit=args.limit, workers=args.workers, method=args.method, keep=args.keep, sweep=not args.build_only
    )
    return 0


def cmd_bench_contention(args: argparse.Namespace) -> int:
    """Demo wall time on an idle machine and beside busy processes (``vitbench.bench.contention``)."""
    # deferred: timing loads torch and timm; `vitbench --help` stays free of them
    from vitbench.bench.contention import bench_contention

    threads = threads_option(args.threads)
    bench_contention(args.busy, args.every, threads, args.limit_s, args.suite)
    return 0


# -- parsers ----------------------------------------------------------------------------------
def _add_bench_eval(sub: Any, ctx: ParserContext) -> None:
    be = sub.add_parser("bench-eval", help="harness evaluation img/s vs bare forward img/s on the demo")
    be.add_argument("--batch-size", type=int, default=250, help="images per batch (default 250)")
    be.add_argument("--repeats", type=int, default=3, help="timed passes, best reported (default 3)")
    be.set_defaults(fn=cmd_bench_eval)


def _add_bench_data(sub: Any, ctx: ParserContext) -> None:
    bd = sub.add_parser("bench-data", help="evaluation img/s on a folder of JPEGs vs bare forward img/s")
    bd.add_argument("--folder", default=None, help="ImageFolder of JPEGs (default: generated 500x375 JPEGs)")
    bd.add_argument("--model", default="deit_small_patch16_224", help="timm model name (default %(default)s)")
    bd.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    bd.add_argument("--limit", type=int, default=256, help="images (also the generated count)")
    bd.add_argument("--repeats", type=int, default=2, help="timed passes (default 2)")
    bd.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    bd.set_defaults(fn=cmd_bench_data)


def _add_bench_channel(sub: Any, ctx: ParserContext) -> None:
    bc = sub.add_parser(
        "bench-channel",
        help="channel-pruned models: latency-LUT prediction vs measured latency, speedup vs GMACs ratio",
    )
    bc.add_argument("--model", default="vitbench_demo_vit", help="timm model name (default %(default)s)")
    bc.add_argument("--weights", default="demo", help="random | demo | hub | PATH (default demo)")
    bc.add_argument("--batch-size", type=int, default=32, help="images per timed batch (default 32)")
    bc.add_argument("--batch", type=int, dest="batch_size", action=_DeprecatedAlias, help=argparse.SUPPRESS)
    bc.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds, median reported")
    bc.set_defaults(fn=cmd_bench_channel)


def _add_bench_contention(sub: Any, ctx: ParserContext) -> None:
    bn = sub.add_parser(
        "bench-contention",
        help="demo wall time idle vs beside busy processes (target: <= 3x with 2 busy processes)",
    )
    bn.add_argument("--busy", type=int, default=2, help="busy processes of the second run")
    bn.add_argument("--every", type=int, default=1, help="run every K-th cell (deterministic subset)")
    bn.add_argument("--threads", type=threads_arg, default=None, metavar="N|auto", help="for both runs")
    bn.add_argument("--limit-s", type=float, default=1200.0, help="time limit of each run, seconds")
    bn.add_argument("--suite", default=DEMO_SUITE, help="suite to time (default: the demo)")
    bn.set_defaults(fn=cmd_bench_contention)


def _add_bench_cache(sub: Any, ctx: ParserContext) -> None:
    bc = sub.add_parser(
        "bench-cache", help="cache build speed-up (1 vs N processes) and data share of a sweep"
    )
    bc.add_argument("--limit", type=int, default=None, help="demo test images (default all 1,000)")
    bc.add_argument("--workers", type=int, default=2, help="build processes compared with 1 (default 2)")
    bc.add_argument("--method", default="evit", help="method of the timed sweep (default evit)")
    bc.add_argument("--keep", type=float, default=0.7, help="its keep ratio (default 0.7)")
    bc.add_argument(
        "--build-only", action="store_true", help="skip the timed sweep over the cached conditions"
    )
    bc.set_defaults(fn=cmd_bench_cache)


#: The commands of this group by name.
COMMANDS: dict[str, AddCommand] = {
    "bench-eval": _add_bench_eval,
    "bench-data": _add_bench_data,
    "bench-channel": _add_bench_channel,
    "bench-contention": _add_bench_contention,
    "bench-cache": _add_bench_cache,
}
