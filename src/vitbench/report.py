"""Leaderboards and plots: pure functions of a records DataFrame (see :func:`load_results`).

Only successful cells (``error`` is null) enter tables and plots; :func:`failed_cells` lists the
others. Cells are averaged over seeds; the ``dense`` method is the reference for ΔTop-1 and is
shown regardless of the ``selection`` filter (token selection does not apply to it).
Tables render as ``markdown`` (pipe), ``github``, ``latex`` (booktabs), ``html`` or ``csv``
(raw numbers, machine-readable). No function mutates its input frame.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from vitbench.errors import VitbenchError
from vitbench.plotstyle import legend_outside, method_color, styled, variant_marker, with_style
from vitbench.population import MEASURED, mask_cost_only, normalise, population_keys, seeds_note
from vitbench.records import fold_calibration, with_curves

FORMATS = ("markdown", "github", "latex", "csv", "html")
_TABLEFMT = {"markdown": "pipe", "github": "github", "latex": "latex_booktabs", "html": "html"}
_LATEX_SUBS = {"±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$"}
_REQUIRED = (
    "model",
    "method",
    "setting",
    "keep_ratio",
    "selection",
    "noise",
    "level",
    "seed",
    "top1",
    "gmacs",
    "params_m",
    "img_per_s",
    "error",
    "dataset",
)
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
DENSE = "dense"
MAX_GRID_POINTS = 8
_GRID_TOL = 0.005  # grid points are rounded to 0.01 GMACs; tolerate that much outside the range


# -- rendering -------------------------------------------------------------------------------------


@dataclass
class _Col:
    """One output column: raw values (csv) and their formatted strings (other formats)."""

    header: str
    raw: list[Any]
    shown: list[str]
    numeric: bool = True
    csv: bool = True
    display: bool = True


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise VitbenchError(f"unknown table format '{fmt}'; choose one of: {', '.join(FORMATS)}")


NA = "–"  # shown for a value that was not measured (e.g. top-1 of a cost-only cell)


def _num(x: Any, digits: int = 2) -> str:
    """Format a number with ``digits`` decimals; ``–`` for missing values."""
    if x is None or pd.isna(x):
        return NA
    return f"{float(x):.{digits}f}"


def gmacs_digits(values: Any) -> int:
    """Decimals that show GMACs with at least 3 significant digits (2 for DeiT-sized models)."""
    vals = [abs(float(v)) for v in values if v is not None and not math.isnan(float(v)) and float(v) != 0]
    if not vals:
        return 2
    return max(2, 2 - math.floor(math.log10(max(vals))))


def _signed(x: Any, digits: int = 2) -> str:
    if x is None or pd.isna(x):
        return NA
    return f"{float(x):+.{digits}f}"


def _raw(x: Any) -> Any:
    """A csv-friendly scalar: numpy scalars -> Python, missing -> None."""
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return None
    return x.item() if hasattr(x, "item") else x


def _top1_text(mean: Any, std: Any, n: Any) -> str:
    if mean is None or pd.isna(mean):
        return NA
    if int(n) > 1 and not pd.isna(std):
        return f"{float(mean):.2f} ± {float(std):.2f}"
    return _num(mean)


def _render(cols: Sequence[_Col], fmt: str, caption: str | None = None) -> str:
    """Render columns in ``fmt``; ``caption`` (one line) is placed above non-csv tables."""
    _check_fmt(fmt)
    if fmt == "csv":
        frame = pd.DataFrame({c.header: [_raw(v) for v in c.raw] for c in cols if c.csv})
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


# -- frame preparation -----------------------------------------------------------------------------


def _source(df: pd.DataFrame) -> str:
    return str(df.attrs.get("source", "the results frame"))


def _successful(
    df: pd.DataFrame,
    required: tuple[str, ...] | list[str] = _REQUIRED,
    numeric: tuple[str, ...] = ("keep_ratio", "level", "top1", "gmacs", "params_m", "img_per_s"),
) -> pd.DataFrame:
    """Copy of the successful rows with normalised columns; raises if there are none.

    Every :data:`vitbench.population.MEASURED` column is present (defaults for older frames),
    ``numeric`` columns become float64 (NaN when absent), clean rows have level 0, rows pruned
    on noisy calibration images are kept apart (:func:`vitbench.records.fold_calibration`) and
    cost-only rows have no accuracy (:func:`vitbench.population.mask_cost_only`). Shared with
    :mod:`vitbench.robustness`.
    """
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise VitbenchError(
            f"results frame lacks column(s) {', '.join(missing)}; load it with vitbench.load_results"
        )
    ok = fold_calibration(df.loc[df["error"].isna()].copy())
    if ok.empty:
        raise VitbenchError(f"no successful records in {_source(df)}; run `vitbench run` first")
    ok = normalise(ok)
    for col in numeric:
        ok[col] = pd.to_numeric(ok[col], errors="coerce").astype("float64") if col in ok else math.nan
    for col in ("top1_ci_low", "top1_ci_high"):
        ok[col] = pd.to_numeric(ok[col], errors="coerce").astype("float64") if col in ok else math.nan
    return mask_cost_only(ok)


def _where(model: str | None, noise: str | None, level: float | None, selection: str | None) -> str:
    parts = [f"model={model}"] if model is not None else []
    if noise is not None:
        parts.append("noise=clean" if noise == "clean" else f"noise={noise}@{level:g}")
    if selection is not None:
        parts.append(f"selection={selection}")
    return ", ".join(parts)


def _selections(method: str) -> tuple[str, ...]:
    """Selection modes a registered method supports (both when it is not registered here)."""
    from vitbench.methods import METHODS

    return tuple(METHODS.get(method).selections) if method in METHODS else ("scored", "random")


def _select(
    df: pd.DataFrame,
    model: str | None,
    noise: str | None = "clean",
    level: float = 0.0,
    selection: str | None = "scored",
) -> pd.DataFrame:
    """Successful rows filtered by model, noise condition and selection (dense always kept)."""
    ok = _successful(df)
    if model is not None:
        if model not in set(ok["model"]):
            raise VitbenchError(
                f"no successful records for model '{model}' in {_source(df)}; "
                f"available: {', '.join(sorted(set(ok['model'])))}"
            )
        ok = ok.loc[ok["model"] == model]
    if noise is not None:
        if noise == "clean":
            ok = ok.loc[ok["noise"] == "clean"]
        else:
            ok = ok.loc[(ok["noise"] == noise) & np.isclose(ok["level"].to_numpy(), level)]
    if selection is not None:
        # methods that cannot run in the requested mode (dense; random-tokens is random by
        # construction) are shown in the mode they have, so baselines stay in every table
        fixed = {m for m in set(ok["method"]) if selection not in _selections(m)}
        ok = ok.loc[(ok["selection"] == selection) | (ok["method"] == DENSE) | ok["method"].isin(fixed)]
    if ok.empty:
        raise VitbenchError(
            f"no successful records in {_source(df)} match {_where(model, noise, level, selection)}; "
            "check the filters or run `vitbench run` first"
        )
    return ok.copy()


def _stats(frame: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean (and std, count) over seeds of the numeric columns per measured configuration.

    ``keys`` default to :data:`vitbench.population.MEASURED` (every column that defines what
    a row measured), so only seeds are ever averaged; extra keys may be given.
    """
    keys = list(dict.fromkeys([*MEASURED, *(keys or [])]))
    grouped = frame.groupby(keys, dropna=False, sort=False)
    return grouped.agg(
        top1=("top1", "mean"),
        top1_std=("top1", "std"),
        n=("top1", "size"),
        top1_ci_low=("top1_ci_low", "mean"),
        top1_ci_high=("top1_ci_high", "mean"),
        n_samples=("n_samples", "first"),
        gmacs=("gmacs", "mean"),
        params_m=("params_m", "mean"),
        img_per_s=("img_per_s", "mean"),
    ).reset_index()


_ORDER = ("suite", "model", "weights", "dataset", "split", "sample_ids_hash", "noise", "level")


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by population, dense first, method, keep ratio descending, setting, selection."""
    keyed = frame.assign(_not_dense=frame["method"] != DENSE)
    cols = (*_ORDER, "_not_dense", "method", "keep_ratio", "setting", "selection")
    by = [c for c in cols if c in keyed]
    ascending = [c not in ("keep_ratio", "selection") for c in by]
    return keyed.sort_values(by, ascending=ascending, kind="mergesort").drop(columns="_not_dense")


def _images(n: Any, digest: Any) -> str:
    """``"1000 (3fa2c1d0)"``: sample count and the first 8 chars of the sample-ids hash."""
    count = "" if n is None or pd.isna(n) else str(int(n))
    if not digest:
        return count
    return f"{count} ({str(digest)[:8]})" if count else str(digest)[:8]


def _lead_cols(frame: pd.DataFrame) -> list[_Col]:
    """Population columns (suite, model, weights, dataset, split, images), those that vary only."""
    cols = []
    for key, header in (
        ("suite", "Suite"),
        ("model", "Model"),
        ("weights", "Weights"),
        ("dataset", "Dataset"),
        ("split", "Split"),
        ("data_split", "Split"),
    ):
        if key in frame and frame[key].nunique() > 1:
            values = list(frame[key])
            cols.append(_Col(header, values, [str(v) for v in values], numeric=False))
    if "sample_ids_hash" in frame and frame["sample_ids_hash"].nunique() > 1:
        counts = list(frame["n_samples"]) if "n_samples" in frame else [None] * len(frame)
        shown = [_images(n, h) for n, h in zip(counts, frame["sample_ids_hash"])]
        cols.append(_Col("Images", list(frame["sample_ids_hash"]), shown, numeric=False))
    return cols


def _reference(stats: pd.DataFrame, ok: pd.DataFrame, column: str = "top1") -> list[float]:
    """Per row of ``stats``: mean ``column`` of the dense rows of ``ok`` on the same population."""
    dense = ok.loc[ok["method"] == DENSE]
    means: dict[tuple, list[float]] = {}
    for key, value in zip(population_keys(dense), dense[column]):
        means.setdefault(key, []).append(float(value))
    ref = {k: float(np.mean(v)) for k, v in means.items()}
    return [ref.get(k, math.nan) for k in population_keys(stats)]


def _ci_text(lo: Any, hi: Any) -> str:
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return NA
    return f"[{float(lo):.1f}, {float(hi):.1f}]"


def _caption(stats: pd.DataFrame, extra: str = "") -> str:
    """One-line caption: what Top-1 averages (seeds) and any extra note."""
    note = f"Top-1 (%): {seeds_note(stats['n'])}" if "n" in stats and len(stats) else ""
    return "; ".join(p for p in (note, extra) if p) + ("." if note or extra else "")


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

    Columns: ``Method | Setting | Keep | Top-1 | 95% CI | ΔTop-1 | GFLOPs (MACs) | Params (M) |
    img/s†`` (leading ``Suite``/``Model``/``Weights``/``Dataset``/``Split``/``Images`` columns
    when the rows differ in them: rows of different populations are never averaged, see
    :mod:`vitbench.population`). ``Top-1`` shows ``mean ± std`` when there are several seeds
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
    _check_fmt(fmt)
    ok = _select(df, model, noise, level, selection)
    stats = _order(_stats(ok))
    dense = _reference(stats, ok)
    delta = [t - d for t, d in zip(stats["top1"], dense)]
    top1_text = [_top1_text(m, s, n) for m, s, n in zip(stats["top1"], stats["top1_std"], stats["n"])]
    several_seeds = stats["n"].nunique() > 1
    cols = _lead_cols(stats) + [
        _Col("Method", list(stats["method"]), list(stats["method"]), numeric=False),
        _Col("Setting", list(stats["setting"]), list(stats["setting"]), numeric=False),
        _Col("Keep", list(stats["keep_ratio"]), [_num(v) for v in stats["keep_ratio"]]),
        _Col("Top-1", list(stats["top1"]), top1_text),
        _Col("Top-1 std", list(stats["top1_std"]), [], display=False),
        _Col("Seeds", list(stats["n"]), [str(int(n)) for n in stats["n"]], display=several_seeds),
        _Col(
            "95% CI",
            list(zip(stats["top1_ci_low"], stats["top1_ci_high"])),
            [_ci_text(lo, hi) for lo, hi in zip(stats["top1_ci_low"], stats["top1_ci_high"])],
            csv=False,
            display=ci and bool(stats["top1_ci_low"].notna().any()),
        ),
        _Col("Top-1 CI low", list(stats["top1_ci_low"]), [], display=False),
        _Col("Top-1 CI high", list(stats["top1_ci_high"]), [], display=False),
        _Col("ΔTop-1", delta, [_signed(v) for v in delta]),
        _Col(
            "GFLOPs (MACs)",
            list(stats["gmacs"]),
            [_num(v, gmacs_digits(stats["gmacs"])) for v in stats["gmacs"]],
        ),
        _Col("Params (M)", list(stats["params_m"]), [_num(v) for v in stats["params_m"]]),
        _Col(_IMG_S, list(stats["img_per_s"]), [_num(v, 0) for v in stats["img_per_s"]]),
    ]
    extra = "ΔTop-1 vs dense on the same images"
    if ci and bool(stats["top1_ci_low"].notna().any()):
        extra += "; 95% CI: bootstrap over images"
    extra += "; " + throughput_note(ok)
    return _render(cols, fmt, caption=_caption(stats, extra))


_IMG_S = "img/s†"


def throughput_note(ok: pd.DataFrame) -> str:
    """``"† img/s: machine-dependent, measured on <device>, <threads> threads, <dtype>"``."""
    parts = []
    for col, fmt_ in (("device", "{}"), ("threads", "{} threads"), ("throughput_dtype", "{}")):
        if col in ok:
            vals = sorted({str(v) for v in ok[col].dropna()})
            if vals:
                parts.append(fmt_.format("/".join(vals)))
    where = f", measured on {', '.join(parts)}" if parts else ""
    return f"† img/s is machine-dependent{where}; compare it only within one run"


def _default_grid(points: pd.Series) -> list[float]:
    values = sorted({round(float(v), gmacs_digits(points)) for v in points.dropna()})
    if len(values) > MAX_GRID_POINTS:
        picks = np.unique(np.round(np.linspace(0, len(values) - 1, MAX_GRID_POINTS)).astype(int))
        values = [values[i] for i in picks]
    return values


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
        grid: GMACs budgets; default: the sorted unique GMACs (2 decimals) of the non-dense
            rows, at most 8 evenly picked.
        noise: noise condition (``"clean"`` or a noise name at ``level``).
        level: noise severity.
        selection: token selection of the compressed methods.
        samples: per-sample outcomes by cell key (:func:`vitbench.store.load_samples`); with
            them, each budget marks the best method (▲) and those statistically tied with it
            (≈: paired bootstrap 95 % CI of the difference of interpolated per-image
            correctness contains 0).

    Raises:
        VitbenchError: unknown ``fmt``, no successful records, or no non-dense method.
    """
    _check_fmt(fmt)
    ok = with_curves(_select(df, model, noise, level, selection))
    stats = _stats(ok, ["curve"])
    methods = stats.loc[stats["method"] != DENSE]
    methods = methods.loc[methods["gmacs"].notna() & methods["top1"].notna()]
    if methods.empty:
        cost = stats["top1"].isna().all()
        raise VitbenchError(
            f"no compressed-method records with GMACs and top-1 in {_source(df)} for "
            f"{_where(model, noise, level, selection)}; "
            + ("these are cost-only cells (no accuracy)" if cost else "only the dense baseline was found")
        )
    budgets = sorted(float(g) for g in grid) if grid is not None else _default_grid(methods["gmacs"])
    gd = gmacs_digits(methods["gmacs"])
    tol = _GRID_TOL * 10.0 ** (2 - gd)  # half a unit of the shown precision
    # one curve per method variant and population (never averaged together); the suite is part
    # of neither: curves of two suites on one population are compared in one budget column
    # (the selection filter leaves one selection per method: random-tokens competes too)
    pop = ["model", "weights", "dataset", "split", "sample_ids_hash"]
    curve_keys = [*pop, "method", "curve"]
    first = {"n_samples": ("n_samples", "first")}
    curves = _order(methods.groupby(curve_keys, sort=False).agg(**first).reset_index())
    members = {tuple(map(str, k)): g for k, g in methods.groupby(curve_keys, sort=False)}
    values: list[list[float]] = []
    vectors: list[list[Any]] = []
    for key in curves[curve_keys].itertuples(index=False, name=None):
        points = members[tuple(map(str, key))]
        pts = points.groupby("gmacs", sort=True)["top1"].mean()
        values.append(_interp(pts.index.to_numpy(float), pts.to_numpy(float), budgets, tol))
        vectors.append(_interp_outcomes(ok, points, budgets, tol, samples))
    dense_top1 = _reference(curves.assign(noise=noise, level=level if noise != "clean" else 0.0), ok)
    dense_gmacs = _reference(
        curves.assign(noise=noise, level=level if noise != "clean" else 0.0), ok, "gmacs"
    )
    cols = _lead_cols(curves) + [_Col("Method", list(curves["curve"]), list(curves["curve"]), numeric=False)]
    groups = [tuple(r) for r in curves[pop].astype(str).itertuples(index=False, name=None)]
    marked = False
    for j, g in enumerate(budgets):
        column = [row[j] for row in values]
        shown = [_num(v) for v in column]
        for grp in dict.fromkeys(groups):
            idx = [i for i, x in enumerate(groups) if x == grp and not math.isnan(column[i])]
            if len(idx) < 2:
                continue
            best = max(idx, key=lambda i: column[i])
            shown[best] += " ▲"
            for i in idx:
                if i == best or vectors[i][j] is None or vectors[best][j] is None:
                    continue
                from vitbench.compare import paired_bootstrap_ci

                lo, hi = paired_bootstrap_ci(vectors[i][j] - vectors[best][j], seed=0)
                if lo <= 0.0 <= hi:
                    shown[i] += " ≈"
                    marked = True
        cols.append(_Col(f"{g:.{gd}f} G", column, shown))
    cols.append(_Col("Dense Top-1", dense_top1, [], display=False))
    cols.append(_Col("Dense GMACs", dense_gmacs, [], display=False))
    several = len(set(groups)) > 1
    refs = []
    for grp, t, gm in dict.fromkeys(zip(groups, dense_top1, dense_gmacs)):
        if math.isnan(t):
            continue
        label = f"{grp[0]} {grp[2]}/{grp[3]} images {grp[4][:8]}: " if several else ""
        refs.append(f"{label}Top-1 {t:.2f} at {_num(gm, gd)} GMACs")
    caption = "Dense reference (same images): " + ("; ".join(refs) if refs else "none recorded")
    caption += f"; Top-1 (%) interpolated between measured points, {seeds_note(stats['n'])}"
    caption += "; ▲ best at the budget"
    if marked or samples:
        caption += "; ≈ tied with the best (paired bootstrap 95% CI of Δ contains 0)"
    return _render(cols, fmt, caption=caption)


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
    from vitbench.compare import outcomes_of

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

    Columns: ``Method | Keep | GFLOPs | Top-1 scored | Top-1 random | Δ (scored − random)``;
    only (method, keep ratio) pairs with both selections and keep ratio < 1 are listed.

    Raises:
        VitbenchError: unknown ``fmt``, no successful records, or no scored/random pairs.
    """
    _check_fmt(fmt)
    ok = with_curves(_select(df, model, noise, level, selection=None))
    ok = ok.loc[(ok["method"] != DENSE) & ~np.isclose(ok["keep_ratio"].to_numpy(), 1.0)]
    keys = [*(c for c in MEASURED if c not in ("selection", "setting")), "curve"]
    stats = _stats(ok, ["curve"]).drop(columns="setting")
    scored = stats.loc[stats["selection"] == "scored"].drop(columns="selection")
    random = stats.loc[stats["selection"] == "random"].drop(columns="selection")
    both = scored.merge(random, on=keys, suffixes=("", "_random"))
    if both.empty:
        raise VitbenchError(
            f"no method has both scored and random selection records in {_source(df)} for "
            f"{_where(model, noise, level, None)}; run a suite with selection: [scored, random]"
        )
    both = _order(both.assign(setting=""))
    delta = list(both["top1"] - both["top1_random"])
    cols = _lead_cols(both) + [
        _Col("Method", list(both["curve"]), list(both["curve"]), numeric=False),
        _Col("Keep", list(both["keep_ratio"]), [_num(v) for v in both["keep_ratio"]]),
        _Col("GFLOPs", list(both["gmacs"]), [_num(v, gmacs_digits(both["gmacs"])) for v in both["gmacs"]]),
        _Col(
            "Top-1 scored",
            list(both["top1"]),
            [_top1_text(m, s, n) for m, s, n in zip(both["top1"], both["top1_std"], both["n"])],
        ),
        _Col(
            "Top-1 random",
            list(both["top1_random"]),
            [
                _top1_text(m, s, n)
                for m, s, n in zip(both["top1_random"], both["top1_std_random"], both["n_random"])
            ],
        ),
        _Col("Δ (scored − random)", delta, [_signed(v) for v in delta]),
    ]
    note = seeds_note([*both["n"], *both["n_random"]])
    return _render(cols, fmt, caption=f"Top-1 (%) on the same images, {note}.")


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
    _check_fmt(fmt)
    ok = _select(df, model, noise=None, selection=selection)
    noisy = ok.loc[ok["noise"] != "clean"]
    if noisy.empty:
        raise VitbenchError(
            f"no noisy records in {_source(df)} for {_where(model, None, None, selection)}; "
            "run a suite with noises to get a robustness table"
        )
    keys = [c for c in MEASURED if c not in ("noise", "level")]
    conditions = sorted({(str(n), float(lv)) for n, lv in zip(noisy["noise"], noisy["level"])})
    ok = ok.assign(level=ok["level"].where(ok["noise"] != "clean", 0.0))
    means = ok.groupby([*keys, "noise", "level"], dropna=False)["top1"].mean()
    counts = ok.groupby([*keys, "noise", "level"], dropna=False)["top1"].size()
    first = {"n_samples": ("n_samples", "first")}
    rows = _order(ok.groupby(keys, dropna=False, sort=False).agg(**first).reset_index())
    cols = _lead_cols(rows) + [
        _Col("Method", list(rows["method"]), list(rows["method"]), numeric=False),
        _Col("Setting", list(rows["setting"]), list(rows["setting"]), numeric=False),
        _Col("Keep", list(rows["keep_ratio"]), [_num(v) for v in rows["keep_ratio"]]),
    ]
    row_keys = list(rows[keys].itertuples(index=False, name=None))
    lookup = {k: float(v) for k, v in means.items()}
    clean = [lookup.get((*k, "clean", 0.0), math.nan) for k in row_keys]
    cols.append(_Col("Clean", clean, [_num(v) for v in clean]))
    table = np.full((len(row_keys), len(conditions)), math.nan)
    for j, (name, lv) in enumerate(conditions):
        column = [lookup.get((*k, name, lv), math.nan) for k in row_keys]
        table[:, j] = column
        cols.append(_Col(f"{name}@{lv:g}", column, [_num(v) for v in column]))
    mean_noisy = [float(r.mean()) if not np.isnan(r).any() else math.nan for r in table]
    cols.append(_Col("Mean noisy", mean_noisy, [_num(v) for v in mean_noisy]))
    note = seeds_note(counts.tolist())
    return _render(cols, fmt, caption=f"Top-1 (%) per noise condition on the same images, {note}.")


FIGURE_FORMATS = ("png", "svg", "pdf")


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
    its colour in every figure (:func:`vitbench.plotstyle.method_color`), its variants differ by
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
    _figure_kind(Path(path))
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
    ok = with_curves(_select(df, model, noise, level, selection))
    stats = _stats(ok, ["curve"])
    stats = stats.loc[stats["gmacs"].notna() & stats["top1"].notna()]
    if stats.empty:
        raise VitbenchError(
            f"no records with GMACs and top-1 to plot in {_source(df)} (cost-only cells have no accuracy)"
        )
    pop = ["suite", "model", "weights", "dataset", "split", "sample_ids_hash"]
    varying = [c for c in pop[1:] if stats[c].nunique() > 1]  # label prefix: what differs only

    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure()
    ax = fig.add_subplot()
    variants: dict[str, list[str]] = {}
    for key, grp in _order(stats).groupby([*pop, "curve"], sort=False):
        cur, method = str(key[-1]), str(grp["method"].iloc[0])
        cfg = dict(zip(pop, key))
        where = " ".join(f"img {str(cfg[c])[:8]}" if c == "sample_ids_hash" else str(cfg[c]) for c in varying)
        label = f"{where}: {cur}" if varying else cur
        grp = grp.sort_values("gmacs")
        yerr = np.vstack([grp["top1"] - grp["top1_ci_low"], grp["top1_ci_high"] - grp["top1"]])
        has_ci = bool(np.isfinite(yerr).all())
        color = method_color(method)
        if cur == DENSE:
            ax.errorbar(
                grp["gmacs"], grp["top1"], yerr=yerr if has_ci else None, fmt="*", markersize=13,
                color=color, zorder=3, label=label,
            )  # fmt: skip
            continue
        seen = variants.setdefault(method, [])
        if label not in seen:
            seen.append(label)
        marker = variant_marker(seen.index(label))
        err = yerr if has_ci else None
        ax.errorbar(grp["gmacs"], grp["top1"], yerr=err, marker=marker, color=color, label=label)
    ax.set_xlabel("Compute (GMACs per image)")
    ax.set_ylabel("Top-1 accuracy (%)")
    condition = "clean" if noise == "clean" else f"{noise}@{level:g}"
    ax.set_title(
        f"{model or ', '.join(sorted(set(stats['model'])))} ({condition}, {selection}); "
        f"bars: 95% CI, {seeds_note(stats['n'])}",
        fontsize=8,
    )
    legend_outside(ax)
    return fig


def _figure_kind(out: Path) -> str:
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
    kind = _figure_kind(out)
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


def render_all(df: pd.DataFrame, fmt: str = "github", samples: Any = None) -> str:
    """All views as one document with short markdown headings.

    Sections: leaderboard (clean, scored), matched-GMACs view, scored-vs-random selection (if
    random rows exist), robustness under noise (if noisy rows exist), failed cells (if any).
    A section whose filter matches nothing says so instead of failing the whole report.

    Raises:
        VitbenchError: unknown ``fmt`` or no successful records at all.
    """
    _check_fmt(fmt)
    ok = _successful(df)

    def section(title: str, fn: Any, **kwargs: Any) -> str:
        try:
            body = fn(df, fmt=fmt, **kwargs)
        except VitbenchError as exc:
            body = f"_{exc}_"
        return f"## {title}\n\n{body}"

    parts = [
        section("Leaderboard (clean, scored selection)", leaderboard),
        section("Accuracy at matched GMACs (clean, scored selection)", matched_gmacs_table, samples=samples),
    ]
    if (ok["selection"] == "random").any():
        parts.append(section("Token selection: scored vs random (clean)", selection_table))
    if (ok["noise"] != "clean").any():
        parts.append(section("Robustness under noise (Top-1, scored selection)", noise_table))
    failed = failed_cells(df)
    if not failed.empty:
        cols = [
            _Col(str(c), list(failed[c]), ["" if _raw(v) is None else str(v) for v in failed[c]], False)
            for c in failed.columns
        ]
        parts.append(f"## Failed cells ({len(failed)})\n\n{_render(cols, fmt)}")
    return "\n\n".join(parts) + "\n"


#: (method that squeezes, the same pruning without the squeeze). ``random-tokens`` is EViT's
#: schedule without fusion and draws exactly eTPS's keep sets under random selection.
SQUEEZE_PAIRS: tuple[tuple[str, str], ...] = (
    ("etps", "evit"),
    ("etps", "random-tokens"),
    ("dtps", "dynamicvit"),
)


def _label(method: str, setting: str) -> str:
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
    Pruning only | Top-1 (prune) | Δ (squeeze − prune) | GFLOPs (squeeze) | GFLOPs (prune)``
    (``Model``/``Dataset`` first when several). Methods with several settings (e.g. EViT with
    and without its fused token) get one row per setting.

    Raises:
        VitbenchError: unknown ``fmt``, no successful records, or no pair with records.
    """
    _check_fmt(fmt)
    ok = _select(df, model, noise, level, selection=None)
    keys = [c for c in MEASURED if c not in ("suite", "method", "setting")]
    stats = _stats(ok)
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
            f"{_source(df)} for {_where(model, noise, level, None)}; run a suite with both methods"
        )
    both = both.sort_values(
        ["model", "dataset", "keep_ratio", "selection", "method", "method_base"],
        ascending=[True, True, False, False, True, True],
        kind="mergesort",
    )
    delta = list(both["top1"] - both["top1_base"])
    gd = gmacs_digits(pd.concat([both["gmacs"], both["gmacs_base"]]))
    squeeze_names = [_label(m, s) for m, s in zip(both["method"], both["setting"])]
    base_names = [_label(m, s) for m, s in zip(both["method_base"], both["setting_base"])]
    cols = _lead_cols(both) + [
        _Col("Keep", list(both["keep_ratio"]), [_num(v) for v in both["keep_ratio"]]),
        _Col("Selection", list(both["selection"]), list(both["selection"]), numeric=False),
        _Col("Squeeze", squeeze_names, squeeze_names, numeric=False),
        _Col(
            "Top-1 (squeeze)",
            list(both["top1"]),
            [_top1_text(m, s, n) for m, s, n in zip(both["top1"], both["top1_std"], both["n"])],
        ),
        _Col("Pruning only", base_names, base_names, numeric=False),
        _Col(
            "Top-1 (prune)",
            list(both["top1_base"]),
            [
                _top1_text(m, s, n)
                for m, s, n in zip(both["top1_base"], both["top1_std_base"], both["n_base"])
            ],
        ),
        _Col("Δ (squeeze − prune)", delta, [_signed(v) for v in delta]),
        _Col("GFLOPs (squeeze)", list(both["gmacs"]), [_num(v, gd) for v in both["gmacs"]]),
        _Col("GFLOPs (prune)", list(both["gmacs_base"]), [_num(v, gd) for v in both["gmacs_base"]]),
    ]
    return _render(cols, fmt)
