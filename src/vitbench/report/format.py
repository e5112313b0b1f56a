"""Table rendering (markdown, github, latex, csv, html) and figure saving shared by every report."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from vitbench.core.errors import VitbenchError
from vitbench.report.plotstyle import styled

FORMATS = ("markdown", "github", "latex", "csv", "html")


_TABLEFMT = {"markdown": "pipe", "github": "github", "latex": "latex_booktabs", "html": "html"}


_LATEX_SUBS = {"±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$"}


@dataclass
class Col:
    """One output column: raw values (csv) and their formatted strings (other formats)."""

    header: str
    raw: list[Any]
    shown: list[str]
    numeric: bool = True
    csv: bool = True
    display: bool = True


def check_fmt(fmt: str) -> None:
    """Raise a one-line VitbenchError unless ``fmt`` is one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise VitbenchError(f"unknown table format '{fmt}'; choose one of: {', '.join(FORMATS)}")


NA = "–"  # shown for a value that was not measured (e.g. top-1 of a cost-only cell)


def fmt_num(x: Any, digits: int = 2) -> str:
    """Format a number with ``digits`` decimals; ``–`` for missing values."""
    if x is None or pd.isna(x):
        return NA
    return f"{float(x):.{digits}f}"


#: Said once under every table with a GMACs column: the unit, and what papers call it.
GMACS_NOTE = "GMACs: 10^9 multiply-accumulates per image (papers label them GFLOPs)"


def gmacs_digits(values: Any) -> int:
    """Decimals of a GMACs column: 3 significant digits of its largest value, at least 2.

    The one rule of every vitbench table: the decimals are chosen per column (all values of a
    column share them), so 0.018 and 0.0088 print as ``0.0180`` and ``0.0088``; a DeiT-S column
    prints ``4.61``.
    """
    vals = [abs(float(v)) for v in values if v is not None and not math.isnan(float(v)) and float(v) != 0]
    if not vals:
        return 2
    return max(2, 2 - math.floor(math.log10(max(vals))))


def fmt_signed(x: Any, digits: int = 2) -> str:
    """Format a difference with its sign (``+1.20``); ``–`` for missing values."""
    if x is None or pd.isna(x):
        return NA
    return f"{float(x):+.{digits}f}"


def csv_value(x: Any) -> Any:
    """A csv-friendly scalar: numpy scalars -> Python, missing -> None."""
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return None
    return x.item() if hasattr(x, "item") else x


def top1_text(mean: Any, std: Any, n: Any) -> str:
    """Top-1 over ``n`` seeds: ``mean ± std`` for several seeds, the mean alone for one."""
    if mean is None or pd.isna(mean):
        return NA
    if int(n) > 1 and not pd.isna(std):
        return f"{float(mean):.2f} ± {float(std):.2f}"
    return fmt_num(mean)


def render_table(cols: Sequence[Col], fmt: str, caption: str | None = None) -> str:
    """Render columns in ``fmt``; ``caption`` (one line) is placed above non-csv tables."""
    check_fmt(fmt)
    if fmt == "csv":
        frame = pd.DataFrame({c.header: [csv_value(v) for v in c.raw] for c in cols if c.csv})
        return frame.to_csv(index=False, lineterminator="\n").rstrip("\n")
    shown = [c for c in cols if c.display]
    rows = [list(r) for r in zip(*(c.shown for c in shown))] if shown else []
    if fmt in ("markdown", "github"):  # a literal "|" would split the cell
        rows = [[cell.replace("|", "\\|") for cell in r] for r in rows]
    table = tabulate(
        rows,
        headers=[c.header for c in shown],
        tablefmt=_TABLEFMT[fmt],
        disable_numparse=True,
        colalign=["right" if c.numeric else "left" for c in shown],
    )
    if fmt == "latex":
        for old, new in _LATEX_SUBS.items():
            table = table.replace(old, new)
        return f"% {caption}\n{table}" if caption else table
    if fmt == "html":
        return f"<p>{html.escape(caption)}</p>\n{table}" if caption else table
    return f"{caption}\n\n{table}" if caption else table


FIGURE_FORMATS = ("png", "svg", "pdf")


def figure_kind(out: Path) -> str:
    """The figure format named by ``out``'s suffix; a one-line error unless it is in FIGURE_FORMATS."""
    kind = out.suffix.lower().lstrip(".")
    if kind not in FIGURE_FORMATS:
        raise VitbenchError(f"cannot plot to '{out}': use a .png, .svg or .pdf file name")
    return kind


def save_figure(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Write a matplotlib figure to a ``.png``/``.svg``/``.pdf`` path in vitbench's style.

    Folders are created; the saved area is tight around the figure (legends outside the axes
    included). SVG keeps text as text, PDF embeds TrueType fonts (``vitbench.mplstyle``).

    Raises:
        VitbenchError: unsupported suffix or the file cannot be written.
    """
    out = Path(path)
    kind = figure_kind(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with styled():
            fig.savefig(out, format=kind, dpi=dpi, bbox_inches="tight")
    except OSError as exc:
        raise VitbenchError(
            f"cannot write plot {out} ({exc.strerror or exc}); pass a writable path"
        ) from None
    return out


def save_figure_all(fig: Any, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<stem>.png``, ``<stem>.svg`` and ``<stem>.pdf`` (vector and raster)."""
    base = Path(stem)
    return [save_figure(fig, base.with_name(f"{base.name}.{k}"), dpi) for k in FIGURE_FORMATS]
