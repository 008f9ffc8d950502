"""Tests of lsnc.ufm: the closed form against numerics, the Hessian's symmetry, GD bookkeeping."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from lsnc import ufm
from lsnc.metrics import collapse_metrics_from_features

# (K, n, d, lambda_w, lambda_h, delta, lambda_b): includes CE (delta = 0), unequal lambdas, d > K - 1,
# d = K - 1, K = 2 and a bias penalty
CASES = [
    (4, 3, 5, 5e-3, 5e-3, 0.0, 0.0),
    (4, 3, 5, 5e-3, 5e-3, 0.2, 0.0),
    (3, 4, 2, 1e-2, 2e-3, 0.0, 1e-2),
    (3, 4, 4, 1e-2, 2e-3, 0.5, 0.0),
    (5, 2, 6, 2e-3, 1e-2, 0.1, 0.0),
    (2, 5, 3, 1e-2, 1e-2, 0.3, 0.0),
]


def make(case):
    K, n, d, lw, lh, delta, lb = case
    return ufm.UFMProblem(K, n, d, lw, lh, delta, lambda_b=lb)


@pytest.mark.parametrize("case", CASES)
def test_closed_form_matches_lbfgs(case):
    problem = make(case)
    sol = problem.solution()
    assert sol.exists
    W, H, b = ufm.minimize_lbfgs(problem, seed=3)
    assert float(problem.objective(W, H, b)) == pytest.approx(sol.objective, rel=1e-10)
    assert W.norm(dim=1).numpy() == pytest.approx(sol.w_norm, rel=1e-5)
    assert H.norm(dim=1).numpy() == pytest.approx(sol.h_norm, rel=1e-5)
    assert ufm.logit_distance(problem, W, H, b) < 1e-6
    assert ufm.parameter_distance(problem, W, H, b) < 1e-5
    Z = (H @ W.T + b).numpy()
    Z = Z - Z.mean(axis=1, keepdims=True)
    y = problem.labels().numpy()
    correct = Z[np.arange(len(y)), y]
    assert correct == pytest.approx(sol.logit_correct, rel=1e-5)
    assert (correct - Z.min(axis=1)) == pytest.approx(sol.logit_gap, rel=1e-5)
    assert torch.softmax(torch.as_tensor(Z), 1)[0, y[0]].item() == pytest.approx(sol.p_y, rel=1e-7)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3]])
def test_gradient_descent_reaches_closed_form_and_collapse(case):
    problem = make(case)
    sol = problem.solution()
    traj = ufm.gradient_descent(problem, lr=4.0, steps=20000, seed=1, stop_below=1e-9, record_every=10)
    assert traj.logit_distance[-1] < 1e-9
    assert traj.objective[-1] == pytest.approx(sol.objective, rel=1e-12)
    assert traj.w_norm[-1] == pytest.approx(sol.w_norm, rel=1e-7)
    assert traj.h_norm[-1] == pytest.approx(sol.h_norm, rel=1e-7)
    m = collapse_metrics_from_features(traj.H, problem.labels(), traj.W, traj.b, num_classes=problem.num_classes)
    # distances of order 1e-9 in the logits: NC1 is quadratic in them, NC2/NC3 at most linear
    assert m["nc1_within_between"] < 1e-14
    assert m["nc2_wh_etf"] < 1e-7
    assert m["nc3_duality_sq"] < 1e-14
    assert m["mean_classifier_norm"] == pytest.approx(sol.w_norm, rel=1e-7)
    assert m["mean_feature_norm"] == pytest.approx(sol.h_norm, rel=1e-7)
    # GD descends monotonically at this step size once recorded every 10 steps
    assert np.all(np.diff(traj.objective) <= 1e-15)


@pytest.mark.parametrize("case", CASES)
def test_constructed_optimum_is_stationary_and_consistent(case):
    problem = make(case)
    for seed in (0, 1):
        W, H, b, y = ufm.optimal_point(problem, seed)
        params = [t.clone().requires_grad_() for t in (W, H, b)]
        value = problem.objective(*params, y)
        grad_sq = sum(g.pow(2).sum() for g in torch.autograd.grad(value, params))
        assert float(grad_sq.sqrt()) < 1e-12
        assert float(value.detach()) == pytest.approx(problem.solution().objective, rel=1e-13)
        assert ufm.logit_distance(problem, W, H, b) < 1e-13
        m = collapse_metrics_from_features(H, y, W, b, num_classes=problem.num_classes)
        assert m["nc2_wh_etf"] < 1e-12 and m["nc1_within_between"] < 1e-20


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4]])
def test_perturbations_increase_objective(case):
    problem = make(case)
    W, H, b, y = ufm.optimal_point(problem)
    best = float(problem.objective(W, H, b, y))
    g = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1e-2, 1e-1, 1.0):
        for _ in range(20):
            dW, dH, db = (torch.randn(t.shape, generator=g, dtype=ufm.DTYPE) * scale for t in (W, H, b))
            assert float(problem.objective(W + dW, H + dH, b + db, y)) > best
    # along the collapsed family: other products rho and other norm ratios are worse
    for factor in (0.9, 1.1):
        assert float(problem.objective(W * factor, H * factor, b, y)) > best
        assert float(problem.objective(W * factor, H / factor, b, y)) > best


def test_existence_boundary():
    K, n, d, lam = 4, 3, 4, 5e-2
    s = math.sqrt(K * K * n * lam * lam)  # = 0.6
    inside = ufm.UFMProblem(K, n, d, lam, lam, delta=1 - s - 0.05)
    outside = ufm.UFMProblem(K, n, d, lam, lam, delta=1 - s + 0.05)
    sol_in, sol_out = inside.solution(), outside.solution()
    assert sol_in.s == pytest.approx(s) and sol_in.exists and 0 < sol_in.a_delta
    assert not sol_out.exists
    assert sol_out.w_norm == sol_out.h_norm == sol_out.a_delta == 0.0
    assert sol_out.objective == pytest.approx(math.log(K))
    assert sol_out.p_y == pytest.approx(1 / K)
    # a_delta -> 0 continuously at the boundary
    near = ufm.closed_form(K, K * n, lam, lam, delta=1 - s - 1e-6)
    assert 0 < near.a_delta < 1e-4
    # below the boundary the optimum beats the zero point; above it GD goes to zero
    assert sol_in.objective < math.log(K)
    W, H, b, _ = ufm.optimal_point(outside)
    assert float(W.abs().max()) == float(H.abs().max()) == 0.0
    traj = ufm.gradient_descent(outside, lr=2.0, steps=3000, seed=0, record_every=50)
    assert traj.w_norm[-1] < 1e-6 and traj.h_norm[-1] < 1e-6
    assert traj.objective[-1] == pytest.approx(math.log(K), abs=1e-10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_classes=1), "num_classes"),
        (dict(num_samples=13), "multiple of num_classes"),
        (dict(num_samples=2), "multiple of num_classes"),
        (dict(lambda_w=-1e-3), "lambda_w"),
        (dict(lambda_h=0.0), "lambda_h"),
        (dict(lambda_b=-1.0), "lambda_b"),
        (dict(delta=1.0), "delta"),
        (dict(delta=-0.1), "delta"),
        (dict(delta=float("nan")), "delta"),
    ],
)
def test_invalid_parameters_raise(kwargs, match):
    args = dict(num_classes=4, num_samples=12, lambda_w=1e-3, lambda_h=1e-3, delta=0.1, lambda_b=0.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ufm.closed_form(**args)


def test_problem_needs_room_for_the_simplex():
    with pytest.raises(ValueError, match="dim must be"):
        ufm.UFMProblem(5, 2, 3, 1e-3, 1e-3, 0.1)
    with pytest.raises(ValueError, match="n_per_class"):
        ufm.UFMProblem(5, 0, 4, 1e-3, 1e-3, 0.1)
    with pytest.raises(ValueError, match="zero"):
        ufm.hessian_spectrum(ufm.UFMProblem(4, 3, 4, 5e-2, 5e-2, 0.7))


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[5]])
def test_symmetry_directions_are_hessian_null_directions(case):
    problem = make(case)
    W, H, b, _ = ufm.optimal_point(problem, seed=2)
    hess = ufm.full_hessian(problem, W, H, b)
    T = ufm.symmetry_tangent_basis(problem, W, H)
    assert T.shape[1] == ufm.expected_symmetry_dimension(problem)
    assert np.abs(hess @ T).max() < 1e-12 * np.abs(hess).max()
    spectrum = ufm.hessian_spectrum(problem, seed=2)
    # nothing else is flat: the minimizer is non-degenerate modulo the symmetry
    assert spectrum.num_dropped == spectrum.symmetry_dim
    assert spectrum.restricted_min > 1e-6 * spectrum.restricted_max
    assert spectrum.kappa_restricted == pytest.approx(spectrum.kappa_drop_zero, rel=1e-8)


@pytest.mark.parametrize("case", CASES + [(4, 1, 5, 5e-3, 5e-3, 0.1, 0.0), (4, 3, 4, 5e-3, 1e-2, 0.05, 5e-3),
                                          (2, 3, 1, 1e-2, 2e-2, 0.1, 1e-2), (4, 2, 3, 5e-3, 1e-2, 0.3, 0.0)])
def test_block_spectrum_is_the_dense_spectrum(case):
    # every eigenvalue with its multiplicity, symmetry directions removed, against the autograd Hessian;
    # CASES cover d = K - 1 (no directions off the ETF span), K = 2, a bias penalty; n = 1 has no within-class block
    problem = make(case)
    blocks, dense = ufm.block_spectrum(problem), ufm.hessian_spectrum(problem)
    assert blocks.num_params == problem.num_params
    assert blocks.symmetry_dim == ufm.expected_symmetry_dimension(problem) == dense.symmetry_dim
    assert blocks.symmetry_curvature < 1e-12
    np.testing.assert_allclose(blocks.eigenvalues(), np.sort(dense.restricted_eigenvalues), rtol=0,
                               atol=1e-12 * dense.restricted_max)
    assert blocks.kappa_restricted == pytest.approx(dense.kappa_restricted, rel=1e-9)
    assert blocks.restricted_min == pytest.approx(dense.restricted_min, rel=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_closed_form_gradient_is_autograds(case):
    problem = make(case)
    W, H, b = (t.requires_grad_() for t in ufm.random_start(problem, seed=1))
    value = problem.objective(W, H, b)
    expected = torch.autograd.grad(value, [W, H, b])
    got_value, got = problem.objective_and_gradient(W.detach(), H.detach(), b.detach())
    assert got_value == pytest.approx(float(value.detach()), rel=1e-14)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", CASES[:2] + CASES[4:5])
def test_block_numbers_are_the_dense_numbers(case):
    problem = make(case)
    deltas = [0.0, 0.05, 0.2]
    dense, blocks = ufm.condition_numbers_vs_delta(problem, deltas), ufm.block_numbers_vs_delta(problem, deltas)
    assert set(blocks) == {"delta", "logit_min", *ufm.BLOCK_SPECTRUM_KEYS}
    assert set(ufm.BLOCK_SPECTRUM_KEYS) <= set(dense)
    assert np.all(blocks["logit_min"] >= blocks["restricted_min"])
    for key in ufm.BLOCK_SPECTRUM_KEYS:
        if key == "symmetry_curvature":  # both ~0: rounding, not a number to match
            assert blocks[key].max() < 1e-12 and dense[key].max() < 1e-9
        else:
            np.testing.assert_allclose(blocks[key], dense[key], rtol=1e-9, err_msg=key)


@pytest.mark.parametrize("delta", [0.0, 0.05, 0.4])
def test_block_off_the_etf_span_does_not_depend_on_delta(delta):
    # G = -s (I - 11^T/K) at the minimizer: the block's nonzero eigenvalues are lambda_w + lambda_h (K - 1
    # times), lambda_w and lambda_h, for CE and LS alike (module docstring of lsnc.ufm.hessian)
    lw, lh = 2e-3, 7e-4
    sp = ufm.block_spectrum(ufm.UFMProblem(5, 40, 9, lw, lh, delta))
    vals, mult = sp.blocks["class means off E"]
    np.testing.assert_allclose(np.sort(vals), np.sort([lh, lw] + [lw + lh] * 4), rtol=1e-9)
    assert (mult == 9 - 4).all()
    assert sp.restricted_min <= min(lw, lh)


def test_block_spectrum_sizes_and_the_flat_logit_preserving_directions():
    # CIFAR-10's size (25.6 million parameters) in well under a second; with lambda_h << lambda_w the smallest
    # curvature is lambda_h exactly, from features moving off the ETF span, for CE and LS alike
    for delta in (0.0, 0.1):
        sp = ufm.block_spectrum(ufm.UFMProblem(10, 5000, 512, 1e-3, 1e-6, delta, lambda_b=1e-2))
        assert sp.num_params == (10 + 50000) * 512 + 10
        assert sp.restricted_min == pytest.approx(1e-6, rel=1e-12)
        assert "within class, off E" in sp.blocks_of(sp.restricted_min)
        assert sp.blocks_of(sp.restricted_max) == ["class means in E"]
        with pytest.raises(ValueError, match="use blocks"):
            sp.eigenvalues()
    with pytest.raises(ValueError, match="zero"):
        ufm.block_spectrum(ufm.UFMProblem(4, 3, 4, 5e-2, 5e-2, 0.7))
    # CIFAR-100's size (K = 100, n = 500, d = 2048): 19,900 class-mean parameters, 12 distinct values
    sp = ufm.block_spectrum(ufm.UFMProblem(100, 500, 2048, 1e-3, 1e-6, 0.05, lambda_b=1e-2))
    vals, mult = sp.blocks["class means in E"]
    assert len(vals) <= 12 and mult.sum() + 99 * 98 // 2 == 2 * 100 * 99 + 100
    assert sp.num_params == (100 + 50000) * 2048 + 100
    with pytest.raises(ValueError, match="zero"):  # the paper's weight decay as every penalty: s = 1.12 >= 1
        ufm.block_spectrum(ufm.UFMProblem(100, 500, 2048, 5e-4, 5e-4, 0.0, lambda_b=5e-4))


def test_transposition_sum_is_the_sum_over_transpositions():
    from itertools import combinations

    from lsnc.ufm import class_means
    M = np.random.default_rng(0).standard_normal((6, 6))
    brute = np.zeros_like(M)
    for i, j in combinations(range(6), 2):
        p = np.arange(6)
        p[[i, j]] = p[[j, i]]
        brute += M[np.ix_(p, p)]
    np.testing.assert_allclose(class_means.transposition_sum(M), brute, rtol=0, atol=1e-12)


@pytest.mark.parametrize("K, n, lw, lh, delta, lb", [(4, 3, 1e-2, 1e-2, 0.0, 0.0), (5, 10, 5e-3, 2e-3, 0.1, 0.0),
                                                     (7, 5, 1e-3, 1e-6, 0.05, 1e-2), (9, 50, 5e-4, 5e-4, 0.2, 5e-4),
                                                     (12, 5000, 5e-4, 5e-4, 0.0, 5e-4)])
def test_class_mean_block_by_symmetry_is_the_dense_block(K, n, lw, lh, delta, lb):
    # the class-mean block's distinct eigenvalues and multiplicities from the 17-dim S_(K-2)-fixed subspace,
    # against the dense autograd block: every eigenvalue, zeros included
    from lsnc.ufm import class_means
    problem = ufm.UFMProblem(K, n, K, lw, lh, delta, lambda_b=lb)
    vals, mult = class_means.symmetric_spectrum(problem)
    dense = np.sort(class_means.dense_spectrum(problem))
    assert len(vals) <= 12 and mult.sum() == len(dense) == 2 * K * (K - 1) + K
    np.testing.assert_allclose(np.repeat(vals, mult), dense, rtol=0, atol=1e-12 * np.abs(dense).max())
    with pytest.raises(ValueError, match="K >= 4"):
        class_means.symmetric_spectrum(ufm.UFMProblem(3, n, 3, lw, lh, delta, lambda_b=lb))


def test_block_spectrum_refuses_a_point_that_is_not_a_minimizer(monkeypatch):
    # a wrong closed form (norms 10 % too large) leaves no exactly flat symmetry directions: refused, not hidden
    problem = make(CASES[0])
    good = problem.solution()
    wrong = dataclasses.replace(good, w_norm=1.1 * good.w_norm, h_norm=1.1 * good.h_norm)
    monkeypatch.setattr(ufm.UFMProblem, "solution", lambda self: wrong)
    with pytest.raises(ValueError, match="flat directions"):
        ufm.block_spectrum(problem)


def test_softmax_hessian_spectrum_matches_formula():
    # on the sum-zero subspace diag(p) - pp^T has eigenvalues K p_y p_o and p_o (K-2 times)
    problem = ufm.UFMProblem(5, 2, 4, 2e-3, 1e-2, 0.1)
    sol = problem.solution()
    spectrum = ufm.hessian_spectrum(problem)
    assert spectrum.softmax_min == pytest.approx(sol.p_wrong, rel=1e-10)
    assert spectrum.softmax_min == pytest.approx((sol.s + sol.delta) / 5, rel=1e-10)
    assert spectrum.kappa_softmax == pytest.approx(5 * sol.p_y, rel=1e-10)


def test_label_smoothing_shrinks_both_norms():
    deltas = np.linspace(0.0, 0.9, 10)
    sols = [ufm.closed_form(4, 40, 1e-3, 1e-4, dl) for dl in deltas]
    for key in ("w_norm", "h_norm", "a_delta", "p_y", "logit_gap"):
        values = np.array([getattr(s, key) for s in sols])
        assert np.all(np.diff(values) < 0), key
    for s in sols:
        assert s.p_y == pytest.approx(1 - 3 * (s.s + s.delta) / 4, rel=1e-12)
        assert s.w_norm / s.h_norm == pytest.approx(math.sqrt(10 * 1e-4 / 1e-3), rel=1e-12)


def test_distances_are_rotation_and_shift_invariant():
    problem = make(CASES[1])
    W, H, b, _ = ufm.optimal_point(problem, seed=0)
    W2, H2, b2, _ = ufm.optimal_point(problem, seed=7)  # another point of the optimal orbit
    assert ufm.parameter_distance(problem, W2, H2, b2 + 3.0) < 1e-12
    assert ufm.logit_distance(problem, W2, H2, b2 + 3.0) < 1e-12
    assert float((W - W2).norm()) > 0.1  # really a different point
    assert ufm.logit_distance(problem, 1.1 * W, H, b) == pytest.approx(0.1, rel=1e-12)


def test_first_step_below_counts_from_the_last_excursion():
    problem = make(CASES[0])
    traj = ufm.gradient_descent(problem, lr=1.0, steps=3, seed=0)
    traj.step = np.array([0, 10, 20, 30])
    traj.logit_distance = np.array([1.0, 0.05, 0.2, 0.01])
    assert traj.first_step_below(0.1) == 30
    assert traj.first_step_below(0.5) == 10
    assert traj.first_step_below(2.0) == 0
    assert traj.first_step_below(0.001) is None


def test_convergence_comparison_follows_the_local_rate():
    problem = ufm.UFMProblem(3, 2, 2, 1e-2, 1e-2, 0.0)
    comp = ufm.compare_convergence(problem, [0.0, 0.3], seeds=[0, 1], lr=4.0, steps=4000,
                                   loose=1e-3, tight=1e-7)
    assert comp.iters_tight.shape == (2, 2) and np.all(np.isfinite(comp.iters_tight))
    assert not comp.diverged.any()
    # after the loose threshold GD is in the linear regime: |1 - lr lambda_min| predicts its length
    assert comp.measured_tight_phase == pytest.approx(comp.predicted_tight_phase, rel=0.25)
    verdict = comp.verdict()
    assert verdict["ls_higher_smallest_curvature"] == bool(
        comp.spectrum["restricted_min"][1] > comp.spectrum["restricted_min"][0])
    faster = bool(np.all(comp.iters_tight[1] < comp.iters_tight[0])
                  and np.all(comp.iters_loose[1] < comp.iters_loose[0]))
    assert verdict["supports_claim"] == (faster and verdict["ls_lower_full_condition_number"])
    tuned = ufm.compare_convergence(problem, [0.0, 0.3], seeds=[0], lr=0.5, steps=50,
                                    lr_rule="inverse_max_curvature")
    assert tuned.lrs == pytest.approx(0.5 / tuned.spectrum["restricted_max"])
    from lsnc.book.theory import verdict_summary
    text = verdict_summary(comp, tuned)
    assert ("numbers support the claim" in text) == verdict["supports_claim"]
    with pytest.raises(ValueError, match="lr_rule"):
        ufm.compare_convergence(problem, [0.0], [0], lr=1.0, steps=1, lr_rule="adaptive")
    with pytest.raises(ValueError, match="spectrum"):
        ufm.compare_convergence(problem, [0.0], [0], lr=1.0, steps=1, spectrum="sparse")
    # the blocks' numbers give the same steps and the same runs as the dense Hessian's
    runs = [ufm.compare_convergence(problem, [0.0, 0.3], seeds=[0], lr=0.5, steps=3000,
                                    lr_rule="inverse_max_curvature", spectrum=which) for which in ("dense", "blocks")]
    np.testing.assert_allclose(runs[1].lrs, runs[0].lrs, rtol=1e-9)
    assert np.all(np.isfinite(runs[1].iters_tight))
    np.testing.assert_array_equal(runs[1].iters_tight, runs[0].iters_tight)


def test_divergence_is_recorded_not_raised():
    problem = make(CASES[0])
    traj = ufm.gradient_descent(problem, lr=1e4, steps=500, seed=0)
    assert not np.isfinite(traj.objective[-1]) and len(traj.step) < 501
    assert traj.first_step_below(1e-2) is None
