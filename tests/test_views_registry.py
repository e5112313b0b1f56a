"""The view registry: one module per view, read by the CLI, the all view, the report and the references."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vitbench.cli.main import main
from vitbench.core.errors import VitbenchError
from vitbench.report import views


def test_every_view_module_registers_one_view() -> None:
    found = views.views()
    modules = sorted(p.stem for p in Path(views.__file__).parent.glob("*.py") if p.stem != "__init__")
    assert len(found) == len(modules)  # each module defines exactly one VIEW
    assert views.names("leaderboard") == [
        "all",
        "main",
        "matched",
        "compare",
        "selection",
        "noise",
        "squeeze",
        "runtimes",
    ]
    assert views.names("robustness") == [
        "mce",
        "severity",
        "corruptions",
        "levels",
        "selection",
        "calibration",
    ]
    assert all(v.help and v.command in views.COMMANDS for v in found)


def test_the_cli_reads_its_choices_and_help_from_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["leaderboard", "--help"])
    out = capsys.readouterr().out
    for v in views.views():
        if v.command == "leaderboard":
            assert f"{v.name}:" in " ".join(out.split())
    with pytest.raises(SystemExit):
        main(["leaderboard", "--view", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_paper_is_a_deprecated_alias_of_main(capsys: pytest.CaptureFixture[str]) -> None:
    assert views.get("leaderboard", "paper").name == "main"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["note: --view paper is now --view main (the old name is deprecated)"]
    with pytest.raises(VitbenchError, match="unknown robustness view 'paper'; choose one of: mce"):
        views.get("robustness", "paper")


def test_the_all_view_and_the_report_take_their_sections_from_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.test_report import make_df

    from vitbench.report.html import html_report
    from vitbench.report.tables import all_sections

    df = make_df()
    sections = all_sections(df)
    assert [s.view for s in sections if s.view != "failed"] == ["main", "matched", "selection", "noise"]
    # a new view is one registered View: it appears in the all view and in the report
    extra = views.View(
        name="count",
        command="leaderboard",
        help="records per method",
        render=lambda d, o: f"{len(d)} records",
        order=45,
        title="Record count",
        report=lambda d, ctx: ctx.section("Record count", lambda: f"<p>{len(d)} records</p>"),
    )
    registered = views.views()
    monkeypatch.setattr(views, "views", lambda: (*registered, extra))
    titles = [s.title for s in all_sections(df)]
    assert titles[titles.index("Robustness under noise (Top-1, scored selection)") + 1] == "Record count"
    page = html_report(df)
    assert f"<h2>Record count</h2>\n<p>{len(df)} records</p>" in page


def test_a_view_refuses_a_format_it_has_no_form_for() -> None:
    with pytest.raises(VitbenchError, match="the calibration view has no csv form"):
        views.get("robustness", "calibration").check_format("csv")


def test_every_reference_step_names_a_registered_view() -> None:
    from vitbench.harness.references import REFERENCES

    named = 0
    for ref in REFERENCES:
        for step in ref.steps:
            if "--view" in step and step[0] in views.COMMANDS:  # `plot --view` picks a figure, not a table
                views.get(step[0], step[step.index("--view") + 1], warn=False)  # raises when unknown
                named += 1
    assert named >= 8


def test_importing_the_registry_stays_light() -> None:
    code = (
        "import sys; from vitbench.report import views; views.views(); "
        "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
