"""Gradient descent on the UFM, and the CE-vs-LS convergence comparison (same start, several δ and seeds)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .hessian import block_numbers_vs_delta, condition_numbers_vs_delta
from .problem import DTYPE, UFMProblem, logit_distance, single_thread


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
    """Plain full-batch gradient descent (float64, the closed-form gradient) from a seeded random start.

    Records every ``record_every`` iterations (and the last). Stops early once the logit distance
    is below ``stop_below`` (if given), or when the objective is no longer finite (divergence)."""
    if lr <= 0 or steps < 0 or record_every < 1:
        raise ValueError("need lr > 0, steps >= 0 and record_every >= 1")
    y = problem.labels()
    W, H, b = (t.clone() for t in (start if start is not None else random_start(problem, seed, init_scale)))
    params = [W, H, b]
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
        value, grads = problem.objective_and_gradient(W, H, b, y)
        diverged = not math.isfinite(value)
        if t % record_every == 0 or t == steps or diverged:
            record(t, value, grads)
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
        kappa_lower = spectrum_against_baseline(sp, "kappa_restricted") == "lower"
        softmax_kappa_lower = spectrum_against_baseline(sp, "kappa_softmax") == "lower"
        min_curv_higher = spectrum_against_baseline(sp, "restricted_min") == "higher"
        return {
            "ls_faster_tight_all_seeds": faster_tight,
            "ls_faster_loose_all_seeds": faster_loose,
            "ls_lower_full_condition_number": kappa_lower,
            "ls_lower_softmax_condition_number": softmax_kappa_lower,
            "ls_higher_smallest_curvature": min_curv_higher,
            # the paper's causal claim: LS is faster *because* its (full-Hessian) condition number is lower
            "supports_claim": faster_tight and faster_loose and kappa_lower,
        }


def ls_against_ce(ce_value: float, ls_values) -> str:
    """The theory's one deterministic comparison of a number across δ: "lower" when every LS value is below CE's,
    "higher" when every one is above, else "not uniformly lower" (a tie is not lower). The verdicts of
    :meth:`ConvergenceComparison.verdict`, the theory page and the claims page's C6 rows all use it."""
    ls = np.asarray(ls_values, dtype=float)
    return "lower" if (ls < ce_value).all() else "higher" if (ls > ce_value).all() else "not uniformly lower"


def spectrum_against_baseline(spectrum: dict, key: str) -> str:
    """:func:`ls_against_ce` of one key of a spectrum over δ (``spectrum[key][0]`` is the baseline, CE)."""
    return ls_against_ce(spectrum[key][0], spectrum[key][1:])


def compare_convergence(problem: UFMProblem, deltas, seeds, lr: float, steps: int, loose: float = 1e-2,
                        tight: float = 1e-6, init_scale: float = 1.0, record_every: int = 1,
                        lr_rule: str = "same", hessian_seed: int = 0, spectrum: str = "dense") -> ConvergenceComparison:
    """GD from the same random start (per seed) for each delta; deltas[0] is the baseline (normally 0 = CE).
    See :class:`ConvergenceComparison` for ``lr_rule``. ``spectrum``: "dense" (every key of
    :func:`condition_numbers_vs_delta`; small problems) or "blocks" (the exact full-Hessian and softmax numbers of
    :func:`block_numbers_vs_delta`, at any size)."""
    if lr_rule not in ("same", "inverse_max_curvature"):
        raise ValueError(f"lr_rule must be 'same' or 'inverse_max_curvature', got {lr_rule!r}")
    if spectrum not in ("dense", "blocks"):
        raise ValueError(f"spectrum must be 'dense' or 'blocks', got {spectrum!r}")
    deltas = np.asarray(deltas, dtype=float)
    seeds = np.asarray(seeds, dtype=int)
    spectrum = (condition_numbers_vs_delta(problem, deltas, seed=hessian_seed) if spectrum == "dense"
                else block_numbers_vs_delta(problem, deltas))
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
