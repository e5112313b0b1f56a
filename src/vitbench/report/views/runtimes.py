"""``leaderboard --view runtimes``: realized speedup per runtime and batch size next to the GMACs ratio."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.runtimes.runtimes_table` of the store's ``runtime_speed`` side table.

    The rows come from the store ``df`` was loaded from (``df.attrs["source"]``), limited to the
    suites of ``df`` when it was restricted to one (``--suite``).

    Raises:
        VitbenchError: the frame names no store, or the store has no runtime measurements.
    """
    # deferred: the runtime table brings pandas; the registry stays importable without it
    from vitbench.core.errors import VitbenchError
    from vitbench.report.runtimes import runtimes_table
    from vitbench.store.runtimes import load_runtime_rows

    source = df.attrs.get("source")
    if not source:
        raise VitbenchError("the runtimes view reads a results store; pass --results STORE")
    rows = load_runtime_rows(source)
    if "suite" in df and "suite" in rows and df.attrs.get("suite"):
        rows = rows.loc[rows["suite"] == df.attrs["suite"]]
    return runtimes_table(rows, fmt=opts.fmt, model=opts.model)


VIEW = View(
    name="runtimes",
    command="leaderboard",
    help="realized speedup over dense per runtime and batch size, next to the GMACs ratio "
    "(`vitbench throughput --runtime`, suite key throughput.runtimes)",
    render=render,
    order=90,
)
