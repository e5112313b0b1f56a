"""What one table row measured: the columns that keep populations apart in every view.

A row of any vitbench table, view or plot is one *measured configuration*: rows of the records
frame that agree on every column of :data:`MEASURED` differ only by seed and are averaged (the
tables say "mean of N seeds"); rows that differ in any of them are never averaged. A reference
(the ``dense`` model for ΔTop-1, mCE, ...) is looked up on the same :data:`POPULATION` -- the
same model and weights on the same images (dataset, split, sample-ids hash) under the same
noise -- and never by suite name: cell keys ignore the suite, so one suite legitimately reuses
the dense record another suite wrote on the same population.

Cost-only cells (random weights or synthetic images, e.g. suite ``paper-deit-s``) measure GMACs,
parameters and throughput only: :func:`mask_cost_only` blanks their accuracy columns so no
table prints a meaningless top-1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from vitbench.report.names import model_titles

#: The images and network one cell saw; references are matched on exactly these columns.
POPULATION: tuple[str, ...] = (
    "model",
    "model_shown",
    "weights",
    "dataset",
    "split",
    "sample_ids_hash",
    "noise",
    "level",
)
#: Everything that defines what a row measured (seed excluded: rows equal on these are seeds).
MEASURED: tuple[str, ...] = (
    "suite",
    "model",
    "model_shown",
    "weights",
    "dataset",
    "split",
    "sample_ids_hash",
    "selection",
    "noise",
    "level",
    "calib_noise",
    "calib_level",
    "method",
    "setting",
    "keep_ratio",
)
#: Text defaults for columns absent from (or null in) frames written by older versions.
TEXT_DEFAULTS: dict[str, str] = {
    "suite": "",
    "model": "",
    "weights": "",
    "dataset": "",
    "split": "",
    "sample_ids_hash": "",
    "method": "",
    "setting": "",
    "noise": "clean",
    "selection": "scored",
    "calib_noise": "clean",
    "model_args": "",
    "model_label": "",
}
#: Datasets whose images carry no label information (cost measurements only).
COST_ONLY_DATASETS: tuple[str, ...] = ("synthetic",)
#: Accuracy columns blanked on cost-only cells.
ACCURACY_COLUMNS: tuple[str, ...] = ("top1", "top5", "nll", "ece", "top1_ci_low", "top1_ci_high")


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with every :data:`MEASURED` column present (text defaults, levels 0 when clean)."""
    out = frame.copy()
    for col, default in TEXT_DEFAULTS.items():
        if col not in out:
            out[col] = default
        out[col] = out[col].astype(object).where(out[col].notna(), default).astype(str)
    for col in ("level", "calib_level", "keep_ratio"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64") if col in out else 0.0
    out["level"] = out["level"].where(out["noise"] != "clean", 0.0).fillna(0.0)
    out["calib_level"] = out["calib_level"].where(out["calib_noise"] != "clean", 0.0).fillna(0.0)
    out["model_shown"] = model_titles(out["model"], out["model_args"], out["model_label"])
    if "n_samples" not in out:
        out["n_samples"] = pd.NA
    return out


def cost_only(frame: pd.DataFrame) -> pd.Series:
    """Boolean mask of cost-only rows: ``weights == "random"`` or a synthetic dataset."""
    weights = frame["weights"].astype(str) if "weights" in frame else pd.Series("", index=frame.index)
    dataset = frame["dataset"].astype(str) if "dataset" in frame else pd.Series("", index=frame.index)
    return (weights == "random") | dataset.isin(COST_ONLY_DATASETS)


def mask_cost_only(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose cost-only rows have NaN in every accuracy column (never a printed 0.00)."""
    mask = cost_only(frame)
    if not bool(mask.any()):
        return frame
    out = frame.copy()
    for col in ACCURACY_COLUMNS:
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64").where(~mask, math.nan)
    return out


def population_key(row: pd.Series | dict) -> tuple:
    """The :data:`POPULATION` tuple of one row (levels rounded to 6 decimals)."""
    return tuple(round(float(row[c]), 6) if c == "level" else str(row[c]) for c in POPULATION)


def population_keys(frame: pd.DataFrame) -> list[tuple]:
    """:func:`population_key` of every row, in order."""
    cols = [frame[c] for c in POPULATION]
    return [
        tuple(round(float(v), 6) if c == "level" else str(v) for c, v in zip(POPULATION, vals))
        for vals in zip(*cols)
    ]


def restrict_suite(df: pd.DataFrame, suite: str) -> pd.DataFrame:
    """Rows of ``suite`` plus the dense rows it reuses from other suites on the same population.

    Cell keys ignore the suite, so running suite B after suite A resumes A's dense record
    instead of re-evaluating it; that record belongs to B's tables too. Dense rows of other
    suites whose :data:`POPULATION` equals that of a row of ``suite`` are kept and relabelled
    with ``suite``. ``attrs`` are preserved.
    """
    if "suite" not in df:
        return df
    mine = df["suite"].astype(object) == suite
    if not bool(mine.any()):
        return df.loc[mine]
    norm = normalise(df)
    keys = population_keys(norm)
    wanted = {k for k, m in zip(keys, mine) if m}
    borrowed = np.array(
        [(not m) and meth == "dense" and k in wanted for k, m, meth in zip(keys, mine, norm["method"])],
        dtype=bool,
    )
    out = df.loc[mine.to_numpy() | borrowed].copy()
    out.loc[borrowed[mine.to_numpy() | borrowed], "suite"] = suite
    out.attrs = dict(df.attrs)
    return out


def seeds_note(counts: Iterable[int]) -> str:
    """``"mean of 3 seeds"``, ``"one seed"`` or ``"mean of 1-3 seeds (column Seeds)"``."""
    ns = sorted({int(n) for n in counts})
    if not ns:
        return ""
    if len(ns) == 1:
        return "one seed per row" if ns[0] == 1 else f"mean ± std of {ns[0]} seeds"
    return f"mean of {ns[0]}-{ns[-1]} seeds (column Seeds)"
