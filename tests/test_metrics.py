import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lsnc.metrics import (
    METRIC_FORMULAS,
    PREDICTED_CLASS_FORMULAS,
    PAPER_NAMES,
    FeatureAccumulator,
    PredictedClassAccumulator,
    collapse_metrics_from_features,
    nc3_in_span_against_whitened,
)


# ---------------------------------------------------------------- naive transcriptions of DESIGN.md section 3


def naive_metrics(H, y, W, b, K):
    """Direct transcription with the full N x d matrix in numpy float64 and a generic pseudo-inverse."""
    H, W, b = (np.asarray(a, dtype=np.float64) for a in (H, W, b))
    y = np.asarray(y)
    N = len(H)
    mu = np.stack([H[y == k].mean(0) for k in range(K)])
    M = mu - mu.mean(0)
    D = H - mu[y]
    sigma_w = D.T @ D / N
    sigma_b = M.T @ M / K
    nc1 = np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True))
    E = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)

    def etf(G):
        return np.linalg.norm(G / np.linalg.norm(G) - E)

    def cosine_dev(R):
        U = R / np.linalg.norm(R, axis=1, keepdims=True)
        C = U @ U.T
        return np.mean([abs(C[k, j] + 1 / (K - 1)) for k in range(K) for j in range(K) if k != j])

    mnorm = np.linalg.norm(M, axis=1)
    wnorm = np.linalg.norm(W, axis=1)
    dist = np.linalg.norm(H[:, None, :] - mu[None, :, :], axis=2)
    ncc = dist.argmin(1)
    def nc3(A, B):
        return np.linalg.norm(A / np.linalg.norm(A) - B / np.linalg.norm(B)) ** 2

    nc3_sq = nc3(W, M)
    P = np.linalg.pinv(M, rcond=1e-10) @ M  # projector onto the row space of M
    sigma_b_pinv = np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)
    return {
        "nc1_within_between": nc1,
        "nc1_within_between_over_k": nc1 / K,
        "sigma_w_trace": np.trace(sigma_w),
        "sigma_b_trace": np.trace(sigma_b),
        "nc2_wh_etf": etf(W @ M.T),
        "nc2_means_etf": etf(M @ M.T),
        "nc2_classifier_etf": etf(W @ W.T),
        "nc3_duality_sq": nc3_sq,
        "nc3_duality": np.sqrt(nc3_sq),
        "classifier_mean_span_fraction": np.linalg.norm(W @ P) / np.linalg.norm(W),
        "nc3_in_mean_span_sq": nc3(W @ P, M),
        "nc3_whitened_means_sq": nc3(W, M @ sigma_b_pinv),
        "nc3_means_whitened_sq": nc3(M @ sigma_b_pinv, M),
        "equinorm_class_means": mnorm.std(ddof=1) / mnorm.mean(),
        "equinorm_classifier": wnorm.std(ddof=1) / wnorm.mean(),
        "equiangularity_class_means": cosine_dev(M),
        "equiangularity_classifier": cosine_dev(W),
        "nc4_ncc_accuracy": np.mean(ncc == y),
        "nc4_ncc_classifier_agreement": np.mean(ncc == (H @ W.T + b).argmax(1)),
        "mean_class_mean_norm": mnorm.mean(),
        "mean_classifier_norm": wnorm.mean(),
        "mean_feature_norm": np.linalg.norm(H, axis=1).mean(),
        "classifier_fro_norm": np.linalg.norm(W),
        "num_samples": N,
    }


def naive_prediction_split(H, y, logits, K):
    H = np.asarray(H, dtype=np.float64)
    y, z = np.asarray(y), np.asarray(logits, dtype=np.float64)
    pred = z.argmax(1)
    predicted = [p for p in range(K) if np.any(pred == p)]
    nu = {p: H[pred == p].mean(0) for p in predicted}
    means = np.stack([nu[p] for p in predicted])
    M = means - means.mean(0)
    sigma_b_pinv = np.linalg.pinv(M.T @ M / len(predicted), rcond=1e-10, hermitian=True)
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    loss = -logp[np.arange(len(y)), y]
    entropy = -(np.exp(logp) * logp).sum(1)
    out = {}
    for name, mask in (("all", np.ones(len(y), bool)), ("correct", pred == y), ("incorrect", pred != y)):
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            out.update({f"nc1_by_prediction_{name}": math.nan, f"loss_ce_{name}": math.nan,
                        f"entropy_{name}": math.nan})
            continue
        D = np.stack([H[i] - nu[pred[i]] for i in idx])
        sigma_w = D.T @ D / len(idx)
        out[f"nc1_by_prediction_{name}"] = np.trace(sigma_w @ sigma_b_pinv)
        out[f"loss_ce_{name}"] = loss[idx].mean()
        out[f"entropy_{name}"] = entropy[idx].mean()
    out["accuracy"] = np.mean(pred == y)
    out["num_correct"] = np.sum(pred == y)
    out["num_incorrect"] = np.sum(pred != y)
    out["num_predicted_classes"] = len(predicted)
    return out


# ---------------------------------------------------------------- data made on the spot


def random_problem(K, d, N, seed=0, balanced=False):
    g = torch.Generator().manual_seed(seed)
    if balanced:
        y = torch.arange(N) % K
    else:
        y = torch.cat([torch.arange(K), torch.randint(0, K, (N - K,), generator=g)])  # every class present
    y = y[torch.randperm(N, generator=g)]
    centres = 2.0 * torch.randn(K, d, generator=g, dtype=torch.float64)
    H = centres[y] + torch.randn(N, d, generator=g, dtype=torch.float64) + 3.0
    W = torch.randn(K, d, generator=g, dtype=torch.float64)
    b = torch.randn(K, generator=g, dtype=torch.float64)
    return H, y, W, b


def collapsed_problem(K, d, n_per_class=5, scale_w=0.7, seed=0):
    """Simplex-ETF class means around a nonzero global mean, no within-class spread, W = c * M."""
    assert d >= K
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(d, K, generator=g, dtype=torch.float64))  # orthonormal columns
    M = math.sqrt(K / (K - 1)) * (torch.eye(K, dtype=torch.float64) - 1.0 / K) @ U.T  # rows: unit-norm ETF
    global_mean = 5.0 * torch.randn(d, generator=g, dtype=torch.float64)
    y = torch.arange(K).repeat(n_per_class)
    H = (M + global_mean)[y]
    W = scale_w * M
    return H, y, W, -W @ global_mean, M  # the bias cancels the global mean: logits W (h - mu_G)


def assert_close_dict(actual, expected, rtol=1e-10, atol=1e-12):
    for key, value in expected.items():
        assert key in actual, key
        assert actual[key] == pytest.approx(float(value), rel=rtol, abs=atol), key


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("K,d,N", [(5, 8, 300), (2, 3, 50), (10, 32, 400), (6, 3, 120)])
def test_matches_naive_transcription(K, d, N):
    # (6, 3): d < K-1, Sigma_B rank deficient -> pseudo-inverse over its d nonzero eigenvalues
    H, y, W, b = random_problem(K, d, N, seed=K * d)
    got = collapse_metrics_from_features(H, y, W, b, num_classes=K)
    assert_close_dict(got, naive_metrics(H, y, W, b, K), rtol=1e-9)
    assert got["sigma_b_rank_used"] == min(K - 1, d)
    assert got["ncc_samples_used"] == N


def test_paper_names_and_formulas_cover_output():
    H, y, W, b = random_problem(4, 6, 80)
    got = collapse_metrics_from_features(H, y, W, b)
    assert set(PAPER_NAMES) == {"NC1", "NC2", "NC3"}
    assert set(PAPER_NAMES.values()) <= set(got)
    assert set(got) <= set(METRIC_FORMULAS)
    assert all(k == k.lower() and " " not in k for k in got)


@pytest.mark.parametrize("K,d", [(2, 4), (4, 6), (10, 16)])
def test_exact_collapse_gives_zeros(K, d):
    H, y, W, b, M = collapsed_problem(K, d)
    got = collapse_metrics_from_features(H, y, W, b)
    for key in ("nc1_within_between", "nc2_wh_etf", "nc2_means_etf", "nc2_classifier_etf", "nc3_duality_sq",
                "nc3_duality", "equinorm_class_means", "equinorm_classifier", "equiangularity_class_means",
                "equiangularity_classifier", "sigma_w_trace"):
        assert abs(got[key]) < 1e-10, (key, got[key])
    assert got["nc4_ncc_accuracy"] == 1.0
    assert got["nc4_ncc_classifier_agreement"] == 1.0
    assert got["mean_class_mean_norm"] == pytest.approx(1.0, rel=1e-12)
    assert got["mean_classifier_norm"] == pytest.approx(0.7, rel=1e-12)
    # a perturbation away from collapse is detected by each family of metrics
    H2 = H + 0.05 * torch.randn(H.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    W2 = W + 0.05 * torch.randn(W.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    off = collapse_metrics_from_features(H2, y, W2, b)
    for key in ("nc1_within_between", "nc2_wh_etf", "nc3_duality_sq", "equiangularity_classifier"):
        assert off[key] > 1e-6, key


def test_nc3_decomposition():
    # 1 - NC3/2 = (fraction of ||W|| in the span of the means) x (1 - NC3 of that part / 2), on any W
    H, y, W, b = random_problem(5, 9, 200, seed=11)
    got = collapse_metrics_from_features(H, y, W, b)
    assert 0 < got["classifier_mean_span_fraction"] < 1
    assert 1 - got["nc3_duality_sq"] / 2 == pytest.approx(
        got["classifier_mean_span_fraction"] * (1 - got["nc3_in_mean_span_sq"] / 2), rel=1e-12)
    # W = M plus a direction outside the span: aligned inside it, and the fraction is ||M|| / ||W||
    mu = torch.stack([H[y == k].mean(0) for k in range(5)])
    M = mu - mu.mean(0)
    U = torch.linalg.svd(M, full_matrices=True)[2]
    off = U[-1]  # orthogonal to every row of M (d = 9 > K - 1 = 4)
    W_off = M + 0.5 * torch.outer(torch.ones(5, dtype=torch.float64), off)
    got = collapse_metrics_from_features(H, y, W_off, b)
    assert abs(got["nc3_in_mean_span_sq"]) < 1e-12
    assert got["classifier_mean_span_fraction"] == pytest.approx(
        float(torch.linalg.matrix_norm(M) / torch.linalg.matrix_norm(W_off)), rel=1e-12)
    assert got["nc3_duality_sq"] > 1e-3
    # no part of W in the span: the fraction is 0, the NC3 of that part undefined, NC3 itself 2 (orthogonal)
    got = collapse_metrics_from_features(H, y, torch.outer(torch.arange(1.0, 6.0, dtype=torch.float64), off), b)
    assert got["classifier_mean_span_fraction"] < 1e-12 and math.isnan(got["nc3_in_mean_span_sq"])
    assert got["nc3_duality_sq"] == pytest.approx(2.0)
    # W = M Sigma_B^+: the logit means W M^T are an exact simplex ETF (NC2 = 0), W lies in the span, and NC3 is
    # what is left: the distance of the means from an ETF
    A = M @ torch.linalg.pinv(M.T @ M / 5, hermitian=True)
    got = collapse_metrics_from_features(H, y, A, b)
    assert abs(got["nc3_whitened_means_sq"]) < 1e-12 and abs(got["nc2_wh_etf"]) < 1e-7
    assert got["classifier_mean_span_fraction"] == pytest.approx(1.0, rel=1e-12)
    assert got["nc3_duality_sq"] > 0.01 and got["nc2_means_etf"] > 0.01
    assert got["nc3_means_whitened_sq"] == pytest.approx(got["nc3_duality_sq"], rel=1e-12)
    # W P against A, derived from two logged keys, is the distance computed from W P itself
    got = collapse_metrics_from_features(H, y, W, b)
    basis = U[:4]   # the span of the means (rank K - 1 = 4)
    in_span = (W @ basis.T) @ basis
    direct = float(((in_span / torch.linalg.matrix_norm(in_span) - A / torch.linalg.matrix_norm(A)) ** 2).sum())
    derived = nc3_in_span_against_whitened(got["nc3_whitened_means_sq"], got["classifier_mean_span_fraction"])
    assert float(derived) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("K,d", [(3, 5), (10, 16)])
def test_nc3_against_whitened_means_is_nc3_when_the_means_are_an_etf(K, d):
    H, y, W, b, M = collapsed_problem(K, d)
    g = torch.Generator().manual_seed(K)
    for w in (W, torch.randn(W.shape, generator=g, dtype=torch.float64)):
        got = collapse_metrics_from_features(H, y, w, b)
        assert got["nc3_whitened_means_sq"] == pytest.approx(got["nc3_duality_sq"], rel=1e-9, abs=1e-12)
        assert abs(got["nc3_means_whitened_sq"]) < 1e-10
    got = collapse_metrics_from_features(H, y, W, b)
    assert got["classifier_mean_span_fraction"] == pytest.approx(1.0, rel=1e-12)
    assert abs(got["nc3_in_mean_span_sq"]) < 1e-10 and abs(got["nc3_whitened_means_sq"]) < 1e-10


def test_invariances():
    H, y, W, b = random_problem(5, 10, 200, seed=3)
    base = collapse_metrics_from_features(H, y, W, b)
    scaled_h = collapse_metrics_from_features(7.3 * H, y, W, b)
    scaled_w = collapse_metrics_from_features(H, y, 0.02 * W, b)
    assert scaled_h["nc1_within_between"] == pytest.approx(base["nc1_within_between"], rel=1e-10)
    for key in ("nc2_wh_etf", "nc3_duality_sq", "nc2_means_etf", "nc2_classifier_etf"):
        assert scaled_h[key] == pytest.approx(base[key], rel=1e-10), key
        assert scaled_w[key] == pytest.approx(base[key], rel=1e-10), key
    # a global translation of the features changes none of the centred quantities
    shifted = collapse_metrics_from_features(H + 100.0, y, W, b)
    for key in ("nc1_within_between", "nc2_wh_etf", "nc3_duality_sq", "equinorm_class_means"):
        assert shifted[key] == pytest.approx(base[key], rel=1e-8), key


def test_total_covariance_is_within_plus_between_for_balanced_classes():
    K, d, N = 4, 7, 400
    H, y, _, _ = random_problem(K, d, N, seed=5, balanced=True)
    acc = FeatureAccumulator(K, d)
    acc.update(H, y)
    stats = acc.statistics()
    centred = H - H.mean(0)
    sigma_t = centred.T @ centred / N
    torch.testing.assert_close(stats.sigma_w + stats.sigma_b, sigma_t, rtol=1e-10, atol=1e-12)


def test_streaming_is_independent_of_batch_split():
    K, d, N = 6, 9, 257
    H, y, W, b = random_problem(K, d, N, seed=7)
    logits = H @ W.T + b
    results = []
    for sizes in ([N], [1] * 20 + [N - 20], [100, 100, 57], [7] * 36 + [5]):
        acc = FeatureAccumulator(K, d, ncc_samples=N, delta=0.1)
        start = 0
        for size in sizes:
            acc.update(H[start:start + size], y[start:start + size], logits[start:start + size])
            start += size
        results.append(acc.compute(W, b))
    for other in results[1:]:
        assert set(other) == set(results[0])
        for key, value in results[0].items():
            assert other[key] == pytest.approx(value, rel=1e-10, abs=1e-10), key


def test_large_batches_are_chunked_without_changing_results(monkeypatch):
    import lsnc.metrics as metrics

    K, d, N = 4, 5, 100
    H, y, W, b = random_problem(K, d, N, seed=41)
    whole = collapse_metrics_from_features(H, y, W, b)
    monkeypatch.setattr(metrics, "_UPDATE_CHUNK", 7)
    chunked = collapse_metrics_from_features(H, y, W, b)
    for key, value in whole.items():
        assert chunked[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key


def test_no_ncc_subset_gives_nan_nc4():
    H, y, W, b = random_problem(3, 4, 40)
    acc = FeatureAccumulator(3, 4, ncc_samples=0)
    acc.update(H, y)
    got = acc.compute(W, b)
    assert got["ncc_samples_used"] == 0 and math.isnan(got["nc4_ncc_accuracy"])
    assert math.isfinite(got["nc1_within_between"])


def test_logit_metrics():
    K, d, N = 5, 6, 150
    H, y, W, b = random_problem(K, d, N, seed=11)
    logits = H @ W.T + b
    acc = FeatureAccumulator(K, d, delta=0.2)
    acc.update(H.float(), y, logits.float())
    got = acc.compute(W, b)
    z = logits.float().double()
    assert got["accuracy"] == pytest.approx((z.argmax(1) == y).double().mean().item(), abs=1e-15)
    assert got["error"] == pytest.approx(1 - got["accuracy"], abs=1e-15)
    assert got["loss_ce"] == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-12)
    # smoothed targets (1 - delta) onehot + delta / K, written out
    targets = 0.8 * F.one_hot(y, K).double() + 0.2 / K
    assert got["loss_ls"] == pytest.approx(-(targets * F.log_softmax(z, 1)).sum(1).mean().item(), rel=1e-12)
    assert "loss_ls" not in collapse_metrics_from_features(H, y, W, b)


def test_ncc_subset_is_first_samples_against_full_means():
    K, d, N, m = 4, 5, 300, 70
    H, y, W, b = random_problem(K, d, N, seed=13)
    H = H + 1.5 * torch.randn(H.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    acc = FeatureAccumulator(K, d, ncc_samples=m)
    for start in range(0, N, 32):
        acc.update(H[start:start + 32], y[start:start + 32])
    got = acc.compute(W, b)
    mu = torch.stack([H[y == k].mean(0) for k in range(K)])
    ncc = torch.cdist(H[:m], mu).argmin(1)
    assert got["ncc_samples_used"] == m
    assert got["nc4_ncc_accuracy"] == pytest.approx((ncc == y[:m]).double().mean().item(), abs=1e-15)
    agree = (ncc == (H[:m] @ W.T + b).argmax(1)).double().mean().item()
    assert got["nc4_ncc_classifier_agreement"] == pytest.approx(agree, abs=1e-15)
    assert 0 < got["nc4_ncc_accuracy"] < 1  # the subset result is not trivially 0 or 1 here


def test_near_collapse_precision():
    # huge offset, tiny within-class spread: sum h h^T - sum n mu mu^T would lose every digit here
    K, d, N = 4, 6, 200
    g = torch.Generator().manual_seed(17)
    y = torch.arange(N) % K
    means = 1e4 + torch.randn(K, d, generator=g, dtype=torch.float64)
    H = means[y] + 1e-5 * torch.randn(N, d, generator=g, dtype=torch.float64)
    W = torch.randn(K, d, generator=g, dtype=torch.float64)
    got = collapse_metrics_from_features(H, y, W, None)
    expected = naive_metrics(H, y, W, torch.zeros(K), K)["nc1_within_between"]
    assert got["nc1_within_between"] == pytest.approx(expected, rel=1e-6)


def test_low_precision_features_are_accepted():
    K, d, N = 3, 4, 60
    H, y, W, b = random_problem(K, d, N, seed=19)
    acc = FeatureAccumulator(K, d)
    acc.update(H.to(torch.bfloat16), y)
    got = acc.compute(W, b)
    expected = collapse_metrics_from_features(H.to(torch.bfloat16).double(), y, W, b)
    assert got["nc1_within_between"] == pytest.approx(expected["nc1_within_between"], rel=1e-10)


# ---------------------------------------------------------------- degenerate input


def test_empty_class_raises():
    H, y, W, b = random_problem(4, 5, 100)
    y = torch.where(y == 2, torch.tensor(1), y)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no samples"):
        collapse_metrics_from_features(H, y, W, b, num_classes=4)


def test_nonfinite_features_raise():
    H, y, W, b = random_problem(3, 4, 30)
    H[5, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        collapse_metrics_from_features(H, y, W, b)


def test_invalid_labels_and_shapes_raise():
    H, y, W, b = random_problem(3, 4, 30)
    acc = FeatureAccumulator(3, 4)
    acc.update(H, torch.where(y == 0, torch.tensor(3), y))
    with pytest.raises(ValueError, match="outside"):
        acc.statistics()
    with pytest.raises(ValueError, match="shape"):
        FeatureAccumulator(3, 5).update(H, y)
    with pytest.raises(ValueError, match="classes"):
        FeatureAccumulator(1, 4)
    acc = FeatureAccumulator(3, 4)
    acc.update(H, y, H @ W.T)
    with pytest.raises(ValueError, match="every batch or for none"):
        acc.update(H, y)
    with pytest.raises(ValueError, match="no samples"):
        FeatureAccumulator(3, 4).statistics()
    with pytest.raises(ValueError, match="classifier weight"):
        collapse_metrics_from_features(H, y, W[:, :3], b)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no samples"):  # K from W, not from the labels
        collapse_metrics_from_features(H[y != 2], y[y != 2], W, b)
    with pytest.raises(ValueError, match="integer class indices"):
        FeatureAccumulator(3, 4).update(H, y.double())


def test_a_rejected_batch_leaves_the_statistics_as_they_were():
    """A batch update() refuses is not counted: a caller that catches the error and retries counts it once."""
    H, y, W, b = random_problem(3, 4, 30)
    once = FeatureAccumulator(3, 4)
    once.update(H, y, H @ W.T)
    retried = FeatureAccumulator(3, 4)
    for wrong in (H @ W.T[:, :2], None):  # logits of the wrong shape; then no logits after a batch with them
        with pytest.raises(ValueError):
            retried.update(H, y, wrong)
        if wrong is not None:
            assert retried.num_samples == 0
            retried.update(H, y, H @ W.T)
    assert retried.num_samples == once.num_samples
    assert retried.compute(W, b) == once.compute(W, b)


def test_coincident_class_means_give_nan_nc1():
    # Sigma_B = 0: NC1 is undefined (infinite), reported as NaN rather than a finite number.
    # Every class holds the same feature vectors in the same order, so the class means are bitwise equal.
    K, d = 3, 4
    block = torch.randn(10, d, generator=torch.Generator().manual_seed(23), dtype=torch.float64)
    H = block.repeat(K, 1)
    y = torch.arange(K).repeat_interleave(10)
    got = collapse_metrics_from_features(H, y, torch.randn(K, d, dtype=torch.float64), None)
    assert got["sigma_b_rank_used"] == 0
    for key in ("nc1_within_between", "classifier_mean_span_fraction", "nc3_in_mean_span_sq",
                "nc3_whitened_means_sq", "nc3_means_whitened_sq"):
        assert math.isnan(got[key]), key


# ---------------------------------------------------------------- test-set split by predicted class


def _split_problem(K=5, d=7, N=300, seed=29):
    H, y, W, b = random_problem(K, d, N, seed=seed)
    logits = H @ W.T + b
    return H, y, logits


def test_prediction_split_matches_naive():
    K, d = 5, 7
    H, y, logits = _split_problem(K, d)
    acc = PredictedClassAccumulator(K, d)
    for start in range(0, len(y), 64):
        acc.update(H[start:start + 64], y[start:start + 64], logits[start:start + 64])
    got = acc.compute()
    expected = naive_prediction_split(H, y, logits, K)
    assert 0 < expected["num_correct"] < len(y)
    assert_close_dict(got, expected, rtol=1e-9)
    assert got["num_samples"] == len(y)
    assert set(got) == set(PREDICTED_CLASS_FORMULAS)


def test_prediction_split_with_unpredicted_class_and_no_errors():
    K, d, N = 4, 6, 80
    g = torch.Generator().manual_seed(31)
    y = torch.arange(N) % 3  # class 3 never occurs and is never predicted
    H = 3.0 * F.one_hot(y, d).double() + 0.3 * torch.randn(N, d, generator=g, dtype=torch.float64)
    logits = 10.0 * F.one_hot(y, K).double() + 0.1 * torch.randn(N, K, generator=g, dtype=torch.float64)
    acc = PredictedClassAccumulator(K, d)
    acc.update(H, y, logits)
    got = acc.compute()
    expected = naive_prediction_split(H, y, logits, K)
    assert got["num_predicted_classes"] == 3
    assert got["num_incorrect"] == 0
    for key in ("nc1_by_prediction_incorrect", "loss_ce_incorrect", "entropy_incorrect"):
        assert math.isnan(got[key]), key
    assert_close_dict(got, {k: v for k, v in expected.items() if not
                            (isinstance(v, float) and math.isnan(v))}, rtol=1e-9)
    assert got["nc1_by_prediction_all"] == pytest.approx(got["nc1_by_prediction_correct"], rel=1e-12)


def test_prediction_split_is_independent_of_batch_split():
    K, d = 5, 7
    H, y, logits = _split_problem(K, d, N=200, seed=37)
    results = []
    for size in (200, 1, 33):
        acc = PredictedClassAccumulator(K, d)
        for start in range(0, 200, size):
            acc.update(H[start:start + size], y[start:start + size], logits[start:start + size])
        results.append(acc.compute())
    for other in results[1:]:
        for key, value in results[0].items():
            assert other[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key


def test_prediction_split_rejects_nonfinite_features():
    H, y, logits = _split_problem()
    H[0, 0] = float("inf")
    acc = PredictedClassAccumulator(5, 7)
    acc.update(H, y, logits)
    with pytest.raises(ValueError, match="non-finite"):
        acc.compute()


def test_nc4_survives_a_large_offset_common_to_every_feature():
    """||h||^2 - 2 h.mu + ||mu||^2 on uncentred features cancels most digits when all features share a large offset
    (1e5 here, class scale 1e-3: half the predictions were wrong before the centring)."""
    from lsnc.metrics import nearest_class_centre_predictions
    g = np.random.default_rng(0)
    K, d, n = 4, 8, 50
    mu = g.normal(size=(K, d)) * 1e-3 + 1e5
    y = np.repeat(np.arange(K), n)
    H = mu[y] + 1e-3 * g.normal(size=(K * n, d))
    direct = np.linalg.norm(H[:, None, :] - mu[None], axis=2).argmin(1)
    got = nearest_class_centre_predictions(torch.tensor(H), torch.tensor(mu)).numpy()
    assert (got == direct).all()
    means = np.stack([H[y == k].mean(0) for k in range(K)])  # what the metrics use: the features' class means
    expected = np.mean(np.linalg.norm(H[:, None, :] - means[None], axis=2).argmin(1) == y)
    out = collapse_metrics_from_features(torch.tensor(H), torch.tensor(y), torch.tensor(mu - mu.mean(0)), None)
    assert out["nc4_ncc_accuracy"] == pytest.approx(float(expected)) and expected > 0.8
