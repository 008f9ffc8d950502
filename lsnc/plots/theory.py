"""Figures of the UFM theory (book/theory.ipynb): closed-form norms, condition numbers, GD convergence."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from lsnc.ufm import ConvergenceComparison


def plot_closed_form_norms(table: dict):
    """``table`` from ``ufm.closed_form_vs_delta``: ||w_k||, ||h_i|| and p_y of the minimizer vs delta."""
    fig, (ax_norm, ax_p) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    delta = table["delta"]
    ax_norm.plot(delta, table["w_norm"], label=r"$\|w_k\|$")
    ax_norm.plot(delta, table["h_norm"], label=r"$\|h_i\|$")
    ax_p.plot(delta, table["p_y"], color="C2", label=r"$p_y$ (true class)")
    ax_p.plot(delta, 1 - delta + delta / table["num_classes"], color="C2", ls=":", label="smoothed target")
    boundary = 1 - table["s"]
    for ax in (ax_norm, ax_p):
        ax.axvline(boundary, color="grey", ls="--", lw=1)
        ax.set_xlabel(r"label smoothing $\delta$")
        ax.legend(frameon=False)
    ax_norm.text(boundary, ax_norm.get_ylim()[1] * 0.95, r" $\delta = 1 - s$", va="top", color="grey")
    ax_norm.set_ylabel("norm at the global minimizer")
    ax_p.set_ylabel("probability")
    ax_norm.set_title("closed-form norms")
    ax_p.set_title("confidence at the minimizer")
    return fig


def plot_condition_numbers(spectrum: dict):
    """``spectrum`` from ``ufm.condition_numbers_vs_delta``: candidate condition numbers and the extreme
    eigenvalues of the full Hessian restricted to the complement of the symmetry directions."""
    fig, (ax_k, ax_e) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    delta = spectrum["delta"]
    ax_k.plot(delta, spectrum["kappa_restricted"], "o-", label="(a) full UFM Hessian, symmetry removed")
    ax_k.plot(delta, spectrum["kappa_features_block"], "s--", label="(c) H-block at fixed W*")
    ax_k.plot(delta, spectrum["kappa_softmax"], "^-", label=r"(b) softmax $\mathrm{diag}(p)-pp^\top$")
    ax_k.set_yscale("log")
    ax_k.set_xlabel(r"label smoothing $\delta$")
    ax_k.set_ylabel("condition number")
    ax_k.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax_k.set_title("condition number at the minimizer")
    ax_e.plot(delta, spectrum["restricted_min"], "o-", color="C3", label=r"$\lambda_{\min}$ (a)")
    ax_e.plot(delta, spectrum["restricted_max"], "o-", color="C4", label=r"$\lambda_{\max}$ (a)")
    ax_e.set_yscale("log")
    ax_e.set_xlabel(r"label smoothing $\delta$")
    ax_e.set_ylabel("eigenvalue")
    ax_e.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    ax_e.set_title("extreme curvatures (a)")
    return fig


def _distance_matrix(comparison: ConvergenceComparison, delta: float) -> np.ndarray:
    """[seed, iteration] logit distance, NaN after a run stopped (needs record_every = 1)."""
    trajs = [comparison.trajectories[(float(delta), int(seed))] for seed in comparison.seeds]
    length = max(int(t.step[-1]) + 1 for t in trajs)
    out = np.full((len(trajs), length), np.nan)
    for row, t in zip(out, trajs):
        row[t.step] = t.logit_distance
    return out


def plot_gd_convergence(comparison: ConvergenceComparison):
    """Left: logit distance to the optimum vs iteration, median over seeds with the min-max band, one
    colour per delta. Right: iterations to the loose / tight distance vs delta, one dot per seed."""
    fig, (ax_t, ax_i) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(comparison.deltas)))
    for colour, delta in zip(colours, comparison.deltas):
        dist = _distance_matrix(comparison, delta)
        steps = np.arange(dist.shape[1])
        with np.errstate(all="ignore"):
            finite = np.isfinite(dist).any(axis=0)
            lo = np.nanmin(np.where(finite, dist, 0), axis=0)
            hi = np.nanmax(np.where(finite, dist, 0), axis=0)
            med = np.nanmedian(np.where(finite, dist, 0), axis=0)
        name = "CE" if delta == 0 else rf"LS $\delta$={delta:g}"
        ax_t.plot(steps[finite], med[finite], color=colour, label=name)
        ax_t.fill_between(steps[finite], lo[finite], hi[finite], color=colour, alpha=0.25, lw=0)
    for thr in (comparison.loose, comparison.tight):
        ax_t.axhline(thr, color="grey", ls=":", lw=1)
    ax_t.set_yscale("log")
    ax_t.set_ylim(comparison.tight * 1e-2, 1e2)  # diverged runs would otherwise stretch the axis
    ax_t.set_xlabel("gradient-descent iteration")
    ax_t.set_ylabel(r"$\|Z - Z^*\|_F / \|Z^*\|_F$")
    rule = "same step" if comparison.lr_rule == "same" else r"step $\propto 1/\lambda_{\max}(\delta)$"
    ax_t.set_title(f"distance to the optimum ({rule}, {len(comparison.seeds)} seeds)")
    ax_t.legend(frameon=False, fontsize=8)
    rng = np.random.default_rng(0)  # horizontal jitter of the seed dots only
    width = 0.15 * (np.ptp(comparison.deltas) / max(len(comparison.deltas) - 1, 1) or 1.0)
    for arr, marker, label in ((comparison.iters_loose, "o", f"to {comparison.loose:g}"),
                               (comparison.iters_tight, "^", f"to {comparison.tight:g}")):
        # median over the seeds that arrived (those that did not are counted in the note below)
        arrived = np.isfinite(arr)
        median = np.array([np.median(row[ok]) if ok.any() else np.nan for row, ok in zip(arr, arrived)])
        line, = ax_i.plot(comparison.deltas, median, marker=marker, label=f"median iterations {label}")
        x = comparison.deltas[:, None] + rng.uniform(-width, width, arr.shape)
        ax_i.scatter(x[arrived], arr[arrived], s=12, color=line.get_color(), alpha=0.5)
    missing = (~np.isfinite(comparison.iters_tight)).sum(axis=1)
    if missing.any():
        note = ", ".join(f"δ={dl:g}: {m}/{len(comparison.seeds)}" for dl, m in zip(comparison.deltas, missing) if m)
        ax_i.text(0.02, 0.98, f"not arrived (diverged or out of steps): {note}", transform=ax_i.transAxes,
                  va="top", fontsize=8, color="C3")
    ax_i.set_xlabel(r"label smoothing $\delta$")
    ax_i.set_ylabel("iterations")
    ax_i.set_title("iterations to reach the distance")
    ax_i.legend(frameon=False, fontsize=8)
    return fig
