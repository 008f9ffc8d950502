"""Numbers the pages print or glue: end-of-training tables, means per loss, CE-vs-LS sentences, bf16 vs fp32
(one setting at several scales is :mod:`.scale`'s).

Every function takes runs (a list, or a Selection) already chosen by :func:`lsnc.book.select`; the figures in
:mod:`lsnc.book.plots` draw from the same tables (:func:`metrics_table`, :func:`final_rows`, :func:`ufm_errors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..calibration import ECE_BINS, ECE_DEFAULT_BINS
from ..runs import Run, runs_table
from ..vocab import (CE_VS_LS, CLASS_MEAN_NORM, CLASSIFIER_NORM, COLUMN_NAMES, FEATURE_NORM, MAIN_DELTA, NC_COLUMNS,
                     UFM_THEORY_H_NORM, UFM_THEORY_W_NORM, column_names, ece_column, in_deltas, is_delta, loss_label,
                     temperature_column)
from .claims import paired_comparisons
from .measures import epochs_to_zero_error, final_value
from .comparable import UpTo, align_prefixes, common_epoch, reach, setting_key
from .describe import as_runs, data_text, describe_setting, fmt_list, model_text

#: summary_by_loss: metric column -> its column in the summary
SUMMARY_COLUMNS = {"first_zero_error_epoch": "first_zero_error_epoch",
                   **{col: name.lower() for name, col in NC_COLUMNS.items()},
                   "test_error": "test_error", ece_column(): f"ece{ECE_DEFAULT_BINS}",
                   ece_column("holdout"): f"ece{ECE_DEFAULT_BINS}_ts_holdout"}
#: precision_comparison: metric column -> its name in the table
PRECISION_COLUMNS = column_names(*NC_COLUMNS.values(), "test_accuracy", ece_column())
#: the end-of-training collapse table (fig6)
FINAL_COLLAPSE_COLUMNS = (*NC_COLUMNS.values(), CLASS_MEAN_NORM, CLASSIFIER_NORM, "test_error")
#: the UFM-style table (fig9): closed form, measured, relative error
UFM_ERROR_COLUMNS = (UFM_THEORY_W_NORM, CLASSIFIER_NORM, "rel_err_w", UFM_THEORY_H_NORM,
                     FEATURE_NORM, "rel_err_h", CLASS_MEAN_NORM, "rel_err_h_centred")


# ------------------------------------------------------------------------------------------------
# tables the figures draw
# ------------------------------------------------------------------------------------------------
def metrics_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Every evaluated epoch of every run (:func:`lsnc.runs.runs_table`), delta as float; raises ValueError
    when there is nothing to draw."""
    df = runs_table(runs)
    if df.empty:
        raise ValueError("no runs to draw (the selection is empty, or the runs have no metrics yet)")
    df["delta"] = df["delta"].astype(float)
    return df


def last_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The row of each run's last evaluated epoch in a table of runs (:func:`metrics_table` or one built on it)."""
    return table.loc[table.groupby(["dataset", "run"])["epoch"].idxmax()].reset_index(drop=True)


def final_rows(runs: Sequence[Run]) -> pd.DataFrame:
    """The last evaluated epoch of every run (one row per run), ``epoch`` saying which. Prefixes of one recipe
    that stopped at different epochs (GPU windows of different lengths; per group and
    :func:`.comparable.setting_key`) are first cut at one epoch they reached
    (:func:`.comparable.align_prefixes`: the latest one at which enough seeds have every δ of the group), so the
    "final" values of one group are never from different epochs; its runs that stopped before that epoch are left
    out."""
    seen = {}  # id of a run given -> the run as read (itself, or cut by align_prefixes)
    for rs, aligned in _final_cuts(runs):
        for a in aligned.runs:
            given = a if any(a is r for r in rs) else a.run  # a run as given, or UpTo(it, the common epoch)
            seen[id(given)] = a
    return last_rows(metrics_table([seen[id(r)] for r in runs if id(r) in seen]))


def _final_cuts(runs: Sequence[Run]) -> list[tuple[list, Any]]:
    """(runs, :func:`.comparable.align_prefixes` of them) per group and setting: how :func:`final_rows` reads them."""
    sets: dict[tuple, list] = {}
    for r in runs:
        sets.setdefault((r.dataset, setting_key(r)), []).append(r)
    return [(rs, align_prefixes(rs)) for rs in sets.values()]


def final_epoch_text(runs) -> str:
    """Which epoch a page's final values are from, for its caption: "last evaluated epoch of each run", and, for a
    group whose runs stopped at different epochs of the recipe (prefixes), the epoch :func:`final_rows` read them
    at and the runs it left out because they stopped before it."""
    cuts = [(rs[0], aligned) for rs, aligned in _final_cuts(as_runs(runs)) if aligned.epoch is not None]
    text = "last evaluated epoch of each run"
    for first, aligned in cuts:
        several = sum(r.dataset == first.dataset for r, _ in cuts) > 1  # the group has two settings cut: say which
        setting = f" ({data_text(first)}, {model_text(first.config, first)})" if several else ""
        text += f"; `{first.dataset}`{setting}: epoch {aligned.epoch}, the last one all its compared runs reached"
        if aligned.skipped:
            text += " (left out, stopped earlier: " + ", ".join(
                f"{r.name} at epoch {reach(r).reached}" for r in aligned.skipped) + ")"
    return text


def ufm_errors(runs: Sequence[Run]) -> pd.DataFrame:
    """Per evaluated epoch of each UFM-style run: measured mean ||w_k||, ||h_i||, the closed form, and the
    relative errors |measured - closed form| / closed form. ``rel_err_h_centred`` compares the closed-form
    ||h_i|| with the mean centred class-mean norm ||mu_k - mu_G||: at the UFM minimizer features are
    collapsed and centred (mu_G = 0), while a ReLU network's features have a nonzero global mean."""
    df = metrics_table(runs)
    for what, measured, theory_col in (("w", CLASSIFIER_NORM, UFM_THEORY_W_NORM),
                                       ("h", FEATURE_NORM, UFM_THEORY_H_NORM),
                                       ("h_centred", CLASS_MEAN_NORM, UFM_THEORY_H_NORM)):
        theory = pd.to_numeric(df.get(theory_col), errors="coerce")
        df[f"rel_err_{what}"] = (pd.to_numeric(df[measured], errors="coerce") - theory).abs() / theory
    return df


# ------------------------------------------------------------------------------------------------
# end-of-training tables of the pages
# ------------------------------------------------------------------------------------------------
def _final_means(final: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Mean over seeds per run group (``dataset``: two groups of one dataset, e.g. two scales, stay apart) and δ,
    with the group's dataset label, and what each mean is over: ``mean of`` (its number of seeds) and ``epoch``
    (the epoch its rows were read at: the runs' last, or one epoch prefixes all reached)."""
    by = final.groupby(["label", "dataset", "delta"])
    out = by[list(columns)].mean().round(4)
    out.insert(0, "epoch", by["epoch"].agg(lambda e: fmt_list(sorted({int(x) for x in e}))))
    fewest = by[list(columns)].count().min(axis=1)  # a column a seed did not log is a mean over fewer seeds

    def over(n: int, least: int) -> str:
        return f"{n} seed{'s' if n > 1 else ''}" + (f" ({least} for some columns)" if 0 < least < n else "")
    out.insert(0, "mean of", [over(n, least) for n, least in zip(by.size(), fewest)])
    return out


def final_collapse_table(runs) -> pd.DataFrame:
    """Mean over seeds, per dataset and δ, of the end-of-training NC1-NC3, norms and test error."""
    table = _final_means(final_rows(as_runs(runs)), FINAL_COLLAPSE_COLUMNS)
    return table.rename(columns=lambda c: c.replace("train_", ""))


def final_calibration_table(runs, bins: int = ECE_DEFAULT_BINS) -> pd.DataFrame:
    """Mean over seeds, per dataset and δ, of the end-of-training ECE (before / after temperature scaling)
    and the fitted temperatures."""
    cols = [ece_column(bins=bins), ece_column("holdout", bins), ece_column("testfit", bins),
            temperature_column("holdout"), temperature_column("testfit")]
    return _final_means(final_rows(as_runs(runs)), cols)


def _confidence(temperature: float) -> str:
    """The fitted temperature in words: above 1 the model is over-confident (TS softens it), below 1
    under-confident."""
    return ("over-confident" if temperature > 1 else "under-confident" if temperature < 1 else "calibrated")


def calibration_lines(runs, bins: int = ECE_DEFAULT_BINS) -> str:
    """Markdown, one bullet per group with CE and at least two LS δ: the end-of-training test ECE before
    temperature scaling (mean over seeds) of CE, the δ where LS is below and above it and the lowest; the
    held-out temperature T of CE and of each LS δ, in words (:func:`_confidence`); the range of ECE after TS
    and of the test error."""
    final = final_rows(as_runs(runs))
    ece, ts, temp = ece_column(bins=bins), ece_column("holdout", bins), temperature_column("holdout")
    lines = []
    for group, sub in final.groupby("dataset", sort=False):
        means = sub.groupby("delta")[[ece, ts, temp, "test_error"]].mean()
        if 0.0 not in means.index or len(means) < 3:
            continue
        seeds = sub.groupby("delta")["seed"].nunique()
        ls_seeds = sorted(set(seeds.drop(index=0.0)))
        ce, ls = means.loc[0.0], means.drop(index=0.0)

        def at(mask, values=None):
            """"δ = 0.05, 0.1" (with each δ's value when given) for the LS δ where ``mask`` holds."""
            picked = ls.index[mask]
            return "δ = " + ", ".join(f"{d:g}" + (f" ({values[d]:.3g})" if values is not None else "")
                                      for d in picked) if len(picked) else ""

        order = "; ".join(f"{word} than CE at {where}" for word, where in
                          (("lower", at(ls[ece] < ce[ece], ls[ece])), ("higher", at(ls[ece] > ce[ece], ls[ece])))
                          if where)
        confidence = "; ".join(f"{word} at {where}" for word, where in
                               (("over-confident", at(ls[temp] > 1, ls[temp])),
                                ("under-confident", at(ls[temp] < 1, ls[temp])),
                                ("calibrated", at(ls[temp] == 1, ls[temp]))) if where)
        best = means[ece].idxmin()
        lines.append(
            f"- **{sub['label'].iloc[0]}** (`{group}`; CE {seeds.loc[0.0]} seeds, LS "
            f"{ls_seeds[0]}{'' if len(ls_seeds) == 1 else f'–{ls_seeds[-1]}'} per δ): ECE{bins} before TS, mean "
            f"over seeds: CE {ce[ece]:.3g}; LS {order}; lowest: {loss_label(best)}. Held-out temperature T: CE "
            f"{ce[temp]:.3g} ({_confidence(ce[temp])}); LS {confidence}. After TS, ECE{bins} is "
            f"{means[ts].min():.3g} to {means[ts].max():.3g} over all δ. Test error: CE {ce['test_error']:.3g}, "
            f"LS {ls['test_error'].min():.3g} to {ls['test_error'].max():.3g}.")
    return "\n".join(lines)


#: calibration_gain: its columns, in order
CALIBRATION_GAIN_COLUMNS = ("label", "dataset", "pairs", "ce_temperature", "ce_temperature_min",
                            "ce_temperature_max", "ce_ece", "ls_ece", "ratio", "ratio_min", "ratio_max", "note")


def calibration_gain(runs, bins: int = ECE_DEFAULT_BINS, delta: float = MAIN_DELTA) -> pd.DataFrame:
    """Does LS help calibration more where CE was more over-confident? One row per run group with CE and LS at
    ``delta`` on common seeds, paired as the claims pair them (one setting; prefixes compared at an epoch all
    reached), at that final epoch:

    * ``ce_temperature`` (``_min``, ``_max``): CE's held-out temperature T, mean (smallest, largest) over the
      pairs; above 1, CE was over-confident;
    * ``ce_ece`` / ``ls_ece``: the test ECE before temperature scaling (``bins`` bins), means over the pairs;
    * ``ratio``: ``ls_ece / ce_ece`` (below 1, LS ended better calibrated); ``ratio_min`` / ``ratio_max``: the
      smallest and largest ratio of one seed's LS run to the same seed's CE run;
    * ``pairs``: the number of seed pairs; ``note``: why a group has no temperature or ratio (its runs held no
      images out, as the paper's recipe does, or logged no ECE), else empty.

    Rows with a temperature are sorted by it, the others follow. The groups differ in data, model and length at
    once: a relation across them is a reading, not a controlled test."""
    ece, temp = ece_column(bins=bins), temperature_column("holdout")
    rows = []
    for comp in paired_comparisons(runs, delta):
        seeds = sorted(set(comp.ce) & set(comp.ls))
        t = pd.Series({s: final_value(comp.ce[s], temp) for s in seeds})
        ce_e, ls_e = (pd.Series({s: final_value(side[s], ece) for s in seeds}) for side in (comp.ce, comp.ls))
        pairs = ls_e / ce_e
        note = ("no held-out temperature (the runs hold no images out)" if not np.isfinite(t).all() else
                f"no ECE{bins} at the final epoch" if not np.isfinite(pairs).all() else "")
        row = {"label": comp.label, "dataset": comp.dataset, "pairs": len(seeds), "note": note}
        if not note:
            row.update({"ce_temperature": t.mean(), "ce_temperature_min": t.min(), "ce_temperature_max": t.max(),
                        "ce_ece": ce_e.mean(), "ls_ece": ls_e.mean(), "ratio": ls_e.mean() / ce_e.mean(),
                        "ratio_min": pairs.min(), "ratio_max": pairs.max()})
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(CALIBRATION_GAIN_COLUMNS))
    return table.sort_values("ce_temperature", kind="stable", na_position="last").reset_index(drop=True)


def calibration_gain_runs(runs, bins: int = ECE_DEFAULT_BINS, delta: float = MAIN_DELTA) -> list:
    """The runs behind the rows of :func:`calibration_gain` that have a ratio (what its figure is drawn from)."""
    kept = set(calibration_gain(runs, bins, delta).query("note == ''")["dataset"])
    return [r for c in paired_comparisons(runs, delta) if c.dataset in kept
            for s in sorted(set(c.ce) & set(c.ls)) for r in (c.ce[s], c.ls[s])]


def calibration_gain_lines(table: pd.DataFrame, delta: float = MAIN_DELTA) -> str:
    """Markdown from :func:`calibration_gain`: in which groups LS at ``delta`` ends with the lower and the higher
    ECE (means over pairs), the range of CE's held-out temperature in each set, whether the two ranges are apart
    (every group where LS helps had a more over-confident CE than every group where it hurts), and the groups
    left out (a ``note``) with the reason."""
    if table.empty:
        return "No run group has CE and LS on common seeds."
    left_out = table[table["note"].fillna("") != ""] if "note" in table else table.iloc[:0]
    table = table.drop(index=left_out.index)
    sets = {word: table[mask] for word, mask in (("lower", table["ratio"] < 1), ("higher", table["ratio"] > 1),
                                                 ("equal", table["ratio"] == 1)) if mask.any()}

    def t_range(rows):
        low, high = rows["ce_temperature"].min(), rows["ce_temperature"].max()
        return f"{low:.3g}" if low == high else f"{low:.3g} to {high:.3g}"

    lines = [f"- {loss_label(delta)} ends with the {word} ECE in {len(rows)} of the {len(table)} group(s) with a "
             f"held-out temperature "
             f"({', '.join(f'`{g}`' for g in rows['dataset'])}); there CE's held-out T (mean over seeds) is "
             f"{t_range(rows)}." for word, rows in sets.items()]
    if "lower" in sets and "higher" in sets:
        apart = sets["lower"]["ce_temperature"].min() > sets["higher"]["ce_temperature"].max()
        lines.append("- The two temperature ranges are apart: in these runs, every group where LS lowered the ECE had "
                     "a more over-confident CE than every group where LS raised it." if apart else
                     "- The two temperature ranges overlap: CE's temperature alone does not sort these groups.")
    lines += [f"- Left out: `{row['dataset']}` ({row['note']})." for _, row in left_out.iterrows()]
    return "\n".join(lines)


def _last_ufm_rows(runs) -> pd.DataFrame:
    return last_rows(ufm_errors(as_runs(runs)))


def ufm_error_table(runs) -> pd.DataFrame:
    """Mean over seeds, per dataset and δ, of the UFM-style runs' final norms against the closed form."""
    return _final_means(_last_ufm_rows(runs), UFM_ERROR_COLUMNS)


def ufm_error_maxima(runs) -> dict[str, float]:
    """The largest end-of-training relative error over the UFM-style runs: ``max_rel_err_w``, ``_h``,
    ``_h_centred``."""
    last = _last_ufm_rows(runs)
    return {f"max_rel_err_{w}": float(last[f"rel_err_{w}"].max()) for w in ("w", "h", "h_centred")}


#: ufm_ratio_table: measured column -> its column in the table (the closed form's ‖w‖ and ‖h‖ share one ratio)
UFM_RATIO_COLUMNS = {CLASSIFIER_NORM: "classifier-row norm ‖w‖: LS / CE",
                     CLASS_MEAN_NORM: "centred class-mean norm: LS / CE"}
UFM_RATIO_THEORY = "closed form ‖w‖ and ‖h‖: LS / CE"


def ufm_ratio_table(runs) -> pd.DataFrame:
    """How much LS shrinks the norms, measured against the closed form: per run group and δ > 0, the mean over
    seeds of each final norm of :data:`UFM_RATIO_COLUMNS` divided by the same mean at δ = 0 (the group's CE), beside
    the closed form's ratio, a single one for ‖w_k‖ and ‖h_i‖; the measured feature norm is the centred class-mean
    norm (the minimizer's features are collapsed and centred). ``epoch``: the final epoch the means are at (LS / CE
    where they differ). Empty without a CE run."""
    means = ufm_error_table(runs)
    rows = []
    for (label, dataset), group in means.groupby(level=["label", "dataset"], sort=False):
        group = group.droplevel(["label", "dataset"])
        if 0.0 not in group.index:
            continue
        ce = group.loc[0.0]
        for delta, ls in group.drop(index=0.0).iterrows():
            row = {"label": label, "dataset": dataset, "delta": delta, "mean of": f"{ls['mean of']} / {ce['mean of']}",
                   "epoch": ls["epoch"] if ls["epoch"] == ce["epoch"] else f"{ls['epoch']} / {ce['epoch']}"}
            for measured, name in UFM_RATIO_COLUMNS.items():
                row[name] = round(ls[measured] / ce[measured], 3)
            # the closed form scales ‖w‖ and ‖h‖ by one factor (lsnc.ufm.closed_form): one column, from ‖w‖
            row[UFM_RATIO_THEORY] = round(ls[UFM_THEORY_W_NORM] / ce[UFM_THEORY_W_NORM], 3)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["label", "dataset", "delta"]) if rows else pd.DataFrame()


# ------------------------------------------------------------------------------------------------
# CE against LS
# ------------------------------------------------------------------------------------------------
def summary_by_loss(runs, dataset: str, deltas: Sequence[float] = CE_VS_LS,
                    error_threshold: float = 0.0) -> pd.DataFrame:
    """For one dataset, per delta (rows), means over seeds (as the figures draw them) of: the first evaluated epoch
    with train error <= threshold (over the seeds that reached it), and the end-of-training NC1, NC2, NC3, test
    error, ECE (20 bins); and the number of seeds."""
    runs = [r for r in as_runs(runs) if r.dataset == dataset and in_deltas(r.config["delta"], deltas)]
    df = runs_table(runs)
    if df.empty:
        return pd.DataFrame()
    last = last_rows(df).set_index("run")
    # inf (never reached) is shown as "never"; NaN keeps the means over the seeds that reached it finite.
    last["first_zero_error_epoch"] = pd.Series({r.name: epochs_to_zero_error(r, error_threshold)
                                                for r in runs}).replace(np.inf, np.nan)
    out = (last[list(SUMMARY_COLUMNS) + ["delta"]].rename(columns=SUMMARY_COLUMNS)
           .apply(pd.to_numeric, errors="coerce"))
    res = out.groupby("delta").mean()
    res["seeds"] = out.groupby("delta").size()
    return res


def zero_error_epochs_text(runs, dataset: str, delta: float, threshold: float = 0.0) -> str:
    """When each seed first reached zero training error, in evaluated epochs only (a mean over seeds could be an
    epoch that was never evaluated): ``epoch 10`` when the seeds agree, ``epochs 15, 20 (seeds 0, 1)``
    for up to three seeds, else the range ``epochs 10–20 over 5 seeds``; "never" for seeds that did not."""
    rs = sorted((r for r in as_runs(runs) if r.dataset == dataset and is_delta(r.config["delta"], delta)),
                key=lambda r: r.config["seed"])
    at = [epochs_to_zero_error(r, threshold) for r in rs]
    reached = [int(e) for e in at if np.isfinite(e)]
    never = len(at) - len(reached)
    if not reached:
        return "never"
    if len(set(at)) == 1:
        return f"epoch {reached[0]}" + ({1: "", 2: " (both seeds)"}.get(len(at), f" (all {len(at)} seeds)"))
    if len(at) <= 3:
        return (f"epochs {', '.join('never' if not np.isfinite(e) else str(int(e)) for e in at)} "
                f"(seeds {', '.join(str(r.config['seed']) for r in rs)})")
    text = f"epochs {min(reached)}–{max(reached)} over {len(reached)} seeds"
    return text + (f", never for {never}" if never else "")


def _compare_bullet(runs, dataset: str, delta: float, ce: pd.Series, ls: pd.Series) -> str:
    """One group's bullet, headed by what its runs are (the group, data subset, model, epochs of which recipe), so
    the bullets of groups that share a dataset can be told apart."""
    pairs = ", ".join(f"{n} {ce[n.lower()]:.3g} vs {ls[n.lower()]:.3g}" for n in NC_COLUMNS)
    ece = SUMMARY_COLUMNS[ece_column()]
    reached = {d: zero_error_epochs_text(runs, dataset, d) for d in (0.0, delta)}
    zero = ", ".join(f"{loss_label(d)} {'never' if text == 'never' else 'at ' + text}" for d, text in reached.items())
    shown = [r for r in runs if r.dataset == dataset]
    return (f"- **`{dataset}`**: {describe_setting(shown)}; {int(ce['seeds'])} CE / {int(ls['seeds'])} LS "
            f"seeds. Zero training error: {zero}; final values, means over seeds, CE vs LS: {pairs}; test error "
            f"{ce['test_error']:.3g} vs {ls['test_error']:.3g}; ECE {ce[ece]:.3g} vs {ls[ece]:.3g}.")


def compare_sentence(runs, deltas: Sequence[float] = CE_VS_LS) -> str:
    """Markdown, one bullet per dataset: when each seed reached zero train error (evaluated epochs only), and
    end-of-training NC1/NC2/NC3, test error, CE vs LS (means over seeds), generated from the runs."""
    runs = as_runs(runs)
    lines = []
    for ds in dict.fromkeys(r.dataset for r in runs):
        chosen = [r for r in runs if r.dataset == ds and in_deltas(r.config["delta"], deltas)]
        # prefixes that stopped at different epochs (GPU windows) are summarised at one epoch they all reached
        aligned = align_prefixes(chosen)
        res = summary_by_loss(aligned.runs, ds, deltas)
        if len(res) < 2 or 0.0 not in res.index:
            continue
        lines += [_compare_bullet(aligned.runs, ds, delta, res.loc[0.0], ls)
                  + (f" ({aligned.note}.)" if aligned.note else "")
                  for delta, ls in res.drop(index=0.0).iterrows()]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# bf16 against fp32
# ------------------------------------------------------------------------------------------------
def _twin_key(r: Run) -> tuple:
    """What a bf16 run and its full-precision twin share: δ, seed, TF32 or not, and everything but the autocast
    (:func:`.comparable.setting_key`, the data's label included; not how far each got), in the same group or another:
    the GPU windows put bf16 sets in a group of their own (``…-gpu-bf16``) beside the TF32 group."""
    return (float(r.config["delta"]), int(r.config["seed"]), bool(r.config.get("tf32")),
            setting_key(r, vary="precision"))


def _twin_of(r: Run, candidates: list) -> Run | None:
    """The twin among ``candidates`` (runs with ``r``'s twin key): the one in r's own group, else the one in the
    group r's name derives from (``…-gpu-bf16`` → ``…-gpu``), else the only one; None when several remain (two
    groups hold a run with the same setting, δ and seed: which one is the twin is not for the page to guess)."""
    for group in (r.dataset, r.dataset.removesuffix("-bf16")):
        here = [t for t in candidates if t.dataset == group]
        if len(here) == 1:
            return here[0]
    return candidates[0] if len(candidates) == 1 else None


def precision_comparison(runs) -> pd.DataFrame:
    """Metrics of each bf16-autocast run of ``runs`` (a selection made with ``amp=None``, so that it holds both
    precisions) beside its full-precision twin there (same δ, seed, data, model, recipe, in its group or another:
    fp32, or tf32 where the twin ran with ``--tf32``; the ``twin`` column names the twin's group where it differs), at the last epoch both reached (``epoch``; a GPU window trains the twin for less
    time, and prefixes of one recipe agree up to where the shorter stopped), with the relative difference
    (bf16 − twin) / |twin|. Empty when no bf16 run has a twin."""
    runs = as_runs(runs)
    full: dict[tuple, list] = {}
    for r in runs:
        if r.config.get("amp", "none") == "none":
            full.setdefault(_twin_key(r), []).append(r)
    rows = []
    for r in runs:
        if r.config.get("amp") != "bf16":
            continue
        twin = _twin_of(r, full.get(_twin_key(r), []))
        if twin is None:
            continue
        epoch = common_epoch([twin, r], min(reach(r).reached, reach(twin).reached))
        a, b = UpTo(twin, epoch).metrics.iloc[-1], UpTo(r, epoch).metrics.iloc[-1]
        if int(a["epoch"]) != int(b["epoch"]):  # evaluated on different epochs: no common row
            continue
        kind = "tf32" if twin.config.get("tf32") else "fp32"
        row = {"dataset": r.dataset, "label": r.label, "δ": r.config["delta"], "seed": r.config["seed"],
               "epoch": int(a["epoch"]),
               "twin": kind if twin.dataset == r.dataset else f"{kind} ({twin.dataset})"}
        for col, name in PRECISION_COLUMNS.items():
            row[f"{name} twin"], row[f"{name} bf16"] = a[col], b[col]
            row[f"{name} rel. diff"] = (b[col] - a[col]) / abs(a[col]) if a[col] else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def precision_page_table(table: pd.DataFrame, digits: int = 4):
    """:func:`precision_comparison` as the runs page shows it, narrow enough for the page: one row per pair,
    one column per metric, each cell "twin → bf16" over the relative difference in percent (the twin is fp32,
    or tf32 on a GPU; the ``twin`` column says which, ``epoch`` where they are compared)."""
    if table.empty:
        return page_table(table)
    out = table[["label", "dataset", "δ", "seed", "epoch", "twin"]].copy()
    for name in PRECISION_COLUMNS.values():
        out[f"{name}: twin → bf16 (rel. diff.)"] = [
            f"{a:.{digits}g} → {b:.{digits}g}<br>({'n/a' if pd.isna(d) else f'{d:+.2%}'})"
            for a, b, d in zip(table[f"{name} twin"], table[f"{name} bf16"], table[f"{name} rel. diff"])]
    return page_table(out).set_properties(**{"text-align": "right", "white-space": "nowrap"},
                                          subset=list(out.columns[6:]))


# ------------------------------------------------------------------------------------------------
# how a table looks on a page
# ------------------------------------------------------------------------------------------------
#: column -> header on a page: the paper's names for the NC metrics, words for the rest
PAGE_HEADERS = {**COLUMN_NAMES,
                **{col.replace("train_", ""): COLUMN_NAMES[col]  # the same, as the summary tables name them
                   for col in (*NC_COLUMNS.values(), CLASS_MEAN_NORM, CLASSIFIER_NORM)},
                "label": "dataset", "dataset": "group", "delta": "δ", "rel_err_w": "rel. error ‖w_k‖",
                "rel_err_h": "rel. error ‖h_i‖", "rel_err_h_centred": "rel. error ‖μ_k − μ_G‖",
                "pairs": "seed pairs", "ce_temperature": "CE: T (held-out fit)", "ce_temperature_min": "CE: T min",
                "ce_temperature_max": "CE: T max", "ce_ece": "CE: ECE before TS", "ls_ece": "LS: ECE before TS",
                "ratio": "ECE LS / CE", "ratio_min": "LS / CE, seed pair min", "ratio_max": "LS / CE, seed pair max",
                "note": "left out because"}


#: the page header of every ECE column (vocab.ece_column: each bin count, before and after temperature scaling)
ECE_HEADERS = {ece_column(ts, bins): f"ECE ({bins} bins){words}" for bins in ECE_BINS
               for ts, words in ((None, ""), ("holdout", " after TS (held-out T)"), ("testfit", " after TS (test-fit T)"))}


def _page_header(col: str) -> str:
    return ECE_HEADERS.get(col) or PAGE_HEADERS.get(col) or col.replace("_", " ")


def page_table(table: pd.DataFrame, digits: int = 3):
    """A table as a page shows it: the index as ordinary columns (a dataset written once per block), headers
    in the paper's names (NC1, NC2, NC3) and words, numbers to ``digits`` significant digits, no index column,
    small type and wrapped headers so it fits the page width."""
    df = table.reset_index() if not isinstance(table.index, pd.RangeIndex) else table.copy()
    blocks = [c for c in ("label", "dataset", "setting") if c in df.columns]
    new_block = df[blocks].ne(df[blocks].shift()).any(axis=1) if blocks else None
    for col in blocks:  # the dataset, group and setting once per block of rows
        df[col] = df[col].where(new_block, "")
    df = df.rename(columns=_page_header)
    numeric = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    fmt = {c: (lambda v, d=digits: "" if pd.isna(v) else f"{v:.{d}g}") for c in numeric}
    if "δ" in df.columns:
        fmt["δ"] = lambda v: f"{v:g}"
    return (df.style.hide(axis="index").format(fmt)
            .set_table_styles([{"selector": "th", "props": "white-space: normal; font-size: 0.85em;"},
                               {"selector": "td", "props": "font-size: 0.85em; padding: 0.2em 0.5em;"}])
            .set_properties(**{"text-align": "right"}, subset=numeric))
