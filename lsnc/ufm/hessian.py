"""The Hessian of the UFM objective at its global minimizer, and its candidate condition numbers.

Two ways to the same spectrum:

* **dense** (:func:`full_hessian`, :func:`hessian_spectrum`): the autograd Hessian of all (K + N) d + K
  parameters, with the symmetry directions found and checked explicitly. Small problems only (N d ≲ 10^3).
* **blocks** (:func:`block_spectrum`): exact at any n and d (e.g. CIFAR-10's K = 10, n = 5000, d = 512:
  25.6 million parameters), from the structure of the minimizer. Checked against the dense spectrum,
  eigenvalue by eigenvalue, in ``tests/test_ufm.py``.

Why the blocks are exact
------------------------
At the minimizer every sample of class k has the same feature mu_k, logits z_k, softmax p_k, logit
gradient g_k = p_k - t_k and softmax Hessian S_k = diag(p_k) - p_k p_k^T, and W, mu_1..mu_K span the same
(K-1)-dim subspace E of R^d. Write a perturbation of the features as dh_i = dmu_k + e_i with sum_{i in k} e_i = 0.
The second-order part of the objective is::

    (1/2N) sum_i dz_i^T S_k dz_i + (1/N) sum_i g_k^T dW dh_i + lambda_w/2 |dW|^2 + lambda_h/2 |dH|^2 + lambda_b/2 |db|^2,
    dz_i = dW mu_k + W dh_i + db.

Summing over a class, the e_i terms separate from the class-mean terms (they sum to zero), and in R^d the
directions in E separate from those orthogonal to it (W u = 0 and mu_k . u = 0 for u orthogonal to E). So the
Hessian is, up to an orthogonal change of coordinates, block diagonal with four kinds of blocks:

1. ``class means in E``: (dW, dmu, db) within E, one block of 2K(K-1) + K parameters. In the orthonormal
   coordinates nu_k = sqrt(n) dmu_k it is the Hessian of
   phi(W, V, b) = (1/K) sum_k l_delta(W v_k / sqrt(n) + b, k) + lambda_w/2 |W|^2 + lambda_h/2 |V|^2 + lambda_b/2 |b|^2
   at W = W*, v_k = sqrt(n) mu_k, b = 0. It holds the rotations within E and, when lambda_b = 0, the bias
   shift: (K-1)(K-2)/2 (+1) zero eigenvalues. Its spectrum has at most 12 distinct values, found at any K from
   the block's symmetry under permutations of the classes (:mod:`lsnc.ufm.class_means`; dense for K < 4).
2. ``class means off E``: for each unit direction u orthogonal to E (d - K + 1 copies), dW = c u^T and
   dmu_k = beta_k u / sqrt(n): [[lambda_w I, G / (K sqrt(n))], [G^T / (K sqrt(n)), lambda_h I]] with
   G = [g_1 .. g_K]. At the minimizer g_k = -s (e_k - 1/K) (from p_y = 1 - (K-1)(s+delta)/K), so
   G = -s (I - 11^T/K) and, as s^2 / (K^2 n) = lambda_w lambda_h, the block's eigenvalues are exactly
   0 (K - 1 times: the rotations between E and u), lambda_w + lambda_h (K - 1 times), lambda_w and lambda_h,
   whatever delta is. So when d >= K the smallest curvature is at most min(lambda_w, lambda_h), for CE and LS
   alike.
3. ``within class, in E``: features of one class moving apart within E: (n - 1) directions in sample space
   per class, each with the K - 1 dimensions of E, K classes; the Hessian W^T S_k W / N + lambda_h I restricted
   to E (the same spectrum for every class).
4. ``within class, off E``: the same motions orthogonal to E: curvature lambda_h exactly,
   K (n - 1)(d - K + 1) times. They leave the logits unchanged, whatever delta is.

The block sizes add up to (K + N) d + K, and the zero eigenvalues to :func:`expected_symmetry_dimension`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from . import class_means
from .problem import DTYPE, UFMProblem, optimal_point, simplex_etf, single_thread, smoothed_targets


@single_thread()
def full_hessian(problem: UFMProblem, W, H, b) -> np.ndarray:
    """Hessian of the UFM objective in the flat parameters [W, H, b] (float64)."""
    y = problem.labels()

    def f(theta):
        return problem.objective(*problem.split(theta), y)

    theta = problem.flatten(W, H, b).to(DTYPE)
    return torch.autograd.functional.hessian(f, theta).numpy()


def symmetry_tangent_basis(problem: UFMProblem, W, H) -> np.ndarray:
    """Orthonormal basis (columns) of the directions that leave the objective unchanged to all orders:
    the tangent of the orbit (W A, H A, 0) for skew A (W -> W e^A, H -> H e^A), and (0, 0, 1) when
    lambda_b = 0 (softmax shift invariance)."""
    d = problem.dim
    cols = []
    for i in range(d):
        for j in range(i + 1, d):
            A = torch.zeros(d, d, dtype=DTYPE)
            A[i, j], A[j, i] = 1.0, -1.0
            cols.append(problem.flatten(W @ A, H @ A, torch.zeros(problem.num_classes, dtype=DTYPE)))
    if problem.lambda_b == 0:
        zero_wh = torch.zeros(problem.num_params - problem.num_classes, dtype=DTYPE)
        cols.append(torch.cat([zero_wh, torch.ones(problem.num_classes, dtype=DTYPE)]))
    if not cols:
        return np.zeros((problem.num_params, 0))
    T = torch.stack(cols, dim=1).numpy()
    u, sv, _ = np.linalg.svd(T, full_matrices=False)
    rank = int((sv > 1e-9 * max(sv.max(), 1.0)).sum())
    return u[:, :rank]


def expected_symmetry_dimension(problem: UFMProblem) -> int:
    """dim of the orbit tangent at the ETF optimum: rotations of R^d minus those fixing the (K-1)-dim
    span of W and H pointwise; plus 1 for the bias shift when lambda_b = 0."""
    d, r = problem.dim, problem.num_classes - 1
    if not problem.solution().exists:
        r = 0
    return d * (d - 1) // 2 - (d - r) * (d - r - 1) // 2 + (1 if problem.lambda_b == 0 else 0)


def softmax_hessian(p: np.ndarray) -> np.ndarray:
    """Hessian of z -> smoothed CE at softmax probabilities p: diag(p) - p p^T (no delta in it)."""
    return np.diag(p) - np.outer(p, p)


@dataclass(frozen=True)
class HessianSpectrum:
    """Candidate condition numbers at the global minimizer of one UFM instance.

    (a) ``kappa_restricted``: the full Hessian restricted to the orthogonal complement of the symmetry
        directions (orbit tangent + bias shift if lambda_b = 0). This is the Hessian that governs gradient
        descent on the UFM near its minimizer set; ``restricted_min`` sets the local linear rate.
    (a') ``kappa_drop_zero``: the full Hessian after dropping eigenvalues below 1e-9 * max (as a check the
        number dropped, ``num_dropped``, should equal ``symmetry_dim``).
    (b) ``kappa_softmax``: diag(p) - p p^T at the optimal logits, on the sum-zero subspace (the loss's own
        curvature in logit space); its smallest nonzero eigenvalue is ``softmax_min`` = (s + delta)/K.
    (c) ``kappa_features_block`` / ``kappa_classifier_block``: the H-block at fixed W = W* and the W-block at
        fixed H = H* (each a strongly convex subproblem: no symmetry directions to remove).
    """

    delta: float
    p_y: float
    eigenvalues: np.ndarray = field(repr=False)  # full Hessian
    restricted_eigenvalues: np.ndarray = field(repr=False)
    symmetry_dim: int
    symmetry_curvature: float  # max |v^T Hess v| over the symmetry basis (should be ~0)
    num_dropped: int
    kappa_restricted: float
    kappa_drop_zero: float
    restricted_min: float
    restricted_max: float
    softmax_min: float
    softmax_max: float
    kappa_softmax: float
    kappa_features_block: float
    kappa_classifier_block: float


def hessian_spectrum(problem: UFMProblem, seed: int = 0) -> HessianSpectrum:
    if not problem.solution().exists:
        raise ValueError("the minimizer is zero here (s + delta >= 1): pick a smaller delta or lambdas")
    W, H, b, _ = optimal_point(problem, seed)
    hess = full_hessian(problem, W, H, b)
    hess = 0.5 * (hess + hess.T)
    eig = np.linalg.eigvalsh(hess)
    T = symmetry_tangent_basis(problem, W, H)
    sym_curv = float(np.abs(np.einsum("pi,pq,qi->i", T, hess, T)).max()) if T.shape[1] else 0.0
    # orthonormal complement of the symmetry directions
    q, _ = np.linalg.qr(np.concatenate([T, np.eye(hess.shape[0])], axis=1))
    complement = q[:, T.shape[1]:]
    restricted = np.linalg.eigvalsh(complement.T @ hess @ complement)
    kept = eig[np.abs(eig) > 1e-9 * np.abs(eig).max()]
    # per-sample softmax Hessian on the sum-zero subspace (every sample has the same p up to permutation)
    sol = problem.solution()
    p = np.full(problem.num_classes, sol.p_wrong)
    p[0] = sol.p_y
    sm = np.linalg.eigvalsh(softmax_hessian(p))
    sm_nonzero = np.sort(sm)[1:]  # drop the eigenvalue 0 of the all-ones direction
    kd = problem.num_classes * problem.dim
    nd = problem.num_samples * problem.dim
    w_block = np.linalg.eigvalsh(hess[:kd, :kd])
    h_block = np.linalg.eigvalsh(hess[kd:kd + nd, kd:kd + nd])
    return HessianSpectrum(
        delta=problem.delta, p_y=sol.p_y, eigenvalues=eig, restricted_eigenvalues=restricted,
        symmetry_dim=T.shape[1], symmetry_curvature=sym_curv, num_dropped=len(eig) - len(kept),
        kappa_restricted=float(restricted.max() / restricted.min()),
        kappa_drop_zero=float(kept.max() / kept.min()),
        restricted_min=float(restricted.min()), restricted_max=float(restricted.max()),
        softmax_min=float(sm_nonzero.min()), softmax_max=float(sm_nonzero.max()),
        kappa_softmax=float(sm_nonzero.max() / sm_nonzero.min()),
        kappa_features_block=float(h_block.max() / h_block.min()),
        kappa_classifier_block=float(w_block.max() / w_block.min()),
    )


SPECTRUM_KEYS = ("p_y", "kappa_restricted", "kappa_drop_zero", "restricted_min", "restricted_max",
                 "softmax_min", "softmax_max", "kappa_softmax", "kappa_features_block",
                 "kappa_classifier_block", "symmetry_curvature", "num_dropped", "symmetry_dim")


def condition_numbers_vs_delta(problem: UFMProblem, deltas, seed: int = 0) -> dict[str, np.ndarray]:
    """Each candidate condition number (and the extreme eigenvalues) as a function of delta."""
    spectra = [hessian_spectrum(problem.with_delta(float(dl)), seed) for dl in deltas]
    out = {"delta": np.asarray(deltas, dtype=float)}
    out.update({k: np.array([getattr(sp, k) for sp in spectra]) for k in SPECTRUM_KEYS})
    return out


BLOCK_SPECTRUM_KEYS = ("p_y", "kappa_restricted", "restricted_min", "restricted_max", "softmax_min", "softmax_max",
                       "kappa_softmax", "symmetry_curvature", "symmetry_dim")


def block_numbers_vs_delta(problem: UFMProblem, deltas) -> dict[str, np.ndarray]:
    """:func:`condition_numbers_vs_delta`'s keys that the blocks give (``BLOCK_SPECTRUM_KEYS``: the full Hessian's
    (a) and the softmax's (b)), exact at any size, from :func:`block_spectrum`; and ``logit_min``
    (:attr:`BlockSpectrum.logit_min`, the smallest curvature a logit distance sees)."""
    out = {"delta": np.asarray(deltas, dtype=float)}
    rows = []
    for dl in out["delta"]:
        prob = problem.with_delta(float(dl))
        spec, sol = block_spectrum(prob), prob.solution()
        p = np.full(prob.num_classes, sol.p_wrong)
        p[0] = sol.p_y
        sm = np.sort(np.linalg.eigvalsh(softmax_hessian(p)))[1:]  # without the all-ones direction's 0
        rows.append({"p_y": sol.p_y, "kappa_restricted": spec.kappa_restricted,
                     "restricted_min": spec.restricted_min, "restricted_max": spec.restricted_max,
                     "softmax_min": sm.min(), "softmax_max": sm.max(), "kappa_softmax": sm.max() / sm.min(),
                     "symmetry_curvature": spec.symmetry_curvature, "symmetry_dim": spec.symmetry_dim,
                     "logit_min": spec.logit_min})
    out.update({k: np.array([row[k] for row in rows]) for k in (*BLOCK_SPECTRUM_KEYS, "logit_min")})
    return out




# ----------------------------------------------------------------------------------------------
# the same spectrum at any n and d, from the blocks (see the module docstring)
# ----------------------------------------------------------------------------------------------
BLOCKS = ("class means in E", "class means off E", "within class, in E", "within class, off E")


@dataclass(frozen=True)
class BlockSpectrum:
    """The whole Hessian spectrum at the minimizer as blocks of (eigenvalues, multiplicity), symmetry
    directions removed (``symmetry_dim`` of them, all exactly flat; the largest |eigenvalue| removed is
    ``symmetry_curvature``). ``kappa_restricted``, ``restricted_min`` and ``restricted_max`` are those of
    :class:`HessianSpectrum` (candidate (a)), at a size the dense Hessian cannot reach."""

    problem: UFMProblem
    blocks: dict = field(repr=False)  # block name -> (eigenvalues, multiplicity of each)
    symmetry_dim: int
    symmetry_curvature: float

    @property
    def num_params(self) -> int:
        return self.symmetry_dim + sum(int(m.sum()) for _, m in self.blocks.values())

    @property
    def restricted_min(self) -> float:
        return min(float(v[m > 0].min()) for v, m in self.blocks.values() if (m > 0).any())

    @property
    def restricted_max(self) -> float:
        return max(float(v[m > 0].max()) for v, m in self.blocks.values() if (m > 0).any())

    @property
    def kappa_restricted(self) -> float:
        return self.restricted_max / self.restricted_min

    @property
    def logit_min(self) -> float:
        """The smallest curvature among the directions that move the logits Z = H W^T + b to first order: the
        blocks in E (class means, within class). Off E, a change of W or H leaves H W^T unchanged to first order
        (the minimizer's W and H lie in E), so a logit distance does not see those directions' slow decay."""
        return min(float(v[m > 0].min()) for name, (v, m) in self.blocks.items()
                   if name in (BLOCKS[0], BLOCKS[2]) and (m > 0).any())

    def blocks_of(self, value: float) -> list[str]:
        """The blocks (of BLOCKS) that hold the eigenvalue ``value`` (e.g. ``restricted_min``)."""
        names = [name for name, (vals, mult) in self.blocks.items()
                 if np.isclose(vals[mult > 0], value, rtol=1e-9, atol=0).any()]
        if not names:
            raise ValueError(f"{value!r} is not an eigenvalue of any block")
        return names

    def eigenvalues(self) -> np.ndarray:
        """Every eigenvalue with its multiplicity, symmetry zeros removed, sorted (small problems only)."""
        if self.num_params > 10**6:
            raise ValueError(f"{self.num_params} eigenvalues: use blocks / restricted_min / restricted_max")
        return np.sort(np.concatenate([np.repeat(v, m) for v, m in self.blocks.values()]))


def _drop_flat(eig: np.ndarray, mult: np.ndarray, count: int, scale: float,
               where: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Remove the ``count`` eigenvalues closest to zero (the symmetry directions; ``mult``: the multiplicity of
    each of ``eig``); check that they are flat and that the rest is not."""
    order = np.argsort(np.abs(eig))
    eig, mult = eig[order], mult[order]
    taken = np.cumsum(mult)
    cut = int(np.searchsorted(taken, count)) + 1 if count else 0
    worst = float(np.abs(eig[:cut]).max()) if count else 0.0
    kept, kept_mult = eig[cut:], mult[cut:]
    if (count and (taken[-1] < count or taken[cut - 1] != count)) or worst > 1e-9 * scale \
            or (len(kept) and kept.min() <= 1e-9 * scale):
        smallest = ", ".join(f"{v:.3g} (x{m})" for v, m in zip(eig[:cut + 1], mult[:cut + 1]))
        raise ValueError(f"{where}: expected exactly {count} flat directions at the minimizer, found "
                         f"eigenvalues (multiplicity) {smallest} (is the point a minimizer?)")
    order = np.argsort(kept)
    return kept[order], kept_mult[order], worst


@single_thread()
def block_spectrum(problem: UFMProblem) -> BlockSpectrum:
    """The exact Hessian spectrum at the UFM minimizer, symmetry directions removed, for any K, n and d (under a
    second at K = 100, about a second at K = 200). See the module docstring for the blocks."""
    sol, K, n, d = problem.solution(), problem.num_classes, problem.n_per_class, problem.dim
    if not sol.exists:
        raise ValueError("the minimizer is zero here (s + delta >= 1): pick a smaller delta or lambdas")
    r = K - 1
    U = simplex_etf(K)  # K x r: the minimizer's directions, in coordinates of E
    if K >= class_means.MIN_SYMMETRIC_CLASSES:
        mean_in, mean_mult = class_means.symmetric_spectrum(problem)
    else:
        mean_in = class_means.dense_spectrum(problem)
        mean_mult = np.ones(len(mean_in), dtype=np.int64)
    scale = float(np.abs(mean_in).max())
    mean_in, mean_mult, flat_in = _drop_flat(mean_in, mean_mult, r * (r - 1) // 2 + (problem.lambda_b == 0),
                                             scale, BLOCKS[0])
    # block 2: G's columns are the logit gradients g_k = p_k - t_k
    p = torch.softmax(sol.h_norm * sol.w_norm * U @ U.T, dim=1)
    G = (p - smoothed_targets(torch.arange(K), K, problem.delta)).T.numpy()
    coupling = G / (K * math.sqrt(n))
    off = np.linalg.eigvalsh(np.block([[problem.lambda_w * np.eye(K), coupling],
                                       [coupling.T, problem.lambda_h * np.eye(K)]]))
    off, off_mult, flat_off = _drop_flat(off, np.ones(len(off), dtype=np.int64), r,
                                         problem.lambda_w + problem.lambda_h, BLOCKS[1])
    # block 3: W^T S W / N + lambda_h on E, S the softmax Hessian of one class (all classes alike)
    S = softmax_hessian(p[0].numpy())
    W = sol.w_norm * U.numpy()
    within_in = np.linalg.eigvalsh(W.T @ S @ W / problem.num_samples) + problem.lambda_h
    copies = K * (n - 1)
    blocks = {
        BLOCKS[0]: (mean_in, mean_mult),
        BLOCKS[1]: (off, off_mult * (d - r)),
        BLOCKS[2]: (within_in, np.full(r, copies, dtype=np.int64)),
        BLOCKS[3]: (np.array([problem.lambda_h]), np.array([copies * (d - r)], dtype=np.int64)),
    }
    sym = r * (r - 1) // 2 + int(problem.lambda_b == 0) + r * (d - r)
    return BlockSpectrum(problem=problem, blocks=blocks, symmetry_dim=sym,
                         symmetry_curvature=max(flat_in, flat_off if d > r else 0.0))
