"""The registry of views: every table a command renders, one module per view.

A view is one :class:`View` (name, the command that shows it, help, formats, renderer, and
optionally its figure, its place in the ``all`` view and its section of the HTML report),
defined as ``VIEW`` in a module of this package. :func:`views` finds them by walking the
package, so adding a view is adding one module (and its test): ``vitbench leaderboard --view``
and ``vitbench robustness --view`` take their choices and help from here, the ``all`` view
and :func:`vitbench.report.robust.html_report` read their sections from here, and the committed
references (:mod:`vitbench.report.references`) name views that must be registered here.

Importing this package and its view modules is cheap (no pandas, torch or matplotlib): view
modules import what they render with inside their functions, so ``vitbench --help`` and the
parser stay light.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from vitbench.core.errors import VitbenchError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: The table formats a view renders unless it says otherwise (``vitbench.report.format.FORMATS``).
ALL_FORMATS: tuple[str, ...] = ("markdown", "github", "latex", "csv", "html")
#: Commands that show views.
COMMANDS: tuple[str, ...] = ("leaderboard", "robustness")


@dataclasses.dataclass(frozen=True)
class ViewOptions:
    """What the command line passes to a view: format and filters.

    Attributes:
        fmt: table format (one of the view's ``formats``).
        model: only this model's records (``None``: all).
        selection: ``scored`` / ``random`` token selection, ``None`` for both.
        severity: corruption severity 1-5 (corruptions view; ``None``: CE over severities).
        noise: the swept noise of the levels view.
        reference: mCE reference, ``dense`` or ``alexnet``.
        split: corruptions averaged into mCE (``test``, ``validation`` or ``all``).
        all_budgets: matched view: every measured GMACs budget, not at most
            :data:`vitbench.report.tables.MAX_GRID_POINTS` evenly spaced ones.
        samples: a function returning the store's per-sample outcomes
            (:func:`vitbench.store.results.load_samples`), called only by views that use them.
    """

    fmt: str = "github"
    model: str | None = None
    selection: str | None = "scored"
    severity: int | None = None
    noise: str = "gaussian-sigma"
    reference: str = "dense"
    split: str = "test"
    all_budgets: bool = False
    samples: Callable[[], Any] | None = None

    def load_samples(self) -> Any:
        """The per-sample outcomes, or ``None`` when none were given."""
        return self.samples() if self.samples is not None else None


@dataclasses.dataclass(frozen=True)
class View:
    """One view: a table (and maybe a figure) of a results frame.

    Attributes:
        name: what ``--view`` takes.
        command: the command whose ``--view`` lists it (one of :data:`COMMANDS`).
        help: one line for ``--help`` (what the table shows).
        render: ``(frame, options) -> str``, the table in ``options.fmt``; raises
            :class:`VitbenchError` (one line) when the frame has nothing to show.
        formats: table formats it renders.
        order: place in ``--help``, the ``all`` view and the HTML report (ascending).
        title: heading of its table in the ``all`` view (empty: not part of it).
        in_all: ``(successful rows) -> bool``: whether the ``all`` view shows it (``None``:
            whenever ``title`` is set).
        plot: ``(frame, options) -> Figure`` for ``--plot`` (``None``: no figure).
        report: ``(frame, ReportContext) -> None``, adds its sections to the HTML report.
        aliases: deprecated names still accepted (a one-line note names ``name``).
    """

    name: str
    command: str
    help: str
    render: Callable[[pd.DataFrame, ViewOptions], str]
    formats: tuple[str, ...] = ALL_FORMATS
    order: int = 100
    title: str = ""
    in_all: Callable[[pd.DataFrame], bool] | None = None
    plot: Callable[[pd.DataFrame, ViewOptions], Figure] | None = None
    report: Callable[[pd.DataFrame, Any], None] | None = None
    aliases: tuple[str, ...] = ()

    def check_format(self, fmt: str) -> None:
        """Raise a one-line error unless this view renders ``fmt``."""
        if fmt not in self.formats:
            others = ", ".join(f for f in self.formats)
            raise VitbenchError(
                f"the {self.name} view has no {fmt} form (it renders {others}); "
                f"drop --format {fmt} or pick another --view"
            )


@cache
def views() -> tuple[View, ...]:
    """Every registered view, in ``order`` (the ``VIEW`` of each module of this package).

    Raises:
        VitbenchError: two views of one command share a name or an alias.
    """
    found: list[View] = []
    for info in pkgutil.iter_modules(__path__):  # type: ignore[name-defined]
        module = importlib.import_module(f"{__name__}.{info.name}")
        view = getattr(module, "VIEW", None)
        if isinstance(view, View):
            found.append(view)
    found.sort(key=lambda v: (v.order, v.name))
    seen: dict[tuple[str, str], str] = {}
    for v in found:
        for name in (v.name, *v.aliases):
            if (v.command, name) in seen:
                raise VitbenchError(
                    f"view name '{name}' of {v.command} is registered twice "
                    f"({seen[v.command, name]}, {v.name}); rename one of the view modules' VIEW"
                )
            seen[v.command, name] = v.name
    return tuple(found)


def names(command: str) -> list[str]:
    """The view names of ``command``, in order (aliases left out)."""
    return [v.name for v in views() if v.command == command]


def choices(command: str) -> list[str]:
    """What ``--view`` of ``command`` accepts: names and deprecated aliases."""
    return [n for v in views() if v.command == command for n in (v.name, *v.aliases)]


def help_text(command: str) -> str:
    """``--view`` help of ``command``: each view's name and help line."""
    return "; ".join(f"{v.name}: {v.help}" for v in views() if v.command == command)


def get(command: str, name: str, warn: bool = True) -> View:
    """The view ``name`` of ``command``; a deprecated alias prints one note naming the new name.

    Raises:
        VitbenchError: no such view (the message lists the views of ``command``).
    """
    for v in views():
        if v.command != command:
            continue
        if name == v.name:
            return v
        if name in v.aliases:
            if warn:
                print(
                    f"note: --view {name} is now --view {v.name} (the old name is deprecated)",
                    file=sys.stderr,
                )
            return v
    raise VitbenchError(f"unknown {command} view '{name}'; choose one of: {', '.join(names(command))}")


def all_views() -> list[View]:
    """The views of the ``all`` view (leaderboard views with a ``title``), in order."""
    return [v for v in views() if v.command == "leaderboard" and v.title]


def report_views() -> list[View]:
    """Views with a section in the HTML report, in order."""
    return [v for v in views() if v.report is not None]


__all__: Sequence[str] = (
    "ALL_FORMATS",
    "COMMANDS",
    "View",
    "ViewOptions",
    "all_views",
    "choices",
    "get",
    "help_text",
    "names",
    "report_views",
    "views",
)
