"""Where NC3 comes from: the runs' NC3, CE against LS, taken apart (the claims page's last analysis).

NC3 = || W/||W|| - M/||M|| ||^2 compares the classifier W with the centred class means M. In many of these runs LS
ends with a *higher* NC3 than CE, where the paper (C2) has LS converge faster in NC3.
:func:`lsnc.metrics.nc3_decomposition` logs the numbers that say why, at every evaluated epoch (runs trained
before they existed lack them):

* ``classifier_mean_span_fraction`` = ||W P|| / ||W||, P the projector onto the span of the class means; with
* ``nc3_in_mean_span_sq``, the NC3 of W P:  1 - NC3/2 = fraction x (1 - NC3 in the span / 2);
* ``nc3_whitened_means_sq``: W against A = M Sigma_B^+, the least-norm classifier whose logit means W M^T are an
  exact simplex ETF (what label smoothing's finite, equal targets ask of the logit means, and weight decay
  prefers the least norm). A and M are parallel when the class means are an ETF; while they are not, a W near A
  has a small NC2 and a large NC3. A lies in the span too, so the distance of W P from A follows from it
  (:data:`NC3_IN_SPAN_WHITENED`, derived here). At rank K - 1, NC2 = 0 exactly when W P is parallel to A.
* ``nc3_means_whitened_sq`` = || A/||A|| - M/||M|| ||^2 (:data:`MEANS_WHITENED`; runs trained before it was
  added lack it): the NC3 of W = A, so what the means' own distance from an ETF costs a classifier with NC2 = 0.

All "against" columns are squared distances, as NC3 is; NC2 and the means' distance from the ETF are not.

:func:`final_decomposition` pairs CE and LS by seed per run group as the claims do
(:func:`lsnc.book.claims.paired_comparisons`), keeps the pairs that logged the columns, and reads them at the
final (common) epoch; :func:`decomposition_table` and :func:`decomposition_lines` put them on the page, and
``lsnc.book.plots.nc3`` draws them over training. :func:`final_vs_delta` reads the same columns across each group's
δ sweep (the δ figure's page), and :func:`delta_lines` says what they do as δ grows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import nc3_in_span_against_whitened
from ..vocab import MAIN_DELTA, NC_COLUMNS, TRAIN_PREFIX, is_delta, loss_label
from .claims import paired_comparisons
from .measures import final_value
from .comparable import align_prefixes, setting_key, standard_runs
from .describe import as_runs, by_dataset, describe_setting, seeds_text
from .summary import final_rows

#: the metrics.csv columns read here -> their names on the page
SPAN_FRACTION, NC3_IN_SPAN, NC3_WHITENED = (TRAIN_PREFIX + k for k in (
    "classifier_mean_span_fraction", "nc3_in_mean_span_sq", "nc3_whitened_means_sq"))
#: derived, not logged: the distance of W P from A (lsnc.metrics.nc3_in_span_against_whitened)
NC3_IN_SPAN_WHITENED = "nc3_in_mean_span_whitened_sq"
#: A against M: the NC3 of the least-norm classifier with NC2 = 0 (logged by newer runs only)
MEANS_WHITENED = TRAIN_PREFIX + "nc3_means_whitened_sq"
DECOMPOSITION_COLUMNS = {
    NC_COLUMNS["NC3"]: "NC3 = W against M (squared)",
    SPAN_FRACTION: "‖WP‖/‖W‖ (W in the span of the means)",
    NC3_IN_SPAN: "WP against M (squared)",
    NC3_WHITENED: "W against A = MΣ_B⁺ (squared)",
    NC3_IN_SPAN_WHITENED: "WP against A (squared)",
    MEANS_WHITENED: "A against M (squared): the NC3 of W = A",
    NC_COLUMNS["NC2"]: "NC2 = W Mᵀ against the ETF",
    TRAIN_PREFIX + "nc2_means_etf": "M Mᵀ against the ETF",
}
FINAL_COLUMNS = ("dataset", "label", "setting", "delta", "seed", "epoch", *DECOMPOSITION_COLUMNS)


def final_decomposition(runs, delta: float = MAIN_DELTA) -> tuple[pd.DataFrame, list, list[str]]:
    """``(table, runs used, groups left out)``. ``table``: one row per run (:data:`FINAL_COLUMNS`) of the CE / LS
    (δ = ``delta``) seed pairs of each group whose two runs both logged the decomposition at their final epoch
    (the common epoch where the claims cut prefixes); ``groups left out``: the groups with pairs but no such
    seed, e.g. trained before the columns existed."""
    rows, used, left_out = [], [], []
    for comp in paired_comparisons(runs, delta):
        seeds = [s for s in sorted(set(comp.ce) & set(comp.ls))
                 if all(np.isfinite(final_value(side[s], SPAN_FRACTION)) for side in (comp.ce, comp.ls))]
        if not seeds:
            left_out.append(comp.dataset)
            continue
        setting = describe_setting([run for s in seeds for run in (comp.ce[s], comp.ls[s])])
        for s in seeds:
            for run in (comp.ce[s], comp.ls[s]):
                used.append(run)
                last = run.metrics.sort_values("epoch").iloc[-1]
                rows.append({"dataset": comp.dataset, "label": comp.label, "setting": setting,
                             "delta": float(run.config["delta"]),
                             "seed": s, "epoch": int(last["epoch"]),
                             **{c: final_value(run, c) for c in DECOMPOSITION_COLUMNS
                                if c != NC3_IN_SPAN_WHITENED}})
    return with_in_span_whitened(pd.DataFrame(rows, columns=list(FINAL_COLUMNS))), used, left_out


def _sweep(group: list) -> list:
    """One standard run per (δ, seed) of a group's δ sweep: the setting with the most runs
    (:func:`lsnc.book.comparable.setting_key`, as the claims pick theirs), the first run of each (δ, seed), and prefixes
    that stopped at different epochs cut at one epoch they reached (:func:`lsnc.book.comparable.align_prefixes`)."""
    main = pd.Series([setting_key(r) for r in group]).value_counts().index[0]
    picked: dict[tuple[float, int], object] = {}
    for r in group:
        if setting_key(r) == main:
            picked.setdefault((float(r.config["delta"]), int(r.config["seed"])), r)
    return align_prefixes(list(picked.values())).runs


def final_vs_delta(runs, min_deltas: int = 3) -> tuple[pd.DataFrame, list, list[str]]:
    """The decomposition across δ at the end of training: ``(table, runs used, groups left out)``.

    ``table``: one row per run (:data:`FINAL_COLUMNS`, last evaluated epoch) of each group with at least
    ``min_deltas`` δ values (standard runs of one setting, one per δ and seed: :func:`_sweep`), on the seeds whose
    run at *every* δ of the group logged the decomposition, so that each δ's mean is over the same seeds.
    ``groups left out``: groups with enough δ values but no such seed (runs trained before the columns existed,
    or a δ sweep not yet run on the seeds that log them)."""
    parts, used, left_out = [], [], []
    for dataset, group in by_dataset(standard_runs(as_runs(runs))).items():
        group = _sweep(group)
        final = final_rows(group)
        deltas = set(final["delta"])
        if len(deltas) < min_deltas:
            continue
        logged = final[np.isfinite(pd.to_numeric(final[SPAN_FRACTION], errors="coerce"))] \
            if SPAN_FRACTION in final.columns else final.iloc[:0]
        seeds = {s for s, per_seed in logged.groupby("seed") if set(per_seed["delta"]) == deltas}
        if not seeds:
            left_out.append(dataset)
            continue
        parts.append(final[final["seed"].isin(seeds)].sort_values(["delta", "seed"])
                     .assign(setting=describe_setting([r for r in group if r.config["seed"] in seeds])))
        used += [r for r in group if r.config["seed"] in seeds]
    if not parts:
        return pd.DataFrame(columns=list(FINAL_COLUMNS)), used, left_out
    table = pd.concat(parts, ignore_index=True).reindex(columns=list(FINAL_COLUMNS))
    return with_in_span_whitened(table.astype({"seed": int, "epoch": int})), used, left_out


def with_in_span_whitened(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (final values or every evaluated epoch) with :data:`NC3_IN_SPAN_WHITENED`, the distance of W P from
    A (:func:`lsnc.metrics.nc3_in_span_against_whitened`)."""
    out = table.copy()
    out[NC3_IN_SPAN_WHITENED] = nc3_in_span_against_whitened(pd.to_numeric(out[NC3_WHITENED], errors="coerce"),
                                                             pd.to_numeric(out[SPAN_FRACTION], errors="coerce"))
    return out


def _spread(values: pd.Series) -> str:
    """``mean [min, max]`` over seeds (3 significant digits); the value alone for one seed."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "n/a"
    return f"{v.mean():.3g}" if len(v) == 1 else f"{v.mean():.3g} [{v.min():.3g}, {v.max():.3g}]"


def left_out_line(groups: list[str], across_delta: bool = False) -> str:
    """Markdown naming the groups :func:`final_decomposition` (or, ``across_delta``, :func:`final_vs_delta`) left
    out, and why; "" when none."""
    if not groups:
        return ""
    why = ("no seed has a run that logged the decomposition at every δ of the group: trained before lsnc logged "
           "it, or the δ sweep has not been run on the seeds that do" if across_delta else
           "their runs were trained before lsnc logged the decomposition")
    return f"Not read ({why}): " + ", ".join(f"`{g}`" for g in groups) + "."


def _logged(g: pd.DataFrame, col: str) -> pd.DataFrame:
    """The rows of ``g`` with a number in ``col`` (none when the column is absent)."""
    if col not in g.columns:
        return g.iloc[:0]
    return g[np.isfinite(pd.to_numeric(g[col], errors="coerce"))]


def decomposition_table(final: pd.DataFrame) -> pd.DataFrame:
    """The page's table of :func:`final_decomposition`: one row per group and loss, with the seeds and the epoch
    read, each column ``mean [min, max]`` over those seeds; a column that only some of them logged
    (:data:`MEANS_WHITENED`, in groups with older runs) names the seeds its numbers come from."""
    rows = []
    for (dataset, delta), g in final.groupby(["dataset", "delta"], sort=False):
        cells = {}
        for col, name in DECOMPOSITION_COLUMNS.items():
            logged = _logged(g, col)
            cells[name] = _spread(logged[col]) if len(logged) else "n/a"
            if 0 < len(logged) < len(g):
                cells[name] += f" (seeds {seeds_text(logged['seed'])})"
        rows.append({"dataset": dataset, "setting": _setting(g),
                     "loss": loss_label(delta), "seeds": seeds_text(g["seed"]),
                     "epoch": ", ".join(str(e) for e in sorted(set(g["epoch"]))), **cells})
    return pd.DataFrame(rows)


def _means(final: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per (group, δ) of the decomposition columns (:data:`MEANS_WHITENED` aside: only newer runs
    log it, :func:`_means_whitened_clause`)."""
    return final.groupby(["dataset", "delta"], sort=False)[
        [c for c in DECOMPOSITION_COLUMNS if c != MEANS_WHITENED]].mean()


def _means_whitened_clause(g: pd.DataFrame, lo: float, hi: float) -> str:
    """" A against M ... goes from x at δ = lo to y at hi (CE: z)." over the seeds of ``g`` whose runs at δ = 0, lo
    and hi all logged :data:`MEANS_WHITENED` (named when they are not all of ``g``'s seeds); "" when none did."""
    logged = _logged(g, MEANS_WHITENED)
    seeds = set.intersection(*(set(logged.loc[is_delta(logged["delta"], d), "seed"]) for d in (0.0, lo, hi)))
    if not seeds:
        return ""
    m = logged[logged["seed"].isin(seeds)].groupby("delta")[MEANS_WHITENED].mean()
    which = "" if seeds == set(g["seed"]) else f"; seeds {seeds_text(seeds)}, the runs that log it"
    return (f" A against M, the NC3 of W = A (the least-norm classifier with NC2 = 0), goes from {m[lo]:.3g} to "
            f"{m[hi]:.3g} (CE: {m[0.0]:.3g}{which}).")


def outside_share(final: pd.DataFrame) -> pd.Series:
    """Per group: the share of LS's lower cos(W, M) (higher NC3) that comes from W leaving the span of the means.

    Per run ln cos(W, M) = ln(||W P||/||W||) + ln cos(W P, M) exactly (cos = 1 - distance/2); with both averaged
    over seeds per loss, the share is (LS - CE in the first term) / (LS - CE in the sum). NaN where LS's mean
    ln cos(W, M) is not below CE's (no excess NC3 to split)."""
    logs = pd.DataFrame({"dataset": final["dataset"], "delta": final["delta"],
                         "outside": np.log(final[SPAN_FRACTION]),
                         "total": np.log(1 - final[NC_COLUMNS["NC3"]] / 2)})
    m = logs.groupby(["dataset", "delta"], sort=False)[["outside", "total"]].mean()
    out = {}
    for dataset in dict.fromkeys(final["dataset"]):
        rows = m.loc[dataset]
        gap = rows.loc[rows.index.max()] - rows.loc[0.0]  # LS (δ > 0) - CE
        out[dataset] = gap["outside"] / gap["total"] if gap["total"] < 0 else np.nan
    return pd.Series(out, dtype=float)


def _setting(rows: pd.DataFrame) -> str:
    """The group's setting (:func:`lsnc.book.describe.describe_setting`) its rows carry; "" where they carry none."""
    setting = rows["setting"].dropna() if "setting" in rows.columns else rows.iloc[:0]
    return str(setting.iloc[0]) if len(setting) else ""


def _header(dataset: str, rows: pd.DataFrame) -> str:
    """"`group`, its setting (seeds 5–9, epoch 150)": what a bullet's numbers were read from (the setting: data and
    its copy, subset, model, epochs of which recipe, :func:`lsnc.book.describe.describe_setting`)."""
    setting = _setting(rows)
    where = f"`{dataset}`" + (f", {setting}" if setting else "")
    return (f"{where} (seeds {seeds_text(rows['seed'])}, epoch "
            f"{', '.join(str(e) for e in sorted(set(rows['epoch'])))})")


def _share_text(share: float) -> str:
    """The sentence on :func:`outside_share`; above 100 % the span part overshoots and WP is nearer M for LS."""
    if not np.isfinite(share):
        return "LS's NC3 is not higher here."
    if share > 1:
        return (f"LS's lower cos(W, M) comes from W outside the span: that part alone is {100 * share:.0f} % of it "
                "(on a log scale), and inside the span WP is nearer M for LS than for CE, which gives back the rest.")
    if share < 0:
        return ("LS's lower cos(W, M) comes from WP turning from M inside the span: W lies more inside the span for LS "
                "than for CE.")
    return (f"Of LS's lower cos(W, M), {100 * share:.0f} % (on a log scale) is W outside the span, the rest WP "
            "turning from M.")


def decomposition_lines(final: pd.DataFrame) -> str:
    """Markdown bullets, one per group, read from :func:`final_decomposition` (means over its seeds), CE / LS: NC3,
    ||W P|| / ||W||, and W P against M and against A = M Sigma_B^+, and :func:`outside_share`; then in how many
    groups W P lies nearer A than M, for each loss. Empty when ``final`` is."""
    if final.empty:
        return ""
    means, nc3, share = _means(final), NC_COLUMNS["NC3"], outside_share(final)
    bullets, nearer_a = [], {"CE": [], "LS": []}
    for dataset, g in final.groupby("dataset", sort=False):
        sides = {"CE": means.loc[(dataset, 0.0)], "LS": means.loc[(dataset, float(g["delta"].max()))]}

        def both(col):
            return " / ".join(f"{m[col]:.3g}" for m in sides.values())
        nearer = {}
        for name, m in sides.items():
            nearer_a[name].append(bool(m[NC3_IN_SPAN_WHITENED] < m[NC3_IN_SPAN]))
            nearer[name] = "A" if nearer_a[name][-1] else "M"
        bullets.append(f"* {_header(dataset, g)}, CE / LS: NC3 {both(nc3)}; "
                       f"‖WP‖/‖W‖ {both(SPAN_FRACTION)}; WP against M {both(NC3_IN_SPAN)}, against A "
                       f"{both(NC3_IN_SPAN_WHITENED)} (WP nearer {nearer['CE']} for CE, nearer "
                       f"{nearer['LS']} for LS). "
                       + _share_text(share[dataset]))
    n = len(nearer_a["CE"])
    summary = (f"WP lies nearer A than M for LS in {sum(nearer_a['LS'])} of {n} group(s), for CE in "
               f"{sum(nearer_a['CE'])} of {n}.")
    return "\n".join(bullets) + "\n\n" + summary


def delta_lines(final: pd.DataFrame) -> str:
    """Markdown bullets, one per group of :func:`final_vs_delta` (means over its seeds): W P against A for CE and
    over LS's δ values (where it is smallest), whether W P lies nearer A than M, ||W P|| / ||W|| for CE and LS,
    then NC3 at LS's smallest and largest δ with W P against M and the means' own distance from the ETF there,
    and A against M where the runs logged it (:func:`_means_whitened_clause`). A group without a CE run, or whose
    LS values are missing, gets a bullet that says so. Empty when ``final`` is."""
    if final.empty:
        return ""
    means, nc3, means_etf = _means(final), NC_COLUMNS["NC3"], TRAIN_PREFIX + "nc2_means_etf"
    bullets = []
    for dataset, g in final.groupby("dataset", sort=False):
        m = means.loc[dataset].sort_index()
        ls = m.drop(index=0.0, errors="ignore").dropna(subset=[NC3_IN_SPAN_WHITENED, NC3_IN_SPAN, SPAN_FRACTION])
        if 0.0 not in m.index or ls.empty:
            bullets.append(f"* {_header(dataset, g)}: " + ("no CE run to compare with." if 0.0 not in m.index
                                                          else "no LS δ with the decomposition logged."))
            continue
        ce, lo, hi = m.loc[0.0], ls.iloc[0], ls.iloc[-1]

        def span(col):
            return f"{ls[col].min():.3g}–{ls[col].max():.3g}"
        nearer = int((ls[NC3_IN_SPAN_WHITENED] < ls[NC3_IN_SPAN]).sum())
        ce_nearer = "A" if ce[NC3_IN_SPAN_WHITENED] < ce[NC3_IN_SPAN] else "M"
        bullets.append(
            f"* {_header(dataset, g)}: WP against A is {ce[NC3_IN_SPAN_WHITENED]:.3g} for CE and "
            f"{span(NC3_IN_SPAN_WHITENED)} for LS at δ = {ls.index[0]:g}–{ls.index[-1]:g} (smallest at "
            f"δ = {ls[NC3_IN_SPAN_WHITENED].idxmin():g}); for LS, WP lies nearer A than M at {nearer} of its "
            f"{len(ls)} δ values; for CE, nearer {ce_nearer}. ‖WP‖/‖W‖ is {ce[SPAN_FRACTION]:.3g} for CE, "
            f"{span(SPAN_FRACTION)} for LS. From δ = {ls.index[0]:g} to {ls.index[-1]:g}, NC3 goes from "
            f"{lo[nc3]:.3g} to {hi[nc3]:.3g} (CE: {ce[nc3]:.3g}), WP against M from {lo[NC3_IN_SPAN]:.3g} to "
            f"{hi[NC3_IN_SPAN]:.3g}, and the class means' own distance from the ETF (M Mᵀ against it) from "
            f"{lo[means_etf]:.3g} to {hi[means_etf]:.3g} (CE: {ce[means_etf]:.3g})."
            + _means_whitened_clause(g, ls.index[0], ls.index[-1]))
    return "\n".join(bullets)
