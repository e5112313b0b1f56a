"""The vitbench command line (run, leaderboard, plot, methods, flops, throughput, train-demo, ...)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitbench.cli.options import add_model_options, model_options, parse_sets
from vitbench.core.errors import VitbenchError

if TYPE_CHECKING:
    import pandas as pd

DEMO_SUITE = "demo"
#: Default results store when ``$VITBENCH_RESULTS`` is unset; the parser's defaults come from
#: :func:`vitbench.harness.suites.default_store`, which reads it.
DEFAULT_RESULTS = "vitbench-results/vitbench.sqlite"


def _method_arg(name: str, sets: dict[str, Any], keep: float, model: Any) -> tuple[Any, Any]:
    from vitbench.methods.base import token_method

    cls = token_method(name)
    if cls.trainable:  # costs do not depend on trained weights: untrained parts unless given
        sets = {"artifact": "init", **sets}
    return cls, cls.params_for(keep, model, sets)


def _dtype(name: str) -> Any:
    import torch

    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if name not in table:
        raise VitbenchError(f"unknown dtype '{name}'; use float32, bfloat16 or float16")
    return table[name]


# -- commands ---------------------------------------------------------------------------------
def _load_results(path: str) -> pd.DataFrame:
    """``load_results`` plus a warning on stderr when the records mix GMACs counter versions."""
    from vitbench.store.records import counter_warning
    from vitbench.store.results import load_results

    frame = load_results(path)
    note = counter_warning(frame)
    if note:
        print(note, file=sys.stderr)
    return frame


def cmd_run(args: argparse.Namespace) -> int:
    """Run a suite (default: the embedded demo) into a results store, then print the leaderboards."""
    from vitbench.core.specs import MethodSpec, ModelSpec
    from vitbench.harness.runner import Harness
    from vitbench.harness.suites import expand, load_suite

    sets = parse_sets(args.set)
    suite_overrides = {k: v for k, v in sets.items() if "." in k or k in _suite_keys()}
    method_sets = {k: v for k, v in sets.items() if k not in suite_overrides}
    suite = load_suite(args.suite, suite_overrides)
    if args.model:
        from vitbench.core.models import check_model_name, freeze_args

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
        from vitbench.harness.suites import _keep

        suite = dataclasses.replace(
            suite,
            keep_ratios=tuple(_keep(k, "--keep") for k in args.keep),
            methods=tuple(dataclasses.replace(m, keep_ratios=None) for m in suite.methods),
        )
    if method_sets:
        suite = dataclasses.replace(suite, methods=_with_params(suite.methods, method_sets))
    if args.threads is not None:
        from vitbench.core.threads import check_threads

        fix = "use --threads 1 (or N >= 1), or leave it out for the automatic choice"
        suite = dataclasses.replace(suite, threads=check_threads(args.threads, "--threads", fix))
    cells = expand(suite)
    acc, results, shard = None, args.results, ""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)  # before solo_accelerator drops it
    if args.shard:  # cell-parallel: this process runs every N-th cell on all the data, alone
        from vitbench.harness.scaleout import parse_shard, results_path, shard_cells, solo_accelerator

        index, count, local = parse_shard(args.shard)
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
    from vitbench.harness.preflight import preflight

    preflight(harness, cells)  # models, weights, data, artifacts: one-line errors before any cell
    summary = harness.run(cells)
    if not harness.main:
        return 0
    print(f"done{shard}: {summary.done} evaluated, {summary.skipped} resumed, {summary.failed} failed")
    if shard:
        print(f"leaderboards: `vitbench leaderboard --results {results}` once every shard is done")
        return 1 if summary.failed and args.strict else 0
    from vitbench.report.population import restrict_suite
    from vitbench.report.tables import plot_pareto, render_all

    df = _load_results(args.results)
    df = restrict_suite(df, suite.name)  # keeps the dense records it reuses
    from vitbench.store.results import load_samples

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
    from vitbench.harness.suites import REFERENCES_MARKER, reference_tree

    out = Path(args.results).parent / suite
    tree = reference_tree(out)
    if tree is not None:
        raise VitbenchError(
            f"the leaderboard would go to {out}, inside the committed references {tree} "
            f"({REFERENCES_MARKER}); pass --output-dir DIR ('' for none), or regenerate them with "
            f"`vitbench regenerate-references`"
        )
    return out


def _suite_keys() -> set[str]:
    from vitbench.harness.suites import SUITE_KEYS

    return SUITE_KEYS


def _with_params(methods: tuple, sets: dict[str, Any]) -> tuple:
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


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Render tables from a results store."""
    from vitbench.report import tables as report
    from vitbench.report.compare import compare_table
    from vitbench.report.population import restrict_suite
    from vitbench.store.results import load_samples

    df = _load_results(args.results)
    if args.suite:
        df = restrict_suite(df, args.suite)  # keeps the dense records it reuses
    views = {
        "all": lambda: report.render_all(df, fmt=args.format, samples=load_samples(args.results)),
        "paper": lambda: report.leaderboard(df, fmt=args.format, model=args.model),
        "matched": lambda: report.matched_gmacs_table(
            df, fmt=args.format, model=args.model, samples=load_samples(args.results)
        ),
        "selection": lambda: report.selection_table(df, fmt=args.format, model=args.model),
        "noise": lambda: report.noise_table(df, fmt=args.format, model=args.model),
        "squeeze": lambda: report.squeeze_table(df, fmt=args.format, model=args.model),
        "compare": lambda: compare_table(df, load_samples(args.results), fmt=args.format, model=args.model),
    }
    if args.paper:
        from vitbench.report.paper_table import paper_table

        text = paper_table(df, fmt=args.format, model=args.model)
    else:
        text = views[args.view]()
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Accuracy vs GMACs Pareto plot (PNG or SVG)."""
    from vitbench.report.tables import plot_pareto

    df = _load_results(args.results)
    path = plot_pareto(df, Path(args.output), model=args.model)
    print(f"wrote {path}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    """List registered methods with their parameters and defaults."""
    from tabulate import tabulate

    from vitbench.methods import METHODS

    rows = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        params = ", ".join(f"{k}={v!r}" for k, v in cls.defaults().items()) or "-"
        needs = cls.requirements.short()
        rows.append([name, cls.family, cls.knob or "-", "/".join(cls.selections), needs, params, cls.summary])
    print(
        tabulate(
            rows,
            headers=["method", "family", "keep knob", "selection", "needs", "parameters (defaults)", "what"],
            tablefmt="github",
        )
    )
    return 0


def cmd_noises(args: argparse.Namespace) -> int:
    """List registered noises: family, split, levels, definition and the source it follows."""
    from tabulate import tabulate

    from vitbench.data.noise import NOISES

    names = NOISES.names(split=args.split) if args.split else NOISES.names()
    keys = ["family", "split", "levels", "definition", "source"]
    rows = [[n, *(NOISES.info(n)[k] for k in keys)] for n in names]
    print(tabulate(rows, headers=["noise", *keys], tablefmt="github"))
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    """Print GMACs (papers' convention) of a model + method; no data, random weights."""
    from vitbench.core.models import create_model, data_config
    from vitbench.measure import count_gmacs, self_check

    self_check("cpu")  # one line and exit 2 when this torch release breaks the counter
    if args.paper:
        from vitbench.report.paper import paper_flops_table

        text = paper_flops_table(progress=not args.no_progress)
        if args.output:
            Path(args.output).write_text(text + "\n")
        print(text)
        return 0
    margs, dcfg = model_options(args)
    weights = args.weights or ("demo" if args.model == "vitbench_demo_vit" and not margs else "random")
    model = create_model(args.model, weights, model_args=margs, data_config=dcfg)
    cls, params = _method_arg(args.method, parse_sets(args.set), args.keep, model)
    size = tuple(data_config(model)["input_size"])
    with cls.apply(model, params, args.selection) as handle:
        gmacs = count_gmacs(model, size)
        tokens = handle.tokens_per_block
    from vitbench.report.format import gmacs_digits

    shown = f"{gmacs:.{gmacs_digits([gmacs])}f}"
    print(f"{shown} GMACs  ({args.model}, {cls.name} {cls.setting(params)}, tokens per block {tokens})")
    return 0


def cmd_recount(args: argparse.Namespace) -> int:
    """Recompute ``gmacs``/``params_m`` of a store's records; print what changed."""
    from vitbench.harness.recount import format_summary, recount

    summary = recount(args.results, suite=args.suite, dry_run=args.dry_run)
    print(format_summary(summary, args.dry_run))
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    """Throughput of methods x keep ratios x batch sizes on random weights, with realized speedup."""
    from vitbench.bench.speed import throughput_table

    margs, dcfg = model_options(args)
    print(
        throughput_table(
            args.model,
            args.method,
            args.keep,
            args.batch_size,
            [_dtype(d) for d in args.dtype],
            args.device,
            args.selection,
            parse_sets(args.set),
            args.warmup,
            args.repeats,
            args.rounds,
            channels_last=args.channels_last,
            compile=args.compile,
            model_args=margs,
            data_config=dcfg,
            progress=not args.no_progress,
        )
    )
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Load a dataset as a suite would and list its size, classes and every skipped/converted file."""
    from vitbench.data import DATASETS, load_dataset
    from vitbench.harness.suites import default_split

    needs_root = DATASETS.info(args.name).get("needs_root", False)  # unknown names: close matches
    if needs_root and not args.root:
        raise VitbenchError(
            f"dataset '{args.name}' needs a data path; pass --root PATH (e.g. vitbench data {args.name} "
            "--root /data/...)"
        )
    if needs_root and not Path(args.root).expanduser().exists():
        raise VitbenchError(f"data path {args.root} does not exist; pass an existing folder with --root PATH")
    split = args.split or default_split(args.name)
    data = load_dataset(args.name, root=args.root, split=split, limit=args.limit)
    classes = ", ".join(data.classes[:5]) + (", ..." if len(data.classes) > 5 else "")
    print(f"{args.name} {split}: {len(data)} images, {len(data.classes)} classes ({classes})")
    for path, reason in getattr(data, "skipped", ()):
        print(f"skipped   {path}: {reason}")
    for path, note in getattr(data, "notes", ()):
        print(f"converted {path}: {note}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge results stores (e.g. from several machines or shards) into one."""
    from vitbench.harness.scaleout import merge_stores

    res = merge_stores(args.output, args.sources)
    print(
        f"merged {len(args.sources)} store(s) into {args.output}: {res.added} added, "
        f"{res.replaced} failed records replaced by successes, {res.kept} kept"
    )
    for line in res.disagreements[:10]:
        print(f"warning: same cell, different result: {line}")
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    """Re-train the embedded demo model from scratch (writes safetensors)."""
    from vitbench.core.demo import default_weights_path
    from vitbench.train.demo import train_demo, write_demo_record

    out = Path(args.output) if args.output else default_weights_path()
    kwargs = {} if args.epochs is None else {"epochs": args.epochs}
    info = train_demo(out, seed=args.seed, **kwargs)
    command = "vitbench train-demo" + ("" if args.epochs is None else f" --epochs {args.epochs}")
    record = write_demo_record(info, out.with_suffix(".json"), command)
    print(f"wrote {out} and {out.with_suffix('.json')}: test top-1 {record['test_top1']:.2f}%")
    return 0


def cmd_bench_eval(args: argparse.Namespace) -> int:
    """Harness overhead: evaluation img/s through the harness vs bare forward img/s."""
    from vitbench.bench.speed import bench_eval

    bench_eval(args.batch_size, args.repeats)
    return 0


def cmd_bench_channel(args: argparse.Namespace) -> int:
    """LUT-predicted vs measured latency of channel-pruned models (``vitbench.bench.channel``)."""
    from vitbench.bench.channel import latency_table

    print(latency_table(args.model, args.weights, args.batch_size, args.rounds))
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    """Data pipeline on a folder of JPEGs: evaluation img/s vs bare forward img/s."""
    from vitbench.bench.speed import bench_data

    bench_data(args.folder, args.model, args.batch_size, args.limit, args.repeats, args.device)
    return 0


def _cache_for(args: argparse.Namespace, suite_dir: str | None = None) -> Any:
    from vitbench.data.cache import CorruptionCache, resolve_dir

    root = resolve_dir(args.cache_dir or suite_dir)
    if root is None:
        raise VitbenchError(
            "the corruption cache is off (VITBENCH_CACHE=off or cache_dir: off); pass --cache-dir DIR"
        )
    workers = getattr(args, "workers", None)
    return CorruptionCache(root, workers=workers, progress=not getattr(args, "no_progress", True))


def cmd_cache(args: argparse.Namespace) -> int:
    """Corrupted-image cache: build a suite's entries, show size and entries, or clear it."""
    from tabulate import tabulate

    if args.action == "build":
        from vitbench.data.cache import build_suite
        from vitbench.harness.suites import load_suite

        if not args.suite:
            raise VitbenchError("cache build needs a suite, e.g. `vitbench cache build noise-robustness`")
        suite = load_suite(args.suite, parse_sets(args.set))
        cache = _cache_for(args, suite.cache_dir)
        stats = build_suite(suite, cache)
        print(
            f"cache {cache.root}: built {stats.built} entries ({stats.images} images) "
            f"in {stats.wall_s:.1f} s "
            f"with {stats.workers} process(es); {stats.reused} already there"
        )
        return 0
    cache = _cache_for(args)
    if args.action == "clear":
        n = cache.clear()
        print(f"removed {n} entries from {cache.root}")
        return 0
    entries = cache.entries()
    groups: dict[tuple, list] = {}
    for e in entries:
        k = e.key
        size = "x".join(str(v) for v in k.get("input_size", []))
        groups.setdefault((k.get("dataset"), k.get("split"), size, k.get("noise")), []).append(e)
    rows = [
        [
            ds,
            split,
            size,
            noise,
            ",".join(f"{lv:g}" for lv in sorted({float(e.key.get("level", 0)) for e in es})),
            ",".join(str(sd) for sd in sorted({int(e.key.get("seed", 0)) for e in es})),
            len(es),
            f"{sum(e.size_bytes for e in es) / 2**20:.1f}",
        ]
        for (ds, split, size, noise), es in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))
    ]
    print(f"cache {cache.root}: {len(entries)} entries, {cache.size_bytes() / 2**20:.1f} MiB")
    if rows:
        headers = ["dataset", "split", "size", "noise", "levels", "seeds", "entries", "MiB"]
        print(tabulate(rows, headers=headers, tablefmt="github"))
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    """Robustness tables (mCE, severities, corruptions, noise levels, selection, noisy calibration)."""
    from vitbench.report import calibration as rc
    from vitbench.report import robust as rr
    from vitbench.report.population import restrict_suite

    df = _load_results(args.results)
    if args.suite:
        df = restrict_suite(df, args.suite)  # keeps the dense records it reuses
    sel = None if args.selection == "both" else args.selection
    common = {"fmt": args.format, "model": args.model}
    views = {
        "mce": lambda: rr.robustness_table(
            df, selection=sel, reference=args.reference, split=args.split, **common
        ),
        "severity": lambda: rr.severity_table(df, selection=sel, **common),
        "corruptions": lambda: rr.corruption_table(
            df, severity=args.severity, selection=sel, reference=args.reference, **common
        ),
        "levels": lambda: rr.level_table(df, args.noise, selection=sel, **common),
        "selection": lambda: rr.selection_summary_table(df, **common),
        "calibration": lambda: rc.calibration_tables(df),
    }
    text = views[args.view]()
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    if args.plot:
        plots = {
            "mce": lambda p: rr.plot_heatmap(df, p, model=args.model, reference=args.reference),
            "corruptions": lambda p: rr.plot_heatmap(df, p, model=args.model, reference=args.reference),
            "severity": lambda p: rr.plot_severities(df, p, model=args.model),
            "levels": lambda p: rr.plot_levels(df, p, noise=args.noise, model=args.model),
            "selection": lambda p: rr.plot_selection(df, p, model=args.model),
            "calibration": lambda p: rc.plot_calibration(df, p),
        }
        print(f"wrote {plots[args.view](Path(args.plot))}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """One self-contained HTML page (tables + embedded plots) for a whole results store."""
    from vitbench.report.population import restrict_suite
    from vitbench.report.robust import write_html_report
    from vitbench.store.results import load_samples

    df = _load_results(args.results)
    if args.suite:
        df = restrict_suite(df, args.suite)  # keeps the dense records it reuses
    figures = args.figures if args.figures != "auto" else str(Path(args.output).with_suffix("")) + "_figures"
    path = write_html_report(
        df,
        args.output,
        title=args.title,
        model=args.model,
        samples=load_samples(args.results),
        figures_dir=figures or None,
    )
    if figures:
        print(f"wrote figures (PNG, SVG, PDF) to {figures}")
    print(f"wrote {path}")
    return 0


def cmd_bench_cache(args: argparse.Namespace) -> int:
    """Corruption-cache build time with 1 vs N processes, and the data share of a cached sweep."""
    from vitbench.bench.cache import bench_cache

    bench_cache(
        limit=args.limit, workers=args.workers, method=args.method, keep=args.keep, sweep=not args.build_only
    )
    return 0


def cmd_bench_contention(args: argparse.Namespace) -> int:
    """Demo wall time on an idle machine and beside busy processes (``vitbench.bench.contention``)."""
    from vitbench.bench.contention import bench_contention
    from vitbench.core.threads import check_threads

    fix = "use --threads 1 (or N >= 1), or leave it out for the automatic choice"
    threads = check_threads(args.threads, "--threads", fix)
    bench_contention(args.busy, args.every, threads, args.limit_s, args.suite)
    return 0


def _threads_arg(text: str) -> int | str:
    """``--threads`` value: an integer (validated by the command: one-line error) or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        return text  # check_threads names the problem and the fix


def cmd_regenerate_references(args: argparse.Namespace) -> int:
    """Re-run the committed reference suites and re-render every committed table and figure."""
    import shlex

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
            code = main([*cmd, "--strict"] if cmd[0] == "run" else cmd)
            if code:
                print(
                    f"error: `vitbench {shlex.join(cmd)}` exited with {code}; {ref.name} not regenerated",
                    file=sys.stderr,
                )
                return code
    if not args.list:
        print(f"regenerated {', '.join(r.name for r in refs)} under {into}; review with `git diff {into}`")
    return 0


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argparse tree."""
    from vitbench.harness.suites import default_store, results_dir

    store, folder = str(default_store()), results_dir()
    store_help = f"SQLite results store (default {store}; folder: $VITBENCH_RESULTS or ./vitbench-results)"
    p = argparse.ArgumentParser(prog="vitbench", description=__doc__)
    p.add_argument("--version", action=_VersionAction, help="print the vitbench, torch and timm versions")
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="run a suite (default: the embedded demo)")
    r.add_argument("suite", nargs="?", default=DEMO_SUITE, help="suite YAML path or name (default: demo)")
    r.add_argument("--results", default=store, help=store_help)
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
    r.add_argument(
        "--threads",
        type=_threads_arg,
        default=None,
        metavar="N|auto",
        help="intra-op CPU threads of evaluation (default: suite key threads, else auto: "
        "1 for small models and batches, else the usable cores)",
    )
    r.set_defaults(fn=cmd_run)

    lb = sub.add_parser("leaderboard", help="render leaderboards from a results store")
    lb.add_argument("--results", default=store, help=store_help)
    lb.add_argument("--format", default="github", help="markdown | github | latex | csv | html")
    lb.add_argument(
        "--view",
        default="all",
        choices=["all", "paper", "matched", "selection", "noise", "squeeze", "compare"],
        help="which table (default all; compare: paired ΔTop-1 vs dense, see `vitbench compare`)",
    )
    lb.add_argument(
        "--paper", action="store_true", help="paper-style table: measured next to published (method cards)"
    )
    lb.add_argument("--model", default=None, help="only this model's records (default: all)")
    lb.add_argument("--suite", default=None, help="only this suite's records (default: all)")
    lb.add_argument("--output", default=None, help="also write the table to this file")
    lb.set_defaults(fn=cmd_leaderboard)

    pl = sub.add_parser("plot", help="accuracy vs GMACs Pareto plot")
    pl.add_argument("--results", default=store, help=store_help)
    pl.add_argument(
        "--output", default=str(folder / "pareto.png"), help=".png, .svg or .pdf (default %(default)s)"
    )
    pl.add_argument("--model", default=None, help="only this model's records (default: all)")
    pl.set_defaults(fn=cmd_plot)

    me = sub.add_parser("methods", help="list methods, parameters and defaults")
    me.set_defaults(fn=cmd_methods)

    no = sub.add_parser("noises", help="list noises: family, split, levels, definition and source")
    no.add_argument(
        "--split",
        default=None,
        choices=["test", "validation", "sweep"],
        help="only ImageNet-C test / validation corruptions or continuous sweeps",
    )
    no.set_defaults(fn=cmd_noises)

    fl = sub.add_parser("flops", help="GMACs of model + method (no data, random weights)")
    fl.add_argument("--model", default="deit_small_patch16_224", help="timm model name (default %(default)s)")
    fl.add_argument(
        "--weights",
        default=None,
        help="random | demo | hub | PATH (default: demo for the demo model, else random); "
        "a checkpoint that stores its model_args supplies the architecture",
    )
    add_model_options(fl)
    fl.add_argument("--method", default="dense", help="token method (default dense; see `vitbench methods`)")
    fl.add_argument("--keep", type=float, default=1.0, help="keep ratio in (0, 1] (default 1.0)")
    fl.add_argument("--selection", default="scored", choices=["scored", "random"], help="token selection")
    fl.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="method parameter (r=13)"
    )
    fl.add_argument(
        "--paper", action="store_true", help="table of every published GMACs value in methods/*.yaml"
    )
    fl.add_argument("--output", default=None, help="with --paper: also write the table here")
    fl.add_argument("--no-progress", action="store_true", help="with --paper: no progress bar")
    fl.set_defaults(fn=cmd_flops)

    th = sub.add_parser("throughput", help="img/s of methods x keep ratios x batch sizes (random weights)")
    th.add_argument("--model", default="deit_small_patch16_224", help="timm model name (default %(default)s)")
    add_model_options(th)
    th.add_argument("--method", action="append", default=None, help="method (repeatable; default evit, tome)")
    th.add_argument(
        "--keep", action="append", type=float, default=None, help="keep ratio (repeatable; default 0.7)"
    )
    th.add_argument(
        "--batch-size", action="append", type=int, default=None, help="batch (repeatable; default 64)"
    )
    th.add_argument(
        "--dtype", action="append", default=None, help="float32 | bfloat16 | float16 (CUDA); repeatable"
    )
    th.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    th.add_argument("--channels-last", action="store_true", help="model and input in channels_last")
    th.add_argument("--compile", action="store_true", help="torch.compile the model (warm-up not timed)")
    th.add_argument("--selection", default="scored", choices=["scored", "random"], help="token selection")
    th.add_argument("--warmup", type=int, default=3, help="untimed batches before each timing (default 3)")
    th.add_argument("--repeats", type=int, default=10, help="timed batches per round (default 10)")
    th.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median round is reported")
    th.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="method parameter (r=13)"
    )
    th.add_argument("--no-progress", action="store_true", help="no progress bar")
    th.set_defaults(fn=cmd_throughput)

    mg = sub.add_parser("merge", help="merge results stores (shards, machines) into one")
    mg.add_argument("output", help="target store (created if missing; its records win ties)")
    mg.add_argument("sources", nargs="+", help="stores to merge in")
    mg.set_defaults(fn=cmd_merge)

    da = sub.add_parser("data", help="check a dataset: size, classes, skipped and converted files")
    da.add_argument("name", help="dataset registry key (imagenet, imagenet-c, image-folder, cifar10, ...)")
    da.add_argument(
        "--root", default=None, help="data folder (datasets that need one: imagenet, cifar10, ...)"
    )
    da.add_argument(
        "--split", default=None, help="split (default: the dataset's evaluation split, test or val)"
    )
    da.add_argument("--limit", type=int, default=None, help="only the first N images")
    da.set_defaults(fn=cmd_data)

    td = sub.add_parser("train-demo", help="re-train the embedded demo ViT from scratch")
    td.add_argument("--output", default=None, help="default: the packaged asset path")
    td.add_argument("--epochs", type=int, default=None, help="training epochs (default 30)")
    td.add_argument("--seed", type=int, default=0, help="seed of init, batch order and augmentation")
    td.set_defaults(fn=cmd_train_demo)

    be = sub.add_parser("bench-eval", help="harness evaluation img/s vs bare forward img/s on the demo")
    be.add_argument("--batch-size", type=int, default=250, help="images per batch (default 250)")
    be.add_argument("--repeats", type=int, default=3, help="timed passes, best reported (default 3)")
    be.set_defaults(fn=cmd_bench_eval)

    bd = sub.add_parser("bench-data", help="evaluation img/s on a folder of JPEGs vs bare forward img/s")
    bd.add_argument("--folder", default=None, help="ImageFolder of JPEGs (default: generated 500x375 JPEGs)")
    bd.add_argument("--model", default="deit_small_patch16_224", help="timm model name (default %(default)s)")
    bd.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    bd.add_argument("--limit", type=int, default=256, help="images (also the generated count)")
    bd.add_argument("--repeats", type=int, default=2, help="timed passes (default 2)")
    bd.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    bd.set_defaults(fn=cmd_bench_data)

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

    ca = sub.add_parser("cache", help="corrupted-image cache: build SUITE | info | clear")
    ca.add_argument(
        "action",
        choices=["build", "info", "clear"],
        help="build a suite's entries, show them, or delete them",
    )
    ca.add_argument("suite", nargs="?", default=None, help="with build: suite YAML path or name")
    ca.add_argument(
        "--cache-dir",
        default=None,
        help="cache folder (default: suite cache_dir, $VITBENCH_CACHE, ~/.cache/vitbench)",
    )
    ca.add_argument("--workers", type=int, default=None, help="build processes (default: CPU cores)")
    ca.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="dotted suite field")
    ca.add_argument("--no-progress", action="store_true", help="no progress bars")
    ca.set_defaults(fn=cmd_cache)

    ro = sub.add_parser(
        "robustness", help="robustness tables (mCE, severities, corruptions, levels, selection)"
    )
    ro.add_argument("--results", default=store, help=store_help)
    ro.add_argument(
        "--view",
        default="mce",
        choices=["mce", "severity", "corruptions", "levels", "selection", "calibration"],
        help="which table (default mce)",
    )
    ro.add_argument("--format", default="github", help="markdown | github | latex | csv | html")
    ro.add_argument("--reference", default="dense", choices=["dense", "alexnet"], help="mCE reference")
    ro.add_argument(
        "--split", default="test", choices=["test", "validation", "all"], help="corruptions in mCE"
    )
    ro.add_argument("--severity", type=int, default=None, help="corruptions view: errors at this severity")
    ro.add_argument("--noise", default="gaussian-sigma", help="levels view: the swept noise")
    ro.add_argument(
        "--selection", default="scored", choices=["scored", "random", "both"], help="token selection rows"
    )
    ro.add_argument("--model", default=None, help="only this model's records (default: all)")
    ro.add_argument("--suite", default=None, help="only this suite's records (default: all)")
    ro.add_argument("--output", default=None, help="also write the table here")
    ro.add_argument("--plot", default=None, help="also save the view's plot (.png or .svg)")
    ro.set_defaults(fn=cmd_robustness)

    rp = sub.add_parser("report", help="one self-contained HTML page for a whole results store")
    rp.add_argument("--results", default=store, help=store_help)
    rp.add_argument("--output", default=str(folder / "report.html"), help=".html file (default %(default)s)")
    rp.add_argument("--suite", default=None, help="only this suite's records (default: all)")
    rp.add_argument("--model", default=None, help="only this model's records (default: all)")
    rp.add_argument("--title", default=None, help="page title (default: from the store name)")
    rp.add_argument(
        "--figures",
        default="auto",
        help="folder for every figure as PNG, SVG and PDF (default: <output>_figures; '' to skip)",
    )
    rp.set_defaults(fn=cmd_report)

    bn = sub.add_parser(
        "bench-contention",
        help="demo wall time idle vs beside busy processes (target: <= 3x with 2 busy processes)",
    )
    bn.add_argument("--busy", type=int, default=2, help="busy processes of the second run")
    bn.add_argument("--every", type=int, default=1, help="run every K-th cell (deterministic subset)")
    bn.add_argument("--threads", type=_threads_arg, default=None, metavar="N|auto", help="for both runs")
    bn.add_argument("--limit-s", type=float, default=1200.0, help="time limit of each run, seconds")
    bn.add_argument("--suite", default=DEMO_SUITE, help="suite to time (default: the demo)")
    bn.set_defaults(fn=cmd_bench_contention)

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
    rr.set_defaults(fn=cmd_regenerate_references)

    rc = sub.add_parser(
        "recount",
        help="recompute gmacs and params_m of every record with today's GMACs counter (in place)",
    )
    rc.add_argument("results", help="the results store (.sqlite) to repair")
    rc.add_argument(
        "--suite", default=None, help="suite name or YAML for channel records (default: each record's suite)"
    )
    rc.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    rc.set_defaults(fn=cmd_recount)
    from vitbench.cli.train import add_train_commands

    add_train_commands(sub)  # finetune, bench-train
    from vitbench.cli.compare import add_compare_command

    add_compare_command(sub, store)
    return p


class _VersionAction(argparse.Action):
    """``--version``: vitbench (with its git commit or release), torch and timm versions."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        import platform
        from importlib import metadata

        import vitbench
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


class _DeprecatedAlias(argparse.Action):
    """A hidden old spelling of an option: stores the value and warns once on stderr."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        new = "--" + self.dest.replace("_", "-")
        print(f"warning: {option} is deprecated; use {new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vitbench`` console script; bad input exits 2 with one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        args = parser.parse_args(["run", *(argv or [])])
    if args.command == "throughput":
        args.method = args.method or ["evit", "tome"]
        args.keep = args.keep or [0.7]
        args.batch_size = args.batch_size or [64]
        args.dtype = args.dtype or ["float32"]
    try:
        return int(args.fn(args))
    except VitbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # registry lookups raise UnknownNameError (a KeyError)
        from vitbench.core.registry import UnknownNameError

        if isinstance(exc, UnknownNameError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
