"""Every figure of the UFM theory (book/theory and the explorer): the closed form against δ, the condition
numbers, gradient descent CE against LS. Each function returns a matplotlib Figure (:func:`ufm_dynamics`: the
figure and a one-line summary)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ... import ufm
from ...vocab import MAIN_DELTA, loss_label
from .style import CE_COLOUR, LS_COLOUR, delta_colours

DELTA_AXIS = r"label smoothing $\delta$"


# ------------------------------------------------------------------------------------------------
# the closed form
# ------------------------------------------------------------------------------------------------
def plot_closed_form_norms(problem: ufm.UFMProblem, max_delta: float = 0.99, num_deltas: int = 199):
    """||w_k||, ||h_i|| and p_y of the minimizer of ``problem`` (its K, N, λ_W, λ_H) against δ in
    [0, ``max_delta``], with the boundary δ = 1 - s where the minimizer collapses to zero."""
    table = ufm.closed_form_vs_delta(problem.num_classes, problem.num_samples, problem.lambda_w, problem.lambda_h,
                                     np.linspace(0, max_delta, num_deltas))
    fig, (ax_norm, ax_p) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    delta = table["delta"]
    ax_norm.plot(delta, table["w_norm"], label=r"$\|w_k\|$")
    ax_norm.plot(delta, table["h_norm"], label=r"$\|h_i\|$")
    ax_p.plot(delta, table["p_y"], color="C2", label=r"$p_y$ (true class)")
    ax_p.plot(delta, ufm.true_class_target(delta, table["num_classes"]), color="C2", ls=":", label="smoothed target")
    boundary = 1 - table["s"]
    for ax in (ax_norm, ax_p):
        ax.axvline(boundary, color="grey", ls="--", lw=1)
        ax.set_xlabel(DELTA_AXIS)
        ax.legend(frameon=False)
    ax_norm.text(boundary, ax_norm.get_ylim()[1] * 0.95, r" $\delta = 1 - s$", va="top", color="grey")
    ax_norm.set_ylabel("norm at the global minimizer")
    ax_p.set_ylabel("probability")
    ax_norm.set_title("closed-form norms")
    ax_p.set_title("confidence at the minimizer")
    return fig


def plot_closed_form(num_classes: int, n_per_class: int, lambda_w: float, lambda_h: float, delta: float,
                     lambda_b: float = 0.0, num_deltas: int = 200):
    """The UFM closed form against delta (norms, and p_y with the smoothed target), with the chosen delta
    marked and its values printed (the explorer's sliders redraw it)."""
    N = num_classes * n_per_class
    deltas = np.linspace(0.0, 0.999, num_deltas)
    t = ufm.closed_form_vs_delta(num_classes, N, lambda_w, lambda_h, deltas, lambda_b)
    sol = ufm.closed_form(num_classes, N, lambda_w, lambda_h, delta, lambda_b)
    fig, (ax_n, ax_p) = plt.subplots(1, 2, figsize=(9.5, 3.3), constrained_layout=True)
    ax_n.plot(deltas, t["w_norm"], color="tab:purple", label=r"$\|w_k\|$")
    ax_n.plot(deltas, t["h_norm"], color="tab:olive", label=r"$\|h_i\|$")
    ax_n.plot([delta, delta], [sol.w_norm, sol.h_norm], "o", color="black")
    ax_p.plot(deltas, t["p_y"], color="tab:green", label=r"$p_y$ at the minimizer")
    ax_p.plot(deltas, ufm.true_class_target(deltas, num_classes), color="tab:green", ls=":", label=r"target $1-\delta+\delta/K$")
    ax_p.plot([delta], [sol.p_y], "o", color="black")
    for ax in (ax_n, ax_p):
        ax.axvline(delta, color="black", lw=0.8, alpha=0.5)
        if sol.s < 1:
            ax.axvline(1 - sol.s, color="grey", ls="--", lw=0.8)
        ax.set_xlabel(DELTA_AXIS)
        ax.legend(frameon=False, fontsize=8)
    ax_n.set_ylabel("norm at the global minimizer")
    ax_p.set_ylabel("probability")
    state = (f"‖w‖={sol.w_norm:.3g}, ‖h‖={sol.h_norm:.3g}, p_y={sol.p_y:.3g}" if sol.exists
             else "s + δ ≥ 1: the minimizer is W = H = 0")
    fig.suptitle(f"K={num_classes}, n={n_per_class}, λ_W={lambda_w:g}, λ_H={lambda_h:g}, δ={delta:g}:  {state}",
                 fontsize=10)
    return fig


# ------------------------------------------------------------------------------------------------
# condition numbers
# ------------------------------------------------------------------------------------------------
def plot_condition_numbers(spectrum: dict):
    """``spectrum`` from ``ufm.condition_numbers_vs_delta``: candidate condition numbers and the extreme
    eigenvalues of the full Hessian restricted to the complement of the symmetry directions."""
    fig, (ax_k, ax_e) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    delta = spectrum["delta"]
    ax_k.plot(delta, spectrum["kappa_restricted"], "o-", label="(a) full UFM Hessian, symmetry removed")
    ax_k.plot(delta, spectrum["kappa_features_block"], "s--", label="(c) H-block at fixed W*")
    ax_k.plot(delta, spectrum["kappa_softmax"], "^-", label=r"(b) softmax $\mathrm{diag}(p)-pp^\top$")
    ax_k.set_yscale("log")
    ax_k.set_xlabel(DELTA_AXIS)
    ax_k.set_ylabel("condition number")
    ax_k.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax_k.set_title("condition number at the minimizer")
    ax_e.plot(delta, spectrum["restricted_min"], "o-", color="C3", label=r"$\lambda_{\min}$ (a)")
    ax_e.plot(delta, spectrum["restricted_max"], "o-", color="C4", label=r"$\lambda_{\max}$ (a)")
    ax_e.set_yscale("log")
    ax_e.set_xlabel(DELTA_AXIS)
    ax_e.set_ylabel("eigenvalue")
    ax_e.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    ax_e.set_title("extreme curvatures (a)")
    return fig


def plot_kappa_by_size(table):
    """``table`` from ``lsnc.book.theory.size_table``: condition number (a) and its extreme curvatures against δ,
    one colour per UFM size."""
    fig, (ax_k, ax_e) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for colour, (label, rows) in zip(plt.cm.tab10.colors, table.groupby("UFM", sort=False)):
        ax_k.plot(rows["δ"], rows["κ"], "o-", color=colour, label=label)
        ax_e.plot(rows["δ"], rows["λ_max"], "o-", color=colour)
        ax_e.plot(rows["δ"], rows["λ_min"], "s--", color=colour)
    for ax, ylabel, title in ((ax_k, "condition number (a)", "full UFM Hessian, symmetry removed"),
                              (ax_e, "eigenvalue", r"$\lambda_{\max}$ (o, solid), $\lambda_{\min}$ (s, dashed)")):
        ax.set_yscale("log")
        ax.set_xlabel(DELTA_AXIS)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
    fig.legend(loc="outside lower center", frameon=False, fontsize=8, ncol=1)
    return fig


def plot_kappa_by_classes(table, delta: float):
    """``table`` from ``lsnc.book.theory.classes_table``: κ(LS) / κ(CE) against the number of classes, one
    colour per UFM; below the line at 1 LS has the lower condition number."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    for colour, (label, rows) in zip(plt.cm.tab10.colors, table.groupby("UFM", sort=False)):
        rows = rows.dropna(subset=["LS / CE"])
        ax.plot(rows["K"], rows["LS / CE"], "o-", color=colour, label=label)
    ax.axhline(1.0, color="0.4", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of classes K")
    ax.set_ylabel(f"κ({loss_label(delta)}) / κ(CE)")
    ax.set_title("full UFM Hessian, symmetry removed: LS over CE", fontsize=10)
    fig.legend(loc="outside lower center", frameon=False, fontsize=8, ncol=1)
    return fig


# ------------------------------------------------------------------------------------------------
# gradient descent
# ------------------------------------------------------------------------------------------------
def _distance_matrix(comparison: ufm.ConvergenceComparison, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """The recorded iterations (every one, or every ``record_every``-th) at which every seed still running has a
    record, and the [seed, iteration] logit distance there, NaN after a run stopped. A run's last record off the
    grid (its budget's end, or a divergence) is dropped where another seed goes on."""
    trajs = [comparison.trajectories[(float(delta), int(seed))] for seed in comparison.seeds]
    steps = np.unique(np.concatenate([t.step for t in trajs]))
    # a step is kept where each run has a record there or has already stopped
    keep = np.all([np.isin(steps, t.step) | (steps > t.step[-1]) for t in trajs], axis=0)
    steps = steps[keep]
    out = np.full((len(trajs), len(steps)), np.nan)
    for row, t in zip(out, trajs):
        mine = np.isin(t.step, steps)
        row[np.searchsorted(steps, t.step[mine])] = t.logit_distance[mine]
    return steps, out


def _distance_panel(ax, comparison: ufm.ConvergenceComparison) -> None:
    """Logit distance to the optimum against iteration: median over seeds, min-max band, one colour per δ (the
    book's: CE blue, :func:`.style.delta_colours`)."""
    colours = delta_colours(comparison.deltas)
    for delta in comparison.deltas:
        colour = colours[float(delta)]
        steps, dist = _distance_matrix(comparison, delta)
        with np.errstate(all="ignore"):
            finite = np.isfinite(dist).any(axis=0)
            lo = np.nanmin(np.where(finite, dist, 0), axis=0)
            hi = np.nanmax(np.where(finite, dist, 0), axis=0)
            med = np.nanmedian(np.where(finite, dist, 0), axis=0)
        ax.plot(steps[finite], med[finite], color=colour, label=loss_label(delta, tex=True))
        ax.fill_between(steps[finite], lo[finite], hi[finite], color=colour, alpha=0.25, lw=0)
    for thr in (comparison.loose, comparison.tight):
        ax.axhline(thr, color="grey", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(comparison.tight * 1e-2, 1e2)  # diverged runs would otherwise stretch the axis
    ax.set_xlabel("gradient-descent iteration")
    ax.set_ylabel(r"$\|Z - Z^*\|_F / \|Z^*\|_F$")
    rule = "same step" if comparison.lr_rule == "same" else r"step $\propto 1/\lambda_{\max}(\delta)$"
    ax.set_title(f"distance to the optimum ({rule}, {len(comparison.seeds)} seeds)")
    ax.legend(frameon=False, fontsize=8)


def _iterations_panel(ax, comparison: ufm.ConvergenceComparison) -> None:
    """Iterations to the loose / tight distance against δ: median line, one dot per seed that arrived."""
    rng = np.random.default_rng(0)  # horizontal jitter of the seed dots only
    width = 0.15 * (np.ptp(comparison.deltas) / max(len(comparison.deltas) - 1, 1) or 1.0)
    for arr, marker, label in ((comparison.iters_loose, "o", f"to {comparison.loose:g}"),
                               (comparison.iters_tight, "^", f"to {comparison.tight:g}")):
        # median over the seeds that arrived (those that did not are counted in the note below)
        arrived = np.isfinite(arr)
        median = np.array([np.median(row[ok]) if ok.any() else np.nan for row, ok in zip(arr, arrived)])
        line, = ax.plot(comparison.deltas, median, marker=marker, label=f"median iterations {label}")
        x = comparison.deltas[:, None] + rng.uniform(-width, width, arr.shape)
        ax.scatter(x[arrived], arr[arrived], s=12, color=line.get_color(), alpha=0.5)
    missing = (~np.isfinite(comparison.iters_tight)).sum(axis=1)
    if missing.any():
        note = ", ".join(f"δ={dl:g}: {m}/{len(comparison.seeds)}" for dl, m in zip(comparison.deltas, missing) if m)
        ax.text(0.02, 0.98, f"not arrived (diverged or out of steps): {note}", transform=ax.transAxes,
                va="top", fontsize=8, color="C3")
    ax.set_xlabel(DELTA_AXIS)
    ax.set_ylabel("iterations")
    ax.set_title("iterations to reach the distance")
    ax.legend(frameon=False, fontsize=8)


def plot_gd_convergence(comparison: ufm.ConvergenceComparison):
    """Left: logit distance to the optimum vs iteration, median over seeds with the min-max band, one
    colour per delta. Right: iterations to the loose / tight distance vs delta, one dot per seed."""
    fig, (ax_t, ax_i) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    _distance_panel(ax_t, comparison)
    _iterations_panel(ax_i, comparison)
    return fig


def plot_gd_by_classes(comparisons: dict[int, ufm.ConvergenceComparison]):
    """``comparisons`` from ``lsnc.book.theory.gd_by_classes``: one distance-to-the-optimum panel per number of
    classes, CE against LS, each titled with κ(LS)/κ(CE)."""
    fig, axes = plt.subplots(1, len(comparisons), figsize=(5 * len(comparisons), 3.6), constrained_layout=True,
                             squeeze=False)
    for ax, (K, comp) in zip(axes[0], comparisons.items()):
        _distance_panel(ax, comp)
        kappa = comp.spectrum["kappa_restricted"]
        step = (f"step {comp.lrs[0] * comp.spectrum['restricted_max'][0]:g}/λ_max(δ)"
                if comp.lr_rule == "inverse_max_curvature" else f"step {comp.lrs[0]:g}")
        ax.set_title(f"K = {K}: κ(LS)/κ(CE) = {kappa[-1] / kappa[0]:.2f}, {step}, {len(comp.seeds)} seeds",
                     fontsize=9)
    return fig


def ufm_dynamics(num_classes: int = 4, n_per_class: int = 3, lambda_wh: float = 5e-3, delta: float = MAIN_DELTA,
                 lr: float = 5.0, steps: int = 1000, seed: int = 0):
    """Gradient descent on a small UFM from one random start, CE against LS(δ), same step size
    (:func:`lsnc.book.theory.gd_point`); returns the figure (distance to the optimum against iteration) and a
    one-line summary with both Hessians' condition numbers (the full Hessian with the symmetry directions removed,
    and the softmax Hessian)."""
    from ..theory import gd_point
    points = [(d, gd_point(num_classes, n_per_class, lambda_wh, d, lr=lr, steps=steps, seed=seed, record_every=5))
              for d in (0.0, delta)]
    if not all(p["exists"] for _, p in points):  # no condition number to state: the sliders say why
        raise ValueError("the minimizer is zero here (s + delta >= 1): pick a smaller delta or lambdas")
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    parts = []
    for (d, point), colour in zip(points, (CE_COLOUR, LS_COLOUR)):
        ax.semilogy(point["step"], point["distance"], color=colour, label=loss_label(d))
        parts.append(f"{loss_label(d)}: κ(full Hessian, symmetry removed) = {point['kappa_full']:.3g}, "
                     f"κ(softmax Hessian) = {point['kappa_softmax']:.3g}, p_y = {point['p_y']:.3f}")
    ax.set_xlabel("gradient-descent iteration")
    ax.set_ylabel("relative logit distance to optimum")
    ax.set_title(f"UFM, K={num_classes}, n={n_per_class}, λ_W=λ_H={lambda_wh:g}, step {lr:g}, seed {seed}",
                 fontsize=9)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig, "; ".join(parts)
