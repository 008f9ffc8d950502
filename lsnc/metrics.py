"""Neural-collapse metrics from one streaming evaluation pass.

Two steps:

1. *Accumulate* sufficient statistics batch by batch, in float64, on the device the model runs on
   (:class:`FeatureAccumulator` for the training set grouped by label, :class:`PredictedClassAccumulator`
   for the test set grouped by predicted class). Memory does not grow with the number of samples N,
   except for the bounded NCC subset described in :class:`FeatureAccumulator`.
2. *Measure* with pure functions of those statistics and the classifier ``W`` (K x d), ``b`` (K).

Notation: K classes, features h_i in R^d, class means mu_k, mu_G = mean of the class means (unweighted),
M = matrix with rows mu_k - mu_G (K x d), Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T,
Sigma_B = (1/K) M^T M, E = (I_K - 11^T/K) / sqrt(K-1) (the normalised simplex-ETF Gram matrix),
||.|| = Frobenius norm.

The same names mean different formulas in different NC codebases; the formula is documented next to every
key in :data:`METRIC_FORMULAS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PAPER_NAMES",
    "PAPER_TEX",
    "METRIC_FORMULAS",
    "PREDICTED_CLASS_FORMULAS",
    "ClassStatistics",
    "FeatureAccumulator",
    "PredictedClassAccumulator",
    "between_class_eigenpairs",
    "nc1_within_between",
    "nc1_from_eigenpairs",
    "simplex_etf_gram",
    "etf_distance",
    "nc2_wh_etf",
    "nc2_means_etf",
    "nc2_classifier_etf",
    "nc3_duality_sq",
    "nc3_decomposition",
    "norm_coefficient_of_variation",
    "equiangularity",
    "nearest_class_centre_predictions",
    "collapse_metrics",
    "collapse_metrics_from_features",
]

# The paper's figure names -> our keys.
PAPER_NAMES = {
    "NC1": "nc1_within_between",  # tr(Sigma_W Sigma_B^+), no 1/K (the paper's code)
    "NC2": "nc2_wh_etf",  # || W M^T / ||W M^T|| - E ||, W not centred
    "NC3": "nc3_duality_sq",  # || W/||W|| - M/||M|| ||^2 (squared, as in the paper's code)
}

# The paper's names -> their formulas in TeX, for axis labels and pages (the same formulas as METRIC_FORMULAS).
PAPER_TEX = {
    "NC1": r"\mathrm{tr}(\Sigma_W\Sigma_B^+)",
    "NC2": r"\|WM^\top/\|WM^\top\| - E\|",
    "NC3": r"\|W/\|W\| - M/\|M\|\|^2",
}

# Every key returned by collapse_metrics / FeatureAccumulator.compute (the training set grouped by label), with the
# formula it computes.
METRIC_FORMULAS = {
    "nc1_within_between": "tr(Sigma_W Sigma_B^+), Sigma_B^+ from the top K-1 eigenpairs of Sigma_B (paper)",
    "nc1_within_between_over_k": "tr(Sigma_W Sigma_B^+) / K (Papyan et al. 2020)",
    "sigma_b_rank_used": "number of eigenpairs of Sigma_B kept in Sigma_B^+",
    "sigma_w_trace": "tr(Sigma_W)",
    "sigma_b_trace": "tr(Sigma_B)",
    "nc2_wh_etf": "|| W M^T/||W M^T|| - E ||, W not centred (paper's NC2)",
    "nc2_means_etf": "|| M M^T/||M M^T|| - E ||",
    "nc2_classifier_etf": "|| W W^T/||W W^T|| - E ||, W not centred",
    "nc3_duality_sq": "|| W/||W|| - M/||M|| ||^2 (paper's NC3)",
    "nc3_duality": "|| W/||W|| - M/||M|| ||",
    "classifier_mean_span_fraction": "||W P|| / ||W||, P the projector onto the span of the centred class means "
                                     "(the kept eigenvectors of Sigma_B); 1 when W lies in that span",
    "nc3_in_mean_span_sq": "|| W P/||W P|| - M/||M|| ||^2: NC3 of the part of W in that span "
                           "(1 - NC3/2 = fraction x (1 - this/2))",
    "nc3_whitened_means_sq": "|| W/||W|| - A/||A|| ||^2, A = M Sigma_B^+: the least-norm classifier with W M^T "
                             "an exact simplex ETF (A M^T = K (I - 11^T/K)) when the means span K-1 dimensions; "
                             "A is parallel to M when the means are an ETF",
    "nc3_means_whitened_sq": "|| A/||A|| - M/||M|| ||^2, A = M Sigma_B^+: the NC3 that W = A (NC2 = 0 at the least "
                             "norm) would have; 0 when the means are an ETF, so the NC3 that the means' own "
                             "distance from an ETF forces on a classifier with NC2 = 0",
    "equinorm_class_means": "std/mean over k of ||mu_k - mu_G|| (std with Bessel's correction, as torch.std)",
    "equinorm_classifier": "std/mean over k of ||w_k|| (std with Bessel's correction)",
    "equiangularity_class_means": "mean over k != j of |cos(mu_k - mu_G, mu_j - mu_G) + 1/(K-1)|",
    "equiangularity_classifier": "mean over k != j of |cos(w_k, w_j) + 1/(K-1)|",
    "nc4_ncc_accuracy": "fraction of the NCC subset with argmin_k ||h - mu_k|| == label",
    "nc4_ncc_classifier_agreement": "fraction of the NCC subset with argmin_k ||h - mu_k|| == argmax_k (W h + b)_k",
    "ncc_samples_used": "number of samples the NC4 quantities were computed on",
    "mean_class_mean_norm": "mean over k of ||mu_k - mu_G||",
    "mean_classifier_norm": "mean over k of ||w_k||",
    "mean_feature_norm": "mean over i of ||h_i||",
    "classifier_fro_norm": "||W||",
    "num_samples": "N",
    "accuracy": "fraction with argmax(logits) == label (only when logits are given)",
    "error": "1 - accuracy",
    "loss_ce": "mean cross-entropy of the logits (no smoothing)",
    "loss_ls": "mean label-smoothed cross-entropy with targets (1-delta) onehot + delta/K (when delta is given)",
}

# Every key returned by PredictedClassAccumulator.compute (the test set grouped by predicted class), with its formula.
# p_i = argmax logits_i; groups g: all samples, those with p_i == y_i (correct), the others (incorrect).
PREDICTED_CLASS_FORMULAS = {
    **{f"nc1_by_prediction_{g}": f"tr(Sigma_W^{g} Sigma_B^+), Sigma_W^{g} = (1/N_{g}) sum over the {g} samples of "
                                 "(h_i - nu_{p_i})(h_i - nu_{p_i})^T, nu_p the mean of all samples predicted p; "
                                 "Sigma_B from the nu_p of the K' classes predicted at least once"
       for g in ("all", "correct", "incorrect")},
    **{f"loss_ce_{g}": f"mean cross-entropy -log softmax(z_i)_{{y_i}} over the {g} samples"
       for g in ("all", "correct", "incorrect")},
    **{f"entropy_{g}": f"mean entropy -sum_k p_ik log p_ik of softmax(z_i) over the {g} samples"
       for g in ("all", "correct", "incorrect")},
    "accuracy": "fraction with argmax(logits) == label",
    "error": "1 - accuracy",
    "num_samples": "N",
    "num_correct": "number of samples with argmax(logits) == label",
    "num_incorrect": "number of the others",
    "num_predicted_classes": "K': number of classes predicted at least once",
}

_EPS64 = torch.finfo(torch.float64).eps


# --------------------------------------------------------------------------------------------------
# Pure functions of statistics and the classifier
# --------------------------------------------------------------------------------------------------


def between_class_eigenpairs(centred_means: Tensor, rtol: float | None = None) -> tuple[Tensor, Tensor]:
    """Nonzero eigenpairs of Sigma_B = (1/K) M^T M used to build Sigma_B^+.

    Computed from the thin SVD of M (K x d) in float64 rather than from the d x d matrix: the right singular
    vectors of M are the eigenvectors of Sigma_B with eigenvalues s^2/K, at O(K^2 d) cost instead of O(d^3).
    Rows of M sum to zero, so Sigma_B has rank <= K-1: at most the top K-1 pairs are kept. When the rank is
    lower (e.g. d < K-1, or coincident class means) only eigenvalues above ``rtol * largest`` are kept,
    ``rtol`` defaulting to max(K, d) * float64 eps (the default of ``torch.linalg.pinv``).

    Returns (eigenvalues (r,), eigenvectors (d, r)); r = 0 when Sigma_B = 0.
    """
    m = centred_means.to(torch.float64)
    num_classes, dim = m.shape
    if rtol is None:
        rtol = max(num_classes, dim) * _EPS64
    _, singular_values, vh = torch.linalg.svd(m, full_matrices=False)
    eigenvalues = singular_values.square() / num_classes
    top = eigenvalues[: num_classes - 1]
    keep = top > rtol * eigenvalues[0] if eigenvalues[0] > 0 else torch.zeros_like(top, dtype=torch.bool)
    return top[keep], vh[: num_classes - 1][keep].T


def nc1_within_between(sigma_w: Tensor, centred_means: Tensor, rtol: float | None = None) -> Tensor:
    """tr(Sigma_W Sigma_B^+), Sigma_B^+ from :func:`between_class_eigenpairs`.

    Equals sum_j v_j^T Sigma_W v_j / lambda_j over the kept eigenpairs. NaN when Sigma_B = 0 (all class
    means equal: NC1 is undefined, not small). The tolerance is relative, so class means that differ only by
    rounding error give a huge NC1 rather than NaN. Divide by K for the Papyan et al. form.
    """
    eigenvalues, eigenvectors = between_class_eigenpairs(centred_means, rtol)
    if eigenvalues.numel() == 0:
        return torch.tensor(math.nan, dtype=torch.float64, device=sigma_w.device)
    return nc1_from_eigenpairs(sigma_w, eigenvalues, eigenvectors)


def nc1_from_eigenpairs(sigma_w: Tensor, eigenvalues: Tensor, eigenvectors: Tensor) -> Tensor:
    """tr(Sigma_W Sigma_B^+) = sum_j v_j^T Sigma_W v_j / lambda_j, given the kept eigenpairs of Sigma_B
    (:func:`between_class_eigenpairs`): one Sigma_B, several Sigma_W (the predicted-class NC1 of each subset)."""
    projected = ((sigma_w.to(torch.float64) @ eigenvectors) * eigenvectors).sum(0)
    return (projected / eigenvalues).sum()


def simplex_etf_gram(num_classes: int, *, dtype=torch.float64, device=None) -> Tensor:
    """E = (I_K - 11^T/K) / sqrt(K-1): the Gram matrix of a simplex ETF scaled to unit Frobenius norm."""
    eye = torch.eye(num_classes, dtype=dtype, device=device)
    return (eye - 1.0 / num_classes) / math.sqrt(num_classes - 1)


def etf_distance(gram: Tensor) -> Tensor:
    """|| G/||G|| - E || for a K x K matrix G (NaN if G = 0)."""
    gram = gram.to(torch.float64)
    etf = simplex_etf_gram(gram.shape[0], device=gram.device)
    return torch.linalg.matrix_norm(gram / torch.linalg.matrix_norm(gram) - etf)


def nc2_wh_etf(weight: Tensor, centred_means: Tensor) -> Tensor:
    """Paper's NC2: || W M^T/||W M^T|| - E ||, with W not centred."""
    return etf_distance(weight.to(torch.float64) @ centred_means.to(torch.float64).T)


def nc2_means_etf(centred_means: Tensor) -> Tensor:
    """|| M M^T/||M M^T|| - E ||."""
    m = centred_means.to(torch.float64)
    return etf_distance(m @ m.T)


def nc2_classifier_etf(weight: Tensor) -> Tensor:
    """|| W W^T/||W W^T|| - E ||, with W not centred."""
    w = weight.to(torch.float64)
    return etf_distance(w @ w.T)


def nc3_duality_sq(weight: Tensor, centred_means: Tensor) -> Tensor:
    """Paper's NC3: || W/||W|| - M/||M|| ||^2. Take the square root for the unsquared form."""
    w = weight.to(torch.float64)
    m = centred_means.to(torch.float64)
    return torch.linalg.matrix_norm(w / torch.linalg.matrix_norm(w) - m / torch.linalg.matrix_norm(m)).square()


def nc3_decomposition(weight: Tensor, centred_means: Tensor, eigenvalues: Tensor,
                      eigenvectors: Tensor) -> dict[str, Tensor]:
    """Where NC3 comes from: W against the class means inside and outside their span, and against A = M Sigma_B^+.

    With P = V V^T the projector onto the span of the centred class means (V: the kept eigenvectors of Sigma_B,
    :func:`between_class_eigenpairs`), W = W P + W (I - P), and since M (I - P) = 0,

        cos(W, M) = (||W P|| / ||W||) cos(W P, M),   NC3 = 2 - 2 cos(W, M),

    so ``1 - NC3/2 = classifier_mean_span_fraction x (1 - nc3_in_mean_span_sq / 2)``: an NC3 above 0 is W
    leaving the span of the means, or W turning away from M inside it.

    A = M Sigma_B^+ is the least-norm classifier whose logit means W M^T are exactly a multiple of the simplex-ETF
    Gram I - 11^T/K (rows of M sum to zero, so A is parallel to E (M^T)^+; A M^T = K (I - 11^T/K)), when the means
    span K - 1 dimensions; with fewer (d < K - 1, or coincident means) no W makes W M^T an ETF and A is its
    least-squares fit. Since W M^T = W P M^T, NC2 = 0 exactly when W P is parallel to A. A is parallel to M when the
    nonzero singular values of M are equal (at rank K - 1: the means form an ETF); then NC2 = 0 and NC3 = 0 go
    together. When they are not, a classifier with NC2 = 0 has an NC3 of at least || A/||A|| - M/||M|| ||^2 > 0.
    ``nc3_whitened_means_sq`` = || W/||W|| - A/||A|| ||^2 measures W against A as NC3 measures it against M (both
    squared distances, NC2 is not), and ``nc3_means_whitened_sq`` = || A/||A|| - M/||M|| ||^2 is that floor, the
    NC3 of W = A. A weights the directions of the means by one over their spread, so it is
    sensitive to weak directions early in training.

    All four are NaN when Sigma_B = 0; ``nc3_in_mean_span_sq`` is NaN when ||W P|| <= 1e-12 ||W|| (W has no part
    in the span to measure; the fraction is then reported as it is)."""
    w = weight.to(torch.float64)
    m = centred_means.to(torch.float64)
    nan = torch.tensor(math.nan, dtype=torch.float64, device=w.device)
    if eigenvalues.numel() == 0:
        return {"classifier_mean_span_fraction": nan, "nc3_in_mean_span_sq": nan, "nc3_whitened_means_sq": nan,
                "nc3_means_whitened_sq": nan}
    w_in = (w @ eigenvectors) @ eigenvectors.T
    whitened = ((m @ eigenvectors) / eigenvalues) @ eigenvectors.T  # M Sigma_B^+
    fraction = torch.linalg.matrix_norm(w_in) / torch.linalg.matrix_norm(w)
    return {"classifier_mean_span_fraction": fraction,
            "nc3_in_mean_span_sq": torch.where(fraction > 1e-12, nc3_duality_sq(w_in, m), nan),
            "nc3_whitened_means_sq": nc3_duality_sq(w, whitened),
            "nc3_means_whitened_sq": nc3_duality_sq(whitened, m)}


def nc3_in_span_against_whitened(nc3_whitened_means_sq, classifier_mean_span_fraction):
    """|| W P/||W P|| - A/||A|| ||^2, the part of W in the span of the means against A, from two logged keys of
    :func:`nc3_decomposition` (tensors, arrays or pandas columns alike): A lies in that span, as M does, so
    cos(W, A) = fraction x cos(W P, A), i.e. 2 - (W P against A) = (2 - (W against A)) / fraction. Not logged;
    at rank K - 1 it is 0 exactly when NC2 is."""
    return 2 - (2 - nc3_whitened_means_sq) / classifier_mean_span_fraction


def norm_coefficient_of_variation(rows: Tensor) -> Tensor:
    """std/mean of the row norms (std with Bessel's correction, as ``torch.std``)."""
    norms = torch.linalg.vector_norm(rows.to(torch.float64), dim=1)
    return norms.std() / norms.mean()


def equiangularity(rows: Tensor) -> Tensor:
    """Mean over k != j of |cos(r_k, r_j) + 1/(K-1)|; 0 for the rows of a simplex ETF."""
    r = rows.to(torch.float64)
    num_classes = r.shape[0]
    unit = r / torch.linalg.vector_norm(r, dim=1, keepdim=True)
    cosines = unit @ unit.T
    off_diagonal = ~torch.eye(num_classes, dtype=torch.bool, device=r.device)
    return (cosines[off_diagonal] + 1.0 / (num_classes - 1)).abs().mean()


def nearest_class_centre_predictions(features: Tensor, class_means: Tensor) -> Tensor:
    """argmin_k ||h - mu_k||, from ||h||^2 - 2 h.mu_k + ||mu_k||^2 (||h||^2 dropped: constant in k), with h and
    mu_k first centred on the mean of the class means (distances unchanged): a large offset common to every
    feature would otherwise cancel most digits of the difference."""
    mu = class_means.to(torch.float64)
    centre = mu.mean(0)
    h = features.to(torch.float64) - centre
    mu = mu - centre
    return (mu.square().sum(1) - 2.0 * h @ mu.T).argmin(1)


@dataclass
class ClassStatistics:
    """Finalized statistics of one pass, grouped by label (all float64, on the accumulator's device)."""

    counts: Tensor  # (K,) samples per class
    class_means: Tensor  # (K, d) mu_k
    sigma_w: Tensor  # (d, d) within-class covariance, divided by N
    num_samples: int
    mean_feature_norm: Tensor  # () mean ||h_i||
    ncc_features: Tensor  # (m, d) the bounded subset kept for NC4
    ncc_labels: Tensor  # (m,)
    logit_metrics: dict[str, Tensor]  # accuracy / loss entries, empty when no logits were given

    @property
    def global_mean(self) -> Tensor:
        """mu_G: the unweighted mean of the class means."""
        return self.class_means.mean(0)

    @property
    def centred_means(self) -> Tensor:
        """M: rows mu_k - mu_G."""
        return self.class_means - self.global_mean

    @property
    def sigma_b(self) -> Tensor:
        """Sigma_B = (1/K) M^T M (d x d; formed only on request)."""
        m = self.centred_means
        return m.T @ m / m.shape[0]


def collapse_metrics(stats: ClassStatistics, weight: Tensor, bias: Tensor | None = None, *,
                     rtol: float | None = None) -> dict[str, float]:
    """All label-grouped metrics of :data:`METRIC_FORMULAS` from statistics and the classifier (W, b)."""
    device = stats.class_means.device
    num_classes, dim = stats.class_means.shape
    w = weight.detach().to(device, torch.float64)
    if w.shape != (num_classes, dim):
        raise ValueError(f"classifier weight has shape {tuple(w.shape)}, expected {(num_classes, dim)}")
    b = torch.zeros(num_classes, dtype=torch.float64, device=device) if bias is None else \
        bias.detach().to(device, torch.float64)
    m = stats.centred_means
    eigenvalues, eigenvectors = between_class_eigenpairs(m, rtol)
    nc1 = (nc1_from_eigenpairs(stats.sigma_w, eigenvalues, eigenvectors) if eigenvalues.numel()
           else torch.tensor(math.nan, dtype=torch.float64, device=device))
    nc3_sq = nc3_duality_sq(w, m)
    mean_norms = torch.linalg.vector_norm(m, dim=1)
    classifier_norms = torch.linalg.vector_norm(w, dim=1)

    ncc = nearest_class_centre_predictions(stats.ncc_features, stats.class_means)
    classifier_pred = (stats.ncc_features @ w.T + b).argmax(1)
    num_ncc = stats.ncc_labels.numel()
    nan = torch.tensor(math.nan, dtype=torch.float64, device=device)

    values = {
        "nc1_within_between": nc1,
        "nc1_within_between_over_k": nc1 / num_classes,
        "sigma_b_rank_used": torch.tensor(float(eigenvalues.numel()), dtype=torch.float64, device=device),
        "sigma_w_trace": stats.sigma_w.diagonal().sum(),
        "sigma_b_trace": m.square().sum() / num_classes,
        "nc2_wh_etf": nc2_wh_etf(w, m),
        "nc2_means_etf": nc2_means_etf(m),
        "nc2_classifier_etf": nc2_classifier_etf(w),
        "nc3_duality_sq": nc3_sq,
        "nc3_duality": nc3_sq.sqrt(),
        **nc3_decomposition(w, m, eigenvalues, eigenvectors),
        "equinorm_class_means": norm_coefficient_of_variation(m),
        "equinorm_classifier": norm_coefficient_of_variation(w),
        "equiangularity_class_means": equiangularity(m),
        "equiangularity_classifier": equiangularity(w),
        "nc4_ncc_accuracy": (ncc == stats.ncc_labels).double().mean() if num_ncc else nan,
        "nc4_ncc_classifier_agreement": (ncc == classifier_pred).double().mean() if num_ncc else nan,
        "ncc_samples_used": torch.tensor(float(num_ncc), dtype=torch.float64, device=device),
        "mean_class_mean_norm": mean_norms.mean(),
        "mean_classifier_norm": classifier_norms.mean(),
        "mean_feature_norm": stats.mean_feature_norm,
        "classifier_fro_norm": torch.linalg.matrix_norm(w),
        "num_samples": torch.tensor(float(stats.num_samples), dtype=torch.float64, device=device),
        **stats.logit_metrics,
    }
    return _to_floats(values)


def _to_floats(values: dict[str, Tensor]) -> dict[str, float]:
    # One device->host transfer for the whole dict instead of one sync per key.
    keys = list(values)
    stacked = torch.stack([values[k].reshape(()).to(torch.float64) for k in keys]).cpu().tolist()
    return dict(zip(keys, stacked))


# --------------------------------------------------------------------------------------------------
# Accumulators
# --------------------------------------------------------------------------------------------------


def _check_batch(features: Tensor, labels: Tensor, dim: int) -> None:
    if features.ndim != 2 or features.shape[1] != dim:
        raise ValueError(f"features must have shape (batch, {dim}), got {tuple(features.shape)}")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}: pass labels.long() "
                         "if they hold whole numbers")


# Rows per chunk inside update(): bounds the B x K one-hot matrix when a caller passes one huge batch.
_UPDATE_CHUNK = 8192


def _check_accumulated(acc) -> None:
    """Raise on what the accumulators defer checking until the end (one host sync instead of one per batch)."""
    if acc.num_samples == 0:
        raise ValueError("no samples were accumulated")
    # A NaN or inf feature makes the sum of feature norms non-finite (float64 cannot overflow on features
    # that came from float32/bf16), so no per-element check is needed during updates.
    invalid, finite = torch.stack([acc._invalid_labels.double(),
                                   torch.isfinite(acc._feature_norm_sum).double()]).cpu().tolist()
    if invalid:
        raise ValueError(f"{int(invalid)} labels were outside [0, {acc.num_classes})")
    if not finite:
        raise ValueError("features contained non-finite (NaN or inf) values")


def _one_hot(groups: Tensor, num_groups: int) -> Tensor:
    """B x K float64 indicator. Group sums are taken as one_hot^T @ values: a deterministic BLAS call. (CPU
    ``index_add_`` with few distinct rows was measured 10-100x slower and erratic with 2 threads, and on
    CUDA it sums with atomics in a nondeterministic order.)"""
    return F.one_hot(groups, num_groups).to(torch.float64)


class _ShiftedClassSums:
    """Per-group reference points that keep the d x d second moment accurate near collapse.

    Accumulating sum_i h_i h_i^T and subtracting sum_k n_k mu_k mu_k^T cancels catastrophically near
    collapse, where ||h|| >> within-class spread. Instead each feature is shifted by a reference point c_k of
    its group (the first sample of that group ever seen): with x_i = h_i - c_{g_i} and
    m_k = mu_k - c_k = s_k / n_k (s_k = sum of x_i in group k),
        sum_{i in k} (h_i - mu_k)(h_i - mu_k)^T = sum_{i in k} x_i x_i^T - n_k m_k m_k^T,
    and summing over k still needs only the one d x d matrix sum_i x_i x_i^T. The references are set with
    tensor ops only, so updates never synchronise with the host.
    """

    def __init__(self, num_groups: int, dim: int, device):
        self.reference = torch.zeros(num_groups, dim, dtype=torch.float64, device=device)
        self.has_reference = torch.zeros(num_groups, dtype=torch.bool, device=device)
        self.num_groups = num_groups

    def shift(self, h: Tensor, groups: Tensor) -> Tensor:
        """Set references for groups seen for the first time, return h - c_{groups}."""
        batch = h.shape[0]
        positions = torch.arange(batch, device=h.device)
        first = torch.full((self.num_groups,), batch, dtype=torch.long, device=h.device)
        first.scatter_reduce_(0, groups, positions, reduce="amin")  # first row of each group; batch if absent
        new = (~self.has_reference) & (first < batch)
        candidates = h[first.clamp(max=batch - 1)]
        self.reference = torch.where(new.unsqueeze(1), candidates, self.reference)
        self.has_reference |= new
        return h - self.reference[groups]


class FeatureAccumulator:
    """Streaming float64 statistics of features grouped by label, for the label-grouped NC metrics.

    ``update(features, labels, logits=None)`` per batch, then :meth:`statistics` or :meth:`compute`.
    Kept state: per-class counts (K), per-class sums (K x d), one d x d second moment (see
    :class:`_ShiftedClassSums` for the shift that keeps it accurate near collapse); memory does not grow
    with N. Features of any dtype (e.g. bf16 under autocast) are cast to float64 here.

    Exception, by necessity: NC4 (nearest class centre) classifies samples against the class means of the
    *whole* pass, which are known only at the end. The features of the first ``ncc_samples`` samples seen
    are therefore kept (float64, at most ``ncc_samples x d``; every sample with ``ncc_samples=None``) and
    classified at the end. NC4 is exact when N <= ncc_samples and an estimate on that subset otherwise; the
    count used is reported as ``ncc_samples_used``. Feed batches in a random order (or set ``ncc_samples=None``)
    for a fair subset: the first samples of a class-sorted dataset are a few classes only.

    If ``logits`` are given (for every batch or for none), accuracy, ``loss_ce`` and, if ``delta`` is not
    None, ``loss_ls`` (label smoothing delta, targets (1-delta) onehot + delta/K) are accumulated too.

    Errors, raised when statistics are finalized (so updates never synchronise with the host): a label
    outside [0, K), a non-finite feature, or a class with no samples (its mean, hence every NC metric, is
    undefined) raise ``ValueError``.
    """

    def __init__(self, num_classes: int, dim: int, *, device=None, ncc_samples: int | None = 10_000,
                 delta: float | None = None):
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got num_classes={num_classes}")
        if dim < 1:
            raise ValueError(f"feature dimension must be positive, got dim={dim}")
        self.num_classes, self.dim = num_classes, dim
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.ncc_samples = math.inf if ncc_samples is None else int(ncc_samples)
        self.delta = delta
        kw = dict(dtype=torch.float64, device=self.device)
        self._shifter = _ShiftedClassSums(num_classes, dim, self.device)
        self._counts = torch.zeros(num_classes, **kw)
        self._shifted_sums = torch.zeros(num_classes, dim, **kw)
        self._shifted_second_moment = torch.zeros(dim, dim, **kw)
        self._feature_norm_sum = torch.zeros((), **kw)
        self._invalid_labels = torch.zeros((), dtype=torch.int64, device=self.device)
        self._ncc_features: list[Tensor] = []
        self._ncc_labels: list[Tensor] = []
        self._num_ncc = 0
        self.num_samples = 0
        self._with_logits: bool | None = None
        self._num_correct = torch.zeros((), **kw)
        self._loss_ce_sum = torch.zeros((), **kw)
        self._loss_ls_sum = torch.zeros((), **kw)

    def update(self, features: Tensor, labels: Tensor, logits: Tensor | None = None) -> None:
        _check_batch(features, labels, self.dim)
        if self._with_logits is not None and self._with_logits != (logits is not None):
            raise ValueError("give logits for every batch or for none")
        if logits is not None and logits.shape != (features.shape[0], self.num_classes):
            raise ValueError(f"logits must have shape ({features.shape[0]}, {self.num_classes}), "
                             f"got {tuple(logits.shape)}")
        # inference_mode (not no_grad): in-place updates then work whether the state was created inside or
        # outside an inference_mode block
        with torch.inference_mode():
            h = features.detach().to(self.device, torch.float64)
            y = labels.detach().to(self.device, torch.long)
            valid = (y >= 0) & (y < self.num_classes)
            self._invalid_labels += (~valid).sum()
            y = y.clamp(0, self.num_classes - 1)  # keeps indexing in bounds; the error is raised later

            for start in range(0, h.shape[0], _UPDATE_CHUNK):
                yc = y[start:start + _UPDATE_CHUNK]
                x = self._shifter.shift(h[start:start + _UPDATE_CHUNK], yc)
                one_hot = _one_hot(yc, self.num_classes)
                self._counts += one_hot.sum(0)
                self._shifted_sums.addmm_(one_hot.T, x)
                self._shifted_second_moment.addmm_(x.T, x)
            self._feature_norm_sum += torch.linalg.vector_norm(h, dim=1).sum()

            take = min(h.shape[0], self.ncc_samples - self._num_ncc)
            if take > 0:
                self._ncc_features.append(h[:take].clone())
                self._ncc_labels.append(y[:take].clone())
                self._num_ncc += take
            self.num_samples += h.shape[0]

            self._with_logits = logits is not None
            if logits is not None:
                z = logits.detach().to(self.device, torch.float64)
                self._num_correct += (z.argmax(1) == y).sum()
                self._loss_ce_sum += F.cross_entropy(z, y, reduction="sum")
                if self.delta is not None:
                    self._loss_ls_sum += F.cross_entropy(z, y, reduction="sum", label_smoothing=self.delta)

    def statistics(self) -> ClassStatistics:
        """Finalize: class means and Sigma_W (divided by N); raises ValueError on degenerate input."""
        _check_accumulated(self)
        empty = (self._counts == 0).nonzero().flatten().cpu().tolist()
        if empty:
            raise ValueError(f"class(es) {empty} have no samples: their class means, and so the NC metrics, "
                             "are undefined")
        n = self.num_samples
        shifted_means = self._shifted_sums / self._counts.unsqueeze(1)
        # sum_k n_k m_k m_k^T = sum_k s_k m_k^T
        scatter = self._shifted_second_moment - self._shifted_sums.T @ shifted_means
        sigma_w = (scatter + scatter.T) / (2 * n)
        logit_metrics = {}
        if self._with_logits:
            accuracy = self._num_correct / n
            logit_metrics = {"accuracy": accuracy, "error": 1.0 - accuracy, "loss_ce": self._loss_ce_sum / n}
            if self.delta is not None:
                logit_metrics["loss_ls"] = self._loss_ls_sum / n
        return ClassStatistics(
            counts=self._counts.clone(),
            class_means=self._shifter.reference + shifted_means,
            sigma_w=sigma_w,
            num_samples=n,
            mean_feature_norm=self._feature_norm_sum / n,
            ncc_features=torch.cat(self._ncc_features) if self._ncc_features else
            torch.zeros(0, self.dim, dtype=torch.float64, device=self.device),
            ncc_labels=torch.cat(self._ncc_labels) if self._ncc_labels else
            torch.zeros(0, dtype=torch.long, device=self.device),
            logit_metrics=logit_metrics,
        )

    def compute(self, weight: Tensor, bias: Tensor | None = None) -> dict[str, float]:
        """Finalize and return the metrics dict (keys of :data:`METRIC_FORMULAS`)."""
        return collapse_metrics(self.statistics(), weight, bias)


def collapse_metrics_from_features(H: Tensor, y: Tensor, W: Tensor, b: Tensor | None,
                                   num_classes: int | None = None, *,
                                   delta: float | None = None) -> dict[str, float]:
    """Train-set metrics of features ``H`` (N x d) with labels ``y`` and classifier (W, b), in one call.

    Runs :class:`FeatureAccumulator` once over all of H (NC4 is exact: every sample is kept for it) and
    feeds it the logits H W^T + b, so ``accuracy``, ``error``, ``loss_ce`` (and ``loss_ls`` if ``delta``)
    are included. ``num_classes`` defaults to the classifier's number of rows (a class absent from ``y`` then
    raises as a class with no samples).
    """
    if num_classes is None:
        num_classes = W.shape[0]
    if W.shape != (num_classes, H.shape[1]):
        raise ValueError(f"classifier weight has shape {tuple(W.shape)}, expected {(num_classes, H.shape[1])}")
    acc = FeatureAccumulator(num_classes, H.shape[1], device=H.device, ncc_samples=H.shape[0], delta=delta)
    h = H.detach().to(torch.float64)
    logits = h @ W.detach().to(h.device, torch.float64).T
    if b is not None:
        logits = logits + b.detach().to(h.device, torch.float64)
    acc.update(h, y, logits)
    return acc.compute(W, b)


class PredictedClassAccumulator:
    """Streaming test-set statistics grouped by *predicted* class, split into correct / incorrect samples.

    As in the paper's test-set analysis (NC1 of correct / incorrect predictions): with p_i = argmax logits_i and nu_p the mean of all
    samples predicted as p, for each group g in {all, correct, incorrect}
        Sigma_W^g = (1/N_g) sum_{i in g} (h_i - nu_{p_i})(h_i - nu_{p_i})^T,
    and NC1^g = tr(Sigma_W^g Sigma_B^+) with Sigma_B = (1/K') sum_p (nu_p - nu_G)(nu_p - nu_G)^T over the K'
    classes predicted at least once (nu_G their unweighted mean).

    Streaming: with shifted features x_i = h_i - c_{p_i} (see :class:`_ShiftedClassSums`) and
    m_p = nu_p - c_p, per group we keep X^g = sum_{i in g} x_i x_i^T, per-class sums s^g_p and counts n^g_p:
        sum_{i in g} (x_i - m_{p_i})(x_i - m_{p_i})^T = X^g - S^gT M - M^T S^g + M^T diag(n^g) M
    (rows of S^g are s^g_p, rows of M are m_p = (s^correct_p + s^incorrect_p) / n_p). Two d x d matrices.

    Documented non-crashing degenerate cases: an empty group (e.g. no incorrect samples) gives NaN for every
    quantity of that group, since a mean over no samples is undefined; classes never predicted are left out
    of Sigma_B (``num_predicted_classes`` reports K'); K' < 2 gives NaN NC1 (Sigma_B = 0).
    Non-finite features or labels outside [0, K) raise ValueError at finalization.
    """

    GROUPS = ("correct", "incorrect")

    def __init__(self, num_classes: int, dim: int, *, device=None):
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got num_classes={num_classes}")
        self.num_classes, self.dim = num_classes, dim
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        kw = dict(dtype=torch.float64, device=self.device)
        self._shifter = _ShiftedClassSums(num_classes, dim, self.device)
        self._counts = {g: torch.zeros(num_classes, **kw) for g in self.GROUPS}
        self._sums = {g: torch.zeros(num_classes, dim, **kw) for g in self.GROUPS}
        self._second_moments = {g: torch.zeros(dim, dim, **kw) for g in self.GROUPS}
        self._loss_sums = {g: torch.zeros((), **kw) for g in self.GROUPS}
        self._entropy_sums = {g: torch.zeros((), **kw) for g in self.GROUPS}
        self._feature_norm_sum = torch.zeros((), **kw)  # only to detect non-finite features
        self._invalid_labels = torch.zeros((), dtype=torch.int64, device=self.device)
        self.num_samples = 0

    def update(self, features: Tensor, labels: Tensor, logits: Tensor) -> None:
        _check_batch(features, labels, self.dim)
        if logits.shape != (features.shape[0], self.num_classes):
            raise ValueError(f"logits must have shape ({features.shape[0]}, {self.num_classes}), "
                             f"got {tuple(logits.shape)}")
        with torch.inference_mode():
            h = features.detach().to(self.device, torch.float64)
            y = labels.detach().to(self.device, torch.long)
            valid = (y >= 0) & (y < self.num_classes)
            self._invalid_labels += (~valid).sum()
            y = y.clamp(0, self.num_classes - 1)
            self._feature_norm_sum += torch.linalg.vector_norm(h, dim=1).sum()
            z = logits.detach().to(self.device, torch.float64)
            pred = z.argmax(1)
            log_probs = F.log_softmax(z, dim=1)
            loss = -log_probs.gather(1, y.unsqueeze(1)).squeeze(1)
            entropy = -(log_probs.exp() * log_probs).sum(1)
            is_correct = pred == y
            for start in range(0, h.shape[0], _UPDATE_CHUNK):
                chunk = slice(start, start + _UPDATE_CHUNK)
                x = self._shifter.shift(h[chunk], pred[chunk])
                one_hot = _one_hot(pred[chunk], self.num_classes)
                for group, mask in (("correct", is_correct[chunk]), ("incorrect", ~is_correct[chunk])):
                    weight = mask.to(torch.float64).unsqueeze(1)  # masking by product: no data-dependent shape
                    masked_one_hot = one_hot * weight
                    self._counts[group] += masked_one_hot.sum(0)
                    self._sums[group].addmm_(masked_one_hot.T, x)
                    self._second_moments[group].addmm_((x * weight).T, x)
            for group, mask in (("correct", is_correct), ("incorrect", ~is_correct)):
                weight = mask.to(torch.float64)
                self._loss_sums[group] += (loss * weight).sum()
                self._entropy_sums[group] += (entropy * weight).sum()
            self.num_samples += h.shape[0]

    def compute(self, *, rtol: float | None = None) -> dict[str, float]:
        """Keys: nc1_by_prediction_{all,correct,incorrect}, loss_ce_{...}, entropy_{...}, accuracy, error,
        num_samples, num_correct, num_incorrect, num_predicted_classes."""
        _check_accumulated(self)
        device = self.device
        nan = torch.tensor(math.nan, dtype=torch.float64, device=device)
        groups = {g: (self._counts[g], self._sums[g], self._second_moments[g], self._loss_sums[g],
                      self._entropy_sums[g]) for g in self.GROUPS}
        groups["all"] = tuple(a + b for a, b in zip(groups["correct"], groups["incorrect"]))

        counts_all, sums_all = groups["all"][0], groups["all"][1]
        predicted = counts_all > 0
        shifted_means = sums_all / counts_all.clamp_min(1.0).unsqueeze(1)  # zero rows for unpredicted classes
        pred_means = (self._shifter.reference + shifted_means)[predicted]
        num_predicted = pred_means.shape[0]
        centred = pred_means - pred_means.mean(0)
        eigenvalues, eigenvectors = (between_class_eigenpairs(centred, rtol) if num_predicted >= 2
                                     else (centred.new_zeros(0), centred.new_zeros(self.dim, 0)))

        values = {}
        for g in ("all", "correct", "incorrect"):
            counts, sums, second_moment, loss_sum, entropy_sum = groups[g]
            n_g = counts.sum()
            cross = sums.T @ shifted_means
            scatter = second_moment - cross - cross.T + shifted_means.T @ (counts.unsqueeze(1) * shifted_means)
            sigma_w = (scatter + scatter.T) / (2 * n_g)
            if eigenvalues.numel() == 0 or n_g == 0:
                nc1 = nan
            else:
                nc1 = nc1_from_eigenpairs(sigma_w, eigenvalues, eigenvectors)
            values[f"nc1_by_prediction_{g}"] = nc1
            values[f"loss_ce_{g}"] = loss_sum / n_g if n_g > 0 else nan
            values[f"entropy_{g}"] = entropy_sum / n_g if n_g > 0 else nan
        num_correct = groups["correct"][0].sum()
        accuracy = num_correct / self.num_samples
        values.update({
            "accuracy": accuracy,
            "error": 1.0 - accuracy,
            "num_samples": torch.tensor(float(self.num_samples), dtype=torch.float64, device=device),
            "num_correct": num_correct,
            "num_incorrect": groups["incorrect"][0].sum(),
            "num_predicted_classes": torch.tensor(float(num_predicted), dtype=torch.float64, device=device),
        })
        return _to_floats(values)
