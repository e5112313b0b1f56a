from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd
import pytest

from vitbench.core.errors import VitbenchError
from vitbench.report.format import FORMATS
from vitbench.report.tables import (
    MAX_GRID_POINTS,
    failed_cells,
    leaderboard,
    matched_gmacs_table,
    noise_table,
    plot_pareto,
    render_all,
    selection_table,
)
from vitbench.store.records import RECORD_FIELDS

NOISE = "gaussian_noise"
# method -> [(keep, setting, gmacs, clean scored top1, img/s)]
METHODS = {
    "tome": [
        (0.9, "r=4", 4.2, 80.0, 1100.0),
        (0.7, "r=8", 3.4, 79.0, 1400.0),
        (0.5, "r=13", 2.6, 76.5, 1800.0),
    ],
    "evit": [
        (0.9, "keep_rate=0.9", 4.3, 79.9, 1080.0),
        (0.7, "keep_rate=0.7", 3.5, 78.8, 1350.0),
        (0.5, "keep_rate=0.5", 2.7, 75.25, 1700.0),
    ],
}
RANDOM_DROP = {"tome": 1.0, "evit": 2.0}  # random selection loses this much top-1
NOISE_DROP = 10.0


def row(**values: Any) -> dict[str, Any]:
    """A record with every RECORD_FIELDS key (None unless given)."""
    rec: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
    rec.update(
        model="vit_s", dataset="toy", selection="scored", noise="clean", level=0.0, seed=0, params_m=22.05
    )
    rec.update(values)
    rec["cell_key"] = "|".join(
        str(rec[k]) for k in ("model", "method", "keep_ratio", "selection", "noise", "level", "seed")
    )
    return rec


def make_df() -> pd.DataFrame:
    rows = []
    for noise, level, drop in (("clean", 0.0, 0.0), (NOISE, 3.0, NOISE_DROP)):
        for seed, top1, ips in ((0, 80.0, 1000.0), (1, 80.5, 1010.0)):
            rows.append(
                row(
                    method="dense",
                    setting="-",
                    keep_ratio=1.0,
                    gmacs=4.6,
                    top1=top1 - drop,
                    img_per_s=ips,
                    seed=seed,
                    noise=noise,
                    level=level,
                )
            )
        for method, points in METHODS.items():
            for keep, setting, gmacs, top1, ips in points:
                for selection in ("scored", "random"):
                    t = top1 - drop - (RANDOM_DROP[method] if selection == "random" else 0.0)
                    rows.append(
                        row(
                            method=method,
                            setting=setting,
                            keep_ratio=keep,
                            gmacs=gmacs,
                            top1=t,
                            img_per_s=ips,
                            selection=selection,
                            noise=noise,
                            level=level,
                        )
                    )
    rows.append(row(method="tome", setting="r=20", keep_ratio=0.3, gmacs=1.9, error="CUDA out of memory"))
    return pd.DataFrame(rows, columns=list(RECORD_FIELDS))


@pytest.fixture
def df() -> pd.DataFrame:
    return make_df()


# Hand-verified: dense = mean(80.0, 80.5) = 80.25, sample std = 0.5 / sqrt(2) = 0.354;
# Δ = method top-1 - 80.25 (e.g. evit@0.5: 75.25 - 80.25 = -5.00); img/s dense = mean(1000, 1010).
EXPECTED_GITHUB = "\n".join(
    [
        "Top-1 (%): mean of 1-2 seeds (column Seeds); ΔTop-1 vs dense on the same images; "
        "GMACs: 10^9 multiply-accumulates per image (papers label them GFLOPs); "
        "† img/s is machine-dependent; compare it only within one run.",
        "",
        "| Method   | Setting       |   Keep |        Top-1 |   Seeds |   ΔTop-1 "
        "|   GMACs |   Params (M) |   img/s† |",
        "|----------|---------------|--------|--------------|---------|----------"
        "|---------|--------------|----------|",
        "| dense    | -             |   1.00 | 80.25 ± 0.35 |       2 |    +0.00 "
        "|    4.60 |        22.05 |     1005 |",
        "| evit     | keep_rate=0.9 |   0.90 |        79.90 |       1 |    -0.35 "
        "|    4.30 |        22.05 |     1080 |",
        "| evit     | keep_rate=0.7 |   0.70 |        78.80 |       1 |    -1.45 "
        "|    3.50 |        22.05 |     1350 |",
        "| evit     | keep_rate=0.5 |   0.50 |        75.25 |       1 |    -5.00 "
        "|    2.70 |        22.05 |     1700 |",
        "| tome     | r=4           |   0.90 |        80.00 |       1 |    -0.25 "
        "|    4.20 |        22.05 |     1100 |",
        "| tome     | r=8           |   0.70 |        79.00 |       1 |    -1.25 "
        "|    3.40 |        22.05 |     1400 |",
        "| tome     | r=13          |   0.50 |        76.50 |       1 |    -3.75 "
        "|    2.60 |        22.05 |     1800 |",
    ]
)


def _body(text: str) -> list[str]:
    """The table lines of a rendered view (its caption line and the blank line dropped)."""
    lines = text.splitlines()
    return lines[2:] if len(lines) > 2 and lines[1] == "" else lines


def test_leaderboard_github_golden(df: pd.DataFrame) -> None:
    assert leaderboard(df, fmt="github") == EXPECTED_GITHUB


def test_leaderboard_random_and_noisy_views(df: pd.DataFrame) -> None:
    out = leaderboard(df, selection="random")
    assert "77.90" in out and "-2.35" in out  # evit@0.9 random: 79.9 - 2 = 77.9; Δ vs dense 80.25
    noisy = leaderboard(df, noise=NOISE, level=3.0)
    assert "70.25 ± 0.35" in noisy and "-0.25" in noisy  # dense and tome@0.9 both drop by 10
    with pytest.raises(VitbenchError, match="fog"):
        leaderboard(df, noise="fog", level=3.0)


def test_leaderboard_without_dense_leaves_delta_blank(df: pd.DataFrame) -> None:
    csv = pd.read_csv(io.StringIO(leaderboard(df[df["method"] != "dense"], fmt="csv")))
    assert csv["ΔTop-1"].isna().all()


def test_leaderboard_csv_carries_numbers(df: pd.DataFrame) -> None:
    csv = pd.read_csv(io.StringIO(leaderboard(df, fmt="csv")))
    assert list(csv["Method"]) == ["dense", "evit", "evit", "evit", "tome", "tome", "tome"]
    assert csv["Top-1"].dtype == float and csv["GMACs"].dtype == float
    assert csv.loc[0, "Top-1"] == pytest.approx(80.25)
    assert csv.loc[0, "Top-1 std"] == pytest.approx(0.5 / math.sqrt(2))
    assert csv.loc[0, "Seeds"] == 2
    assert csv.loc[3, "ΔTop-1"] == pytest.approx(-5.0)


def test_several_models_get_model_column(df: pd.DataFrame) -> None:
    other = df.assign(model="vit_b", cell_key=df["cell_key"] + "b", top1=df["top1"] - 1.0)
    both = pd.concat([df, other], ignore_index=True)
    out = _body(leaderboard(both))
    assert out[0].startswith("| Model ")
    assert out[2].startswith("| vit_b   | dense")
    assert "Model" not in leaderboard(both, model="vit_s")
    with pytest.raises(VitbenchError, match="available: vit_b, vit_s"):
        leaderboard(both, model="vit_l")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_works(df: pd.DataFrame, fmt: str) -> None:
    for fn in (leaderboard, matched_gmacs_table, selection_table, noise_table, render_all):
        out = fn(df, fmt=fmt)
        assert isinstance(out, str) and "evit" in out
    if fmt == "latex":
        assert r"\toprule" in leaderboard(df, fmt=fmt) and r"keep\_rate" in leaderboard(df, fmt=fmt)
    if fmt == "html":
        assert leaderboard(df, fmt=fmt).startswith("<p>Top-1 (%): mean of 1-2 seeds")
        assert "<table>" in leaderboard(df, fmt=fmt)


def test_bad_format_raises(df: pd.DataFrame) -> None:
    for fn in (leaderboard, matched_gmacs_table, selection_table, noise_table, render_all):
        with pytest.raises(VitbenchError, match="markdown, github, latex, csv, html"):
            fn(df, fmt="xlsx")


def test_matched_gmacs_interpolates_linearly(df: pd.DataFrame) -> None:
    # tome: (2.6, 76.5) -> (3.4, 79.0): at 3.0 -> 77.75; evit: (2.7, 75.25) -> (3.5, 78.8): 76.58125
    csv = pd.read_csv(io.StringIO(matched_gmacs_table(df, fmt="csv", grid=[3.0, 2.0, 4.25])))
    csv = csv.set_index("Method")
    assert list(csv.columns[:3]) == ["2.00 GMACs", "3.00 GMACs", "4.25 GMACs"]
    assert csv.loc["tome", "3.00 GMACs"] == pytest.approx(77.75)
    assert csv.loc["evit", "3.00 GMACs"] == pytest.approx(76.58125)
    assert math.isnan(csv.loc["tome", "2.00 GMACs"])  # below the measured range: no extrapolation
    assert math.isnan(csv.loc["tome", "4.25 GMACs"])  # above tome's max 4.2
    assert csv.loc["evit", "4.25 GMACs"] == pytest.approx(79.9 - 0.05 / 0.8 * 1.1)
    assert csv.loc["tome", "Dense Top-1"] == pytest.approx(80.25)
    text = matched_gmacs_table(df, grid=[3.0])
    assert "77.75" in text and "76.58" in text and "3.00 GMACs" in text
    assert "Dense reference (same images): Top-1 80.25 at 4.60 GMACs" in text


def test_matched_gmacs_default_grid(df: pd.DataFrame) -> None:
    header = _body(matched_gmacs_table(df))[0]
    assert [h.strip() for h in header.split("|")[2:-1]] == [
        "2.60 GMACs",
        "2.70 GMACs",
        "3.40 GMACs",
        "3.50 GMACs",
        "4.20 GMACs",
        "4.30 GMACs",
    ]
    with pytest.raises(VitbenchError, match="dense"):
        matched_gmacs_table(df[df["method"] == "dense"])


def _many_budgets(n: int = 14) -> pd.DataFrame:
    """Dense plus one EViT curve measured at ``n`` costs 1.00, 1.10, ... GMACs."""
    rows = [row(method="dense", setting="-", keep_ratio=1.0, gmacs=4.6, top1=80.0)]
    for i in range(n):
        keep = round(0.2 + 0.05 * i, 2)
        rows.append(
            row(
                method="evit",
                setting=f"keep_rate={keep}",
                keep_ratio=keep,
                gmacs=1.0 + 0.1 * i,
                top1=60.0 + i,
            )
        )
    return pd.DataFrame(rows, columns=list(RECORD_FIELDS))


def _budgets(text: str) -> list[str]:
    return [h.strip() for h in _body(text)[0].split("|")[2:-1]]


def test_matched_gmacs_caption_says_when_budgets_were_thinned(df: pd.DataFrame) -> None:
    many = _many_budgets()
    text = matched_gmacs_table(many)
    budgets = _budgets(text)
    assert len(budgets) == MAX_GRID_POINTS == 8
    assert budgets[0] == "1.00 GMACs" and budgets[-1] == "2.30 GMACs"  # cheapest and dearest kept
    assert (
        "8 of 14 measured budgets shown, evenly spaced over them (cheapest and dearest kept; "
        "`vitbench leaderboard --view matched --all-budgets` shows every one)"
    ) in text.splitlines()[0]
    every = matched_gmacs_table(many, max_budgets=None)
    assert _budgets(every) == [f"{1.0 + 0.1 * i:.2f} GMACs" for i in range(14)]
    assert "budgets shown" not in every
    # nothing left out, or budgets given: no such note
    assert len(_budgets(matched_gmacs_table(df))) == 6 and "budgets shown" not in matched_gmacs_table(df)
    assert "budgets shown" not in matched_gmacs_table(many, grid=[1.5, 2.0])
    assert "3 of 14" in matched_gmacs_table(many, max_budgets=3)
    with pytest.raises(VitbenchError, match="max_budgets 1 is below 2"):
        matched_gmacs_table(many, max_budgets=1)


def test_selection_table_delta_is_scored_minus_random(df: pd.DataFrame) -> None:
    csv = pd.read_csv(io.StringIO(selection_table(df, fmt="csv")))
    assert set(csv["Method"]) == {"tome", "evit"} and len(csv) == 6
    tome = csv[csv["Method"] == "tome"].iloc[0]
    assert tome["Top-1 scored"] - tome["Top-1 random"] == pytest.approx(tome["Δ (scored − random)"])
    assert list(csv.loc[csv["Method"] == "tome", "Δ (scored − random)"]) == pytest.approx([1.0] * 3)
    assert list(csv.loc[csv["Method"] == "evit", "Δ (scored − random)"]) == pytest.approx([2.0] * 3)
    assert "+2.00" in selection_table(df)
    # keep ratio 1.0 rows are skipped
    extra = pd.DataFrame(
        [
            row(method="tome", setting="r=0", keep_ratio=1.0, gmacs=4.6, top1=80.2, selection=s)
            for s in ("scored", "random")
        ]
    )
    with_full = pd.read_csv(
        io.StringIO(selection_table(pd.concat([df, extra], ignore_index=True), fmt="csv"))
    )
    assert len(with_full) == 6 and 1.0 not in set(with_full["Keep"])
    with pytest.raises(VitbenchError, match="scored and random"):
        selection_table(df[df["selection"] == "scored"])


def test_selection_table_shows_the_gmacs_of_each_selection(df: pd.DataFrame) -> None:
    # ToMe's random selection skips the matching: its cells cost less than the scored ones
    cheaper = (df["method"] == "tome") & (df["selection"] == "random")
    df = df.assign(gmacs=df["gmacs"].where(~cheaper, df["gmacs"] - 0.05))
    csv = pd.read_csv(io.StringIO(selection_table(df, fmt="csv")))
    assert list(csv.columns[:4]) == ["Method", "Keep", "GMACs scored", "GMACs random"]
    tome = csv[csv["Method"] == "tome"]
    assert list(tome["GMACs scored"]) == pytest.approx([4.2, 3.4, 2.6])
    assert list(tome["GMACs random"]) == pytest.approx([4.15, 3.35, 2.55])
    evit = csv[csv["Method"] == "evit"]
    assert list(evit["GMACs random"]) == pytest.approx(list(evit["GMACs scored"]))
    shown = selection_table(df)
    assert "|           4.20 |           4.15 |" in shown  # both costs on ToMe's keep-0.9 row
    assert "they differ for tome (random selection computes no scores or matching)" in shown
    assert "they differ" not in selection_table(make_df())  # equal costs: no such note


def test_noise_table(df: pd.DataFrame) -> None:
    csv = pd.read_csv(io.StringIO(noise_table(df, fmt="csv")))
    assert list(csv.columns) == ["Method", "Setting", "Keep", "Clean", f"{NOISE}@3", "Mean noisy"]
    dense = csv[csv["Method"] == "dense"].iloc[0]
    assert dense["Clean"] == pytest.approx(80.25) and dense[f"{NOISE}@3"] == pytest.approx(70.25)
    assert dense["Mean noisy"] == pytest.approx(70.25)
    with pytest.raises(VitbenchError, match="noisy"):
        noise_table(df[df["noise"] == "clean"])


def test_plot_pareto_png_and_svg(df: pd.DataFrame, tmp_path: Any) -> None:
    png = plot_pareto(df, tmp_path / "sub" / "pareto.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plot_pareto(df, str(tmp_path / "pareto.svg"), noise=NOISE, level=3.0)
    assert svg.stat().st_size > 1000 and "<svg" in svg.read_text()
    pdf = plot_pareto(df, tmp_path / "pareto.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    with pytest.raises(VitbenchError, match=r"\.png, \.svg or \.pdf"):
        plot_pareto(df, tmp_path / "pareto.jpg")


def test_render_all_sections_and_failed_cells(df: pd.DataFrame) -> None:
    out = render_all(df)
    for heading in (
        "## Leaderboard",
        "## Accuracy at matched GMACs",
        "## Token selection",
        "## Robustness under noise",
        "## Failed cells (1)",
    ):
        assert heading in out
    assert "CUDA out of memory" in out
    assert "vit_s\\|tome" in out  # "|" escaped inside markdown cells
    failed = failed_cells(df)
    assert len(failed) == 1 and failed.loc[0, "error"] == "CUDA out of memory"
    clean_only = render_all(df[(df["selection"] == "scored") & (df["noise"] == "clean")])
    assert "## Token selection" not in clean_only and "## Robustness" not in clean_only


def test_failed_rows_are_excluded(df: pd.DataFrame) -> None:
    assert "r=20" not in leaderboard(df)


def test_empty_frames_raise_clear_error(df: pd.DataFrame) -> None:
    empty = df.iloc[:0]
    only_failed = df[df["error"].notna()]
    for frame in (empty, only_failed):
        for fn in (leaderboard, matched_gmacs_table, selection_table, noise_table, render_all):
            with pytest.raises(VitbenchError, match="no successful records.*vitbench run"):
                fn(frame)
    with pytest.raises(VitbenchError, match="no successful records"):
        plot_pareto(empty, "x.png")


def test_functions_do_not_mutate_input(df: pd.DataFrame, tmp_path: Any) -> None:
    snapshot = df.copy()
    leaderboard(df, fmt="csv")
    matched_gmacs_table(df)
    selection_table(df)
    noise_table(df)
    render_all(df, fmt="latex")
    failed_cells(df)
    plot_pareto(df, tmp_path / "p.png")
    pd.testing.assert_frame_equal(df, snapshot)


def test_variants_and_noisy_calibration_are_never_averaged() -> None:
    """Same method and keep ratio, other non-knob settings or calibration noise: separate rows/curves."""
    from vitbench.report.robustness import selection_deltas

    recs = [row(method="dense", setting="-", keep_ratio=1.0, gmacs=4.6, top1=80.0)]
    for keep, g, a in ((0.7, 3.0, 79.0), (0.5, 2.3, 77.0)):
        recs.append(row(method="evit", setting=f"keep_rate={keep}", keep_ratio=keep, gmacs=g, top1=a))
        for sel, drop in (("scored", 0.0), ("random", 5.0)):
            for calib, level, acc in (("clean", 0.0, 90.0), ("salt-pepper", 0.2, 50.0)):
                recs.append(
                    row(
                        method="evit",
                        setting=f"keep_rate={keep}, fuse_token=False",
                        keep_ratio=keep,
                        gmacs=g,
                        top1=acc - drop,
                        selection=sel,
                        calib_noise=calib,
                        calib_level=level,
                        seed=7 if calib == "clean" else 8,
                    )
                )
    df = pd.DataFrame(recs)
    df = df.assign(cell_key=[f"k{i}" for i in range(len(df))])
    board = pd.read_csv(io.StringIO(leaderboard(df, fmt="csv")))
    top1 = {
        f"{m},{s}" if "," not in s else f'{m},"{s}"': t
        for m, s, t in zip(board["Method"], board["Setting"], board["Top-1"])
    }
    assert top1 == {
        "dense,-": 80.0,
        "evit,keep_rate=0.7": 79.0,
        "evit,keep_rate=0.5": 77.0,
        'evit,"keep_rate=0.7, fuse_token=False"': 90.0,
        'evit,"keep_rate=0.5, fuse_token=False"': 90.0,
        'evit,"keep_rate=0.7, fuse_token=False, calib=salt-pepper@0.2"': 50.0,
        'evit,"keep_rate=0.5, fuse_token=False, calib=salt-pepper@0.2"': 50.0,
    }
    matched = matched_gmacs_table(df, fmt="csv")
    assert "evit fuse_token=False" in matched and "evit fuse_token=False, calib=salt-pepper@0.2" in matched
    d = selection_deltas(df)
    noisy = "evit fuse_token=False, calib=salt-pepper@0.2"
    assert sorted(set(d["curve"])) == ["evit fuse_token=False", noisy]
    assert set(d["delta"].round(6)) == {5.0}


def test_leaderboard_caption_names_adaptive_methods(df: pd.DataFrame) -> None:
    # adaptive records (per-image GMACs, p10/p50/p90 kept) are placed at their mean: the caption says so
    adaptive = df.assign(gmacs_p50=df["gmacs"].where(df["method"] == "tome"))
    caption = leaderboard(adaptive).splitlines()[0]
    assert "tome: tokens per image vary, placed at the mean GMACs over the evaluated images" in caption
    assert "evit" not in caption
    assert "placed at the mean" not in leaderboard(df).splitlines()[0]  # no adaptive rows: no note
    assert (
        "tome: tokens per image vary, placed at the mean GMACs" in selection_table(adaptive).splitlines()[0]
    )
    assert "placed at the mean" not in selection_table(df).splitlines()[0]


def test_selection_caption_names_costs_that_differ_below_the_printed_digits(df: pd.DataFrame) -> None:
    # ToMe's random rows cost 0.05 less (printed apart), EViT's 1e-4 less (printed alike at 2 decimals)
    less = {"tome": 0.05, "evit": 1e-4}
    cut = df["method"].map(less).fillna(0.0).where(df["selection"] == "random", 0.0)
    shown = selection_table(df.assign(gmacs=df["gmacs"] - cut))
    assert "|           4.30 |           4.30 |" in shown  # EViT's keep-0.9 row: both print alike
    assert (
        "they differ for tome, and below the printed digits for evit (random selection computes no "
        "scores or matching)" in shown.splitlines()[0]
    )
    only_hidden = df["method"].map({"evit": 1e-4}).fillna(0.0).where(df["selection"] == "random", 0.0)
    caption = selection_table(df.assign(gmacs=df["gmacs"] - only_hidden)).splitlines()[0]
    assert "they differ below the printed digits for evit (" in caption and "tome" not in caption


def test_html_sections_carry_the_titles_of_their_views(df: pd.DataFrame) -> None:
    # a view with a title (its heading in the `all` view) and a report section heads it alike
    import html

    from vitbench.report import views
    from vitbench.report.html import html_report

    page = html_report(df)
    both = [v for v in views.report_views() if v.title]
    assert {v.name for v in both} >= {"main", "matched"}
    for view in both:
        assert f"<h2>{html.escape(view.title)}</h2>" in page, view.name
