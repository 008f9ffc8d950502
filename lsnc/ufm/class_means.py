"""Block 1 of the minimizer's Hessian, ``class means in E`` (see :mod:`lsnc.ufm.hessian`), at any number of
classes K, from the block's symmetry under permutations of the classes.

The block is the Hessian of::

    phi(W, V, b) = (1/K) sum_k l_delta(W v_k / sqrt(n) + b, k) + lambda_w/2 |W|^2 + lambda_h/2 |V|^2 + lambda_b/2 |b|^2

(W, V: K x (K-1), rows in the coordinates of E; b: K) at the minimizer W = a U, V = c U, b = 0, U the simplex ETF.
It has 2K(K-1) + K parameters: 19,900 at K = 100, too many for a dense eigendecomposition on a laptop, and
:func:`dense_spectrum` stops at K = 40. But its spectrum has at most 12 distinct values.

Why. A permutation P of the classes acts on the parameters as W -> P W R, V -> P V R, b -> P b, with R the
orthogonal map of E that permutes the ETF's vertices back (P U R = U): phi is unchanged and the minimizer is
fixed, so the Hessian commutes with the action of the symmetric group S_K. Written as K x K matrices
W^ = W B^T (B: orthonormal basis of E), the action is W^ -> P W^ P^T, so W and V each carry the representation
P (x) V_std = 1 + 2 V_std + [K-2, 2] + [K-2, 1, 1], and b carries P = 1 + V_std (V_std = [K-1, 1], the standard
representation). In all: the trivial representation 3 times, V_std 5 times, [K-2, 2] and [K-2, 1, 1] twice
each, so at most 3 + 5 + 2 + 2 = 12 distinct eigenvalues, each with the dimension of its representation as
multiplicity (1, K - 1, K(K-3)/2, (K-1)(K-2)/2).

How. The vectors fixed by the permutations of classes 3..K (the subgroup S_{K-2}) form a 17-dim subspace
(W and V: 7 each, b: 3) that the Hessian maps to itself and that meets every copy of every representation above
(V_std twice, the others once). :func:`symmetric_spectrum` builds an orthonormal basis of it, takes 17 Hessian-
vector products (autograd), and tells the representations apart with the sum of all transpositions (central in
the group algebra, so it commutes with the Hessian), which acts on a representation by the sum of its Young
diagram's contents: K(K-1)/2, K(K-3)/2, (K-2)(K-3)/2 - 1, (K-2)(K-3)/2 - 3. Exact at any K >= 4, in
O(K^3) time; checked eigenvalue by eigenvalue, with multiplicities, against :func:`dense_spectrum` in
``tests/test_ufm.py``. The rotations within E (zero curvature) are the [K-2, 1, 1] directions of one eigenvalue
0; the bias shift, when lambda_b = 0, a trivial one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .problem import DTYPE, UFMProblem, simplex_etf

#: the representations of S_K in the block: name -> (dimension, content sum, dimension of its S_{K-2}-fixed part)
#: as functions of K
REPRESENTATIONS = {
    "trivial": (lambda K: 1, lambda K: K * (K - 1) // 2, 1),
    "standard [K-1, 1]": (lambda K: K - 1, lambda K: K * (K - 3) // 2, 2),
    "[K-2, 2]": (lambda K: K * (K - 3) // 2, lambda K: (K - 2) * (K - 3) // 2 - 1, 1),
    "[K-2, 1, 1]": (lambda K: (K - 1) * (K - 2) // 2, lambda K: (K - 2) * (K - 3) // 2 - 3, 1),
}
#: copies of each representation in the block (W, V: 1 + 2 + 1 + 1 each; b: 1 + 1)
COPIES = {"trivial": 3, "standard [K-1, 1]": 5, "[K-2, 2]": 2, "[K-2, 1, 1]": 2}
MIN_SYMMETRIC_CLASSES = 4  # [K-2, 2] is a Young diagram from K = 4 on


def class_mean_objective(problem: UFMProblem):
    """``(phi, theta)``: phi of the module docstring as a function of the flat [W, V, b], and the minimizer."""
    sol, K, n = problem.solution(), problem.num_classes, problem.n_per_class
    r, y, U = K - 1, torch.arange(K), simplex_etf(K)

    def phi(theta):
        W, V, b = theta[:K * r].reshape(K, r), theta[K * r:2 * K * r].reshape(K, r), theta[2 * K * r:]
        loss = F.cross_entropy(V @ W.T / math.sqrt(n) + b, y, label_smoothing=problem.delta)
        return loss + 0.5 * (problem.lambda_w * W.pow(2).sum() + problem.lambda_h * V.pow(2).sum()
                             + problem.lambda_b * b.pow(2).sum())

    theta = torch.cat([(sol.w_norm * U).reshape(-1), (math.sqrt(n) * sol.h_norm * U).reshape(-1),
                       torch.zeros(K, dtype=DTYPE)])
    return phi, theta


def dense_spectrum(problem: UFMProblem) -> np.ndarray:
    """Every eigenvalue of the block (2K(K-1) + K of them), from its dense autograd Hessian: the reference."""
    phi, theta = class_mean_objective(problem)
    hess = torch.autograd.functional.hessian(phi, theta, vectorize=True).numpy()
    return np.linalg.eigvalsh(0.5 * (hess + hess.T))


def transposition_sum(M: np.ndarray) -> np.ndarray:
    """sum over all transpositions t of P_t M P_t (M: K x K; the action on W^ and V^), in O(K^2)."""
    K = M.shape[0]
    col, row, diag = M.sum(axis=0), M.sum(axis=1), np.diag(M)
    # (a, b), a != b: t disjoint from {a, b} keeps M_ab; (a b) gives M_ba; (a j) gives M_jb; (b j) gives M_aj
    out = (math.comb(K - 2, 2) - 2) * M + M.T + (col - diag)[None, :] + (row - diag)[:, None]
    # (a, a): t not moving a keeps M_aa; (a j) gives M_jj
    np.fill_diagonal(out, math.comb(K - 1, 2) * diag + diag.sum() - diag)
    return out


def _fixed_basis(K: int, B: np.ndarray) -> np.ndarray:
    """Orthonormal basis (columns) of the [W, V, b] fixed by the permutations of classes 3..K (17 columns)."""
    cls = np.minimum(np.arange(K), 2)  # class 1, class 2, or one of the rest
    orbits = {}
    for a in range(K):
        for b in range(K):
            orbits.setdefault((cls[a], cls[b], a == b), []).append((a, b))
    mats = []
    for cells in orbits.values():
        M = np.zeros((K, K))
        M[tuple(np.array(cells).T)] = 1.0
        mats.append((M @ B).reshape(-1))  # K x r: the part with zero row sums, in the coordinates of E
    size = K * (K - 1)
    cols = [np.concatenate([m, np.zeros(size + K)]) for m in mats]
    cols += [np.concatenate([np.zeros(size), m, np.zeros(K)]) for m in mats]
    cols += [np.concatenate([np.zeros(2 * size), v]) for v in (np.eye(K)[0], np.eye(K)[1], (cls == 2) * 1.0)]
    u, sv, _ = np.linalg.svd(np.stack(cols, axis=1), full_matrices=False)
    return u[:, sv > 1e-9 * sv.max()]


def symmetric_spectrum(problem: UFMProblem) -> tuple[np.ndarray, np.ndarray]:
    """The block's distinct eigenvalues and their multiplicities (the zeros included), at any K >= 4."""
    K = problem.num_classes
    if not problem.solution().exists:
        raise ValueError("the minimizer is zero here (s + delta >= 1): pick a smaller delta or lambdas")
    if K < MIN_SYMMETRIC_CLASSES:
        raise ValueError(f"K = {K}: the symmetry reduction needs K >= {MIN_SYMMETRIC_CLASSES}; use dense_spectrum")
    r, size = K - 1, K * (K - 1)
    B = simplex_etf(K).numpy() * math.sqrt(r / K)  # orthonormal basis of E in R^K (B^T B = I, B B^T = I - 11^T/K)
    Q = _fixed_basis(K, B)
    if Q.shape[1] != 17:
        raise ValueError(f"the S_(K-2)-fixed subspace has dimension {Q.shape[1]}, expected 17")
    phi, theta = class_mean_objective(problem)
    theta = theta.requires_grad_(True)
    grad = torch.autograd.grad(phi(theta), theta, create_graph=True)[0]
    HQ = np.stack([torch.autograd.grad(grad, theta, torch.from_numpy(q), retain_graph=True)[0].numpy()
                   for q in Q.T], axis=1)
    H = Q.T @ HQ

    def tq(q):  # the transposition sum on one [W, V, b]
        W, V, b = q[:size].reshape(K, r), q[size:2 * size].reshape(K, r), q[2 * size:]
        return np.concatenate([(transposition_sum(W @ B.T) @ B).reshape(-1),
                               (transposition_sum(V @ B.T) @ B).reshape(-1),
                               math.comb(K - 1, 2) * b + b.sum() - b])

    T = Q.T @ np.stack([tq(q) for q in Q.T], axis=1)
    t_val, t_vec = np.linalg.eigh(0.5 * (T + T.T))
    values, counts = [], []
    for name, (dim, content, fixed) in REPRESENTATIONS.items():
        # content sums are integers, at least 2 apart
        part = t_vec[:, np.abs(t_val - content(K)) < 0.5]
        if part.shape[1] != COPIES[name] * fixed:
            raise ValueError(f"{name}: {part.shape[1]} fixed directions, expected {COPIES[name] * fixed}")
        eig = np.linalg.eigvalsh(part.T @ (0.5 * (H + H.T)) @ part).reshape(-1, fixed)  # V_std: in equal pairs
        # equal up to the rounding of the Hessian-vector products (a few eps of the largest curvature)
        tol = 1e-6 * max(float(np.abs(H).max()), 1e-300)
        if not np.allclose(eig, eig[:, :1], rtol=0, atol=tol):
            raise ValueError(f"{name}: eigenvalues that should come in {fixed}s do not: {eig}")
        values += list(eig.mean(axis=1))
        counts += [dim(K)] * len(eig)
    if sum(counts) != 2 * size + K:
        raise ValueError(f"multiplicities add up to {sum(counts)}, not {2 * size + K}")
    order = np.argsort(values)
    return np.asarray(values)[order], np.asarray(counts, dtype=np.int64)[order]
