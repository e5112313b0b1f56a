"""The one-page HTML report: a provenance block, then every registered view's section.

The page stands alone: it opens with what was measured (:mod:`vitbench.report.provenance`:
datasets and splits with image counts, models with weights files and digests, calibration of
channel cells, noises, seeds, package versions and commits), then the section of every view in
:func:`vitbench.report.views.report_views` that has rows, in registry order. CSS is inline,
figures are base64 PNG; numeric cells never wrap (``white-space: nowrap``).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from vitbench.core.errors import VitbenchError
from vitbench.data.noise import corruption_names
from vitbench.report import robustness, views
from vitbench.report import tables as report
from vitbench.report.format import save_figure_all
from vitbench.report.plotstyle import styled
from vitbench.report.provenance import provenance_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5rem auto;max-width:1180px;
padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin:1.2rem 0 .3rem}
.tbl{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:.78rem;margin:.3rem 0}
th,td{border:1px solid #ccc;padding:.15rem .35rem;vertical-align:top}th{background:#f3f3f3}
td{white-space:nowrap}td.wrap{white-space:normal;overflow-wrap:anywhere;max-width:36rem}
tr:nth-child(even){background:#fafafa}img{max-width:100%;height:auto;border:1px solid #eee}
p{margin:.3rem 0;overflow-wrap:anywhere}.note{color:#666;font-style:italic}.meta{color:#555;font-size:.9rem}
.prov{background:#f8f8f8;border:1px solid #ddd;padding:.2rem 1rem .6rem;margin:1rem 0}
.prov h2{margin-top:.6rem}code{font-size:.78rem}
"""


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    with styled():
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class ReportContext:
    """What a view's ``report`` function gets: the frame, filters, and section builders.

    Attributes:
        df: the records frame; ``ok``: its successful rows (of ``model``).
        model: only this model's records (``None``: all).
        samples: per-sample outcomes by cell key (may be empty).
        figures: ``name -> Figure`` of every figure placed on the page, or ``None``.
        parts: the HTML sections so far.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        ok: pd.DataFrame,
        model: str | None,
        samples: Any,
        figures: dict[str, Figure] | None,
    ) -> None:
        self.df, self.ok, self.model, self.samples, self.figures = df, ok, model, samples, figures
        self.parts: list[str] = []

    def section(self, heading: str, *blocks: Callable[[], str]) -> None:
        """Add a section of the blocks that have something to show (none: no section)."""
        body = []
        for block in blocks:
            try:
                body.append(block())
            except VitbenchError:
                continue
        if body:
            self.parts.append(f"<h2>{html.escape(heading)}</h2>\n" + "\n".join(body))

    def table(self, heading: str, fn: Callable[..., str], **kw: Any) -> Callable[[], str]:
        """A block: ``fn(df, fmt="html", model=..., **kw)`` under an ``h3`` heading."""

        def block() -> str:
            text = fn(self.df, fmt="html", model=self.model, **kw)
            return f"<h3>{html.escape(heading)}</h3>\n<div class='tbl'>{text}</div>"

        return block

    def image(self, name: str, fn: Callable[..., Figure], alt: str, **kw: Any) -> Callable[[], str]:
        """A block: the figure ``fn(df, model=..., **kw)`` as an embedded PNG (kept as ``name``)."""

        def block() -> str:
            fig = fn(self.df, model=self.model, **kw)
            if self.figures is not None:
                self.figures[name] = fig
            return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'

        return block


def html_report(
    df: pd.DataFrame,
    title: str | None = None,
    model: str | None = None,
    samples: Any = None,
    figures: dict[str, Figure] | None = None,
) -> str:
    """One self-contained HTML page (inline CSS, plots as base64 PNG) for a whole results frame.

    The page opens with the source line (and, only when some record was evaluated under an
    ImageNet-C corruption, the note that corruptions are computed in memory by imagecorruptions),
    the provenance block (:func:`vitbench.report.provenance.provenance_html`), then each
    registered view with a report section adds it when the records support it (clean
    leaderboard and Pareto plot; matched GMACs; paired comparison; mCE; severities; CE per
    corruption and its heatmap; accuracy vs level of every continuous noise; the random
    selection study), then failed cells. Every table has its own heading and caption; rows of
    different populations are never averaged (:mod:`vitbench.report.population`).

    Args:
        df: records frame.
        title: page title.
        model: restrict to one model.
        samples: per-sample outcomes (:func:`vitbench.store.results.load_samples`): the matched-GMACs
            table then marks methods tied with the best, and the paired comparison appears.
        figures: if given, filled with ``name -> Figure`` of every plot on the page (for
            :func:`write_html_report` to save them as PNG, SVG and PDF).

    Raises:
        VitbenchError: no successful records at all.
    """
    ok = robustness.select_records(df, model)
    src = str(df.attrs.get("source", "results frame"))
    title = title or f"vitbench report: {Path(src).name}"
    ctx = ReportContext(df, ok, model, samples, figures)
    for view in views.report_views():
        assert view.report is not None
        view.report(df, ctx)
    failed = report.failed_cells(df)
    if model is not None and not failed.empty and "model" in failed:
        failed = failed.loc[failed["model"] == model]
    if not failed.empty:
        rows = failed.astype(object).where(failed.notna(), "").astype(str)
        table = rows.to_html(index=False, escape=True).replace("<td>", "<td class='wrap'>")
        ctx.parts.append(f"<h2>Failed cells ({len(failed)})</h2>\n<div class='tbl'>{table}</div>")
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # the corruptions' provenance, only where some record was evaluated under one of them
    corrupted = bool(ok["noise"].isin(set(corruption_names("all"))).any())
    meta = (
        f"<p class='meta'>source {html.escape(src)} · {len(ok)} successful records, {len(failed)} failed · "
        f"generated {stamp}</p>"
        + (f"<p class='note'>{html.escape(robustness.IN_MEMORY_LABEL)}.</p>" if corrupted else "")
    )
    body = "\n".join(ctx.parts)
    prov = provenance_html(df, model)
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n{meta}\n{prov}\n{body}\n"
        "</body></html>\n"
    )


def write_html_report(
    df: pd.DataFrame,
    path: str | Path,
    title: str | None = None,
    model: str | None = None,
    samples: Any = None,
    figures_dir: str | Path | None = None,
) -> Path:
    """Write :func:`html_report` to ``path`` (``.html``); returns the path.

    With ``figures_dir``, every figure of the page is also saved there as ``<name>.png``,
    ``<name>.svg`` and ``<name>.pdf`` (vector copies for a paper).

    Raises:
        VitbenchError: the path does not end in ``.html``/``.htm`` or cannot be written.
    """
    out = Path(path)
    if out.suffix.lower() not in (".html", ".htm"):
        raise VitbenchError(f"cannot write report to '{out}': use a .html file name")
    figures: dict[str, Figure] | None = {} if figures_dir is not None else None
    text = html_report(df, title, model, samples=samples, figures=figures)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise VitbenchError(
            f"cannot write report {out} ({exc.strerror or exc}); pass a writable path"
        ) from None
    if figures_dir is not None and figures:
        for name, fig in figures.items():
            save_figure_all(fig, Path(figures_dir) / name)
    return out


__all__ = ["ReportContext", "html_report", "write_html_report"]
