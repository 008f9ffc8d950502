"""The paper's vocabulary, defined once: loss names, the main smoothing value, the NC metric names and columns.

Everything that prints "CE" or "LS δ=…", compares CE against the paper's main LS setting, or maps the paper's
NC1/NC2/NC3 to metric columns imports it from here.
"""

from __future__ import annotations

import numpy as np

from .calibration import ECE_DEFAULT_BINS
from .metrics import PAPER_NAMES

#: The label-smoothing value the paper compares against cross-entropy in its main figures.
MAIN_DELTA = 0.05
#: Cross-entropy (δ = 0) and the main label-smoothing setting, in that order.
CE_VS_LS = (0.0, MAIN_DELTA)
#: The δ sweep of the paper's figures 4-6 in its figure list (this book's fig5, fig6 and fig7).
PAPER_SWEEP = (0.0, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9)
#: δ values of the UFM-style runs.
UFM_DELTAS = (0.0, 0.05, 0.1)
#: How near two δ values must be to be one setting. A δ read back from config.json or a table equals the value
#: written, so this only absorbs arithmetic (a δ a reader computes, 0.1 + 0.2 against 0.3).
DELTA_ATOL = 1e-9


def is_delta(value, delta):
    """Whether ``value`` (a number, or an array such as a table's ``delta`` column: elementwise) is the smoothing
    value ``delta``: how pages, claims and tables match a run's δ against a δ asked for (telling CE, δ = 0, from LS
    and grouping a table by its own δ values need no tolerance)."""
    return np.isclose(value, float(delta), rtol=0.0, atol=DELTA_ATOL)


def in_deltas(value, deltas) -> bool:
    """Whether the number ``value`` is one of ``deltas`` (:func:`is_delta`)."""
    return any(bool(is_delta(float(value), d)) for d in deltas)

#: Prefixes of a run's metrics.csv columns: metrics over the training set (lsnc.metrics.FeatureAccumulator) and
#: over the test set (PredictedClassAccumulator, calibration); lsnc.training.evaluate writes them.
TRAIN_PREFIX, TEST_PREFIX = "train_", "test_"
#: The paper's names -> metric columns of a run's metrics.csv.
NC_COLUMNS = {name: TRAIN_PREFIX + key for name, key in PAPER_NAMES.items()}


#: metrics.csv columns of the norms (training set, lsnc.metrics keys): mean ‖μ_k − μ_G‖, mean ‖w_k‖, mean ‖h_i‖.
CLASS_MEAN_NORM, CLASSIFIER_NORM, FEATURE_NORM = (TRAIN_PREFIX + key for key in (
    "mean_class_mean_norm", "mean_classifier_norm", "mean_feature_norm"))
#: metrics.csv columns of the UFM closed form's ‖w_k‖ and ‖h_i‖ (UFM-style runs; lsnc.training.loop writes them).
UFM_THEORY_W_NORM, UFM_THEORY_H_NORM = "ufm_theory_w_norm", "ufm_theory_h_norm"


def temperature_column(ts: str = "holdout") -> str:
    """The metrics.csv column of the fitted temperature T: on a held-out split (``"holdout"``) or on the test set
    itself as the paper's code does (``"testfit"``): ``test_temperature_holdout``."""
    if ts not in ("holdout", "testfit"):
        raise ValueError(f"ts must be 'holdout' or 'testfit'; got {ts!r}")
    return f"{TEST_PREFIX}temperature_{ts}"


def ece_column(ts: str | None = None, bins: int = ECE_DEFAULT_BINS) -> str:
    """The metrics.csv column of the test ECE with ``bins`` equal-width bins (default: the figures' 20), before
    temperature scaling, or after it with T fitted on a held-out split (``ts="holdout"``) or on the test set
    itself as the paper's code does (``ts="testfit"``): ``test_ece20``, ``test_ece20_ts_holdout``."""
    if ts not in (None, "holdout", "testfit"):
        raise ValueError(f"ts must be None, 'holdout' or 'testfit'; got {ts!r}")
    return f"{TEST_PREFIX}ece{bins}" + (f"_ts_{ts}" if ts else "")


#: metrics.csv column -> the words every table header, panel title and sentence of the book use for it.
COLUMN_NAMES = {
    **{col: name for name, col in NC_COLUMNS.items()},
    "train_error": "train error", "test_error": "test error", "test_accuracy": "test accuracy",
    ece_column(): f"ECE{ECE_DEFAULT_BINS}",
    CLASS_MEAN_NORM: "mean ‖μ_k − μ_G‖", CLASSIFIER_NORM: "mean ‖w_k‖", FEATURE_NORM: "mean ‖h_i‖",
    UFM_THEORY_W_NORM: "‖w_k‖ closed form", UFM_THEORY_H_NORM: "‖h_i‖ closed form",
    temperature_column("holdout"): "T (held-out fit)", temperature_column("testfit"): "T (test fit)",
}


def column_names(*columns: str) -> dict[str, str]:
    """``{column: COLUMN_NAMES[column]}`` for the columns given, in their order (a table's or a figure's)."""
    return {col: COLUMN_NAMES[col] for col in columns}


def loss_label(delta: float, ufm: bool = False, tex: bool = False) -> str:
    """"CE" for δ = 0, else "LS δ=0.05"; " UFM-style" appended for UFM-style runs; ``tex`` for matplotlib."""
    delta = float(delta)
    if delta == 0:
        name = "CE"
    else:
        name = rf"LS $\delta$={delta:g}" if tex else f"LS δ={delta:g}"
    return name + (" UFM-style" if ufm else "")


def loss_slug(delta: float) -> str:
    """The loss part of a run folder name: "ce" or "ls0.05"."""
    return "ce" if float(delta) == 0 else f"ls{float(delta):g}"
