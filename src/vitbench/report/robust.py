"""Robustness leaderboards, plots and the one-page HTML report: pure functions of a records frame.

Tables render in every format of :data:`vitbench.report.tables.FORMATS` (``markdown``, ``github``,
``latex``, ``csv`` with raw numbers, ``html``); plots use matplotlib's object API (no pyplot
state) and save as PNG or SVG by suffix. Metrics come from :mod:`vitbench.report.robustness`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from vitbench.core.errors import VitbenchError
from vitbench.data.noise import FAMILIES, NOISES, corruption_names
from vitbench.report import robustness
from vitbench.report.format import (
    GMACS_NOTE,
    Col,
    check_fmt,
    fmt_num,
    fmt_signed,
    gmacs_digits,
    render_table,
    save_figure,
)
from vitbench.report.plotstyle import (
    base_method,
    factor_legend,
    footnote,
    method_color,
    population_fill,
    population_linestyle,
    variant_marker,
    with_style,
)
from vitbench.report.population import seeds_note
from vitbench.report.robustness import CONFIG, DENSE
from vitbench.report.rows import adaptive_note, image_sets, images_footnote, lead_columns, population_labels
from vitbench.store.records import curve_label, with_curves

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SEVERITIES = (1, 2, 3, 4, 5)


def severities_note(levels: object) -> str:
    """``severity 3``, ``severities 1-5`` or ``severities 3, 5``: the severities CE was summed over."""
    found = sorted({int(v) for v in pd.Series(levels).dropna()})
    if len(found) == 1:
        return f"severity {found[0]}"
    if found and found == list(range(found[0], found[-1] + 1)):
        return f"severities {found[0]}-{found[-1]}"
    return "severities " + ", ".join(str(v) for v in found)


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


def caption_text(
    reference: str, split: str, frame: pd.DataFrame, names: Sequence[str] = (), adaptive: str = ""
) -> str:
    """The mCE table's caption: what was averaged, over which corruptions, relative to what.

    With one corruption the numbers are that corruption's CE, and the caption says so (an
    "mCE" of one corruption is no mean). ``adaptive``: the line of
    :func:`vitbench.report.rows.adaptive_note` for the rows' records (``""``: none).
    """
    n = int(frame["n_corruptions"].max()) if len(frame) else 0
    ref = "the dense model on the same images (= 100)" if reference == "dense" else "AlexNet on ImageNet-C"
    seeds = seeds_note(frame["n_seeds"]) if "n_seeds" in frame and len(frame) else ""
    if n == 1:
        which = f" ({names[0]})" if len(names) == 1 else ""
        what = (
            f"CE and relative CE (%) of the one ImageNet-C {split} corruption{which}, summed over severities"
        )
        head = f"{what}, relative to {ref}"
    else:
        head = (
            f"mCE and relative mCE (%) relative to {ref}: mean over {n} ImageNet-C {split} corruptions of CE"
        )
    tail = f"; {adaptive}" if adaptive else ""
    return f"{head}; errors {seeds}; {robustness.IN_MEMORY_LABEL}; {GMACS_NOTE}{tail}."


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
    # one corruption: its CE, not a mean ("mCE") of one
    ce = "CE" if len(m) and int(m["n_corruptions"].max()) == 1 else "mCE"
    cols = _config_cols(m, selection) + [
        Col("GMACs", list(m["gmacs"]), [fmt_num(v, gmacs_digits(m["gmacs"])) for v in m["gmacs"]]),
        Col("Clean top-1", list(m["clean_top1"]), [fmt_num(v) for v in m["clean_top1"]]),
        Col(ce, list(m["mce"]), [fmt_num(v, 1) for v in m["mce"]]),
        Col(f"rel. {ce}", list(m["rel_mce"]), [fmt_num(v, 1) for v in m["rel_mce"]]),
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
    errs = robustness.corruption_errors(df, model, selection, split)
    recs = robustness.select_records(df, model, selection)
    adaptive = adaptive_note(recs.loc[recs["method"].isin(m["method"])])
    caption = caption_text(reference, split, m, sorted(set(errs["noise"])), adaptive)
    return render_table(cols, fmt, caption=caption)


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
    names = sorted(set(robustness.corruption_errors(df, model, selection, "test")["noise"]))
    what = f"on {names[0]}" if len(names) == 1 else f"mean over the {len(names)} ImageNet-C test corruptions"
    return render_table(cols, fmt, caption=f"Top-1 (%) per severity, {what}.")


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
        levels = severities_note(robustness.corruption_errors(df, model, selection, "all")["level"])
        value, caption = "ce", f"CE (%) per corruption relative to {reference}, summed over {levels}."
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
                cols.append(
                    Col(f"{n} {label}", list(ci[n]) if n in ci else [math.nan] * len(wide), [], display=False)
                )
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


def _filters_title(model: str | None, selection: str | None, extra: str = "") -> str:
    """The filters a figure follows, for its title: ``"scored token selection, severity 3"``."""
    parts = [f"model {model}"] if model else []
    parts.append("scored and random token selection" if selection is None else f"{selection} token selection")
    if extra:
        parts.append(extra)
    return ", ".join(parts)


def _who(frame: pd.DataFrame, sets: dict[tuple[str, str, str], str]) -> str:
    """``"<model(s)>: <image set>"`` for a title (the image set only when there is one)."""
    models = ", ".join(sorted(set(map(str, frame["model_shown"])))) if "model_shown" in frame else ""
    used = {
        (str(d), str(s), str(h))
        for d, s, h in zip(frame["dataset"], frame["data_split"], frame["sample_ids_hash"])
    }
    images = (
        sets[next(iter(used))] if len(used) == 1 and next(iter(used)) in sets else f"{len(used)} image sets"
    )
    return f"{models}: {images}" if models else images


def _lines(ax: Any, frame: pd.DataFrame, x: str, sets: Any, y: str = "top1", band: bool = True) -> list[Any]:
    """One line per configuration; returns the legend entries of its style factors.

    Colour: the method variant (:func:`vitbench.report.plotstyle.method_color`); marker: the keep
    ratio; line style: the population (model, weights, image set); hollow markers: random
    selection. The legend lists each factor once (:func:`vitbench.report.plotstyle.factor_legend`).
    A 95 % CI band is drawn where the frame carries CI bounds.
    """
    frame = robustness.order_configs(frame)
    pops = population_labels(frame, sets)
    frame = frame.assign(_pop=pops)
    pop_names = list(dict.fromkeys(pops))
    curves = list(dict.fromkeys(curve_label(m, str(st)) for m, st in zip(frame["method"], frame["setting"])))
    keeps = sorted(
        {float(k) for k, m in zip(frame["keep_ratio"], frame["method"]) if m != DENSE}, reverse=True
    )
    variants: dict[str, list[str]] = {}
    colours: dict[str, str] = {}
    for key, grp in frame.groupby([*CONFIG, "_pop"], sort=False):
        cfg: dict[str, Any] = dict(zip([*CONFIG, "_pop"], key))
        method, selection = str(cfg["method"]), str(cfg["selection"])
        curve = curve_label(method, str(cfg["setting"]))
        seen = variants.setdefault(method, [])
        if curve not in seen:
            seen.append(curve)
        colour = (
            method_color(method)
            if seen.index(curve) == 0
            else _shade(method_color(method), seen.index(curve))
        )
        colours[curve] = colour
        style: dict[str, Any] = {
            "color": colour,
            "linestyle": population_linestyle(pop_names.index(str(cfg["_pop"]))),
        }
        if method == DENSE:
            style.update(marker="*", markersize=9, linewidth=2.0)
        else:
            style.update(marker=variant_marker(keeps.index(float(cfg["keep_ratio"]))), markersize=4)
        if selection == "random" and method != DENSE:
            style.update(markerfacecolor="white")
        grp = grp.sort_values(x)
        ax.plot(grp[x], grp[y], **style)
        if band and {"top1_ci_low", "top1_ci_high"} <= set(grp) and grp["top1_ci_low"].notna().all():
            ax.fill_between(
                grp[x], grp["top1_ci_low"], grp["top1_ci_high"], color=colour, alpha=0.12, linewidth=0
            )
    grey = "#555555"
    entries: list[Any] = [(c, {"color": colours[c], "linewidth": 2.0}) for c in curves]
    entries += [
        (f"keep {k:g}", {"color": grey, "marker": variant_marker(i), "linestyle": ""})
        for i, k in enumerate(keeps)
    ]
    if "dense" in curves:
        entries.append(("dense (keep 1)", {"color": method_color(DENSE), "marker": "*", "linestyle": ""}))
    if len(set(frame["selection"])) > 1:
        entries += [
            ("scored selection", {"color": grey, "marker": "o", "linestyle": ""}),
            ("random selection", {"color": grey, "marker": "o", "markerfacecolor": "white", "linestyle": ""}),
        ]
    if len(pop_names) > 1:
        entries += [
            (p, {"color": grey, "linestyle": population_linestyle(i)}) for i, p in enumerate(pop_names)
        ]
    return entries


def _shade(colour: str, index: int) -> str:
    """A lighter or darker variant of ``colour`` for the ``index``-th setting of one method."""
    from matplotlib.colors import to_hex, to_rgb

    r, g, b = to_rgb(colour)
    f = (0.55, 1.35, 0.35, 1.6)[(index - 1) % 4]
    if f < 1:
        return to_hex((r * f, g * f, b * f))
    light = [min(1.0, c + (1 - c) * (f - 1)) for c in (r, g, b)]
    return to_hex((light[0], light[1], light[2]))


@with_style
def level_figure(
    df: pd.DataFrame, noise: str, model: str | None = None, selection: str | None = "scored"
) -> Figure:
    """Top-1 vs level of ``noise`` (e.g. Gaussian σ), one line per configuration, 95 % CI bands.

    The title names the model(s), the image set, the noise and the filters (selection); the
    footnote identifies the image sets.
    """
    curves = robustness.level_curves(df, noise, model, selection)
    sets = image_sets(robustness.select_records(df, model))
    fig = _figure()
    ax = fig.add_subplot()
    entries = _lines(ax, curves, "level", sets)
    ax.set_xlabel("σ (fraction of 255)" if noise == "gaussian-sigma" else f"{noise} level")
    ax.set_ylabel("Top-1 accuracy (%)")
    ax.set_title(
        f"{_who(curves, sets)}\nTop-1 vs {noise} level, {_filters_title(model, selection)}\n"
        f"bands: 95% CI over images; {seeds_note(curves['n_seeds'])}",
        fontsize=8,
    )
    factor_legend(ax, entries)
    footnote(fig, images_footnote(curves, sets))
    return fig


@with_style
def severity_figure(df: pd.DataFrame, model: str | None = None, selection: str | None = "scored") -> Figure:
    """Top-1 vs severity (0 = clean) per corruption family, plus the mean over all of them.

    Points are means over the family's corruptions (each panel's title says which and how
    many; no per-point CI: a mean of several corruptions' accuracies has no single bootstrap
    CI in the records). The ``all`` panel is left out when one family holds every corruption.
    One legend of style factors for all panels, right of them.
    """
    curves = robustness.severity_curves(df, model, selection, "test")
    sets = image_sets(robustness.select_records(df, model))
    errs = robustness.corruption_errors(df, model, selection, "test")
    per_family = {f: sorted(set(errs.loc[errs["family"] == f, "noise"])) for f in FAMILIES}
    fams = [f for f in FAMILIES if f in set(curves["family"])]
    if len(fams) > 1:
        fams.append("all")
    fig = _figure(2.6 * len(fams) + 0.5, 3.2)
    axes = fig.subplots(1, len(fams), sharey=True, squeeze=False)[0]
    entries: list[Any] = []
    for ax, fam in zip(axes, fams):
        entries = _lines(ax, curves.loc[curves["family"] == fam], "level", sets, band=False)
        names = sorted(set(errs["noise"])) if fam == "all" else per_family[fam]
        what = (
            names[0]
            if len(names) == 1
            else f"mean of {len(names)} {'test ' if fam == 'all' else ''}corruptions"
        )
        ax.set_title(f"{fam}: {what}", fontsize=8)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_xticks(range(0, 6))
    axes[0].set_ylabel("Top-1 accuracy (%)")
    fig.suptitle(
        f"{_who(curves, sets)}: Top-1 vs corruption severity, {_filters_title(model, selection)}; "
        f"{seeds_note(errs['n_seeds']) if 'n_seeds' in errs else ''}",
        fontsize=8,
    )
    fig.tight_layout()
    factor_legend(fig, entries)
    footnote(fig, images_footnote(curves, sets))
    return fig


@with_style
def heatmap_figure(
    df: pd.DataFrame,
    model: str | None = None,
    selection: str | None = "scored",
    reference: str = "dense",
    severity: int | None = None,
    split: str = "all",
) -> Figure:
    """Method x corruption heatmap of the numbers of the corruptions table with the same filters.

    Without ``severity``: CE (%) relative to ``reference`` summed over severities (100 = as
    robust as it; a log colour scale symmetric around 100). With ``severity``: the top-1 error
    (%) at that severity, exactly the ``corruptions --severity`` table. ``split`` picks the
    corruptions (``test``: the 15 of mCE; ``all`` adds the 4 validation ones, marked ``*``).
    The title names the model(s), image set, selection, severity and reference.

    Raises:
        VitbenchError: severity outside 1-5, or no corruption records.
    """
    if severity is not None and severity not in SEVERITIES:
        raise VitbenchError(f"severity {severity!r} is outside 1-5; use an integer 1..5 or none for CE")
    sets = image_sets(robustness.select_records(df, model))
    if severity is None:
        data = robustness.ce_table(df, model, selection, reference, split)
        levels = severities_note(robustness.corruption_errors(df, model, selection, split)["level"])
        value = "ce"
    else:
        data = robustness.corruption_errors(df, model, selection, split)
        data = data.loc[data["level"] == float(severity)]
        value = "err"
        if data.empty:
            raise VitbenchError(f"no corruption records at severity {severity}; check the suite's levels")
    order = {n: i for i, n in enumerate(corruption_names("all"))}
    names = sorted(set(data["noise"]), key=lambda n: order[n])
    wide = robustness.order_configs(
        data.pivot_table(index=CONFIG, columns="noise", values=value, sort=False).reset_index()
    )
    curves = [curve_label(m, str(st)) for m, st in zip(wide["method"], wide["setting"])]
    labels = [_config_label(c, k, s) for c, k, s in zip(curves, wide["keep_ratio"], wide["selection"])]
    pops = population_labels(wide, sets)
    labels = [f"{p}: {lb}" if p else lb for p, lb in zip(pops, labels)]
    values = wide[names].to_numpy(dtype=float)
    fig = _figure(max(6.0, 0.45 * len(names) + 3), max(3.0, 0.35 * len(labels) + 2.2))
    ax = fig.add_subplot()
    finite = values[~pd.isna(values)]
    if severity is None:
        from matplotlib.colors import FuncNorm

        # symmetric around 100 (= as robust as the reference) on a log scale: CE is a ratio of errors,
        # so half the reference's error is as green as twice it is red, and no impossible value
        # (CE < 0) appears on the colour bar; 99 is near-neutral, never "best"; red = more error
        positive = finite[finite > 0]
        ratio = float(np.exp(np.abs(np.log(positive / 100.0)).max())) if positive.size else 1.05
        factor = max(1.05, ratio)
        norm: Any = FuncNorm(
            (lambda v: np.log(np.clip(v, 1e-9, None) / 100.0), lambda u: 100.0 * np.exp(u)),
            vmin=100.0 / factor,
            vmax=100.0 * factor,
        )
        ticks: Any = [
            t
            for t in (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
            if 100.0 / factor <= t <= 100.0 * factor
        ]
        bar = f"CE (%) vs {reference} (> 100: more error, red)"
        what = f"CE (%) vs {reference}, summed over {levels}"
    else:
        from matplotlib.colors import Normalize

        norm = Normalize(vmin=0.0, vmax=100.0)
        ticks = None
        bar = f"top-1 error (%) at severity {severity}"
        what = f"top-1 error (%) at severity {severity}"
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
    fig.colorbar(im, ax=ax, ticks=ticks, format="%g", label=bar)
    star = "; * validation corruption (not in mCE)" if any(NOISES.get(n).extra for n in names) else ""
    ax.set_title(f"{_who(wide, sets)}\n{what}, {_filters_title(model, selection)}{star}", fontsize=8)
    ax.grid(False)
    footnote(fig, images_footnote(wide, sets))
    return fig


@with_style
def selection_figure(df: pd.DataFrame, model: str | None = None) -> Figure:
    """Top-1 vs keep ratio with scored (solid) and random (dashed) selection per method (clean).

    Colour: the method variant; populations (model, weights, image set) differ by marker fill.
    Error bars: ± the std over seeds when there are several (the records' bootstrap CI is not
    carried by :func:`vitbench.report.robustness.selection_deltas`).
    """
    d = robustness.selection_deltas(df, model)
    sets = image_sets(robustness.select_records(df, model))
    d = d.assign(_pop=population_labels(d, sets))
    pop_names = list(dict.fromkeys(d["_pop"]))
    fig = _figure()
    ax = fig.add_subplot()
    entries: list[Any] = []
    for curve, grp in d.groupby("curve", sort=True):
        color = method_color(base_method(str(curve)))
        entries.append((str(curve), {"color": color, "marker": "o"}))
        for p, sub in grp.groupby("_pop", sort=False):
            fill = population_fill(pop_names.index(str(p)))
            for sel, ls in (("scored", "-"), ("random", "--")):
                err = sub[f"std_{sel}"] if sub[f"seeds_{sel}"].max() > 1 else None
                ax.errorbar(
                    sub["keep_ratio"], sub[f"top1_{sel}"], yerr=err, marker="o", fillstyle=fill,
                    linestyle=ls, color=color,
                )  # fmt: skip
    grey = "#555555"
    entries += [
        ("scored selection", {"color": grey, "linestyle": "-"}),
        ("random selection", {"color": grey, "linestyle": "--"}),
    ]
    if len(pop_names) > 1:
        entries += [
            (p, {"color": grey, "marker": "o", "fillstyle": population_fill(i), "linestyle": ""})
            for i, p in enumerate(pop_names)
        ]
    ax.set_xlabel("keep ratio")
    ax.set_ylabel("Top-1 accuracy (%)")
    who = ", ".join(sorted(set(map(str, d["model_shown"])))) if "model_shown" in d else ""
    images = next(iter(sets.values())) if len(sets) == 1 else f"{len(pop_names)} populations"
    ax.set_title(
        f"{who}: {images}\nToken selection: scored (solid) vs random (dashed), clean images", fontsize=8
    )
    factor_legend(ax, entries)
    footnote(fig, images_footnote(d, sets))
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
    df: pd.DataFrame,
    path: str | Path,
    model: str | None = None,
    reference: str = "dense",
    severity: int | None = None,
    selection: str | None = "scored",
) -> Path:
    """Save :func:`heatmap_figure` as PNG, SVG or PDF; returns the path."""
    return _save(heatmap_figure(df, model, selection=selection, reference=reference, severity=severity), path)


def plot_selection(df: pd.DataFrame, path: str | Path, model: str | None = None) -> Path:
    """Save :func:`selection_figure` as PNG or SVG; returns the path."""
    return _save(selection_figure(df, model), path)


# the HTML page lives in vitbench.report.html; these names are kept for callers of this module
from vitbench.report.html import html_report, write_html_report  # noqa: E402

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
