"""What the claims measure on each run: a final value, the first epoch at a training-error or NC level, a run's
trajectory in the NC1-NC2 plane, and NC2 at matched NC1 for a CE-LS pair. Each function reads one run's tables
(``metrics.csv``, ``epochs.csv`` as Run or Run-like objects give them) and returns numbers; :mod:`.claims` turns
them into tests with verdicts, and :mod:`.summary` / :mod:`.nc3` read the same numbers for their tables.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..vocab import NC_COLUMNS
from .comparable import reach

#: C4: number of NC1 levels in the common range
C4_GRID = 25


def series(run, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one metric column, rows with a missing value dropped, sorted by epoch."""
    m = run.metrics
    if column not in m.columns:
        return np.array([]), np.array([])
    df = m[["epoch", column]].dropna().sort_values("epoch")
    return df["epoch"].to_numpy(dtype=float), df[column].to_numpy(dtype=float)


def final_value(run, column: str) -> float:
    """The value at the run's last evaluated epoch; NaN when the column is absent or has no value there (never
    an earlier epoch's value: a seed without the final measurement does not count for the claim)."""
    m = run.metrics
    if column not in m.columns or m.empty:
        return float("nan")
    last = pd.to_numeric(m.sort_values("epoch")[column], errors="coerce").iloc[-1]
    return float(last)


def epochs_to_zero_error(run, threshold: float = 0.0, column: str = "train_error") -> float:
    """First evaluated epoch with ``column`` <= ``threshold`` (+inf if never; NaN if not logged).

    The resolution is that of the evaluation schedule (every epoch early on, sparser later)."""
    e, v = series(run, column)
    if not len(v):
        return float("nan")
    hit = np.nonzero(v <= threshold + 1e-12)[0]
    return float(e[hit[0]]) if len(hit) else float("inf")


def epochs_to_zero_running_error(run, threshold: float = 0.0, column: str = "train_acc_running") -> float:
    """First epoch whose running training error ``1 - column`` in ``run.epochs`` (``epochs.csv``, one row per
    trained epoch, epochs numbered from 1) is <= ``threshold``: one-epoch resolution.

    The running error is measured during the epoch, in train mode (batch norm normalises with each batch's
    statistics), averaged over the epoch's batches while the weights change: not the eval-mode train error of
    :func:`epochs_to_zero_error`. Returns +inf when the run never reaches it; NaN (a missing measurement) when
    the run has no epochs table or no ``column``, or the table does not hold every epoch up to the answer
    (a gap before the first hit, or, never reached, rows that stop before the last epoch the run reached)."""
    nan = float("nan")
    table = getattr(run, "epochs", None)
    if not isinstance(table, pd.DataFrame) or table.empty or "epoch" not in table.columns \
            or column not in table.columns:
        return nan
    df = table[["epoch", column]].apply(pd.to_numeric, errors="coerce").dropna().sort_values("epoch")
    if df.empty:
        return nan
    epochs, error = df["epoch"].to_numpy(dtype=float), 1.0 - df[column].to_numpy(dtype=float)
    hit = np.nonzero(error <= threshold + 1e-12)[0]
    upto = hit[0] + 1 if len(hit) else len(epochs)
    if not np.array_equal(epochs[:upto], np.arange(1, upto + 1)):
        return nan  # a missing epoch before the answer: the first epoch is not known
    if len(hit):
        return float(epochs[hit[0]])
    return float("inf") if epochs[-1] >= reach(run).reached else nan


def epochs_to_level(run, column: str, level: float) -> float:
    """First evaluated epoch from which ``column`` stays at or below ``level`` until the end of the run
    (+inf if the final value is above it; NaN if not logged or the level is undefined).

    "Stays" rather than "first touches" so that a transient dip does not count as convergence."""
    e, v = series(run, column)
    if not len(v) or level is None or not np.isfinite(level):
        return float("nan")
    above = np.nonzero(v > level)[0]
    if not len(above):
        return float(e[0])
    last_above = above[-1]
    return float(e[last_above + 1]) if last_above + 1 < len(e) else float("inf")


def epochs_to_own_level(run, column: str, fraction: float) -> float:
    """:func:`epochs_to_level` at the run's own level: ``fraction`` of the way (log scale) from its first evaluated
    value (epoch 0 in lsnc's runs) to its final value, so how fast the run approaches where it ends, whatever that is
    (NaN where the metric does not decrease over the run or a value is not positive)."""
    _, v = series(run, column)
    if len(v) < 2 or v[0] <= 0 or v[-1] <= 0 or not v[-1] < v[0]:
        return float("nan")
    return epochs_to_level(run, column, float(np.exp(np.log(v[0]) + fraction * (np.log(v[-1]) - np.log(v[0])))))


def c2_level(runs: Sequence[Any], column: str, fraction: float) -> tuple[float, float, float]:
    """The C2 level of one metric for one comparison (CE and LS runs together).

    ``start`` = geometric mean of the epoch-0 values over the runs, ``worst`` = the largest final value over
    the runs (so every run ends at or below it), and the level is ``fraction`` of the way from ``start`` to
    ``worst`` in log space: ``exp(log start + fraction (log worst - log start))``. ``fraction = 1`` is the
    worst final value itself. Returns ``(level, start, worst)``; the level is NaN when the metric does not
    decrease (``worst >= start``) or a value is not positive."""
    starts, finals = [], []
    for r in runs:
        _, v = series(r, column)
        if len(v):
            starts.append(v[0])
            finals.append(v[-1])
    if not starts:
        return float("nan"), float("nan"), float("nan")
    starts, finals = np.asarray(starts), np.asarray(finals)
    if np.any(starts <= 0) or np.any(finals <= 0):
        return float("nan"), float("nan"), float("nan")
    start, worst = float(np.exp(np.mean(np.log(starts)))), float(finals.max())
    if worst >= start:
        return float("nan"), start, worst
    return float(np.exp(np.log(start) + fraction * (np.log(worst) - np.log(start)))), start, worst


def record_trajectory(run, x_column: str = NC_COLUMNS["NC1"], y_column: str = NC_COLUMNS["NC2"]):
    """(log x, y) at the evaluated epochs where x sets a new low (the trajectory's first passage through each
    x level), in increasing log x (for interpolation)."""
    m = run.metrics
    if x_column not in m.columns or y_column not in m.columns:
        return np.array([]), np.array([])
    df = m[["epoch", x_column, y_column]].dropna().sort_values("epoch")
    x, y = df[x_column].to_numpy(dtype=float), df[y_column].to_numpy(dtype=float)
    keep = x > 0
    x, y = x[keep], y[keep]
    if not len(x):
        return np.array([]), np.array([])
    is_record = x < np.minimum.accumulate(np.concatenate([[np.inf], x[:-1]]))
    lx, yy = np.log(x[is_record]), y[is_record]
    return lx[::-1], yy[::-1]


def nc2_at_matched_nc1(ce_run, ls_run, grid: int = C4_GRID) -> tuple[float, float, float, tuple[float, float]]:
    """NC2 of the two runs compared at the same NC1.

    Each trajectory is reduced to its first passage through each NC1 value (the evaluated epochs where NC1
    sets a new low); NC2 is interpolated linearly in log NC1 between them, on ``grid`` log-spaced NC1 values
    spanning the range both runs pass through. Returns ``(mean CE NC2, mean LS NC2, fraction of the grid where
    LS is lower, (NC1 low, NC1 high))``; NaNs when the ranges do not overlap."""
    xc, yc = record_trajectory(ce_run)
    xl, yl = record_trajectory(ls_run)
    nan = (float("nan"),) * 3 + ((float("nan"), float("nan")),)
    if len(xc) < 2 or len(xl) < 2:
        return nan
    lo, hi = max(xc[0], xl[0]), min(xc[-1], xl[-1])
    if not hi > lo:
        return nan
    g = np.linspace(lo, hi, grid)
    nc2_ce, nc2_ls = np.interp(g, xc, yc), np.interp(g, xl, yl)
    return (float(nc2_ce.mean()), float(nc2_ls.mean()), float(np.mean(nc2_ls < nc2_ce)),
            (float(np.exp(lo)), float(np.exp(hi))))
