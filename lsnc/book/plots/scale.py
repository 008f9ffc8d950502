"""Figures across run groups: the LS / CE ratio of the final metrics of one setting trained at several scales (the
claims page), and LS's calibration gain against how over-confident CE was (fig7)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...vocab import MAIN_DELTA, loss_label
from ..scale import SCALE_AXES, SCALE_COLUMNS
from .style import grid

_MARKERS = "osD^vP*X"
_TICKS = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100])


def _ratio_ticks(ax) -> None:
    """Label a log ratio axis at 1, 2, 5 x powers of ten (at least the two around its range), as plain numbers."""
    low, high = ax.get_ylim()
    inside = _TICKS[(_TICKS >= low) & (_TICKS <= high)]
    if len(inside) < 2:
        below, above = _TICKS[_TICKS < low], _TICKS[_TICKS > high]
        inside = np.concatenate([below[-1:], inside, above[:1]])[:3]
        ax.set_ylim(min(low, inside.min()), max(high, inside.max()))
    ax.set_yticks(inside, [f"{t:g}" for t in inside])


def _setting_label(rows: pd.DataFrame) -> str:
    """The run groups of one setting, smallest value first: ``cifar10-jpeg → cifar10-jpeg-w32``."""
    return " → ".join(dict.fromkeys(rows.sort_values("value")["groups"]))


def plot_scale_ratios(ratios: dict[str, pd.DataFrame]):
    """``ratios``: {axis (a key of ``scale.SCALE_AXES``): ``scale.scale_ratios`` of it}. One column of panels
    per axis with data (its settings in the legend above it), one row per metric. Per setting, the LS / CE
    ratio of the means over seeds against how many times the setting's smallest value it was trained at
    (log-log), the bar from the smallest to the largest ratio of one seed pair; the dashed line is LS = CE
    (below it LS ends lower). Returns None when no axis has data."""
    axes_with_data = [a for a, t in ratios.items() if len(t)]
    if not axes_with_data:
        return None
    metrics = list(SCALE_COLUMNS.values())
    fig, axes = grid(len(metrics), len(axes_with_data), width=3.4, height=2.1)
    colours = plt.get_cmap("tab10")
    for j, axis in enumerate(axes_with_data):
        table = ratios[axis]
        word = SCALE_AXES[axis][2]
        settings = list(dict.fromkeys(table["setting"]))
        factors = sorted(set(table["factor"]))
        handles: dict[str, object] = {}  # one legend entry per setting, from the first panel that draws it
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            for k, setting in enumerate(settings):
                rows = table[(table["setting"] == setting) & (table["metric"] == metric)].sort_values("factor")
                if rows.empty:
                    continue
                x, y, low, high = (rows[c].to_numpy(float) for c in ("factor", "ratio", "ratio_min", "ratio_max"))
                h = ax.errorbar(x, y, yerr=np.clip(np.vstack([y - low, high - y]), 0, None), color=colours(k % 10),
                                marker=_MARKERS[k % len(_MARKERS)], ms=5, lw=1.5, capsize=3,
                                label=f"{_setting_label(table[table['setting'] == setting])} "
                                      f"(seeds: {int(rows['seeds'].min())})")
                handles.setdefault(setting, h)
            ax.axhline(1.0, color="grey", ls="--", lw=1)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.minorticks_off()
            _ratio_ticks(ax)
            ax.set_xticks(factors, [f"×{f:.3g}" for f in factors])
            ax.set_xlim(min(factors) / 1.3, max(factors) * 1.3)
            if j == 0:
                ax.set_ylabel(f"{metric}: LS / CE")
        axes[-1, j].set_xlabel(f"× the smallest {word}")
        axes[0, j].set_title(f"by {word}", fontweight="bold")
        axes[0, j].legend(handles=list(handles.values()), loc="lower center", bbox_to_anchor=(0.5, 1.12),
                          fontsize=8, frameon=False)
    return fig


def plot_calibration_gain(table: pd.DataFrame, delta: float = MAIN_DELTA):
    """``table``: ``summary.calibration_gain``. One point per run group: CE's held-out temperature T (x; its bar
    spans the seeds) against the LS / CE ratio of the test ECE before scaling (y, log; its bar spans the ratios
    of single seed pairs). One marker per dataset, the group's name beside its point; the dashed line is LS = CE
    (below it LS ended better calibrated), the dotted one T = 1 (a calibrated CE). Rows without a temperature or
    ratio are not drawn; None when no row is left."""
    table = table.dropna(subset=["ce_temperature", "ratio"])  # groups left out (their ``note`` says why)
    if table.empty:
        return None
    fig, axes = grid(1, 1, width=6.4, height=4.2)
    ax = axes[0, 0]
    colours = plt.get_cmap("tab10")
    placed: list[tuple[float, float]] = []
    for k, (label, rows) in enumerate(table.groupby("label", sort=False)):
        x, y = rows["ce_temperature"].to_numpy(float), rows["ratio"].to_numpy(float)
        xerr = np.clip(np.vstack([x - rows["ce_temperature_min"], rows["ce_temperature_max"] - x]), 0, None)
        yerr = np.clip(np.vstack([y - rows["ratio_min"], rows["ratio_max"] - y]), 0, None)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, ls="none", marker=_MARKERS[k % len(_MARKERS)], ms=6, capsize=3,
                    color=colours(k % 10), label=label)
        for xi, yi, group in zip(x, y, rows["dataset"]):
            # names of points close together (in x and in log y) step down, one line each
            near = sum(abs(xi - px) < 0.25 and abs(np.log10(yi / py)) < 0.06 for px, py in placed)
            placed.append((xi, yi))
            ax.annotate(group, (xi, yi), xytext=(5, 4 - 9 * near), textcoords="offset points", fontsize=7)
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.set_yscale("log")
    ax.minorticks_off()
    _ratio_ticks(ax)
    ax.set_xlabel("CE's held-out temperature T (above 1: CE over-confident)")
    ax.set_ylabel(f"test ECE before scaling: {loss_label(delta)} / CE")
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    return fig
