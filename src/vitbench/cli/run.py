"""``vitbench run``, ``merge`` and ``regenerate-references``: running suites into results stores."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vitbench.cli.options import (
    DEMO_SUITE,
    AddCommand,
    ParserContext,
    add_model_options,
    load_results,
    model_options,
    parse_sets,
    threads_arg,
    threads_option,
)
from vitbench.core.errors import VitbenchError


def cmd_run(args: argparse.Namespace) -> int:
    """Run a suite (default: the embedded demo) into a results store, then print the leaderboards."""
    # deferred: dataclasses (and inspect) only once a command runs; the harness loads torch and timm
    import dataclasses

    # the harness, timm and the methods are imported once the suite is valid; reading and
    # checking it needs no torch, so a suite with a mistake is refused at once (deferred)
    from vitbench.core.specs import MethodSpec, ModelSpec
    from vitbench.harness.suites import SUITE_KEYS, expand, load_suite, parse_keep_ratio

    sets = parse_sets(args.set)
    suite_overrides = {k: v for k, v in sets.items() if "." in k or k in SUITE_KEYS}
    method_sets = {k: v for k, v in sets.items() if k not in suite_overrides}
    suite = load_suite(args.suite_path or args.suite, suite_overrides)  # a worker: the caller's file

    # deferred: the harness loads torch and timm; `vitbench --help` stays free of them
    from vitbench.core.models import check_model_name, freeze_args
    from vitbench.harness.preflight import preflight
    from vitbench.harness.runner import Harness

    if args.model:
        for name in args.model:
            check_model_name(name)
        margs, dcfg = model_options(argparse.Namespace(**{**vars(args), "model": args.model[0]}))
        specs = (ModelSpec(m, args.weights, freeze_args(margs), freeze_args(dcfg)) for m in args.model)
        suite = dataclasses.replace(suite, models=tuple(specs))
    elif args.model_arg or args.data_config:
        raise VitbenchError("--model-arg and --data-config apply to --model; give --model NAME too")
    if args.method:
        suite = dataclasses.replace(suite, methods=tuple(MethodSpec(m) for m in args.method))
    if args.keep:
        suite = dataclasses.replace(
            suite,
            keep_ratios=tuple(parse_keep_ratio(k, "--keep") for k in args.keep),
            methods=tuple(dataclasses.replace(m, keep_ratios=None) for m in suite.methods),
        )
    if method_sets:
        suite = dataclasses.replace(suite, methods=_with_params(suite.methods, method_sets))
    if args.threads is not None:
        suite = dataclasses.replace(suite, threads=threads_option(args.threads))
    cells = expand(suite)
    acc, results, shard = None, args.results, ""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)  # before solo_accelerator drops it
    if args.shard:  # cell-parallel: this process runs every N-th cell on all the data, alone
        # deferred: only sharded runs need the scale-out helpers
        from vitbench.harness.scaleout import parse_shard, results_path, shard_cells, solo_accelerator

        index, count, local = parse_shard(args.shard)
        if args.cell_worker:  # a worker of `--workers`: the caller reuses dense records afterwards
            # deferred: the harness loads torch and timm (imported above for every run already)
            from vitbench.harness.runner import dense_twin

            cells = [c for c in cells if dense_twin(c) is None]
        cells, results = shard_cells(cells, index, count), results_path(args.results, index, count)
        shard = f" (shard {index}/{count})" if count > 1 else ""
        acc = solo_accelerator(local) if count > 1 else None
    out_dir = _output_dir(args, suite.name) if not shard else None
    harness = Harness(
        suite,
        results,
        accelerator=acc,
        progress=not args.no_progress and sys.stderr.isatty(),  # no bars in a log file
        local_processes=local if acc else None,
    )
    harness.log(f"suite '{suite.name}': {len(cells)} cells{shard} -> {results}")
    workers = None
    try:
        preflight(harness, cells)  # models, weights, data, artifacts: one-line errors before any cell
        workers, mine, rest = _start_workers(args, harness, cells, results, launched=bool(args.shard))
        summary = harness.run(mine)
        if workers is not None:
            _join_workers(workers, summary)
            tail = harness.run(rest)  # keep-1.0 token cells from the dense records just written
            summary.done, summary.skipped = summary.done + tail.done, summary.skipped + tail.skipped
            summary.failed += tail.failed
    except KeyboardInterrupt:  # the store commits the record being written before this arrives
        if workers is not None:
            workers.stop()
        print(
            f"interrupted: every finished cell is in {results}; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except BaseException:
        if workers is not None:
            workers.stop()
        raise
    finally:
        harness.close()
    if not harness.main:
        return 0
    print(f"done{shard}: {summary.done} evaluated, {summary.skipped} resumed, {summary.failed} failed")
    if shard:
        print(f"leaderboards: `vitbench leaderboard --results {results}` once every shard is done")
        return 1 if summary.failed and args.strict else 0
    # deferred: tables and plots (matplotlib), only for the leaderboards of an unsharded run
    from vitbench.report.population import restrict_suite
    from vitbench.report.tables import plot_pareto, render_all
    from vitbench.store.results import load_samples

    df = load_results(args.results)
    df = restrict_suite(df, suite.name)  # keeps the dense records it reuses
    text = render_all(df, fmt="github", samples=load_samples(args.results))
    print(text)
    if out_dir is not None:
        out = out_dir
        out.mkdir(parents=True, exist_ok=True)
        (out / "leaderboard.md").write_text(text + "\n")
        try:
            plot_pareto(df, out / "pareto.png")
            print(f"wrote {out / 'leaderboard.md'} and {out / 'pareto.png'}")
        except VitbenchError as exc:  # e.g. cost-only cells: no accuracy to plot
            print(f"wrote {out / 'leaderboard.md'}; no pareto.png: {exc}")
    return 1 if summary.failed and args.strict else 0


def _output_dir(args: argparse.Namespace, suite: str) -> Path | None:
    """Folder for ``leaderboard.md``/``pareto.png`` (``None``: none); never a reference folder by default."""
    if args.output_dir == "":
        return None
    if args.output_dir:
        return Path(args.output_dir)
    # deferred: harness.suites loads torch and timm; `vitbench --help` stays free of them
    from vitbench.core.paths import REFERENCES_MARKER, reference_tree

    out = Path(args.results).parent / suite
    tree = reference_tree(out)
    if tree is not None:
        raise VitbenchError(
            f"the leaderboard would go to {out}, inside the committed references {tree} "
            f"({REFERENCES_MARKER}); pass --output-dir DIR ('' for none), or regenerate them with "
            f"`vitbench regenerate-references`"
        )
    return out


def _with_params(methods: tuple, sets: dict[str, Any]) -> tuple:
    # deferred: the method registry loads torch and timm; `vitbench --help` stays free of them
    from vitbench.core.specs import MethodSpec
    from vitbench.methods import METHODS
    from vitbench.methods.base import make_params

    out, used = [], set()
    for m in methods:
        cls = METHODS.get(m.name)
        fields = set(cls.defaults())
        mine = {k: v for k, v in sets.items() if k in fields}
        used |= set(mine)
        make_params(cls, {**cls.defaults(), **m.overrides, **mine})
        out.append(MethodSpec(m.name, tuple(sorted({**m.overrides, **mine}.items())), m.keep_ratios))
    unused = sorted(set(sets) - used)
    if unused:
        raise VitbenchError(
            f"--set {', '.join(unused)}: no method in this run has such a parameter (see `vitbench methods`)"
        )
    return tuple(out)


def _start_workers(
    args: argparse.Namespace, harness: Any, cells: list[Any], results: str, launched: bool
) -> tuple[Any, list[Any], list[Any]]:
    """Start cell-parallel worker processes when the cores allow (see :mod:`vitbench.harness.workers`).

    Returns:
        ``(workers or None, the cells this process runs, the cells it runs after the workers)``:
        keep-1.0 token cells that reuse a dense record (:func:`~vitbench.harness.runner.dense_twin`)
        run last, in this process, so that their dense records exist whichever worker wrote them.
    """
    # deferred: only runs that plan workers need them
    from vitbench.core.threads import usable_cores
    from vitbench.harness.runner import dense_twin
    from vitbench.harness.scaleout import shard_cells
    from vitbench.harness.workers import Workers, plan_workers

    requested = None
    if args.workers not in (None, "auto"):
        try:
            requested = int(args.workers)
        except ValueError:
            raise VitbenchError(f"--workers {args.workers!r}: give a number of processes, or auto") from None
    if harness.acc.num_processes > 1:  # data-parallel under a launcher: every process runs every cell
        if requested is not None and requested > 1:
            raise VitbenchError(
                f"--workers {requested} cannot be used under a distributed launcher; drop --workers"
            )
        return None, cells, []
    if requested is None and launched:
        return None, cells, []
    todo = harness.todo(cells)
    specs = list(dict.fromkeys(c.model for c in todo))
    threads = max((harness.threads_for(spec)[0] for spec in specs), default=1)
    plan = plan_workers(
        requested,
        cells=len(todo),
        eval_threads=threads,
        cores=usable_cores(),
        throughput=harness.suite.throughput.enabled,
        launched=launched or harness.acc.num_processes > 1,
        gpu=harness.acc.device.type != "cpu",
    )
    if plan.count < 2:
        return None, cells, []
    harness.log(f"workers: {plan.why}")
    # deferred: the suite lookup, only when workers are started
    from vitbench.harness.suites import find_suite

    argv = [*(getattr(args, "argv", None) or ["run"]), "--suite-path", str(find_suite(args.suite).resolve())]
    evaluated = [c for c in cells if dense_twin(c) is None]
    rest = [c for c in cells if dense_twin(c) is not None]
    return Workers(argv, plan.count, results, threads), shard_cells(evaluated, 0, plan.count), rest


def _join_workers(workers: Any, summary: Any) -> None:
    """Wait for the workers and add their counts to ``summary``; a crashed worker is one error line."""
    for res in workers.wait():
        summary.done += res.done
        summary.skipped += res.skipped
        summary.failed += res.failed
        if res.code not in (0, 1):
            raise VitbenchError(
                f"worker process {res.index} of {workers.count} exited with {res.code} ({res.tail}); "
                "its finished cells are stored: run the same command again to resume, or pass --workers 1"
            )


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge results stores (e.g. from several machines or shards) into one."""
    # deferred: the harness loads torch and timm; `vitbench --help` stays free of them
    from vitbench.harness.scaleout import merge_stores

    res = merge_stores(args.output, args.sources)
    print(
        f"merged {len(args.sources)} store(s) into {args.output}: {res.added} added, "
        f"{res.replaced} failed records replaced by successes, {res.kept} kept"
    )
    for line in res.disagreements[:10]:
        print(f"warning: same cell, different result: {line}")
    return 0


def cmd_regenerate_references(args: argparse.Namespace, execute: Callable[[Sequence[str]], int]) -> int:
    """Re-run the committed reference suites and re-render every committed table and figure.

    ``execute`` runs each step's ``vitbench`` command line in this process (``ParserContext.execute``).
    """
    # deferred: only this command needs shlex
    import shlex

    # deferred: the harness loads torch and timm; `vitbench --help` stays free of them
    from vitbench.harness.references import commands, select

    into = Path(args.into)
    if not into.is_dir():
        raise VitbenchError(
            f"reference folder {into} does not exist; run from the repository root or pass --into DIR"
        )
    refs = select(args.names)
    plan = [(ref, commands(ref, into, progress=not args.no_progress)) for ref in refs]
    for ref, cmds in plan:
        for cmd in cmds:
            print(f"$ vitbench {shlex.join(cmd)}", flush=True)
            if args.list:
                continue
            if cmd[0] == "run" and args.fresh:
                store = Path(cmd[cmd.index("--results") + 1])
                for path in (store, *(store.with_name(store.name + x) for x in ("-wal", "-shm"))):
                    path.unlink(missing_ok=True)
            for flag in ("--output", "--plot", "--output-dir"):
                if flag in cmd and cmd[cmd.index(flag) + 1]:
                    target = Path(cmd[cmd.index(flag) + 1])
                    (target if flag == "--output-dir" else target.parent).mkdir(parents=True, exist_ok=True)
            code = execute([*cmd, "--strict"] if cmd[0] == "run" else cmd)
            if code:
                print(
                    f"error: `vitbench {shlex.join(cmd)}` exited with {code}; {ref.name} not regenerated",
                    file=sys.stderr,
                )
                return code
    if not args.list:
        print(f"regenerated {', '.join(r.name for r in refs)} under {into}; review with `git diff {into}`")
    return 0


# -- parsers ----------------------------------------------------------------------------------
def _add_run(sub: Any, ctx: ParserContext) -> None:
    r = sub.add_parser("run", help="run a suite (default: the embedded demo)")
    r.add_argument("suite", nargs="?", default=DEMO_SUITE, help="suite YAML path or name (default: demo)")
    r.add_argument("--results", default=ctx.results, help=ctx.results_help)
    r.add_argument("--model", action="append", help="replace the suite's models (repeatable)")
    r.add_argument("--weights", default="random", help="weights for --model: random | demo | hub | PATH")
    add_model_options(r)
    r.add_argument("--method", action="append", help="replace the suite's methods (repeatable)")
    r.add_argument("--keep", action="append", type=float, help="replace the suite's keep ratios (repeatable)")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="method parameter (r=13) or dotted suite field (dataset.limit=200)",
    )
    r.add_argument(
        "--output-dir",
        default=None,
        help="where leaderboard.md and pareto.png go (default: <folder of --results>/<suite name>; "
        "'' to skip; refused inside the committed results/ references unless given here)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument(
        "--shard",
        default=None,
        metavar="I/N|auto",
        help="run cells I, I+N, ... on all the data (auto: I/N from RANK/WORLD_SIZE or SLURM); "
        "'{shard}' in --results gives each shard its own store (join with `vitbench merge`)",
    )
    r.add_argument("--strict", action="store_true", help="exit 1 when a cell failed")
    r.add_argument("--cell-worker", action="store_true", help=argparse.SUPPRESS)  # set by --workers
    r.add_argument("--suite-path", default=None, help=argparse.SUPPRESS)  # the file a worker reads
    r.add_argument(
        "--workers",
        default="auto",
        metavar="N|auto",
        help="cell-parallel processes on this machine writing one store (default auto: the usable "
        "cores when each cell needs one thread and the suite measures no throughput, else 1)",
    )
    r.add_argument(
        "--threads",
        type=threads_arg,
        default=None,
        metavar="N|auto",
        help="intra-op CPU threads of evaluation (default: suite key threads, else auto: "
        "1 for small models and batches, else the usable cores)",
    )
    r.set_defaults(fn=cmd_run)


def _add_merge(sub: Any, ctx: ParserContext) -> None:
    mg = sub.add_parser("merge", help="merge results stores (shards, machines) into one")
    mg.add_argument("output", help="target store (created if missing; its records win ties)")
    mg.add_argument("sources", nargs="+", help="stores to merge in")
    mg.set_defaults(fn=cmd_merge)


def _add_regenerate_references(sub: Any, ctx: ParserContext) -> None:
    rr = sub.add_parser(
        "regenerate-references",
        help="re-run the committed reference suites and rewrite results/ (the only command that does)",
        description="Each suite runs into its own store <into>/<suite>.sqlite (resumed unless --fresh); "
        "every committed table and figure is rewritten at its path under <into>.",
    )
    rr.add_argument("names", nargs="*", help="references to regenerate (default: all; see --list)")
    rr.add_argument(
        "--into", default="results", help="reference folder (default: results, run from the repo root)"
    )
    rr.add_argument("--list", action="store_true", help="print the commands without running them")
    rr.add_argument(
        "--fresh", action="store_true", help="delete each suite's store first (re-evaluate every cell)"
    )
    rr.add_argument("--no-progress", action="store_true", help="no progress bars")
    rr.set_defaults(fn=functools.partial(cmd_regenerate_references, execute=ctx.execute))


#: The commands of this group by name.
COMMANDS: dict[str, AddCommand] = {
    "run": _add_run,
    "merge": _add_merge,
    "regenerate-references": _add_regenerate_references,
}
