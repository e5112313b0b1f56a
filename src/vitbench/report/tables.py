"""Leaderboards and plots: pure functions of a records DataFrame (see :func:`load_results`).

Only successful cells (``error`` is null) enter tables and plots; :func:`failed_cells` lists the
others. Cells are averaged over seeds; the ``dense`` method is the reference for ΔTop-1 and is
shown regardless of the ``selection`` filter (token selection does not apply to it).
Tables render as ``markdown`` (pipe), ``github``, ``latex`` (booktabs), ``html`` or ``csv``
(raw numbers, machine-readable). No function mutates its input frame.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vitbench.core.errors import VitbenchError
from vitbench.core.threads import thread_count
from vitbench.report import views
from vitbench.report.format import (
    GMACS_NOTE,
    Col,
    check_fmt,
    csv_value,
    figure_kind,
    fmt_num,
    fmt_signed,
    gmacs_digits,
    render_table,
    save_figure,
    top1_text,
)
from vitbench.report.paired import outcomes_of, paired_bootstrap_ci
from vitbench.report.plotstyle import (
    footnote,
    legend_outside,
    method_color,
    population_linestyle,
    variant_marker,
    with_style,
)
from vitbench.report.population import MEASURED, seeds_note
from vitbench.report.rows import (
    DENSE,
    adaptive_note,
    calibration_note,
    caption_text,
    ci_text,
    filters_text,
    image_sets,
    images_footnote,
    lead_columns,
    order_rows,
    population_labels,
    reference_top1,
    reuse_note,
    seed_stats,
    select_rows,
    source_name,
    successful_rows,
)
from vitbench.report.runtimes import REALIZED_NOTE, realized_columns
from vitbench.store.records import with_curves

_FAILED_COLUMNS = (
    "cell_key",
    "model",
    "method",
    "setting",
    "keep_ratio",
    "selection",
    "noise",
    "level",
    "seed",
    "error",
)
MAX_GRID_POINTS = 8
_GRID_TOL = 0.005  # grid points are rounded to 0.01 GMACs; tolerate that much outside the range


# -- rendering -------------------------------------------------------------------------------------


# -- frame preparation -----------------------------------------------------------------------------


# -- public API ------------------------------------------------------------------------------------


def failed_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ``error`` is set (a copy, key columns and the error message only)."""
    if "error" not in df.columns:
        return pd.DataFrame(columns=list(_FAILED_COLUMNS))
    failed = df.loc[df["error"].notna()]
    cols = [c for c in _FAILED_COLUMNS if c in df.columns]
    return failed[cols].reset_index(drop=True).copy()


def leaderboard(
    df: pd.DataFrame,
    fmt: str = "github",
    model: str | None = None,
    noise: str = "clean",
    level: float = 0.0,
    selection: str = "scored",
    ci: bool = True,
) -> str:
    """Paper-style table: one row per measured configuration, mean over seeds.

    Columns: ``Method | Setting | Keep | Top-1 | 95% CI | ΔTop-1 | GMACs | Params (M) |
    img/s†`` (leading ``Suite``/``Model``/``Weights``/``Dataset``/``Split``/``Images`` columns
    when the rows differ in them: rows of different populations are never averaged, see
    :mod:`vitbench.report.population`). ``Top-1`` shows ``mean ± std`` when there are several seeds
    (the caption says how many); ``95% CI`` is the records' bootstrap CI over images (mean over
    seeds); ``ΔTop-1`` is relative to the ``dense`` record of the same population (``–``
    without one). Cost-only cells show ``–`` for accuracy. The csv format carries raw numbers
    plus ``Top-1 std``, ``Seeds`` and the CI bounds.

    Args:
        df: records frame (from :func:`vitbench.load_results`).
        fmt: one of :data:`FORMATS`.
        model: restrict to one model (default: all models).
        noise: ``"clean"`` or a noise name; ``level`` picks its severity.
        level: noise severity (ignored for ``"clean"``).
        selection: ``"scored"`` or ``"random"`` token selection.
        ci: show the ``95% CI`` column (compact views leave it out).

    Raises:
        VitbenchError: unknown ``fmt``, or no successful records match.
    """
    check_fmt(fmt)
    ok = select_rows(df, model, noise, level, selection)
    stats = order_rows(seed_stats(ok))
    dense = reference_top1(stats, ok)
    delta = [t - d for t, d in zip(stats["top1"], dense)]
    top1_shown = [top1_text(m, s, n) for m, s, n in zip(stats["top1"], stats["top1_std"], stats["n"])]
    several_seeds = stats["n"].nunique() > 1
    timed = bool(stats["img_per_s"].notna().any())  # no img/s column when nothing was timed
    cols = lead_columns(stats) + [
        Col("Method", list(stats["method"]), list(stats["method"]), numeric=False),
        Col("Setting", list(stats["setting"]), list(stats["setting"]), numeric=False),
        Col("Keep", list(stats["keep_ratio"]), [fmt_num(v) for v in stats["keep_ratio"]]),
        Col("Top-1", list(stats["top1"]), top1_shown),
        Col("Top-1 std", list(stats["top1_std"]), [], display=False),
        Col("Seeds", list(stats["n"]), [str(int(n)) for n in stats["n"]], display=several_seeds),
        Col(
            "95% CI",
            list(zip(stats["top1_ci_low"], stats["top1_ci_high"])),
            [ci_text(lo, hi) for lo, hi in zip(stats["top1_ci_low"], stats["top1_ci_high"])],
            csv=False,
            display=ci and bool(stats["top1_ci_low"].notna().any()),
        ),
        Col("Top-1 CI low", list(stats["top1_ci_low"]), [], display=False),
        Col("Top-1 CI high", list(stats["top1_ci_high"]), [], display=False),
        Col("ΔTop-1", delta, [fmt_signed(v) for v in delta]),
        Col(
            "GMACs",
            list(stats["gmacs"]),
            [fmt_num(v, gmacs_digits(stats["gmacs"])) for v in stats["gmacs"]],
        ),
        Col("Params (M)", list(stats["params_m"]), [fmt_num(v) for v in stats["params_m"]]),
        Col(_IMG_S, list(stats["img_per_s"]), [fmt_num(v, 0) for v in stats["img_per_s"]], display=timed),
    ]
    realized = realized_columns(stats, df.attrs.get("source"), df.attrs.get("suite"), selection)
    cols += realized
    extra = f"ΔTop-1 vs dense on the same images; {GMACS_NOTE}"
    if ci and bool(stats["top1_ci_low"].notna().any()):
        extra += "; 95% CI: bootstrap over images"
    extra += "; " + (
        throughput_note(ok)
        if timed
        else "img/s: not measured by this suite (`throughput: {enabled: false}`); see `vitbench throughput`"
    )
    if realized:
        extra += "; " + REALIZED_NOTE
    for note in (adaptive_note(ok), reuse_note(ok), calibration_note(ok)):
        if note:
            extra += "; " + note
    return render_table(cols, fmt, caption=caption_text(stats, extra))


_IMG_S = "img/s†"


def throughput_note(ok: pd.DataFrame) -> str:
    """``"† img/s: machine-dependent, measured on <device>, <threads> threads, <dtype>"``."""
    parts = []
    for col in ("device", "threads", "throughput_dtype"):
        if col in ok:
            vals = sorted({str(v) for v in ok[col].dropna()})
            if vals:
                joined = "/".join(vals)
                parts.append(thread_count(joined) if col == "threads" else joined)
    where = f", measured on {', '.join(parts)}" if parts else ""
    return f"† img/s is machine-dependent{where}; compare it only within one run"


def _measured_budgets(points: pd.Series) -> list[float]:
    """Budgets of the matched view: measured GMACs themselves, as stored, one per printed value.

    Measured costs that print alike (``gmacs_digits`` decimals) give one budget: the cost most
    points share (the smallest of equally common ones). A method measured at a budget thus
    shows its measured top-1 there, never a value interpolated next to its own point.
    """
    digits = gmacs_digits(points)
    groups: dict[float, Counter[float]] = {}
    for v in points.dropna():
        groups.setdefault(round(float(v), digits), Counter())[float(v)] += 1
    return [min(c, key=lambda v: (-c[v], v)) for _, c in sorted(groups.items())]


def _thin(values: list[float], most: int | None) -> list[float]:
    """At most ``most`` of the sorted ``values``, evenly spaced, first and last kept (``None``: all)."""
    if most is None or len(values) <= most:
        return values
    picks = np.unique(np.round(np.linspace(0, len(values) - 1, most)).astype(int))
    return [values[i] for i in picks]


def _thinned_note(shown: int, measured: int) -> str:
    """``"8 of 14 measured budgets shown (...)"`` when the default budgets were thinned, else ``""``."""
    if shown >= measured:
        return ""
    return (
        f"{shown} of {measured} measured budgets shown, evenly spaced over them (cheapest and dearest "
        "kept; `vitbench leaderboard --view matched --all-budgets` shows every one)"
    )


def _interp(x: np.ndarray, y: np.ndarray, grid: Sequence[float], tol: float = _GRID_TOL) -> list[float]:
    """Linear interpolation of y(x) on ``grid``; NaN outside [min x, max x] ± tol (no extrapolation)."""
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], y[order]
    lo, hi = xs[0] - tol, xs[-1] + tol
    return [float(np.interp(g, xs, ys)) if lo <= g <= hi else math.nan for g in grid]


def matched_gmacs_table(
    df: pd.DataFrame,
    fmt: str = "github",
    model: str | None = None,
    grid: Sequence[float] | None = None,
    noise: str = "clean",
    level: float = 0.0,
    selection: str = "scored",
    samples: Any = None,
    max_budgets: int | None = MAX_GRID_POINTS,
) -> str:
    """Top-1 of each method linearly interpolated at common GMACs budgets.

    Each non-dense method variant's mean top-1 (over seeds) is interpolated, per population
    (model, weights, images, selection; never across them), as a function of its mean GMACs;
    budgets outside the method's measured range are ``–`` (no extrapolation). The dense
    reference of the same images is given in a caption line (csv: ``Dense Top-1`` / ``Dense
    GMACs`` columns).

    Args:
        df: records frame.
        fmt: one of :data:`FORMATS`.
        model: restrict to one model (default: all; a ``Model`` column is added if several).
        grid: GMACs budgets; default: the measured GMACs of the non-dense rows as stored, one per
            printed value (headers round them); a method measured at a budget shows its measured
            top-1 there. More than ``max_budgets`` of them are thinned to that many, evenly
            spaced over the sorted ones (first and last kept), and the caption says how many of
            how many are shown.
        noise: noise condition (``"clean"`` or a noise name at ``level``).
        level: noise severity.
        selection: token selection of the compressed methods.
        samples: per-sample outcomes by cell key (:func:`vitbench.store.results.load_samples`); with
            them, each budget marks the best method (▲; every method that prints the best value) and
            those statistically tied with it
            (≈: paired bootstrap 95 % CI of the difference of interpolated per-image
            correctness contains 0).
        max_budgets: most default budgets shown (:data:`MAX_GRID_POINTS`; ``None``: every
            measured one, ``vitbench leaderboard --view matched --all-budgets``); ignored with
            ``grid``.

    Raises:
        VitbenchError: unknown ``fmt``, no successful records, no non-dense method, or
            ``max_budgets`` below 2.
    """
    check_fmt(fmt)
    if max_budgets is not None and max_budgets < 2:
        raise VitbenchError(f"max_budgets {max_budgets} is below 2; give 2 or more, or None for every budget")
    ok = with_curves(select_rows(df, model, noise, level, selection))
    stats = seed_stats(ok, ["curve"])
    methods = stats.loc[stats["method"] != DENSE]
    methods = methods.loc[methods["gmacs"].notna() & methods["top1"].notna()]
    if methods.empty:
        cost = stats["top1"].isna().all()
        raise VitbenchError(
            f"no compressed-method records with GMACs and top-1 in {source_name(df)} for "
            f"{filters_text(model, noise, level, selection)}; "
            + ("these are cost-only cells (no accuracy)" if cost else "only the dense baseline was found")
        )
    measured = _measured_budgets(methods["gmacs"]) if grid is None else []
    budgets = sorted(float(g) for g in grid) if grid is not None else _thin(measured, max_budgets)
    gd = gmacs_digits(methods["gmacs"])
    tol = _GRID_TOL * 10.0 ** (2 - gd)  # half a unit of the shown precision
    # one curve per method variant and population (never averaged together); the suite is part
    # of neither: curves of two suites on one population are compared in one budget column
    # (the selection filter leaves one selection per method: random-tokens competes too)
    pop = ["model", "model_shown", "weights", "dataset", "split", "sample_ids_hash"]
    curve_keys = [*pop, "method", "curve"]
    first = {"n_samples": ("n_samples", "first")}
    curves = order_rows(methods.groupby(curve_keys, sort=False).agg(**first).reset_index())
    members = {tuple(map(str, k)): g for k, g in methods.groupby(curve_keys, sort=False)}
    values: list[list[float]] = []
    vectors: list[list[Any]] = []
    for key in curves[curve_keys].itertuples(index=False, name=None):
        points = members[tuple(map(str, key))]
        pts = points.groupby("gmacs", sort=True)["top1"].mean()
        values.append(_interp(pts.index.to_numpy(float), pts.to_numpy(float), budgets, tol))
        vectors.append(_interp_outcomes(ok, points, budgets, tol, samples))
    dense_top1 = reference_top1(curves.assign(noise=noise, level=level if noise != "clean" else 0.0), ok)
    dense_gmacs = reference_top1(
        curves.assign(noise=noise, level=level if noise != "clean" else 0.0), ok, "gmacs"
    )
    cols = lead_columns(curves) + [Col("Method", list(curves["curve"]), list(curves["curve"]), numeric=False)]
    groups = [tuple(r) for r in curves[pop].astype(str).itertuples(index=False, name=None)]
    marked = False
    for j, g in enumerate(budgets):
        column = [row[j] for row in values]
        shown = [fmt_num(v) for v in column]
        for grp in dict.fromkeys(groups):
            idx = [i for i, x in enumerate(groups) if x == grp and not math.isnan(column[i])]
            if len(idx) < 2:
                continue
            best = max(idx, key=lambda i: column[i])
            tops = {i for i in idx if shown[i] == shown[best]}  # the best value as printed: all ▲
            for i in tops:
                shown[i] += " ▲"
            for i in idx:
                if i in tops or vectors[i][j] is None or vectors[best][j] is None:
                    continue

                lo, hi = paired_bootstrap_ci(vectors[i][j] - vectors[best][j], seed=0)
                if lo <= 0.0 <= hi:
                    shown[i] += " ≈"
                    marked = True
        cols.append(Col(f"{g:.{gd}f} GMACs", column, shown))
    cols.append(Col("Dense Top-1", dense_top1, [], display=False))
    cols.append(Col("Dense GMACs", dense_gmacs, [], display=False))
    names = population_labels(curves, image_sets(ok))
    refs = []
    for name, t, gm in dict.fromkeys(zip(names, dense_top1, dense_gmacs)):
        if math.isnan(t):
            continue
        label = f"{name}: " if name else ""
        refs.append(f"{label}Top-1 {t:.2f} at {fmt_num(gm, gd)} GMACs")
    caption = "Dense reference (same images): " + ("; ".join(refs) if refs else "none recorded")
    caption += f"; Top-1 (%) interpolated between measured points, {seeds_note(stats['n'])}"
    if thinned := _thinned_note(len(budgets), len(measured)):
        caption += f"; {thinned}"
    caption += f"; ▲ best at the budget; {GMACS_NOTE}"
    if marked or samples:
        caption += "; ≈ tied with the best (paired bootstrap 95% CI of Δ contains 0)"
    if note := adaptive_note(ok.loc[ok["method"].isin(methods["method"])]):
        caption += f"; {note}"
    return render_table(cols, fmt, caption=caption)


def _interp_outcomes(
    ok: pd.DataFrame,
    points: pd.DataFrame,
    budgets: Sequence[float],
    tol: float,
    samples: Any,
) -> list[Any]:
    """Per budget: the per-image correctness interpolated like top-1 (``None`` without data).

    Between two measured points at GMACs ``g_a < g < g_b`` the vector is
    ``(1 − w) c_a + w c_b`` with ``w = (g − g_a) / (g_b − g_a)``; its mean is exactly the
    interpolated top-1, so a paired bootstrap of two such vectors tests the table's numbers.
    """
    if not samples:
        return [None] * len(budgets)

    by_gmacs: dict[float, Any] = {}
    for g, grp in points.groupby("gmacs", sort=True):
        keys = grp[list(MEASURED)]
        rows = ok.merge(keys, on=list(MEASURED))
        got = outcomes_of(rows, samples)
        if got is None:
            return [None] * len(budgets)
        by_gmacs[float(g)] = got.correct
    xs = sorted(by_gmacs)
    out: list[Any] = []
    for g in budgets:
        if not xs or g < xs[0] - tol or g > xs[-1] + tol:
            out.append(None)
            continue
        g = min(max(g, xs[0]), xs[-1])
        hi = next(i for i, x in enumerate(xs) if x >= g - 1e-12)
        if xs[hi] == g or hi == 0:
            out.append(by_gmacs[xs[hi]])
            continue
        a, b = xs[hi - 1], xs[hi]
        w = (g - a) / (b - a)
        out.append((1.0 - w) * by_gmacs[a] + w * by_gmacs[b])
    return out


def selection_table(
    df: pd.DataFrame,
    fmt: str = "github",
    model: str | None = None,
    noise: str = "clean",
    level: float = 0.0,
) -> str:
    """Scored vs random token selection at equal keep ratios.

    Columns: ``Method | Keep | GMACs scored | GMACs random | Top-1 scored | Top-1 random |
    Δ (scored − random)``; only (method, keep ratio) pairs with both selections and keep ratio
    < 1 are listed. Each selection shows its own measured GMACs (mean over seeds): random
    selection keeps the same token counts but does not compute the scores or the matching it
    replaces, so e.g. ToMe's, PiToMe's, MCTF's, DiffRate's and eTPS's random rows cost slightly
    less; the caption names the methods whose two printed costs differ, and apart from them
    those whose measured costs differ only below the printed digits.

    Raises:
        VitbenchError: unknown ``fmt``, no successful records, or no scored/random pairs.
    """
    check_fmt(fmt)
    ok = with_curves(select_rows(df, model, noise, level, selection=None))
    ok = ok.loc[(ok["method"] != DENSE) & ~np.isclose(ok["keep_ratio"].to_numpy(), 1.0)]
    keys = [*(c for c in MEASURED if c not in ("selection", "setting")), "curve"]
    stats = seed_stats(ok, ["curve"]).drop(columns="setting")
    scored = stats.loc[stats["selection"] == "scored"].drop(columns="selection")
    random = stats.loc[stats["selection"] == "random"].drop(columns="selection")
    both = scored.merge(random, on=keys, suffixes=("", "_random"))
    if both.empty:
        raise VitbenchError(
            f"no method has both scored and random selection records in {source_name(df)} for "
            f"{filters_text(model, noise, level, None)}; run a suite with selection: [scored, random]"
        )
    both = order_rows(both.assign(setting=""))
    delta = list(both["top1"] - both["top1_random"])
    digits = gmacs_digits(pd.concat([both["gmacs"], both["gmacs_random"]]))
    gmacs_shown = {s: [fmt_num(v, digits) for v in both[c]] for s, c in _SELECTION_GMACS}
    cols = lead_columns(both) + [
        Col("Method", list(both["curve"]), list(both["curve"]), numeric=False),
        Col("Keep", list(both["keep_ratio"]), [fmt_num(v) for v in both["keep_ratio"]]),
        *(Col(f"GMACs {s}", list(both[c]), gmacs_shown[s]) for s, c in _SELECTION_GMACS),
        Col(
            "Top-1 scored",
            list(both["top1"]),
            [top1_text(m, s, n) for m, s, n in zip(both["top1"], both["top1_std"], both["n"])],
        ),
        Col(
            "Top-1 random",
            list(both["top1_random"]),
            [
                top1_text(m, s, n)
                for m, s, n in zip(both["top1_random"], both["top1_std_random"], both["n_random"])
            ],
        ),
        Col("Δ (scored − random)", delta, [fmt_signed(v) for v in delta]),
    ]
    note = seeds_note([*both["n"], *both["n_random"]])
    scored_g, random_g = both["gmacs"].to_numpy(float), both["gmacs_random"].to_numpy(float)
    same = np.isclose(scored_g, random_g, rtol=1e-9, atol=0.0, equal_nan=True)
    cost = "GMACs as measured with each selection" + _cost_differences(
        list(both["curve"].astype(str)), ~same, [a != b for a, b in zip(*gmacs_shown.values())]
    )
    if adaptive := adaptive_note(ok):
        cost += f"; {adaptive}"
    return render_table(cols, fmt, caption=f"Top-1 (%) on the same images, {note}; {cost}; {GMACS_NOTE}.")


def _cost_differences(names: Sequence[str], differ: Sequence[bool], printed: Sequence[bool]) -> str:
    """The selection caption's clause on the rows whose scored and random GMACs differ (``""``: none).

    ``names``: the Method cell of each row; ``differ``: its two measured costs differ;
    ``printed``: its two printed costs differ. Methods whose costs differ only below the printed
    digits are named apart, so that no caption says "differ" of two values that print alike.
    """
    shown = sorted({n for n, p in zip(names, printed) if p})
    hidden = sorted({n for n, d in zip(names, differ) if d} - set(shown))
    parts = [f"for {', '.join(shown)}"] if shown else []
    parts += [f"below the printed digits for {', '.join(hidden)}"] if hidden else []
    if not parts:
        return ""
    return f"; they differ {', and '.join(parts)} (random selection computes no scores or matching)"


#: (selection, column of :func:`selection_table`'s merged frame holding its mean GMACs).
_SELECTION_GMACS = (("scored", "gmacs"), ("random", "gmacs_random"))


def noise_table(
    df: pd.DataFrame,
    fmt: str = "github",
    model: str | None = None,
    selection: str = "scored",
) -> str:
    """Top-1 under each recorded noise condition, one column per ``<noise>@<level>``.

    Columns: ``Method | Setting | Keep | Clean | <noise>@<level> ... | Mean noisy``. ``Mean
    noisy`` averages the noisy columns and is blank when any of them is missing for the row.

    Raises:
        VitbenchError: unknown ``fmt``, no successful records, or no noisy records.
    """
    check_fmt(fmt)
    ok = select_rows(df, model, noise=None, selection=selection)
    noisy = ok.loc[ok["noise"] != "clean"]
    if noisy.empty:
        raise VitbenchError(
            f"no noisy records in {source_name(df)} for {filters_text(model, None, None, selection)}; "
            "run a suite with noises to get a robustness table"
        )
    keys = [c for c in MEASURED if c not in ("noise", "level")]
    conditions = sorted({(str(n), float(lv)) for n, lv in zip(noisy["noise"], noisy["level"])})
    ok = ok.assign(level=ok["level"].where(ok["noise"] != "clean", 0.0))
    means = ok.groupby([*keys, "noise", "level"], dropna=False)["top1"].mean()
    counts = ok.groupby([*keys, "noise", "level"], dropna=False)["top1"].size()
    first = {"n_samples": ("n_samples", "first")}
    rows = order_rows(ok.groupby(keys, dropna=False, sort=False).agg(**first).reset_index())
    cols = lead_columns(rows) + [
        Col("Method", list(rows["method"]), list(rows["method"]), numeric=False),
        Col("Setting", list(rows["setting"]), list(rows["setting"]), numeric=False),
        Col("Keep", list(rows["keep_ratio"]), [fmt_num(v) for v in rows["keep_ratio"]]),
    ]
    row_keys = list(rows[keys].itertuples(index=False, name=None))
    lookup = {k: float(v) for k, v in means.items()}
    clean = [lookup.get((*k, "clean", 0.0), math.nan) for k in row_keys]
    cols.append(Col("Clean", clean, [fmt_num(v) for v in clean]))
    table = np.full((len(row_keys), len(conditions)), math.nan)
    for j, (name, lv) in enumerate(conditions):
        column = [lookup.get((*k, name, lv), math.nan) for k in row_keys]
        table[:, j] = column
        cols.append(Col(f"{name}@{lv:g}", column, [fmt_num(v) for v in column]))
    mean_noisy = [float(r.mean()) if not np.isnan(r).any() else math.nan for r in table]
    cols.append(Col("Mean noisy", mean_noisy, [fmt_num(v) for v in mean_noisy]))
    note = seeds_note(counts.tolist())
    return render_table(cols, fmt, caption=f"Top-1 (%) per noise condition on the same images, {note}.")


def plot_pareto(
    df: pd.DataFrame,
    path: str | Path,
    model: str | None = None,
    noise: str = "clean",
    level: float = 0.0,
    selection: str = "scored",
) -> Path:
    """Plot top-1 accuracy vs GMACs, one line per method variant, dense as a star.

    Error bars are each point's 95 % bootstrap CI over images (mean over seeds); a method keeps
    its colour in every figure (:func:`vitbench.report.plotstyle.method_color`), its variants differ by
    marker; the legend sits outside the axes. One line per population (model, images) too.

    Args:
        df: records frame.
        path: output file; the suffix (``.png``, ``.svg`` or ``.pdf``) picks the format.
        model: restrict to one model (default: all; labels are prefixed by the model).
        noise: noise condition (``"clean"`` or a noise name at ``level``).
        level: noise severity.
        selection: token selection of the compressed methods.

    Returns:
        The written path.

    Raises:
        VitbenchError: unsupported suffix, no matching records, or the file cannot be written.
    """
    figure_kind(Path(path))
    return save_figure(pareto_figure(df, model, noise, level, selection), path)


@with_style
def pareto_figure(
    df: pd.DataFrame,
    model: str | None = None,
    noise: str = "clean",
    level: float = 0.0,
    selection: str = "scored",
) -> Any:
    """The figure of :func:`plot_pareto` (a matplotlib ``Figure``, no pyplot state)."""
    ok = with_curves(select_rows(df, model, noise, level, selection))
    stats = seed_stats(ok, ["curve"])
    stats = stats.loc[stats["gmacs"].notna() & stats["top1"].notna()]
    if stats.empty:
        raise VitbenchError(
            f"no records with GMACs and top-1 to plot in {source_name(df)} (cost-only cells have no accuracy)"
        )
    pop = ["suite", "model", "model_shown", "weights", "dataset", "split", "sample_ids_hash"]
    sets = image_sets(ok)
    stats = stats.assign(_pop=population_labels(stats, sets))
    pops = list(dict.fromkeys(order_rows(stats)["_pop"]))

    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure()
    ax = fig.add_subplot()
    variants: dict[str, list[str]] = {}
    for key, grp in order_rows(stats).groupby([*pop, "curve"], sort=False):
        cur, method = str(key[-1]), str(grp["method"].iloc[0])
        ls = population_linestyle(pops.index(str(grp["_pop"].iloc[0])))
        grp = grp.sort_values("gmacs")
        yerr = np.vstack([grp["top1"] - grp["top1_ci_low"], grp["top1_ci_high"] - grp["top1"]])
        err = yerr if bool(np.isfinite(yerr).all()) else None
        color = method_color(method)
        if cur == DENSE:
            ax.errorbar(
                grp["gmacs"], grp["top1"], yerr=err, fmt="*", markersize=13, color=color, zorder=3, label=cur,
            )  # fmt: skip
            continue
        seen = variants.setdefault(method, [])
        if cur not in seen:
            seen.append(cur)
        marker = variant_marker(seen.index(cur))
        ax.errorbar(grp["gmacs"], grp["top1"], yerr=err, marker=marker, color=color, linestyle=ls, label=cur)
    ax.set_xlabel("Compute (GMACs per image)")
    ax.set_ylabel("Top-1 accuracy (%)")
    condition = "clean images" if noise == "clean" else f"{noise} at level {level:g}"
    models = ", ".join(sorted(set(stats["model_shown"])))
    images = next(iter(sets.values())) if len(sets) == 1 else f"{len(pops)} populations"
    note = adaptive_note(ok.loc[ok["method"].isin(stats["method"])])
    ax.set_title(
        f"{models}: {images}, {condition}, {selection} token selection\n"
        f"bars: 95% CI over images; {seeds_note(stats['n'])}"
        + ("\n" + "\n".join(textwrap.wrap(note, 90)) if note else ""),
        fontsize=8,
    )
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one entry per curve, whatever population it is drawn for
    if len(pops) > 1:
        from matplotlib.lines import Line2D

        for i, name in enumerate(pops):
            style: Any = population_linestyle(i)
            unique[name] = Line2D([], [], color="#555555", linestyle=style)
    legend_outside(ax, list(unique.values()), list(unique.keys()))
    footnote(fig, images_footnote(stats, sets))
    return fig


@dataclasses.dataclass(frozen=True)
class Section:
    """One table of the ``all`` view.

    Attributes:
        view: the ``vitbench leaderboard --view`` that renders this table alone (``failed``: none).
        title: its heading.
        body: the rendered table, or ``None`` when its filter matched nothing.
        reason: why there is no table (the one-line error of the view), else ``None``.
    """

    view: str
    title: str
    body: str | None
    reason: str | None = None


def all_sections(df: pd.DataFrame, fmt: str = "github", samples: Any = None) -> list[Section]:
    """The tables of the ``all`` view, each rendered alone in ``fmt`` (see :func:`render_all`).

    The sections are the registered views with a ``title`` (:func:`vitbench.report.views.all_views`)
    whose ``in_all`` accepts the successful rows, in registry order, then the failed cells.

    Raises:
        VitbenchError: unknown ``fmt``.
    """
    check_fmt(fmt)
    ok = successful_rows(df)
    opts = views.ViewOptions(fmt=fmt, samples=lambda: samples)
    parts = []
    for view in views.all_views():
        if view.in_all is not None and not view.in_all(ok):
            continue
        try:
            parts.append(Section(view.name, view.title, view.render(df, opts)))
        except VitbenchError as exc:
            parts.append(Section(view.name, view.title, None, str(exc)))
    failed = failed_cells(df)
    if not failed.empty:
        cols = [
            Col(str(c), list(failed[c]), ["" if csv_value(v) is None else str(v) for v in failed[c]], False)
            for c in failed.columns
        ]
        parts.append(Section("failed", f"Failed cells ({len(failed)})", render_table(cols, fmt)))
    return parts


def render_all(df: pd.DataFrame, fmt: str = "github", samples: Any = None) -> str:
    """All views as one document with short markdown headings.

    Sections (:func:`all_sections`): the registered views of the ``all`` view -- leaderboard
    (clean, scored), matched-GMACs view, scored-vs-random selection (if random rows exist),
    robustness under noise (if noisy rows exist) -- and failed cells (if any).
    A section whose filter matches nothing says so instead of failing the whole report. A
    document of several tables is no csv file: csv callers take :func:`all_sections` one by one.

    Raises:
        VitbenchError: unknown ``fmt`` or no successful records at all.
    """
    parts = all_sections(df, fmt, samples)
    return (
        "\n\n".join(f"## {p.title}\n\n{p.body if p.body is not None else f'_{p.reason}_'}" for p in parts)
        + "\n"
    )


#: (method that squeezes, the same pruning without the squeeze). ``random-tokens`` is EViT's
#: schedule without fusion and draws exactly eTPS's keep sets under random selection.
SQUEEZE_PAIRS: tuple[tuple[str, str], ...] = (
    ("etps", "evit"),
    ("etps", "random-tokens"),
    ("dtps", "dynamicvit"),
)


def _variant_label(method: str, setting: str) -> str:
    """``method`` plus its non-knob settings, e.g. ``evit (fuse_token=False)``."""
    extra = [p for p in str(setting).split(", ") if p and p != "-" and not p.startswith("keep_rate=")]
    return f"{method} ({', '.join(extra)})" if extra else method


def squeeze_table(
    df: pd.DataFrame,
    fmt: str = "github",
    model: str | None = None,
    noise: str = "clean",
    level: float = 0.0,
    pairs: Sequence[tuple[str, str]] = SQUEEZE_PAIRS,
) -> str:
    """Pruning + squeezing (TPS) vs the same pruning without it, at equal keep ratio and selection.

    The TPS robustness comparison: one row per (pair, keep ratio, selection) where both methods
    have successful records. Columns: ``Keep | Selection | Squeeze | Top-1 (squeeze) |
    Pruning only | Top-1 (prune) | Δ (squeeze − prune) | GMACs (squeeze) | GMACs (prune)``
    (``Model``/``Dataset`` first when several). Methods with several settings (e.g. EViT with
    and without its fused token) get one row per setting.

    Raises:
        VitbenchError: unknown ``fmt``, no successful records, or no pair with records.
    """
    check_fmt(fmt)
    ok = select_rows(df, model, noise, level, selection=None)
    keys = [c for c in MEASURED if c not in ("suite", "method", "setting")]
    stats = seed_stats(ok)
    merged = []
    for squeezer, base in pairs:
        a = stats.loc[stats["method"] == squeezer]
        b = stats.loc[stats["method"] == base]
        merged.append(a.merge(b, on=keys, suffixes=("", "_base")))
    both = pd.concat(merged, ignore_index=True) if merged else pd.DataFrame()
    if both.empty:
        names = ", ".join(f"{s} vs {b}" for s, b in pairs)
        raise VitbenchError(
            f"no squeeze/pruning pair ({names}) has records at the same keep ratio and selection in "
            f"{source_name(df)} for {filters_text(model, noise, level, None)}; run a suite with both methods"
        )
    both = both.sort_values(
        ["model", "dataset", "keep_ratio", "selection", "method", "method_base"],
        ascending=[True, True, False, False, True, True],
        kind="mergesort",
    )
    delta = list(both["top1"] - both["top1_base"])
    gd = gmacs_digits(pd.concat([both["gmacs"], both["gmacs_base"]]))
    squeeze_names = [_variant_label(m, s) for m, s in zip(both["method"], both["setting"])]
    base_names = [_variant_label(m, s) for m, s in zip(both["method_base"], both["setting_base"])]
    cols = lead_columns(both) + [
        Col("Keep", list(both["keep_ratio"]), [fmt_num(v) for v in both["keep_ratio"]]),
        Col("Selection", list(both["selection"]), list(both["selection"]), numeric=False),
        Col("Squeeze", squeeze_names, squeeze_names, numeric=False),
        Col(
            "Top-1 (squeeze)",
            list(both["top1"]),
            [top1_text(m, s, n) for m, s, n in zip(both["top1"], both["top1_std"], both["n"])],
        ),
        Col("Pruning only", base_names, base_names, numeric=False),
        Col(
            "Top-1 (prune)",
            list(both["top1_base"]),
            [top1_text(m, s, n) for m, s, n in zip(both["top1_base"], both["top1_std_base"], both["n_base"])],
        ),
        Col("Δ (squeeze − prune)", delta, [fmt_signed(v) for v in delta]),
        Col("GMACs (squeeze)", list(both["gmacs"]), [fmt_num(v, gd) for v in both["gmacs"]]),
        Col("GMACs (prune)", list(both["gmacs_base"]), [fmt_num(v, gd) for v in both["gmacs_base"]]),
    ]
    return render_table(
        cols, fmt, caption=f"Top-1 (%) on the same images, {seeds_note(both['n'])}; {GMACS_NOTE}."
    )
