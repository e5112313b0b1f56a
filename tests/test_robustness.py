"""Robustness metrics on a hand-made records frame against hand-computed values."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from vitbench.core.errors import VitbenchError
from vitbench.data.noise import corruption_names
from vitbench.report.robustness import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERROR,
    alexnet_error,
    ce_table,
    corruption_errors,
    level_curves,
    mce_table,
    selection_deltas,
    severity_curves,
)
from vitbench.store.records import RECORD_FIELDS

# top-1 error (%) per severity 1..5; clean error
DENSE_ERR = {
    "clean": 10.0,
    "gaussian-noise": [20, 30, 40, 50, 60],
    "fog": [15] * 5,
    "speckle-noise": [12] * 5,
}
EVIT_ERR = {"clean": 20.0, "gaussian-noise": [30, 40, 50, 60, 70], "fog": [30] * 5, "speckle-noise": [99] * 5}
KEY_FIELDS = ("method", "keep_ratio", "selection", "noise", "level", "seed")


def rec(method: str, keep: float, noise: str, level: float, err: float, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
    r.update(
        model="vit",
        dataset="toy",
        method=method,
        setting="" if method == "dense" else f"keep_rate={keep}",
        keep_ratio=keep,
        selection="scored",
        noise=noise,
        level=level,
        seed=0,
        top1=100.0 - err,
        top1_ci_low=100.0 - err - 1.0,
        top1_ci_high=100.0 - err + 2.0,
        gmacs=1.0 if method == "dense" else 0.6,
    )
    r.update(extra)
    r["cell_key"] = "|".join(str(r[k]) for k in KEY_FIELDS)
    return r


def make_df(drop: tuple[str, float] | None = None) -> pd.DataFrame:
    rows = []
    for method, keep, table in (("dense", 1.0, DENSE_ERR), ("evit", 0.5, EVIT_ERR)):
        rows.append(rec(method, keep, "clean", 0.0, table["clean"]))
        for noise in ("gaussian-noise", "fog", "speckle-noise"):
            for s, err in enumerate(table[noise], start=1):
                if method == "evit" and drop == (noise, float(s)):
                    continue
                rows.append(rec(method, keep, noise, float(s), float(err)))
    rows.append(rec("evit", 0.5, "fog", 3.0, 0.0, error="RuntimeError: boom", seed=7))  # failed: ignored
    return pd.DataFrame(rows)


def row_of(frame: pd.DataFrame, method: str) -> pd.Series:
    return frame.loc[frame["method"] == method].iloc[0]


def test_ce_and_relative_ce_against_hand_computed_values() -> None:
    ce = ce_table(make_df()).set_index(["method", "noise"])
    # CE = sum_s E_f / sum_s E_dense ; rCE = sum_s (E_f - E_f,clean) / sum_s (E_dense - E_dense,clean)
    assert ce.loc[("evit", "gaussian-noise"), "ce"] == pytest.approx(100 * 250 / 200)
    assert ce.loc[("evit", "gaussian-noise"), "rel_ce"] == pytest.approx(100 * (250 - 100) / (200 - 50))
    assert ce.loc[("evit", "fog"), "ce"] == pytest.approx(100 * 150 / 75)
    assert ce.loc[("evit", "fog"), "rel_ce"] == pytest.approx(100 * (150 - 100) / (75 - 50))
    assert ce.loc[("dense", "fog"), "ce"] == pytest.approx(100.0)
    assert ce.loc[("evit", "speckle-noise"), "split"] == "validation"


def test_mce_uses_test_corruptions_only_and_families() -> None:
    m = mce_table(make_df())
    evit, dense = row_of(m, "evit"), row_of(m, "dense")
    assert list(m["method"]) == ["dense", "evit"]
    assert evit["n_corruptions"] == 2  # speckle-noise (validation) left out
    assert evit["mce"] == pytest.approx((125.0 + 200.0) / 2)
    assert evit["rel_mce"] == pytest.approx((100.0 + 200.0) / 2)
    assert evit["mce_noise"] == pytest.approx(125.0) and evit["mce_weather"] == pytest.approx(200.0)
    assert math.isnan(evit["mce_blur"]) and math.isnan(evit["mce_digital"])
    assert dense["mce"] == pytest.approx(100.0) and dense["rel_mce"] == pytest.approx(100.0)
    # mean corruption accuracy over the 10 test cells: gaussian 70..30 (mean 50), fog 70
    assert evit["mca"] == pytest.approx(60.0)
    assert evit["drop"] == pytest.approx(80.0 - 60.0) and evit["retention"] == pytest.approx(0.75)
    every = mce_table(make_df(), split="all")
    assert row_of(every, "evit")["mce"] == pytest.approx((125 + 200 + 100 * 99 * 5 / 60) / 3)


def test_missing_severity_gives_no_ce_and_no_mce() -> None:
    df = make_df(drop=("fog", 5.0))
    ce = ce_table(df).set_index(["method", "noise"])
    assert math.isnan(ce.loc[("evit", "fog"), "ce"])
    evit = row_of(mce_table(df), "evit")
    assert math.isnan(evit["mce"]) and evit["mce_noise"] == pytest.approx(125.0)


def test_alexnet_normalised_mce_maps_constants_by_name() -> None:
    assert len(ALEXNET_ERROR) == 15 and set(ALEXNET_ERROR) == set(corruption_names("test"))
    assert alexnet_error("gaussian_noise") == 0.886428 and alexnet_error("jpeg-compression") == 0.6065
    assert alexnet_error("brightness") == 0.564592 and alexnet_error("elastic_transform") == 0.646056
    with pytest.raises(VitbenchError, match="no AlexNet error constant for 'speckle-noise'"):
        alexnet_error("speckle-noise")
    evit = row_of(mce_table(make_df(), reference="alexnet"), "evit")
    ce_gauss, ce_fog = 0.50 / 0.886428, 0.30 / 0.819324
    assert evit["mce"] == pytest.approx(100 * (ce_gauss + ce_fog) / 2)
    r_gauss = (0.50 - 0.20) / (0.886428 - ALEXNET_CLEAN_ERROR)
    r_fog = (0.30 - 0.20) / (0.819324 - ALEXNET_CLEAN_ERROR)
    assert evit["rel_mce"] == pytest.approx(100 * (r_gauss + r_fog) / 2)


def test_corruption_errors_carry_ci_and_drop() -> None:
    errs = corruption_errors(make_df(), split="test")
    evit = errs.loc[errs["method"] == "evit"]
    g3 = evit.loc[(evit["noise"] == "gaussian-noise") & (evit["level"] == 3)].iloc[0]
    assert g3["err"] == pytest.approx(50.0) and g3["drop"] == pytest.approx(80 - 50)
    assert (g3["err_ci_low"], g3["err_ci_high"]) == pytest.approx((48.0, 51.0))
    assert g3["family"] == "noise" and set(errs["split"]) == {"test"}


def test_severity_and_level_curves() -> None:
    curves = severity_curves(make_df())
    evit = curves.loc[(curves["method"] == "evit") & (curves["family"] == "all")].set_index("level")["top1"]
    assert list(evit.index) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert evit[0.0] == 80.0 and evit[1.0] == pytest.approx((70 + 70) / 2)
    sigma = [rec("evit", 0.5, "gaussian-sigma", lv, 20 + 100 * lv) for lv in (0.1, 0.2)]
    df = pd.concat([make_df(), pd.DataFrame(sigma)])
    lv = level_curves(df, "gaussian-sigma")
    assert list(lv["level"]) == [0.0, 0.1, 0.2] and list(lv["top1"]) == pytest.approx([80.0, 70.0, 60.0])


def test_selection_deltas_sign_is_scored_minus_random() -> None:
    rows = [rec("dense", 1.0, "clean", 0.0, 10.0)]
    for keep, scored, random in ((0.7, 15.0, 25.0), (0.5, 20.0, 17.0)):  # error %
        rows.append(rec("evit", keep, "clean", 0.0, scored))
        rows.append(rec("evit", keep, "clean", 0.0, random, selection="random"))
    d = selection_deltas(pd.DataFrame(rows))
    assert list(d["keep_ratio"]) == [0.7, 0.5]
    assert list(d["delta"]) == pytest.approx([+10.0, -3.0])


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda df: mce_table(df, reference="resnet"), "unknown mCE reference 'resnet'"),
        (lambda df: mce_table(df, split="train"), "unknown corruption split 'train'"),
        (lambda df: mce_table(df, model="deit"), "no successful records for model 'deit'"),
        (lambda df: mce_table(df, selection="best"), "selection 'best'"),
        (lambda df: level_curves(df, "gaussian-sigma"), "no records of noise 'gaussian-sigma'"),
        (lambda df: selection_deltas(df), "no method has both scored and random"),
        (lambda df: mce_table(df.assign(error="x")), "no successful records"),
        (lambda df: mce_table(df.loc[df["noise"] == "clean"]), "no ImageNet-C corruption records"),
    ],
)
def test_bad_inputs_one_line_errors(call: Any, needle: str) -> None:
    with pytest.raises(VitbenchError) as info:
        call(make_df())
    assert needle in str(info.value) and "\n" not in str(info.value)


# -- leaderboards, plots, HTML report --------------------------------------------------------------


def full_df() -> pd.DataFrame:
    """The hand-made frame plus a sigma sweep and scored/random pairs at two keep ratios."""
    extra = [rec("evit", 0.5, "gaussian-sigma", lv, 20 + 100 * lv) for lv in (0.1, 0.2)]
    extra += [rec("dense", 1.0, "gaussian-sigma", lv, 10 + 50 * lv) for lv in (0.1, 0.2)]
    extra += [rec("evit", 0.7, "clean", 0.0, 15.0), rec("evit", 0.7, "clean", 0.0, 19.0, selection="random")]
    extra += [rec("evit", 0.5, "clean", 0.0, 26.0, selection="random")]
    return pd.concat([make_df(), pd.DataFrame(extra)], ignore_index=True)


def test_robustness_table_columns_and_every_format() -> None:
    from vitbench.report.format import FORMATS
    from vitbench.report.robust import robustness_table

    text = robustness_table(full_df(), fmt="github")
    header = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    assert header == [
        "Method",
        "Keep",
        "GMACs",
        "Clean top-1",
        "mCE",
        "rel. mCE",
        "noise",
        "blur",
        "weather",
        "digital",
    ]
    assert "| evit     |   0.50 |    0.60 |         80.00 | 162.5 |      150.0 |   125.0 |" in text
    csv = robustness_table(full_df(), fmt="csv").splitlines()
    assert csv[0].endswith("mCA,Drop,Retention,Corruptions") and csv[2].startswith(
        "evit,0.5,0.6,80.0,162.5,150.0"
    )
    for fmt in FORMATS:
        assert "162.5" in robustness_table(full_df(), fmt=fmt)
    assert "\\toprule" in robustness_table(full_df(), fmt="latex")
    assert "<table>" in robustness_table(full_df(), fmt="html")


def test_other_tables_in_every_format() -> None:
    from vitbench.report.format import FORMATS
    from vitbench.report.robust import corruption_table, level_table, selection_summary_table, severity_table

    df = full_df()
    for fmt in FORMATS:
        assert "60.00" in severity_table(df, fmt=fmt) or "60.0" in severity_table(df, fmt=fmt)
        assert "825" in corruption_table(df, fmt=fmt)  # CE of the validation corruption speckle-noise
        assert "50" in corruption_table(df, fmt=fmt, severity=3)
        assert "70" in level_table(df, "gaussian-sigma", fmt=fmt)
        assert "4" in selection_summary_table(df, fmt=fmt)
    sev = severity_table(df, fmt="csv").splitlines()
    assert sev[0] == "Method,Keep,Clean,s1,s2,s3,s4,s5,Mean,Δ vs clean"
    assert sev[2] == "evit,0.5,80.0,70.0,65.0,60.0,55.0,50.0,60.0,-20.0"
    ci = corruption_table(df, fmt="csv", severity=3).splitlines()
    assert "gaussian-noise CI low" in ci[0] and "speckle-noise*" in ci[0]
    lv = level_table(df, "gaussian-sigma", fmt="csv").splitlines()
    assert lv[0] == "Method,Keep,0,0.1,0.2" and lv[2] == "evit,0.5,80.0,70.0,60.0"
    sel = selection_summary_table(df, fmt="csv").splitlines()
    assert sel == ["Method,Δ@0.7,Δ@0.5,Mean Δ", "evit,4.0,6.0,5.0"]  # scored − random: 85-81, 80-74
    with pytest.raises(VitbenchError, match="severity 6 is outside 1-5"):
        corruption_table(df, severity=6)
    with pytest.raises(VitbenchError, match="unknown table format 'pdf'"):
        severity_table(df, fmt="pdf")


def test_plots_and_self_contained_html(tmp_path: Any) -> None:
    from vitbench.report.robust import (
        html_report,
        plot_heatmap,
        plot_levels,
        plot_selection,
        plot_severities,
        write_html_report,
    )

    df = full_df()
    for fn, name in ((plot_heatmap, "h.png"), (plot_severities, "s.svg"), (plot_selection, "sel.png")):
        path = fn(df, tmp_path / name)
        assert path.stat().st_size > 1000
    assert plot_levels(df, tmp_path / "l.png", noise="gaussian-sigma").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(VitbenchError, match="use a .png, .svg or .pdf"):
        plot_heatmap(df, tmp_path / "h.jpg")
    page = html_report(df.assign(suite="toy-suite"))
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") >= 4
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    for heading in (
        "Corruption robustness",
        "Accuracy vs severity",
        "gaussian-sigma",
        "Random token selection",
    ):
        assert heading in page
    assert "ImageNet-C-style" in page and "toy-suite" in page
    with pytest.raises(VitbenchError, match="use a .html file name"):
        write_html_report(df, tmp_path / "r.pdf")


def test_cli_robustness_and_report(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from vitbench.cli.main import main
    from vitbench.store.results import ResultsStore

    db = tmp_path / "r.sqlite"
    with ResultsStore(db) as store:
        for r in full_df().to_dict("records"):
            store.write({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    assert main(["robustness", "--results", str(db), "--format", "csv"]) == 0
    assert "evit,0.5,0.6,80.0,162.5,150.0" in capsys.readouterr().out
    args = ["robustness", "--results", str(db), "--view", "levels", "--plot", str(tmp_path / "sigma.png")]
    assert main(args) == 0 and (tmp_path / "sigma.png").is_file()
    assert main(["robustness", "--results", str(db), "--view", "selection"]) == 0
    assert "+4.00" in capsys.readouterr().out
    assert main(["report", "--results", str(db), "--output", str(tmp_path / "out.html")]) == 0
    assert "base64" in (tmp_path / "out.html").read_text()
    capsys.readouterr()
    assert main(["report", "--results", str(db), "--output", str(tmp_path / "out.txt")]) == 2
    assert main(["robustness", "--results", str(db), "--view", "levels", "--noise", "gausian-sigma"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: cannot write report") and "did you mean 'gaussian-sigma'" in err[1]


def test_robustness_table_caption_names_adaptive_methods() -> None:
    from vitbench.report.robust import robustness_table

    df = full_df()
    adaptive = df.assign(gmacs_p50=df["gmacs"].where(df["method"] == "evit"))
    caption = robustness_table(adaptive).splitlines()[0]
    assert caption.endswith(
        "evit: tokens per image vary, placed at the mean GMACs over the evaluated images "
        "(records keep the p10/p50/p90)."
    )
    assert "placed at the mean" not in robustness_table(df).splitlines()[0]


def test_html_names_in_memory_corruptions_only_when_the_store_has_them() -> None:
    from vitbench.report.html import html_report
    from vitbench.report.robustness import IN_MEMORY_LABEL

    df = full_df()
    assert IN_MEMORY_LABEL in html_report(df)  # ImageNet-C corruptions (gaussian-noise, fog, ...)
    not_imagenet_c = df.loc[df["noise"].isin(["clean", "gaussian-sigma"])]
    assert IN_MEMORY_LABEL not in html_report(not_imagenet_c)  # clean and a continuous noise only
    assert IN_MEMORY_LABEL not in html_report(df.loc[df["noise"] == "clean"])
