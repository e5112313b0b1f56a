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
from vitbench.report.format import NA, Col, figure_kind, fmt_num, render_table, save_figure
from vitbench.report.plotstyle import legend_outside, method_color, variant_marker, with_style

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
    return render_table(cols, fmt, caption)


def plot_runtimes(df: pd.DataFrame, path: str | Path, model: str | None = None) -> Path:
    """Save the realized-vs-ideal speedup figure (:func:`runtimes_figure`) to ``path`` (.png/.svg/.pdf)."""
    figure_kind(Path(path))
    return save_figure(runtimes_figure(df, model), path)


@with_style
def runtimes_figure(df: pd.DataFrame, model: str | None = None) -> Any:
    """Realized vs ideal speedup: one panel per batch size, a colour per method, a marker per runtime.

    Points on the diagonal turn all saved GMACs into time; below 1 (dashed line) the method is
    slower than dense in that runtime. Settings not equal to eager are left out (their speed is
    not a result). Error bars: interquartile range of the per-round ratios.
    """
    s = speedups(df, model)
    s = s.loc[(s["method"] != "dense") & np.isfinite(s["speedup"].astype(float))]
    if s.empty:
        raise VitbenchError("no timed, equal non-dense settings to plot; measure a method besides dense")
    from matplotlib.figure import Figure

    sizes = sorted(int(b) for b in s["batch_size"].unique())
    fig = Figure(figsize=(4.2 * len(sizes) + 2.0, 4.0))
    runtimes = sorted(s["runtime"].unique(), key=lambda r: _ORDER.get(str(r), 9))
    hi = float(max(s["gmacs_ratio"].max(), s["speedup_q3"].max())) * 1.1
    for k, bs in enumerate(sizes):
        ax = fig.add_subplot(1, len(sizes), k + 1)
        part = s.loc[s["batch_size"] == bs]
        ax.plot([0, hi], [0, hi], color="0.6", lw=0.8, zorder=0, label="ideal (= GMACs ratio)")
        ax.axhline(1.0, color="0.6", lw=0.8, ls="--", zorder=0, label="dense speed")
        for _, r in part.iterrows():
            ri = runtimes.index(r["runtime"])
            err = np.array([[r["speedup"] - r["speedup_q1"]], [r["speedup_q3"] - r["speedup"]]])
            ax.errorbar(
                r["gmacs_ratio"],
                r["speedup"],
                yerr=err,
                marker=variant_marker(ri),
                color=method_color(str(r["method"])),
                ls="none",
                label=f"{r['method']} {r['setting']}, {r['runtime']}",
            )
        ax.set_xlim(0.9, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel("ideal speedup (GMACs ratio)")
        if k == 0:
            ax.set_ylabel("realized speedup over dense, same runtime")
        ax.set_title(f"batch {bs}", fontsize=9)
    names = ", ".join(sorted(set(s["model"])))
    threads = ", ".join(str(int(t)) for t in sorted(set(s["threads"])))
    fig.suptitle(
        f"{names}: realized vs ideal speedup ({threads} thread(s); bars: IQR over rounds)", fontsize=9
    )
    handles, labels = fig.axes[0].get_legend_handles_labels()
    for ax in fig.axes[1:]:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    legend_outside(fig.axes[-1], handles, labels)
    return fig
