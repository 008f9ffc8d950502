"""Where NC3 comes from, over training (the claims page; the numbers: :mod:`lsnc.book.nc3`)."""

from __future__ import annotations

from matplotlib.lines import Line2D

from ...vocab import NC_COLUMNS, loss_label
from ..nc3 import NC3_IN_SPAN, NC3_IN_SPAN_WHITENED, NC3_WHITENED, SPAN_FRACTION, with_in_span_whitened
from ..summary import metrics_table
from .style import grid, loss_colour
from .training import _label_of, _line_band


def plot_nc3_decomposition(runs):
    """One column per run group (the runs of :func:`lsnc.book.nc3.final_decomposition`), CE blue and LS red, mean
    over seeds with the band from the smallest to the largest seed. Rows: W against the class means M (NC3, solid)
    and against A = M Sigma_B^+ (dashed); the same for W P, the part of W in the span of the means (both log
    scale); the fraction ||W P|| / ||W||. None when there are no runs."""
    if not runs:
        return None
    df = with_in_span_whitened(metrics_table(runs))
    groups = list(dict.fromkeys(df["dataset"]))
    fig, axes = grid(3, len(groups), width=3.6, height=2.3)
    rows = ((NC_COLUMNS["NC3"], NC3_WHITENED, "W"), (NC3_IN_SPAN, NC3_IN_SPAN_WHITENED, "WP"),
            (SPAN_FRACTION, None, "‖WP‖ / ‖W‖"))
    for j, dataset in enumerate(groups):
        g = df[df["dataset"] == dataset]
        for delta, runs_of_loss in g.groupby("delta"):
            for i, (solid, dashed, _) in enumerate(rows):
                _line_band(axes[i, j], runs_of_loss, solid, loss_colour(delta))
                if dashed:
                    _line_band(axes[i, j], runs_of_loss, dashed, loss_colour(delta), ls="--")
        axes[0, j].set_title(_label_of(df, dataset), fontsize=9)
        axes[0, j].set_yscale("log")
        axes[1, j].set_yscale("log")
        axes[2, j].set_ylim(top=1.0)
        axes[2, j].set_xlabel("epoch")
    for i, (_, _, what) in enumerate(rows):
        axes[i, 0].set_ylabel(what + (" against M, A" if i < 2 else ""))
    deltas = sorted(set(df["delta"]))
    handles = [Line2D([], [], color=loss_colour(d), lw=2, label=loss_label(d)) for d in deltas]
    handles += [Line2D([], [], color="k", lw=1.5, label="against M (NC3)"),
                Line2D([], [], color="k", lw=1.5, ls="--", label="against A = MΣ_B⁺")]
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 2 * len(groups)), frameon=False,
               fontsize=9)
    return fig
