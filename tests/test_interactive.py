"""The kernel-free figures (lsnc.book.interactive) and the live ipywidgets explorers (lsnc.book.widgets).

Widgets: every slider (and dropdown) is changed programmatically; the Output's ``outputs`` (what Jupyter
renders) must change and hold no traceback; an invalid combination prints a message."""

from __future__ import annotations

import json

import pytest

from lsnc.book import interactive as I
from lsnc.book import widgets as W
from lsnc.paths import book_dir
from lsnc.ufm import closed_form


# ------------------------------------------------------------------------------------------------
# ipywidgets
# ------------------------------------------------------------------------------------------------
def _output(panel):
    import ipywidgets as w
    outs = [c for c in panel.children if isinstance(c, w.Output)]
    assert len(outs) == 1
    return outs[0]


def _controls(panel):
    import ipywidgets as w
    found = []
    for c in panel.children:
        if isinstance(c, w.HBox):
            found += list(c.children)
        elif not isinstance(c, w.Output):
            found.append(c)
    return found


def _assert_clean(outputs):
    assert outputs, "the output area is empty"
    for o in outputs:
        assert o["output_type"] != "error"
        text = o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
        assert "Traceback" not in text, text


def _has_figure(outputs) -> bool:
    return any("image/png" in o.get("data", {}) for o in outputs)


def _other_value(slider):
    """A value of the slider different from its current one (within its range)."""
    step = getattr(slider, "step", 1) or 1
    return slider.value + step if slider.value + step <= slider.max else slider.value - step


def _exercise(panel, skip=()):
    out = _output(panel)
    _assert_clean(out.outputs)
    assert _has_figure(out.outputs)
    for s in _controls(panel):
        if s.description in skip:
            continue
        before = out.outputs
        s.value = _other_value(s)
        _assert_clean(out.outputs)
        assert out.outputs != before, f"changing {s.description!r} did not change the output"
    return out


def test_closed_form_explorer_every_slider():
    panel = W.closed_form_explorer()
    out = _exercise(panel)
    # s + δ >= 1 is not an error of the closed form: the figure says the minimizer is zero
    sliders = {s.description: s for s in _controls(panel)}
    sliders["δ"].value = 0.99
    sliders["log10 λ_W"].value = -1
    sliders["log10 λ_H"].value = -1
    _assert_clean(out.outputs)
    assert _has_figure(out.outputs)


def test_ufm_dynamics_explorer_every_slider_and_invalid_combination():
    panel = W.ufm_dynamics_explorer()
    out = _exercise(panel)
    assert any(o["output_type"] == "stream" and "κ" in o["text"] for o in out.outputs)  # the numbers
    sliders = {s.description: s for s in _controls(panel)}
    # K = 8, λ = 10^-1.5, δ = 0.9: s + δ >= 1, no nonzero minimizer, no condition number: a message
    sliders["log10 λ_W = λ_H"].value = -1.5
    sliders["K classes"].value = 8
    sliders["δ"].value = 0.9
    _assert_clean(out.outputs)
    assert not _has_figure(out.outputs)
    (msg,) = out.outputs
    assert msg["output_type"] == "stream" and msg["text"].startswith("Not drawn:") and "s + delta" in msg["text"]
    sliders["δ"].value = 0.05  # back to a valid setting: the figure again
    assert _has_figure(out.outputs)


def test_run_browser_every_dropdown():
    from lsnc import book
    sel = book.select(None, None, ufm=None)
    assert sel, "the repository's runs/ holds committed runs"
    panel = W.run_browser(sel)
    out = _output(panel)
    _assert_clean(out.outputs)
    changed, redrawn = 0, 0
    for dd in _controls(panel):
        options = [o[1] if isinstance(o, tuple) else o for o in dd.options]
        others = [o for o in options if o != dd.value]
        if not others:
            continue
        before = out.outputs
        dd.value = others[0]
        _assert_clean(out.outputs)
        changed += 1
        redrawn += out.outputs != before
    assert changed >= 2 and redrawn >= 1  # the group and the run at least can be chosen, and the view follows


def test_set_outputs_turns_errors_into_messages():
    import ipywidgets as w
    out = w.Output()
    W.set_outputs(out, lambda: (_ for _ in ()).throw(ValueError("s + delta >= 1")))
    assert out.outputs == ({"output_type": "stream", "name": "stdout", "text": "Not drawn: s + delta >= 1\n"},)
    W.set_outputs(out, lambda: 1 / 0)
    assert out.outputs[0]["name"] == "stderr" and "ZeroDivisionError" in out.outputs[0]["text"]


# ------------------------------------------------------------------------------------------------
# the precomputed grids and the plotly figures
# ------------------------------------------------------------------------------------------------
def test_closed_form_grid_matches_the_closed_form():
    st = dict(num_classes=10, n_per_class=100, lambda_w=1e-3, lambda_h=1e-3)
    (t,) = I.closed_form_grid([st], [0.0, 0.05, 0.95])
    for j, d in enumerate([0.0, 0.05, 0.95]):
        sol = closed_form(10, 1000, 1e-3, 1e-3, d)
        assert t["w_norm"][j] == sol.w_norm and t["p_y"][j] == sol.p_y and t["exists"][j] == sol.exists
    assert "W = H = 0" in I.closed_form_text(t, 2) and "< 1" in I.closed_form_text(t, 1)


def _slider_steps(fig):
    (slider,) = fig.layout.sliders
    return slider.steps


def test_closed_form_figure_slider_switches_markers_and_numbers():
    tables = I.closed_form_grid(I.CLOSED_FORM_SETTINGS[:2], [0.0, 0.1, 0.5])
    fig = I.closed_form_figure(tables, delta=0.1, active_setting=1)
    steps = _slider_steps(fig)
    assert [s.label for s in steps] == ["0", "0.1", "0.5"] and fig.layout.sliders[0].active == 1
    data0, _, idx = steps[0].args
    data2, _, _ = steps[2].args
    assert data0["x"] != data2["x"] and data0["text"] != data2["text"]
    # each step holds the grid's values, not interpolated ones
    assert data2["y"][0] == pytest.approx([tables[0]["w_norm"][2], tables[0]["h_norm"][2]], rel=1e-4)
    # the menu shows one setting's traces at a time
    (menu,) = fig.layout.updatemenus
    vis = [b.args[0]["visible"] for b in menu.buttons]
    assert len(vis) == 2 and not any(a and b for a, b in zip(*vis))
    assert [tr.visible for tr in fig.data] == vis[1]


def test_dynamics_grid_and_figure_small():
    grids = I.dynamics_grid([dict(num_classes=3, lambda_wh=5e-3)], [0.0, 0.1], steps=200, record_every=20)
    (g,) = grids
    ce, ls = g["rows"]
    assert ce["kappa_full"] > 1 and ls["kappa_softmax"] < ce["kappa_softmax"]
    fig = I.dynamics_figure(grids, delta=0.1)
    steps = _slider_steps(fig)
    assert steps[0].args[0]["y"][0] != steps[1].args[0]["y"][0]  # the LS curve changes with δ
    assert "CE: κ" in steps[1].args[0]["text"][2][0] and "LS δ=0.1: κ" in steps[1].args[0]["text"][2][0]


def test_sweep_figure_on_committed_runs():
    from lsnc import book
    sel = book.select(None, None, min_deltas=3)
    if not sel:
        pytest.skip("no committed sweep")
    fig = I.sweep_figure(sel.runs)
    steps = _slider_steps(fig)
    deltas = sorted({float(r.config["delta"]) for r in sel.runs})
    assert len(steps) == len(deltas)
    texts = [next(iter(s.args[1].values())) for s in steps]
    assert len(set(texts)) == len(texts)  # each δ prints its own numbers


def test_grid_note_states_grid_and_rule():
    text = I.grid_note("Closed form", I.CLOSED_FORM_DELTAS).data
    assert "0, 0.01, …, 0.99" in text and "100 values" in text and "no interpolation" in text


def test_shipped_plotly_js_is_the_pinned_plottys():
    shipped = book_dir() / "_static" / I.PLOTLY_JS
    assert shipped.exists(), "run: python -c 'from lsnc.book import interactive; interactive.write_plotly_js()'"
    assert shipped.read_text(encoding="utf-8") == I.plotly_js(), \
        "book/_static/plotly.min.js is not the pinned plotly's: python -c 'from lsnc.book import " \
        "interactive; interactive.write_plotly_js()'"


def test_show_carries_no_plotly_js():
    """The pages load book/_static/plotly.min.js in their head (Jupyter Book lists every .js of _static); the
    figures' HTML has no copy of it and no CDN address."""
    import plotly.graph_objects as go
    html = I.show(go.Figure())._repr_html_()
    assert "Plotly.newPlot" in html and "<script src" not in html and "cdn" not in html.lower()
    assert len(html) < 10_000


def test_the_dynamics_start_from_the_theory_pages_ufm():
    """The explorer's first dynamics setting is the theory page's UFM: its UFM has λ_W = λ_H and d = K + 1, as the
    explorer's (one λ slider, d = K + 1), so the two draw the same problem."""
    from lsnc.book.interactive import DYNAMICS_FIXED, DYNAMICS_SETTINGS
    from lsnc.book.theory import THEORY_PAGE as P

    assert P["lambda_h"] == P["lambda_w"] and P["dim"] == P["num_classes"] + 1
    first = {**DYNAMICS_SETTINGS[0], **DYNAMICS_FIXED}
    assert (first["num_classes"], first["lambda_wh"], first["n_per_class"], first["lr"]) == (
        P["num_classes"], P["lambda_w"], P["n_per_class"], P["lr"])
