"""One figure style for every vitbench plot: style file, colour per method, marks per variant.

* :data:`STYLE_FILE` (``vitbench/assets/vitbench.mplstyle``, package data) sets fonts, grid,
  spines, legend and output options; :func:`styled` applies it to figure creation and saving.
* :func:`method_color` gives each registered method one colour, the same in every figure of
  every report (fixed by the registry's sorted order, not by which methods a figure shows);
  ``dense`` is black. Variants of a method (keep ratio, setting, selection) differ by marker
  and line style (:func:`variant_marker`, random selection dashed).
* :func:`legend_outside` puts the legend right of the axes, never over the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from vitbench.core.method_index import all_methods

STYLE_FILE = Path(str(resources.files("vitbench") / "assets" / "vitbench.mplstyle"))
DENSE_COLOR = "#000000"
#: 20 distinguishable colours (tab10, then the light halves of tab20), one per method.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def styled() -> Iterator[None]:
    """Apply :data:`STYLE_FILE` for the duration (figure creation and saving)."""
    import matplotlib.style

    with matplotlib.style.context(str(STYLE_FILE)):
        yield


def with_style(fn: F) -> F:
    """Decorator: build the figure inside :func:`styled`."""

    @wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        with styled():
            return fn(*args, **kwargs)

    return inner  # type: ignore[return-value]


def method_color(method: str) -> str:
    """The colour of ``method`` in every vitbench figure (``dense``: black).

    Registered methods get :data:`PALETTE` entries in sorted registry order; other names a
    stable colour from a hash of the name.
    """
    import hashlib

    if method == "dense":
        return DENSE_COLOR
    names = sorted(m.name for m in all_methods() if m.name != "dense")
    if method in names:
        return PALETTE[names.index(method) % len(PALETTE)]
    digest = int(hashlib.sha256(method.encode()).hexdigest()[:8], 16)
    return PALETTE[digest % len(PALETTE)]


def base_method(label: str) -> str:
    """The method name of a curve label such as ``"evit fuse_token=False"`` or ``"m: evit 0.7"``."""
    return label.split(": ")[-1].split(" ")[0]


def variant_marker(index: int) -> str:
    """Marker of the ``index``-th variant of a method."""
    return MARKERS[index % len(MARKERS)]


def legend_outside(target: Any, handles: Any = None, labels: Any = None, title: str | None = None) -> None:
    """A legend right of the axes (``target``: an Axes) or of all panels (a Figure)."""
    if handles is None:
        handles, labels = target.get_legend_handles_labels()
    if not handles:
        return
    target.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, title=title
    )


#: Line style of the i-th population (model, weights, image set) of a figure.
LINESTYLES = ("-", "--", ":", "-.")
#: Marker fill of the i-th population where line style says something else (scored vs random).
FILLS = ("full", "none", "left", "bottom")


def population_linestyle(index: int) -> str:
    """Line style of the ``index``-th population of a figure (solid for the first)."""
    return LINESTYLES[index % len(LINESTYLES)]


def population_fill(index: int) -> str:
    """Marker fill style of the ``index``-th population (filled for the first)."""
    return FILLS[index % len(FILLS)]


def footnote(fig: Any, text: str, width: int = 120) -> None:
    """``text`` in small type under the figure (saved with it: figures are saved tight)."""
    import textwrap

    if not text:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)  # a renderer to measure the drawn area (no pyplot state)
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, rotated tick labels included
    y = box.y0 / fig.get_figheight() - 0.02
    x = box.x0 / fig.get_figwidth()
    wrapped = "\n".join(textwrap.wrap(text, width))
    fig.text(x, y, wrapped, fontsize=6.5, color="#444444", ha="left", va="top")


def factor_legend(target: Any, entries: list[tuple[str, dict[str, Any]]], title: str | None = None) -> None:
    """A legend of style factors (``(label, Line2D kwargs)``), right of ``target``.

    One entry per colour (method), marker (keep ratio), line style (population), ... instead of
    one per line: a figure of 3 methods x 5 keep ratios x 2 image sets has 10 entries, not 30.
    """
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], **kw) for _, kw in entries]
    legend_outside(target, handles, [label for label, _ in entries], title=title)
