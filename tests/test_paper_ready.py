"""Figures and reports a paper can use: names, filters, captions, units, digits, provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from vitbench.core.errors import VitbenchError
from vitbench.report.names import image_set_footnote, image_set_names, model_title
from vitbench.store.records import RECORD_FIELDS

ARGS = json.dumps({"img_size": 32, "num_classes": 10, "patch_size": 4})


def rec(**values: Any) -> dict[str, Any]:
    r: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
    r.update(
        suite="own",
        model="vit_tiny_patch16_224",
        weights="/data/ckpt/my_vit.pth",
        weights_digest="3f2a9c1b00112233",
        model_args=ARGS,
        dataset="cifar10-npz",
        split="test",
        n_samples=500,
        sample_ids_hash="e4338569aaaaaaaa",
        selection="scored",
        noise="clean",
        level=0.0,
        seed=0,
        params_m=5.4,
        vitbench_version="0.2.0",
        torch_version="2.14.1",
        timm_version="1.0.31",
        git_commit="0123456789abcdef0123",
    )
    r.update(values)
    r["cell_key"] = "|".join(str(r[k]) for k in ("sample_ids_hash", "method", "keep_ratio", "noise", "level"))
    return r


def own_df(label: str | None = None, second_images: bool = False) -> pd.DataFrame:
    rows = []
    hashes = ["e4338569aaaaaaaa", "77aa0000bbbbbbbb"] if second_images else ["e4338569aaaaaaaa"]
    for h in hashes:
        rows.append(
            rec(method="dense", setting="-", keep_ratio=1.0, gmacs=0.018, top1=90.0, sample_ids_hash=h)
        )
        for keep, g, t in ((0.7, 0.0125, 88.0), (0.5, 0.0088, 84.0)):
            rows.append(
                rec(
                    method="evit",
                    setting=f"keep_rate={keep}",
                    keep_ratio=keep,
                    gmacs=g,
                    top1=t,
                    sample_ids_hash=h,
                )
            )
    df = pd.DataFrame(rows)
    df["model_label"] = label
    return df


# -- names ------------------------------------------------------------------------------------------


def test_model_title_names_the_model_as_the_user_knows_it() -> None:
    assert (
        model_title("vit_tiny_patch16_224", ARGS)
        == "vit_tiny_patch16_224 (img_size=32, num_classes=10, patch_size=4)"
    )
    # arguments equal to what the name spells (patch16, _224, 1000 classes) are no news
    same = json.dumps({"img_size": 224, "patch_size": 16, "num_classes": 1000, "drop_rate": 0.1})
    assert (
        model_title("vit_tiny_patch16_224.augreg_in21k", same)
        == "vit_tiny_patch16_224.augreg_in21k (drop_rate=0.1)"
    )
    assert model_title("vit_tiny_patch16_224", None) == "vit_tiny_patch16_224"
    assert model_title("vit_tiny_patch16_224", ARGS, "ViT-T/4 CIFAR-10") == "ViT-T/4 CIFAR-10"


def test_image_sets_are_named_by_suite_and_count_and_kept_unique() -> None:
    rows = [("mnist-demo", "test", "a" * 16, 1000, "demo"), ("mnist-demo", "test", "a" * 16, 1000, "demo")]
    assert image_set_names(rows) == {("mnist-demo", "test", "a" * 16): "demo, 1000 images"}
    rows += [("mnist-demo", "test", "b" * 16, 1000, "demo")]
    names = image_set_names(rows)
    assert sorted(names.values()) == [
        "demo, mnist-demo/test, 1000 images (a)",
        "demo, mnist-demo/test, 1000 images (b)",
    ]
    assert "ids bbbbbbbb" in image_set_footnote(names) and "bbbbbbbb" not in " ".join(names.values())


def test_a_suite_label_is_display_only() -> None:
    from vitbench.harness.suites import expand, suite_from_dict

    base = {"name": "s", "models": [{"name": "vitbench_demo_vit", "weights": "demo"}], "methods": ["dense"]}
    labelled = {**base, "models": [{"name": "vitbench_demo_vit", "weights": "demo", "label": "Demo ViT"}]}
    a, b = suite_from_dict(base), suite_from_dict(labelled)
    assert b.models[0].label == "Demo ViT" and a.models[0].label is None
    assert a.to_dict() == b.to_dict()  # config hash unchanged
    assert [c.key() for c in expand(a)] == [c.key() for c in expand(b)]  # cell keys unchanged
    bad = {**base, "models": [{"name": "vitbench_demo_vit", "label": ""}]}
    with pytest.raises(VitbenchError, match="label must be a non-empty text"):
        suite_from_dict(bad)


# -- tables: units, digits, names --------------------------------------------------------------------


def test_one_unit_and_one_digits_rule_in_every_table() -> None:
    from vitbench.report.paper_table import paper_table
    from vitbench.report.tables import leaderboard, matched_gmacs_table

    df = own_df()
    tables = [leaderboard(df), matched_gmacs_table(df), paper_table(df)]
    for text in tables:
        assert "GFLOPs (MACs)" not in text and "| GFLOPs" not in text
        assert "papers label them GFLOPs" in text
    board, paper = tables[0], tables[2]
    assert "0.0088" in board and "0.0088" in paper and "0.00880" not in paper
    assert "0.0180" in board and "0.0180" in paper


def test_tables_and_figures_name_the_model_with_its_args_or_label() -> None:
    from vitbench.report.paper_table import paper_table
    from vitbench.report.tables import pareto_figure

    df = own_df()
    assert "vit_tiny_patch16_224 (img_size=32, num_classes=10, patch_size=4)" in paper_table(df)
    title = pareto_figure(df).axes[0].get_title()
    assert title.startswith(
        "vit_tiny_patch16_224 (img_size=32, num_classes=10, patch_size=4): own, 500 images"
    )
    assert (
        pareto_figure(own_df("ViT-T/4 CIFAR-10")).axes[0].get_title().startswith("ViT-T/4 CIFAR-10: own, 500")
    )


def test_populations_get_a_line_style_and_no_hash_in_the_legend() -> None:
    from vitbench.report.tables import pareto_figure

    fig = pareto_figure(own_df(second_images=True))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "dense",
        "evit",
        "own, cifar10-npz/test, 500 images (a)",
        "own, cifar10-npz/test, 500 images (b)",
    ]
    styles = {line.get_linestyle() for line in ax.get_lines() if len(line.get_xdata()) == 2}
    assert styles == {"-", "--"}  # evit on each image set
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "ids 77aa0000" in notes and "ids e4338569" in notes


# -- robustness figures follow the view's filters; captions say what was averaged -------------------


def corrupted_df(noises: tuple[str, ...] = ("gaussian-noise", "fog")) -> pd.DataFrame:
    rows = [rec(method="dense", setting="-", keep_ratio=1.0, gmacs=1.0, top1=90.0, model_args=None)]
    rows.append(
        rec(method="evit", setting="keep_rate=0.5", keep_ratio=0.5, gmacs=0.6, top1=80.0, model_args=None)
    )
    for noise in noises:
        for s in range(1, 6):
            rows.append(
                rec(method="dense", setting="-", keep_ratio=1.0, gmacs=1.0, top1=90.0 - 10 * s, noise=noise,
                    level=float(s), model_args=None)
            )  # fmt: skip
            rows.append(
                rec(method="evit", setting="keep_rate=0.5", keep_ratio=0.5, gmacs=0.6, top1=80.0 - 12 * s,
                    noise=noise, level=float(s), model_args=None)
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_heatmap_draws_the_severity_the_table_shows() -> None:
    from vitbench.report.robust import corruption_table, heatmap_figure

    df = corrupted_df()
    fig = heatmap_figure(df, severity=3)
    drawn = fig.axes[0].get_images()[0].get_array()
    table = pd.read_csv(__import__("io").StringIO(corruption_table(df, fmt="csv", severity=3))).set_index(
        "Method"
    )
    assert np.allclose(drawn, table[["gaussian-noise", "fog"]].to_numpy())  # errors at severity 3: 40 / 56
    assert "severity 3" in fig.axes[0].get_title()
    ce = heatmap_figure(df)
    levels = sorted({int(v) for v in df.loc[df["noise"] != "clean", "level"]})
    assert f"summed over severities {levels[0]}-{levels[-1]}" in ce.axes[0].get_title()
    assert not np.allclose(ce.axes[0].get_images()[0].get_array(), drawn)
    # a suite that ran one severity: the caption names that severity, never "1-5"
    one = heatmap_figure(df.loc[(df["noise"] == "clean") | (df["level"] == 3.0)])
    assert "summed over severity 3" in one.axes[0].get_title() and "1-5" not in one.axes[0].get_title()


def test_severities_note() -> None:
    from vitbench.report.robust import severities_note

    assert severities_note([3.0, 3.0]) == "severity 3"
    assert severities_note([1.0, 2.0, 3.0, 4.0, 5.0]) == "severities 1-5"
    assert severities_note([3.0, 5.0]) == "severities 3, 5"


def test_cli_heatmap_follows_severity_and_writes_pdf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import math

    from vitbench.cli.main import main
    from vitbench.store.results import ResultsStore

    db = tmp_path / "r.sqlite"
    with ResultsStore(db) as store:
        for r in corrupted_df().to_dict("records"):
            store.write({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    pdf = tmp_path / "heat.pdf"
    args = [
        "robustness",
        "--results",
        str(db),
        "--view",
        "corruptions",
        "--severity",
        "3",
        "--plot",
        str(pdf),
    ]
    assert main(args) == 0
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert (
        main(["robustness", "--results", str(db), "--view", "levels", "--plot", str(tmp_path / "x.gif")]) == 2
    )
    assert "use a .png, .svg or .pdf file name" in capsys.readouterr().err


def test_captions_say_what_was_averaged_and_only_when_true() -> None:
    from vitbench.report.robust import robustness_table, severity_figure, severity_table

    one = corrupted_df(("gaussian-noise",))
    cap = robustness_table(one).splitlines()[0]
    assert (
        "of the one ImageNet-C test corruption (gaussian-noise)" in cap and "mCE and relative mCE" not in cap
    )
    header = [c.strip() for c in robustness_table(one).splitlines()[2].strip("|").split("|")]
    assert "CE" in header and "rel. CE" in header and "mCE" not in header  # one corruption: no mean
    assert severity_table(one).splitlines()[0] == "Top-1 (%) per severity, on gaussian-noise."
    panels = [ax.get_title() for ax in severity_figure(one).axes]
    assert panels == ["noise: gaussian-noise"]  # no "all" panel repeating the one family
    two = corrupted_df()
    assert "mean over 2 ImageNet-C test corruptions" in robustness_table(two).splitlines()[0]
    assert "mean over the 2 ImageNet-C test corruptions" in severity_table(two).splitlines()[0]


# -- the HTML report stands alone --------------------------------------------------------------------


def test_report_opens_with_provenance_and_never_wraps_numbers() -> None:
    from vitbench.report.html import html_report

    page = html_report(own_df())
    prov = page[page.index("<section class='prov'>") : page.index("</section>")]
    assert page.index("<section class='prov'>") < page.index("<h2>Leaderboard")
    for needle in (
        "cifar10-npz",
        ">500<",
        "e4338569aaaaaaaa",
        "my_vit.pth",
        "3f2a9c1b00112233",
        "vit_tiny_patch16_224 (img_size=32, num_classes=10, patch_size=4)",
        "No channel-pruning cells",
        "2.14.1",
        "1.0.31",
        "0123456789ab",
        "<b>Seeds:</b> 0",
    ):
        assert needle in prov, needle
    assert "td{white-space:nowrap}" in page


def test_report_lists_the_calibration_of_channel_cells() -> None:
    from vitbench.report.html import html_report

    df = own_df()
    extra = rec(
        method="lfs", family="channel", setting="keep=0.5", keep_ratio=0.5, gmacs=0.009, top1=70.0,
        calib_noise="gaussian-noise", calib_level=1.0, params_json=json.dumps({"num_samples": 256}),
    )  # fmt: skip
    page = html_report(pd.concat([df, pd.DataFrame([extra])], ignore_index=True))
    prov = page[page.index("<section class='prov'>") : page.index("</section>")]
    assert "gaussian-noise@1" in prov and "num_samples" in prov


def test_report_headings_say_ce_for_one_corruption() -> None:
    from vitbench.report.html import html_report

    one = html_report(corrupted_df(("gaussian-noise",)))
    assert "Corruption robustness (CE, lower is better)" in one and "mCE relative" not in one
    assert "Corruption robustness (mCE, lower is better)" in html_report(corrupted_df())
