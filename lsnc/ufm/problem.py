"""The unconstrained feature model (UFM) with label smoothing: the problem, its closed-form minimizer, distances.

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
from dataclasses import dataclass, replace

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

    def objective_and_gradient(self, W: torch.Tensor, H: torch.Tensor, b: torch.Tensor,
                               y: torch.Tensor | None = None) -> tuple[float, tuple[torch.Tensor, ...]]:
        """:meth:`objective` and its gradient in closed form (what autograd gives, without the graph): with
        G = (softmax(Z) - T) / N, T = (1 - δ) onehot(y) + δ / K, the gradients are G^T H + λ_W W, G W + λ_H H and
        the column sums of G + λ_b b."""
        y = self.labels() if y is None else y
        with torch.no_grad():
            logits = H @ W.T + b
            value = float(F.cross_entropy(logits, y, label_smoothing=self.delta) + 0.5 * (
                self.lambda_w * W.pow(2).sum() + self.lambda_h * H.pow(2).sum() + self.lambda_b * b.pow(2).sum()))
            G = (torch.softmax(logits, dim=1) - smoothed_targets(y, self.num_classes, self.delta, logits.dtype)) / len(y)
            return value, (G.T @ H + self.lambda_w * W, G @ W + self.lambda_h * H, G.sum(0) + self.lambda_b * b)

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


def true_class_target(delta, num_classes: int):
    """The label-smoothing target of the true class, 1 - δ + δ/K (a number or an array of δ): the probability
    :func:`smoothed_targets` puts on the label, which the minimizer's p_y approaches as the penalties vanish."""
    return 1 - delta + delta / num_classes


def smoothed_targets(labels: torch.Tensor, num_classes: int, delta: float, dtype=DTYPE) -> torch.Tensor:
    """The label-smoothing targets T = (1 - δ) onehot(y) + δ / K (δ = 0: one-hot), one row per label: what
    ``F.cross_entropy(..., label_smoothing=δ)`` compares the softmax with, so its logit gradient is p - T."""
    return (1.0 - delta) * F.one_hot(labels, num_classes).to(dtype) + delta / num_classes  # label: true_class_target


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


def closed_form_vs_delta(num_classes, num_samples, lambda_w, lambda_h, deltas, lambda_b=0.0) -> dict[str, np.ndarray]:
    """The closed form's scalars (w_norm, h_norm, a_delta, p_y, objective, exists, ...) over a grid of deltas."""
    sols = [closed_form(num_classes, num_samples, lambda_w, lambda_h, float(dl), lambda_b) for dl in deltas]
    keys = ("w_norm", "h_norm", "a_delta", "rho", "logit_gap", "p_y", "loss", "objective", "exists")
    out = {"delta": np.asarray(deltas, dtype=float), "s": sols[0].s, "num_classes": sols[0].num_classes}
    out.update({k: np.array([getattr(sol, k) for sol in sols]) for k in keys})
    return out
