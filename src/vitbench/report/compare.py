"""Paired comparisons of methods evaluated on the same images.

Two cells on the same images (same sample-ids hash) are compared sample by sample from their
per-sample outcomes (:class:`vitbench.store.per_sample.PerSample`):

* ΔTop-1 = top-1(method) − top-1(reference), with a **paired** percentile bootstrap 95 % CI:
  the same resampled image indices for both cells (``numpy.random.default_rng(seed)``), so the
  shared difficulty of the images cancels; compare it with the unpaired combination of the two
  per-cell CIs, ``sqrt(h_a² + h_b²)`` of their half-widths, which ignores that pairing;
* the exact McNemar test: a two-sided binomial test (``scipy.stats.binomtest``, p = 0.5) on the
  discordant pairs (images exactly one of the two gets right) (McNemar, Psychometrika 1947;
  the exact form as in Dietterich, Neural Computation 1998);
* prediction agreement: the fraction of images on which both predict the same class.

Cells over different image sets are never paired (:class:`NotPairedError` names both hashes).
Several seeds of one configuration on the same images are averaged per image (a per-image
accuracy in [0, 1]) for Δ and its CI; McNemar's test needs one 0/1 outcome per image, so with
several seeds its p-value is left out (``–``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from vitbench.core.errors import VitbenchError
from vitbench.report.format import NA, Col, check_fmt, fmt_num, fmt_signed, render_table
from vitbench.report.paired import (
    N_BOOTSTRAP,
    Comparison,
    NotPairedError,
    Outcome,
    compare,
    outcomes_of,
    unpaired_halfwidth,
)
from vitbench.report.population import MEASURED, POPULATION, population_keys, seeds_note
from vitbench.report.rows import lead_columns, order_rows, seed_stats, select_rows, source_name
from vitbench.store.per_sample import PerSample

# -- the comparison table ------------------------------------------------------------------------


def _matches(against: str, method: str, setting: str) -> bool:
    """``against`` is a method name (``dense``) or ``method:setting`` (``evit:keep_rate=0.7``)."""
    name, _, want = against.partition(":")
    return method == name and (not want or setting == want)


def compare_table(
    df: pd.DataFrame,
    samples: Mapping[str, PerSample],
    fmt: str = "github",
    against: str = "dense",
    model: str | None = None,
    noise: str = "clean",
    level: float = 0.0,
    selection: str | None = "scored",
    seed: int = 0,
) -> str:
    """Every configuration against a reference on the same images: paired Δtop-1 statistics.

    Columns (population columns first when they vary): ``Method | Setting | Keep | Top-1 |
    ΔTop-1 | paired 95% CI | unpaired ±95% | McNemar p | Agreement``. ``paired 95% CI`` is the
    paired bootstrap CI of Δ (:func:`paired_bootstrap_ci`, ``N_BOOTSTRAP`` resamples, numpy
    Generator seeded with ``seed``); ``unpaired ±95%`` is the half-width of the unpaired
    combination of the two records' own CIs (:func:`unpaired_halfwidth`), printed for
    comparison; ``McNemar p`` is the exact test (:func:`mcnemar_exact`); ``Agreement`` the %
    of images with the same predicted class. Configurations with no reference on their images
    are listed below the table, one line each, naming both sample-ids hashes.

    Args:
        df: records frame (:func:`vitbench.load_results`).
        samples: per-sample outcomes by cell key (:func:`vitbench.store.results.load_samples`).
        fmt: one of :data:`vitbench.report.tables.FORMATS`.
        against: reference method, or ``method:setting`` when it has several settings.
        model: restrict to one model.
        noise: noise condition (``"clean"`` or a noise name at ``level``).
        level: noise severity.
        selection: token selection of the compared methods (the reference is kept).
        seed: seed of the bootstrap Generator.

    Raises:
        VitbenchError: unknown format, no records, no reference record, or an ambiguous one.
    """
    check_fmt(fmt)
    ok = select_rows(df, model, noise, level, selection)
    keys = list(MEASURED)
    stats = order_rows(seed_stats(ok))
    members = {tuple(map(str, k)): g for k, g in ok.groupby(keys, sort=False)}
    is_ref = [_matches(against, m, s) for m, s in zip(stats["method"], stats["setting"])]
    if not any(is_ref):
        have = sorted({str(m) for m in stats["method"]})
        raise VitbenchError(
            f"no records of reference '{against}' in {source_name(df)} for these filters; "
            f"pass --against one of: {', '.join(have)}"
        )
    pops = population_keys(stats)
    refs: dict[tuple, list[int]] = {}
    for i, (p, r) in enumerate(zip(pops, is_ref)):
        if r:
            refs.setdefault(p, []).append(i)
    for idx in refs.values():
        if len(idx) > 1:
            settings = sorted({str(stats["setting"].iloc[i]) for i in idx})
            if len(settings) > 1:
                options = ", ".join(f"{against.partition(':')[0]}:{st}" for st in settings)
                raise VitbenchError(
                    f"reference '{against}' has several configurations on one population; "
                    f"pass --against one of: {options}"
                )
            suites = sorted({str(stats["suite"].iloc[i]) for i in idx}) if "suite" in stats else []
            raise VitbenchError(
                f"reference '{against}' was measured by several suites on the same images "
                f"({', '.join(suites)}); pass --suite one of them"
            )
    rows: list[int] = []
    results: list[Comparison | None] = []
    unpaired: list[float] = []
    notes: list[str] = []
    cache: dict[int, Outcome | None] = {}
    missing = 0

    def outcome_at(i: int) -> Outcome | None:
        if i not in cache:
            key = tuple(map(str, stats.iloc[i][keys]))
            cache[i] = outcomes_of(members[key], samples)
        return cache[i]

    for i, pop in enumerate(pops):
        if is_ref[i]:
            continue
        label = f"{stats['method'].iloc[i]} {stats['setting'].iloc[i]}".strip()
        if pop not in refs:
            # the same model and noise on other images (population fields but the image set's)
            fixed = [j for j, c in enumerate(POPULATION) if c not in ("dataset", "split", "sample_ids_hash")]
            same_model = {
                p[POPULATION.index("sample_ids_hash")] for p in refs if all(p[j] == pop[j] for j in fixed)
            }
            mine = pop[POPULATION.index("sample_ids_hash")]
            other = ", ".join(sorted(same_model)) if same_model else "none recorded"
            notes.append(
                f"not paired: {label} (images {mine}) has no '{against}' on the same images ({other})"
            )
            continue
        j = refs[pop][0]
        rows.append(i)
        a, b = outcome_at(i), outcome_at(j)
        ci_a = (float(stats["top1_ci_low"].iloc[i]), float(stats["top1_ci_high"].iloc[i]))
        ci_b = (float(stats["top1_ci_low"].iloc[j]), float(stats["top1_ci_high"].iloc[j]))
        unpaired.append(unpaired_halfwidth(ci_a, ci_b))
        if a is None or b is None:
            results.append(None)
            missing += 1
            continue
        try:
            results.append(compare(a, b, seed=seed, names=(label, against)))
        except NotPairedError as exc:
            results.append(None)
            notes.append(f"not paired: {exc}")
    if not rows:
        raise VitbenchError(
            f"nothing to compare with '{against}' in {source_name(df)}: "
            + ("; ".join(notes) if notes else "only the reference was found")
        )
    sub = stats.iloc[rows].reset_index(drop=True)
    ref_idx = [refs[pops[i]][0] for i in rows]
    ref_top1 = [float(stats["top1"].iloc[j]) for j in ref_idx]
    delta = [float(t) - r for t, r in zip(sub["top1"], ref_top1)]
    col = Col
    lo = [r.ci_low if r else math.nan for r in results]
    hi = [r.ci_high if r else math.nan for r in results]
    pv = [r.p_value if r else math.nan for r in results]
    agree = [r.agreement if r else math.nan for r in results]
    cols = lead_columns(sub) + [
        col("Method", list(sub["method"]), list(sub["method"]), numeric=False),
        col("Setting", list(sub["setting"]), list(sub["setting"]), numeric=False),
        col("Keep", list(sub["keep_ratio"]), [fmt_num(v) for v in sub["keep_ratio"]]),
        col("Top-1", list(sub["top1"]), [fmt_num(v) for v in sub["top1"]]),
        col(f"Top-1 {against}", ref_top1, [fmt_num(v) for v in ref_top1]),
        col("ΔTop-1", delta, [fmt_signed(v) for v in delta]),
        col(
            "paired 95% CI",
            [(x, y) for x, y in zip(lo, hi)],
            [NA if math.isnan(x) else f"[{x:+.2f}, {y:+.2f}]" for x, y in zip(lo, hi)],
            csv=False,
        ),
        col("paired CI low", lo, [], display=False),
        col("paired CI high", hi, [], display=False),
        col("paired ±", [(y - x) / 2 for x, y in zip(lo, hi)], [], display=False),
        col("unpaired ±95%", unpaired, [NA if math.isnan(u) else f"±{u:.2f}" for u in unpaired]),
        col("McNemar p", pv, [NA if math.isnan(p) else _p_text(p) for p in pv]),
        col("Agreement %", agree, [fmt_num(v, 1) for v in agree]),
    ]
    ref_name = against.replace(":", " ")
    caption = (
        f"Each row vs {ref_name} on the same images: ΔTop-1 with a paired bootstrap 95% CI "
        f"({N_BOOTSTRAP} resamples of the images, seed {seed}), the unpaired combination of the two "
        "records' own CIs for comparison, exact McNemar p (discordant pairs), and prediction agreement; "
        f"Top-1 {seeds_note(sub['n'])}"
    )
    text = render_table(cols, fmt, caption=caption)
    paired = [(y - x) / 2 for x, y in zip(lo, hi)]
    both = [(p, u) for p, u in zip(paired, unpaired) if not (math.isnan(p) or math.isnan(u))]
    if both and fmt != "csv":
        narrower = sum(p < u for p, u in both)
        med_p, med_u = float(np.median([p for p, _ in both])), float(np.median([u for _, u in both]))
        notes.insert(
            0,
            f"paired 95% CI narrower than the unpaired combination in {narrower} of {len(both)} rows "
            f"(median half-width {med_p:.2f} vs {med_u:.2f} points)",
        )
    if missing:
        notes.append(
            f"no per-sample data for {missing} row(s) (cells stored before per-sample outcomes were "
            "recorded, or without their reference's): paired columns '–'; re-run those cells to fill them"
        )
    if notes and fmt == "html":
        import html

        text += "\n" + "\n".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    elif notes and fmt != "csv":
        text += "\n\n" + "\n".join(notes)
    return text


def _p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"
