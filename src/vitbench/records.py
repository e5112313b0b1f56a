"""The result record: one row per evaluated cell, typed, with units in the names.

Accuracy-like numbers (``top1``, ``top5``, ``ece``, CI bounds) are percentages in [0, 100];
``nll`` is in nats per sample; ``gmacs`` are papers'-convention GMACs per image (batch 1);
``params_m`` millions of parameters; ``img_per_s`` images per second at ``batch_size``.
JSON columns hold structured values (native parameters, tokens per block).
"""

from __future__ import annotations

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
    "threads": "INTEGER",
    "tokens_per_block": "TEXT",  # JSON list: tokens entering each block (incl. prefix tokens)
    "tokens_kept_frac": "REAL",  # mean over blocks of tokens entering the block / dense tokens
    "wall_s": "REAL",
    "error": "TEXT",  # one line; NULL when the cell succeeded
    "vitbench_version": "TEXT",
    "torch_version": "TEXT",
    "timm_version": "TEXT",
    "git_commit": "TEXT",
    "device": "TEXT",
    "config_hash": "TEXT",
    "timestamp": "TEXT",
}

JSON_FIELDS = ("params_json", "tokens_per_block")
