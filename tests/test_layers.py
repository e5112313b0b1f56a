"""The package's layers hold: import-linter's contracts, no cycles, no cross-module private names.

The layer order is written once, in pyproject.toml (``[tool.importlinter]``); ARCHITECTURE.md
explains it. These tests also run in CI's oldest environment (import-linter at its lower bound).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vitbench"

pytest.importorskip("importlinter")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _vitbench_imports(tree: ast.AST) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """(import node, inside a function) for every import of a vitbench module."""
    found: list[tuple[ast.ImportFrom | ast.Import, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("vitbench"):
                found.append((child, in_function))
            elif isinstance(child, ast.Import) and child.names[0].name.startswith("vitbench"):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def test_import_linter_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "lint-imports (import-linter) is not installed; pip install '.[test]'"
    out = subprocess.run(
        [exe, "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """No import cycle hides behind import order: each module can be the first one imported."""
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys, warnings
        warnings.simplefilter("ignore")  # timm warns when the demo architecture registers again
        import vitbench
        names = [m.name for m in pkgutil.walk_packages(vitbench.__path__, "vitbench.")]
        names = [n for n in names if n != "vitbench.__main__"]  # runs the CLI when imported
        failed = []
        for name in names:
            for key in [k for k in sys.modules if k == "vitbench" or k.startswith("vitbench.")]:
                del sys.modules[key]
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        print(len(names))
        print("\\n".join(failed))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    count, *failed = out.stdout.strip().splitlines()
    assert int(count) >= 90 and not [f for f in failed if f], failed


def test_no_private_name_is_imported_from_another_module() -> None:
    bad = []
    for name, path in _modules().items():
        for node, _ in _vitbench_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                bad += [
                    f"{name}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
            else:
                bad += [f"{name}:{node.lineno} {a.name}" for a in node.names if "._" in a.name]
    assert not bad, bad


#: Modules below the CLI that may defer imports, and why: the suite reader checks model names
#: and method parameters with timm and the method classes only after every torch-free check
#: (a suite with a mistake is refused without importing torch); the file image set builds its
#: torch Dataset only when samples are read (listing and checking files needs no torch).
DEFERRING = {"vitbench.harness.suites", "vitbench.data.files"}


def test_function_level_imports_are_only_deferred_cli_handlers() -> None:
    """Below the CLI every vitbench import sits at module top; the CLI (and ``vitbench.load_results``),
    the view modules of :mod:`vitbench.report.views` (the CLI's ``--view`` handlers, importable
    without pandas) and the modules of :data:`DEFERRING` defer imports for start-up speed, and say
    so in a comment above each deferred block."""
    bad = []
    for name, path in _modules().items():
        text = path.read_text()
        lines, tree = text.splitlines(), ast.parse(text)
        import_lines = {
            i
            for n in ast.walk(tree)
            if isinstance(n, (ast.Import, ast.ImportFrom))
            for i in range(n.lineno - 1, (n.end_lineno or n.lineno))
        }
        for node, in_function in _vitbench_imports(tree):
            if not in_function:
                continue
            if not (
                name.startswith(("vitbench.cli", "vitbench.report.views."))
                or name == "vitbench"
                or name in DEFERRING
            ):
                target = getattr(node, "module", None) or node.names[0].name
                bad.append(f"{name}:{node.lineno} imports {target} inside a function")
                continue
            i = node.lineno - 2  # walk up over the contiguous block of imports to its comment
            while i in import_lines:
                i -= 1
            if i < 0 or "deferred" not in lines[i]:
                bad.append(f"{name}:{node.lineno} deferred import without a '# deferred: ...' comment above")
    assert not bad, bad


def test_methods_contract_makes_every_method_module_an_independent_top_layer() -> None:
    """The methods contract is exhaustive and every module that registers a method sits in its top
    layer of independent siblings, so no method module imports another and none escapes the check."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    methods = [c for c in contracts if c.get("containers") == ["vitbench.methods"]]
    assert len(methods) == 1, (
        "pyproject.toml needs one layers contract with containers = ['vitbench.methods']"
    )
    contract = methods[0]
    assert contract["type"] == "layers" and contract.get("exhaustive") is True
    top = contract["layers"][0]
    assert ":" not in top, f"the top layer must use '|' (independent siblings), not ':': {top}"
    listed = {name.strip() for name in top.split("|")}
    registering = {
        path.stem
        for path in (PACKAGE / "methods").glob("*.py")
        if any(
            isinstance(node, ast.ClassDef)
            and any(isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list)
            for node in ast.walk(ast.parse(path.read_text()))
        )
    }
    assert registering, "no module of vitbench.methods registers a method"
    assert registering <= listed, (
        f"method modules outside the independent top layer: {sorted(registering - listed)}"
    )
