"""Unconstrained feature model (UFM) with label smoothing: closed form, gradient descent, Hessian.

The problem (features stored as rows, ``H`` is N x d, logits ``Z = H W^T + b`` are N x K)::

    min_{W,H,b}  (1/N) sum_i l_delta(W h_i + b, y_i)
                 + lambda_w/2 ||W||^2 + lambda_h/2 ||H||^2 + lambda_b/2 ||b||^2

with ``l_delta`` the cross entropy against the smoothed target ``(1-delta) onehot + delta/K``
(``F.cross_entropy(z, y, label_smoothing=delta)``), K balanced classes, n = N/K samples per class.

Derivation of the closed form (checked numerically in ``tests/test_ufm.py``)
-------------------------------------------------------------------------------
Assume the collapsed structure: b = 0, h_i = mu_{y_i}, and w_k = ||w|| u_k, mu_k = ||h|| u_k with
u_1..u_K a unit simplex ETF (u_k.u_j = -1/(K-1)). With rho = ||w|| ||h||, the correct logit is rho,
every wrong logit is -rho/(K-1), so the logit gap is g = rho K/(K-1).

* Loss. With p_y = e^g / (e^g + K - 1): l_delta(g) = log(e^g + K - 1) - (1 - delta (K-1)/K) g,
  so l'(g) = p_y - (1 - delta (K-1)/K).
* Penalty. lambda_w/2 K ||w||^2 + lambda_h/2 N ||h||^2 at fixed product rho is smallest (AM-GM) at
  ||w||^2 / ||h||^2 = n lambda_h / lambda_w, where it equals s rho with s = sqrt(K N lambda_w lambda_h).
* Stationarity in rho of f(rho) = l_delta(rho K/(K-1)) + s rho (f is convex in rho):
  p_y = 1 - (K-1)(s+delta)/K, i.e. e^g = K/(s+delta) - K + 1 =: e^{a_delta}.
  So g = a_delta = log(K/(s+delta) - K + 1), rho = (K-1)/K a_delta, and
  ||w_k|| = sqrt((K-1)/K a_delta) (n lambda_h/lambda_w)^{1/4},
  ||h_i|| = sqrt((K-1)/K a_delta) (n lambda_h/lambda_w)^{-1/4}
  (these agree with the paper's UFM analysis).
* f'(0) = s + delta - 1, so a nonzero minimizer exists iff s + delta < 1. Otherwise the global
  minimizer is W = 0, H = 0, b = 0 (objective log K); with lambda_b = 0 the bias is only fixed up to
  b + c 1, which does not change any softmax output.

The global minimizer is unique up to the joint rotation W -> W Q, H -> H Q (Q in O(d)) and, when
lambda_b = 0, the shift b -> b + c 1. Its logit matrix Z* (row-centred) is unique, which is why the
distance used throughout is ``logit_distance``: ||centre(Z) - Z*||_F / ||Z*||_F (absolute when Z* = 0),
where centre() subtracts each row's mean only when lambda_b = 0.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

DTYPE = torch.float64


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread (a context manager and a decorator). UFM tensors are tiny, so intra-op
    threads only add overhead (an order of magnitude when the cores are busy). Restores the setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def _validate(num_classes, num_samples, lambda_w, lambda_h, delta, lambda_b):
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if int(num_samples) != num_samples or num_samples < num_classes or num_samples % num_classes:
        raise ValueError(
            f"num_samples must be a positive multiple of num_classes (balanced classes), got "
            f"num_samples={num_samples!r}, num_classes={num_classes!r}; use n_per_class * num_classes"
        )
    for name, value in (("lambda_w", lambda_w), ("lambda_h", lambda_h)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(
                f"{name} must be a finite number > 0 (the closed form needs weight decay on both "
                f"W and H), got {value!r}"
            )
    if not (lambda_b >= 0 and math.isfinite(lambda_b)):
        raise ValueError(f"lambda_b must be a finite number >= 0, got {lambda_b!r}")
    if not (0.0 <= delta < 1.0):
        raise ValueError(
            f"delta (label smoothing) must lie in [0, 1): 0 is cross entropy, 1 is a uniform target "
            f"with nothing to learn; got {delta!r}"
        )


# ----------------------------------------------------------------------------------------------
# closed form
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UFMSolution:
    """Closed-form global minimizer of the UFM (see the module docstring for the derivation)."""

    num_classes: int
    num_samples: int
    lambda_w: float
    lambda_h: float
    lambda_b: float
    delta: float
    s: float  # sqrt(K N lambda_w lambda_h)
    exists: bool  # a nonzero minimizer exists (s + delta < 1)
    a_delta: float  # logit gap at the optimum; 0 when the minimizer is zero
    rho: float  # ||w_k|| ||h_i||
    w_norm: float  # ||w_k||, the same for every class
    h_norm: float  # ||h_i||, the same for every sample
    logit_correct: float  # w_{y_i}.h_i
    logit_wrong: float  # w_k.h_i, k != y_i
    p_y: float  # softmax probability of the true class
    loss: float  # mean smoothed cross entropy at the optimum
    objective: float  # loss + penalties

    @property
    def n_per_class(self) -> int:
        return self.num_samples // self.num_classes

    @property
    def logit_gap(self) -> float:
        return self.logit_correct - self.logit_wrong

    @property
    def p_wrong(self) -> float:
        return (1.0 - self.p_y) / (self.num_classes - 1)

    @property
    def W_frobenius(self) -> float:
        return math.sqrt(self.num_classes) * self.w_norm

    @property
    def H_frobenius(self) -> float:
        return math.sqrt(self.num_samples) * self.h_norm


def smoothed_ce_of_gap(gap: float, num_classes: int, delta: float) -> float:
    """Smoothed CE of logits whose correct entry exceeds all K-1 (equal) wrong entries by ``gap``."""
    K = num_classes
    # log(e^g + K - 1) computed stably
    log_partition = gap + math.log1p((K - 1) * math.exp(-gap)) if gap > 0 else math.log(math.exp(gap) + K - 1)
    return log_partition - (1.0 - delta * (K - 1) / K) * gap


def closed_form(num_classes, num_samples, lambda_w, lambda_h, delta, lambda_b=0.0) -> UFMSolution:
    """Global minimizer of the UFM with balanced classes (``num_samples`` = N, all classes equal)."""
    _validate(num_classes, num_samples, lambda_w, lambda_h, delta, lambda_b)
    K, N = int(num_classes), int(num_samples)
    n = N // K
    s = math.sqrt(K * N * lambda_w * lambda_h)
    exists = s + delta < 1.0
    if exists:
        a_delta = math.log(K / (s + delta) - K + 1)
        rho = (K - 1) / K * a_delta
        ratio = (n * lambda_h / lambda_w) ** 0.25  # ||w|| / sqrt(rho)
        w_norm, h_norm = math.sqrt(rho) * ratio, math.sqrt(rho) / ratio
    else:
        a_delta = rho = w_norm = h_norm = 0.0
    logit_correct, logit_wrong = rho, -rho / (K - 1)
    p_y = 1.0 / (1.0 + (K - 1) * math.exp(-a_delta))
    loss = smoothed_ce_of_gap(a_delta, K, delta)
    penalty = 0.5 * lambda_w * K * w_norm**2 + 0.5 * lambda_h * N * h_norm**2
    return UFMSolution(
        num_classes=K, num_samples=N, lambda_w=float(lambda_w), lambda_h=float(lambda_h),
        lambda_b=float(lambda_b), delta=float(delta), s=s, exists=exists, a_delta=a_delta, rho=rho,
        w_norm=w_norm, h_norm=h_norm, logit_correct=logit_correct, logit_wrong=logit_wrong, p_y=p_y,
        loss=loss, objective=loss + penalty,
    )


# ----------------------------------------------------------------------------------------------
# the problem as a torch function
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UFMProblem:
    """A concrete UFM instance: K classes, n samples per class, feature dimension d."""

    num_classes: int
    n_per_class: int
    dim: int
    lambda_w: float
    lambda_h: float
    delta: float
    lambda_b: float = 0.0

    def __post_init__(self):
        if int(self.n_per_class) != self.n_per_class or self.n_per_class < 1:
            raise ValueError(f"n_per_class must be an integer >= 1, got {self.n_per_class!r}")
        _validate(self.num_classes, self.num_classes * self.n_per_class, self.lambda_w,
                  self.lambda_h, self.delta, self.lambda_b)
        if int(self.dim) != self.dim or self.dim < self.num_classes - 1:
            raise ValueError(
                f"dim must be an integer >= num_classes - 1 = {self.num_classes - 1} so that a simplex "
                f"ETF fits in R^dim (the closed form assumes it); got dim={self.dim!r}"
            )

    @property
    def num_samples(self) -> int:
        return self.num_classes * self.n_per_class

    @property
    def num_params(self) -> int:
        return (self.num_classes + self.num_samples) * self.dim + self.num_classes

    def with_delta(self, delta: float) -> "UFMProblem":
        return replace(self, delta=delta)

    def solution(self) -> UFMSolution:
        return closed_form(self.num_classes, self.num_samples, self.lambda_w, self.lambda_h,
                           self.delta, self.lambda_b)

    def labels(self) -> torch.Tensor:
        return torch.arange(self.num_classes).repeat_interleave(self.n_per_class)

    def objective(self, W: torch.Tensor, H: torch.Tensor, b: torch.Tensor, y: torch.Tensor | None = None):
        y = self.labels() if y is None else y
        logits = H @ W.T + b
        loss = F.cross_entropy(logits, y, label_smoothing=self.delta)
        return loss + 0.5 * (self.lambda_w * W.pow(2).sum() + self.lambda_h * H.pow(2).sum()
                             + self.lambda_b * b.pow(2).sum())

    # flat parameter vector [W, H, b] (for the Hessian)
    def split(self, theta: torch.Tensor):
        K, N, d = self.num_classes, self.num_samples, self.dim
        return theta[: K * d].reshape(K, d), theta[K * d: (K + N) * d].reshape(N, d), theta[(K + N) * d:]

    @staticmethod
    def flatten(W, H, b) -> torch.Tensor:
        return torch.cat([W.reshape(-1), H.reshape(-1), b.reshape(-1)])

    def optimal_logits(self) -> torch.Tensor:
        sol = self.solution()
        Z = torch.full((self.num_samples, self.num_classes), sol.logit_wrong, dtype=DTYPE)
        Z[torch.arange(self.num_samples), self.labels()] = sol.logit_correct
        return Z


def simplex_etf(num_classes: int) -> torch.Tensor:
    """K unit vectors in R^{K-1} with pairwise inner product -1/(K-1) (rows of the result)."""
    K = num_classes
    centred = torch.eye(K, dtype=DTYPE) - 1.0 / K
    # orthonormal basis of the sum-zero subspace: its first K-1 eigenvectors (eigenvalue 1)
    eigval, eigvec = torch.linalg.eigh(centred)
    basis = eigvec[:, eigval > 0.5]  # K x (K-1)
    return centred @ basis / math.sqrt((K - 1) / K)


def random_orthonormal_columns(dim: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=DTYPE))
    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed
    return q[:, :k]


def optimal_point(problem: UFMProblem, seed: int = 0):
    """An explicit global minimizer (W, H, b, y): the closed-form ETF, randomly rotated into R^d."""
    sol = problem.solution()
    K, N, d = problem.num_classes, problem.num_samples, problem.dim
    y = problem.labels()
    b = torch.zeros(K, dtype=DTYPE)
    if not sol.exists:
        return torch.zeros(K, d, dtype=DTYPE), torch.zeros(N, d, dtype=DTYPE), b, y
    directions = simplex_etf(K) @ random_orthonormal_columns(d, K - 1, seed).T  # K x d, unit rows
    return sol.w_norm * directions, sol.h_norm * directions[y], b, y


# ----------------------------------------------------------------------------------------------
# distances to the optimum set
# ----------------------------------------------------------------------------------------------
def logit_distance(problem: UFMProblem, W, H, b) -> float:
    """||centre(Z) - Z*||_F / ||Z*||_F; absolute when Z* = 0. Invariant to the rotation symmetry."""
    Z = (H @ W.T + b).detach()
    if problem.lambda_b == 0:
        Z = Z - Z.mean(dim=1, keepdim=True)  # b -> b + c 1 changes nothing when lambda_b = 0
    Z_star = problem.optimal_logits()
    scale = torch.linalg.norm(Z_star)
    err = torch.linalg.norm(Z - Z_star)
    return float(err / scale) if scale > 0 else float(err)


def parameter_distance(problem: UFMProblem, W, H, b) -> float:
    """Relative distance of (W, H, b) to the orbit {(W* Q, H* Q, b*)}: Procrustes over Q in O(d)."""
    W_star, H_star, b_star, _ = optimal_point(problem)
    X = torch.cat([W, H]).detach()
    X_star = torch.cat([W_star, H_star])
    u, _, vh = torch.linalg.svd(X.T @ X_star)
    err2 = (X @ (u @ vh) - X_star).pow(2).sum()
    bb = b.detach() - (b.detach().mean() if problem.lambda_b == 0 else 0.0)
    err2 = err2 + (bb - b_star).pow(2).sum()
    scale = torch.linalg.norm(X_star)
    return float(err2.sqrt() / scale) if scale > 0 else float(err2.sqrt())


# ----------------------------------------------------------------------------------------------
# gradient descent
# ----------------------------------------------------------------------------------------------
@dataclass
class GDTrajectory:
    problem: UFMProblem
    lr: float
    seed: int
    step: np.ndarray  # iteration index of each record
    objective: np.ndarray
    objective_gap: np.ndarray  # objective - closed-form objective
    logit_distance: np.ndarray
    grad_norm: np.ndarray
    w_norm: np.ndarray  # mean ||w_k||
    h_norm: np.ndarray  # mean ||h_i||
    W: torch.Tensor = field(repr=False)
    H: torch.Tensor = field(repr=False)
    b: torch.Tensor = field(repr=False)

    def first_step_below(self, threshold: float, quantity: str = "logit_distance") -> int | None:
        """First recorded iteration from which ``quantity`` stays below ``threshold``; None if never."""
        values = getattr(self, quantity)
        above = np.nonzero(~(values < threshold))[0]
        if len(above) == 0:
            return int(self.step[0])
        last_above = above[-1]
        return None if last_above == len(values) - 1 else int(self.step[last_above + 1])


def random_start(problem: UFMProblem, seed: int, init_scale: float = 1.0):
    """Gaussian (W, H, b); entries with std init_scale/sqrt(d). Independent of delta, so CE and LS
    runs with the same seed start from the same point."""
    g = torch.Generator().manual_seed(seed)
    K, N, d = problem.num_classes, problem.num_samples, problem.dim
    std = init_scale / math.sqrt(d)
    W = torch.randn(K, d, generator=g, dtype=DTYPE) * std
    H = torch.randn(N, d, generator=g, dtype=DTYPE) * std
    b = torch.randn(K, generator=g, dtype=DTYPE) * std
    return W, H, b


@single_thread()
def gradient_descent(problem: UFMProblem, lr: float, steps: int, seed: int = 0, init_scale: float = 1.0,
                     record_every: int = 1, start=None, stop_below: float | None = None) -> GDTrajectory:
    """Plain full-batch gradient descent (float64, autograd) from a seeded random start.

    Records every ``record_every`` iterations (and the last). Stops early once the logit distance
    is below ``stop_below`` (if given), or when the objective is no longer finite (divergence)."""
    if lr <= 0 or steps < 0 or record_every < 1:
        raise ValueError("need lr > 0, steps >= 0 and record_every >= 1")
    y = problem.labels()
    W, H, b = (t.clone() for t in (start if start is not None else random_start(problem, seed, init_scale)))
    params = [W.requires_grad_(), H.requires_grad_(), b.requires_grad_()]
    best = problem.solution().objective
    rec = {k: [] for k in ("step", "objective", "objective_gap", "logit_distance", "grad_norm", "w_norm", "h_norm")}

    def record(t, value, grads):
        rec["step"].append(t)
        rec["objective"].append(value)
        rec["objective_gap"].append(value - best)
        rec["logit_distance"].append(logit_distance(problem, W, H, b))
        rec["grad_norm"].append(math.sqrt(sum(float(g.pow(2).sum()) for g in grads)))
        rec["w_norm"].append(float(W.detach().norm(dim=1).mean()))
        rec["h_norm"].append(float(H.detach().norm(dim=1).mean()))

    for t in range(steps + 1):
        value = problem.objective(W, H, b, y)
        grads = torch.autograd.grad(value, params)
        diverged = not math.isfinite(float(value.detach()))
        if t % record_every == 0 or t == steps or diverged:
            record(t, float(value.detach()), grads)
            if stop_below is not None and rec["logit_distance"][-1] < stop_below:
                break
        if t == steps or diverged:  # a diverged run keeps its last (non-finite) record
            break
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g
    arrays = {k: np.asarray(v) for k, v in rec.items()}
    return GDTrajectory(problem=problem, lr=lr, seed=seed, W=W.detach(), H=H.detach(), b=b.detach(), **arrays)


@single_thread()
def minimize_lbfgs(problem: UFMProblem, seed: int = 0, init_scale: float = 1.0, max_iter: int = 2000):
    """Numerical minimizer by L-BFGS (strong Wolfe) from a seeded random start: (W, H, b)."""
    y = problem.labels()
    W, H, b = (t.clone().requires_grad_() for t in random_start(problem, seed, init_scale))
    opt = torch.optim.LBFGS([W, H, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-13,
                            tolerance_change=1e-16, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = problem.objective(W, H, b, y)
        value.backward()
        return value

    opt.step(closure)
    return W.detach(), H.detach(), b.detach()


# ----------------------------------------------------------------------------------------------
# Hessian and condition numbers
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# CE vs LS convergence comparison
# ----------------------------------------------------------------------------------------------
@dataclass
class ConvergenceComparison:
    """Iterations for GD (same start per seed) to reach a loose and a tight logit distance, per delta.

    ``lrs[i]`` is the step used for ``deltas[i]``: the same for all deltas with ``lr_rule="same"``, or
    ``lr / restricted_max(delta)`` with ``lr_rule="inverse_max_curvature"`` (each delta gets the step its own
    largest curvature allows, so its local rate is set by its condition number)."""

    deltas: np.ndarray
    seeds: np.ndarray
    lr_rule: str
    lrs: np.ndarray  # [delta]
    loose: float
    tight: float
    iters_loose: np.ndarray  # [delta, seed]; nan = not reached (budget exhausted or diverged)
    iters_tight: np.ndarray
    diverged: np.ndarray  # [delta, seed] bool
    spectrum: dict  # condition_numbers_vs_delta(...) at the same deltas
    trajectories: dict = field(repr=False)  # (delta, seed) -> GDTrajectory

    @property
    def predicted_tight_phase(self) -> np.ndarray:
        """Iterations from the loose to the tight distance predicted by the local linear rate
        |1 - lr * restricted_min| (the slowest non-symmetry mode)."""
        rate = np.abs(1.0 - self.lrs * self.spectrum["restricted_min"])
        return np.log(self.loose / self.tight) / -np.log(rate)

    @property
    def measured_tight_phase(self) -> np.ndarray:
        """Median over seeds of (iterations to tight) - (iterations to loose)."""
        return np.median(self.iters_tight - self.iters_loose, axis=1)

    def median_iters(self, which: str = "tight") -> np.ndarray:
        arr = self.iters_tight if which == "tight" else self.iters_loose
        return np.array([np.median(row) if np.all(np.isfinite(row)) else np.nan for row in arr])

    def faster_than_baseline_fraction(self, which: str = "tight") -> np.ndarray:
        """Per delta: fraction of seeds where that delta needs fewer iterations than deltas[0] (CE when
        deltas[0] == 0) from the same start. A run that never arrives counts as infinitely slow."""
        arr = self.iters_tight if which == "tight" else self.iters_loose
        arr = np.where(np.isfinite(arr), arr, np.inf)
        return (arr < arr[0]).mean(axis=1)

    def verdict(self) -> dict:
        """Plain answers computed from the numbers (every delta > deltas[0] against deltas[0])."""
        faster_tight = bool(np.all(self.faster_than_baseline_fraction("tight")[1:] == 1.0))
        faster_loose = bool(np.all(self.faster_than_baseline_fraction("loose")[1:] == 1.0))
        sp = self.spectrum
        kappa_lower = bool(np.all(sp["kappa_restricted"][1:] < sp["kappa_restricted"][0]))
        softmax_kappa_lower = bool(np.all(sp["kappa_softmax"][1:] < sp["kappa_softmax"][0]))
        min_curv_higher = bool(np.all(sp["restricted_min"][1:] > sp["restricted_min"][0]))
        return {
            "ls_faster_tight_all_seeds": faster_tight,
            "ls_faster_loose_all_seeds": faster_loose,
            "ls_lower_full_condition_number": kappa_lower,
            "ls_lower_softmax_condition_number": softmax_kappa_lower,
            "ls_higher_smallest_curvature": min_curv_higher,
            # the paper's causal claim: LS is faster *because* its (full-Hessian) condition number is lower
            "supports_claim": faster_tight and faster_loose and kappa_lower,
        }


def compare_convergence(problem: UFMProblem, deltas, seeds, lr: float, steps: int, loose: float = 1e-2,
                        tight: float = 1e-6, init_scale: float = 1.0, record_every: int = 1,
                        lr_rule: str = "same", hessian_seed: int = 0) -> ConvergenceComparison:
    """GD from the same random start (per seed) for each delta; deltas[0] is the baseline (normally 0 = CE).
    See :class:`ConvergenceComparison` for ``lr_rule``."""
    if lr_rule not in ("same", "inverse_max_curvature"):
        raise ValueError(f"lr_rule must be 'same' or 'inverse_max_curvature', got {lr_rule!r}")
    deltas = np.asarray(deltas, dtype=float)
    seeds = np.asarray(seeds, dtype=int)
    spectrum = condition_numbers_vs_delta(problem, deltas, seed=hessian_seed)
    lrs = np.full(len(deltas), float(lr)) if lr_rule == "same" else lr / spectrum["restricted_max"]
    shape = (len(deltas), len(seeds))
    iters_loose, iters_tight = np.full(shape, np.nan), np.full(shape, np.nan)
    diverged = np.zeros(shape, dtype=bool)
    trajectories = {}
    for i, dl in enumerate(deltas):
        prob = problem.with_delta(float(dl))
        for j, seed in enumerate(seeds):
            traj = gradient_descent(prob, float(lrs[i]), steps, seed=int(seed), init_scale=init_scale,
                                    record_every=record_every, stop_below=tight * 0.1)
            trajectories[(float(dl), int(seed))] = traj
            diverged[i, j] = not np.isfinite(traj.objective[-1])
            for arr, thr in ((iters_loose, loose), (iters_tight, tight)):
                k = traj.first_step_below(thr)
                arr[i, j] = np.nan if k is None else k
    return ConvergenceComparison(deltas=deltas, seeds=seeds, lr_rule=lr_rule, lrs=lrs, loose=loose, tight=tight,
                                 iters_loose=iters_loose, iters_tight=iters_tight, diverged=diverged,
                                 spectrum=spectrum, trajectories=trajectories)


def closed_form_vs_delta(num_classes, num_samples, lambda_w, lambda_h, deltas, lambda_b=0.0) -> dict[str, np.ndarray]:
    """The closed form's scalars (w_norm, h_norm, a_delta, p_y, objective, exists, ...) over a grid of deltas."""
    sols = [closed_form(num_classes, num_samples, lambda_w, lambda_h, float(dl), lambda_b) for dl in deltas]
    keys = ("w_norm", "h_norm", "a_delta", "rho", "logit_gap", "p_y", "loss", "objective", "exists")
    out = {"delta": np.asarray(deltas, dtype=float), "s": sols[0].s, "num_classes": sols[0].num_classes}
    out.update({k: np.array([getattr(sol, k) for sol in sols]) for k in keys})
    return out
