"""CLI end to end on a tiny suite: run, resume, per-cell errors, leaderboard, bad input (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vitbench.cli.main import main
from vitbench.harness.suites import expand, load_suite
from vitbench.store.results import load_results

TINY = {
    "name": "tiny",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 24},
    "models": [{"name": "vitbench_demo_vit", "weights": "random"}],
    "methods": ["dense", "tome", "evit", "random-tokens"],
    "keep_ratios": [0.5],
    "noises": ["clean", {"name": "gaussian-noise", "levels": [2]}],
    "selections": ["scored", "random"],
    "batch_size": 8,
    "bootstrap": 50,
    "throughput": {"batch_size": 4, "warmup": 0, "repeats": 1},
}


def write_suite(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def run(args: list[str]) -> int:
    return main(["run", *args, "--no-progress"])


def test_run_resume_and_leaderboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path)
    results = str(tmp_path / "r.sqlite")
    assert run([str(suite), "--results", results]) == 0
    n_cells = len(expand(load_suite(str(suite))))
    assert n_cells == 2 + 4 + 4 + 2  # dense, tome x2 sel, evit x2 sel, random-tokens: x 2 noises
    df = load_results(results)
    assert len(df) == n_cells and df["error"].isna().all()
    assert set(df["selection"]) == {"scored", "random"}
    assert (df.loc[df.method == "dense", "tokens_kept_frac"] == 1.0).all()
    assert (df.loc[df.method == "evit", "gmacs"] < df.loc[df.method == "dense", "gmacs"].iloc[0]).all()
    assert df["top1"].between(0, 100).all() and (df["img_per_s"] > 0).all()
    out = capsys.readouterr().out
    assert "| Method" in out and "ΔTop-1" in out
    assert run([str(suite), "--results", results]) == 0  # resume: nothing left to do
    assert "0 evaluated, 12 resumed" in capsys.readouterr().out
    assert main(["leaderboard", "--results", results, "--format", "csv", "--view", "main"]) == 0
    assert "Top-1" in capsys.readouterr().out


def test_failed_cell_is_recorded_and_sweep_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vitbench.methods.evit import EViT

    def broken(*args: object, **kwargs: object) -> None:  # fails while the cell runs, not before
        raise RuntimeError("evit broke\nmid-run")

    monkeypatch.setattr(EViT, "apply", classmethod(broken))
    suite = write_suite(tmp_path, methods=["dense", "evit"], noises=["clean"], selections=["scored"])
    results = str(tmp_path / "r.sqlite")
    assert run([str(suite), "--results", results]) == 0
    assert run([str(suite), "--results", results, "--strict"]) == 1  # the failed cell is retried
    df = load_results(results)
    assert df.loc[df.method == "dense", "error"].isna().all()
    err = df.loc[df.method == "evit", "error"].iloc[0]
    assert "evit broke mid-run" in err and "\n" not in err


def test_interrupted_run_keeps_finished_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vitbench.harness import runner as harness

    suite = write_suite(tmp_path, noises=["clean"], selections=["scored"])
    results = str(tmp_path / "r.sqlite")
    original = harness.Harness.run_cell
    calls = {"n": 0}

    def crashing(self: harness.Harness, cell: object) -> dict:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # simulated crash mid-sweep
        return original(self, cell)

    monkeypatch.setattr(harness.Harness, "run_cell", crashing)
    assert run([str(suite), "--results", results]) == 130  # Ctrl-C: one line, exit 130
    first = load_results(results)
    assert len(first) == 2
    monkeypatch.setattr(harness.Harness, "run_cell", original)
    assert run([str(suite), "--results", results]) == 0
    second = load_results(results)
    assert len(second) == 4
    kept = second.set_index("cell_key").loc[first["cell_key"], "timestamp"]
    assert list(kept) == list(first["timestamp"])  # finished cells were not redone


def test_set_overrides_method_params(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, noises=["clean"], selections=["scored"])
    results = str(tmp_path / "r.sqlite")
    assert (
        run(
            [
                str(suite),
                "--results",
                results,
                "--method",
                "tome",
                "--set",
                "r=5",
                "--set",
                "dataset.limit=16",
            ]
        )
        == 0
    )
    df = load_results(results)
    assert df["setting"].tolist() == ["r=5"] and df["n_samples"].tolist() == [16]


@pytest.mark.parametrize(
    ("args", "changes", "needle"),
    [
        (["--method", "tmoe"], {}, "did you mean 'tome'"),
        ([], {"models": ["deit_smal_patch16_224"]}, "did you mean 'deit_small_patch16_224'"),
        ([], {"keep_ratios": [1.5]}, "outside (0, 1]"),
        ([], {"noises": [{"name": "gaussian-noise", "levels": [6]}]}, "outside 1-5"),
        ([], {"noises": [{"name": "gausian-noise", "levels": [1]}]}, "did you mean 'gaussian-noise'"),
        ([], {"dataset": {"name": "cifar10-npz", "root": "/nonexistent/cifar"}}, "does not exist"),
        ([], {"keep_ratio": [0.5]}, "did you mean 'keep_ratios'"),
        (["--set", "r=3"], {"methods": ["evit"]}, "no method in this run has such a parameter"),
        (["--set", "keep_rate=abc"], {"methods": ["evit"]}, "keep_rate='abc' is not a number"),
        (["--set", "r=abc"], {"methods": ["tome"]}, "r='abc' is not an integer"),
        ([], {"methods": [{"name": "evit", "params": {"drop_loc": [40]}}]}, "drop_loc [40] outside blocks"),
        (["--method", "tome", "--set", "r=40"], {}, "tome r=40 cannot be realised on vitbench_demo_vit"),
    ],
)
def test_bad_input_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], changes: dict, needle: str
) -> None:
    suite = write_suite(tmp_path, **changes)
    assert run([str(suite), "--results", str(tmp_path / "r.sqlite"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err, err
    results = tmp_path / "r.sqlite"
    assert not results.exists()  # refused before any cell: no store file


def test_malformed_yaml_and_unwritable_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a, b\nmethods: [dense]\n")
    assert run([str(bad)]) == 2
    assert "malformed YAML" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run([str(write_suite(tmp_path)), "--results", str(blocker / "r.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "writable" in err


def test_methods_and_flops_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "tome" in out and "r=0" in out and "keep_rate=0.7" in out
    assert main(["flops", "--model", "deit_small_patch16_224", "--method", "evit", "--keep", "0.7"]) == 0
    assert capsys.readouterr().out.startswith("3.04 GMACs")
    assert main(["flops", "--model", "deit_small_patch16_224", "--method", "tome", "--set", "r=13"]) == 0
    assert capsys.readouterr().out.startswith("2.71 GMACs")
    assert main(["flops", "--keep", "0"]) == 2


def test_readme_test_command_is_what_ci_runs() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text().splitlines()
    ci = (root / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme[:40] if line.strip().startswith("pip install")]
    assert len(commands) >= 2 and commands[1] in ci and "vitbench run" in commands[0]


def test_methods_with_a_name_prints_its_card(capsys: pytest.CaptureFixture[str]) -> None:
    """`vitbench methods NAME` prints the method's card; every registered method has one."""
    from vitbench.core.method_index import all_methods

    for info in all_methods():
        assert main(["methods", info.name]) == 0
        out = capsys.readouterr().out
        assert out.startswith("# ") and f"name: {info.name}" in out
    assert main(["methods", "pitome"]) == 0
    out = capsys.readouterr().out
    assert "550b5de" in out and "repository_logs" in out
    assert main(["methods", "tmoe"]) == 2
    assert "did you mean 'tome'" in capsys.readouterr().err
