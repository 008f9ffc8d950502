"""Figures of the training runs (book/fig1 ... fig9 and the explorer); each function returns a matplotlib Figure.

Every function takes a list of :class:`lsnc.runs.Run` (already selected: finished, one or several datasets)
and draws one row of panels per dataset, in the order the datasets first appear in the list. Where several
seeds share a setting, the line is their mean and the shaded band their min-max range. CE is always blue,
LS red; a sweep over delta uses one colour per delta from a fixed colour map. A metric that a run did not log
gives an annotated panel ("not logged"), never a silently empty one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ...runs import Run
from ...runs.format import SNAPSHOTS_FILE
from ...calibration import ECE_DEFAULT_BINS
from ...vocab import (CE_VS_LS, CLASS_MEAN_NORM, CLASSIFIER_NORM, COLUMN_NAMES, FEATURE_NORM, NC_COLUMNS,
                      UFM_THEORY_H_NORM, UFM_THEORY_W_NORM, ece_column, is_delta, loss_label, temperature_column)
from ..comparable import reach
from ..describe import describe_run, epochs_text, fmt_list
from ..summary import final_rows, metrics_table, ufm_errors
from .style import (NC_LABELS, NC_TITLES, delta_colours, delta_legend, dots_vs_delta, grid,
                    group_label, has, line_band, loss_colour, not_logged, row_title, stop_rows_off_the_grid)

SUBSET_STYLES = {"all": "-", "correct": "--", "incorrect": ":"}
NC1, NC2, NC3 = NC_COLUMNS.values()
#: the explorer's overview of every run: error, NC1 and calibration
OVERVIEW_COLUMNS = ("train_error", "test_error", NC1, ece_column())


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _datasets(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["dataset"]))


def _seeds_note(df: pd.DataFrame) -> str:
    df = df[~stop_rows_off_the_grid(df)]   # as the lines are drawn (seed_stats)
    n = df.groupby(["dataset", "delta"])["seed"].nunique()
    if n.empty:
        return ""
    lo, hi = int(n.min()), int(n.max())
    seeds = f"{lo}" if lo == hi else f"{lo}-{hi}"
    if hi <= 1:
        return "one seed per setting: each line is one run"
    # prefixes of different lengths (GPU windows): past the shorter runs' end the line is the longer runs' mean
    last = df.groupby(["dataset", "delta", "seed"])["epoch"].max().groupby(["dataset", "delta"])
    stops = sorted({int(e) for e in (last.min()[last.min() < last.max()])})
    fewer = f"; fewer seeds after epoch {fmt_list(stops)}, where shorter runs end" if stops else ""
    return f"lines: mean over {seeds} seed(s); bands: min-max over seeds{fewer}"


def seeds_note(runs: Sequence[Run], deltas: Sequence[float] | None = None) -> str:
    """What a line of the figures of ``runs`` (those at ``deltas``, all when None) is, for a caption, read from
    the runs: "one seed per setting: each line is one run", or "lines: mean over 2-10 seed(s); bands: min-max
    over seeds" (and where shorter runs end), as the figures' own note says."""
    rows = [{"dataset": r.dataset, "run": r.name, "delta": float(r.config["delta"]), "seed": r.config["seed"],
             "epoch": e} for r in runs if r.metrics is not None for e in r.metrics["epoch"]]
    return _seeds_note(_select(pd.DataFrame(rows), deltas)) if rows else ""


def _select(df: pd.DataFrame, deltas: Sequence[float] | None) -> pd.DataFrame:
    if deltas is None:
        return df
    keep = np.zeros(len(df), dtype=bool)
    for d in deltas:
        keep |= is_delta(df["delta"].to_numpy(), d)
    return df[keep]


# ------------------------------------------------------------------------------------------------
# fig1: what collapse looks like
# ------------------------------------------------------------------------------------------------
def _snapshots(run: Run) -> dict[int, dict[str, np.ndarray]]:
    from lsnc.snapshots import load_snapshots
    return load_snapshots(run.path / SNAPSHOTS_FILE)


def snapshot_samples_text(runs: Sequence[Run]) -> str:
    """What the snapshots of ``runs`` hold, read from them: "first 20 training samples per class"."""
    from lsnc.snapshots import samples_per_class
    counts = sorted({n for n in (samples_per_class(_snapshots(r)) for r in runs) if n is not None})
    return f"first {' or '.join(map(str, counts))} training samples per class" if counts else "no snapshots stored"


def drawn_snapshot_epochs(runs: Sequence[Run], max_epochs: int = 5) -> list[int]:
    """The snapshot epochs a figure draws: those shared by all ``runs`` (at most ``max_epochs``, spread over
    training)."""
    common = None
    for r in runs:
        e = set(_snapshots(r))
        common = e if common is None else common & e
    epochs = sorted(common or [])
    if len(epochs) > max_epochs:
        idx = np.unique(np.linspace(0, len(epochs) - 1, max_epochs).round().astype(int))
        epochs = [epochs[i] for i in idx]
    return epochs


def snapshot_epochs_text(runs: Sequence[Run], max_epochs: int = 5, last: bool = False) -> str:
    """Which snapshot epochs a figure draws, against those the runs saved (a run saves them on a schedule, so its
    last snapshot may be well before its last epoch): "drawn at epochs 0, 10, 20 of the snapshots both runs saved, at
    epochs 0, 5, 10, 15, 20"."""
    saved = drawn_snapshot_epochs(runs, max_epochs=10 ** 6)
    if not saved:
        return "no snapshots stored"
    drawn = saved[-1:] if last else drawn_snapshot_epochs(runs, max_epochs)  # last: what plot_geometry_3d draws
    stopped = min(reach(r).reached for r in runs)
    return (f"drawn at epoch{'s' if len(drawn) > 1 else ''} {fmt_list(drawn)}"
            + ("" if drawn == saved else f" of the snapshots both runs saved, at epochs {fmt_list(saved)}")
            + (f"; the recipe's snapshot schedule has none after epoch {saved[-1]} up to epoch {stopped}, where the "
               "runs stopped" if saved[-1] < stopped else ""))


def plot_geometry(runs: Sequence[Run], epochs: Sequence[int] | None = None):
    """Penultimate geometry at a few epochs, one row per run: training features (dots, coloured by class),
    class means (large circles) and classifier rows (arrows, rescaled to the size of the means), projected
    on the top-2 principal directions of the centred class means of that epoch."""
    runs = list(runs)
    if not runs:
        raise ValueError("no runs to draw")
    epochs = list(epochs) if epochs is not None else drawn_snapshot_epochs(runs)
    if not epochs:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        not_logged(ax, "geometry snapshots")
        return fig
    fig, axes = grid(len(runs), len(epochs), width=2.9, height=2.9)
    cmap = plt.get_cmap("tab10" if max(len(np.unique(_snapshots(r)[epochs[0]]["labels"])) for r in runs) <= 10
                        else "tab20")
    for i, run in enumerate(runs):
        snaps = _snapshots(run)
        for j, epoch in enumerate(epochs):
            ax = axes[i, j]
            s = snaps.get(epoch)
            if s is None:
                not_logged(ax, f"epoch {epoch}")
                continue
            f, y, m, w = s["features"], s["labels"], s["means"], s["classifier"]
            ax.scatter(f[:, 0], f[:, 1], c=cmap(y % cmap.N), s=9, alpha=0.55, lw=0, rasterized=True)
            ax.scatter(m[:, 0], m[:, 1], c=cmap(np.arange(len(m)) % cmap.N), s=70, edgecolors="black", lw=0.8,
                       zorder=3)
            scale = np.linalg.norm(m[:, :2], axis=1).max() / max(np.linalg.norm(w[:, :2], axis=1).max(), 1e-12)
            for k, row in enumerate(w[:, :2] * scale):
                ax.annotate("", xy=row, xytext=(0, 0), zorder=4,
                            arrowprops=dict(arrowstyle="-|>", color=cmap(k % cmap.N), lw=1.2, shrinkA=0, shrinkB=0))
            ax.set_aspect("equal", adjustable="datalim")
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(f"epoch {epoch}")
            if j == 0:
                ax.set_ylabel(f"{loss_label(run.config['delta'])}, seed {run.config['seed']}\nPC 2")
            if i == len(runs) - 1:
                ax.set_xlabel("PC 1")
    handles = [Line2D([], [], marker="o", ls="", color="grey", alpha=0.5, markersize=4, label="training features"),
               Line2D([], [], marker="o", ls="", color="grey", markeredgecolor="black", markersize=9,
                      label="class means"),
               Line2D([], [], marker=r"$\rightarrow$", ls="", color="grey", markersize=12,
                      label="classifier rows (rescaled)")]
    fig.legend(handles=handles, loc="outside upper center", ncol=3, frameon=False)
    return fig


def plot_geometry_3d(runs: Sequence[Run], epoch: int | None = None):
    """3-D view (top-3 principal directions) of features, class means and classifier rows at one epoch
    (default: the last snapshot shared by all runs), one panel per run."""
    runs = list(runs)
    if not runs:
        raise ValueError("no runs to draw")
    epochs = drawn_snapshot_epochs(runs, max_epochs=10 ** 6)
    if epoch is None and not epochs:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        not_logged(ax, "geometry snapshots")
        return fig
    epoch = epochs[-1] if epoch is None else epoch
    fig = plt.figure(figsize=(4.6 * len(runs), 4.4), constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    for i, run in enumerate(runs):
        ax = fig.add_subplot(1, len(runs), i + 1, projection="3d")
        ax.set_box_aspect(None, zoom=0.8)  # room for the axis labels inside the panel (PC 3 was clipped)
        s = _snapshots(run)[epoch]
        f, y, m, w = s["features"], s["labels"], s["means"], s["classifier"]
        ax.scatter(f[:, 0], f[:, 1], f[:, 2], c=cmap(y % 10), s=4, alpha=0.3, depthshade=False)
        ax.scatter(m[:, 0], m[:, 1], m[:, 2], c=cmap(np.arange(len(m)) % 10), s=60, edgecolors="black",
                   depthshade=False)
        scale = np.linalg.norm(m, axis=1).max() / max(np.linalg.norm(w, axis=1).max(), 1e-12)
        for k, row in enumerate(w * scale):
            ax.plot([0, row[0]], [0, row[1]], [0, row[2]], color=cmap(k % 10), lw=1.5)
        ax.set_title(f"{loss_label(run.config['delta'])}, seed {run.config['seed']}, epoch {epoch}", fontsize=10)
        ax.set_xlabel("PC 1", fontsize=8)
        ax.set_ylabel("PC 2", fontsize=8)
        ax.set_zlabel("PC 3", fontsize=8)
        ax.tick_params(labelsize=6)
    return fig


# ------------------------------------------------------------------------------------------------
# fig2: training dynamics CE vs LS
# ------------------------------------------------------------------------------------------------
def plot_dynamics(runs: Sequence[Run], deltas: Sequence[float] = CE_VS_LS):
    """Rows = datasets; columns = train/test error, NC1 (log), NC2, NC3 vs epoch, CE vs LS."""
    df = _select(metrics_table(runs), deltas)
    datasets = _datasets(df)
    cols = ["error", *NC_COLUMNS.values()]
    fig, axes = grid(len(datasets), len(cols))
    for i, ds in enumerate(datasets):
        sub = df[df["dataset"] == ds]
        for delta, g in sub.groupby("delta"):
            c = loss_colour(delta)
            line_band(axes[i, 0], g, "train_error", c, f"{loss_label(delta)} train")
            line_band(axes[i, 0], g, "test_error", c, f"{loss_label(delta)} test", ls="--")
            for j, col in enumerate(cols[1:], start=1):
                line_band(axes[i, j], g, col, c, loss_label(delta))
        axes[i, 0].set_ylabel("error")
        axes[i, 0].legend(fontsize=8, frameon=False)
        for j, col in enumerate(cols[1:], start=1):
            axes[i, j].set_ylabel(NC_LABELS[col], fontsize=9)
        axes[i, 1].set_yscale("log")
        row_title(axes[i, 0], group_label(df, ds))
        for ax in axes[i]:
            ax.set_xlabel("epoch")
    for ax, t in zip(axes[0], ["train (solid) / test (dashed) error", *NC_TITLES.values()]):
        ax.set_title(t, fontsize=10)
    fig.suptitle(_seeds_note(df), fontsize=9, color="dimgrey")
    return fig


# ------------------------------------------------------------------------------------------------
# fig3: NC1 vs NC2
# ------------------------------------------------------------------------------------------------
def plot_nc1_vs_nc2(runs: Sequence[Run], deltas: Sequence[float] = CE_VS_LS, columns: int = 3):
    """One panel per dataset group, ``columns`` to a row: NC1 (log y) against NC2 (x), one point per evaluated
    epoch and run; CE '+', LS '^'; colour = test error at that epoch."""
    df = _select(metrics_table(runs), deltas)
    datasets = _datasets(df)
    ncols = max(1, min(columns, len(datasets)))
    fig, axes = grid(max(1, math.ceil(len(datasets) / ncols)), ncols, width=4.6, height=3.8)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    markers = {True: "+", False: "^"}
    for ax, ds in zip(axes.flat, datasets):
        sub = df[df["dataset"] == ds]
        sub = sub[(sub["epoch"] > 0)] if (sub["epoch"] > 0).any() else sub
        norm = plt.Normalize(sub["test_error"].min(), sub["test_error"].max())
        for delta, g in sub.groupby("delta"):
            colours = plt.cm.plasma(norm(g["test_error"].to_numpy(dtype=float)))
            if delta == 0:
                ax.scatter(g[NC2], g[NC1], color=colours, marker="+", s=45,
                           lw=1.2)
            else:
                ax.scatter(g[NC2], g[NC1], facecolors="none",
                           edgecolors=colours, marker="^", s=30, lw=1.0)
        ax.set_yscale("log")
        ax.set_xlabel("NC2 (train)")
        ax.set_ylabel("NC1 (train, log scale)")
        ax.set_title(group_label(df, ds), fontsize=10)
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="plasma"), ax=ax, label="test error")
        handles = [Line2D([], [], marker=markers[d == 0], ls="", color="black", markerfacecolor="none",
                          label=loss_label(d)) for d in sorted(sub["delta"].unique())]
        ax.legend(handles=handles, frameon=False, loc="lower right")
    return fig


# ------------------------------------------------------------------------------------------------
# fig4: training-loss convergence
# ------------------------------------------------------------------------------------------------
def plot_loss_convergence(runs: Sequence[Run], deltas: Sequence[float] = CE_VS_LS, first_epochs: int | None = None,
                          eps: float = 1e-6):
    """Rows = datasets. Left: the loss each run optimises (CE, or LS with its own delta), on the full training
    set at the evaluated epochs (model in eval mode). Right: loss - min loss + eps (log scale) over the first
    ``first_epochs`` epochs (default: up to the first learning-rate decay), min = the run's smallest logged
    value; its title gives the epochs actually drawn. Runs that stopped before the end of their recipe (prefixes,
    ``lsnc.runs.Run.is_prefix``) are left out of the right panel, which says so: the smallest loss of a prefix
    is not a converged minimum, and the distance to it falls to eps at its argmin by construction."""
    df = _select(metrics_table(runs), deltas).copy()
    datasets = _datasets(df)
    col = "train_loss_ls" if has(df, "train_loss_ls") else "train_loss_ce"
    df["_loss"] = pd.to_numeric(df[col], errors="coerce")
    df["_gap"] = df["_loss"] - df.groupby(["dataset", "run"])["_loss"].transform("min") + eps
    prefixes = {(r.dataset, r.name): r for r in runs if reach(r).prefix}
    df["_prefix"] = [(ds, run) in prefixes for ds, run in zip(df["dataset"], df["run"])]
    fig, axes = grid(len(datasets), 2, width=4.4, height=3.0)
    for i, ds in enumerate(datasets):
        sub = df[df["dataset"] == ds]
        horizon, why = first_epochs, ""
        if horizon is None:
            ms = [m for r in runs if r.dataset == ds for m in (r.config.get("milestones") or [])]
            horizon = min(ms) if ms else int(sub["epoch"].max())
            why = f", before the first lr decay (epoch {horizon})" if ms else ", the whole run"
        drawn = sub[~sub["_prefix"] & (sub["epoch"] <= horizon)]
        for delta, g in sub.groupby("delta"):
            line_band(axes[i, 0], g, "_loss", loss_colour(delta), loss_label(delta), marker=".")
        for delta, g in drawn.groupby("delta"):
            line_band(axes[i, 1], g, "_gap", loss_colour(delta), loss_label(delta), marker=".")
        left_out = sorted({run for (d, run) in prefixes if d == ds and run in set(sub["run"])})
        axes[i, 0].set_yscale("log")
        axes[i, 0].set_ylabel("training loss (log scale)")
        axes[i, 0].set_title("loss being optimised, full training set", fontsize=10)
        if drawn["_gap"].notna().any():
            shown = drawn.loc[drawn["_gap"].notna(), "epoch"]
            axes[i, 1].set_yscale("log")
            axes[i, 1].set_ylabel(f"loss − run's min loss + {eps:g}")
            axes[i, 1].set_title(f"epochs {int(shown.min())}–{int(shown.max())}{why}:\ndistance to the run's minimum"
                                 + ("; prefix runs left out" if left_out else ""), fontsize=10)
            axes[i, 1].legend(frameon=False, fontsize=8)
            axes[i, 1].set_xlabel("epoch")
        else:
            _no_converged_minimum(axes[i, 1], [prefixes[(ds, run)] for run in left_out])
        axes[i, 0].set_xlabel("epoch")
        axes[i, 0].legend(frameon=False, fontsize=8)
        row_title(axes[i, 0], group_label(df, ds))
    fig.suptitle(_seeds_note(df), fontsize=9, color="dimgrey")
    return fig


def _no_converged_minimum(ax, prefixes: Sequence[Run]) -> None:
    """The right panel of :func:`plot_loss_convergence` for a group of prefixes only: why nothing is drawn."""
    ax.set_title("distance to the run's minimum: not drawn", fontsize=10)
    text = ("these runs are prefixes\n(" + epochs_text(prefixes).replace(" and ", ",\n") + "):\nthe smallest loss of "
            "a prefix is not\na converged minimum" if prefixes else "no loss logged")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


# ------------------------------------------------------------------------------------------------
# fig5: effect of delta on convergence
# ------------------------------------------------------------------------------------------------
#: the columns of the δ-sweep figure (fig5), also the kernel-free sweep view's (lsnc.book.interactive)
SWEEP_COLUMNS = ("train_error", *NC_COLUMNS.values())


def plot_delta_dynamics(runs: Sequence[Run], deltas: Sequence[float] | None = None,
                        columns: Sequence[str] = SWEEP_COLUMNS, bands: bool = True):
    """Rows = datasets; columns = train error, NC1 (log), NC2, NC3 vs epoch; one colour per delta."""
    df = _select(metrics_table(runs), deltas)
    datasets = _datasets(df)
    colours = delta_colours(df["delta"].unique())
    titles = {**COLUMN_NAMES, **NC_TITLES}
    fig, axes = grid(len(datasets), len(columns))
    for i, ds in enumerate(datasets):
        sub = df[df["dataset"] == ds]
        for j, col in enumerate(columns):
            ax = axes[i, j]
            if not has(sub, col):
                not_logged(ax, titles.get(col, col))
                continue
            for delta, g in sub.groupby("delta"):
                line_band(ax, g, col, colours[delta], band_alpha=0.12 if bands else 0.0, lw=1.3)
            if col == NC1:
                ax.set_yscale("log")
            if col == "train_error":
                ax.set_yscale("symlog", linthresh=1e-3)
                ax.set_ylim(bottom=0)
            ax.set_xlabel("epoch")
            ax.set_ylabel(titles.get(col, col))
        row_title(axes[i, 0], group_label(df, ds))
    for ax, col in zip(axes[0], columns):
        ax.set_title(titles.get(col, col), fontsize=10)
    delta_legend(fig, colours, title=_seeds_note(df))
    return fig


# ------------------------------------------------------------------------------------------------
# fig6 / fig7: end-of-training metrics vs delta
# ------------------------------------------------------------------------------------------------

def plot_final_vs_delta(runs: Sequence[Run]):
    """Rows = datasets; end-of-training NC1 (log), NC2, NC3, norms of the centred class means and of the
    classifier rows, and test error against delta; dots = seeds, line = mean over seeds."""
    final = final_rows(runs)
    datasets = _datasets(final)
    fig, axes = grid(len(datasets), 5, width=3.1)
    for i, ds in enumerate(datasets):
        sub = final[final["dataset"] == ds]
        for j, (col, title) in enumerate(NC_TITLES.items()):
            if not dots_vs_delta(axes[i, j], sub, col, "black"):
                not_logged(axes[i, j], title)
            axes[i, j].set_ylabel(title)
        axes[i, 0].set_yscale("log")
        ax = axes[i, 3]
        _norms_vs_delta(ax, sub)
        ax = axes[i, 4]
        if not dots_vs_delta(ax, sub, "test_error", "tab:orange", "test"):
            not_logged(ax, "test error")
        ax.set_ylabel("test error")
        for ax in axes[i]:
            ax.set_xlabel(r"label smoothing $\delta$")
        row_title(axes[i, 0], group_label(final, ds))
    for ax, t in zip(axes[0], ["NC1", "NC2", "NC3", "class-mean and classifier norms", "test error"]):
        ax.set_title(t, fontsize=10)
    n = final.groupby(["dataset", "delta"])["seed"].nunique()
    fig.suptitle(f"end of training (the caption says which epoch); dots: single seeds, line: mean over {int(n.min())}"
                 f"{'' if n.min() == n.max() else '-' + str(int(n.max()))} seed(s)", fontsize=9, color="dimgrey")
    return fig


def _norms_vs_delta(ax, sub) -> None:
    """Mean class-mean norm and classifier-row norm at the end of training, against δ."""
    a = dots_vs_delta(ax, sub, CLASS_MEAN_NORM, "tab:green", r"mean $\|\mu_k-\mu_G\|$")
    b = dots_vs_delta(ax, sub, CLASSIFIER_NORM, "tab:purple", r"mean $\|w_k\|$", marker="s")
    if a or b:
        ax.legend(frameon=False, fontsize=8)
        ax.set_ylabel("norm")
    else:
        not_logged(ax, "norms")


def plot_calibration_vs_delta(runs: Sequence[Run], bins: int = ECE_DEFAULT_BINS):
    """Rows = datasets; end-of-training ECE before and after temperature scaling (T fitted on the held-out
    split, and the paper's variant fitted on the test set itself), the fitted temperatures, and the norms."""
    final = final_rows(runs)
    datasets = _datasets(final)
    fig, axes = grid(len(datasets), 3, width=4.0, height=3.0)
    for i, ds in enumerate(datasets):
        sub = final[final["dataset"] == ds]
        ax = axes[i, 0]
        drawn = [dots_vs_delta(ax, sub, ece_column(bins=bins), "black", "before scaling"),
                 dots_vs_delta(ax, sub, ece_column("holdout", bins), "tab:green",
                               "after TS, T fitted on held-out split", marker="s"),
                 dots_vs_delta(ax, sub, ece_column("testfit", bins), "tab:gray",
                               "after TS, T fitted on test set (paper)", marker="D", ls=":")]
        if any(drawn):
            ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
            ax.set_ylabel(f"test ECE ({bins} bins)")
        else:
            not_logged(ax, "ECE")
        ax = axes[i, 1]
        drawn = [dots_vs_delta(ax, sub, temperature_column("holdout"), "tab:green", "fitted on held-out split",
                               marker="s"),
                 dots_vs_delta(ax, sub, temperature_column("testfit"), "tab:gray", "fitted on test set", marker="D",
                               ls=":")]
        if any(drawn):
            ax.axhline(1.0, color="lightgrey", lw=1, zorder=0)
            ax.set_yscale("log")
            ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
            ax.set_ylabel("optimal temperature T (log scale)")
        else:
            not_logged(ax, "temperature")
        ax = axes[i, 2]
        _norms_vs_delta(ax, sub)
        for ax in axes[i]:
            ax.set_xlabel(r"label smoothing $\delta$")
        row_title(axes[i, 0], group_label(final, ds))
    for ax, t in zip(axes[0], ["calibration error", "temperature scaling", "norms"]):
        ax.set_title(t, fontsize=10)
    return fig


# ------------------------------------------------------------------------------------------------
# fig8: calibration and NC1 dynamics CE vs LS
# ------------------------------------------------------------------------------------------------
#: plot_calibration_dynamics: the panels of each part (a page draws them as two figures that fit its width)
CALIBRATION_PARTS = {"all": (0, 1, 2, 3, 4), "entropy": (0, 1, 2), "calibration": (3, 4)}
#: what each part of plot_calibration_dynamics draws, for its caption
CALIBRATION_PART_WORDS = {"all": "test loss, predictive entropy, NC1 by predicted class, error and ECE over training",
                          "entropy": "test loss, predictive entropy and NC1 by predicted class",
                          "calibration": "training and test error, test ECE before and after TS"}


def plot_calibration_dynamics(runs: Sequence[Run], deltas: Sequence[float] = CE_VS_LS, bins: int = ECE_DEFAULT_BINS,
                              part: str = "all"):
    """Rows = datasets; columns: test CE loss and predictive entropy (all / correct / incorrect test samples),
    train NC1 and test NC1 by predicted class (all / correct / incorrect), train / test error, ECE before and
    after temperature scaling (T fitted on the held-out split); colour = loss, line style = subset. A row whose
    runs hold out no images (no after-TS ECE logged) says so in its ECE panel instead of promising that line.
    ``part``: "all" five columns, "entropy" the first three, "calibration" the last two."""
    df = _select(metrics_table(runs), deltas)
    datasets = _datasets(df)
    panels = CALIBRATION_PARTS[part]
    titles = ["test loss (CE, log scale)", "test predictive entropy", "NC1 (log scale)",
              "error: train ─, test ‒ ‒", f"ECE ({bins} bins): before ─, after TS ‒ ‒"]
    fig, grid_axes = grid(len(datasets), len(panels), width=3.2, height=3.0)

    def draw(i, k, *args, **kw):
        if k in panels:
            line_band(grid_axes[i, panels.index(k)], *args, **kw)

    for i, ds in enumerate(datasets):
        sub = df[df["dataset"] == ds]
        for delta, g in sub.groupby("delta"):
            c = loss_colour(delta)
            for subset, ls in SUBSET_STYLES.items():
                draw(i, 0, g, f"test_loss_ce_{subset}", c, ls=ls, band_alpha=0.1)
                draw(i, 1, g, f"test_entropy_{subset}", c, ls=ls, band_alpha=0.1)
                draw(i, 2, g, f"test_nc1_by_prediction_{subset}", c, ls=ls, band_alpha=0.1, lw=1.2)
            draw(i, 2, g, NC1, c, ls="-", lw=3.0, band_alpha=0.1)
            draw(i, 3, g, "train_error", c, ls="-")
            draw(i, 3, g, "test_error", c, ls="--")
            draw(i, 4, g, ece_column(bins=bins), c, ls="-")
            draw(i, 4, g, ece_column("holdout", bins), c, ls="--")
        for k in (0, 2):
            if k in panels:
                grid_axes[i, panels.index(k)].set_yscale("log")
        for ax, k in zip(grid_axes[i], panels):
            ax.set_xlabel("epoch")
            ax.set_ylabel(titles[k], fontsize=9)
        if 4 in panels:
            _held_out_note(grid_axes[i, panels.index(4)], sub, bins)
        row_title(grid_axes[i, 0], group_label(df, ds))
    for ax, k in zip(grid_axes[0], panels):
        ax.set_title(titles[k], fontsize=10)
    handles = [Line2D([], [], color=loss_colour(d), lw=2, label=loss_label(d)) for d in sorted(df["delta"].unique())]
    if set(panels) & {0, 1, 2}:
        handles += [Line2D([], [], color="grey", ls=ls, label=f"test samples: {s}") for s, ls in SUBSET_STYLES.items()]
    if 2 in panels:
        handles.append(Line2D([], [], color="grey", lw=3, label="train NC1"))
    note = _seeds_note(df) + ("; TS: temperature fitted on the held-out split" if 4 in panels else "")
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 3 if len(panels) < 3 else 6),
               frameon=False, title=note)
    return fig


def _held_out_note(ax, sub: pd.DataFrame, bins: int) -> None:
    """The ECE panel of one row of :func:`plot_calibration_dynamics`: where no run of the row logged an ECE after
    temperature scaling on a held-out split (it held out no images), the label and a note in the panel say there is
    no after-TS curve; where only some did, the note says which line is of fewer runs."""
    col = ece_column("holdout", bins)
    with_fit = set(sub.loc[pd.to_numeric(sub[col], errors="coerce").notna(), "run"]) if col in sub else set()
    if with_fit == set(sub["run"]):
        return
    if not with_fit:
        ax.set_ylabel(f"ECE ({bins} bins): before TS ─", fontsize=9)
        note = "no held-out split:\nno after-TS curve"
    else:
        note = f"after TS: the {len(with_fit)} of {sub['run'].nunique()} runs\nwith a held-out split"
    ax.text(0.97, 0.97, note, ha="right", va="top", transform=ax.transAxes, color="dimgrey", fontsize=8,
            bbox=dict(facecolor="white", edgecolor="lightgrey", alpha=0.9, boxstyle="round,pad=0.3"))


# ------------------------------------------------------------------------------------------------
# fig9: UFM-style training against the closed form
# ------------------------------------------------------------------------------------------------
#: plot_ufm_norms: the line of the centred class-mean norm (middle panel, dash-dotted, as book/fig9 says) and of
#: the measured feature norm (right panel, dash-dot-dotted): one style never means two quantities
CENTRED_STYLE = "-."
MEASURED_H_STYLE = (0, (6, 1.5, 1, 1.5, 1, 1.5))


def plot_ufm_norms(runs: Sequence[Run]):
    """Rows = datasets; relative error of the measured mean ||w_k|| and ||h_i|| against the UFM closed form
    (log scale), and the measured norms with the closed form as dashed lines, one colour per delta."""
    df = ufm_errors(runs)
    datasets = _datasets(df)
    colours = delta_colours(df["delta"].unique())
    fig, axes = grid(len(datasets), 3, width=3.8, height=3.0)
    for i, ds in enumerate(datasets):
        sub = df[df["dataset"] == ds]
        if not has(sub, UFM_THEORY_W_NORM):
            for ax in axes[i]:
                not_logged(ax, "closed-form norms")
            continue
        for delta, g in sub.groupby("delta"):
            c = colours[delta]
            line_band(axes[i, 0], g, "rel_err_w", c)
            line_band(axes[i, 1], g, "rel_err_h", c)
            line_band(axes[i, 1], g, "rel_err_h_centred", c, ls=CENTRED_STYLE)
            line_band(axes[i, 2], g, CLASSIFIER_NORM, c)
            line_band(axes[i, 2], g, FEATURE_NORM, c, ls=MEASURED_H_STYLE)
            for col, ls in ((UFM_THEORY_W_NORM, "--"), (UFM_THEORY_H_NORM, ":")):
                axes[i, 2].axhline(float(pd.to_numeric(g[col]).iloc[0]), color=c, ls=ls, lw=1)
        axes[i, 1].legend(handles=[
            Line2D([], [], color="grey", ls="-", label=r"mean $\|h_i\|$ (raw features)"),
            Line2D([], [], color="grey", ls=CENTRED_STYLE, label=r"mean $\|\mu_k-\mu_G\|$ (centred class means)")],
            frameon=False, fontsize=7.5)
        for ax, t in zip(axes[i], [r"rel. error of mean $\|w_k\|$", "rel. error vs closed-form $\\|h_i\\|$", "norm"]):
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel(t)
        axes[i, 2].legend(handles=[
            Line2D([], [], color="grey", ls="-", label=r"measured $\|w_k\|$"),
            Line2D([], [], color="grey", ls=MEASURED_H_STYLE, label=r"measured mean $\|h_i\|$"),
            Line2D([], [], color="grey", ls="--", label=r"closed form $\|w_k\|$"),
            Line2D([], [], color="grey", ls=":", label=r"closed form $\|h_i\|$")], frameon=False, fontsize=7.5)
        row_title(axes[i, 0], group_label(df, ds))
    for ax, t in zip(axes[0], ["classifier rows vs closed form", "features vs closed form", "norms"]):
        ax.set_title(t, fontsize=10)
    delta_legend(fig, colours, title=_seeds_note(df))
    return fig


# ------------------------------------------------------------------------------------------------
# explorer: one run, and the closed form
# ------------------------------------------------------------------------------------------------
def plot_run(run: Run, bins: int = ECE_DEFAULT_BINS):
    """Every curve of one run: error, losses, NC1, NC2/NC3, calibration, norms."""
    df = metrics_table([run])
    c = loss_colour(run.config["delta"])
    fig, axes = grid(2, 3, width=3.6, height=2.7)
    ax = axes[0, 0]
    ax.plot(df["epoch"], df["train_error"], color=c, label="train")
    ax.plot(df["epoch"], df["test_error"], color=c, ls="--", label="test")
    ax.set_ylabel("error")
    ax = axes[0, 1]
    for col, ls, label in (("train_loss_ls", "-", "train, loss optimised"), ("train_loss_ce", ":", "train, CE"),
                           ("test_loss_ce_all", "--", "test, CE")):
        if has(df, col):
            ax.plot(df["epoch"], df[col], color=c, ls=ls, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("loss (log scale)")
    ax = axes[0, 2]
    ax.plot(df["epoch"], df[NC1], color=c, label="train")
    if has(df, "test_nc1_by_prediction_all"):
        ax.plot(df["epoch"], df["test_nc1_by_prediction_all"], color=c, ls="--", label="test (by prediction)")
    ax.set_yscale("log")
    ax.set_ylabel("NC1 (log scale)")
    ax = axes[1, 0]
    ax.plot(df["epoch"], df[NC2], color=c, label="NC2")
    ax.plot(df["epoch"], df[NC3], color=c, ls="--", label="NC3")
    ax.set_ylabel("NC2, NC3")
    ax = axes[1, 1]
    for col, ls, label in ((ece_column(bins=bins), "-", "before scaling"),
                           (ece_column("holdout", bins), "--", "after TS (held-out T)"),
                           (ece_column("testfit", bins), ":", "after TS (test-fitted T)")):
        if has(df, col):
            ax.plot(df["epoch"], df[col], color=c, ls=ls, label=label)
    ax.set_ylabel(f"test ECE ({bins} bins)")
    ax = axes[1, 2]
    ax.plot(df["epoch"], df[CLASS_MEAN_NORM], color="tab:green", label=r"$\|\mu_k-\mu_G\|$")
    ax.plot(df["epoch"], df[CLASSIFIER_NORM], color="tab:purple", label=r"$\|w_k\|$")
    ax.plot(df["epoch"], df[FEATURE_NORM], color="tab:olive", ls="-.", label=r"$\|h_i\|$")
    ax.set_yscale("log")
    ax.set_ylabel("mean norm (log scale)")
    for ax in axes.flat:
        ax.set_xlabel("epoch")
        ax.legend(frameon=False, fontsize=7.5)
    fig.suptitle(describe_run(run), fontsize=10)
    return fig
