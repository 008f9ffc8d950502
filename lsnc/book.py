"""Notebook-side helpers for the book: selecting runs, captions from provenance, summary numbers, widgets.

The notebooks stay thin: a parameters cell (``dataset``, ``runs_dir``, ...), then ``sel = book.select(...)``,
``sel.note()`` (a readable message when nothing matches, instead of a traceback), and one figure call per cell,
each followed by ``book.caption(...)``, which says what the figure was computed from (dataset label and copy,
subset sizes, model, epochs, seeds, delta values, lsnc commit, device), all read from the run folders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .runs import Run, default_runs_dir, find_runs, runs_table

__all__ = ["UnknownDataset", "Selection", "default_runs_dir", "select", "caption", "scales_table",
           "summary_by_loss", "show", "show_caption", "compare_sentence", "closed_form_explorer", "run_browser"]


class UnknownDataset(ValueError):
    """The dataset asked for has no finished runs; the message names those that have."""


def setup() -> None:
    """Matplotlib settings shared by the book's pages (resolution and font sizes for wide figures)."""
    import matplotlib.pyplot as plt
    plt.rcParams.update({"figure.dpi": 100, "font.size": 10.5, "axes.titlesize": 11, "legend.fontsize": 9})


def _fmt_list(values: Iterable) -> str:
    vals = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    return ", ".join(vals) if vals else "none"


def _as_list(x) -> list | None:
    if x is None:
        return None
    if isinstance(x, (str, int, float)):
        return [x]
    return list(x)


@dataclass
class Selection:
    """The runs a page draws; empty with a ``message`` when nothing matches."""

    runs: list[Run]
    runs_dir: Path
    message: str | None = None
    datasets: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.runs)

    def note(self) -> None:
        """Display the message (Markdown) when the selection is empty or left a dataset out; nothing otherwise."""
        if self.message:
            from IPython.display import Markdown, display
            display(Markdown(f"> **{'Note.' if self.runs else 'Nothing to draw.'}** {self.message}"))

    def of(self, dataset: str) -> list[Run]:
        return [r for r in self.runs if r.dataset == dataset]

    def table(self, table: str = "metrics") -> pd.DataFrame:
        return runs_table(self.runs, table)

    def pick(self, dataset: str, deltas: Sequence[float] = (0.0, 0.05), seed: int | None = None) -> list[Run]:
        """One run per delta (in the order of ``deltas``) for ``dataset``: the given seed, else the smallest
        seed that every delta has, else each delta's smallest seed."""
        runs = self.of(dataset)
        by_delta = {d: sorted((r for r in runs if np.isclose(r.config["delta"], d)), key=lambda r: r.config["seed"])
                    for d in deltas}
        by_delta = {d: rs for d, rs in by_delta.items() if rs}
        if seed is None:
            common = set.intersection(*[{r.config["seed"] for r in rs} for rs in by_delta.values()]) if by_delta else set()
            seed = min(common) if common else None
        out = []
        for rs in by_delta.values():
            match = [r for r in rs if r.config["seed"] == seed]
            out.append(match[0] if match else rs[0])
        return out


def select(dataset: str | Sequence[str] | None = None, runs_dir: str | Path | None = None, *, ufm: bool | None = False,
           deltas: Sequence[float] | None = None, seeds: Sequence[int] | None = None,
           min_deltas: int = 1, amp: str | None = "none") -> Selection:
    """Finished runs under ``runs_dir`` (None: the repository's runs/) for ``dataset`` (None: every dataset
    present; a name or a list of names), UFM-style or not (``ufm=None``: both), optionally only some deltas
    and seeds. Datasets with fewer than ``min_deltas`` distinct deltas are left out (e.g. a sweep figure).
    Never raises for an unknown dataset or an empty folder: the Selection is then empty and carries a
    message naming what is available."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    all_runs = find_runs(root)
    present = list(dict.fromkeys(r.dataset for r in all_runs))
    if not all_runs:
        return Selection([], root, f"No finished runs in `{root}`. Train them with `lsnc reproduce --preset cpu` "
                                   f"(or point `runs_dir` at a folder of runs).")
    try:
        wanted = resolve_datasets(root, dataset, present)
    except UnknownDataset as exc:
        return Selection([], root, str(exc))
    runs = [r for r in all_runs if r.dataset in wanted]
    what = []
    if amp is not None:  # the figures use the paper's fp32 runs; bf16 runs are compared on the runs page
        runs = [r for r in runs if r.config.get("amp", "none") == amp]
    if ufm is not None:
        runs = [r for r in runs if bool(r.config.get("ufm")) == ufm]
        what.append("UFM-style" if ufm else "standard (not UFM-style)")
    if deltas is not None:
        runs = [r for r in runs if any(np.isclose(r.config["delta"], d) for d in deltas)]
        what.append(f"δ in {{{_fmt_list(float(d) for d in deltas)}}}")
    if seeds is not None:
        runs = [r for r in runs if r.config["seed"] in set(seeds)]
        what.append(f"seed in {{{_fmt_list(seeds)}}}")
    skipped = {}
    if min_deltas > 1:
        for ds in wanted:
            n = len({r.config["delta"] for r in runs if r.dataset == ds})
            if n < min_deltas:
                skipped[ds] = f"`{ds}` ({n} δ value{'s' if n != 1 else ''} finished)"
        runs = [r for r in runs if r.dataset not in skipped]
    datasets = [d for d in present if any(r.dataset == d for r in runs)]
    message = None
    if not runs:
        avail = _available(all_runs, wanted)
        message = (f"No finished {' '.join(what) or ''} runs for {_fmt_list(wanted)} in `{root}`"
                   + (f" with at least {min_deltas} δ values" if min_deltas > 1 else "") + f". Available: {avail}.")
    elif skipped:
        message = f"Left out (need at least {min_deltas} δ values): {', '.join(skipped)}."
    sel = Selection(runs, root, message, datasets)
    return sel


def _available(all_runs: list[Run], datasets: Sequence[str]) -> str:
    parts = []
    for ds in datasets:
        rs = [r for r in all_runs if r.dataset == ds]
        std = [r for r in rs if not r.config.get("ufm")]
        ufm = [r for r in rs if r.config.get("ufm")]
        parts.append(f"`{ds}`: {len(std)} standard runs (δ {_fmt_list(sorted({r.config['delta'] for r in std}))}; "
                     f"seeds {_fmt_list(sorted({r.config['seed'] for r in std}))}), {len(ufm)} UFM-style runs")
    return "; ".join(parts)


def resolve_datasets(runs_dir: str | Path, dataset, present: Sequence[str] | None = None) -> list[str]:
    """The dataset names asked for, checked against those with finished runs; raises UnknownDataset with a
    message listing the available names."""
    if present is None:
        present = list(dict.fromkeys(r.dataset for r in find_runs(runs_dir)))
    wanted = _as_list(dataset)
    if wanted is None:
        if not present:
            raise UnknownDataset(f"No finished runs in `{runs_dir}`.")
        return list(present)
    unknown = [d for d in wanted if d not in present]
    if unknown:
        raise UnknownDataset(f"Unknown dataset {_fmt_list(repr(d) for d in unknown)}: no finished runs for it in "
                             f"`{runs_dir}`. Datasets available: {_fmt_list(present) if present else 'none'}.")
    return [d for d in present if d in wanted]


# ------------------------------------------------------------------------------------------------
# captions and provenance
# ------------------------------------------------------------------------------------------------
def _dataset_line(runs: list[Run]) -> str:
    r0 = runs[0]
    d = r0.provenance.get("dataset", {})
    sizes = d.get("sizes", {})
    size_txt = ", ".join(f"{k} {v}" for k, v in sizes.items()) if sizes else "sizes not recorded"
    models = sorted({r.config["model"] + (f" width {r.config['width']}" if r.config.get("width") else "")
                     for r in runs})
    epochs = sorted({r.config["epochs"] for r in runs})
    deltas = sorted({float(r.config["delta"]) for r in runs})
    seeds = sorted({r.config["seed"] for r in runs})
    commits = sorted({(r.provenance.get("lsnc", {}).get("commit") or "unknown")[:10]
                      + ("+modified" if r.provenance.get("lsnc", {}).get("lsnc_modified") else "") for r in runs})
    devices = sorted({r.provenance.get("device", {}).get("type", "?") for r in runs})
    ufm = {bool(r.config.get("ufm")) for r in runs}
    opt = r0.config
    recipe = (f"SGD lr {opt.get('lr'):g}, momentum {opt.get('momentum'):g}, "
              + (f"UFM-style penalties λ_W {opt.get('lambda_w'):g}, λ_H {opt.get('lambda_h'):g}, "
                 f"λ_b {opt.get('lambda_b'):g}" if ufm == {True} else f"weight decay {opt.get('weight_decay'):g}")
              + f", batch {opt.get('batch_size')}, lr ×{opt.get('gamma', 0.1):g} at epochs "
              f"{_fmt_list(opt.get('milestones') or [])}")
    line = (f"**{r0.label}** ({size_txt} samples; {d.get('num_classes', '?')} classes): {', '.join(models)}, "
            f"{_fmt_list(epochs)} epochs, {recipe}; {len(runs)} run{'s' if len(runs) != 1 else ''}: "
            f"δ ∈ {{{_fmt_list(deltas)}}}, seeds {{{_fmt_list(seeds)}}}; lsnc commit {_fmt_list(commits)}, "
            f"device {_fmt_list(devices)}.")
    if d.get("copy_note"):
        line += f" *Data: {d['copy_note']}*"
    return line


def caption(runs: Sequence[Run] | Selection, what: str = "") -> str:
    """Markdown saying what a figure was computed from, one line per dataset."""
    runs = list(runs.runs if isinstance(runs, Selection) else runs)
    if not runs:
        return ""
    by_ds: dict[str, list[Run]] = {}
    for r in runs:
        by_ds.setdefault(r.dataset, []).append(r)
    lines = [f"*Computed from:* {what}" if what else "*Computed from:*"]
    lines += [f"- {_dataset_line(rs)}" for rs in by_ds.values()]
    return "\n".join(lines)


def show(fig, runs: Sequence[Run] | Selection, what: str = "") -> None:
    """Display ``fig`` (then close it) followed by its caption; nothing when ``fig`` is None."""
    if fig is None:
        return
    import matplotlib.pyplot as plt
    from IPython.display import display
    display(fig)
    plt.close(fig)
    show_caption(runs, what)


def show_caption(runs: Sequence[Run] | Selection, what: str = "") -> None:
    from IPython.display import Markdown, display
    text = caption(runs, what)
    if text:
        display(Markdown(text))


def scales_table(runs: Sequence[Run] | Selection) -> pd.DataFrame:
    """One row per dataset and kind of run (standard / UFM-style): the scale of what was run."""
    runs = list(runs.runs if isinstance(runs, Selection) else runs)
    rows = []
    for r in runs:
        d = r.provenance.get("dataset", {})
        sizes = d.get("sizes", {})
        rows.append({"dataset": r.label, "kind": "UFM-style" if r.config.get("ufm") else "standard",
                     "classes": d.get("num_classes"), "train": sizes.get("train"), "test": sizes.get("test"),
                     "held-out": sizes.get("holdout"),
                     "model": r.config["model"] + (f" (width {r.config['width']})" if r.config.get("width") else ""),
                     "epochs": r.config["epochs"], "delta": float(r.config["delta"]), "seed": r.config["seed"],
                     "device": r.provenance.get("device", {}).get("type"),
                     "train minutes": (r.status.get("train_seconds") or np.nan) / 60})
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    keys = ["dataset", "kind", "classes", "train", "test", "held-out", "model", "epochs"]
    out = df.groupby(keys, sort=False, dropna=False).agg(
        runs=("seed", "size"), deltas=("delta", lambda s: _fmt_list(sorted(set(s)))),
        seeds=("seed", lambda s: _fmt_list(sorted(set(s)))), device=("device", lambda s: _fmt_list(sorted(set(s)))),
        minutes_per_run=("train minutes", "median")).reset_index()
    return out.rename(columns={"deltas": "δ values", "minutes_per_run": "median training minutes per run"})


# ------------------------------------------------------------------------------------------------
# summary numbers (for glue)
# ------------------------------------------------------------------------------------------------
def summary_by_loss(runs: Sequence[Run] | Selection, dataset: str, deltas: Sequence[float] = (0.0, 0.05),
                    error_threshold: float = 0.0) -> pd.DataFrame:
    """For one dataset, per delta (rows), medians over seeds of: the first evaluated epoch with train error <=
    threshold, and the end-of-training NC1, NC2, NC3, test error, ECE (20 bins), number of seeds."""
    runs = list(runs.runs if isinstance(runs, Selection) else runs)
    runs = [r for r in runs if r.dataset == dataset and any(np.isclose(r.config["delta"], d) for d in deltas)]
    df = runs_table(runs)
    if df.empty:
        return pd.DataFrame()
    from .claims import epochs_to_zero_error
    last = df.loc[df.groupby("run")["epoch"].idxmax()].set_index("run")
    # inf (never reached) is shown as "never"; NaN keeps the medians well defined.
    last["first_zero_error_epoch"] = pd.Series({r.name: epochs_to_zero_error(r, error_threshold)
                                                for r in runs}).replace(np.inf, np.nan)
    cols = {"first_zero_error_epoch": "first_zero_error_epoch", "train_nc1_within_between": "nc1",
            "train_nc2_wh_etf": "nc2", "train_nc3_duality_sq": "nc3", "test_error": "test_error",
            "test_ece20": "ece20", "test_ece20_ts_holdout": "ece20_ts_holdout"}
    out = last[list(cols) + ["delta"]].rename(columns=cols).apply(pd.to_numeric, errors="coerce")
    res = out.groupby("delta").median()
    res["seeds"] = out.groupby("delta").size()
    return res


def compare_sentence(runs: Sequence[Run] | Selection, deltas: Sequence[float] = (0.0, 0.05)) -> str:
    """Markdown, one bullet per dataset: epoch of zero train error and end-of-training NC1/NC2/NC3, test error,
    CE vs LS (medians over seeds), generated from the runs."""
    runs = list(runs.runs if isinstance(runs, Selection) else runs)
    lines = []
    for ds in dict.fromkeys(r.dataset for r in runs):
        res = summary_by_loss(runs, ds, deltas)
        if len(res) < 2 or 0.0 not in res.index:
            continue
        ce = res.loc[0.0]
        label = next(r.label for r in runs if r.dataset == ds)
        for delta, ls in res.drop(index=0.0).iterrows():
            def ep(v):
                return "never" if np.isnan(v) else f"epoch {v:.0f}"
            lines.append(
                f"- **{label}** (medians over {int(ce['seeds'])} CE / {int(ls['seeds'])} LS seeds): zero training "
                f"error at {ep(ce['first_zero_error_epoch'])} (CE) vs {ep(ls['first_zero_error_epoch'])} "
                f"(LS δ={delta:g}); final NC1 {ce['nc1']:.3g} vs {ls['nc1']:.3g}, NC2 {ce['nc2']:.3g} vs "
                f"{ls['nc2']:.3g}, NC3 {ce['nc3']:.3g} vs {ls['nc3']:.3g}; test error {ce['test_error']:.3g} vs "
                f"{ls['test_error']:.3g}; ECE {ce['ece20']:.3g} vs {ls['ece20']:.3g}.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# widgets (live only in a running kernel; the book shows static views next to them)
# ------------------------------------------------------------------------------------------------
def closed_form_explorer(num_classes: int = 10, n_per_class: int = 380, lambda_w: float = 1e-3,
                         lambda_h: float = 1e-6, delta: float = 0.05):
    """Sliders for delta, log10 lambda_W, log10 lambda_H, K and n driving :func:`plots.training.plot_closed_form`
    (a VBox of sliders above the figure)."""
    import ipywidgets as w

    from .plots.training import plot_closed_form

    style = {"description_width": "110px"}
    layout = w.Layout(width="420px")
    sliders = {
        "delta": w.FloatSlider(value=delta, min=0.0, max=0.99, step=0.01, description="δ", style=style,
                               layout=layout),
        "log10_lambda_w": w.FloatSlider(value=float(np.log10(lambda_w)), min=-6, max=-1, step=0.1,
                                        description="log10 λ_W", style=style, layout=layout),
        "log10_lambda_h": w.FloatSlider(value=float(np.log10(lambda_h)), min=-8, max=-1, step=0.1,
                                        description="log10 λ_H", style=style, layout=layout),
        "num_classes": w.IntSlider(value=num_classes, min=2, max=200, description="K classes", style=style,
                                   layout=layout),
        "n_per_class": w.IntSlider(value=n_per_class, min=1, max=5000, description="n per class", style=style,
                                   layout=layout),
    }

    def draw(v):
        fig = plot_closed_form(v["num_classes"], v["n_per_class"], 10 ** v["log10_lambda_w"],
                               10 ** v["log10_lambda_h"], v["delta"])
        return fig, None

    return _slider_panel(sliders, draw)


def run_browser(selection: Selection):
    """Dropdowns (dataset, kind, δ, seed) showing every curve of the chosen run (:func:`plot_run`)."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .plots.training import plot_run

    runs = selection.runs
    if not runs:
        return w.HTML(f"<b>Nothing to browse.</b> {selection.message or ''}")
    ds_dd = w.Dropdown(options=selection.datasets, description="dataset")
    kind_dd = w.Dropdown(options=["standard", "UFM-style"], description="kind")
    delta_dd = w.Dropdown(description="δ")
    seed_dd = w.Dropdown(description="seed")
    out = w.Output()

    def matching(**fixed):
        rs = [r for r in runs if r.dataset == ds_dd.value and bool(r.config.get("ufm")) == (kind_dd.value == "UFM-style")]
        if "delta" in fixed:
            rs = [r for r in rs if r.config["delta"] == fixed["delta"]]
        return rs

    def refresh_delta(*_):
        deltas = sorted({r.config["delta"] for r in matching()})
        delta_dd.options = [(f"{d:g}", d) for d in deltas]
        if deltas:
            delta_dd.value = deltas[0]
        refresh_seed()

    def refresh_seed(*_):
        seeds = sorted({r.config["seed"] for r in matching(delta=delta_dd.value)})
        seed_dd.options = seeds
        if seeds:
            seed_dd.value = seeds[0]
        redraw()

    def redraw(*_):
        out.clear_output(wait=True)
        chosen = [r for r in matching(delta=delta_dd.value) if r.config["seed"] == seed_dd.value]
        with out:
            if not chosen:
                print("no finished run with these settings")
                return
            fig = plot_run(chosen[0])
            display(fig)
            plt.close(fig)

    ds_dd.observe(refresh_delta, "value")
    kind_dd.observe(refresh_delta, "value")
    delta_dd.observe(refresh_seed, "value")
    seed_dd.observe(redraw, "value")
    refresh_delta()
    return w.VBox([w.HBox([ds_dd, kind_dd]), w.HBox([delta_dd, seed_dd]), out])


PRECISION_COLUMNS = {"train_nc1_within_between": "NC1", "train_nc2_wh_etf": "NC2", "train_nc3_duality_sq": "NC3",
                     "test_accuracy": "test accuracy", "test_ece20": "ECE20"}


def precision_comparison(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Final metrics of each bf16-autocast run beside its fp32 twin (same dataset, δ, seed, setting), with
    the relative difference (bf16 − fp32) / |fp32|. Empty when no bf16 run has finished."""
    runs = find_runs(default_runs_dir() if runs_dir is None else runs_dir)

    def key(r: Run) -> tuple:
        c = r.config
        return (r.dataset, c["delta"], c["seed"], c["model"], c.get("width"), c["epochs"], bool(c.get("ufm")))

    fp32 = {key(r): r for r in runs if r.config.get("amp", "none") == "none"}
    rows = []
    for r in runs:
        twin = fp32.get(key(r))
        if r.config.get("amp") != "bf16" or twin is None:
            continue
        a, b = twin.metrics.iloc[-1], r.metrics.iloc[-1]
        row = {"dataset": r.label, "δ": r.config["delta"], "seed": r.config["seed"]}
        for col, name in PRECISION_COLUMNS.items():
            row[f"{name} fp32"], row[f"{name} bf16"] = a[col], b[col]
            row[f"{name} rel. diff"] = (b[col] - a[col]) / abs(a[col]) if a[col] else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def ufm_dynamics(num_classes: int = 4, n_per_class: int = 3, lambda_wh: float = 5e-3, delta: float = 0.05,
                 lr: float = 5.0, steps: int = 1000, seed: int = 0):
    """Gradient descent on a small UFM from one random start, CE against LS(δ), same step size; returns the
    figure (distance to the optimum against iteration) and a one-line summary with both Hessians' condition
    numbers (the full Hessian with the symmetry directions removed, and the softmax Hessian)."""
    import matplotlib.pyplot as plt

    from . import ufm
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    parts = []
    for d, colour in ((0.0, "tab:blue"), (delta, "tab:red")):
        problem = ufm.UFMProblem(num_classes, n_per_class, num_classes + 1, lambda_wh, lambda_wh, d)
        traj = ufm.gradient_descent(problem, lr=lr, steps=steps, seed=seed, record_every=5)
        spec = ufm.hessian_spectrum(problem, seed=seed)
        name = "CE" if d == 0 else f"LS δ={d:g}"
        ax.semilogy(traj.step, traj.logit_distance, color=colour, label=name)
        parts.append(f"{name}: κ(full Hessian, symmetry removed) = {spec.kappa_restricted:.3g}, "
                     f"κ(softmax Hessian) = {spec.kappa_softmax:.3g}, p_y = {spec.p_y:.3f}")
    ax.set_xlabel("gradient-descent iteration")
    ax.set_ylabel("relative logit distance to optimum")
    ax.set_title(f"UFM, K={num_classes}, n={n_per_class}, λ_W=λ_H={lambda_wh:g}, step {lr:g}, seed {seed}",
                 fontsize=9)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig, "; ".join(parts)


def ufm_dynamics_explorer():
    """Sliders for δ, λ (= λ_W = λ_H), K and the step size driving :func:`ufm_dynamics`."""
    import ipywidgets as w

    style, layout = {"description_width": "110px"}, w.Layout(width="420px")
    sliders = {
        "delta": w.FloatSlider(value=0.05, min=0.0, max=0.9, step=0.01, description="δ", style=style, layout=layout),
        "log10_lambda": w.FloatSlider(value=float(np.log10(5e-3)), min=-4, max=-1.5, step=0.1,
                                      description="log10 λ_W = λ_H", style=style, layout=layout),
        "num_classes": w.IntSlider(value=4, min=2, max=8, description="K classes", style=style, layout=layout),
        "lr": w.FloatSlider(value=5.0, min=0.5, max=10.0, step=0.5, description="step size", style=style,
                            layout=layout),
    }
    return _slider_panel(sliders, lambda v: ufm_dynamics(v["num_classes"], 3, 10 ** v["log10_lambda"],
                                                         v["delta"], v["lr"]))


def _slider_panel(sliders: dict, draw):
    """Sliders above an output area; ``draw(values) -> (figure, text or None)`` is re-run on every change.

    An explicit Output + observe rather than ipywidgets.interactive: interactive's first draw blocks
    notebook execution by nbclient (the book build) until the cell timeout."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    out = w.Output()

    def redraw(*_):
        out.clear_output(wait=True)
        with out:
            try:
                fig, text = draw({k: s.value for k, s in sliders.items()})
            except ValueError as exc:  # an invalid combination (e.g. s + δ >= 1): say so, no traceback
                print(exc)
                return
            if text:
                print(text)
            display(fig)
            plt.close(fig)

    for s in sliders.values():
        s.observe(redraw, "value")
    redraw()
    return w.VBox([*sliders.values(), out])
