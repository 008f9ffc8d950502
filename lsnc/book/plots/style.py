"""What every figure shares: loss colours, the NC metrics' axis labels, panel grids, "not logged" panels, group
labels, and the two ways seeds are drawn (a mean line with a min-max band, dots with a mean line against δ)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ...metrics import PAPER_TEX
from ...vocab import NC_COLUMNS, column_names, loss_label
from ..describe import scale_words

#: the book's CE blue and LS red (matplotlib's tab:blue and tab:red, as hex so plotly draws the same colours)
CE_COLOUR = "#1f77b4"
LS_COLOUR = "#d62728"
#: panel title of each column of the training figures: "train error" and the paper's NC names
COLUMN_TITLES = column_names("train_error", *NC_COLUMNS.values())
#: axis label (with the formula) of each NC metric column, keyed by vocab.NC_COLUMNS
NC_LABELS = {col: f"{name} = ${PAPER_TEX[name]}$" for name, col in NC_COLUMNS.items()}
#: short panel title of each NC metric column (NC1 is drawn on a log scale)
NC_TITLES = {col: name + (" (log scale)" if name == "NC1" else "") for name, col in NC_COLUMNS.items()}


def loss_colour(delta: float) -> str:
    """CE blue, LS red."""
    return CE_COLOUR if delta == 0 else LS_COLOUR


def delta_colours(deltas: Sequence[float]) -> dict[float, tuple]:
    """One colour per delta: CE (δ = 0) in the book's CE blue, LS values from magenta (small δ) to yellow
    (large δ) on plasma's warm end, so no LS value looks like CE; the same delta gets the same colour in every
    figure that is drawn from the same set of deltas."""
    from matplotlib.colors import to_rgba
    deltas = sorted(set(float(d) for d in deltas))
    ls = [d for d in deltas if d != 0]
    cmap = plt.get_cmap("plasma")
    positions = np.linspace(0.3, 0.88, len(ls)) if len(ls) > 1 else [0.55] * len(ls)
    out = {0.0: to_rgba(CE_COLOUR)} if 0.0 in deltas else {}
    return {**out, **{d: cmap(p) for d, p in zip(ls, positions)}}


def delta_legend(fig, colours: dict[float, tuple], title: str = "") -> None:
    """A figure legend naming each delta's loss (``vocab.loss_label``) in its colour."""
    handles = [Line2D([], [], color=c, lw=2, label=loss_label(d)) for d, c in colours.items()]
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 8), frameon=False,
               title=title or None)


def grid(nrows: int, ncols: int, width: float = 3.3, height: float = 2.8, **kw):
    """``(fig, axes)`` with ``axes[row, column]`` always two-dimensional."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.5), squeeze=False,
                             constrained_layout=True, **kw)
    return fig, axes


def row_title(ax, label: str) -> None:
    """Dataset label at the left of a row of panels."""
    ax.annotate(label, xy=(0, 0.5), xytext=(-ax.yaxis.labelpad - 38, 0), xycoords=ax.yaxis.label,
                textcoords="offset points", ha="right", va="center", rotation=90, fontsize=11,
                fontweight="bold")


def not_logged(ax, what: str) -> None:
    """Annotate a panel whose metric the runs did not log (never leave it silently empty)."""
    ax.text(0.5, 0.5, f"{what}\nnot logged by these runs", ha="center", va="center", transform=ax.transAxes,
            color="grey", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def has(df: pd.DataFrame, col: str) -> bool:
    """Whether ``col`` exists and holds at least one number."""
    return col in df.columns and bool(pd.to_numeric(df[col], errors="coerce").notna().any())


# ------------------------------------------------------------------------------------------------
# groups and seeds: a row's label; a mean line with a min-max band, or dots and a mean line against δ
# ------------------------------------------------------------------------------------------------
def group_label(df: pd.DataFrame, dataset: str) -> str:
    """The group's dataset label, its folder name (``runs/<group>``) and its scale
    (:func:`lsnc.book.describe.scale_words`): a row copied out of its page still says which runs it shows, and at what
    scale."""
    rows = df.loc[df["dataset"] == dataset]
    return "\n".join([str(rows["label"].iloc[0]), f"({dataset})", *scale_words(rows)])


def seed_stats(df: pd.DataFrame, col: str, x: str = "epoch") -> pd.DataFrame:
    """Mean, min, max and count over seeds of ``col`` at each ``x`` (rows with NaN ignored); against the epoch,
    without the stop rows a longer run has no row for (:func:`stop_rows_off_the_grid`)."""
    if x == "epoch":
        df = df[~stop_rows_off_the_grid(df)]
    values = pd.to_numeric(df[col], errors="coerce")
    grouped = values.groupby(df[x])
    return pd.DataFrame({"mean": grouped.mean(), "min": grouped.min(), "max": grouped.max(),
                         "n": grouped.count()}).dropna(subset=["mean"])


def stop_rows_off_the_grid(df: pd.DataFrame) -> pd.Series:
    """The rows (a boolean mask) at an epoch that is the last of some runs and that as many runs or more went past
    without evaluating: a time budget evaluates a prefix where it stops, on the schedule or not (lsnc.runs.format),
    and a seed mean there would be a few seeds' value between two means of others. Counted per dataset and δ; runs
    are told apart by ``run``: without that column, nothing is masked."""
    mask = pd.Series(False, index=df.index)
    if "run" not in df.columns or df.empty:
        return mask
    keys = [c for c in ("dataset", "delta") if c in df.columns]
    for _, setting in (df.groupby(keys) if keys else [(None, df)]):
        epochs = {run: set(g["epoch"]) for run, g in setting.groupby("run")}
        for stop in {max(rows) for rows in epochs.values()}:
            having = sum(stop in rows for rows in epochs.values())
            passed = sum(max(rows) > stop and stop not in rows for rows in epochs.values())
            if passed >= having:
                mask[setting.index[setting["epoch"] == stop]] = True
    return mask


def line_band(ax, df: pd.DataFrame, col: str, colour, label=None, ls="-", x="epoch", band_alpha=0.2, lw=1.6,
               marker=None):
    """``col`` against ``x``: the mean over the seeds of ``df`` as a line, their min-max as a band (none for one
    seed); the line, or None when ``col`` has no values."""
    stats = seed_stats(df, col, x)
    if stats.empty:
        return None
    (line,) = ax.plot(stats.index, stats["mean"], color=colour, ls=ls, label=label, lw=lw, marker=marker,
                      markersize=4)
    if stats["n"].max() > 1:
        ax.fill_between(stats.index, stats["min"], stats["max"], color=colour, alpha=band_alpha, lw=0)
    return line


def dots_vs_delta(ax, final: pd.DataFrame, col: str, colour, label=None, marker="o", ls="-"):
    """``col`` of ``final`` (one row per run at its end) against δ: a dot per seed, a line through the means;
    False when ``col`` has no values."""
    vals = pd.to_numeric(final[col], errors="coerce")
    ok = vals.notna()
    if not ok.any():
        return False
    ax.scatter(final.loc[ok, "delta"], vals[ok], color=colour, s=14, alpha=0.55, marker=marker, lw=0)
    mean = vals[ok].groupby(final.loc[ok, "delta"]).mean()
    ax.plot(mean.index, mean.values, color=colour, marker=marker, ls=ls, label=label, lw=1.4, markersize=5)
    return True
