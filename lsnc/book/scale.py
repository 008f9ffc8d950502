"""One setting at several scales: the same runs trained for longer, at a larger width, on more images, or with a
deeper network, CE against LS at each value (the claims page's scale section, :func:`.plots.scale.plot_scale_ratios`).

Along each axis of :data:`SCALE_AXES`, runs are grouped by everything else they share (:func:`_setting`, from
:func:`.comparable.setting_key`), and a setting trained at two or more values is compared on the seeds every value
has for both losses: :func:`scale_table` (means per value and loss), :func:`scale_ratios` (LS / CE per value, with
the spread over seed pairs), :func:`scale_lines` (a sentence per setting and metric), :func:`scale_runs` (the runs
compared, for a caption). Complete runs only: a prefix of a longer recipe is not a shorter run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..models import model_depth, model_width
from ..vocab import CE_VS_LS, NC_COLUMNS, column_names, ece_column, in_deltas, is_delta, loss_label
from .comparable import reach, setting_key, standard_runs
from .describe import as_runs, data_text, fmt_list, model_text, pool_text, recipe_text, seeds_text
from .summary import final_rows

#: scale_table: metric column -> its name in the table
SCALE_COLUMNS = column_names(*NC_COLUMNS.values(), "test_error", ece_column())

# ------------------------------------------------------------------------------------------------
#: the scale axes :func:`scale_table` compares along: the config key that varies, how a value is written, and the
#: word a sentence uses for the axis
SCALE_AXES = {"epochs": ("epochs", "{} epochs", "length"), "width": ("width", "width {}", "width"),
              "train images": ("train_per_class", "{} per class", "training-set size"),
              "depth": ("model", "{} layers", "depth")}


def _setting(run, axis: str = "epochs") -> tuple[tuple, str]:
    """What must be equal for runs to differ only along ``axis`` (:func:`.comparable.setting_key`), and how a page
    names it."""
    c = run.config
    milestones = c.get("milestones") or []
    key = setting_key(run, vary=axis)
    data = (data_text(run) if axis != "train images" else
            f"{run.label} [subset: {c.get('test_per_class')} test, {c.get('holdout_per_class')} holdout per class]")
    pool = pool_text(run)
    data += f" {pool}" if pool else ""
    if axis == "width":   # the network without its width
        model = c["model"]
    elif axis == "depth":   # the width without the network
        model = f"width {model_width(c['model'], c.get('width'))}"
    else:
        model = model_text(c, run)
    if axis != "epochs":
        model += f", {c.get('epochs')} epochs (lr decays at {fmt_list(milestones)})"
    # the lr decays are in the model part (they vary along the length axis)
    return key, f"{data}, {model}, {recipe_text([run], decays=False)}"


def _scale_settings(runs, axis: str, deltas: Sequence[float]) -> list[tuple[str, dict[int, list], list[int]]]:
    """The settings :func:`scale_table` and :func:`scale_ratios` compare: per setting trained at two or more
    values of ``axis``, ``(its name, {value: its runs on the common seeds}, the common seeds)``; the common seeds
    are those that every value has for both losses (``deltas``, CE first)."""
    if axis not in SCALE_AXES:
        raise ValueError(f"axis must be one of {', '.join(SCALE_AXES)}; got {axis!r}")
    if len(deltas) != 2 or float(deltas[0]) != 0.0:
        raise ValueError(f"deltas must be (0, one LS δ), CE first; got {list(deltas)}")
    field = SCALE_AXES[axis][0]
    runs = [r for r in standard_runs(as_runs(runs)) if not reach(r).prefix
            and (r.config.get(field) is not None or axis == "width")
            and in_deltas(r.config["delta"], deltas)]
    settings: dict[tuple, list] = {}
    names: dict[tuple, str] = {}
    for r in runs:
        key, names[key] = _setting(r, axis)
        settings.setdefault(key, []).append(r)
    shared = pd.Series(names).duplicated(keep=False)  # two settings a page would name alike: number them
    names = {key: f"{name} (setting {i + 1})" if shared.iloc[i] else name for i, (key, name) in enumerate(names.items())}
    out = []
    for key, rs in settings.items():
        value_of = {id(r): int(model_width(r.config.get("model"), r.config.get("width")) if axis == "width"
                               else model_depth(r.config["model"]) if axis == "depth" else r.config[field]) for r in rs}
        values = sorted(set(value_of.values()))
        if len(values) < 2:
            continue
        seeds = set.intersection(*({int(r.config["seed"]) for r in rs if value_of[id(r)] == v
                                    and is_delta(r.config["delta"], d)} for v in values for d in deltas))
        at = {v: [r for r in rs if value_of[id(r)] == v and int(r.config["seed"]) in seeds] for v in values}
        out.append((names[key], at, sorted(seeds)))
    return out


def scale_table(runs, axis: str = "epochs", deltas: Sequence[float] = CE_VS_LS) -> pd.DataFrame:
    """Settings trained at several values of ``axis`` (a key of :data:`SCALE_AXES`: ``epochs``, the recipe's
    length; ``width``, the model's base width; ``train images``, training images per class; ``depth``, the network's
    layers, :func:`lsnc.models.model_depth`: ResNet-18 against ResNet-50 at one base width): complete (not prefix)
    runs in their group's main precision, no UFM-style ones (:func:`.comparable.standard_runs`), that share
    everything else (``_setting``). Per setting, value and loss (CE, then LS at ``deltas[1]``): the group(s), the lr
    decays, and the mean over seeds of the final NC1, NC2, NC3, test error and ECE (20 bins), on the seeds that every
    value has for both losses. Column ``axis`` holds the value as a page writes it. Empty when no setting was
    trained at two values."""
    settings = _scale_settings(runs, axis, deltas)
    fmt = SCALE_AXES[axis][1]
    rows = []
    for setting, at, seeds in settings:
        for value, value_runs in at.items():
            final = final_rows(value_runs) if value_runs else pd.DataFrame()
            for delta in deltas:
                mine = [r for r in value_runs if is_delta(r.config["delta"], delta)]
                row = {"setting": setting, axis: fmt.format(value),
                       "group": fmt_list(sorted({r.dataset for r in mine})),
                       "lr decays at": " / ".join(dict.fromkeys(fmt_list(r.config.get("milestones") or [])
                                                                 for r in mine)),
                       "loss": loss_label(delta), "seeds": seeds_text(seeds) if seeds else "none in common"}
                sub = final[is_delta(final["delta"], delta)] if len(final) else final
                row.update({name: (pd.to_numeric(sub[col], errors="coerce").mean() if len(sub) and col in sub
                                   else np.nan) for col, name in SCALE_COLUMNS.items()})
                rows.append(row)
    return pd.DataFrame(rows)


def scale_ratios(runs, axis: str = "epochs", deltas: Sequence[float] = CE_VS_LS) -> pd.DataFrame:
    """The LS / CE ratios behind :func:`scale_table`, for a figure: one row per setting, value of ``axis`` and
    metric (:data:`SCALE_COLUMNS`), with ``value`` (the axis value, a number), ``factor`` (value / the setting's
    smallest value), ``groups`` (the run groups at that value), ``ratio`` (mean over seeds of LS's final value
    / the same mean of CE's, the ratio :func:`scale_lines` states), ``ratio_min`` / ``ratio_max`` (the smallest
    and largest ratio of one seed's LS run to the same seed's CE run) and ``seeds`` (how many pairs). A metric
    not recorded at a value gives no row."""
    rows = []
    for name, at, seeds in _scale_settings(runs, axis, deltas):
        smallest = min(at)
        for value, value_runs in at.items():
            if not value_runs:
                continue
            final = final_rows(value_runs)
            final = final.assign(seed=[int(s) for s in final["seed"]])
            for col, metric in SCALE_COLUMNS.items():
                if col not in final:
                    continue
                ce, ls = (pd.to_numeric(final[is_delta(final["delta"], d)].set_index("seed")[col], errors="coerce")
                          for d in deltas)
                pairs = ls / ce
                if not len(pairs) or not np.isfinite(pairs).all() or ce.mean() == 0:
                    continue  # a metric missing, or zero for CE, at this value: no ratio to draw
                rows.append({"setting": name, "groups": fmt_list(sorted({r.dataset for r in value_runs})),
                             "value": value, "factor": value / smallest, "metric": metric,
                             "ratio": ls.mean() / ce.mean(), "ratio_min": pairs.min(), "ratio_max": pairs.max(),
                             "seeds": len(pairs)})
    return pd.DataFrame(rows, columns=["setting", "groups", "value", "factor", "metric", "ratio", "ratio_min",
                                       "ratio_max", "seeds"])


def scale_runs(runs, deltas: Sequence[float] = CE_VS_LS) -> list:
    """The runs that :func:`scale_table` compares along any axis (on their settings' common seeds), once each, in
    the order of ``runs``: what a figure of the comparisons was computed from."""
    compared = {id(r) for axis in SCALE_AXES for _, at, _ in _scale_settings(runs, axis, deltas)
                for value_runs in at.values() for r in value_runs}
    return [r for r in as_runs(runs) if id(r) in compared]


def scale_lines(table: pd.DataFrame) -> str:
    """Markdown bullets from :func:`scale_table`: per setting and metric, whether LS is below or above CE at
    every value of the axis (or equal, or the order changes), with the LS / CE ratio at each value."""
    if table.empty:
        return ""
    axis = next(a for a in SCALE_AXES if a in table.columns)
    word = SCALE_AXES[axis][2]
    lines = []
    for setting, rows in table.groupby("setting", sort=False):
        is_ce = rows["loss"] == loss_label(0.0)
        ce, ls = rows[is_ce].set_index(axis), rows[~is_ce].set_index(axis)
        parts = []
        for name in SCALE_COLUMNS.values():
            ratio = ls[name] / ce[name]
            if ratio.isna().any():
                parts.append(f"{name}: not recorded at every {word}")
                continue
            order = (f"LS lower at every {word}" if (ratio < 1).all() else
                     f"LS higher at every {word}" if (ratio > 1).all() else
                     f"LS equal to CE at every {word}" if (ratio == 1).all() else f"the order changes with {word}")
            parts.append(f"{name}: {order} (LS / CE " + ", ".join(f"{v:.3g} at {e}" for e, v in ratio.items()) + ")")
        lines.append(f"* **{setting}** (seeds {rows['seeds'].iloc[0]}), {ls['loss'].iloc[0]} against CE. "
                     + "; ".join(parts) + ".")
    return "\n".join(lines)
