"""Command-line polish: version, help texts, suite and dataset defaults, precision, deprecated flags."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from vitbench.cli.main import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_version_names_vitbench_torch_timm(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    import vitbench

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"vitbench {vitbench.__version__} (")
    assert f"torch {torch.__version__.split('+')[0]}" in out and re.search(r"timm \d+\.\d+", out), out


def test_every_option_has_help() -> None:
    parser = build_parser()
    missing = []
    for name, sub in {"vitbench": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_finetune_help_says_what_no_save_backbone_does() -> None:
    ft = _subparsers(build_parser())["finetune"]
    action = next(a for a in ft._actions if "--no-save-backbone" in a.option_strings)
    assert action.help is not None and action.help.startswith("do not store")


def test_suite_name_close_match(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "demoo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: suite 'demoo' not found; did you mean 'demo'") and "\n" not in err


def test_data_uses_the_datasets_evaluation_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "mnist-demo", "--limit", "20"]) == 0
    assert capsys.readouterr().out.startswith("mnist-demo test: 20 images, 10 classes")
    assert main(["data", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "--root PATH" in err and "--set" not in err
    assert main(["data", "imagenet", "--root", "/nonexistent/imagenet"]) == 2
    assert "--root" in capsys.readouterr().err


def test_default_split_follows_the_dataset() -> None:
    from vitbench.harness.suites import default_split, suite_from_dict

    assert default_split("mnist-demo") == "test" and default_split("imagenet") == "val"
    assert default_split("image-folder") == "test"  # any split: the suite default
    spec = suite_from_dict(
        {"name": "x", "models": ["vitbench_demo_vit"], "methods": ["dense"], "dataset": "imagenet"}
    )
    assert spec.dataset.split == "val"


def test_flops_shows_three_significant_digits_on_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "--model", "vitbench_demo_vit"]) == 0
    assert re.match(r"0\.01\d\d GMACs ", capsys.readouterr().out)  # 3 significant digits, not "0.01"
    assert main(["flops", "--model", "vitbench_demo_vit", "--method", "tome", "--set", "r=40"]) == 2
    err = capsys.readouterr().err
    assert "r=40 cannot be realised on vitbench_demo_vit" in err and "use r <= 32" in err


def test_tome_r_limit_is_the_first_blocks_capacity() -> None:
    from vitbench.core.errors import VitbenchError
    from vitbench.core.models import create_model
    from vitbench.methods.tome import ToMe

    model = create_model("vitbench_demo_vit", "random")  # 64 image tokens + CLS
    assert ToMe.schedule(model, ToMe.params_for(1.0, model, {"r": 32}))[:3] == [65, 33, 17]
    with pytest.raises(VitbenchError, match="r=33 cannot be realised"):
        ToMe.schedule(model, ToMe.params_for(1.0, model, {"r": 33}))
    per_block = ToMe.params_for(1.0, model, {"r_per_block": [1] * 7 + [33]})
    with pytest.raises(VitbenchError, match="r=33 cannot be realised"):
        ToMe.schedule(model, per_block)
    assert ToMe.schedule(model, ToMe.params_for(1.0, model, {"r_per_block": [32] * 8}))[-1] == 2  # clipped


def test_bench_channel_batch_size_and_deprecated_batch(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["bench-channel", "--batch-size", "8"]).batch_size == 8
    assert parser.parse_args(["bench-channel"]).batch_size == 32
    assert parser.parse_args(["bench-channel", "--batch", "16"]).batch_size == 16
    assert "--batch is deprecated; use --batch-size" in capsys.readouterr().err
    bc = _subparsers(parser)["bench-channel"]
    assert "--batch " not in bc.format_help() and "--batch-size" in bc.format_help()


def test_coercion_errors_read_as_english() -> None:
    from vitbench.core.errors import VitbenchError
    from vitbench.methods import METHODS
    from vitbench.methods.base import make_params

    for method, key, value, text in [
        ("tome", "r", "abc", "is not an integer"),
        ("tome", "prop_attn", "maybe", "is not true or false"),
        ("evit", "keep_rate", "x", "is not a number"),
    ]:
        with pytest.raises(VitbenchError, match=text):
            make_params(METHODS.get(method), {key: value})


def test_paper_flops_progress_off_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(range(3), disable=None)  # what the commands pass: None = off unless a TTY
    list(bar)
    assert bar.disable  # pytest's captured stderr is not a terminal
    assert "it/s" not in capsys.readouterr().err


def test_readme_commands_section_names_the_results_folder() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "vitbench-results/" in readme and "vitbench regenerate-references" in readme


def test_every_command_group_registers_its_commands_in_the_help_order() -> None:
    from vitbench.cli import main as cli

    names = [name for group in cli.GROUPS for name in group.COMMANDS]
    assert len(names) == len(set(names)), "two command groups register the same command"
    assert sorted(cli.HELP_ORDER) == sorted(names)
    assert list(_subparsers(build_parser())) == list(cli.HELP_ORDER)


def test_command_groups_import_only_the_shared_options_module() -> None:
    """No import cycle inside the CLI: main -> command groups -> options, never back up."""
    import ast

    import vitbench.cli

    folder = Path(vitbench.cli.__file__).parent
    found: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {
            n.module + "." + a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module
            for a in n.names
        }
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        found[path.stem] = {m.split(".")[2] for m in mods if m.startswith("vitbench.cli.")}
    groups = set(found) - {"__init__", "main", "options"}
    assert {"run", "results", "compare", "measure", "data", "train", "bench"} <= groups
    assert found["options"] == set() and found["__init__"] == set()
    assert all(found[g] == {"options"} for g in groups), found
    assert found["main"] == groups | {"options"}


def test_importing_the_cli_loads_neither_torch_nor_pandas() -> None:
    import subprocess
    import sys

    code = "import sys, vitbench.cli.main; print(sorted({'torch', 'pandas', 'timm'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
