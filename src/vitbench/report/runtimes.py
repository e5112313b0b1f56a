"""The runtimes view: realized speedup over dense in the same runtime next to the GMACs ratio.

Reads the ``runtime_speed`` side table (:mod:`vitbench.store.runtimes`). Per (model, runtime,
batch size), each method setting's speedup is dense time / its time, taken round by round over
the interleaved timed runs (paired: load drifts hit both) and reported as the median with the
interquartile range of the per-round ratios; the GMACs ratio (dense GMACs / its GMACs) is the
ideal speedup. A setting slower than dense (speedup < 1) is marked; one whose logits differ from
eager, or that could not be exported, shows its verdict and no speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vitbench.core.errors import VitbenchError
from vitbench.core.method_index import adaptive_methods
from vitbench.core.threads import thread_count
from vitbench.report.format import NA, Col, figure_kind, fmt_num, render_table, save_figure
from vitbench.report.plotstyle import legend_outside, with_style
from vitbench.store.runtimes import load_runtime_rows

_GROUP = ["suite", "model", "weights", "runtime", "batch_size", "threads", "round_id"]
_ORDER = {"eager": 0, "compile": 1, "onnxruntime": 2, "openvino": 3}


def speedups(df: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """Side-table rows with ``gmacs_ratio``, ``speedup``, ``speedup_q1``/``_q3`` and ``status`` added.

    ``status``: ``dense``, ``ok``, ``slower than dense``, or the verdict of a setting that is not
    equal / not exportable (its speedup is NaN). Rows are sorted by model, runtime, batch size,
    then dense first and GMACs ratio.

    Raises:
        VitbenchError: no runtime rows (for ``model``): run with ``throughput.runtimes`` or
            ``vitbench throughput --runtime ... --results``.
    """
    if model is not None:
        df = df.loc[df["model"] == model]
    if df.empty:
        where = f" for model {model}" if model else ""
        raise VitbenchError(
            f"no runtime measurements{where} in {df.attrs.get('source', 'the store')}; run a suite with "
            "throughput.runtimes or `vitbench throughput --runtime eager --results STORE`"
        )
    out = []
    for _key, grp in df.groupby(_GROUP, sort=False, dropna=False):
        dense = grp.loc[grp["method"] == "dense"]
        d = dense.iloc[0] if len(dense) else None
        for _, row in grp.iterrows():
            rec = row.to_dict()
            ratio = q1 = q3 = np.nan
            gr = np.nan
            if d is not None and row["gmacs"] and d["gmacs"]:
                gr = float(d["gmacs"]) / float(row["gmacs"])
            ok = bool(row["equal"]) and not row["error"] and len(row["times_ms"])
            if ok and d is not None and bool(d["equal"]) and len(d["times_ms"]):
                a, b = np.asarray(d["times_ms"], float), np.asarray(row["times_ms"], float)
                n = min(len(a), len(b))
                per_round = a[:n] / b[:n]
                ratio, q1, q3 = (float(np.percentile(per_round, p)) for p in (50, 25, 75))
            if row["method"] == "dense":
                status = "dense" if ok else str(row["verdict"])
            elif not ok:
                status = str(row["verdict"])
            elif np.isfinite(ratio) and ratio < 1.0:
                status = "slower than dense"
            else:
                status = "ok" if np.isfinite(ratio) else "dense not timed"
            rec.update(gmacs_ratio=gr, speedup=ratio, speedup_q1=q1, speedup_q3=q3, status=status)
            out.append(rec)
    res = pd.DataFrame(out)
    res["_rt"] = res["runtime"].map(lambda r: _ORDER.get(str(r), 9))
    res["_dense"] = res["method"] != "dense"
    res = res.sort_values(["model", "_rt", "runtime", "batch_size", "_dense", "gmacs_ratio"], kind="stable")
    return res.drop(columns=["_rt", "_dense"]).reset_index(drop=True)


def runtimes_table(df: pd.DataFrame, fmt: str = "github", model: str | None = None) -> str:
    """The ``--view runtimes`` table of a ``runtime_speed`` frame (see the module docstring)."""
    s = speedups(df, model)
    timed = s["median_ms"].notna() & s["equal"].astype(bool)

    def speed(i: int) -> str:
        if not timed.iloc[i]:
            return NA
        r = s.iloc[i]
        if int(r["batch_size"]) == 1:
            return f"{r['median_ms']:.1f} ms (p90 {r['p90_ms']:.1f})"
        return f"{r['img_per_s']:.1f} img/s"

    def spd(i: int) -> str:
        r = s.iloc[i]
        if r["method"] == "dense" or not np.isfinite(r["speedup"]):
            return NA
        return f"{r['speedup']:.2f} ({r['speedup_q1']:.2f}–{r['speedup_q3']:.2f})"

    n = len(s)
    cols = [
        Col("model", list(s["model"]), list(s["model"]), numeric=False),
        Col("runtime", list(s["runtime"]), list(s["runtime"]), numeric=False),
        Col("batch", list(s["batch_size"]), [str(int(b)) for b in s["batch_size"]]),
        Col("method", list(s["method"]), list(s["method"]), numeric=False),
        Col("setting", list(s["setting"]), [str(x) for x in s["setting"]], numeric=False),
        Col("GMACs ratio (ideal)", list(s["gmacs_ratio"]), [fmt_num(x) for x in s["gmacs_ratio"]]),
        Col("speedup over dense (IQR)", list(s["speedup"]), [spd(i) for i in range(n)]),
        Col("latency / img/s", list(s["img_per_s"]), [speed(i) for i in range(n)]),
        Col("status", list(s["status"]), list(s["status"]), numeric=False),
        Col("threads", list(s["threads"]), [str(int(t)) for t in s["threads"]]),
        Col("runtime version", list(s["runtime_version"]), list(s["runtime_version"]), numeric=False),
    ]
    caption = (
        "Realized speedup over dense in the same runtime (median of per-round ratios, interleaved "
        "rounds; IQR in brackets) next to the GMACs ratio; batch 1: latency median (p90). "
        "Settings not equal to eager show no speed."
    )
    if adaptive := adaptive_methods(s["method"].astype(str)):
        caption += (
            f" {', '.join(adaptive)}: GMACs vary per image; their ratio is that of the GMACs counter's "
            "one synthetic input, not of the timed batch."
        )
    return render_table(cols, fmt, caption)


#: Note of the realized-speedup columns of the paper view (:func:`realized_columns`).
REALIZED_NOTE = (
    "runtime columns: realized speedup over dense in the same runtime at that batch size (median of "
    "per-round ratios, `vitbench throughput --runtime` or throughput.runtimes) with the GMACs ratio "
    "(ideal) in brackets; 'slower': slower than dense; ≠: not equal to eager, no speed shown"
)


def realized_columns(
    stats: pd.DataFrame, source: str | None, suite: str | None = None, selection: str = "scored"
) -> list[Col]:
    """Realized-speedup columns for the rows of a records table, one per (runtime, batch size).

    ``stats`` has one row per configuration (``model``, ``method``, ``setting``); the runtime
    rows of the store ``source`` (its ``runtime_speed`` side table, limited to ``suite`` when
    given, and to ``selection``) are matched on (model, method, setting); the most recent
    measurement of each (setting, runtime, batch size) is shown. Cells: ``1.42 (1.52)``
    (realized speedup, GMACs ratio), ``0.94 (1.53) slower`` below dense speed, ``≠ eager`` when
    the runtime's logits differed from eager, ``not exportable``; dense and unmatched rows ``–``.
    Returns no columns when the store has no runtime rows (nothing was measured).
    """
    if not source or stats.empty:
        return []
    try:
        rows = load_runtime_rows(source)
    except VitbenchError:
        return []
    if suite:
        rows = rows.loc[rows["suite"] == suite]
    rows = rows.loc[rows["selection"].fillna("scored") == selection]
    if rows.empty:
        return []
    s = speedups(rows).sort_values("measured_at", kind="stable", na_position="first")
    key = ["model", "method", "setting", "runtime", "batch_size"]
    latest = {tuple(r[k] for k in key): r for r in s.to_dict("records")}
    combos = sorted(
        {(str(r), int(b)) for r, b in zip(s["runtime"], s["batch_size"])},
        key=lambda c: (_ORDER.get(c[0], 9), c),
    )
    cols = []
    for runtime, bs in combos:
        raw, shown = [], []
        for model, method, setting in zip(stats["model"], stats["method"], stats["setting"]):
            r = latest.get((model, method, setting, runtime, bs))
            raw.append(np.nan if r is None else float(r["speedup"]))
            shown.append(_realized_cell(r))
        if any(c != NA for c in shown):
            cols.append(Col(f"{runtime} b{bs} speedup (GMACs ratio)", raw, shown))
    return cols


def _realized_cell(r: dict[str, Any] | None) -> str:
    if r is None or r["method"] == "dense":
        return NA
    if r["error"]:
        return "not exportable"
    if not bool(r["equal"]):
        return "≠ eager"
    if not np.isfinite(float(r["speedup"])):
        return NA
    cell = f"{float(r['speedup']):.2f} ({fmt_num(r['gmacs_ratio'])})"
    return cell + " slower" if r["status"] == "slower than dense" else cell


def plot_runtimes(df: pd.DataFrame, path: str | Path, model: str | None = None) -> Path:
    """Save the realized-vs-ideal speedup figure (:func:`runtimes_figure`) to ``path`` (.png/.svg/.pdf)."""
    figure_kind(Path(path))
    return save_figure(runtimes_figure(df, model), path)


#: One colour per runtime in the runtimes figure (methods are the x axis there).
RUNTIME_COLORS = {"eager": "#7f7f7f", "compile": "#1f77b4", "onnxruntime": "#2ca02c", "openvino": "#9467bd"}


@with_style
def runtimes_figure(df: pd.DataFrame, model: str | None = None) -> Any:
    """Realized vs ideal speedup: a panel per batch size, a group of bars per method setting.

    Each bar is the realized speedup over dense in one runtime (colour), with the interquartile
    range of the per-round ratios as its error bar; the black tick over a group is the ideal
    speedup (GMACs ratio) and the dashed line is dense speed (below it: slower than dense).
    A setting not equal to eager, or not exportable, in a runtime has no bar there and is
    marked ``≠`` at the bottom: its speed is not a result.
    """
    s = speedups(df, model)
    s = s.loc[s["method"] != "dense"]
    if s.empty:
        raise VitbenchError("no non-dense settings to plot; measure a method besides dense")
    from matplotlib.figure import Figure

    sizes = sorted(int(b) for b in s["batch_size"].unique())
    variants = list(dict.fromkeys(f"{m} {st}".strip() for m, st in zip(s["method"], s["setting"])))
    runtimes = sorted(s["runtime"].unique(), key=lambda r: _ORDER.get(str(r), 9))
    width = 0.8 / len(runtimes)
    fig = Figure(figsize=(max(5.0, 1.1 * len(variants) * len(sizes) + 2.5), 4.2))
    finite = s["speedup"].astype(float).dropna()
    top = float(max([*finite.tolist(), *s["gmacs_ratio"].dropna().tolist(), 1.0])) * 1.25
    for k, bs in enumerate(sizes):
        ax = fig.add_subplot(1, len(sizes), k + 1, sharey=fig.axes[0] if k else None)
        part = s.loc[s["batch_size"] == bs]
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--", zorder=1, label="dense speed")
        for vi, var in enumerate(variants):
            rows = part.loc[[f"{m} {st}".strip() == var for m, st in zip(part["method"], part["setting"])]]
            if rows.empty:
                continue
            ideal = float(rows["gmacs_ratio"].iloc[0])
            ax.hlines(ideal, vi - 0.45, vi + 0.45, color="black", lw=2, zorder=3, label="ideal (GMACs ratio)")
            for ri, rt in enumerate(runtimes):
                r = rows.loc[rows["runtime"] == rt]
                x = vi - 0.4 + width * (ri + 0.5)
                if r.empty:
                    continue
                r = r.iloc[0]
                if not np.isfinite(float(r["speedup"])):
                    ax.text(
                        x,
                        0.02 * top,
                        "≠",
                        ha="center",
                        va="bottom",
                        fontsize=14,
                        color=RUNTIME_COLORS.get(rt, "k"),
                    )
                    continue
                err = np.array([[r["speedup"] - r["speedup_q1"]], [r["speedup_q3"] - r["speedup"]]])
                ax.bar(
                    x, r["speedup"], width * 0.9, yerr=np.clip(err, 0, top), capsize=2,
                    color=RUNTIME_COLORS.get(rt, "0.5"), label=rt, zorder=2,
                )  # fmt: skip
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels([v.replace(" ", "\n", 1).replace(", ", "\n") for v in variants], fontsize=7)
        ax.set_ylim(0, top)
        if k == 0:
            ax.set_ylabel("speedup over dense, same runtime")
        ax.set_title(f"batch {bs}", fontsize=9)
    names = ", ".join(sorted(set(s["model"])))
    threads = thread_count(", ".join(str(int(t)) for t in sorted(set(s["threads"]))))
    fig.suptitle(
        f"{names}: realized (bars, IQR over rounds) vs ideal (black) speedup, {threads}; "
        "≠: not equal to eager",
        fontsize=8,
    )
    seen: dict[str, Any] = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    legend_outside(fig.axes[-1], list(seen.values()), list(seen))
    return fig
