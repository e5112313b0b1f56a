"""``vitbench flops``, ``throughput``, ``recount``, ``methods`` and ``noises``: costs and registries."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vitbench.cli.options import AddCommand, ParserContext, add_model_options, model_options, parse_sets
from vitbench.core.errors import VitbenchError


def _method_arg(
    name: str, sets: dict[str, Any], keep: float, model: Any, entry: tuple[str, str, Any, Any] | None = None
) -> tuple[Any, Any]:
    """The method class and its params at ``keep`` on ``model``.

    ``entry``: model name, weights, model_args, data_config; a trainable method's artifact is
    looked up for it (:func:`vitbench.harness.trained.cost_params`).
    """
    # deferred: the method registry loads torch and timm; `vitbench --help` stays free of them
    from vitbench.core.models import freeze_args
    from vitbench.core.specs import ModelSpec
    from vitbench.harness.trained import cost_params
    from vitbench.methods.base import token_method

    cls = token_method(name)
    spec = None
    if entry is not None:
        model_name, weights, margs, dcfg = entry
        spec = ModelSpec(model_name, weights, freeze_args(margs or {}), freeze_args(dcfg or {}))
    return cls, cost_params(cls, keep, model, sets, spec)


def _dtype(name: str) -> Any:
    """The torch dtype a ``--dtype`` value names; an unknown name is a one-line error."""
    # deferred: keeps `vitbench --help` free of torch
    import torch

    # deferred: the torch-free flag checks, only once a command runs
    from vitbench.core.flags import DTYPES, check_dtypes

    check_dtypes([name])
    return getattr(torch, DTYPES[name])


def _weights(args: argparse.Namespace, margs: dict[str, Any]) -> str:
    """``--weights``, else the default of flops, throughput and export.

    The demo model gets its own weights (those a suite evaluates it with, so trained parts such as
    DiffRate's searched rates are the ones found); other models random weights.
    """
    return args.weights or ("demo" if args.model == "vitbench_demo_vit" and not margs else "random")


def cmd_methods(args: argparse.Namespace) -> int:
    """List registered methods with their parameters and defaults; with a name, print its card."""
    # deferred: the index of the shipped methods (no torch; plugin methods are imported)
    from vitbench.core.method_index import all_methods, require_method

    if args.name:
        require_method(args.name)  # an unknown name: one line with close matches
        # deferred: the cards are YAML files shipped with vitbench (no torch)
        from vitbench.report.cards import cards_dir

        card = cards_dir() / f"{args.name}.yaml"
        if not card.is_file():
            raise VitbenchError(
                f"method '{args.name}' has no card in {cards_dir()}; a plugin's card ships with its package"
            )
        print(f"# {card.resolve()}")
        print(card.read_text().rstrip())
        return 0
    # deferred: tabulate, only when a table is printed
    from tabulate import tabulate

    rows = [
        [m.name, m.version, m.family, m.knob or "-", "/".join(m.selections), m.needs, m.params, m.summary]
        for m in all_methods()
    ]
    print(
        tabulate(
            rows,
            headers=[
                "method",
                "version",
                "family",
                "keep knob",
                "selection",
                "needs",
                "parameters (defaults)",
                "what",
            ],
            tablefmt="github",
        )
    )
    return 0


def cmd_noises(args: argparse.Namespace) -> int:
    """List registered noises: family, split, levels, definition and the source it follows."""
    # deferred: tabulate, only when a table is printed
    from tabulate import tabulate

    # deferred: the noise registry loads torch; `vitbench --help` stays free of it
    from vitbench.data.noise import NOISES

    names = NOISES.names(split=args.split) if args.split else NOISES.names()
    keys = ["family", "split", "levels", "definition", "source"]
    rows = [[n, *(NOISES.info(n)[k] for k in keys)] for n in names]
    print(tabulate(rows, headers=["noise", *keys], tablefmt="github"))
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    """Print GMACs (papers' convention) of a model + method; no data, random weights."""
    # deferred: the argument checks need no torch: a bad flag is refused before it is imported
    from vitbench.core.flags import check_flops, check_writable

    check_writable(args.output, "--output")
    sets = parse_sets(args.set)
    if not args.paper:
        check_flops(args.method, args.keep, sets)
        margs, dcfg = model_options(args)
    # deferred: models and the GMACs counter load torch and timm; `vitbench --help` stays free of them
    from vitbench.core.models import create_model, data_config
    from vitbench.measure import count_gmacs, self_check
    from vitbench.report.format import gmacs_digits
    from vitbench.report.paper import paper_flops_table

    self_check("cpu")  # one line and exit 2 when this torch release breaks the counter
    if args.paper:
        text = paper_flops_table(progress=not args.no_progress)
        if args.output:
            Path(args.output).write_text(text + "\n")
        print(text)
        return 0
    weights = _weights(args, margs)
    model = create_model(args.model, weights, model_args=margs, data_config=dcfg)
    entry = (args.model, weights, margs, dcfg)
    cls, params = _method_arg(args.method, sets, args.keep, model, entry)
    size = tuple(data_config(model)["input_size"])
    with cls.apply(model, params, args.selection) as handle:
        gmacs = count_gmacs(model, size)
        tokens = handle.tokens_per_block
    shown = f"{gmacs:.{gmacs_digits([gmacs])}f}"
    print(f"{shown} GMACs  ({args.model}, {cls.name} {cls.setting(params)}, tokens per block {tokens})")
    if cls.conformance.adaptive:
        print(
            f"note: {cls.name}'s GMACs vary per image (its token counts or its per-image operation); "
            "this is one synthetic "
            "input (batch 1); `vitbench run` records the mean and p10/p50/p90 over the evaluated images"
        )
    return 0


def cmd_recount(args: argparse.Namespace) -> int:
    """Recompute ``gmacs``/``params_m`` of a store's records; print what changed."""
    # deferred: the harness loads torch and timm; `vitbench --help` stays free of them
    from vitbench.harness.recount import format_summary, recount

    summary = recount(args.results, suite=args.suite, dry_run=args.dry_run)
    print(format_summary(summary, args.dry_run))
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    """Throughput of methods x keep ratios x batch sizes on random weights, with realized speedup."""
    # deferred: the argument checks need no torch: a bad flag is refused before it is imported
    from vitbench.core.checks import check_runtimes
    from vitbench.core.flags import (
        check_dtypes,
        check_positive,
        check_runtime_flags,
        check_threads_flag,
        check_throughput,
        check_writable,
    )

    check_writable(args.results, "--results")
    if args.runtime:
        check_runtimes(args.runtime)  # a missing package is one line before any model is built
        check_runtime_flags(args.dtype, args.device, args.compile or args.channels_last)
    sets = parse_sets(args.set)
    check_throughput(args.method or ["evit", "tome"], args.keep or [0.7], sets, runtime=bool(args.runtime))
    check_positive(args.batch_size, "--batch-size", "64")
    check_positive(args.repeats, "--repeats", "10")
    check_positive(args.rounds, "--rounds", "3")
    if args.warmup < 0:
        raise VitbenchError(f"--warmup {args.warmup}: must be 0 or more, e.g. --warmup 3")
    check_dtypes(args.dtype)
    check_threads_flag(args.threads)
    margs, dcfg = model_options(args)
    args.weights = _weights(args, margs)

    # deferred: timing loads torch and timm; `vitbench --help` stays free of them
    from vitbench.bench.speed import throughput_table

    if args.runtime:
        return _runtime_throughput(args, margs, dcfg, sets)
    print(
        throughput_table(
            args.model,
            args.method or ["evit", "tome"],
            args.keep or [0.7],
            args.batch_size or [64],
            [_dtype(d) for d in args.dtype or ["float32"]],
            args.device,
            args.selection,
            sets,
            args.warmup,
            args.repeats,
            args.rounds,
            channels_last=args.channels_last,
            compile=args.compile,
            model_args=margs,
            data_config=dcfg,
            progress=not args.no_progress,
            weights=args.weights,
        )
    )
    return 0


def _runtime_throughput(args: argparse.Namespace, margs: Any, dcfg: Any, sets: dict[str, Any]) -> int:
    """``vitbench throughput --runtime ...``: the runtimes view of dense and the given methods.

    Its flags are checked by :func:`cmd_throughput` before torch is imported.
    """
    # deferred: runtimes load torch, timm and the deploy packages; `vitbench --help` stays free of them
    from vitbench.bench.runtimes import runtime_table

    print(
        runtime_table(
            args.model,
            args.method or ["evit", "tome"],
            args.keep or [0.7],
            args.batch_size or [1, 64],
            args.runtime,
            selection=args.selection,
            sets=sets,
            threads=args.threads,
            warmup=max(1, args.warmup),
            repeats=args.repeats,
            weights=args.weights,
            results=args.results,
            model_args=margs,
            data_cfg=dcfg,
        )
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a compressed model as ONNX with a dynamic batch axis; check it against eager; one line.

    Exit 0 when every check is equal, 1 when one is not (the file is written either way), 2 on
    an error (not exportable: the failing op).
    """
    # deferred: the argument checks need no torch: a bad flag is refused before it is imported
    from vitbench.core.checks import check_runtimes
    from vitbench.core.flags import check_export, check_positive, check_threads_flag, check_writable

    check = check_runtimes(args.check or ["onnxruntime", "openvino"])  # the deploy extra, by name
    if args.all and args.output:
        raise VitbenchError("--all keeps no .onnx files; leave out --output (--table FILE writes the table)")
    if args.all and args.method != "dense":
        raise VitbenchError("--all exports every registered method; leave out --method")
    if args.table and not args.all:
        raise VitbenchError("--table writes the table of --all; add --all or leave out --table")
    if not args.output and not args.all:
        raise VitbenchError("export needs --output FILE.onnx (or --all for every method's verdicts)")
    check_writable(args.output, "--output")
    check_writable(args.table, "--table")
    sets = parse_sets(args.set)
    check_export(args.method, args.keep, sets, every=args.all)
    check_positive(args.batch_size, "--batch-size", "32")
    check_threads_flag(args.threads)
    margs, dcfg = model_options(args)
    weights = _weights(args, margs)
    if args.all:
        return _export_all(args, list(check), weights, margs, dcfg, sets)

    # deferred: export loads torch, timm and the deploy packages; `vitbench --help` stays free of them
    from vitbench.bench.runtimes import export_model

    line, equal = export_model(
        args.model,
        args.method,
        args.keep,
        args.output,
        weights=weights,
        selection=args.selection,
        sets=sets,
        check=list(check),
        batch_sizes=args.batch_size or [1, 32],
        threads=args.threads,
        model_args=margs,
        data_cfg=dcfg,
    )
    print(line)
    return 0 if equal else 1  # written, but not equal to eager somewhere: exit 1


def _export_all(
    args: argparse.Namespace, check: list[str], weights: str, margs: Any, dcfg: Any, sets: dict[str, Any]
) -> int:
    """``vitbench export --all``: every registered method's export verdicts as one table (exit 0).

    Its flags are checked by :func:`cmd_export` before torch is imported.
    """
    # deferred: export loads torch, timm and the deploy packages
    from vitbench.bench.runtimes import export_matrix

    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.table else (lambda _m: None)
    table, _res = export_matrix(
        args.model,
        keep=args.keep,
        weights=weights,
        selection=args.selection,
        sets=sets,
        check=check,
        batch_sizes=args.batch_size or [1, 32],
        threads=args.threads,
        model_args=margs,
        data_cfg=dcfg,
        log=log,
    )
    if args.table:
        try:
            Path(args.table).parent.mkdir(parents=True, exist_ok=True)
            Path(args.table).write_text(table + "\n")
        except OSError as exc:
            raise VitbenchError(
                f"cannot write {args.table} ({exc.strerror}); pass a writable --table"
            ) from None
    print(table)
    return 0


# -- parsers ----------------------------------------------------------------------------------
def _add_methods(sub: Any, ctx: ParserContext) -> None:
    me = sub.add_parser("methods", help="list methods, parameters and defaults; NAME: print its method card")
    me.add_argument(
        "name",
        nargs="?",
        default=None,
        help="a method: print its card (official code and commit compared, figures, published rows)",
    )
    me.set_defaults(fn=cmd_methods)


def _add_noises(sub: Any, ctx: ParserContext) -> None:
    no = sub.add_parser("noises", help="list noises: family, split, levels, definition and source")
    no.add_argument(
        "--split",
        default=None,
        choices=["test", "validation", "sweep"],
        help="only ImageNet-C test / validation corruptions or continuous sweeps",
    )
    no.set_defaults(fn=cmd_noises)


def _add_flops(sub: Any, ctx: ParserContext) -> None:
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


def _add_throughput(sub: Any, ctx: ParserContext) -> None:
    th = sub.add_parser("throughput", help="img/s of methods x keep ratios x batch sizes (random weights)")
    th.add_argument("--model", default="deit_small_patch16_224", help="timm model name (default %(default)s)")
    add_model_options(th)
    th.add_argument(
        "--method",
        action="append",
        default=None,
        help="method (repeatable; default evit, tome); with --runtime, NAME@KEEP: that method at KEEP only",
    )
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
    th.add_argument(
        "--runtime",
        action="append",
        default=None,
        help="eager | compile | onnxruntime | openvino (repeatable): check each against eager, time "
        "the equal ones, print the runtimes view (onnxruntime/openvino need the deploy extra)",
    )
    th.add_argument("--threads", type=int, default=None, help="with --runtime: threads of every runtime")
    th.add_argument(
        "--weights", default=None, help="random | demo | hub | PATH (default: demo for the demo model)"
    )
    th.add_argument("--results", default=None, help="with --runtime: also store the rows in this store")
    th.set_defaults(fn=cmd_throughput)


def _add_export(sub: Any, ctx: ParserContext) -> None:
    ex = sub.add_parser(
        "export", help="write a compressed model as ONNX (dynamic batch), checked against eager"
    )
    ex.add_argument("--model", default="deit_small_patch16_224", help="timm model name (default %(default)s)")
    ex.add_argument(
        "--weights", default=None, help="random | demo | hub | PATH (default: demo for the demo model)"
    )
    add_model_options(ex)
    ex.add_argument("--method", default="dense", help="token or channel method (default dense)")
    ex.add_argument("--keep", type=float, default=0.7, help="keep ratio in (0, 1] (default 0.7)")
    ex.add_argument("--selection", default="scored", choices=["scored", "random"], help="token selection")
    ex.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="method parameter (r=13)"
    )
    ex.add_argument("--output", default=None, help="the .onnx file to write (required without --all)")
    ex.add_argument(
        "--all",
        action="store_true",
        help="export and check every registered method at --keep; print a table of verdicts (no files kept)",
    )
    ex.add_argument("--table", default=None, help="with --all: also write the markdown table to this file")
    ex.add_argument(
        "--check", action="append", default=None, help="onnxruntime | openvino (repeatable; default both)"
    )
    ex.add_argument(
        "--batch-size",
        action="append",
        type=int,
        default=None,
        help="checked batch (repeatable; default 1, 32)",
    )
    ex.add_argument("--threads", type=int, default=None, help="runtime threads (default: torch's)")
    ex.set_defaults(fn=cmd_export)


def _add_recount(sub: Any, ctx: ParserContext) -> None:
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


#: The commands of this group by name.
COMMANDS: dict[str, AddCommand] = {
    "methods": _add_methods,
    "noises": _add_noises,
    "flops": _add_flops,
    "throughput": _add_throughput,
    "recount": _add_recount,
    "export": _add_export,
}
