"""What runs are, said once: data (copy, subset), model (width), loss, epochs, seeds, recipe, provenance.

Every sentence or table cell that tells the reader what something was computed from is built here, from the
runs' config.json, provenance.json and status.json (never by parsing another description):

* :func:`describe_run`: one run, e.g. "MNIST-1D [train 4000, test 1000], mlp (3 hidden layers, width 256, 0.15M
  parameters), CE, 150 epochs, seed 0" (figure titles);
* :func:`describe_setting`: what the runs of one group share (data, model, epochs);
* :func:`group_line` (and ``select.group_lines``): one dataset group of the claims page (its setting, and which seeds
  each δ has);
* :func:`provenance_line`: one dataset of a figure caption (sizes, classes, model, epochs, recipe, δ values,
  seeds, lsnc commit, device);
* :func:`scales_table`: the runs page's table, one row per run group and kind of run;
* :func:`machines_table` and :func:`recipe_table`: the runs page's machines, and the recipe as the code built it
  (provenance.json's ``training`` block, checked against config.json).

A finished run that stopped before its recipe's last epoch (a *prefix*, see ``lsnc.runs.Run.is_prefix`` and
:func:`.comparable.reach`) is always described as "epochs 0–E of the N-epoch recipe", never as an E-epoch run: its
learning-rate schedule is that of the N-epoch recipe. Run-like objects without a status (tests, the claims' inputs)
count as complete. Which runs are compared, and at which epoch, is :mod:`.comparable`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..config import field_defaults
from ..models import DEFAULT_WIDTH, MLP_DEPTH, model_width, parameter_count
from ..vocab import MAIN_DELTA, in_deltas, is_delta, loss_label
from .comparable import align_prefixes, reach, standard_runs


# ------------------------------------------------------------------------------------------------
# words for lists
# ------------------------------------------------------------------------------------------------
def as_runs(runs: Any) -> list:
    """A Selection (anything with ``.runs``) or an iterable of runs, as a list of runs."""
    return list(getattr(runs, "runs", runs))


def fmt_list(values: Iterable) -> str:
    """``0, 0.05, 0.1`` (floats written with ``:g``); "none" when empty."""
    vals = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    return ", ".join(vals) if vals else "none"


def seeds_text(seeds: Iterable[int]) -> str:
    """``0–4`` for three or more consecutive seeds, else ``0, 2``; "none" when empty."""
    s = sorted({int(x) for x in seeds})
    if not s:
        return "none"
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}–{s[-1]}"
    return ", ".join(map(str, s))


def by_dataset(runs: Sequence) -> dict[str, list]:
    """``{dataset group: its runs}``, groups in the order they first appear."""
    groups: dict[str, list] = {}
    for r in runs:
        groups.setdefault(r.dataset, []).append(r)
    return groups


# ------------------------------------------------------------------------------------------------
# one run
# ------------------------------------------------------------------------------------------------
def precision_text(run) -> str:
    """How the run's training computed: "bf16 autocast", "TF32" (fp32 with TF32 matmuls and convolutions, on a GPU)
    or "fp32"; from its provenance (what the device did), else its config."""
    p = run.provenance.get("precision") or {}
    amp = p.get("autocast") or run.config.get("amp", "none")
    if amp != "none":
        return f"{amp} autocast"
    tf32 = p["tf32"] if "tf32" in p else bool(run.config.get("tf32")) and \
        run.provenance.get("device", {}).get("type") == "cuda"
    return "TF32" if tf32 else "fp32"


def dataset_info(run) -> dict[str, Any]:
    """The dataset description recorded in the run's provenance.json (empty when not recorded)."""
    return (getattr(run, "provenance", None) or {}).get("dataset", {})


def sizes_text(run) -> str:
    """``train 4000, test 1000, holdout 500`` (the subset sizes used); "sizes not recorded" otherwise."""
    sizes = dataset_info(run).get("sizes", {})
    return ", ".join(f"{k} {v}" for k, v in sizes.items()) if sizes else "sizes not recorded"


def pool_text(run) -> str:
    """``drawn from 20000 train / 5000 test`` when the run used a subset of its dataset's pool (so two groups
    with equal subset sizes but different pools read differently); empty when it used the whole pool or the
    pool was not recorded."""
    info = dataset_info(run)
    pool, sizes = info.get("pool_sizes") or {}, info.get("sizes") or {}
    if not pool or not sizes:
        return ""
    used_train = sizes.get("train", 0) + sizes.get("holdout", 0)
    if used_train >= pool.get("train", 0) and sizes.get("test", 0) >= pool.get("test", 0):
        return ""
    return f"drawn from {pool.get('train', '?')} train / {pool.get('test', '?')} test"


def data_text(run) -> str:
    """``CIFAR-10 (JPEG copy) [train 3800, test 1000, holdout 500]``: the dataset label and subset sizes."""
    return f"{run.label} [{sizes_text(run)}]"


def model_text(config: dict, run=None) -> str:
    """``resnet18 (width 16)``, ``mlp (3 hidden layers, width 256)``; a config without a width is the model's default
    one (``resnet18 (width 64)``); the model name alone for a model lsnc does not know. With ``run``, also the
    parameter count (``resnet18 (width 16, 0.70M parameters)``): the one its provenance.json recorded from the built
    network, else :func:`lsnc.models.parameter_count` of its model and recorded data (classes, input shape)."""
    name = config["model"]
    width = model_width(name, config.get("width"))
    if not width:
        return name
    words = ([f"{MLP_DEPTH} hidden layers"] if name == "mlp" else []) + [f"width {width}"]
    info = dataset_info(run) if run is not None else {}
    built = ((getattr(run, "provenance", None) or {}).get("training") or {}).get("model") or {}
    n = built.get("parameters")   # what the code built, where provenance.json recorded it
    if n is None and info.get("num_classes") and info.get("input_shape"):
        n = parameter_count(name, int(info["num_classes"]), tuple(info["input_shape"]), width)
    if n is not None:
        words.append(f"{n / 1e6:.2f}M parameters")
    return f"{name} ({', '.join(words)})"


def run_loss(run) -> str:
    """The run's loss (``vocab.loss_label``), marked " UFM-style" for UFM-style runs."""
    return loss_label(run.config["delta"], ufm=bool(run.config.get("ufm")))


def describe_run(run) -> str:
    """One line saying what this run is: data (copy, subset), model, loss, epochs, seed."""
    return (f"{data_text(run)}, {model_text(run.config, run)}, {run_loss(run)}, {reach(run).text}, "
            f"seed {run.config['seed']}")


# ------------------------------------------------------------------------------------------------
# several runs
# ------------------------------------------------------------------------------------------------
def epochs_text(runs: Sequence) -> str:
    """``150 epochs``; ``50, 150 epochs`` for complete runs of several recipes; prefixes as
    ``epochs 0–40 of the 800-epoch recipe`` (joined with "and" when complete runs are present too)."""
    reaches = [reach(r) for r in runs]
    complete = sorted({x.epochs for x in reaches if not x.prefix})
    parts = [f"{fmt_list(complete)} epochs"] if complete else []
    parts += [x.text for x in sorted({x for x in reaches if x.prefix}, key=lambda x: (x.epochs, x.reached))]
    return " and ".join(parts)


def models_text(runs: Sequence) -> str:
    return fmt_list(sorted({model_text(r.config, r) for r in runs}))


def scale_words(rows: pd.DataFrame) -> list[str]:
    """The short words of a figure row's label (``lsnc.book.plots.style.group_label``), from rows of a runs table
    (:func:`lsnc.runs.runs_table`) rather than runs: ``["resnet18 w16", "500/class", "50 epochs"]``, model and width,
    training images per class ("all train images" for the whole training set), and the recipe's epochs,
    ``epochs 0–75 of 800`` where the runs stopped early (prefixes); the parts whose columns the rows lack are left
    out."""
    parts = []
    if "model" in rows.columns:
        widths = rows["width"] if "width" in rows.columns else pd.Series(None, index=rows.index)
        models = {f"{m} w{model_width(m, None if pd.isna(w) else int(w))}" for m, w in zip(rows["model"], widths)}
        parts.append(fmt_list(sorted(models)))
    if "train_per_class" in rows.columns:
        counts = {None if pd.isna(n) else int(n) for n in rows["train_per_class"]}
        parts.append(fmt_list(sorted(f"{n}/class" if n is not None else "all train images" for n in counts)))
    if "epochs" in rows.columns and "epoch" in rows.columns:
        recipe, reached = int(rows["epochs"].max()), int(rows["epoch"].max())
        parts.append(f"epochs 0–{reached} of {recipe}" if reached < recipe else f"{recipe} epochs")
    return parts


def describe_setting(runs: Sequence) -> str:
    """What the runs share: ``MNIST-1D [train 4000, test 1000], mlp (3 hidden layers, width 256, 0.15M parameters),
    150 epochs``
    (data of the first run: the runs of one dataset group share it), and the precision where it is not fp32 (``, bf16
    autocast``)."""
    runs = list(runs)
    pool = pool_text(runs[0])
    precision = fmt_list(sorted({precision_text(r) for r in runs}))
    return (f"{data_text(runs[0])}{' ' + pool if pool else ''}, {models_text(runs)}, {epochs_text(runs)}"
            + ("" if precision == "fp32" else f", {precision}"))


def recipe_text(runs: Sequence, decays: bool = True) -> str:
    """The optimiser settings of the first run: SGD, penalties (weight decay or the UFM-style ones), batch and (with
    ``decays``) the learning-rate decays; a key its config lacks is the option's default (what an older run did)."""
    opt = {**field_defaults(), **runs[0].config}
    if {bool(r.config.get("ufm")) for r in runs} == {True}:
        penalty = (f"UFM-style penalties λ_W {opt.get('lambda_w'):g}, λ_H {opt.get('lambda_h'):g}, "
                   f"λ_b {opt.get('lambda_b'):g}")
    else:
        penalty = f"weight decay {opt.get('weight_decay'):g}"
    text = f"SGD lr {opt.get('lr'):g}, momentum {opt.get('momentum'):g}, {penalty}, batch {opt.get('batch_size')}"
    return text + (f", lr ×{opt.get('gamma', 0.1):g} at epochs {fmt_list(opt.get('milestones') or [])}" if decays
                   else "")


def _commit(run) -> str:
    info = run.provenance.get("lsnc", {})
    return (info.get("commit") or "unknown")[:10] + ("+modified" if info.get("lsnc_modified") else "")


def provenance_line(runs: Sequence) -> str:
    """Markdown for the runs of one dataset: label, sizes, classes, model, epochs, recipe, number of runs, δ
    values, seeds, lsnc commit, device, and the data copy's note when there is one."""
    runs = list(runs)
    info = dataset_info(runs[0])
    n = len(runs)
    pool = pool_text(runs[0])
    line = (f"**{runs[0].label}** ({sizes_text(runs[0])} samples{', ' + pool if pool else ''}; "
            f"{info.get('num_classes', '?')} classes): "
            f"{models_text(runs)}, {epochs_text(runs)}, {recipe_text(runs)}; {n} run{'s' if n != 1 else ''}: "
            f"δ ∈ {{{fmt_list(sorted({float(r.config['delta']) for r in runs}))}}}, {seeds_by_delta(runs)}; "
            f"lsnc commit {fmt_list(sorted({_commit(r) for r in runs}))}, "
            f"device {fmt_list(sorted({r.provenance.get('device', {}).get('type', '?') for r in runs}))}, "
            f"precision {fmt_list(sorted({precision_text(r) for r in runs}))}.")
    if info.get("copy_note"):
        line += f" *Data: {info['copy_note']}*"
    return line


def seeds_by_delta(runs: Sequence, word: str = "seeds ") -> str:
    """``seeds {0–4}`` when every δ of ``runs`` has the same seeds, else each seed set with its δ values:
    ``seeds {0–4} (δ 0), {0, 1, 2, 4} (δ 0.05)`` (the runs actually there, never the recipe's seed list); ``word``
    opens it ("" in a table's seeds column)."""
    per: dict[float, frozenset[int]] = {}
    for r in runs:
        per[float(r.config["delta"])] = per.get(float(r.config["delta"]), frozenset()) | {int(r.config["seed"])}
    if len(set(per.values())) <= 1:
        return f"{word}{{{seeds_text(r.config['seed'] for r in runs)}}}"
    groups: dict[frozenset[int], list[float]] = {}
    for d, seeds in sorted(per.items()):
        groups.setdefault(seeds, []).append(d)
    return word + ", ".join(f"{{{seeds_text(s)}}} (δ {fmt_list(ds)})" for s, ds in groups.items())


def group_line(runs: Sequence, ls_delta: float = MAIN_DELTA) -> str:
    """One line saying the scale of one dataset group: its setting (data, model, epochs, precision when not fp32), the
    seeds of the main CE / LS comparison (:func:`.comparable.standard_runs`) and, for prefixes that stopped at
    different epochs, the epoch those comparisons read (:func:`.comparable.align_prefixes` of the CE-LS pairs, as
    the claims do), the δ sweep (with the seeds of its other δ values), the UFM-style δ values and the precision
    twins when present, the number of finished runs."""
    runs = list(runs)
    if not runs:
        return "no finished runs"
    main = standard_runs(runs)
    in_main = {id(r) for r in main}
    twins = [r for r in runs if not r.config.get("ufm") and id(r) not in in_main]
    by_delta: dict[float, list[int]] = {}
    for r in main:
        by_delta.setdefault(float(r.config["delta"]), []).append(int(r.config["seed"]))
    ls = next((v for k, v in by_delta.items() if is_delta(k, ls_delta)), [])
    parts = [describe_setting(main or runs), f"{loss_label(0)} seeds {seeds_text(by_delta.get(0.0, []))}, "
                                             f"{loss_label(ls_delta)} seeds {seeds_text(ls)}"]
    pair = [r for r in main if in_deltas(r.config["delta"], (0.0, ls_delta))]
    cut = align_prefixes(pair).epoch if pair else None
    if cut is not None:   # prefixes that stopped apart: the CE / LS comparisons read every run at one epoch
        parts[1] += f" (compared at epoch {cut}, which enough CE-LS pairs reached)"
    deltas = sorted(by_delta)
    if len(deltas) > 2 or (deltas and not set(deltas) <= {0.0, ls_delta}):
        others = [r for r in main if not in_deltas(r.config["delta"], (0.0, ls_delta))]
        parts.append("δ sweep {" + fmt_list(deltas) + "}"
                     + (f", its other δ on {seeds_by_delta(others)}" if others else ""))
    ufm = sorted({float(r.config["delta"]) for r in runs if r.config.get("ufm")})
    if ufm:
        parts.append("UFM-style δ {" + fmt_list(ufm) + "}")
    if twins:
        parts.append(f"{len(twins)} {fmt_list(sorted({precision_text(r) for r in twins}))} twin run"
                     f"{'s' if len(twins) != 1 else ''} (the runs page compares them)")
    parts.append(f"{len(runs)} finished runs")
    return "; ".join(parts)


def at_paper_scale(runs: Sequence) -> dict[str, list]:
    """Per group, its standard runs (:func:`.comparable.standard_runs`) that train a paper's network at the paper's
    width (a ResNet at lsnc's default width, 64) on the whole training set of their data (no per-class subset, no
    held-out split): the model and data scale of the paper's experiments, whatever their length. Groups without such
    runs are left out."""
    out: dict[str, list] = {}
    for r in standard_runs(runs):
        c = r.config
        if str(c["model"]).startswith("resnet") and model_width(c["model"], c.get("width")) == DEFAULT_WIDTH[
                c["model"]] and c.get("train_per_class") is None and not c.get("holdout_per_class"):
            out.setdefault(r.dataset, []).append(r)
    return out


def paper_scale_text(runs: Sequence) -> str:
    """Markdown naming the groups at the paper's model and data scale (:func:`at_paper_scale`), each with its setting
    (:func:`describe_setting`: data, model, epochs of which recipe); a sentence saying there is none otherwise."""
    groups = at_paper_scale(runs)
    if not groups:
        return "No group here trains the paper's network at its width on a whole training set."
    return "At the paper's model and data scale: " + "; ".join(
        f"`{g}` ({describe_setting(rs)})" for g, rs in sorted(groups.items())) + "."


# ------------------------------------------------------------------------------------------------
# the runs page's table
# ------------------------------------------------------------------------------------------------
def _scale_row(run) -> dict[str, Any]:
    info = dataset_info(run)
    sizes = info.get("sizes", {})
    x = reach(run)
    kind = "UFM-style" if run.config.get("ufm") else "standard"
    if precision_text(run) != "fp32":   # bf16 autocast, or TF32 on a GPU
        kind += f", {precision_text(run)}"
    return {"dataset": run.dataset, "label": run.label, "kind": kind,
            "classes": info.get("num_classes"), "train": sizes.get("train"), "test": sizes.get("test"),
            "held-out": sizes.get("holdout"), "model": model_text(run.config, run),
            "epochs": x.text if x.prefix else x.epochs, "delta": float(run.config["delta"]),
            "seed": run.config["seed"], "device": run.provenance.get("device", {}).get("type"),
            "train minutes": (run.status.get("train_seconds") or np.nan) / 60, "run": run}


def machines_table(runs) -> pd.DataFrame:
    """One row per run group and machine the runs were computed on (:func:`lsnc.runs.compare.machine`: processor,
    its instruction set and thread count, or the GPU, as provenance.json recorded them) and platform string: how
    many runs, their seeds and the lsnc commits that trained them. A CPU run reproduces bit for bit only on a
    machine like its own (``lsnc compare``); runs trained before lsnc recorded the processor are told apart by
    their platform string (the VM's kernel build)."""
    from ..runs.compare import machine
    rows = [{"label": r.label, "dataset": r.dataset, "machine": machine(r),
             "platform": r.provenance.get("platform", "not recorded"), "seed": r.config["seed"],
             "commit": (r.provenance.get("lsnc", {}).get("commit") or "?")[:7]} for r in as_runs(runs)]
    if not rows:
        return pd.DataFrame()
    return (pd.DataFrame(rows).groupby(["label", "dataset", "machine", "platform"], sort=False)
            .agg(runs=("seed", "size"), seeds=("seed", seeds_text),
                 commits=("commit", lambda s: len(set(s)))).reset_index()
            .rename(columns={"commits": "lsnc commits"}))


NOT_RECORDED = "not recorded (trained before lsnc recorded how)"


def built_recipe(run) -> dict[str, str]:
    """The recipe as the code built it, from provenance.json's ``training`` block (``lsnc.runs.record``: read off
    the model, optimizer and schedule objects, not the config): model, optimizer, lr schedule, batches, loss,
    how the run was trained (alone, fused, on streams), and ``agrees with config.json`` (the settings both
    record: "yes", or what differs). Every value is :data:`NOT_RECORDED` for a run trained before the block
    existed."""
    block = run.provenance.get("training")
    if not block:
        return dict.fromkeys(("model built", "optimizer", "lr schedule", "batches", "loss", "trained",
                              "agrees with config.json"), NOT_RECORDED)
    model, opt, sched, batches = block["model"], block["optimizer"], block["lr_schedule"], block["batches"]
    groups = opt["param_groups"]
    optimizer = "; ".join(
        f"{opt['class'].rsplit('.', 1)[-1]} lr {g.get('initial_lr', g.get('lr')):g}, momentum {g['momentum']:g}"
        f"{' (Nesterov)' if g.get('nesterov') else ''}, weight decay {g['weight_decay']:g} on "
        f"{g['parameter_tensors']} of {sum(model['parameter_tensors'].values())} parameter tensors" for g in groups)
    together = block.get("together", {})
    trained = together.get("how", "alone") + (f" (K={len(together['runs'])})" if together.get("how") not in
                                              (None, "alone") else "")
    if block.get("earlier"):
        trained += "; before epoch " + str(block["since_epoch"]) + ": " + ", ".join(
            e.get("together", {}).get("how", "?") for e in block["earlier"])
    return {"model built": f"{model['class'].rsplit('.', 1)[-1]}, {model['parameters']:,} parameters, "
                           f"features {model['feature_dim']}",
            "optimizer": optimizer,
            "lr schedule": f"×{sched['gamma']:g} at epochs {fmt_list(sched['milestones'])}, stepped {sched['stepped']}",
            "batches": f"{batches['batch_size']}" + (", the incomplete last one dropped" if batches["drop_last"] else
                                                     ", the incomplete last one kept")
                       + f"; augmentation: {batches.get('augmentation', 'not recorded')}",
            "loss": block.get("loss", "not recorded"),
            "trained": trained,
            "agrees with config.json": _config_disagreements(run.config, groups, sched, batches) or "yes"}


def _config_disagreements(config: dict, groups: list[dict], sched: dict, batches: dict) -> str:
    """What config.json says that the built objects do not do ("" when they agree): lr, momentum, weight decay (of
    standard runs: a UFM-style run puts its penalties in the loss), milestones, gamma, batch size."""
    built = {"lr": [g.get("initial_lr", g.get("lr")) for g in groups], "momentum": [g["momentum"] for g in groups],
             "milestones": [sorted(sched["milestones"])], "gamma": [sched["gamma"]],
             "batch_size": [batches["batch_size"]]}
    if not config.get("ufm"):
        built["weight_decay"] = [g["weight_decay"] for g in groups]
    wrong = [f"{k} {fmt_list(sorted(set(map(str, v))))} built, {config.get(k)} in config.json"
             for k, v in built.items()
             if any(b != (sorted(config.get(k) or []) if k == "milestones" else config.get(k)) for b in v)]
    return "; ".join(wrong)


def recipe_table(runs) -> pd.DataFrame:
    """One row per run group and recipe as the code built it (:func:`built_recipe`): how many runs, their seeds.
    Only runs that record it (trained since lsnc writes provenance.json's ``training`` block); empty if none does."""
    rows = [{"label": r.label, "dataset": r.dataset, **built_recipe(r), "seed": r.config["seed"]}
            for r in as_runs(runs) if r.provenance.get("training")]
    if not rows:
        return pd.DataFrame()
    keys = [k for k in rows[0] if k != "seed"]
    return (pd.DataFrame(rows).groupby(keys, sort=False).agg(runs=("seed", "size"), seeds=("seed", seeds_text))
            .reset_index())


def scales_table(runs) -> pd.DataFrame:
    """One row per run group (``dataset``, its ``label``) and kind of run (standard / UFM-style, and the precision
    where not fp32: bf16 autocast, TF32): the scale of what was run. ``epochs`` is the recipe's epochs, or "epochs 0–E of the
    N-epoch recipe" for a prefix."""
    rows = [_scale_row(r) for r in as_runs(runs)]
    if not rows:
        return pd.DataFrame()
    keys = ["label", "dataset", "kind", "classes", "train", "test", "held-out", "model", "epochs"]
    out = pd.DataFrame(rows).groupby(keys, sort=False, dropna=False).agg(
        runs=("seed", "size"), deltas=("delta", lambda s: fmt_list(sorted(set(s)))),
        seeds=("run", lambda rs: seeds_by_delta(list(rs), word="")),
        device=("device", lambda s: fmt_list(sorted(set(s)))),
        minutes_per_run=("train minutes", "median")).reset_index()
    return out.rename(columns={"deltas": "δ values", "minutes_per_run": "median training minutes per run"})
