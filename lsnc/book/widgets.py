"""Interactive explorers (ipywidgets): live only in a running kernel; the book's static pages carry the
kernel-free plotly views of :mod:`lsnc.book.interactive` beside them.

Every explorer is sliders or dropdowns above one output area that a draw function refills on every change
(:func:`slider_panel`): the figure is rendered to PNG here and the Output's ``outputs`` replaced in one
assignment (:func:`set_outputs`), so what a reader sees is what the ``outputs`` hold, testable without a
frontend; an invalid combination prints a one-line message instead of a traceback."""

from __future__ import annotations

import numpy as np

from ..config import TrainConfig
from ..vocab import MAIN_DELTA, is_delta


def figure_output(fig) -> dict:
    """A matplotlib figure as an output (PNG) of an ipywidgets Output, rendered here so that the widget's
    ``outputs`` hold it with or without a kernel (and tests can read them)."""
    import base64
    import io

    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": "<Figure>"}}


def text_output(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text if text.endswith("\n") else text + "\n"}


def set_outputs(out, draw) -> None:
    """Fill the Output ``out`` with what ``draw()`` returns (a figure, or ``(figure, text or None)``); an invalid
    combination (ValueError, e.g. s + δ >= 1) or any other failure becomes a one-line message, never a
    traceback. The outputs are replaced in one assignment (no flicker, nothing left from the last draw)."""
    try:
        result = draw()
        fig, text = result if isinstance(result, tuple) else (result, None)
        items = ([text_output(text)] if text else []) + [figure_output(fig)]
    except ValueError as exc:
        items = [text_output(f"Not drawn: {exc}")]
    except Exception as exc:  # noqa: BLE001 (a reader's slider position must not print a traceback)
        items = [text_output(f"Could not draw this setting ({type(exc).__name__}: {exc})", "stderr")]
    out.outputs = tuple(items)


def slider_panel(sliders: dict, draw):
    """Sliders above an output area; ``draw(values) -> (figure, text or None)`` is re-run on every change.

    An explicit Output + observe rather than ipywidgets.interactive: interactive's first draw blocks
    notebook execution by nbclient (the book build) until the cell timeout."""
    import ipywidgets as w

    out = w.Output()

    def redraw(*_):
        set_outputs(out, lambda: draw({k: s.value for k, s in sliders.items()}))

    for s in sliders.values():
        s.observe(redraw, "value")
    redraw()
    return w.VBox([*sliders.values(), out])


def _float_slider(value: float, lo: float, hi: float, step: float, description: str):
    import ipywidgets as w
    return w.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                         style={"description_width": "110px"}, layout=w.Layout(width="420px"))


def _int_slider(value: int, lo: int, hi: int, description: str):
    import ipywidgets as w
    return w.IntSlider(value=value, min=lo, max=hi, description=description, style={"description_width": "110px"},
                       layout=w.Layout(width="420px"))


def closed_form_explorer(num_classes: int = 10, n_per_class: int = 380, lambda_w: float = TrainConfig.lambda_w,
                         lambda_h: float = TrainConfig.lambda_h, delta: float = MAIN_DELTA):
    """Sliders for δ, log10 λ_W, log10 λ_H, K and n driving :func:`lsnc.book.plots.theory.plot_closed_form`; the
    penalties start at UFM-style training's defaults (``lsnc train --ufm``)."""
    from .plots.theory import plot_closed_form

    sliders = {
        "delta": _float_slider(delta, 0.0, 0.99, 0.01, "δ"),
        "log10_lambda_w": _float_slider(float(np.log10(lambda_w)), -6, -1, 0.1, "log10 λ_W"),
        "log10_lambda_h": _float_slider(float(np.log10(lambda_h)), -8, -1, 0.1, "log10 λ_H"),
        "num_classes": _int_slider(num_classes, 2, 200, "K classes"),
        "n_per_class": _int_slider(n_per_class, 1, 5000, "n per class"),
    }
    return slider_panel(sliders, lambda v: (plot_closed_form(v["num_classes"], v["n_per_class"],
                                                             10 ** v["log10_lambda_w"], 10 ** v["log10_lambda_h"],
                                                             v["delta"]), None))


def ufm_dynamics_explorer():
    """Sliders for δ, λ (= λ_W = λ_H), K and the step size driving :func:`lsnc.book.plots.theory.ufm_dynamics`."""
    from .interactive import DYNAMICS_FIXED, DYNAMICS_SETTINGS
    from .plots.theory import ufm_dynamics

    start = {**DYNAMICS_SETTINGS[0], **DYNAMICS_FIXED}  # the explorer's first setting: the theory page's UFM
    sliders = {
        "delta": _float_slider(MAIN_DELTA, 0.0, 0.9, 0.01, "δ"),
        "log10_lambda": _float_slider(float(np.log10(start["lambda_wh"])), -4, -1.5, 0.1, "log10 λ_W = λ_H"),
        "num_classes": _int_slider(start["num_classes"], 2, 8, "K classes"),
        "lr": _float_slider(start["lr"], 0.5, 10.0, 0.5, "step size"),
    }
    return slider_panel(sliders, lambda v: ufm_dynamics(v["num_classes"], start["n_per_class"], 10 ** v["log10_lambda"],
                                                        v["delta"], v["lr"]))


def run_browser(selection):
    """Dropdowns (dataset, kind, δ, seed) showing every curve of the chosen run
    (:func:`lsnc.book.plots.training.plot_run`)."""
    import ipywidgets as w

    from .plots.training import plot_run

    runs = selection.runs
    if not runs:
        return w.HTML(f"<b>Nothing to browse.</b> {selection.message or ''}")
    ds_dd = w.Dropdown(options=selection.datasets, description="dataset")
    kind_dd = w.Dropdown(options=["standard", "UFM-style"], description="kind")
    delta_dd = w.Dropdown(description="δ")
    seed_dd = w.Dropdown(description="seed")
    out = w.Output()

    def matching(delta=None):
        ufm = kind_dd.value == "UFM-style"
        rs = [r for r in runs if r.dataset == ds_dd.value and bool(r.config.get("ufm")) == ufm]
        return rs if delta is None else [r for r in rs if is_delta(r.config["delta"], delta)]

    def refresh_delta(*_):
        deltas = sorted({r.config["delta"] for r in matching()})
        delta_dd.options = [(f"{d:g}", d) for d in deltas]
        if deltas:
            delta_dd.value = deltas[0]
        refresh_seed()

    def refresh_seed(*_):
        seeds = sorted({r.config["seed"] for r in matching(delta_dd.value)})
        seed_dd.options = seeds
        if seeds:
            seed_dd.value = seeds[0]
        redraw()

    def redraw(*_):
        chosen = [r for r in matching(delta_dd.value) if r.config["seed"] == seed_dd.value]
        if not chosen:
            out.outputs = (text_output("no finished run with these settings"),)
            return
        set_outputs(out, lambda: plot_run(chosen[0]))

    for dd, fn in ((ds_dd, refresh_delta), (kind_dd, refresh_delta), (delta_dd, refresh_seed), (seed_dd, redraw)):
        dd.observe(fn, "value")
    refresh_delta()
    return w.VBox([w.HBox([ds_dd, kind_dd]), w.HBox([delta_dd, seed_dd]), out])
