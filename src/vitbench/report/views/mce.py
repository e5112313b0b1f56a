"""``robustness --view mce``: the corruption-robustness leaderboard (mCE, lower is better)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitbench.report.views import View, ViewOptions

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: Corruptions whose records make a report show the corruption sections (the 15 test ones and
#: the 4 validation ones).
EXTRA_CORRUPTIONS = ("speckle-noise", "gaussian-blur", "spatter", "saturate")


def render(df: pd.DataFrame, opts: ViewOptions) -> str:
    """:func:`vitbench.report.robust.robustness_table`."""
    # deferred: tables bring pandas; the registry stays importable without it
    from vitbench.report.robust import robustness_table

    return robustness_table(
        df,
        fmt=opts.fmt,
        model=opts.model,
        selection=opts.selection,
        reference=opts.reference,
        split=opts.split,
    )


def plot(df: pd.DataFrame, opts: ViewOptions) -> Figure:
    """The CE heatmap of the same corruptions, selection and reference."""
    # deferred: plots bring matplotlib
    from vitbench.report.robust import heatmap_figure

    return heatmap_figure(
        df, opts.model, selection=opts.selection, reference=opts.reference, split=opts.split
    )


def corrupted(ok: pd.DataFrame) -> bool:
    """Whether any row was measured on an ImageNet-C corruption."""
    # deferred: the noise registry and robustness metrics bring numpy/pandas
    from vitbench.report import robustness

    noises = set(ok["noise"])
    return bool(noises & set(robustness.ALEXNET_ERROR) or noises & set(EXTRA_CORRUPTIONS))


def report(df: pd.DataFrame, ctx: Any) -> None:
    """Report section: mCE vs dense (and vs AlexNet on ImageNet data; random selection too)."""
    # deferred: tables bring pandas
    from vitbench.data.noise import corruption_names
    from vitbench.report.robust import robustness_table

    ok = ctx.ok
    if not corrupted(ok):
        return
    # one corruption has a CE, not a mean of CEs: the headings say which they show
    tests = set(ok["noise"]) & set(corruption_names("test"))
    m = "mCE" if len(tests) != 1 else "CE"
    blocks = [ctx.table(f"{m} relative to dense, scored selection", robustness_table)]
    if any("imagenet" in str(d).lower() for d in set(ok["dataset"])):
        blocks.append(ctx.table(f"{m} relative to AlexNet", robustness_table, reference="alexnet"))
    if ((ok["selection"] == "random") & ok["noise"].isin(set(corruption_names("all")))).any():
        blocks.append(
            ctx.table(f"{m} relative to dense, random selection", robustness_table, selection="random")
        )
    ctx.section(f"Corruption robustness ({m}, lower is better)", *blocks)


VIEW = View(
    name="mce",
    command="robustness",
    help="mCE and relative mCE per configuration, CE per corruption family (the default)",
    render=render,
    order=110,
    plot=plot,
    report=report,
)
