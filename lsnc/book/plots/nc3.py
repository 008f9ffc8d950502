"""Where NC3 comes from, over training (the claims page) and against δ (the δ figure's page); the numbers:
:mod:`lsnc.book.nc3`."""

from __future__ import annotations

from matplotlib.lines import Line2D

from ...vocab import NC_COLUMNS, loss_label
from ..nc3 import NC3_IN_SPAN, NC3_IN_SPAN_WHITENED, NC3_WHITENED, SPAN_FRACTION, with_in_span_whitened
from ..summary import metrics_table
from .style import dots_vs_delta, grid, group_label, line_band, loss_colour, row_title


def plot_nc3_decomposition(runs):
    """One row per run group (the runs of :func:`lsnc.book.nc3.final_decomposition`), CE blue and LS red, mean over
    seeds with the band from the smallest to the largest seed. Columns: W against the class means M (NC3, solid)
    and against A = M Sigma_B^+ (dashed); the same for W P, the part of W in the span of the means (both log
    scale); the fraction ||W P|| / ||W||. None when there are no runs."""
    if not runs:
        return None
    df = with_in_span_whitened(metrics_table(runs))
    groups = list(dict.fromkeys(df["dataset"]))
    fig, axes = grid(len(groups), 3, width=3.4, height=2.2)
    columns = ((NC_COLUMNS["NC3"], NC3_WHITENED, "W against M (NC3), against A"),
               (NC3_IN_SPAN, NC3_IN_SPAN_WHITENED, "WP against M, against A"), (SPAN_FRACTION, None, "‖WP‖ / ‖W‖"))
    for i, dataset in enumerate(groups):
        g = df[df["dataset"] == dataset]
        for delta, runs_of_loss in g.groupby("delta"):
            for j, (solid, dashed, _) in enumerate(columns):
                line_band(axes[i, j], runs_of_loss, solid, loss_colour(delta))
                if dashed:
                    line_band(axes[i, j], runs_of_loss, dashed, loss_colour(delta), ls="--")
        axes[i, 0].set_yscale("log")
        axes[i, 1].set_yscale("log")
        axes[i, 2].set_ylim(top=1.0)
        axes[i, 0].set_ylabel(group_label(df, dataset), fontsize=8)
    for j, (_, _, title) in enumerate(columns):
        axes[0, j].set_title(title, fontsize=9)
        axes[-1, j].set_xlabel("epoch")
    deltas = sorted(set(df["delta"]))
    handles = [Line2D([], [], color=loss_colour(d), lw=2, label=loss_label(d)) for d in deltas]
    handles += [Line2D([], [], color="k", lw=1.5, label="against M"),
                Line2D([], [], color="k", lw=1.5, ls="--", label=r"against $A = M\Sigma_B^+$")]
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), frameon=False, fontsize=9)
    return fig


def plot_decomposition_vs_delta(final):
    """One row per run group of ``final`` (:func:`lsnc.book.nc3.final_vs_delta`), against δ at the last evaluated
    epoch; dots are seeds, lines their mean. Columns: W against the class means M (NC3) and against
    A = M Sigma_B^+; the same for W P, the part of W in the span of the means (both log scale); the fraction
    ||W P|| / ||W||. None when ``final`` is empty."""
    if final.empty:
        return None
    groups = list(dict.fromkeys(final["dataset"]))
    fig, axes = grid(len(groups), 3, width=3.4, height=2.4)
    pairs = ((NC_COLUMNS["NC3"], NC3_WHITENED, "W against M (NC3), against A"),
             (NC3_IN_SPAN, NC3_IN_SPAN_WHITENED, "WP against M, against A"))
    for i, dataset in enumerate(groups):
        g = final[final["dataset"] == dataset]
        for j, (against_m, against_a, _) in enumerate(pairs):
            dots_vs_delta(axes[i, j], g, against_m, "black", "against M")
            dots_vs_delta(axes[i, j], g, against_a, "tab:red", r"against $A = M\Sigma_B^+$", marker="s", ls="--")
            axes[i, j].set_yscale("log")
            axes[i, j].set_ylabel("squared distance")
        dots_vs_delta(axes[i, 2], g, SPAN_FRACTION, "tab:purple")
        axes[i, 2].set_ylim(top=1.0)
        axes[i, 2].set_ylabel("fraction of ‖W‖ in the span")
        for ax in axes[i]:
            ax.set_xlabel(r"label smoothing $\delta$")
        row_title(axes[i, 0], group_label(final, dataset))
    for j, title in enumerate([p[2] for p in pairs] + ["‖WP‖ / ‖W‖"]):
        axes[0, j].set_title(title, fontsize=9)
    axes[0, 0].legend(frameon=False, fontsize=8)
    return fig
