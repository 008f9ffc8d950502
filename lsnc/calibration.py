"""Calibration: expected calibration error (equal-width and equal-mass bins), reliability-diagram data and
temperature scaling, as the paper defines them.

ECE = sum_b (|B_b|/n) |acc(B_b) - conf(B_b)| with the top-1 softmax confidence. Equal-width bins are
(lower, upper] with edges b/B (b = 0..B, each the float64 nearest to it); a confidence of exactly 0 goes to the
first bin and exactly 1.0 to the last. All computations are in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ECE_BINS",
    "ECE_DEFAULT_BINS",
    "CALIBRATION_FORMULAS",
    "confidence_and_correct",
    "equal_width_bin_index",
    "ece_equal_width",
    "ece_equal_mass",
    "reliability_diagram",
    "mean_nll",
    "fit_temperature",
    "calibration_metrics",
]

#: the bin counts every evaluation logs (``ece15``, ``ece20``, ``ece25``)
ECE_BINS = (15, 20, 25)
#: the one the figures, tables and claims use, as the paper's figures do (``ece20``)
ECE_DEFAULT_BINS = 20

_ECE = "sum_b (|B_b|/n) |acc(B_b) - conf(B_b)|, conf the top-1 softmax probability"
_FITS = {"testfit": "fitted on these same (test) logits, as the paper's code does",
         "holdout": "fitted on a held-out split of the training data (NaN without one)"}
#: Every key returned by :func:`calibration_metrics`, with its formula.
CALIBRATION_FORMULAS = {
    **{f"ece{b}": f"ECE, {b} equal-width bins (lower, upper]: {_ECE}" for b in ECE_BINS},
    f"ece{ECE_DEFAULT_BINS}_equal_mass": f"ECE, {ECE_DEFAULT_BINS} bins of equal count (samples sorted by "
                                         f"confidence): {_ECE}",
    **{k: v for tag, fit in _FITS.items() for k, v in {
        f"temperature_{tag}": f"T in [0.01, 100] minimising the mean NLL of softmax(z / T), {fit}",
        f"nll_ts_{tag}": f"mean NLL of softmax(z / T) on the test logits, T = temperature_{tag}",
        **{f"ece{b}_ts_{tag}": f"ece{b} of softmax(z / T), T = temperature_{tag}" for b in ECE_BINS},
    }.items()},
}


def _checked_labels(logits: Tensor, labels: Tensor, what: str = "labels") -> Tensor:
    """``labels`` as int64 on the logits' device, after checking they are class indices of these logits."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"{what}: expected logits (n, K) and labels (n,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{what} must be integer class indices, got dtype {labels.dtype}")
    y = labels.to(logits.device, torch.long)
    if y.numel():
        lo, hi = (int(v) for v in torch.stack([y.min(), y.max()]).cpu())
        if lo < 0 or hi >= logits.shape[1]:
            raise ValueError(f"{what} must lie in [0, {logits.shape[1]}) for {logits.shape[1]} classes of logits; "
                             f"got values from {lo} to {hi}")
    return y


def _edges(num_bins: int, device=None) -> Tensor:
    """The equal-width bin edges b / B, b = 0..B: each the float64 nearest to b / B, as a literal such as 0.55 is
    (linspace's are not always: its edge 11 of 20 is 0.5499999999999999)."""
    return torch.arange(num_bins + 1, dtype=torch.float64, device=device) / num_bins


def confidence_and_correct(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Top-1 softmax confidence (float64) and whether the top-1 prediction is right."""
    probs = F.softmax(logits.detach().to(torch.float64), dim=1)
    confidence, prediction = probs.max(1)
    return confidence, prediction == labels.to(prediction.device)


def equal_width_bin_index(confidences: Tensor, num_bins: int) -> Tensor:
    """Bin b in [0, num_bins) with edges e_b < conf <= e_{b+1}, e_b = b / num_bins (:func:`_edges`); 0 -> bin 0.

    ``bucketize`` against the float64 edges (rather than ceil(conf * B) - 1) puts a confidence equal to an
    edge in the bin the edge closes, without rounding surprises such as 0.15 * 20 = 3.0000000000000004.
    """
    c = confidences.to(torch.float64)
    inner_edges = _edges(num_bins, c.device)[1:-1]
    return torch.bucketize(c, inner_edges, right=False)


def _per_bin(bin_index: Tensor, confidences: Tensor, correct: Tensor, num_bins: int):
    c = confidences.to(torch.float64)
    ok = correct.to(torch.float64)
    counts = torch.zeros(num_bins, dtype=torch.float64, device=c.device).index_add_(0, bin_index, torch.ones_like(c))
    conf_sums = torch.zeros_like(counts).index_add_(0, bin_index, c)
    correct_sums = torch.zeros_like(counts).index_add_(0, bin_index, ok)
    return counts, conf_sums, correct_sums


def _ece_from_bins(counts: Tensor, conf_sums: Tensor, correct_sums: Tensor) -> float:
    # sum_b (n_b/n) |acc_b - conf_b| = (1/n) sum_b |correct_sum_b - conf_sum_b|; empty bins contribute 0.
    return float((correct_sums - conf_sums).abs().sum() / counts.sum())


def ece_equal_width(confidences: Tensor, correct: Tensor, num_bins: int = ECE_DEFAULT_BINS) -> float:
    """ECE with ``num_bins`` equal-width bins (lower, upper]."""
    if confidences.numel() == 0:
        raise ValueError("ECE of an empty set is undefined")
    index = equal_width_bin_index(confidences, num_bins)
    return _ece_from_bins(*_per_bin(index, confidences, correct, num_bins))


def ece_equal_mass(confidences: Tensor, correct: Tensor, num_bins: int = ECE_DEFAULT_BINS) -> float:
    """Adaptive ECE: samples sorted by confidence (stable sort) and cut into ``num_bins`` bins of equal
    count, the first n % num_bins bins holding one extra sample (as ``numpy.array_split``). Tied confidences
    may fall on both sides of a cut; with n < num_bins the surplus bins are empty and contribute 0."""
    n = confidences.numel()
    if n == 0:
        raise ValueError("ECE of an empty set is undefined")
    order = torch.sort(confidences.to(torch.float64), stable=True).indices
    sizes = torch.full((num_bins,), n // num_bins, dtype=torch.long)
    sizes[: n % num_bins] += 1
    bin_of_rank = torch.repeat_interleave(torch.arange(num_bins), sizes).to(confidences.device)
    index = torch.empty(n, dtype=torch.long, device=confidences.device)
    index[order] = bin_of_rank
    return _ece_from_bins(*_per_bin(index, confidences, correct, num_bins))


def reliability_diagram(confidences: Tensor, correct: Tensor, num_bins: int = ECE_DEFAULT_BINS) -> dict[str, Tensor]:
    """Per equal-width bin: lower and upper edge, mean confidence, accuracy (NaN for empty bins), count."""
    index = equal_width_bin_index(confidences, num_bins)
    counts, conf_sums, correct_sums = _per_bin(index, confidences, correct, num_bins)
    edges = _edges(num_bins)
    safe = counts.clamp_min(1.0)
    empty = counts == 0
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "confidence": torch.where(empty, math.nan, conf_sums / safe).cpu(),
        "accuracy": torch.where(empty, math.nan, correct_sums / safe).cpu(),
        "count": counts.cpu(),
    }


def mean_nll(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> float:
    """Mean cross-entropy of logits / temperature."""
    z = logits.detach().to(torch.float64) / temperature
    return float(F.cross_entropy(z, _checked_labels(z, labels)))


def fit_temperature(logits: Tensor, labels: Tensor, *, t_min: float = 1e-2, t_max: float = 1e2,
                    max_iter: int = 100) -> float:
    """Temperature T in [t_min, t_max] minimising the mean NLL of softmax(logits / T).

    With beta = 1/T the NLL, mean(logsumexp(beta z) - beta z_y), is convex in beta; its derivative
    g(beta) = mean(E_p[z] - z_y) is increasing, with g'(beta) = mean(Var_p[z]). The root of g is found by
    Newton steps safeguarded by a bisection bracket (in log beta): deterministic, and global because of
    convexity. If the minimum lies outside the bounds the nearest bound is returned (e.g. separable data,
    all predictions right, where the NLL decreases forever as T -> 0).
    """
    z = logits.detach().to(torch.float64)
    y = _checked_labels(z, labels)
    z_true = z.gather(1, y.unsqueeze(1)).squeeze(1)

    def slope_and_curvature(beta: float) -> tuple[float, float]:
        p = F.softmax(beta * z, dim=1)
        expected = (p * z).sum(1)
        variance = (p * z.square()).sum(1) - expected.square()
        return float((expected - z_true).mean()), float(variance.clamp_min(0).mean())

    lo, hi = 1.0 / t_max, 1.0 / t_min
    if slope_and_curvature(lo)[0] >= 0:
        return t_max
    if slope_and_curvature(hi)[0] <= 0:
        return t_min
    beta = 1.0
    if not lo < beta < hi:
        beta = math.sqrt(lo * hi)
    for _ in range(max_iter):
        g, curvature = slope_and_curvature(beta)
        if g == 0.0:
            break
        if g > 0:
            hi = beta
        else:
            lo = beta
        if hi - lo <= 1e-14 * hi:
            break
        step = beta - g / curvature if curvature > 0 else math.nan
        new_beta = step if lo < step < hi else math.sqrt(lo * hi)
        converged = abs(new_beta - beta) <= 1e-13 * beta
        beta = new_beta
        if converged:
            break
    return 1.0 / beta


def calibration_metrics(logits: Tensor, labels: Tensor, *, holdout_logits: Tensor | None = None,
                        holdout_labels: Tensor | None = None, bins=ECE_BINS) -> dict[str, float]:
    """Calibration of ``logits`` (typically the test set), before and after temperature scaling.

    Keys (ECE with B equal-width bins is ``eceB``):
      ece15, ece20, ece25, ece20_equal_mass            before scaling;
      temperature_testfit, nll_ts_testfit, eceB_ts_testfit
          T fitted on these same logits (what the paper's code does: optimistic, it sees the labels it is
          scored on);
      temperature_holdout, nll_ts_holdout, eceB_ts_holdout
          T fitted on ``holdout_logits`` (a held-out split of the training data), scored here; NaN when no
          held-out split is given (the columns stay, so every log row has the same keys).
    """
    _checked_labels(logits, labels)
    if holdout_logits is not None and holdout_labels is not None:
        _checked_labels(holdout_logits, holdout_labels, "holdout labels")
    confidence, correct = confidence_and_correct(logits, labels)
    out = {f"ece{b}": ece_equal_width(confidence, correct, b) for b in bins}
    out[f"ece{ECE_DEFAULT_BINS}_equal_mass"] = ece_equal_mass(confidence, correct, ECE_DEFAULT_BINS)

    def scaled(tag: str, temperature: float) -> None:
        out[f"temperature_{tag}"] = temperature
        if math.isnan(temperature):
            out[f"nll_ts_{tag}"] = math.nan
            out.update({f"ece{b}_ts_{tag}": math.nan for b in bins})
            return
        conf_t, correct_t = confidence_and_correct(logits.to(torch.float64) / temperature, labels)
        out[f"nll_ts_{tag}"] = mean_nll(logits, labels, temperature)
        out.update({f"ece{b}_ts_{tag}": ece_equal_width(conf_t, correct_t, b) for b in bins})

    scaled("testfit", fit_temperature(logits, labels))
    if holdout_logits is not None and holdout_labels is not None and holdout_logits.shape[0] > 0:
        scaled("holdout", fit_temperature(holdout_logits, holdout_labels))
    else:
        scaled("holdout", math.nan)
    return out
