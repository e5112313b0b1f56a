"""Corruption-robustness metrics: pure functions of a records DataFrame (see :func:`load_results`).

Definitions (Hendrycks & Dietterich, ICLR 2019; ``references/peers.md`` §4.1). With
E^f_{s,c} the top-1 error (%) of configuration f on corruption c at severity s (mean over
seeds) and E^f_clean its clean error:

* CE^f_c = Σ_s E^f_{s,c} / Σ_s E^ref_{s,c};  mCE = mean of CE^f_c over the corruptions;
* relative CE^f_c = Σ_s (E^f_{s,c} − E^f_clean) / Σ_s (E^ref_{s,c} − E^ref_clean);
  relative mCE = mean over the corruptions;
* both reported in percent (x100).

The reference ``ref`` is, by default, the ``dense`` method of the same model on the same images
(weights, dataset, split, sample-ids hash: never another population), so a
compressed model's mCE says how much compression costs in robustness (the dense model scores
100). With ``reference="alexnet"`` it is AlexNet on ImageNet-C (:data:`ALEXNET_ERROR`, mapped by
name): meaningful only for ImageNet-1k models evaluated on ImageNet(-C) images.

mCE averages the 15 ImageNet-C *test* corruptions (``split="test"``); the 4 validation ones
never enter it unless ``split="all"`` is asked for. A configuration missing a severity or a
corruption that its reference has gets no CE for it (NaN) and no mCE, rather than a silently
biased one. Continuous-level noises (``gaussian-sigma``, ``salt-pepper``, ``uniform-noise``)
are summarised by :func:`level_curves` instead.

In-memory corruptions are "ImageNet-C-style", not the released ImageNet-C JPEG files: label
them so (:data:`IN_MEMORY_LABEL`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from vitbench.core.errors import VitbenchError
from vitbench.data.noise import CORRUPTIONS, FAMILIES, NOISES, corruption_names
from vitbench.report.rows import only_model, source_name, successful_rows
from vitbench.store.records import with_curves

DENSE = "dense"
#: Columns that identify one evaluated configuration (a row of the robustness leaderboard): the
#: model and the images it saw (see :mod:`vitbench.report.population`) and the method variant. Rows
#: that differ in any are never averaged; only seeds are.
CONFIG = [
    "model",
    "model_shown",
    "weights",
    "dataset",
    "data_split",
    "sample_ids_hash",
    "method",
    "setting",
    "keep_ratio",
    "selection",
]
#: The model and images a reference (dense) must share with a configuration.
#: (``data_split`` is the records' dataset ``split``, renamed: ``split`` here names the ImageNet-C
#: corruption split, test or validation.)
POP = ["model", "model_shown", "weights", "dataset", "data_split", "sample_ids_hash"]
IN_MEMORY_LABEL = (
    "ImageNet-C-style corruptions computed in memory (imagecorruptions), not the ImageNet-C files"
)

#: AlexNet top-1 error on ImageNet-C per test corruption, mean over the 5 severities (fraction).
#: Source: the canonical constants of hendrycks/robustness (ImageNet-C results), as copied in
#: google-research/augmix ``imagenet.py`` (``ALEXNET_ERR``) and mmpretrain's ``CorruptionError``;
#: see references/peers.md §4.1. Mapped by name, never by position.
ALEXNET_ERROR: dict[str, float] = {
    "gaussian-noise": 0.886428,
    "shot-noise": 0.894468,
    "impulse-noise": 0.922640,
    "defocus-blur": 0.819880,
    "glass-blur": 0.826268,
    "motion-blur": 0.785948,
    "zoom-blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic-transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg-compression": 0.606500,
}
#: AlexNet clean top-1 error on ImageNet val (fraction); google-research/robustness_metrics.
ALEXNET_CLEAN_ERROR = 0.4348
REFERENCES = ("dense", "alexnet")
_SEVERITIES = (1.0, 2.0, 3.0, 4.0, 5.0)


def alexnet_error(corruption: str) -> float:
    """AlexNet mean error (fraction) of a corruption given by registry or ImageNet-C name.

    Raises:
        VitbenchError: the corruption has no AlexNet constant (a validation or non-ImageNet-C noise).
    """
    key = corruption.replace("_", "-")
    if key not in ALEXNET_ERROR:
        raise VitbenchError(
            f"no AlexNet error constant for '{corruption}'; only the 15 ImageNet-C test corruptions have one"
        )
    return ALEXNET_ERROR[key]


# -- frame preparation -----------------------------------------------------------------------------


def robust_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Successful rows with normalised columns (:func:`vitbench.report.rows.successful_rows`)."""
    required = [c for c in CONFIG if c not in ("model_shown", "weights", "data_split", "sample_ids_hash")]
    ok = successful_rows(
        df,
        required=[*required, "noise", "level", "seed", "top1", "error"],
        numeric=("keep_ratio", "level", "top1", "gmacs", "top1_ci_low", "top1_ci_high"),
    )
    return ok.rename(columns={"split": "data_split"})


def select_records(df: pd.DataFrame, model: str | None = None, selection: str | None = None) -> pd.DataFrame:
    """Successful records (normalised copy) of ``model`` and ``selection`` (dense rows always kept).

    Raises:
        VitbenchError: missing columns, no successful records, unknown model or selection.
    """
    return _filter(robust_rows(df), model, selection, df)


def _filter(ok: pd.DataFrame, model: str | None, selection: str | None, df: pd.DataFrame) -> pd.DataFrame:
    ok = only_model(ok, model, df)
    if selection is not None:
        if selection not in ("scored", "random"):
            raise VitbenchError(f"selection '{selection}' is not 'scored' or 'random'")
        ok = ok.loc[(ok["selection"] == selection) | (ok["method"] == DENSE)]
    return ok


def _means(ok: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (configuration, noise, level): top-1, error and CI, in percent."""
    g = ok.groupby([*CONFIG, "noise", "level"], dropna=False, sort=False)
    out = g.agg(
        top1=("top1", "mean"),
        top1_std=("top1", "std"),
        n_seeds=("top1", "size"),
        n_samples=("n_samples", "first"),
        top1_ci_low=("top1_ci_low", "mean"),
        top1_ci_high=("top1_ci_high", "mean"),
        gmacs=("gmacs", "mean"),
    ).reset_index()
    out["err"] = 100.0 - out["top1"]
    out["err_ci_low"] = 100.0 - out["top1_ci_high"]
    out["err_ci_high"] = 100.0 - out["top1_ci_low"]
    return out


# -- public API ------------------------------------------------------------------------------------


def corruption_errors(
    df: pd.DataFrame, model: str | None = None, selection: str | None = "scored", split: str = "all"
) -> pd.DataFrame:
    """Top-1 error per configuration, ImageNet-C corruption and severity (mean over seeds).

    Args:
        df: records frame.
        model: restrict to one model.
        selection: ``scored`` / ``random`` token selection (dense rows always kept); ``None``: both.
        split: corruptions to list: ``test`` (15), ``validation`` (4) or ``all`` (19).

    Returns:
        One row per (model, dataset, method, setting, keep_ratio, selection, noise, level) with
        ``family``, ``split``, ``top1``, ``top1_std``, ``n_seeds``, ``err`` (= 100 − top1),
        ``err_ci_low``/``err_ci_high`` (from the records' bootstrap CI of top-1), ``gmacs``,
        ``clean_top1`` and ``drop`` (= clean top-1 − top-1; NaN without a clean record).

    Raises:
        VitbenchError: no successful records, or no ImageNet-C corruption records match.
    """
    ok = _filter(robust_rows(df), model, selection, df)
    names = set(corruption_names(split))
    means = _means(ok)
    clean = means.loc[means["noise"] == "clean", [*CONFIG, "top1"]].rename(columns={"top1": "clean_top1"})
    out = means.loc[means["noise"].isin(names)].merge(clean, on=CONFIG, how="left")
    if out.empty:
        raise VitbenchError(
            f"no ImageNet-C corruption records ({split} split) in {source_name(df)}; "
            "run a suite such as benchmark/noise-robustness.yaml"
        )
    out["family"] = [CORRUPTIONS[n.replace("-", "_")][0] for n in out["noise"]]
    out["split"] = [CORRUPTIONS[n.replace("-", "_")][1] for n in out["noise"]]
    out["drop"] = out["clean_top1"] - out["top1"]
    return out.sort_values([*CONFIG, "noise", "level"], kind="mergesort").reset_index(drop=True)


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 and math.isfinite(den) and math.isfinite(num) else math.nan


def ce_table(
    df: pd.DataFrame,
    model: str | None = None,
    selection: str | None = "scored",
    reference: str = "dense",
    split: str = "all",
) -> pd.DataFrame:
    """CE and relative CE per configuration and corruption, in percent.

    Args:
        df: records frame.
        model: restrict to one model.
        selection: token selection of the compressed methods (``None``: both).
        reference: ``dense`` (the dense method of the same model and dataset) or ``alexnet``
            (:data:`ALEXNET_ERROR`; needs all 5 severities).
        split: corruptions to include (``test``, ``validation``, ``all``).

    Returns:
        One row per (configuration, corruption): ``family``, ``split``, ``n_levels``,
        ``mean_err`` (mean over severities), ``clean_err``, ``ce``, ``rel_ce`` (NaN where a
        severity of the reference is missing or the denominator is 0).

    Raises:
        VitbenchError: unknown ``reference``, or no corruption records.
    """
    if reference not in REFERENCES:
        raise VitbenchError(f"unknown mCE reference '{reference}'; use dense or alexnet")
    errs = corruption_errors(df, model, selection, split)
    ok = _filter(robust_rows(df), model, selection, df)
    means = _means(ok)
    clean_err = {
        tuple(k): float(v)
        for k, v in zip(
            means.loc[means["noise"] == "clean", CONFIG].itertuples(index=False, name=None),
            means.loc[means["noise"] == "clean", "err"],
        )
    }
    dense_rows = errs.loc[errs["method"] == DENSE]
    dense = {
        tuple(k): grp.groupby("level")["err"].mean()
        for k, grp in dense_rows.groupby([*POP, "noise"], sort=False, dropna=False)
    }
    dense_clean = {
        tuple(k): float(v)
        for k, v in means.loc[(means["method"] == DENSE) & (means["noise"] == "clean")]
        .groupby(POP, dropna=False)["err"]
        .mean()
        .items()
    }
    at = [CONFIG.index(c) for c in POP]
    rows = []
    for key, grp in errs.groupby([*CONFIG, "noise"], sort=False, dropna=False):
        cfg, noise = tuple(key[:-1]), str(key[-1])
        pop = tuple(cfg[i] for i in at)
        mine = grp.set_index("level")["err"]
        e_clean = clean_err.get(cfg, math.nan)
        if reference == "dense":
            ref = dense.get((*pop, noise))
            ref_clean = dense_clean.get(pop, math.nan)
            if ref is None or not set(ref.index) <= set(mine.index):
                ce = rce = math.nan
            else:
                levels = list(ref.index)
                ce = _ratio(float(mine[levels].sum()), float(ref.sum()))
                rce = _ratio(float((mine[levels] - e_clean).sum()), float((ref - ref_clean).sum()))
        else:
            have_all = set(_SEVERITIES) <= set(mine.index)
            a = ALEXNET_ERROR.get(noise)
            if a is None or not have_all:
                ce = rce = math.nan
            else:
                mean_err = float(mine[list(_SEVERITIES)].mean()) / 100.0
                ce = _ratio(mean_err, a)
                rce = _ratio(mean_err - e_clean / 100.0, a - ALEXNET_CLEAN_ERROR)
        family, csplit = CORRUPTIONS[noise.replace("-", "_")]
        rows.append(
            {
                **dict(zip(CONFIG, cfg)),
                "noise": noise,
                "family": family,
                "split": csplit,
                "n_levels": len(mine),
                "n_samples": grp["n_samples"].iloc[0],
                "n_seeds": int(grp["n_seeds"].max()),
                "mean_err": float(mine.mean()),
                "clean_err": e_clean,
                "ce": 100.0 * ce,
                "rel_ce": 100.0 * rce,
                "gmacs": float(grp["gmacs"].mean()),
            }
        )
    return pd.DataFrame(rows)


def mce_table(
    df: pd.DataFrame,
    model: str | None = None,
    selection: str | None = "scored",
    reference: str = "dense",
    split: str = "test",
) -> pd.DataFrame:
    """mCE, relative mCE and family mCEs per configuration (one leaderboard row each).

    Args:
        df: records frame.
        model: restrict to one model.
        selection: token selection of the compressed methods (``None``: both).
        reference: ``dense`` or ``alexnet`` (see :func:`ce_table`).
        split: corruptions averaged: ``test`` (the 15 of mCE), ``validation`` or ``all``.

    Returns:
        One row per configuration with ``clean_top1``, ``gmacs``, ``n_corruptions``, ``mce``,
        ``rel_mce``, ``mce_noise`` / ``mce_blur`` / ``mce_weather`` / ``mce_digital`` (mean CE
        of the family's corruptions), ``mca`` (mean top-1 over every corruption x severity),
        ``drop`` (clean top-1 − mca) and ``retention`` (mca / clean top-1). mCE is NaN when the
        configuration lacks a corruption or severity that its reference has.

    Raises:
        VitbenchError: bad ``reference``/``split``, or no corruption records of ``split``.
    """
    names = corruption_names(split)
    ce = ce_table(df, model, selection, reference, split)
    ce = ce.loc[ce["noise"].isin(names)]
    errs = corruption_errors(df, model, selection, split)
    ok = _filter(robust_rows(df), model, selection, df)
    means = _means(ok)
    clean = means.loc[means["noise"] == "clean"].set_index(CONFIG)
    # the corruptions each population (model, images) was evaluated on define what mCE averages
    present: dict[tuple, set[str]] = {}
    for pop, n in zip(errs[POP].itertuples(index=False, name=None), errs["noise"]):
        present.setdefault(tuple(pop), set()).add(str(n))
    at = [CONFIG.index(c) for c in POP]
    mca_of: dict[tuple[Any, ...], float] = {
        tuple(k): float(v)  # type: ignore[arg-type]
        for k, v in errs.groupby(CONFIG, sort=False)["top1"].mean().items()
    }
    rows = []
    for key, grp in ce.groupby(CONFIG, sort=False, dropna=False):
        cfg = tuple(key)
        wanted = present.get(tuple(cfg[i] for i in at), set())
        by_noise = grp.set_index("noise")["ce"]
        by_noise_rel = grp.set_index("noise")["rel_ce"]
        complete = wanted <= set(by_noise.index) and not by_noise[list(wanted)].isna().any()
        clean_top1 = float(clean.loc[cfg, "top1"]) if cfg in clean.index else math.nan
        mca = mca_of.get(cfg, math.nan)
        row = {
            **dict(zip(CONFIG, cfg)),
            "clean_top1": clean_top1,
            "gmacs": float(clean.loc[cfg, "gmacs"]) if cfg in clean.index else float(grp["gmacs"].mean()),
            "n_corruptions": len(wanted),
            "n_samples": grp["n_samples"].iloc[0],
            "n_seeds": int(grp["n_seeds"].max()),
            "mce": float(by_noise[list(wanted)].mean()) if complete else math.nan,
            "rel_mce": float(by_noise_rel[list(wanted)].mean()) if complete else math.nan,
        }
        for fam in FAMILIES:
            fam_names = [n for n in wanted if NOISES.get(n).family == fam]
            vals = by_noise.reindex(fam_names)
            row[f"mce_{fam}"] = float(vals.mean()) if fam_names and not vals.isna().any() else math.nan
        row["mca"] = mca
        row["drop"] = clean_top1 - mca
        row["retention"] = mca / clean_top1 if clean_top1 else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    return order_configs(out)


def severity_curves(
    df: pd.DataFrame, model: str | None = None, selection: str | None = "scored", split: str = "test"
) -> pd.DataFrame:
    """Mean top-1 per configuration, family and severity (severity 0 = clean).

    Returns:
        Columns ``CONFIG + [family, level, top1]``; ``family`` is one of :data:`FAMILIES` or
        ``all`` (mean over every corruption of ``split``). Severity-0 rows repeat the clean top-1.

    Raises:
        VitbenchError: no corruption records of ``split``.
    """
    errs = corruption_errors(df, model, selection, split)
    fam = errs.groupby([*CONFIG, "family", "level"], sort=False)["top1"].mean().reset_index()
    every = errs.groupby([*CONFIG, "level"], sort=False)["top1"].mean().reset_index().assign(family="all")
    curves = pd.concat([fam, every], ignore_index=True)
    clean = errs.groupby(CONFIG, sort=False)["clean_top1"].first().reset_index().dropna()
    zeros = [clean.assign(family=f, level=0.0, top1=clean["clean_top1"]) for f in (*FAMILIES, "all")]
    curves = pd.concat([curves, *[z.drop(columns="clean_top1") for z in zeros]], ignore_index=True)
    curves = curves.loc[curves["family"].isin(set(errs["family"]) | {"all"})]
    return curves.sort_values([*CONFIG, "family", "level"], kind="mergesort").reset_index(drop=True)


def level_curves(
    df: pd.DataFrame, noise: str, model: str | None = None, selection: str | None = "scored"
) -> pd.DataFrame:
    """Top-1 vs level of one noise per configuration; level 0 is the clean record.

    Args:
        df: records frame.
        noise: a registered noise (usually a continuous one such as ``gaussian-sigma``).
        model: restrict to one model.
        selection: token selection of the compressed methods (``None``: both).

    Returns:
        Columns ``CONFIG + [level, top1, top1_std, n_seeds, top1_ci_low, top1_ci_high, gmacs]``.
        Clean records enter as level 0 unless the noise itself was run at level 0.

    Raises:
        UnknownNameError: unknown noise. VitbenchError: no records of that noise.
    """
    NOISES.get(noise)
    ok = _filter(robust_rows(df), model, selection, df)
    means = _means(ok)
    mine = means.loc[means["noise"] == noise]
    if mine.empty:
        raise VitbenchError(
            f"no records of noise '{noise}' in {source_name(df)}; "
            "run a suite such as benchmark/noise-levels.yaml"
        )
    clean = means.loc[means["noise"] == "clean"].merge(mine[CONFIG].drop_duplicates(), on=CONFIG)
    has_zero = mine.groupby(CONFIG, sort=False)["level"].agg(lambda s: bool((s == 0).any())).reset_index()
    clean = clean.merge(has_zero.rename(columns={"level": "_zero"}), on=CONFIG)
    clean = clean.loc[~clean["_zero"]].drop(columns="_zero")
    out = pd.concat([mine, clean.assign(level=0.0)], ignore_index=True)
    cols = [*CONFIG, "level", "top1", "top1_std", "n_seeds", "top1_ci_low", "top1_ci_high", "gmacs"]
    return out[cols].sort_values([*CONFIG, "level"], kind="mergesort").reset_index(drop=True)


def selection_deltas(
    df: pd.DataFrame, model: str | None = None, noise: str = "clean", level: float = 0.0
) -> pd.DataFrame:
    """Scored vs random token selection per (method, keep ratio): Δ = top-1 scored − top-1 random.

    A positive Δ means the method's scores beat random selection of the same token count.

    Returns:
        Columns ``model, dataset, method, curve, keep_ratio, gmacs, top1_scored, top1_random,
        std_scored, std_random, seeds_scored, seeds_random, delta``; only pairs with both
        selections and keep ratio < 1.

    Raises:
        VitbenchError: no pairs.
    """
    ok = _filter(robust_rows(df), model, None, df)
    ok = ok.loc[
        (ok["noise"] == noise) & np.isclose(ok["level"].to_numpy(), level if noise != "clean" else 0.0)
    ]
    ok = with_curves(ok.loc[(ok["method"] != DENSE) & ~np.isclose(ok["keep_ratio"].to_numpy(), 1.0)])
    keys = [*POP, "method", "curve", "keep_ratio"]
    g = ok.groupby([*keys, "selection"], sort=False, dropna=False).agg(
        top1=("top1", "mean"),
        std=("top1", "std"),
        seeds=("top1", "size"),
        gmacs=("gmacs", "mean"),
        n_samples=("n_samples", "first"),
    )
    g = g.reset_index()
    scored = g.loc[g["selection"] == "scored"].drop(columns="selection")
    random = g.loc[g["selection"] == "random"].drop(columns=["selection", "gmacs", "n_samples"])
    both = scored.merge(random, on=keys, suffixes=("_scored", "_random"))
    if both.empty:
        cond = "clean" if noise == "clean" else f"{noise}@{level:g}"
        raise VitbenchError(
            f"no method has both scored and random selection records ({cond}) in {source_name(df)}; "
            "run benchmark/random-selection.yaml"
        )
    both["delta"] = both["top1_scored"] - both["top1_random"]
    return both.sort_values(
        [*POP, "curve", "keep_ratio"], ascending=[*(True for _ in POP), True, False]
    ).reset_index(drop=True)


def order_configs(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by model, dataset, dense first, method, keep ratio descending, scored first."""
    keyed = frame.assign(_nd=frame["method"] != DENSE)
    keyed = keyed.sort_values(
        [*POP, "_nd", "method", "keep_ratio", "selection"],
        ascending=[*(True for _ in POP), True, True, False, False],
        kind="mergesort",
    )
    return keyed.drop(columns="_nd").reset_index(drop=True)
