"""The result record: one row per evaluated cell, typed, with units in the names.

Accuracy-like numbers (``top1``, ``top5``, ``ece``, CI bounds) are percentages in [0, 100];
``nll`` is in nats per sample; ``gmacs`` are papers'-convention GMACs per image (batch 1);
``params_m`` millions of parameters; ``img_per_s`` images per second at ``batch_size``.
Adaptive methods (per-image token counts) store the mean GMACs over the evaluated images in
``gmacs`` and their distribution in ``gmacs_p10/p50/p90`` and ``tokens_p10/p50/p90``.
JSON columns hold structured values (native parameters, tokens per block).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitbench.core.method_index import method_info

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
    # adaptive methods (tokens per image vary, e.g. ATS): gmacs and tokens_per_block are means over
    # the evaluated images, these their distribution; NULL for methods with fixed counts
    "gmacs_p10": "REAL",  # 10th percentile of per-image GMACs (batch 1, papers' convention)
    "gmacs_p50": "REAL",
    "gmacs_p90": "REAL",
    "gmacs_images": "INTEGER",  # images the distribution is over
    "tokens_p10": "TEXT",  # JSON list: per block, 10th percentile of tokens entering it
    "tokens_p50": "TEXT",
    "tokens_p90": "TEXT",
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
    "model_label": "TEXT",  # the suite's display label of the model entry (label:); NULL when none
    "data_config": "TEXT",  # JSON: the data config the images were prepared with
    # what the numbers depend on beyond the names (part of cell_key; NULL: written before 0.2)
    "weights_digest": "TEXT",  # sha256[:16] of the weights file (demo: the packaged file; random: "random")
    "method_version": "INTEGER",  # the method's semantics version (Method.version) that computed the row
    "labels_digest": "TEXT",  # sha256[:16] of the dataset's class names in label order
    # keep 1.0 of a token method is the dense model (method contract): its accuracy is the dense
    # record's, not evaluated again; the cell_key of that record (NULL: evaluated)
    "reused_from": "TEXT",
    # channel cells: the calibration images their pruning used (noise: calib_noise, calib_level)
    "calib_images": "INTEGER",  # images drawn (min(calib.n_images, images in the split))
    "calib_split": "TEXT",  # the split they come from (train unless the suite says otherwise)
    "calib_ids_hash": "TEXT",  # hash of their sample ids (as sample_ids_hash of the evaluated ones)
}

JSON_FIELDS = (
    "params_json",
    "tokens_per_block",
    "model_args",
    "data_config",
    "tokens_p10",
    "tokens_p50",
    "tokens_p90",
)


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
    info = method_info(method)
    knob = info.knob if info is not None else ""
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


#: Marker in ``frame.attrs``: :func:`current_records` already ran on the frame.
_CURRENT = "vitbench_current_records"


def current_records(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows a view may show, with rows measured on different contents kept apart.

    * Rows computed by another semantics version of their method than this vitbench's
      (``method_version`` differs from :attr:`vitbench.methods.base.Method.version`) are left
      out: they are not what a run would measure today, and a run re-evaluates them. Rows written
      before versions were recorded (NULL) carry no weights digest either: beside rows of this
      release they are shown apart as ``(digest unrecorded)``, and a run never resumes them.
    * Where one ``weights`` entry of a model was measured with different weight contents
      (``weights_digest``; NULL: recorded before digests), each row's ``weights`` gets its digest
      appended (``"w.pth (3f2a9c1b)"``, ``"demo (digest unrecorded)"``), so every table, plot and
      reference lookup keeps them apart as different populations.
    * Likewise a dataset whose folders were mapped to labels in different orders
      (``labels_digest``) gets ``"(labels 1a2b3c4d)"`` appended to its ``dataset``.

    Args:
        frame: records (:func:`vitbench.store.results.load_results`).

    Returns:
        ``(frame, notes)``: the frame to show (``attrs`` kept) and one line per fact a reader must
        know (empty when nothing was left out or relabelled). Idempotent.
    """
    if frame.attrs.get(_CURRENT) or frame.empty or "method" not in frame:
        return frame, []
    import pandas as pd

    out = frame.copy()
    out.attrs = dict(frame.attrs)
    notes: list[str] = []
    if "method_version" in out:
        versions = pd.to_numeric(out["method_version"], errors="coerce")
        recorded = [None if pd.isna(v) else int(v) for v in versions]
        infos = [method_info(str(m)) for m in out["method"]]
        current = [i.version if i is not None else r for i, r in zip(infos, recorded)]
        stale = [r is not None and r != c for r, c in zip(recorded, current)]
        if any(stale):
            parts = sorted(
                {
                    f"{m} (version {r}; this vitbench computes {c})"
                    for m, r, c, st in zip(out["method"], recorded, current, stale)
                    if st
                }
            )
            notes.append(
                f"note: left out {sum(stale)} record(s) computed by an earlier method version: "
                f"{', '.join(parts)}; re-run their suites to evaluate them again"
            )
            out = out.loc[[not st for st in stale]]
    for base, column, group, label in (
        ("weights", "weights_digest", "model", "weights"),
        ("dataset", "labels_digest", "split", "labels"),
    ):
        if base not in out or column not in out:
            continue
        digests = ["" if pd.isna(v) else str(v) for v in out[column]]
        where = [str(g) for g in out[group]] if group in out else [""] * len(out)
        seen: dict[tuple[str, str], set[str]] = {}
        for b, w, d in zip(out[base].astype(str), where, digests):
            seen.setdefault((b, w), set()).add(d)
        mixed = {k: v for k, v in seen.items() if len(v) > 1}
        if not mixed:
            continue
        tag = (
            (lambda d: d[:8] if d else "digest unrecorded")
            if label == "weights"
            else (lambda d: f"labels {d[:8]}" if d else "labels unrecorded")
        )
        out[base] = [
            f"{b} ({tag(d)})" if (str(b), w) in mixed else b for b, w, d in zip(out[base], where, digests)
        ]
        for (b, w), ds in sorted(mixed.items()):
            shown = ", ".join(tag(d) for d in sorted(ds))
            what = f"weights '{b}' of {w}" if label == "weights" else f"dataset '{b}' ({w})"
            why = "different weight contents" if label == "weights" else "different folder-to-label orders"
            notes.append(f"note: {what} were measured with {why} ({shown}); their rows are kept apart")
    out.attrs[_CURRENT] = True
    return out, notes
