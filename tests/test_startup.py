"""Commands that need no model start without torch; the shipped method index matches the classes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vbtest import TINY_SUITE
from vitbench.cli.main import main
from vitbench.core.method_index import build_index, index_file, method_info


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
    suite.write_text(yaml.safe_dump(TINY_SUITE))
    assert main(["run", str(suite), "--results", str(d / "r.sqlite"), "--output-dir", ""]) == 0
    return d / "r.sqlite"


@pytest.mark.parametrize(
    "args",
    [
        ["methods"],
        ["leaderboard", "--results", "STORE"],
        ["leaderboard", "--results", "STORE", "--view", "all"],
        ["compare", "--results", "STORE", "--against", "dense"],
    ],
)
def test_commands_without_a_model_do_not_import_torch(args: list[str], store: Path) -> None:
    torch_loaded, out = _imports_torch([str(store) if a == "STORE" else a for a in args])
    assert not torch_loaded, out
    assert out.strip().endswith("0"), out
