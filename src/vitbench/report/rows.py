"""Row selection shared by every table and view.

Successful records, filters, seed statistics and the columns that name a population.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vitbench.core.errors import VitbenchError
from vitbench.core.method_index import method_info
from vitbench.report.format import NA, Col
from vitbench.report.names import image_set_footnote, image_set_names
from vitbench.report.population import (
    MEASURED,
    POPULATION,
    mask_cost_only,
    normalise,
    population_keys,
    seeds_note,
)
from vitbench.store.records import current_records, fold_calibration

REQUIRED_COLUMNS = (
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


DENSE = "dense"


def source_name(df: pd.DataFrame) -> str:
    """Where ``df`` was loaded from (its ``source`` attribute), for messages."""
    return str(df.attrs.get("source", "the results frame"))


def successful_rows(
    df: pd.DataFrame,
    required: tuple[str, ...] | list[str] = REQUIRED_COLUMNS,
    numeric: tuple[str, ...] = ("keep_ratio", "level", "top1", "gmacs", "params_m", "img_per_s"),
) -> pd.DataFrame:
    """Copy of the successful rows with normalised columns; raises if there are none.

    Every :data:`vitbench.report.population.MEASURED` column is present (defaults for older frames),
    ``numeric`` columns become float64 (NaN when absent), clean rows have level 0, rows pruned
    on noisy calibration images are kept apart (:func:`vitbench.store.records.fold_calibration`), rows
    of an earlier method version are left out and rows on different weight contents or label orders
    kept apart (:func:`vitbench.store.records.current_records`), and
    cost-only rows have no accuracy (:func:`vitbench.report.population.mask_cost_only`). Shared with
    :mod:`vitbench.report.robustness`.
    """
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise VitbenchError(
            f"results frame lacks column(s) {', '.join(missing)}; load it with vitbench.load_results"
        )
    df, _notes = current_records(df)  # the CLI prints the notes once when it loads the store
    ok = fold_calibration(df.loc[df["error"].isna()].copy())
    if ok.empty:
        raise VitbenchError(f"no successful records in {source_name(df)}; run `vitbench run` first")
    ok = normalise(ok)
    for col in numeric:
        ok[col] = pd.to_numeric(ok[col], errors="coerce").astype("float64") if col in ok else math.nan
    for col in ("top1_ci_low", "top1_ci_high"):
        ok[col] = pd.to_numeric(ok[col], errors="coerce").astype("float64") if col in ok else math.nan
    return mask_cost_only(ok)


def reuse_note(rows: pd.DataFrame) -> str:
    """``"keep 1.0 of evit, tome: the dense record (identical by the method contract), not re-run"``.

    Empty when no row of ``rows`` reuses a dense record (``reused_from``, see
    :func:`vitbench.harness.runner.dense_twin`).
    """
    if "reused_from" not in rows:
        return ""
    reused = rows["reused_from"].notna()
    if not bool(reused.any()):
        return ""
    methods = ", ".join(sorted({str(m) for m in rows.loc[reused, "method"]}))
    return f"keep 1.0 of {methods}: the dense record (identical by the method contract), not re-run"


def calibration_note(rows: pd.DataFrame) -> str:
    """``"channel methods pruned on 256 train images (drawn with the cell's seed)"`` (empty: none)."""
    if "calib_images" not in rows or "calib_split" not in rows:
        return ""
    have = rows["calib_images"].notna()
    if not bool(have.any()):
        return ""
    pairs = sorted(
        {(int(n), str(s)) for n, s in zip(rows.loc[have, "calib_images"], rows.loc[have, "calib_split"])}
    )
    what = " or ".join(f"{n} {s} images" for n, s in pairs)
    return f"channel methods pruned on {what} (drawn with the cell's seed; calibration noise in Setting)"


def filters_text(model: str | None, noise: str | None, level: float | None, selection: str | None) -> str:
    """The active filters as ``model=..., noise=...@level, selection=...`` for messages."""
    parts = [f"model={model}"] if model is not None else []
    if noise is not None:
        parts.append("noise=clean" if noise == "clean" else f"noise={noise}@{level:g}")
    if selection is not None:
        parts.append(f"selection={selection}")
    return ", ".join(parts)


def method_selections(method: str) -> tuple[str, ...]:
    """Selection modes a registered method supports (both when it is not registered here)."""
    info = method_info(method)
    return info.selections if info is not None else ("scored", "random")


def only_model(ok: pd.DataFrame, model: str | None, df: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``ok`` for ``model`` (all rows for ``None``); ``df`` names the source in the error.

    Raises:
        VitbenchError: ``model`` has no successful record (the message lists the models that do).
    """
    if model is None:
        return ok
    if model not in set(ok["model"]):
        raise VitbenchError(
            f"no successful records for model '{model}' in {source_name(df)}; "
            f"available: {', '.join(sorted(set(ok['model'])))}"
        )
    return ok.loc[ok["model"] == model]


def select_rows(
    df: pd.DataFrame,
    model: str | None,
    noise: str | None = "clean",
    level: float = 0.0,
    selection: str | None = "scored",
) -> pd.DataFrame:
    """Successful rows filtered by model, noise condition and selection (dense always kept)."""
    ok = successful_rows(df)
    ok = only_model(ok, model, df)
    if noise is not None:
        if noise == "clean":
            ok = ok.loc[ok["noise"] == "clean"]
        else:
            ok = ok.loc[(ok["noise"] == noise) & np.isclose(ok["level"].to_numpy(), level)]
    if selection is not None:
        # methods that cannot run in the requested mode (dense; random-tokens is random by
        # construction) are shown in the mode they have, so baselines stay in every table
        fixed = {m for m in set(ok["method"]) if selection not in method_selections(m)}
        ok = ok.loc[(ok["selection"] == selection) | (ok["method"] == DENSE) | ok["method"].isin(fixed)]
    if ok.empty:
        raise VitbenchError(
            f"no successful records in {source_name(df)} match "
            f"{filters_text(model, noise, level, selection)}; "
            "check the filters or run `vitbench run` first"
        )
    return ok.copy()


def seed_stats(frame: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean (and std, count) over seeds of the numeric columns per measured configuration.

    ``keys`` default to :data:`vitbench.report.population.MEASURED` (every column that defines what
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


ORDER_KEYS = ("suite", *POPULATION)


def order_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by population, dense first, method, keep ratio descending, setting, selection."""
    keyed = frame.assign(_not_dense=frame["method"] != DENSE)
    cols = (*ORDER_KEYS, "_not_dense", "method", "keep_ratio", "setting", "selection")
    by = [c for c in cols if c in keyed]
    ascending = [c not in ("keep_ratio", "selection") for c in by]
    return keyed.sort_values(by, ascending=ascending, kind="mergesort").drop(columns="_not_dense")


def images_text(n: Any, digest: Any) -> str:
    """``"1000 (3fa2c1d0)"``: sample count and the first 8 chars of the sample-ids hash."""
    count = "" if n is None or pd.isna(n) else str(int(n))
    if not digest:
        return count
    return f"{count} ({str(digest)[:8]})" if count else str(digest)[:8]


def lead_columns(frame: pd.DataFrame) -> list[Col]:
    """Population columns (suite, model, weights, dataset, split, images), those that vary only."""
    cols = []
    for key, header in (
        ("suite", "Suite"),
        ("model_shown" if "model_shown" in frame else "model", "Model"),
        ("weights", "Weights"),
        ("dataset", "Dataset"),
        ("split", "Split"),
        ("data_split", "Split"),
    ):
        if key in frame and frame[key].nunique() > 1:
            values = list(frame[key])
            cols.append(Col(header, values, [str(v) for v in values], numeric=False))
    if "sample_ids_hash" in frame and frame["sample_ids_hash"].nunique() > 1:
        counts = list(frame["n_samples"]) if "n_samples" in frame else [None] * len(frame)
        shown = [images_text(n, h) for n, h in zip(counts, frame["sample_ids_hash"])]
        cols.append(Col("Images", list(frame["sample_ids_hash"]), shown, numeric=False))
    return cols


def reference_top1(stats: pd.DataFrame, ok: pd.DataFrame, column: str = "top1") -> list[float]:
    """Per row of ``stats``: mean ``column`` of the dense rows of ``ok`` on the same population."""
    dense = ok.loc[ok["method"] == DENSE]
    means: dict[tuple, list[float]] = {}
    for key, value in zip(population_keys(dense), dense[column]):
        means.setdefault(key, []).append(float(value))
    ref = {k: float(np.mean(v)) for k, v in means.items()}
    return [ref.get(k, math.nan) for k in population_keys(stats)]


def ci_text(lo: Any, hi: Any) -> str:
    """A 95 % CI as ``[lo, hi]``; ``–`` when either bound is missing."""
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return NA
    return f"[{float(lo):.1f}, {float(hi):.1f}]"


def caption_text(stats: pd.DataFrame, extra: str = "") -> str:
    """One-line caption: what Top-1 averages (seeds) and any extra note."""
    note = f"Top-1 (%): {seeds_note(stats['n'])}" if "n" in stats and len(stats) else ""
    return "; ".join(p for p in (note, extra) if p) + ("." if note or extra else "")


ImageSets = dict[tuple[str, str, str], str]


def _split_column(frame: pd.DataFrame) -> str:
    return "split" if "split" in frame else "data_split"


def image_sets(ok: pd.DataFrame) -> ImageSets:
    """Names of the image sets of ``ok`` by (dataset, split, hash): suite(s) and image count.

    ``ok``: records (``split`` or, in robustness frames, ``data_split``), see
    :func:`vitbench.report.names.image_set_names`.
    """
    split = _split_column(ok)
    suites = list(ok["suite"]) if "suite" in ok else [""] * len(ok)
    counts = list(ok["n_samples"]) if "n_samples" in ok else [None] * len(ok)
    return image_set_names(zip(ok["dataset"], ok[split], ok["sample_ids_hash"], counts, suites))


def _set_keys(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    split = _split_column(frame)
    return [
        (str(d), str(s), str(h)) for d, s, h in zip(frame["dataset"], frame[split], frame["sample_ids_hash"])
    ]


def population_labels(frame: pd.DataFrame, sets: ImageSets) -> list[str]:
    """Per row, its population as a reader names it: only the parts that vary between rows.

    Parts: the model (:func:`vitbench.report.names.model_title`), the weights file name, the
    image set (``"demo, 1000 images"``, see :func:`image_sets`); ``""`` when all rows share one
    population.
    """
    keys = _set_keys(frame)
    model = frame["model_shown"] if "model_shown" in frame else frame["model"]
    weights = [str(w).replace("\\", "/").rsplit("/", 1)[-1] for w in frame["weights"]]
    columns = [list(map(str, model)), weights, [sets.get(k, k[2][:8]) for k in keys]]
    varying = [c for c in columns if len(set(c)) > 1]
    return [", ".join(c[i] for c in varying) for i in range(len(frame))]


def images_footnote(frame: pd.DataFrame, sets: ImageSets) -> str:
    """The footnote naming the image sets of ``frame``'s rows with their ids hash."""
    used = set(_set_keys(frame))
    return image_set_footnote({k: v for k, v in sets.items() if k in used})


def adaptive_note(frame: pd.DataFrame) -> str:
    """One line naming the adaptive methods of ``frame`` (per-image token counts or GMACs), else ``""``.

    Their records carry ``gmacs`` as the mean over the evaluated images and the distribution in
    ``gmacs_p10/p50/p90`` (:mod:`vitbench.store.records`); tables and plots place them at the mean.
    """
    if "gmacs_p50" not in frame or frame.empty:
        return ""
    rows = frame.loc[frame["gmacs_p50"].notna()]
    if rows.empty:
        return ""
    methods = sorted(set(rows["method"].astype(str)))
    if {"tokens_p10", "tokens_p90"} <= set(rows.columns):  # PPT: same tokens, per-image operation
        spread = rows["tokens_p10"].astype(str) != rows["tokens_p90"].astype(str)
        tokens = sorted(set(rows.loc[spread, "method"].astype(str)))
    else:
        tokens = methods
    same = [m for m in methods if m not in tokens]
    parts = [f"{', '.join(tokens)}: tokens per image vary"] if tokens else []
    parts += [f"{', '.join(same)}: GMACs per image vary (same tokens, per-image operation)"] if same else []
    return (
        "; ".join(parts)
        + ", placed at the mean GMACs over the evaluated images (records keep the p10/p50/p90)"
    )
