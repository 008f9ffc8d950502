"""Interactive figures that need no kernel: every value is computed by lsnc at build time on a stated grid and
embedded in the page as a plotly figure, whose δ slider (and, where there is one, its setting menu) switch
between the precomputed values in the browser. Nothing is computed in the browser: the slider shows the values
of the grid point it stands on (no interpolation between grid points).

- :func:`closed_form_grid` / :func:`closed_form_figure`: the UFM closed form (norms, logit gap, p_y, whether
  s + δ < 1) for each δ of :data:`CLOSED_FORM_DELTAS` and each setting (K, n, λ) of :data:`CLOSED_FORM_SETTINGS`;
- :func:`dynamics_grid` / :func:`dynamics_figure`: the two condition numbers at the minimizer and gradient
  descent, CE against LS(δ), for each δ of :data:`DYNAMICS_DELTAS` and each setting of :data:`DYNAMICS_SETTINGS`;
- :func:`sweep_figure`: the committed runs of a δ sweep (fig5), one δ at a time over the others in grey;
- :func:`show` (the cell's value) and :func:`grid_note` (the grid and the rule, stated on the page).

plotly.js is shipped once, as ``book/_static/plotly.min.js`` (the pinned plotly's own file, :func:`write_plotly_js`);
Jupyter Book 1 adds every ``.js`` file of book/_static to the head of each page (``html_js_files``), so every page
loads it from its own ``_static/`` folder (browser-cached after the first page): the pages work from ``file://``
with no network, and the figures' HTML carries no plotly.js.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..paths import book_dir
from ..vocab import MAIN_DELTA, NC_COLUMNS, is_delta, loss_label
from .plots.style import CE_COLOUR, COLUMN_TITLES, LS_COLOUR
from .plots.training import SWEEP_COLUMNS
from .theory import THEORY_PAGE, gd_point

#: the file name of plotly.js under book/_static
PLOTLY_JS = "plotly.min.js"

#: δ grid of the closed form: 0, 0.01, ..., 0.99
CLOSED_FORM_DELTAS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(100))
#: settings of the closed form's menu: K ∈ {4, 10, 100} × λ_W = λ_H ∈ {1e-4, 1e-3, 5e-3}, n = 100 per class
CLOSED_FORM_SETTINGS: tuple[dict, ...] = tuple(dict(num_classes=K, n_per_class=100, lambda_w=lam, lambda_h=lam)
                                               for K in (4, 10, 100) for lam in (1e-4, 1e-3, 5e-3))
#: δ grid of gradient descent and the condition numbers (finer near the paper's small δ)
DYNAMICS_DELTAS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.9)
#: settings of the dynamics' menu, the first the theory page's UFM (its K, λ_W = λ_H, n per class and step size;
#: d = K + 1; 1000 steps, seed 0: the explorer's static view)
DYNAMICS_SETTINGS: tuple[dict, ...] = (
    dict(num_classes=THEORY_PAGE["num_classes"], lambda_wh=THEORY_PAGE["lambda_w"]),
    dict(num_classes=THEORY_PAGE["num_classes"], lambda_wh=1e-2),
    dict(num_classes=3, lambda_wh=THEORY_PAGE["lambda_w"]))
DYNAMICS_FIXED = dict(n_per_class=THEORY_PAGE["n_per_class"], lr=THEORY_PAGE["lr"], steps=1000, seed=0,
                      record_every=10)
#: the distance GD must reach for "iterations to converge" (the theory page's)
TIGHT = THEORY_PAGE["tight"]



# ------------------------------------------------------------------------------------------------
# plotly.js, shipped once
# ------------------------------------------------------------------------------------------------
def plotly_js() -> str:
    """The pinned plotly's own plotly.js (minified), as shipped in book/_static."""
    from plotly.offline import get_plotlyjs
    return get_plotlyjs()


def write_plotly_js(static_dir: str | Path | None = None) -> Path:
    """Write :func:`plotly_js` to ``static_dir / plotly.min.js`` (default: book/_static) when it differs; the path."""
    path = Path(static_dir if static_dir is not None else book_dir() / "_static") / PLOTLY_JS
    text = plotly_js()
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


class PlotlyHTML:
    """A figure as the HTML the book embeds: a div and plotly's own newPlot call, no plotly.js (``include_plotlyjs``
    as in ``plotly.io.to_html``; the book's pages load the shipped file once, in their head)."""

    def __init__(self, fig, include_plotlyjs: bool | str = False):
        self.fig = fig
        self.include_plotlyjs = include_plotlyjs

    def to_html(self) -> str:
        return self.fig.to_html(full_html=False, include_plotlyjs=self.include_plotlyjs,
                                config={"displaylogo": False, "responsive": True})

    def _repr_html_(self) -> str:
        return self.to_html()


def show(fig) -> PlotlyHTML:
    """The value a page's cell ends with: the figure as HTML. plotly.js is not in it: Jupyter Book 1 lists every
    ``.js`` file of book/_static in each page's head, so ``_static/plotly.min.js`` is loaded once per page."""
    return PlotlyHTML(fig, False)


def grid_note(name: str, deltas: Sequence[float], settings: Sequence[str] | None = None):
    """The sentence under a figure stating its grid and the rule (Markdown)."""
    from IPython.display import Markdown
    ds = list(deltas)
    if len(ds) > 12 and np.allclose(np.diff(ds), ds[1] - ds[0]):
        grid = f"{ds[0]:g}, {ds[1]:g}, …, {ds[-1]:g} (step {ds[1] - ds[0]:g}, {len(ds)} values)"
    else:
        grid = ", ".join(f"{d:g}" for d in ds) + f" ({len(ds)} values)"
    text = (f"**{name}: precomputed grid.** δ ∈ {{{grid}}}"
            + (f"; settings in the menu: {'; '.join(settings)}" if settings else "")
            + ". The slider shows the values computed at the grid point it stands on (nearest grid point; no "
              "interpolation). Everything was computed by lsnc when the book was built; the page needs no kernel.")
    return Markdown(text)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _r(values, digits: int = 5) -> list:
    """Plain floats rounded to ``digits`` significant digits (small, JSON-able; NaN/inf -> None)."""
    out = []
    for v in np.asarray(values, dtype=float).ravel():
        out.append(float(f"{v:.{digits}g}") if np.isfinite(v) else None)
    return out


def _rgb(colour) -> str:
    from matplotlib.colors import to_hex
    return to_hex(colour)


def _slider(deltas: Sequence[float], steps_args: list, active: int, labels: Sequence[str] | None = None,
            prefix: str = "δ = ") -> dict:
    """A plotly slider over ``deltas``; step j applies ``steps_args[j]`` (method "update")."""
    labels = list(labels) if labels is not None else [f"{d:g}" for d in deltas]
    many = len(deltas) > 20  # tick labels would overlap: hide them, the current value is printed above
    return dict(active=active, currentvalue=dict(prefix=prefix, font=dict(size=14, color="#222")), pad=dict(t=40, b=10),
                len=1.0, x=0.0, font=dict(size=1 if many else 11, color="rgba(0,0,0,0)" if many else "#444"),
                ticklen=2 if many else 5,
                steps=[dict(label=lab, method="update", args=args) for lab, args in zip(labels, steps_args)])


def _setting_menu(labels: Sequence[str], groups: Sequence[Sequence[int]], n_traces: int, active: int) -> dict:
    """A dropdown showing one group of traces (one setting) at a time; traces in no group stay visible."""
    grouped = {i for g in groups for i in g}
    buttons = []
    for label, group in zip(labels, groups):
        visible = [True if (i in group or i not in grouped) else False for i in range(n_traces)]
        buttons.append(dict(label=label, method="restyle", args=[{"visible": visible}]))
    return dict(buttons=buttons, active=active, direction="down", x=0.0, xanchor="left", y=1.3, yanchor="top",
                showactive=True, pad=dict(r=4, t=4))


def _nearest(deltas: Sequence[float], value: float) -> int:
    return int(np.argmin(np.abs(np.asarray(deltas, dtype=float) - value)))


def _text_panel(fig, row: int, col: int) -> None:
    """Hide the axes of the subplot that holds the printed numbers (one text trace at (0, 0.5))."""
    fig.update_xaxes(visible=False, range=[0, 1], fixedrange=True, row=row, col=col)
    fig.update_yaxes(visible=False, range=[0, 1], fixedrange=True, row=row, col=col)


def _marker_line(xref: str, x: float) -> dict:
    return dict(type="line", xref=xref, yref=f"{xref.replace('x', 'y')} domain", x0=x, x1=x, y0=0, y1=1,
                line=dict(color="black", width=1, dash="dot"))


# ------------------------------------------------------------------------------------------------
# the closed form
# ------------------------------------------------------------------------------------------------
def setting_label(setting: dict) -> str:
    """Short menu label of a closed-form or dynamics setting."""
    K = setting["num_classes"]
    if "lambda_wh" in setting:
        return f"K={K}, λ_W=λ_H={setting['lambda_wh']:g}"
    lam = (f"λ_W=λ_H={setting['lambda_w']:g}" if setting["lambda_w"] == setting["lambda_h"]
           else f"λ_W={setting['lambda_w']:g}, λ_H={setting['lambda_h']:g}")
    return f"K={K}, n={setting['n_per_class']}, {lam}"


def closed_form_grid(settings: Sequence[dict] = CLOSED_FORM_SETTINGS,
                     deltas: Sequence[float] = CLOSED_FORM_DELTAS) -> list[dict]:
    """Per setting, :func:`lsnc.ufm.closed_form_vs_delta` on ``deltas`` (w_norm, h_norm, logit_gap, p_y, exists,
    s, ...) with the setting and its smoothed target 1 - δ + δ/K."""
    from .. import ufm
    out = []
    for st in settings:
        K, n = st["num_classes"], st["n_per_class"]
        t = ufm.closed_form_vs_delta(K, K * n, st["lambda_w"], st["lambda_h"], list(deltas))
        t["target"] = ufm.true_class_target(t["delta"], K)
        t["setting"] = dict(st)
        out.append(t)
    return out


def closed_form_head(t: dict) -> str:
    """The printed line of setting table ``t`` that does not depend on δ (HTML for plotly)."""
    s = float(t["s"])
    where = f"for δ < 1 − s = {1 - s:.3g}" if s < 1 else "for no δ (s ≥ 1)"
    return f"<b>{setting_label(t['setting'])}</b>: s = √(KNλ_Wλ_H) = {s:.3g}; a nonzero minimizer exists {where}"


def closed_form_text(t: dict, j: int) -> str:
    """The printed numbers of setting table ``t`` at grid point ``j`` (HTML for plotly)."""
    d, s = float(t["delta"][j]), float(t["s"])
    if not t["exists"][j]:
        return (f"δ = {d:g}: s + δ = {s + d:.3g} ≥ 1, <b>no nonzero minimizer: W = H = 0</b> (norms 0, logit gap 0, "
                f"p_y = 1/K = {1 / t['setting']['num_classes']:.3g})")
    return (f"δ = {d:g}: s + δ = {s + d:.3g} < 1;  ‖w_k‖ = {t['w_norm'][j]:.4g},  ‖h_i‖ = {t['h_norm'][j]:.4g},  "
            f"logit gap = {t['logit_gap'][j]:.4g},  p_y = {t['p_y'][j]:.4g} (target {t['target'][j]:.4g})")


def _chosen_marker(fig, x: list, *, col: int, legend: bool, y: list | None = None) -> None:
    """Black markers at the chosen δ (moved by the slider) in panel (1, col)."""
    import plotly.graph_objects as go
    fig.add_trace(go.Scatter(x=x, y=y or [0] * len(x), mode="markers", name="chosen δ", showlegend=legend,
                             marker=dict(color="black", size=9)), row=1, col=col)


def _text_line(fig, y: float, text: str, *, size: float) -> None:
    """One line of printed numbers in the text panel (row 2), restyled by the slider."""
    import plotly.graph_objects as go
    fig.add_trace(go.Scatter(x=[0], y=[y], mode="text", text=[text], textposition="middle right",
                             showlegend=False, hoverinfo="skip", textfont=dict(size=size)), row=2, col=1)


def _closed_form_traces(fig, t: dict) -> list[int]:
    """Add one setting's traces (curves, boundary, chosen-δ markers, printed numbers); return their indices.
    The last four are: the two chosen-δ markers, the heading, the numbers line."""
    import plotly.graph_objects as go
    first = len(fig.data)
    x = _r(t["delta"])
    fig.add_trace(go.Scatter(x=x, y=_r(t["w_norm"]), name="‖w_k‖", line=dict(color="purple"),
                             ), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=_r(t["h_norm"]), name="‖h_i‖", line=dict(color="olive")), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=_r(t["p_y"]), name="p_y at the minimizer", line=dict(color="green")),
                  row=1, col=2)
    fig.add_trace(go.Scatter(x=x, y=_r(t["target"]), name="target 1−δ+δ/K",
                             line=dict(color="green", dash="dot")), row=1, col=2)
    s = float(t["s"])
    if s < 1:  # the existence boundary δ = 1 - s
        top = float(np.nanmax(t["w_norm"].tolist() + t["h_norm"].tolist() + [1.0]))
        fig.add_trace(go.Scatter(x=[1 - s, 1 - s], y=[0, top], mode="lines", name="δ = 1 − s (boundary)",
                                 line=dict(color="grey", dash="dash", width=1)), row=1, col=1)
        fig.add_trace(go.Scatter(x=[1 - s, 1 - s], y=[0, 1], mode="lines", showlegend=False,
                                 line=dict(color="grey", dash="dash", width=1), hoverinfo="skip"), row=1, col=2)
    # the chosen δ: markers and the printed numbers (restyled by the slider)
    _chosen_marker(fig, [0, 0], col=1, legend=True)
    _chosen_marker(fig, [0], col=2, legend=False)
    _text_line(fig, 0.8, closed_form_head(t), size=13)
    _text_line(fig, 0.3, "", size=13)
    return list(range(first, len(fig.data)))


def _closed_form_steps(tables: Sequence[dict], deltas: list[float], dynamic: list[int]) -> list:
    """One slider step per grid δ: new marker positions and printed numbers of every setting."""
    steps = []
    for j, d in enumerate(deltas):
        xs, ys, texts = [], [], []
        for t in tables:
            w, h, p = (float(t[k][j]) for k in ("w_norm", "h_norm", "p_y"))
            xs += [[d, d], [d], [0]]
            ys += [_r([w, h]), _r([p]), [0.3]]
            texts += [None, None, [closed_form_text(t, j)]]
        steps.append([{"x": xs, "y": ys, "text": texts},
                      {"shapes": [_marker_line("x", d), _marker_line("x2", d)]}, dynamic])
    return steps


def _controls(fig, deltas: list[float], steps: list, active: int, labels: list[str], groups: list[list[int]],
              active_setting: int) -> None:
    """Start the figure in the active δ step and setting, then add the δ slider and the setting menu."""
    data_update, layout_update, idx = steps[active]
    for k, i in enumerate(idx):
        for key, values in data_update.items():
            setattr(fig.data[i], key, values[k])
    fig.update_layout(shapes=layout_update["shapes"])
    for i, tr in enumerate(fig.data):
        tr.visible = i in groups[active_setting]
    fig.update_layout(sliders=[_slider(deltas, steps, active)],
                      updatemenus=[_setting_menu(labels, groups, len(fig.data), active_setting)],
                      template="plotly_white",
                      legend=dict(orientation="h", x=0.0, xanchor="left", y=1.19, yanchor="top"))


def closed_form_figure(tables: Sequence[dict] | None = None, delta: float = MAIN_DELTA, active_setting: int = 4):
    """Norms (left) and p_y with the smoothed target (right) against δ, the chosen δ marked, its numbers printed
    below; a δ slider over the grid and a menu over the settings of ``tables`` (:func:`closed_form_grid`)."""
    from plotly.subplots import make_subplots

    tables = closed_form_grid() if tables is None else list(tables)
    deltas = [float(d) for d in tables[0]["delta"]]
    active_setting = min(active_setting, len(tables) - 1)
    fig = make_subplots(rows=2, cols=2, row_heights=[0.78, 0.22], vertical_spacing=0.16, horizontal_spacing=0.1,
                        specs=[[{}, {}], [{"colspan": 2}, None]],
                        subplot_titles=("norms at the global minimizer", "confidence at the minimizer", None))
    groups, dynamic = [], []
    for t in tables:
        group = _closed_form_traces(fig, t)
        dynamic += [group[-4], group[-3], group[-1]]  # the two markers and the δ line of the printed numbers
        groups.append(group)
    steps = _closed_form_steps(tables, deltas, dynamic)
    _controls(fig, deltas, steps, _nearest(deltas, delta), [setting_label(t["setting"]) for t in tables], groups,
              active_setting)
    fig.update_layout(height=650, margin=dict(t=140, b=30, l=60, r=20))
    fig.update_xaxes(title_text="label smoothing δ", range=[-0.02, 1.0], row=1, col=1)
    fig.update_xaxes(title_text="label smoothing δ", range=[-0.02, 1.0], row=1, col=2)
    fig.update_yaxes(title_text="norm", row=1, col=1)
    fig.update_yaxes(title_text="probability", range=[0, 1.02], row=1, col=2)
    _text_panel(fig, 2, 1)
    return fig


# ------------------------------------------------------------------------------------------------
# gradient descent and the condition numbers
# ------------------------------------------------------------------------------------------------
def dynamics_grid(settings: Sequence[dict] = DYNAMICS_SETTINGS, deltas: Sequence[float] = DYNAMICS_DELTAS,
                  n_per_class: int = DYNAMICS_FIXED["n_per_class"], lr: float = DYNAMICS_FIXED["lr"],
                  steps: int = DYNAMICS_FIXED["steps"], seed: int = DYNAMICS_FIXED["seed"],
                  record_every: int = DYNAMICS_FIXED["record_every"]) -> list[dict]:
    """Per setting and δ: gradient descent from the same random start (``step``, ``distance``: the relative logit
    distance to the optimum), iterations to :data:`TIGHT` (NaN: never), and the two condition numbers at the
    minimizer (``kappa_full``: the full Hessian with the symmetry directions removed; ``kappa_softmax``: the
    softmax Hessian), NaN where s + δ ≥ 1 (no nonzero minimizer): :func:`lsnc.book.theory.gd_point` at each."""
    out = []
    for st in settings:
        rows = [gd_point(st["num_classes"], n_per_class, st["lambda_wh"], d, lr=lr, steps=steps, seed=seed,
                         record_every=record_every, tight=TIGHT) for d in deltas]
        out.append(dict(setting=dict(st, n_per_class=n_per_class, lr=lr, steps=steps, seed=seed), rows=rows))
    return out


def _iters(row: dict) -> str:
    if row["diverged"]:
        return "diverged"
    return f"{int(row['iterations'])}" if np.isfinite(row["iterations"]) else f"not within {row.get('steps', '')}"


def dynamics_text(g: dict, j: int) -> str:
    """The printed numbers of dynamics grid entry ``g`` at δ index ``j`` (HTML lines for plotly)."""
    ce, ls = g["rows"][0], g["rows"][j]
    st = g["setting"]
    lines = [f"<b>{setting_label(st)}</b>, n={st['n_per_class']}, d=K+1, step {st['lr']:g}, seed {st['seed']}"]
    for name, row in (("CE", ce), (loss_label(ls["delta"]), ls)):
        if not row["exists"]:
            lines.append(f"{name}: s + δ ≥ 1, no nonzero minimizer (condition numbers undefined)")
            continue
        lines.append(f"{name}: κ(full Hessian, symmetry removed) = {row['kappa_full']:.4g},  "
                     f"κ(softmax Hessian) = {row['kappa_softmax']:.4g},  p_y = {row['p_y']:.3f},  "
                     f"iterations to distance {TIGHT:g}: {_iters(dict(row, steps=st['steps']))}")
    return "<br>".join(lines)


def _dynamics_traces(fig, g: dict, deltas: list[float]) -> list[int]:
    """Add one setting's traces (CE curve, LS curve, κ curves, chosen-δ markers, printed numbers); indices."""
    import plotly.graph_objects as go
    first = len(fig.data)
    ce = g["rows"][0]
    fig.add_trace(go.Scatter(x=_r(ce["step"]), y=_r(ce["distance"]), name="CE", line=dict(color=CE_COLOUR)),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=[0], y=[1], name="LS", line=dict(color=LS_COLOUR)), row=1, col=1)
    kf = [r["kappa_full"] for r in g["rows"]]
    ks = [r["kappa_softmax"] for r in g["rows"]]
    fig.add_trace(go.Scatter(x=deltas, y=_r(kf), mode="lines+markers", marker=dict(size=4),
                             name="κ full Hessian (symmetry removed)", line=dict(color="#9467bd")),
                  row=1, col=2)
    fig.add_trace(go.Scatter(x=deltas, y=_r(ks), mode="lines+markers", marker=dict(size=4),
                             name="κ softmax Hessian", line=dict(color="#8c564b", dash="dash")), row=1, col=2)
    _chosen_marker(fig, [0, 0], col=2, legend=True, y=[1, 1])
    _text_line(fig, 0.5, "", size=12.5)
    return list(range(first, len(fig.data)))


def _dynamics_steps(grids: Sequence[dict], deltas: list[float], dynamic: list[int]) -> list:
    """One slider step per grid δ: the LS curve, the κ markers and the printed numbers of every setting."""
    steps = []
    for j, d in enumerate(deltas):
        xs, ys, texts, names = [], [], [], []
        for g in grids:
            row = g["rows"][j]
            xs += [_r(row["step"]), [d, d], [0]]
            ys += [_r(row["distance"]), _r([row["kappa_full"], row["kappa_softmax"]]), [0.5]]
            texts += [None, None, [dynamics_text(g, j)]]
            names += [loss_label(d) if d else "LS (δ = 0 is CE)", "chosen δ", ""]
        steps.append([{"x": xs, "y": ys, "text": texts, "name": names}, {"shapes": [_marker_line("x2", d)]},
                      dynamic])
    return steps


def dynamics_figure(grids: Sequence[dict] | None = None, delta: float = MAIN_DELTA, active_setting: int = 0):
    """Left: GD distance to the optimum against iteration, CE and LS(δ) from the same start. Right: the two
    condition numbers against δ, the chosen δ marked. Numbers printed below; a δ slider and a setting menu."""
    from plotly.subplots import make_subplots

    grids = dynamics_grid() if grids is None else list(grids)
    deltas = [r["delta"] for r in grids[0]["rows"]]
    if deltas[0] != 0:
        raise ValueError("the dynamics grid must start at δ = 0 (CE, the reference curve)")
    active_setting = min(active_setting, len(grids) - 1)
    fig = make_subplots(rows=2, cols=2, row_heights=[0.76, 0.24], vertical_spacing=0.17, horizontal_spacing=0.1,
                        specs=[[{}, {}], [{"colspan": 2}, None]],
                        subplot_titles=("gradient descent, same start and step", "condition numbers at the minimizer",
                                        None))
    groups, dynamic = [], []
    for g in grids:
        group = _dynamics_traces(fig, g, deltas)
        dynamic += [group[1], group[-2], group[-1]]  # the LS curve, the chosen-δ markers, the printed numbers
        groups.append(group)
    steps = _dynamics_steps(grids, deltas, dynamic)
    _controls(fig, deltas, steps, _nearest(deltas, delta), [setting_label(g["setting"]) for g in grids], groups,
              active_setting)
    fig.update_layout(height=670, margin=dict(t=140, b=30, l=70, r=20))
    fig.update_xaxes(title_text="gradient-descent iteration", row=1, col=1)
    fig.update_yaxes(title_text="‖Z − Z*‖ / ‖Z*‖", type="log", exponentformat="power", range=[-11, 1],
                     row=1, col=1)
    fig.update_xaxes(title_text="label smoothing δ", row=1, col=2)
    fig.update_yaxes(title_text="condition number", type="log", row=1, col=2)
    _text_panel(fig, 2, 1)
    return fig


# ------------------------------------------------------------------------------------------------
# fig5: the committed runs of the δ sweep
# ------------------------------------------------------------------------------------------------


def sweep_table(runs) -> "object":
    """Mean over seeds per (dataset, δ, epoch) of :data:`SWEEP_COLUMNS`, with the number of seeds (without the
    stop rows the seed means of the figures leave out: :func:`.plots.style.stop_rows_off_the_grid`)."""
    from .plots.style import stop_rows_off_the_grid
    from .summary import metrics_table
    df = metrics_table(runs)
    df = df[~stop_rows_off_the_grid(df)].copy()
    cols = [c for c in SWEEP_COLUMNS if c in df.columns]
    for c in cols:
        df[c] = df[c].astype(float)
    g = df.groupby(["dataset", "label", "delta", "epoch"])
    out = g[cols].mean()
    out["seeds"] = g["seed"].nunique()
    return out.reset_index()


def sweep_text(table, delta: float) -> str:
    """The printed end-of-training numbers of ``delta``, one line per dataset (HTML lines for plotly)."""
    lines = []
    for (ds, label), sub in table.groupby(["dataset", "label"], sort=False):
        rows = sub[is_delta(sub["delta"], delta)]
        if rows.empty:
            lines.append(f"<b>{label}</b> ({ds}): no finished run at δ = {delta:g}")
            continue
        last = rows.loc[rows["epoch"].idxmax()]
        vals = ",  ".join(f"{COLUMN_TITLES[c]} = {last[c]:.3g}" for c in SWEEP_COLUMNS
                          if c in last.index and np.isfinite(last[c]))
        lines.append(f"<b>{label}</b> ({ds}), {loss_label(delta)}, epoch {int(last['epoch'])} (mean over "
                     f"{int(last['seeds'])} seed{'s' if last['seeds'] > 1 else ''}): {vals}")
    return "<br>".join(lines)


def sweep_figure(runs, delta: float = MAIN_DELTA):
    """Rows = datasets, columns = train error, NC1 (log), NC2, NC3 against epoch: every δ of the sweep in grey,
    the δ chosen with the slider in its colour; its end-of-training numbers printed below."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .plots.style import delta_colours

    table = sweep_table(runs)
    datasets = list(dict.fromkeys(zip(table["dataset"], table["label"])))
    deltas = sorted(float(d) for d in table["delta"].unique())
    colours = delta_colours(deltas)
    cols = [c for c in SWEEP_COLUMNS if c in table.columns]
    fig = make_subplots(rows=len(datasets), cols=len(cols), vertical_spacing=0.12, horizontal_spacing=0.07,
                        subplot_titles=[COLUMN_TITLES[c] + (" (log)" if c == NC_COLUMNS["NC1"] else "")
                                        for c in cols] + [""] * (len(cols) * (len(datasets) - 1)))
    dynamic, cells = [], []
    note_index = len(fig.layout.annotations)  # the printed numbers: the annotation after the subplot titles
    for i, (ds, label) in enumerate(datasets, start=1):
        sub = table[table["dataset"] == ds]
        for j, c in enumerate(cols, start=1):
            for d in deltas:  # context: every δ in grey
                r = sub[is_delta(sub["delta"], d)]
                fig.add_trace(go.Scatter(x=r["epoch"].tolist(), y=_r(r[c]), mode="lines", showlegend=False,
                                         line=dict(color="rgba(120,120,120,0.35)", width=1),
                                         name=loss_label(d), hovertemplate=f"{loss_label(d)}<br>"
                                         "epoch %{x}: %{y:.3g}<extra></extra>"), row=i, col=j)
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", showlegend=False, line=dict(width=2.6)),
                          row=i, col=j)
            dynamic.append(len(fig.data) - 1)
            cells.append((ds, c))
            if c == NC_COLUMNS["NC1"]:
                fig.update_yaxes(type="log", exponentformat="power", row=i, col=j)
            fig.update_xaxes(title_text="epoch" if i == len(datasets) else None, row=i, col=j)
        fig.update_yaxes(title_text=f"<b>{label}</b><br>{ds}", row=i, col=1)
    steps = []
    for d in deltas:
        xs, ys, colour = [], [], _rgb(colours[d])
        for ds, c in cells:
            r = table[(table["dataset"] == ds) & is_delta(table["delta"], d)]
            xs.append(r["epoch"].tolist())
            ys.append(_r(r[c]))
        steps.append([{"x": xs, "y": ys, "line.color": [colour] * len(cells), "name": [loss_label(d)] * len(cells)},
                      {f"annotations[{note_index}].text": sweep_text(table, d)}, dynamic])
    active = _nearest(deltas, delta)
    fig.add_annotation(text=sweep_text(table, deltas[active]), xref="paper", yref="paper", x=0, y=-0.2,
                       xanchor="left", yanchor="top", showarrow=False, align="left", font=dict(size=12.5))
    for k, i in enumerate(dynamic):
        fig.data[i].x, fig.data[i].y = steps[active][0]["x"][k], steps[active][0]["y"][k]
        fig.data[i].line.color = steps[active][0]["line.color"][k]
        fig.data[i].name = loss_label(deltas[active])
    slider = _slider(deltas, steps, active, labels=[loss_label(d) for d in deltas], prefix="drawn in colour: ")
    slider["y"] = -0.32
    slider["pad"] = dict(t=20, b=0)
    fig.update_layout(sliders=[slider], template="plotly_white", height=300 * len(datasets) + 230,
                      margin=dict(t=40, b=150, l=80, r=20))
    return fig


def sweep_note(runs):
    """The sentence under :func:`sweep_figure` stating what the slider steps through (Markdown)."""
    from IPython.display import Markdown

    from .summary import metrics_table
    deltas = sorted(float(d) for d in metrics_table(runs)["delta"].unique())
    return Markdown("**Interactive view (no kernel needed).** The slider steps through the δ values of the committed "
                    f"runs drawn above (δ ∈ {{{', '.join(f'{d:g}' for d in deltas)}}}); each step draws that δ "
                    "(mean over its seeds) in colour over every other δ in grey and prints its last evaluated "
                    "epoch below. Only committed runs are shown: nothing is interpolated between δ values.")
