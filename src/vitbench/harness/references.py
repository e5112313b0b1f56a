"""The committed reference outputs under ``results/`` and the one command that regenerates them.

Ordinary runs never write there (their default folder is ``./vitbench-results``, see
:func:`vitbench.core.paths.results_dir`, and ``vitbench run`` refuses to put its tables into a folder
marked by :data:`vitbench.core.paths.REFERENCES_MARKER` unless told with ``--output-dir``).
``vitbench regenerate-references [NAME ...]`` runs the documented commands below, each suite into
its own store ``<into>/<suite>.sqlite`` (so suites never share or resume each other's records),
and writes every table and figure to its committed path under ``<into>`` (default ``results``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vitbench.core.errors import VitbenchError
from vitbench.core.registry import close_hint


@dataclasses.dataclass(frozen=True)
class Reference:
    """One committed reference: a suite run and the commands that render its outputs.

    Attributes:
        name: what ``vitbench regenerate-references NAME`` selects.
        suite: the suite run into ``<into>/<suite>.sqlite`` (``""``: no run, e.g. ``paper-flops``).
        folder: output folder under ``<into>`` for the run's ``leaderboard.md``/``pareto.png``
            (``""``: the run writes none).
        steps: further ``vitbench`` commands; ``{store}`` and ``{out}`` (= ``<into>/<folder>``,
            or ``<into>/<where>``) are filled in.
        where: folder under ``<into>`` of the ``steps`` outputs (default: ``folder``).
    """

    name: str
    suite: str
    folder: str
    steps: tuple[tuple[str, ...], ...] = ()
    where: str = ""


def _robust(view: str, out: str, *extra: str) -> tuple[str, ...]:
    return ("robustness", "--results", "{store}", "--view", view, "--output", f"{{out}}/{out}", *extra)


def _report() -> tuple[str, ...]:
    # the page embeds its figures; the SVG/PDF copies are left out of the committed tree
    return ("report", "--results", "{store}", "--output", "{out}/report.html", "--figures", "")


#: Every committed reference, in the order ``vitbench regenerate-references`` runs them.
REFERENCES: tuple[Reference, ...] = (
    Reference("demo", "demo", "demo"),
    Reference(
        "noise-robustness",
        "noise-robustness",
        "",
        (
            _robust("mce", "mce.md"),
            _robust("mce", "mce-all19.md", "--split", "all"),
            _robust(
                "corruptions", "corruptions-severity3.md", "--severity", "3", "--plot", "{out}/heatmap.png"
            ),
            _robust("severity", "severity.md", "--plot", "{out}/severity.png"),
            _report(),
        ),
        where="demo/noise-robustness",
    ),
    Reference(
        "noise-levels",
        "noise-levels",
        "",
        tuple(
            _robust("levels", f"{noise}.md", "--noise", noise, "--plot", f"{{out}}/{noise}.png")
            for noise in ("gaussian-sigma", "gaussian-sigma-mono", "salt-pepper", "uniform-noise")
        )
        + (_report(),),
        where="demo/noise-levels",
    ),
    Reference(
        "random-selection",
        "random-selection",
        "",
        (
            _robust("selection", "selection.md", "--selection", "both"),
            (
                "leaderboard",
                "--results",
                "{store}",
                "--view",
                "selection",
                "--output",
                "{out}/selection-per-keep.md",
            ),
            ("leaderboard", "--results", "{store}", "--view", "squeeze", "--output", "{out}/squeeze.md"),
            _report(),
        ),
        where="demo/random-selection",
    ),
    Reference(
        "tps-demo",
        "tps-demo",
        "tps-demo",
        (("leaderboard", "--results", "{store}", "--view", "squeeze", "--output", "{out}/squeeze.md"),),
    ),
    Reference("nvit-demo", "nvit-demo", "nvit-demo"),
    Reference("vtc-lfc-demo", "vtc-lfc-demo", "vtc-lfc-demo"),
    Reference(
        "noisy-calibration",
        "noisy-calibration",
        "noisy-calibration",
        (_robust("calibration", "calibration.md", "--plot", "{out}/calibration.png"),),
    ),
    Reference("paper-flops", "", "", (("flops", "--paper", "--output", "{out}/paper-flops.md"),)),
    Reference(
        "runtimes",
        "",
        "runtimes",
        (
            (
                *("throughput", "--model", "deit_small_patch16_224", "--method", "tome", "--set", "r=13"),
                *("--method", "evit@0.7", "--method", "lfe@0.7", "--method", "dynamicvit@0.7"),
                *("--method", "magnitude@0.5", "--runtime", "eager", "--runtime", "compile"),
                *("--runtime", "onnxruntime", "--runtime", "openvino"),
                *("--batch-size", "1", "--batch-size", "32", "--threads", "2"),
                *("--repeats", "4", "--results", "{out}/deit-s-runtimes.sqlite"),
            ),
            (
                *("plot", "--results", "{out}/deit-s-runtimes.sqlite", "--view", "runtimes"),
                *("--output", "{out}/deit-s-runtimes.png"),
            ),
        ),
    ),
)


def reference_names() -> list[str]:
    """Names accepted by ``vitbench regenerate-references``."""
    return [r.name for r in REFERENCES]


def select(names: list[str]) -> list[Reference]:
    """The references named (all of them for an empty list), in :data:`REFERENCES` order.

    Raises:
        VitbenchError: an unknown name (with close matches).
    """
    known = reference_names()
    for name in names:
        if name not in known:
            hint = close_hint(name, known) or ";"
            raise VitbenchError(f"unknown reference '{name}'{hint} available: {', '.join(known)}")
    return [r for r in REFERENCES if not names or r.name in names]


def commands(ref: Reference, into: Path, progress: bool = True) -> list[list[str]]:
    """The ``vitbench`` argument lists that regenerate ``ref`` under ``into``."""
    store = str(into / f"{ref.suite}.sqlite")
    out: list[list[str]] = []
    if ref.suite:
        folder = ["--output-dir", str(into / ref.folder) if ref.folder else ""]
        out.append(["run", ref.suite, "--results", store, *folder, *([] if progress else ["--no-progress"])])
    where = str(into / (ref.where or ref.folder))
    for step in ref.steps:
        out.append([arg.replace("{store}", store).replace("{out}", where) for arg in step])
    return out


__all__ = ["REFERENCES", "Reference", "commands", "reference_names", "select"]
