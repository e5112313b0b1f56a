"""The result record: one row per evaluated cell, typed, with units in the names.

Accuracy-like numbers (``top1``, ``top5``, ``ece``, CI bounds) are percentages in [0, 100];
``nll`` is in nats per sample; ``gmacs`` are papers'-convention GMACs per image (batch 1);
``params_m`` millions of parameters; ``img_per_s`` images per second at ``batch_size``.
JSON columns hold structured values (native parameters, tokens per block).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitbench.core.registry import METHODS

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1

#: Ordered column name -> SQLite type. ``cell_key`` is unique: re-running a suite resumes.
RECORD_FIELDS: dict[str, str] = {
    "cell_key": "TEXT",
    "suite": "TEXT",
    "model": "TEXT",
    "weights": "TEXT",
    "method": "TEXT",
    "family": "TEXT",
    "params_json": "TEXT",  # native parameters actually used, JSON object
    "setting": "TEXT",  # human-readable native setting, e.g. "r=13" or "keep_rate=0.7"
    "keep_ratio": "REAL",  # requested keep ratio, (0, 1]
    "selection": "TEXT",  # "scored" | "random"
    "noise": "TEXT",  # "clean" or a registered noise name
    "level": "REAL",  # severity (1-5) or continuous level; 0 for clean
    "calib_noise": "TEXT",
    "calib_level": "REAL",
    "seed": "INTEGER",
    "dataset": "TEXT",
    "split": "TEXT",
    "n_samples": "INTEGER",
    "sample_ids_hash": "TEXT",
    "top1": "REAL",
    "top5": "REAL",
    "nll": "REAL",
    "ece": "REAL",
    "top1_ci_low": "REAL",
    "top1_ci_high": "REAL",
    "gmacs": "REAL",
    "params_m": "REAL",
    "img_per_s": "REAL",
    "ms_per_batch": "REAL",
    "batch_size": "INTEGER",
    "throughput_dtype": "TEXT",
    "threads": "INTEGER",  # intra-op CPU threads of the throughput measurement (img_per_s)
    "tokens_per_block": "TEXT",  # JSON list: tokens entering each block (incl. prefix tokens)
    "tokens_kept_frac": "REAL",  # mean over blocks of tokens entering the block / dense tokens
    "wall_s": "REAL",
    "eval_threads": "INTEGER",  # intra-op CPU threads of the evaluation (--threads / auto rule)
    "error": "TEXT",  # one line; NULL when the cell succeeded
    "vitbench_version": "TEXT",
    "torch_version": "TEXT",
    "timm_version": "TEXT",
    "gmacs_counter": "TEXT",  # version of the GMACs counter that produced ``gmacs`` (NULL: before 2)
    "git_commit": "TEXT",
    "device": "TEXT",
    "config_hash": "TEXT",
    "timestamp": "TEXT",
    "model_args": "TEXT",  # JSON object of the model entry's model_args; NULL when none
    "data_config": "TEXT",  # JSON: the data config the images were prepared with
}

JSON_FIELDS = ("params_json", "tokens_per_block", "model_args", "data_config")


def fold_calibration(frame: pd.DataFrame) -> pd.DataFrame:
    """Append ``calib=NAME@LEVEL`` to the setting of rows pruned on noisy calibration images.

    Channel methods repeated over the ``calib_noise`` axis share method, setting and keep ratio;
    with the calibration noise in the setting every table and plot keeps them apart instead of
    averaging them like seeds.
    """
    if "calib_noise" not in frame or frame.empty:
        return frame
    noisy = frame["calib_noise"].notna() & (frame["calib_noise"].astype(str) != "clean")
    if not bool(noisy.any()):
        return frame
    out = frame.copy()
    levels = out.loc[noisy, "calib_level"] if "calib_level" in out else [0.0] * int(noisy.sum())
    tags = [f"calib={n}@{float(v or 0):g}" for n, v in zip(out.loc[noisy, "calib_noise"], levels)]
    base = out.loc[noisy, "setting"].astype(object).where(out.loc[noisy, "setting"].notna(), "-")
    out.loc[noisy, "setting"] = [t if str(b) in ("", "-") else f"{b}, {t}" for b, t in zip(base, tags)]
    return out


def curve_label(method: str, setting: str) -> str:
    """Label of one method variant across keep ratios.

    The method and its settings other than the keep-ratio knob (calibration noise included, see
    :func:`fold_calibration`), e.g. ``"evit fuse_token=False"``,
    ``"nvit finetune_epochs=2, saliency=taylor"``, ``"lfs calib=salt-pepper@0.2"``.

    Tables and plots that draw one curve per method (matched GMACs, Pareto, scored vs random)
    group by this label, so variants are never averaged into one curve.
    """
    knob = METHODS.get(method).knob if method in METHODS else ""
    parts = [
        p
        for p in str(setting or "").split(", ")
        if p and p != "-" and not (knob and p.startswith(f"{knob}="))
    ]
    return method + (" " + ", ".join(parts) if parts else "")


def with_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus a ``curve`` column (:func:`curve_label` of every row)."""
    settings = frame["setting"] if "setting" in frame else [""] * len(frame)
    return frame.assign(curve=[curve_label(m, s) for m, s in zip(frame["method"], settings)])


def counter_warning(frame: pd.DataFrame) -> str | None:
    """A one-line warning when the successful records of ``frame`` mix GMACs counter versions.

    Records without ``gmacs_counter`` were written before counter version 2 (torch's
    ``FlopCounterMode``, which missed fused attention on some torch releases).
    """
    if frame.empty or "gmacs_counter" not in frame:
        return None
    ok = frame[frame["error"].isna()] if "error" in frame else frame
    versions = sorted({str(v) if v is not None and v == v else "1" for v in ok["gmacs_counter"]})
    if len(versions) < 2:
        return None
    source = frame.attrs.get("source", "RESULTS")
    return (
        f"warning: these records mix GMACs counter versions {', '.join(versions)}, so their GMACs are not "
        f"comparable; run `vitbench recount {source}` to recount them with this release"
    )
