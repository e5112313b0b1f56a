"""Robustness leaderboards, plots and the one-page HTML report: pure functions of a records frame.

Tables render in every format of :data:`vitbench.report.tables.FORMATS` (``markdown``, ``github``,
``latex``, ``csv`` with raw numbers, ``html``); plots use matplotlib's object API (no pyplot
state) and save as PNG or SVG by suffix. Metrics come from :mod:`vitbench.report.robustness`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from vitbench.core.errors import VitbenchError
from vitbench.data.noise import FAMILIES, NOISES, corruption_names
from vitbench.report import robustness
from vitbench.report import tables as report
from vitbench.report.compare import compare_table
from vitbench.report.format import (
    Col,
    check_fmt,
    fmt_num,
    fmt_signed,
    gmacs_digits,
    render_table,
    save_figure,
    save_figure_all,
)
from vitbench.report.plotstyle import (
    base_method,
    legend_outside,
    method_color,
    styled,
    variant_marker,
    with_style,
)
from vitbench.report.population import seeds_note
from vitbench.report.robustness import CONFIG, DENSE
from vitbench.report.rows import lead_columns
from vitbench.store.records import curve_label, with_curves

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SEVERITIES = (1, 2, 3, 4, 5)


def _config_label(method: str, keep: float, selection: str = "scored") -> str:
    """Legend/row label of a configuration: ``dense``, ``evit 0.7``, ``evit 0.7 (random)``."""
    if method == DENSE:
        return DENSE
    return f"{method} {keep:g}" + (" (random)" if selection == "random" else "")


def _config_cols(frame: pd.DataFrame, selection: str | None) -> list[Col]:
    names = list(with_curves(frame)["curve"]) if "setting" in frame else list(frame["method"])
    cols = lead_columns(frame) + [
        Col("Method", names, names, numeric=False),
        Col("Keep", list(frame["keep_ratio"]), [fmt_num(v) for v in frame["keep_ratio"]]),
    ]
    if selection is None:
        cols.append(Col("Selection", list(frame["selection"]), list(frame["selection"]), numeric=False))
    return cols


def caption_text(reference: str, split: str, frame: pd.DataFrame) -> str:
    n = int(frame["n_corruptions"].max()) if len(frame) else 0
    ref = "the dense model on the same images (= 100)" if reference == "dense" else "AlexNet on ImageNet-C"
    seeds = seeds_note(frame["n_seeds"]) if "n_seeds" in frame and len(frame) else ""
    return (
        f"mCE and relative mCE (%) relative to {ref}, over {n} ImageNet-C {split} corruption(s) "
        f"x severities; errors {seeds}; {robustness.IN_MEMORY_LABEL}."
    )


# -- tables ----------------------------------------------------------------------------------------


def robustness_table(
    df: pd.DataFrame,
    fmt: str = "github",
    model: str | None = None,
    selection: str | None = "scored",
    reference: str = "dense",
    split: str = "test",
) -> str:
    """The robustness leaderboard: one row per configuration.

    Columns: ``Method | Keep | GMACs | Clean | mCE | rel. mCE | noise | blur | weather |
    digital`` (family columns are the mean CE of the family's corruptions; a leading ``Model``
    / ``Dataset`` column when several). csv adds ``mCA``, ``Drop``, ``Retention`` and
    ``Corruptions``. Lower mCE is better.

    Args:
        df: records frame.
        fmt: one of :data:`vitbench.report.tables.FORMATS`.
        model: restrict to one model.
        selection: ``scored`` / ``random`` (dense always shown); ``None`` lists both.
        reference: ``dense`` or ``alexnet`` (ImageNet models on ImageNet images only).
        split: corruptions averaged (``test``: the 15 of mCE).

    Raises:
        VitbenchError: bad format/reference/split, or no corruption records.
    """
    check_fmt(fmt)
    m = robustness.mce_table(df, model, selection, reference, split)
    cols = _config_cols(m, selection) + [
        Col("GMACs", list(m["gmacs"]), [fmt_num(v, gmacs_digits(m["gmacs"])) for v in m["gmacs"]]),
        Col("Clean", list(m["clean_top1"]), [fmt_num(v) for v in m["clean_top1"]]),
        Col("mCE", list(m["mce"]), [fmt_num(v, 1) for v in m["mce"]]),
        Col("rel. mCE", list(m["rel_mce"]), [fmt_num(v, 1) for v in m["rel_mce"]]),
    ]
    for fam in FAMILIES:
        cols.append(Col(fam, list(m[f"mce_{fam}"]), [fmt_num(v, 1) for v in m[f"mce_{fam}"]]))
    cols += [
        Col("mCA", list(m["mca"]), [], display=False),
        Col("Drop", list(m["drop"]), [], display=False),
        Col("Retention", list(m["retention"]), [], display=False),
        Col(
            "Corruptions",
            list(m["n_corruptions"]),
            [str(int(v)) for v in m["n_corruptions"]],
            display=m["n_corruptions"].nunique() > 1,  # mCEs over different corruption sets
        ),
    ]
    return render_table(cols, fmt, caption=caption_text(reference, split, m))


def severity_table(
    df: pd.DataFrame, fmt: str = "github", model: str | None = None, selection: str | None = "scored"
) -> str:
    """Mean top-1 over the ImageNet-C test corruptions at each severity.

    Columns: ``Method | Keep | Clean | s1 | ... | s5 | Mean | Δ vs clean`` (mean − clean).

    Raises:
        VitbenchError: bad format or no test-corruption records.
    """
    check_fmt(fmt)
    curves = robustness.severity_curves(df, model, selection, "test")
    every = curves.loc[curves["family"] == "all"]
    wide = every.pivot_table(index=CONFIG, columns="level", values="top1", sort=False).reset_index()
    wide = robustness.order_configs(wide)
    cols = _config_cols(wide, selection)
    clean = list(wide[0.0]) if 0.0 in wide else [math.nan] * len(wide)
    cols.append(Col("Clean", clean, [fmt_num(v) for v in clean]))
    present = [s for s in SEVERITIES if float(s) in wide]
    for s in present:
        cols.append(Col(f"s{s}", list(wide[float(s)]), [fmt_num(v) for v in wide[float(s)]]))
    mean = list(wide[[float(s) for s in present]].mean(axis=1, skipna=False))
    delta = [v - c for c, v in zip(clean, mean)]
    cols.append(Col("Mean", mean, [fmt_num(v) for v in mean]))
    cols.append(Col("Δ vs clean", delta, [fmt_signed(v) for v in delta]))
    return render_table(
        cols, fmt, caption="Top-1 (%) averaged over the ImageNet-C test corruptions per severity."
    )


def corruption_table(
    df: pd.DataFrame,
    fmt: str = "github",
    severity: int | None = None,
    model: str | None = None,
    selection: str | None = "scored",
    reference: str = "dense",
) -> str:
    """One column per corruption: top-1 error (%) at ``severity``, or CE (%) when it is ``None``.

    csv also carries the bootstrap CI of each error (``<corruption> CI low/high``).

    Raises:
        VitbenchError: bad format, severity outside 1-5, or no corruption records.
    """
    check_fmt(fmt)
    if severity is not None and severity not in SEVERITIES:
        raise VitbenchError(f"severity {severity!r} is outside 1-5; use an integer 1..5 or none for CE")
    if severity is None:
        data = robustness.ce_table(df, model, selection, reference, "all")
        value, caption = "ce", f"CE (%) per corruption relative to {reference}, summed over severities."
    else:
        data = robustness.corruption_errors(df, model, selection, "all")
        data = data.loc[data["level"] == float(severity)]
        value, caption = "err", f"Top-1 error (%) per corruption at severity {severity}."
        if data.empty:
            raise VitbenchError(f"no corruption records at severity {severity}; check the suite's levels")
    order = {n: i for i, n in enumerate(corruption_names("all"))}
    names = sorted(set(data["noise"]), key=lambda n: order[n])
    wide = data.pivot_table(index=CONFIG, columns="noise", values=value, sort=False).reset_index()
    wide = robustness.order_configs(wide)
    cols = _config_cols(wide, selection)
    for n in names:
        header = n + ("*" if NOISES.get(n).extra else "")
        cols.append(Col(header, list(wide[n]), [fmt_num(v, 1) for v in wide[n]]))
    if severity is not None:
        for bound in ("err_ci_low", "err_ci_high"):
            ci = data.pivot_table(index=CONFIG, columns="noise", values=bound, sort=False)
            ci = ci.reindex(pd.MultiIndex.from_frame(wide[CONFIG]))
            for n in names:
                label = "CI low" if bound == "err_ci_low" else "CI high"
                cols.append(Col(f"{n} {label}", list(ci[n]) if n in ci else [], [], display=False))
    if any(NOISES.get(n).extra for n in names):
        caption += " * validation corruption (not in mCE)."
    return render_table(cols, fmt, caption=caption)


def level_table(
    df: pd.DataFrame,
    noise: str,
    fmt: str = "github",
    model: str | None = None,
    selection: str | None = "scored",
) -> str:
    """Top-1 (%) per level of one noise; level 0 is the clean record (``Method | Keep | 0 | σ1 ...``).

    Raises:
        UnknownNameError: unknown noise. VitbenchError: bad format or no records of the noise.
    """
    check_fmt(fmt)
    curves = robustness.level_curves(df, noise, model, selection)
    wide = curves.pivot_table(index=CONFIG, columns="level", values="top1", sort=False).reset_index()
    wide = robustness.order_configs(wide)
    cols = _config_cols(wide, selection)
    for lv in sorted(c for c in wide.columns if isinstance(c, float)):
        cols.append(Col(f"{lv:g}", list(wide[lv]), [fmt_num(v) for v in wide[lv]]))
    return render_table(cols, fmt, caption=f"Top-1 (%) vs {noise} level (0 = clean).")


def selection_summary_table(
    df: pd.DataFrame, fmt: str = "github", model: str | None = None, noise: str = "clean", level: float = 0.0
) -> str:
    """Random-selection study, one row per method: Δ = top-1 scored − top-1 random per keep ratio.

    A positive Δ means the method's own token scores beat random selection of the same token
    count (same schedule, same merge/squeeze step). Columns: ``Method | Δ@<keep> ... | Mean Δ``;
    the per-keep detail is :func:`vitbench.report.tables.selection_table`.

    Raises:
        VitbenchError: bad format or no scored/random pairs.
    """
    check_fmt(fmt)
    d = robustness.selection_deltas(df, model, noise, level)
    keeps = sorted(set(d["keep_ratio"]), reverse=True)
    rkeys = [*robustness.POP, "curve"]
    rows = d.groupby(rkeys, sort=True, dropna=False).agg(n_samples=("n_samples", "first")).reset_index()
    cols = lead_columns(rows) + [Col("Method", list(rows["curve"]), list(rows["curve"]), numeric=False)]
    table = d.set_index([*rkeys, "keep_ratio"])["delta"]
    keys = list(rows[rkeys].itertuples(index=False, name=None))
    values = []
    for k in keeps:
        column = [float(table.get((*key, k), math.nan)) for key in keys]
        values.append(column)
        cols.append(Col(f"Δ@{k:g}", column, [fmt_signed(v) for v in column]))
    mean = [float(pd.Series(r).mean()) for r in zip(*values)] if values else []
    cols.append(Col("Mean Δ", mean, [fmt_signed(v) for v in mean]))
    cond = "clean" if noise == "clean" else f"{noise}@{level:g}"
    return render_table(
        cols, fmt, caption=f"Δ top-1 = scored − random selection ({cond}); > 0: the scores help."
    )


# -- plots -----------------------------------------------------------------------------------------


def _figure(width: float = 6.4, height: float = 4.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(fig: Figure, path: str | Path) -> Path:
    return save_figure(fig, path)


def _style(method: str, selection: str, variant: int = 0) -> dict[str, Any]:
    """Colour per method (same in every figure), marker per variant, dashed for random selection."""
    if method == DENSE:  # a second population's dense: dashed
        ls = "-" if variant == 0 else ("--", ":", "-.")[(variant - 1) % 3]
        return {
            "color": method_color(DENSE),
            "linewidth": 2.2,
            "marker": "*",
            "markersize": 9,
            "linestyle": ls,
        }
    return {
        "color": method_color(method),
        "marker": variant_marker(variant),
        "markersize": 4,
        "linestyle": "--" if selection == "random" else "-",
    }


_WHERE = ("model", "weights", "dataset", "data_split", "sample_ids_hash")


def _varying(frame: pd.DataFrame) -> list[str]:
    """Population columns that differ between the rows of ``frame`` (label prefixes)."""
    return [c for c in _WHERE if c in frame and frame[c].nunique() > 1]


def filters_text(cfg: dict[str, Any], varying: list[str]) -> str:
    """Short population label: only the varying parts, images as ``img <hash[:8]>``."""
    return " ".join(f"img {str(cfg[c])[:8]}" if c == "sample_ids_hash" else str(cfg[c]) for c in varying)


def _lines(ax: Any, frame: pd.DataFrame, x: str, y: str = "top1", band: bool = True) -> None:
    """One line per configuration; a 95 % CI band where the frame carries CI bounds."""
    varying = _varying(frame)
    variants: dict[str, list[str]] = {}
    for key, grp in robustness.order_configs(frame).groupby(CONFIG, sort=False):
        cfg: dict[str, Any] = dict(zip(CONFIG, key))
        method, selection = str(cfg["method"]), str(cfg["selection"])
        label = _config_label(curve_label(method, str(cfg["setting"])), float(cfg["keep_ratio"]), selection)
        if varying:
            label = f"{filters_text(cfg, varying)}: {label}"
        seen = variants.setdefault(method, [])
        if label not in seen:
            seen.append(label)
        grp = grp.sort_values(x)
        style = _style(method, selection, seen.index(label))
        ax.plot(grp[x], grp[y], label=label, **style)
        if band and {"top1_ci_low", "top1_ci_high"} <= set(grp) and grp["top1_ci_low"].notna().all():
            ax.fill_between(
                grp[x], grp["top1_ci_low"], grp["top1_ci_high"], color=style["color"], alpha=0.12, linewidth=0
            )


@with_style
def level_figure(
    df: pd.DataFrame, noise: str, model: str | None = None, selection: str | None = "scored"
) -> Figure:
    """Top-1 vs level of ``noise`` (e.g. Gaussian σ), one line per configuration, 95 % CI bands."""
    curves = robustness.level_curves(df, noise, model, selection)
    fig = _figure()
    ax = fig.add_subplot()
    _lines(ax, curves, "level")
    ax.set_xlabel("σ (fraction of 255)" if noise == "gaussian-sigma" else f"{noise} level")
    ax.set_ylabel("Top-1 accuracy (%)")
    ax.set_title(f"Accuracy vs {noise} level (bands: 95% CI over images, {seeds_note(curves['n_seeds'])})")
    legend_outside(ax)
    return fig


@with_style
def severity_figure(df: pd.DataFrame, model: str | None = None, selection: str | None = "scored") -> Figure:
    """Top-1 vs severity (0 = clean) per corruption family (one panel each, plus ``all``).

    Points are means over the family's corruptions (no per-point CI: a mean of several
    corruptions' accuracies has no single bootstrap CI in the records). One legend for all
    panels, right of them.
    """
    curves = robustness.severity_curves(df, model, selection, "test")
    fams = [f for f in (*FAMILIES, "all") if f in set(curves["family"])]
    fig = _figure(2.6 * len(fams), 3.0)
    axes = fig.subplots(1, len(fams), sharey=True, squeeze=False)[0]
    for ax, fam in zip(axes, fams):
        _lines(ax, curves.loc[curves["family"] == fam], "level", band=False)
        ax.set_title(fam)
        ax.set_xlabel("severity")
        ax.set_xticks(range(0, 6))
    axes[0].set_ylabel("Top-1 accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    legend_outside(fig, handles, labels)
    return fig


@with_style
def heatmap_figure(
    df: pd.DataFrame, model: str | None = None, selection: str | None = "scored", reference: str = "dense"
) -> Figure:
    """Method x corruption heatmap of CE (%) relative to ``reference`` (100 = as robust as it)."""
    ce = robustness.ce_table(df, model, selection, reference, "all")
    order = {n: i for i, n in enumerate(corruption_names("all"))}
    names = sorted(set(ce["noise"]), key=lambda n: order[n])
    wide = robustness.order_configs(
        ce.pivot_table(index=CONFIG, columns="noise", values="ce", sort=False).reset_index()
    )
    curves = [curve_label(m, str(st)) for m, st in zip(wide["method"], wide["setting"])]
    labels = [_config_label(c, k, s) for c, k, s in zip(curves, wide["keep_ratio"], wide["selection"])]
    varying = _varying(wide)
    if varying:
        labels = [f"{filters_text(cfg, varying)}: {lb}" for cfg, lb in zip(wide.to_dict("records"), labels)]
    values = wide[names].to_numpy(dtype=float)
    fig = _figure(max(6.0, 0.45 * len(names) + 3), max(3.0, 0.35 * len(labels) + 1.8))
    ax = fig.add_subplot()
    from matplotlib.colors import FuncNorm

    finite = values[~pd.isna(values)]
    # symmetric around 100 (= as robust as the reference) on a log scale: CE is a ratio of errors,
    # so half the reference's error is as green as twice it is red, and no impossible value
    # (CE < 0) appears on the colour bar; 99 is near-neutral, never "best"; red = more error
    positive = finite[finite > 0]
    ratio = float(np.exp(np.abs(np.log(positive / 100.0)).max())) if positive.size else 1.05
    factor = max(1.05, ratio)
    norm = FuncNorm(
        (lambda v: np.log(np.clip(v, 1e-9, None) / 100.0), lambda u: 100.0 * np.exp(u)),
        vmin=100.0 / factor,
        vmax=100.0 * factor,
    )
    im = ax.imshow(values, cmap="RdYlGn_r", aspect="auto", norm=norm)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n + ("*" if NOISES.get(n).extra else "") for n in names], rotation=60, ha="right")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    if values.size <= 400:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if not math.isnan(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=6)
    ticks = [
        t for t in (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if 100.0 / factor <= t <= 100.0 * factor
    ]
    fig.colorbar(im, ax=ax, ticks=ticks, format="%g", label=f"CE (%) vs {reference} (> 100: more error, red)")
    ax.set_title("Corruption error per method and corruption (* validation)")
    ax.grid(False)
    return fig


@with_style
def selection_figure(df: pd.DataFrame, model: str | None = None) -> Figure:
    """Top-1 vs keep ratio with scored (solid) and random (dashed) selection per method.

    Error bars: ± the std over seeds when there are several (the records' bootstrap CI is not
    carried by :func:`vitbench.report.robustness.selection_deltas`).
    """
    d = robustness.selection_deltas(df, model)
    fig = _figure()
    ax = fig.add_subplot()
    for i, (curve, grp) in enumerate(d.groupby("curve", sort=True)):
        color = method_color(base_method(str(curve)))
        marker = variant_marker(i)
        for sel, ls in (("scored", "-"), ("random", "--")):
            err = grp[f"std_{sel}"] if grp[f"seeds_{sel}"].max() > 1 else None
            ax.errorbar(
                grp["keep_ratio"], grp[f"top1_{sel}"], yerr=err, marker=marker, linestyle=ls,
                color=color, label=f"{curve} {sel}",
            )  # fmt: skip
    ax.set_xlabel("keep ratio")
    ax.set_ylabel("Top-1 accuracy (%)")
    ax.set_title("Token selection: scored (solid) vs random (dashed), clean")
    legend_outside(ax)
    return fig


def plot_levels(
    df: pd.DataFrame, path: str | Path, noise: str = "gaussian-sigma", model: str | None = None
) -> Path:
    """Save :func:`level_figure` as PNG or SVG; returns the path."""
    return _save(level_figure(df, noise, model), path)


def plot_severities(df: pd.DataFrame, path: str | Path, model: str | None = None) -> Path:
    """Save :func:`severity_figure` as PNG or SVG; returns the path."""
    return _save(severity_figure(df, model), path)


def plot_heatmap(
    df: pd.DataFrame, path: str | Path, model: str | None = None, reference: str = "dense"
) -> Path:
    """Save :func:`heatmap_figure` as PNG or SVG; returns the path."""
    return _save(heatmap_figure(df, model, reference=reference), path)


def plot_selection(df: pd.DataFrame, path: str | Path, model: str | None = None) -> Path:
    """Save :func:`selection_figure` as PNG or SVG; returns the path."""
    return _save(selection_figure(df, model), path)


# -- the HTML page ---------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5rem auto;max-width:1180px;
padding:0 1rem;color:#222;overflow-wrap:anywhere}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin:1.2rem 0 .3rem}
.tbl{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:.78rem;margin:.3rem 0}
th,td{border:1px solid #ccc;padding:.15rem .35rem}th{background:#f3f3f3}
tr:nth-child(even){background:#fafafa}img{max-width:100%;height:auto;border:1px solid #eee}
p{margin:.3rem 0}.note{color:#666;font-style:italic}.meta{color:#555;font-size:.9rem}
"""


def _png(fig: Figure) -> str:

    buf = io.BytesIO()
    with styled():
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def html_report(
    df: pd.DataFrame,
    title: str | None = None,
    model: str | None = None,
    samples: Any = None,
    figures: dict[str, Figure] | None = None,
) -> str:
    """One self-contained HTML page (inline CSS, plots as base64 PNG) for a whole results frame.

    Sections appear when the records support them: clean leaderboard and Pareto plot; the
    robustness leaderboard (dense-relative mCE, AlexNet-normalised too when the dataset name
    contains ``imagenet``), per-severity tables, CE per corruption and its heatmap, accuracy vs
    severity per family; accuracy vs level for every continuous noise (σ sweeps); the random
    selection study; failed cells. A section with no matching records is left out; every
    table has its own heading and caption (what Top-1 averages; img/s marked as
    machine-dependent with device and threads). Rows of different populations are never
    averaged (:mod:`vitbench.report.population`).

    Args:
        df: records frame.
        title: page title.
        model: restrict to one model.
        samples: per-sample outcomes (:func:`vitbench.store.results.load_samples`): the matched-GMACs
            table then marks methods tied with the best.
        figures: if given, filled with ``name -> Figure`` of every plot on the page (for
            :func:`write_html_report` to save them as PNG, SVG and PDF).

    Raises:
        VitbenchError: no successful records at all.
    """
    ok = robustness.select_records(df, model)
    src = str(df.attrs.get("source", "results frame"))
    title = title or f"vitbench report: {Path(src).name}"
    parts: list[str] = []

    def section(heading: str, *blocks: Callable[[], str]) -> None:
        body = []
        for block in blocks:
            try:
                body.append(block())
            except VitbenchError:
                continue
        if body:
            parts.append(f"<h2>{html.escape(heading)}</h2>\n" + "\n".join(body))

    def table(heading: str, fn: Callable[..., str], **kw: Any) -> Callable[[], str]:
        def block() -> str:
            text = fn(df, fmt="html", model=model, **kw)
            return f"<h3>{html.escape(heading)}</h3>\n<div class='tbl'>{text}</div>"

        return block

    def image(name: str, fn: Callable[..., Figure], alt: str, **kw: Any) -> Callable[[], str]:
        def block() -> str:
            fig = fn(df, model=model, **kw)
            if figures is not None:
                figures[name] = fig
            return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'

        return block

    section(
        "Leaderboard (clean, scored selection)",
        table("Top-1, ΔTop-1 vs dense and costs", report.leaderboard),
        image("pareto", report.pareto_figure, "accuracy vs GMACs"),
    )
    section(
        "Accuracy at matched GMACs (clean)",
        table("Top-1 interpolated at common GMACs budgets", report.matched_gmacs_table, samples=samples),
    )
    if samples:
        section(
            "Paired comparison with dense (clean, scored selection)",
            table("ΔTop-1 vs dense on the same images", lambda d, **kw: compare_table(d, samples, **kw)),
        )
    noises = set(ok["noise"])
    if noises & set(robustness.ALEXNET_ERROR) or noises & {
        "speckle-noise",
        "gaussian-blur",
        "spatter",
        "saturate",
    }:
        blocks = [table("mCE relative to dense, scored selection", robustness_table)]
        if any("imagenet" in str(d).lower() for d in set(ok["dataset"])):
            blocks.append(table("mCE relative to AlexNet", robustness_table, reference="alexnet"))
        corrupted = ok["noise"].isin(set(corruption_names("all")))
        if ((ok["selection"] == "random") & corrupted).any():
            blocks.append(
                table("mCE relative to dense, random selection", robustness_table, selection="random")
            )
        section("Corruption robustness (mCE, lower is better)", *blocks)
        section(
            "Accuracy vs severity",
            table("Top-1 per severity (mean over the test corruptions)", severity_table),
            image("severity", severity_figure, "accuracy vs severity per family"),
        )
        section(
            "Corruption error per corruption",
            table("CE per corruption (summed over severities)", corruption_table),
            image("ce_heatmap", heatmap_figure, "CE heatmap"),
            *[table(f"Top-1 error at severity {s}", corruption_table, severity=s) for s in SEVERITIES],
        )
    for noise in sorted(n for n in noises if n in NOISES and NOISES.get(n).levels == "continuous"):
        section(
            f"Accuracy vs {noise} level",
            table(f"Top-1 per {noise} level", level_table, noise=noise),
            image(f"levels_{noise}", level_figure, f"accuracy vs {noise}", noise=noise),
        )
    if (ok["selection"] == "random").any():
        section(
            "Random token selection (Δ = scored − random)",
            table("Δ per keep ratio", selection_summary_table),
            table("Top-1 scored and random per keep ratio", report.selection_table),
            image("selection", selection_figure, "scored vs random selection"),
        )
    failed = report.failed_cells(df)
    if not failed.empty:
        rows = failed.astype(object).where(failed.notna(), "").astype(str)
        parts.append(
            f"<h2>Failed cells ({len(failed)})</h2>\n<div class='tbl'>"
            + rows.to_html(index=False, escape=True)
            + "</div>"
        )
    suites = ", ".join(sorted({str(s) for s in df.get("suite", pd.Series(dtype=object)).dropna()})) or "-"
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta = (
        f"<p class='meta'>source {html.escape(src)} · {len(ok)} successful records, {len(failed)} failed · "
        f"suites: {html.escape(suites)} · generated {stamp}</p>"
        f"<p class='note'>{html.escape(robustness.IN_MEMORY_LABEL)}.</p>"
    )
    body = "\n".join(parts)
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n{meta}\n{body}\n</body></html>\n"
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


__all__: Sequence[str] = (
    "corruption_table",
    "heatmap_figure",
    "html_report",
    "level_figure",
    "level_table",
    "plot_heatmap",
    "plot_levels",
    "plot_selection",
    "plot_severities",
    "robustness_table",
    "selection_figure",
    "selection_summary_table",
    "severity_figure",
    "severity_table",
    "write_html_report",
)
