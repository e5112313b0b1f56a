"""``vitbench leaderboard``, ``plot``, ``robustness`` and ``report``: tables and figures of a store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vitbench.cli.options import AddCommand, ParserContext, load_results
from vitbench.core.errors import VitbenchError


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Render tables from a results store."""
    # deferred: tables bring pandas and the method registry (torch); `vitbench --help` stays free of them
    from vitbench.report import tables as report
    from vitbench.report.compare import compare_table
    from vitbench.report.paper_table import paper_table
    from vitbench.report.population import restrict_suite
    from vitbench.store.results import load_samples

    if args.view == "runtimes" and not args.paper:  # the runtime_speed side table, not the records
        # deferred: the runtimes view brings pandas; `vitbench --help` stays free of it
        from vitbench.report.runtimes import runtimes_table
        from vitbench.store.runtimes import load_runtime_rows

        rt = load_runtime_rows(args.results)
        if args.suite:
            rt = rt.loc[rt["suite"] == args.suite]
        text = runtimes_table(rt, fmt=args.format, model=args.model)
        if args.output:
            Path(args.output).write_text(text + "\n")
        print(text)
        return 0
    df = load_results(args.results)
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
    if args.format == "csv" and args.view == "all" and not args.paper:
        return _csv_tables(df, args, report.all_sections(df, fmt="csv", samples=load_samples(args.results)))
    if args.paper:
        text = paper_table(df, fmt=args.format, model=args.model)
    else:
        text = views[args.view]()
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


def _csv_tables(df: Any, args: argparse.Namespace, sections: list[Any]) -> int:
    """``--format csv`` of the multi-table ``all`` view: one csv file per table, or a one-line refusal.

    A csv file holds one table; the ``all`` view has several. With ``--output FILE`` each table
    goes to ``FILE`` with its view name before the suffix (``board.csv`` -> ``board-matched.csv``).

    Raises:
        VitbenchError: no ``--output`` (names the views that give one table).
    """
    if not args.output:
        views = ", ".join(s.view for s in sections if s.view != "failed")
        raise VitbenchError(
            f"--format csv writes one table and the 'all' view has {len(sections)}; pick one with --view "
            f"({views}) or pass --output FILE.csv to write one csv file per table"
        )
    out = Path(args.output)
    if not out.parent.is_dir():
        raise VitbenchError(f"output folder {out.parent} does not exist; create it or pass another --output")
    for s in sections:
        if s.body is None:
            print(f"no {s.view} table: {s.reason}")
            continue
        path = out.with_name(f"{out.stem}-{s.view}{out.suffix or '.csv'}")
        path.write_text(s.body + "\n")
        print(f"wrote {path}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Accuracy vs GMACs Pareto plot (PNG or SVG)."""
    # deferred: plots bring matplotlib; `vitbench --help` stays free of it
    from vitbench.report.tables import plot_pareto

    if args.view == "runtimes":
        # deferred: plots bring matplotlib; `vitbench --help` stays free of it
        from vitbench.report.runtimes import plot_runtimes
        from vitbench.store.runtimes import load_runtime_rows

        print(f"wrote {plot_runtimes(load_runtime_rows(args.results), Path(args.output), model=args.model)}")
        return 0
    df = load_results(args.results)
    path = plot_pareto(df, Path(args.output), model=args.model)
    print(f"wrote {path}")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    """Robustness tables (mCE, severities, corruptions, noise levels, selection, noisy calibration)."""
    # deferred: tables and plots bring pandas and matplotlib; `vitbench --help` stays free of them
    from vitbench.report import calibration as rc
    from vitbench.report import robust as rr
    from vitbench.report.population import restrict_suite

    df = load_results(args.results)
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
    if args.view == "calibration" and args.format == "csv":
        raise VitbenchError(
            "the calibration view is one markdown table per test condition, no single csv table; "
            "drop --format csv (or use --view levels/selection for csv)"
        )
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
    # deferred: tables and plots bring pandas and matplotlib; `vitbench --help` stays free of them
    from vitbench.report.population import restrict_suite
    from vitbench.report.robust import write_html_report
    from vitbench.store.results import load_samples

    df = load_results(args.results)
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


# -- parsers ----------------------------------------------------------------------------------
def _add_leaderboard(sub: Any, ctx: ParserContext) -> None:
    lb = sub.add_parser("leaderboard", help="render leaderboards from a results store")
    lb.add_argument("--results", default=ctx.results, help=ctx.results_help)
    lb.add_argument("--format", default="github", help="markdown | github | latex | csv | html")
    lb.add_argument(
        "--view",
        default="all",
        choices=["all", "paper", "matched", "selection", "noise", "squeeze", "compare", "runtimes"],
        help="which table (default all; compare: paired ΔTop-1 vs dense, see `vitbench compare`; "
        "runtimes: realized speedup per runtime next to the GMACs ratio)",
    )
    lb.add_argument(
        "--paper", action="store_true", help="paper-style table: measured next to published (method cards)"
    )
    lb.add_argument("--model", default=None, help="only this model's records (default: all)")
    lb.add_argument("--suite", default=None, help="only this suite's records (default: all)")
    lb.add_argument(
        "--output",
        default=None,
        help="also write the table to this file (csv of the all view: one FILE-<view>.csv per table)",
    )
    lb.set_defaults(fn=cmd_leaderboard)


def _add_plot(sub: Any, ctx: ParserContext) -> None:
    pl = sub.add_parser("plot", help="accuracy vs GMACs Pareto plot")
    pl.add_argument("--results", default=ctx.results, help=ctx.results_help)
    pl.add_argument(
        "--output", default=str(ctx.folder / "pareto.png"), help=".png, .svg or .pdf (default %(default)s)"
    )
    pl.add_argument("--model", default=None, help="only this model's records (default: all)")
    pl.add_argument(
        "--view",
        default="pareto",
        choices=["pareto", "runtimes"],
        help="pareto: accuracy vs GMACs; runtimes: realized vs ideal speedup per method and runtime",
    )
    pl.set_defaults(fn=cmd_plot)


def _add_robustness(sub: Any, ctx: ParserContext) -> None:
    ro = sub.add_parser(
        "robustness", help="robustness tables (mCE, severities, corruptions, levels, selection)"
    )
    ro.add_argument("--results", default=ctx.results, help=ctx.results_help)
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


def _add_report(sub: Any, ctx: ParserContext) -> None:
    rp = sub.add_parser("report", help="one self-contained HTML page for a whole results store")
    rp.add_argument("--results", default=ctx.results, help=ctx.results_help)
    rp.add_argument(
        "--output", default=str(ctx.folder / "report.html"), help=".html file (default %(default)s)"
    )
    rp.add_argument("--suite", default=None, help="only this suite's records (default: all)")
    rp.add_argument("--model", default=None, help="only this model's records (default: all)")
    rp.add_argument("--title", default=None, help="page title (default: from the store name)")
    rp.add_argument(
        "--figures",
        default="auto",
        help="folder for every figure as PNG, SVG and PDF (default: <output>_figures; '' to skip)",
    )
    rp.set_defaults(fn=cmd_report)


#: The commands of this group by name.
COMMANDS: dict[str, AddCommand] = {
    "leaderboard": _add_leaderboard,
    "plot": _add_plot,
    "robustness": _add_robustness,
    "report": _add_report,
}
