"""Fail fast: weights, hub, data and artifacts are resolved before any cell (one line, exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vbtest import TINY_SUITE
from vitbench.cli.main import main
from vitbench.core import models

TINY = TINY_SUITE


def write_suite(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


@pytest.fixture
def no_cells(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records every cell the harness starts (a failing preflight must start none)."""
    from vitbench.harness import runner as harness

    started: list = []
    original = harness.Harness.run_cell

    def spy(self: harness.Harness, cell: object) -> dict:
        started.append(cell)
        return original(self, cell)

    monkeypatch.setattr(harness.Harness, "run_cell", spy)
    return started


def run_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["run", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def _hub_suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path, models=[{"name": "deit_tiny_patch16_224", "weights": "hub"}])


def test_offline_hub_weights_fail_once_before_any_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_cells: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "cached_hub_file", lambda name: None)
    results = tmp_path / "r.sqlite"
    err = run_error([str(_hub_suite(tmp_path)), "--results", str(results)], capsys)
    assert "hub is offline (HF_HUB_OFFLINE)" in err and "weights: /path/to/model.safetensors" in err
    assert no_cells == [] and not results.exists()  # refused during setup: no store file


class _Unreachable:
    """A huggingface_hub session whose every request fails like a machine without network."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def head(self, url: str, timeout: float) -> None:
        self.timeouts.append(timeout)
        raise ConnectionError(f"cannot resolve {url}")


def test_unreachable_hub_one_short_probe_then_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_cells: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.utils

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    session = _Unreachable()
    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: session)
    monkeypatch.setattr(models, "_probe", {})
    monkeypatch.setattr(models, "cached_hub_file", lambda name: None)
    err = run_error([str(_hub_suite(tmp_path)), "--results", str(tmp_path / "r.sqlite")], capsys)
    assert "hub is unreachable" in err and "ConnectionError within 3 s" in err
    assert session.timeouts == [3.0] and no_cells == []  # one probe, short timeout, no retries


def test_unreachable_hub_uses_the_local_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.utils

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.utils, "get_session", _Unreachable)
    monkeypatch.setattr(models, "_probe", {})
    monkeypatch.setattr(models, "cached_hub_file", lambda name: "/cache/model.safetensors")
    assert models.hub_weights_file("deit_tiny_patch16_224") == "/cache/model.safetensors"


def test_missing_weights_file_and_demo_weights_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_cells: list
) -> None:
    suite = write_suite(tmp_path, models=[{"name": "vitbench_demo_vit", "weights": str(tmp_path / "no.pth")}])
    assert "no.pth does not exist" in run_error([str(suite), "--results", str(tmp_path / "a.sqlite")], capsys)
    suite = write_suite(tmp_path, models=[{"name": "deit_tiny_patch16_224", "weights": "demo"}])
    assert "weights 'demo' exist only" in run_error(
        [str(suite), "--results", str(tmp_path / "b.sqlite")], capsys
    )
    assert no_cells == []


def test_missing_artifact_names_the_finetune_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_cells: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VITBENCH_ARTIFACTS", str(tmp_path / "artifacts"))
    suite = write_suite(tmp_path, methods=["dense", {"name": "dynamicvit", "keep_ratios": [0.9]}])
    err = run_error([str(suite), "--results", str(tmp_path / "r.sqlite")], capsys)
    assert "no trained artifact for dynamicvit" in err
    assert "vitbench finetune --model vitbench_demo_vit --weights demo --method dynamicvit --keep 0.9" in err
    assert no_cells == []
    suite = write_suite(
        tmp_path, methods=[{"name": "dynamicvit", "params": {"artifact": "nope.safetensors"}}]
    )
    assert "artifact 'nope.safetensors' not found" in run_error(
        [str(suite), "--results", str(tmp_path / "s.sqlite")], capsys
    )


def test_shipped_artifacts_and_bad_data_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_cells: list
) -> None:
    from vitbench.harness.preflight import preflight
    from vitbench.harness.runner import Harness
    from vitbench.harness.suites import expand, load_suite

    suite = write_suite(tmp_path, methods=[{"name": "dynamicvit", "keep_ratios": [0.7]}])
    spec = load_suite(str(suite))
    preflight(Harness(spec, str(tmp_path / "ok.sqlite"), progress=False), expand(spec))  # shipped: passes
    suite = write_suite(tmp_path, dataset={"name": "cifar10-npz", "root": str(tmp_path / "none")})
    assert "does not exist" in run_error([str(suite), "--results", str(tmp_path / "c.sqlite")], capsys)
    assert no_cells == []


def test_finished_run_is_not_preflighted_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = write_suite(tmp_path, methods=["dense"])
    results = str(tmp_path / "r.sqlite")
    assert main(["run", str(suite), "--results", results, "--no-progress", "--output-dir", ""]) == 0

    def boom(*args: object) -> None:
        raise AssertionError("preflight checked weights of a finished run")

    monkeypatch.setattr(models, "check_weights", boom)
    assert main(["run", str(suite), "--results", results, "--no-progress", "--output-dir", ""]) == 0
    assert "0 evaluated, 1 resumed" in capsys.readouterr().out
