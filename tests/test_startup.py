"""Commands that need no model start without torch; the shipped method index matches the classes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vbtest import TINY_SUITE
from vitbench.cli.main import main
from vitbench.core.method_index import build_index, index_file, method_info

HAS_ORT = all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime"))


def _ort(args: list[str], message: str) -> Any:
    """A case of `vitbench export --check onnxruntime`: its flags are checked after the deploy extra."""
    return pytest.param(
        args, message, marks=pytest.mark.skipif(not HAS_ORT, reason="the deploy extra is not installed")
    )


def test_shipped_method_index_matches_the_classes() -> None:
    shipped = json.loads(index_file().read_text())
    assert shipped == build_index(), (
        "vitbench/assets/methods.json is stale; write it again with `python -m vitbench.core.method_index`"
    )
    assert method_info("no-such-method") is None


def _imports_torch(args: list[str]) -> tuple[bool, str]:
    code = (
        "import sys\nfrom vitbench.cli.main import main\n"
        f"rc = main({args!r})\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return "TORCH" in out.stdout.split()[-2:], out.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("startup")
    suite = d / "tiny.yaml"
    # one corruption beside clean, so the robustness views have something to show
    suite.write_text(
        yaml.safe_dump({**TINY_SUITE, "noises": ["clean", {"name": "gaussian-noise", "levels": [3]}]})
    )
    assert main(["run", str(suite), "--results", str(d / "r.sqlite"), "--output-dir", ""]) == 0
    return d / "r.sqlite"


@pytest.mark.parametrize(
    "args",
    [
        ["methods"],
        ["methods", "pitome"],
        ["leaderboard", "--results", "STORE"],
        ["leaderboard", "--results", "STORE", "--view", "all"],
        ["compare", "--results", "STORE", "--against", "dense"],
        ["robustness", "--results", "STORE"],
        ["robustness", "--results", "STORE", "--view", "corruptions", "--severity", "3"],
        ["report", "--results", "STORE", "--output", "REPORT"],
    ],
)
def test_commands_without_a_model_do_not_import_torch(args: list[str], store: Path) -> None:
    paths = {"STORE": str(store), "REPORT": str(store.parent / "report.html")}
    torch_loaded, out = _imports_torch([paths.get(a, a) for a in args])
    assert not torch_loaded, out
    assert out.strip().endswith("0"), out


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ({"nosuchkey": 1}, "unknown key 'nosuchkey'"),
        ({"methods": ["tomee"]}, "unknown method 'tomee'; did you mean 'tome'"),
        ({"methods": [{"name": "tome", "keep": [0.5]}]}, "unknown key 'keep'"),
        ({"keep_ratios": [1.5]}, "bad.yaml: keep ratio 1.5 is outside (0, 1]"),
        (
            {"selections": ["scored", "randm"]},
            "selection 'randm' is not 'scored' or 'random'; did you mean 'random'?",
        ),
        ({"noises": ["gaussian-noiz"]}, "unknown noise 'gaussian-noiz'"),
        ({"dataset": {"name": "mnist-dem"}}, "unknown dataset 'mnist-dem'"),
        ({"throughput": {"runtimes": ["tensorrt"]}}, "unknown runtime 'tensorrt'"),
        (
            {"methods": [{"name": "evit", "params": {"keeprate": 0.5}}]},
            "method 'evit' has no parameter 'keeprate'; did you mean 'keep_rate'?",
        ),
        ({"models": [{"name": "vitbench_demo_vit", "data_config": {"crop_pct": 2}}]}, "crop_pct"),
        (
            {"methods": [{"name": "tome", "params": {"r": 13}}], "keep_ratios": [0.7, 0.5]},
            "method 'tome' sets its native knob r=13, so keep ratios 0.7, 0.5 all run r=13; "
            "give one keep ratio or drop r",
        ),
    ],
)
def test_a_suite_file_with_a_mistake_is_refused_without_torch(
    mistake: dict, message: str, tmp_path: Path
) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text(yaml.safe_dump({**TINY_SUITE, **mistake}))
    code = (
        "import sys\nfrom vitbench.cli.main import main\n"
        f"rc = main(['run', {str(suite)!r}, '--results', {str(tmp_path / 'r.sqlite')!r}])\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split()[-2:] == ["NO-TORCH", "2"], out.stdout + out.stderr
    assert message in out.stderr, out.stderr
    assert not (tmp_path / "r.sqlite").exists()  # refused before any store is written


def test_checks_that_need_timm_still_run() -> None:
    """A model name timm does not know and a wrong method parameter are refused after the light checks."""
    from vitbench.core.errors import VitbenchError
    from vitbench.harness.suites import suite_from_dict

    with pytest.raises(VitbenchError, match="unknown model 'vit_tiny_patch16_22'"):
        suite_from_dict({**TINY_SUITE, "models": ["vit_tiny_patch16_22"]})
    with pytest.raises(VitbenchError, match="r='many' is not an integer"):
        suite_from_dict({**TINY_SUITE, "methods": [{"name": "tome", "params": {"r": "many"}}]})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["flops", "--model", "vitbench_demo_vit", "--method", "nosuch"],
            "unknown method 'nosuch'; available:",
        ),
        (["flops", "--method", "tmoe"], "unknown method 'tmoe'; did you mean 'tome'"),
        (["flops", "--method", "lfs"], "'lfs' is a channel method; this command takes token methods"),
        (["flops", "--keep", "1.5"], "--keep: keep ratio 1.5 is outside (0, 1]"),
        (
            ["flops", "--method", "tome", "--set", "rr=3"],
            "method 'tome' has no parameter 'rr'; did you mean 'r'?",
        ),
        (["flops", "--data-config", "crop_pct=2"], "data_config crop_pct must be in (0, 1]"),
        (
            ["throughput", "--model", "vitbench_demo_vit", "--runtime", "tensorrt"],
            "unknown runtime 'tensorrt'",
        ),
        (
            ["throughput", "--runtime", "openvino"],
            "openvino: install the deploy extra",
        ),
        (["throughput", "--method", "nosuch"], "unknown method 'nosuch'"),
        (["throughput", "--batch-size", "0"], "--batch-size 0: must be a positive integer"),
        (["throughput", "--dtype", "fp64"], "unknown dtype 'fp64'"),
        (
            ["throughput", "--set", "rr=3"],
            "--set rr: none of the methods dense, evit, tome has a parameter 'rr'",
        ),
        (
            ["throughput", "--method", "tome", "--keep", "0.7", "--keep", "0.5", "--set", "r=13"],
            "method 'tome' sets its native knob r=13, so keep ratios 0.7, 0.5 all run r=13",
        ),
        (["export", "--check", "tensorrt", "--output", "OUT"], "unknown runtime 'tensorrt'"),
        (["export", "--check", "openvino", "--output", "OUT"], "install the deploy extra"),
        _ort(
            ["export", "--check", "onnxruntime", "--method", "nosuch", "--output", "OUT"],
            "unknown method 'nosuch'",
        ),
        _ort(
            ["export", "--check", "onnxruntime", "--method", "evit", "--keep", "0", "--output", "OUT"],
            "outside (0, 1]",
        ),
        _ort(
            ["export", "--check", "onnxruntime", "--method", "evit", "--batch-size", "0", "--output", "OUT"],
            "--batch-size 0",
        ),
        _ort(
            ["export", "--check", "onnxruntime", "--method", "evit", "--output", "/proc/vb/m.onnx"],
            "--output /proc/vb/m.onnx: cannot write in /proc",
        ),
        (["throughput", "--results", "/proc/x.sqlite"], "--results /proc/x.sqlite: cannot write in /proc"),
        (["flops", "--paper", "--output", "/"], "--output / is a folder; give a file path"),
    ],
)
def test_cost_commands_refuse_a_bad_flag_without_torch(args: list[str], message: str, tmp_path: Path) -> None:
    """flops, throughput and export check their flags before importing torch: exit 2, one line."""
    out_file = tmp_path / "m.onnx"
    args = [str(out_file) if a == "OUT" else a for a in args]
    code = (
        "import importlib.util, sys\n"
        "find = importlib.util.find_spec\n"  # as if the deploy extra's openvino were not installed
        "importlib.util.find_spec = lambda n, *a: None if n == 'openvino' else find(n, *a)\n"
        "from vitbench.cli.main import main\n"
        f"rc = main({args!r})\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split()[-2:] == ["NO-TORCH", "2"], out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert not out_file.exists()
