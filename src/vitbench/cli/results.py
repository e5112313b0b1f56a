"""``vitbench leaderboard``, ``plot``, ``robustness`` and ``report``: tables and figures of a store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vitbench.cli.options import AddCommand, ParserContext, load_results
from vitbench.core.errors import VitbenchError
from vitbench.report import views


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Render a view (:mod:`vitbench.report.views`) or the published-numbers table of a store."""
    # deferred: tables bring pandas and the method registry (torch); `vitbench --help` stays free of them
    from vitbench.report import tables as report
    from vitbench.report.paper_table import paper_table
    from vitbench.report.population import restrict_suite
    from vitbench.store.results import load_samples

    view = views.get("leaderboard", args.view)
    if args.all_budgets and (view.name != "matched" or args.paper):
        shown = "--paper" if args.paper else f"--view {args.view}"
        raise VitbenchError(f"--all-budgets applies to --view matched only, not {shown}; add --view matched")
    df = load_results(args.results)
    if args.suite:
        df = restrict_suite(df, args.suite)  # keeps the dense records it reuses
        df.attrs["suite"] = args.suite  # views reading side tables (runtimes) filter them alike
    if args.format == "csv" and view.name == "all" and not args.paper:
        return _csv_tables(df, args, report.all_sections(df, fmt="csv", samples=load_samples(args.results)))
    if args.paper:
        text = paper_table(df, fmt=args.format, model=args.model)
    else:
        view.check_format(args.format)
        text = view.render(df, _options(args))
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


def _options(args: argparse.Namespace) -> views.ViewOptions:
    """The view options of a parsed command line (filters absent from a command keep their defaults)."""
    # deferred: the store brings pandas and SQLite
    from vitbench.store.results import load_samples

    selection = getattr(args, "selection", "scored")
    return views.ViewOptions(
        fmt=args.format,
        model=args.model,
        selection=None if selection == "both" else selection,
        severity=getattr(args, "severity", None),
        noise=getattr(args, "noise", views.ViewOptions.noise),
        reference=getattr(args, "reference", "dense"),
        split=getattr(args, "split", "test"),
        all_budgets=getattr(args, "all_budgets", False),
        samples=lambda: load_samples(args.results),
    )


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
    from vitbench.report.format import figure_kind, save_figure
    from vitbench.report.population import restrict_suite

    view = views.get("robustness", args.view)
    view.check_format(args.format)
    if args.plot:
        figure_kind(Path(args.plot))  # a bad suffix fails before any table is printed
    df = load_results(args.results)
    if args.suite:
        df = restrict_suite(df, args.suite)  # keeps the dense records it reuses
    opts = _options(args)
    text = view.render(df, opts)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    if args.plot:
        if view.plot is None:
            raise VitbenchError(f"the {view.name} view has no figure; drop --plot")
        print(f"wrote {save_figure(view.plot(df, opts), Path(args.plot))}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """One self-contained HTML page (tables + embedded plots) for a whole results store."""
    # deferred: tables and plots bring pandas and matplotlib; `vitbench --help` stays free of them
    from vitbench.report.html import write_html_report
    from vitbench.report.population import restrict_suite
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
        choices=views.choices("leaderboard"),
        metavar="VIEW",
        help=f"which table (default all): {views.help_text('leaderboard')}",
    )
    lb.add_argument(
        "--paper",
        action="store_true",
        help="the published-numbers table: measured next to the method cards' published rows (not a view)",
    )
    lb.add_argument("--model", default=None, help="only this model's records (default: all)")
    lb.add_argument("--suite", default=None, help="only this suite's records (default: all)")
    lb.add_argument(
        "--all-budgets",
        action="store_true",
        help="matched view: a column for every measured GMACs budget (default: at most 8, evenly spaced)",
    )
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
        choices=views.choices("robustness"),
        metavar="VIEW",
        help=f"which table (default mce): {views.help_text('robustness')}",
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
    ro.add_argument(
        "--plot",
        default=None,
        help="also save the view's figure (.png, .svg or .pdf), drawn with the same filters",
    )
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
