"""Noisy-calibration tables and plot (VTC-LFC Fig. 1 / Fig. 4 protocol on any results store).

Pure functions of the records: one table per evaluation condition (clean or noisy test images),
rows = method x keep ratio, columns = calibration condition (the ``calib_noise`` axis), cells =
top-1 and its change from clean calibration. Methods that read no calibration images (token
methods, the dense model: :func:`reads_calibration`) have their top-1 in a ``no calibration``
column and ``-`` under every calibration condition; their scores are computed on the evaluation
images themselves, so their noisy-criterion condition is the noisy-test table.

Command line: ``vitbench robustness --results RESULTS.sqlite --view calibration --output
calibration.md --plot calibration.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from vitbench.core.errors import VitbenchError
from vitbench.core.method_index import method_info
from vitbench.report.format import GMACS_NOTE, gmacs_digits, save_figure
from vitbench.report.plotstyle import footnote, legend_outside, method_color, variant_marker, with_style
from vitbench.report.population import mask_cost_only, normalise, seeds_note
from vitbench.report.rows import image_sets, images_footnote, population_labels
from vitbench.store.records import with_curves

NO_CALIB = "no calibration"  # the column of the methods that read no calibration images


def _cond(name: str, level: float) -> str:
    return "clean" if name == "clean" else f"{name}@{level:g}"


def reads_calibration(method: str, family: object = None) -> bool:
    """Whether ``method`` prunes with calibration images (a channel method), by the method index.

    A channel method (``token`` false in :func:`vitbench.core.method_index.method_info`, e.g. lfs,
    taylor, nvit) runs once per calibration noise; token methods and the dense model run on the
    evaluation images only (their records carry the suite's first ``calib_noise``, unused). A
    method vitbench does not know is judged by its records' ``family`` (``channel``: reads them).
    """
    info = method_info(method)
    return (not info.token) if info is not None else family == "channel"


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[df["error"].isna()] if "error" in df else df
    if ok.empty:
        raise VitbenchError("no successful records to tabulate; run the suite first")
    ok = ok.copy()
    ok["calib"] = [
        _cond(n, lv) for n, lv in zip(ok["calib_noise"].fillna("clean"), ok["calib_level"].fillna(0.0))
    ]
    ok["test"] = [_cond(n, lv) for n, lv in zip(ok["noise"], ok["level"])]
    families = ok["family"] if "family" in ok else pd.Series([None] * len(ok), index=ok.index)
    ok["calibrated"] = [reads_calibration(str(m), f) for m, f in zip(ok["method"], families)]
    ok = mask_cost_only(normalise(ok))
    # what a row measured besides its calibration: model, images, token selection (never averaged)
    # label only what differs: the model as shown, the weights file, the image set by suite and count
    ok["population"] = population_labels(ok, image_sets(ok))
    ok = with_curves(ok)  # one row per method variant (its calibration noise is a column here)
    several = ok["population"].nunique() > 1
    ok["row"] = [
        (f"{p}: " if several else "") + c + (" (random)" if sel == "random" else "")
        for p, c, sel in zip(ok["population"], ok["curve"], ok["selection"])
    ]
    return ok


def _seeds(ok: pd.DataFrame) -> str:
    counts = ok.groupby(["row", "keep_ratio", "test", "calib"], sort=False)["top1"].size()
    return seeds_note(counts.tolist())


def _calib_order(ok: pd.DataFrame) -> list[str]:
    pairs = sorted(
        {(n, float(lv)) for n, lv in zip(ok["calib_noise"].fillna("clean"), ok["calib_level"].fillna(0.0))}
    )
    pairs.sort(key=lambda p: (p[0] != "clean", p[0], p[1]))
    return [_cond(n, lv) for n, lv in pairs]


def calibration_tables(df: pd.DataFrame) -> str:
    """Markdown: per test condition, top-1 (%) of every method x keep under every calibration noise.

    Columns: ``method | keep | GMACs (mean) | no calibration | calib <condition> ...``. A method
    that reads calibration images (:func:`reads_calibration`) has its top-1 under each
    calibration condition (and its change from ``calib clean`` in parentheses) and ``-`` under
    ``no calibration``; the others (token methods, dense) the reverse. A column nobody fills is
    left out. Top-1 is the mean over seeds.

    Raises:
        VitbenchError: no successful records.
    """
    from tabulate import tabulate

    ok = _prepare(df)
    calibs = _calib_order(ok.loc[ok["calibrated"]])
    uncalibrated = bool((~ok["calibrated"]).any())
    tests = sorted(ok["test"].unique(), key=lambda t: (t != "clean", t))
    gd = gmacs_digits(ok["gmacs"])  # the one digits rule of every table
    out = []
    for test in tests:
        part = ok[ok["test"] == test]
        rows = []
        for (method, keep), grp in part.groupby(["row", "keep_ratio"], sort=True):
            gm = grp["gmacs"].mean()
            row = [method, f"{keep:g}", f"{gm:.{gd}f}"]
            if not bool(grp["calibrated"].iloc[0]):
                rows.append([*row, f"{grp['top1'].mean():.1f}"] + ["-"] * len(calibs))
                continue
            by = grp.groupby("calib")["top1"].mean()
            base = by.get("clean")
            row += ["-"] if uncalibrated else []
            for c in calibs:
                if c not in by:
                    row.append("-")
                elif c == "clean" or base is None:
                    row.append(f"{by[c]:.1f}")
                else:
                    row.append(f"{by[c]:.1f} ({by[c] - base:+.1f})")
            rows.append(row)
        head = ["method", "keep", "GMACs (mean)"] + [NO_CALIB] * uncalibrated + [f"calib {c}" for c in calibs]
        align = ["left"] + ["right"] * (len(head) - 1)
        table = tabulate(rows, headers=head, tablefmt="github", disable_numparse=True, colalign=align)
        out.append(f"### test images: {test}\n\n" + table)
    parts = ["Top-1 (%) on the test images named in each heading"]
    if calibs:
        parts.append(
            "'calib X': channel methods pruned with calibration images under noise X (in parentheses: "
            "change from clean calibration)"
        )
    if uncalibrated:
        parts.append(
            f"'{NO_CALIB}': methods that read no calibration images (token methods score the test "
            "images themselves; dense prunes nothing)"
        )
    if calibs and uncalibrated:
        parts.append("'-': the column does not apply to the row's method")
    note = (
        "; ".join(parts)
        + f". Rows of different images or token selection are kept apart; top-1 {_seeds(ok)}; {GMACS_NOTE}. "
        + f"{images_footnote(ok, image_sets(ok))}."
    )
    return note + "\n\n" + "\n\n".join(out) + "\n"


def plot_calibration(df: pd.DataFrame, path: str | Path) -> Path:
    """Top-1 vs calibration noise level: a line per calibrated method x keep, a panel per test condition."""
    return save_figure(calibration_figure(df), path, dpi=120)


@with_style
def calibration_figure(df: pd.DataFrame) -> Figure:
    """The figure of :func:`plot_calibration`: colour per method, marker per keep, legend outside."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    ok = _prepare(df)
    tests = sorted(ok["test"].unique(), key=lambda t: (t != "clean", t))
    fig = Figure(figsize=(3.4 * len(tests), 3.0))
    axes = fig.subplots(1, len(tests), squeeze=False)
    keeps = sorted(set(ok["keep_ratio"]), reverse=True)
    x0, x1 = float(ok["calib_level"].fillna(0.0).min()), float(ok["calib_level"].fillna(0.0).max())
    for ax, test in zip(axes[0], tests):
        part = ok[ok["test"] == test]
        for (row, keep), grp in part.groupby(["row", "keep_ratio"], sort=True):
            lv = grp.assign(x=grp["calib_level"].fillna(0.0)).groupby("x")["top1"].mean().sort_index()
            style = {
                "color": method_color(str(grp["method"].iloc[0])),
                "marker": variant_marker(keeps.index(keep)),
            }
            if bool(grp["calibrated"].iloc[0]):
                ax.plot(lv.index, lv.values, label=f"{row} keep {keep:g}", **style)
            else:
                y = float(lv.iloc[0])
                ax.plot([x0, x1], [y, y], linestyle=":", label=f"{row} keep {keep:g} (no calib)", **style)
        ax.set_title(f"test: {test}", fontsize=9)
        ax.set_xlabel("calibration noise level")
        ax.set_ylabel("top-1 (%)")
    seen: dict[str, Any] = {}  # every line of every panel, once
    for ax in axes[0]:
        for h, lb in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lb, h)
    sets = image_sets(ok)
    models = ", ".join(sorted(set(ok["model_shown"])))
    images = next(iter(sets.values())) if len(sets) == 1 else f"{len(sets)} image sets"
    fig.suptitle(
        f"{models}: {images}; top-1 vs the calibration images' noise level, per test condition; {_seeds(ok)}",
        fontsize=8,
    )
    fig.tight_layout()
    legend_outside(fig, list(seen.values()), list(seen))
    footnote(fig, images_footnote(ok, sets))
    return fig
