"""Build hook: record the git commit of the source tree in the package (``vitbench/core/build_info.py``).

Everything else about the build lives in ``pyproject.toml``. An installed (non-editable) vitbench
has no git checkout to ask at run time, so its records' ``git_commit`` comes from this file; a
build outside a git checkout (e.g. from an sdist made by this hook) keeps the commit the sdist
recorded, or records none.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
INFO = Path("vitbench") / "core" / "build_info.py"


def git_commit() -> str:
    """``git rev-parse HEAD`` when ROOT is the top of a git checkout, else ``""``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = out.stdout.split()
    if out.returncode == 0 and len(lines) == 2 and Path(lines[0]).resolve() == ROOT:
        return lines[1]
    return ""


def write_info(path: Path, commit: str) -> None:
    """Write the generated module holding ``GIT_COMMIT``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '"""Generated at build time by setup.py; do not edit."""\n\n'
        f"GIT_COMMIT = {commit!r}\n"
    )


class BuildPy(build_py):
    """build_py that writes ``vitbench/core/build_info.py`` into the build folder."""

    def run(self) -> None:  # noqa: D102
        super().run()
        target = Path(self.build_lib) / INFO
        commit = git_commit()
        if commit or not target.is_file():  # an sdist's recorded commit stays when git is absent
            write_info(target, commit)


class Sdist(sdist):
    """sdist that ships ``src/vitbench/core/build_info.py`` with the commit it was made from."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:  # noqa: D102
        super().make_release_tree(base_dir, files)
        write_info(Path(base_dir) / "src" / INFO, git_commit())


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
