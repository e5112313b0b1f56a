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


def _num(x: Any, digits: int = 2) -> str:
    """Format a number with ``digits`` decimals; blank for missing values."""
    if x is None or pd.isna(x):
        return ""
    return f"{float(x):.{digits}f}"


def gmacs_digits(values: Any) -> int:
    """Decimals that show GMACs with at least 3 significant digits (2 for DeiT-sized models)."""
    vals = [abs(float(v)) for v in values if v is not None and not math.isnan(float(v)) and float(v) != 0]
    if not vals:
        return 2
    return max(2, 2 - math.floor(math.log10(max(vals))))


def _signed(x: Any, digits: int = 2) -> str:
    if x is None or pd.isna(x):
        return ""
    return f"{float(x):+.{digits}f}"


def _raw(x: Any) -> Any:
    """A csv-friendly scalar: numpy scalars -> Python, missing -> None."""
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return None
    return x.item() if hasattr(x, "item") else x


def _top1_text(mean: Any, std: Any, n: Any) -> str:
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

    Text columns get defaults, ``numeric`` columns become float64 (NaN when absent), clean rows
    have level 0, and rows pruned on noisy calibration images are kept apart
    (:func:`vitbench.records.fold_calibration`). Shared with :mod:`vitbench.robustness`.
    """
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise VitbenchError(
            f"results frame lacks column(s) {', '.join(missing)}; load it with vitbench.load_results"
        )
    ok = fold_calibration(df.loc[df["error"].isna()].copy())
    if ok.empty:
        raise VitbenchError(f"no successful records in {_source(df)}; run `vitbench run` first")
    text = {"model": "", "dataset": "", "method": "", "setting": "", "noise": "clean", "selection": "scored"}
    for col, default in text.items():
        ok[col] = ok[col].astype(object).where(ok[col].notna(), default).astype(str)
    for col in numeric:
        ok[col] = pd.to_numeric(ok[col], errors="coerce").astype("float64") if col in ok else math.nan
    ok["level"] = ok["level"].where(ok["noise"] != "clean", 0.0).fillna(0.0)
    return ok


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


def _stats(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean (and std, count) over seeds of the numeric columns per ``keys`` group."""
    grouped = frame.groupby(keys, dropna=False, sort=False)
    return grouped.agg(
        top1=("top1", "mean"),
        top1_std=("top1", "std"),
        n=("top1", "size"),
        gmacs=("gmacs", "mean"),
        params_m=("params_m", "mean"),
        img_per_s=("img_per_s", "mean"),
    ).reset_index()


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by model, dataset, dense first, method, keep ratio descending, setting."""
    keyed = frame.assign(_not_dense=frame["method"] != DENSE)
    by = [c for c in ("model", "dataset", "_not_dense", "method", "keep_ratio", "setting") if c in keyed]
    ascending = [c != "keep_ratio" for c in by]
    return keyed.sort_values(by, ascending=ascending, kind="mergesort").drop(columns="_not_dense")


def _lead_cols(frame: pd.DataFrame) -> list[_Col]:
    """``Model`` / ``Dataset`` columns, only when the frame holds several of them."""
    cols = []
    for key, header in (("model", "Model"), ("dataset", "Dataset")):
        if key in frame and frame[key].nunique() > 1:
            values = list(frame[key])
            cols.append(_Col(header, values, [str(v) for v in values], numeric=False))
    return cols


def _dense_top1(ok: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(model, dataset) -> mean dense top-1 over its rows."""
    dense = ok.loc[ok["method"] == DENSE]
    means = dense.groupby(["model", "dataset"])["top1"].mean()
    return {(str(k[0]), str(k[1])): float(v) for k, v in means.items()}


def _dense_gmacs(ok: pd.DataFrame) -> dict[tuple[str, str], float]:
    dense = ok.loc[ok["method"] == DENSE]
    means = dense.groupby(["model", "dataset"])["gmacs"].mean()
    return {(str(k[0]), str(k[1])): float(v) for k, v in means.items()}


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
) -> str:
    """Paper-style table: one row per (model, method, setting, keep ratio), mean over seeds.

    Columns: ``Method | Setting | Keep | Top-1 | ΔTop-1 | GFLOPs (MACs) | Params (M) | img/s``
    (a leading ``Model`` column when several models are present, ``Dataset`` likewise).
    ``Top-1`` shows ``mean ± std`` when there are several seeds; ``ΔTop-1`` is relative to the
    ``dense`` method of the same model/dataset/noise condition (blank without one).
    The csv format carries raw numbers plus ``Top-1 std`` and ``Seeds`` columns.

    Args:
        df: records frame (from :func:`vitbench.load_results`).
        fmt: one of :data:`FORMATS`.
        model: restrict to one model (default: all models).
        noise: ``"clean"`` or a noise name; ``level`` picks its severity.
        level: noise severity (ignored for ``"clean"``).
        selection: ``"scored"`` or ``"random"`` token selection.

    Raises:
        VitbenchError: unknown ``fmt``, or no successful records match.
    """
    _check_fmt(fmt)
    ok = _select(df, model, noise, level, selection)
    stats = _order(_stats(ok, ["model", "dataset", "method", "setting", "keep_ratio"]))
    dense = _dense_top1(ok)
    delta = [
        t - dense[(m, d)] if (m, d) in dense else math.nan
        for m, d, t in zip(stats["model"], stats["dataset"], stats["top1"])
    ]
    top1_text = [_top1_text(m, s, n) for m, s, n in zip(stats["top1"], stats["top1_std"], stats["n"])]
    timed = bool(stats["img_per_s"].notna().any())  # no img/s column when nothing was timed
    cols = _lead_cols(stats) + [
        _Col("Method", list(stats["method"]), list(stats["method"]), numeric=False),
        _Col("Setting", list(stats["setting"]), list(stats["setting"]), numeric=False),
        _Col("Keep", list(stats["keep_ratio"]), [_num(v) for v in stats["keep_ratio"]]),
        _Col("Top-1", list(stats["top1"]), top1_text),
        _Col("Top-1 std", list(stats["top1_std"]), [], display=False),
        _Col("Seeds", list(stats["n"]), [], display=False),
        _Col("ΔTop-1", delta, [_signed(v) for v in delta]),
        _Col(
            "GFLOPs (MACs)",
            list(stats["gmacs"]),
            [_num(v, gmacs_digits(stats["gmacs"])) for v in stats["gmacs"]],
        ),
        _Col("Params (M)", list(stats["params_m"]), [_num(v) for v in stats["params_m"]]),
        _Col(
            "img/s",
            list(stats["img_per_s"]),
            [_num(v, 0) for v in stats["img_per_s"]],
            display=timed,
        ),
    ]
    text = _render(cols, fmt)
    if not timed and fmt in ("github", "markdown"):
        text += (
            "\n\nimg/s: not measured by this suite (`throughput: {enabled: false}`); "
            "see `vitbench throughput`."
        )
    return text


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
) -> str:
    """Top-1 of each method linearly interpolated at common GMACs budgets.

    Each non-dense method's mean top-1 (over seeds) is interpolated as a function of its mean
    GMACs; budgets outside the method's measured range are blank (no extrapolation). The dense
    reference is given in a caption line (csv: ``Dense Top-1`` / ``Dense GMACs`` columns).

    Args:
        df: records frame.
        fmt: one of :data:`FORMATS`.
        model: restrict to one model (default: all; a ``Model`` column is added if several).
        grid: GMACs budgets; default: the sorted unique GMACs (2 decimals) of the non-dense
            rows, at most 8 evenly picked.
        noise: noise condition (``"clean"`` or a noise name at ``level``).
        level: noise severity.
        selection: token selection of the compressed methods.

    Raises:
        VitbenchError: unknown ``fmt``, no successful records, or no non-dense method.
    """
    _check_fmt(fmt)
    ok = with_curves(_select(df, model, noise, level, selection))
    stats = _stats(ok, ["model", "dataset", "method", "curve", "setting", "keep_ratio"])
    methods = stats.loc[stats["method"] != DENSE]
    methods = methods.loc[methods["gmacs"].notna() & methods["top1"].notna()]
    if methods.empty:
        raise VitbenchError(
            f"no compressed-method records with GMACs in {_source(df)} for "
            f"{_where(model, noise, level, selection)}; only the dense baseline was found"
        )
    budgets = sorted(float(g) for g in grid) if grid is not None else _default_grid(methods["gmacs"])
    gd = gmacs_digits(methods["gmacs"])
    tol = _GRID_TOL * 10.0 ** (2 - gd)  # half a unit of the shown precision
    # one curve per method variant (non-knob settings, calibration noise), never averaged together
    curves = _order(methods.groupby(["model", "dataset", "method", "curve"], sort=False).size().reset_index())
    values: list[list[float]] = []
    for m, d, cur in zip(curves["model"], curves["dataset"], curves["curve"]):
        pts = methods.loc[(methods["model"] == m) & (methods["dataset"] == d) & (methods["curve"] == cur)]
        by_gmacs = pts.groupby("gmacs")["top1"].mean()
        values.append(_interp(by_gmacs.index.to_numpy(float), by_gmacs.to_numpy(float), budgets, tol))
    dense_top1, dense_gmacs = _dense_top1(ok), _dense_gmacs(ok)
    keys = list(zip(curves["model"], curves["dataset"]))
    cols = _lead_cols(curves) + [_Col("Method", list(curves["curve"]), list(curves["curve"]), numeric=False)]
    for j, g in enumerate(budgets):
        column = [row[j] for row in values]
        cols.append(_Col(f"{g:.{gd}f} G", column, [_num(v) for v in column]))
    cols.append(_Col("Dense Top-1", [dense_top1.get(k, math.nan) for k in keys], [], display=False))
    cols.append(_Col("Dense GMACs", [dense_gmacs.get(k, math.nan) for k in keys], [], display=False))
    several = curves["model"].nunique() > 1 or curves["dataset"].nunique() > 1
    refs = [
        f"{'/'.join(x for x in k if x) + ' ' if several else ''}Top-1 {dense_top1[k]:.2f} "
        f"at {_num(dense_gmacs.get(k), gd)} GMACs"
        for k in dict.fromkeys(keys)
        if k in dense_top1
    ]
    caption = "Dense reference: " + "; ".join(refs) if refs else "Dense reference: none recorded"
    return _render(cols, fmt, caption=caption)


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
    keys = ["model", "dataset", "method", "curve", "keep_ratio"]
    stats = _stats(ok, [*keys, "selection"])
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
    return _render(cols, fmt)


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
    keys = ["model", "dataset", "method", "setting", "keep_ratio"]
    conditions = sorted({(str(n), float(lv)) for n, lv in zip(noisy["noise"], noisy["level"])})
    ok = ok.assign(level=ok["level"].where(ok["noise"] != "clean", 0.0))
    means = ok.groupby([*keys, "noise", "level"], dropna=False)["top1"].mean()
    rows = _order(ok.groupby(keys, dropna=False, sort=False).size().reset_index()).drop(columns=0)
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
    return _render(cols, fmt)


def plot_pareto(
    df: pd.DataFrame,
    path: str | Path,
    model: str | None = None,
    noise: str = "clean",
    level: float = 0.0,
    selection: str = "scored",
) -> Path:
    """Plot top-1 accuracy vs GMACs, one line per method, dense as a star; save as PNG or SVG.

    Args:
        df: records frame.
        path: output file; the suffix (``.png`` or ``.svg``) picks the format.
        model: restrict to one model (default: all; labels are prefixed by the model).
        noise: noise condition (``"clean"`` or a noise name at ``level``).
        level: noise severity.
        selection: token selection of the compressed methods.

    Returns:
        The written path.

    Raises:
        VitbenchError: unsupported suffix, no matching records, or the file cannot be written.
    """
    out = Path(path)
    kind = out.suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise VitbenchError(f"cannot plot to '{out}': use a .png or .svg file name")
    ok = with_curves(_select(df, model, noise, level, selection))
    stats = _stats(ok, ["model", "dataset", "method", "curve", "setting", "keep_ratio"])
    stats = stats.loc[stats["gmacs"].notna() & stats["top1"].notna()]
    if stats.empty:
        raise VitbenchError(f"no records with GMACs and top-1 to plot in {_source(df)}")
    multi = stats["model"].nunique() > 1 or stats["dataset"].nunique() > 1

    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    for (m, d, cur), grp in _order(stats).groupby(["model", "dataset", "curve"], sort=False):
        label = f"{m}/{d}: {cur}" if multi and d else (f"{m}: {cur}" if multi else str(cur))
        grp = grp.sort_values("gmacs")
        if cur == DENSE:
            color = None if multi else "black"
            ax.scatter(grp["gmacs"], grp["top1"], marker="*", s=220, zorder=3, color=color, label=label)
        else:
            ax.plot(grp["gmacs"], grp["top1"], marker="o", label=label)
    ax.set_xlabel("Compute (GMACs per image)")
    ax.set_ylabel("Top-1 accuracy (%)")
    condition = "clean" if noise == "clean" else f"{noise}@{level:g}"
    ax.set_title(f"{model or ', '.join(sorted(set(stats['model'])))} ({condition}, {selection})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out)


def save_figure(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Write a matplotlib figure to a ``.png``/``.svg`` path (folders created); one-line errors.

    Raises:
        VitbenchError: unsupported suffix or the file cannot be written.
    """
    out = Path(path)
    kind = out.suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise VitbenchError(f"cannot plot to '{out}': use a .png or .svg file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format=kind, dpi=dpi)
    except OSError as exc:
        raise VitbenchError(
            f"cannot write plot {out} ({exc.strerror or exc}); pass a writable path"
        ) from None
    return out


def render_all(df: pd.DataFrame, fmt: str = "github") -> str:
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
        section("Accuracy at matched GMACs (clean, scored selection)", matched_gmacs_table),
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
    keys = ["model", "dataset", "keep_ratio", "selection"]
    stats = _stats(ok, [*keys, "method", "setting"])
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
