"""The paper's claims C1-C6 as measurable tests on run folders, each with a verdict and the numbers behind it.

Every claim compares cross entropy (CE, δ = 0) with label smoothing at the main δ (``vocab.MAIN_DELTA``) inside
one dataset group (``runs/<group>/``), UFM-style runs excluded, runs paired by seed. Runs that are prefixes of one
recipe but stopped at different epochs (GPU windows of different lengths) are compared at one epoch they all
reached, the latest that keeps enough seed pairs (:func:`select_comparison`, :func:`.comparable.align_prefixes`);
the note says which.
One row of :func:`claims_table` is one test::

    dataset, label, claim, test_id, test, ce, ls, verdict, n_seeds, note, ce_values, ls_values, pair_split, prefix_at

``test_id`` names the test for code ("c3-final-nc1": stable, unlike ``test``, the words for the reader).
``ce`` / ``ls`` are the numbers in readable form (per seed for epoch counts, ``mean [min, max]`` otherwise),
``ce_values`` / ``ls_values`` the same numbers as ``{seed: value}`` dicts. ``pair_split`` is how the seed pairs the
verdict reads split, (the paper's way, against, tied) (:class:`Judgement`); ``prefix_at`` is (E, recipe epochs) for
runs compared at epoch E of a longer recipe (:func:`as_prefix`), else None.

Verdict rules (:func:`judge`), for a test where the paper predicts LS "lower" (or "higher") than CE:

* ``supported``: at least 2 seed pairs and every pair goes the paper's way; with fewer than 2 pairs (common
  seeds) but at least 2 seeds per side: the full min-max ranges of the two sides do not overlap, in the paper's way.
* ``not supported``: the same, every pair (or the non-overlapping ranges) the other way.
* ``inconclusive``: mixed pairs or ties, overlapping ranges, or fewer than 2 seeds on a side; with one seed the
  note says "1 seed: direction only" and which way it goes (the seed pair's way; without a pair, the means').

With seed pairs, the note also gives the sign test's p for the direction most untied pairs go: one-sided when that
is the paper's (:func:`sign_test_p`: 0.25 for 2 of 2 pairs, 0.001 for 10 of 10), two-sided when it is against the
paper, a direction read off the pairs (:func:`two_sided_sign_test_p`: 0.5 for 2 of 2), and names the seeds only one
side has, which are left out of the pairs.
* ``inconclusive (missing runs)``: no finished CE or no finished LS run (or the measurement is undefined).
* ``prefix: the paper's way`` / ``prefix: against the paper`` (:func:`as_prefix`): what would be ``supported`` /
  ``not supported`` when the compared runs stopped before the end of their recipe (GPU windows): the paper's claims
  are about the end of training, so a prefix says only which way LS goes so far.

The tests (``test`` column; the exact definitions are in each measurement's docstring, :mod:`.measures`):

* C1 :func:`.measures.epochs_to_zero_error`: first evaluated epoch with train error = 0, and with train error <= 0.1 %
  (the paper's definition: eval mode, at the evaluated epochs of ``metrics.csv``);
  :func:`.measures.epochs_to_zero_running_error`: the same two levels on the running training error of every epoch
  (``epochs.csv``: train mode, averaged over the epoch's batches while the model changes), one-epoch
  resolution where the evaluated epochs often tie.
* C2 :func:`.measures.epochs_to_level`: epoch from which NC1 / NC2 / NC3 stay at or below a level set per dataset
  (which depends on where the runs end); :func:`.measures.epochs_to_own_level`: the same at each run's own level,
  90 % of the way to its own final value (how fast a run approaches where it ends, apart from where that is).
* C3 final NC1 and NC2 (last evaluated epoch).
* C4 :func:`.measures.nc2_at_matched_nc1`: mean NC2 over a grid of NC1 values both trajectories pass through.
* C5 final test ECE (20 bins) before temperature scaling; whether TS (held-out fit, and the test-fit variant
  of the paper's code, labelled) narrows the CE-LS gap; whether LS is still the better calibrated after TS (held-out
  fit); final mean class-mean norm and classifier-row norm.
* C6 :func:`theory_claims`: from :mod:`lsnc.ufm`: closed-form norms, two candidate condition numbers, and
  gradient descent from the same start (the theory page's small instances: one UFM, and a second one at
  numbers of classes that turn κ(LS)/κ(CE) around; the theory page has the full study).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..runs import default_runs_dir
from ..calibration import ECE_DEFAULT_BINS
from ..vocab import CLASS_MEAN_NORM, CLASSIFIER_NORM, MAIN_DELTA, NC_COLUMNS, ece_column, in_deltas, loss_label
from .comparable import align_prefixes, reach, setting_key, standard_runs
from .measures import (C4_GRID, c2_level, epochs_to_level, epochs_to_own_level, epochs_to_zero_error,
                       epochs_to_zero_running_error, final_value, nc2_at_matched_nc1, series)
from .describe import as_runs, by_dataset, describe_setting
from .select import finished_runs

#: The paper's six claims as this book states them (the claims page's table; a test holds the page to these).
CLAIMS: dict[str, str] = {
    "C1": "LS reaches zero training error faster than CE",
    "C2": "LS converges faster in NC1, NC2 and NC3",
    "C3": "LS ends at a stronger collapse (lower final NC1 and NC2)",
    "C4": "at the same NC1, LS has a lower NC2",
    "C5": "LS is better calibrated (lower ECE); temperature scaling (TS) narrows the gap; LS shrinks the norms of "
          "the class means and classifier rows",
    "C6": "UFM theory: closed-form minimizers; LS has a lower condition number, so gradient descent converges "
          "faster",
}

#: C2 levels: the fraction of the way (in log space) from the epoch-0 value to the worst final value
C2_FRACTIONS = (0.5, 0.9)
#: C2 with each run against its own end: the fraction of the way from its epoch-0 value to its final value
C2_OWN_FRACTION = 0.9
#: C1 looser variant: train error at or below this
C1_LOOSE_ERROR = 0.001

#: A comparison of prefixes (runs stopped before the recipe's last epoch, GPU windows) is no verdict on a claim about
#: the end of training: where every pair goes one way, the row says only which way, at that epoch.
PREFIX_VERDICTS = {"supported": "prefix: the paper's way", "not supported": "prefix: against the paper"}
VERDICTS = ("supported", "not supported", "inconclusive", "inconclusive (missing runs)", *PREFIX_VERDICTS.values())
TABLE_COLUMNS = ["dataset", "label", "claim", "test_id", "test", "ce", "ls", "verdict", "n_seeds", "note",
                 "ce_values", "ls_values", "pair_split", "prefix_at"]
DISPLAY_COLUMNS = ["claim", "test", "ce", "ls", "verdict", "n_seeds", "note"]
THEORY_GROUP = "ufm-theory"


class ClaimsError(ValueError):
    """The selection of runs cannot be used; the message names what is available."""


# ----------------------------------------------------------------------------------------------
# verdicts
# ----------------------------------------------------------------------------------------------
def _clean(values: Mapping[Any, Any] | None) -> dict[Any, float]:
    """Drop missing measurements (None / NaN); keep +inf ("never reached")."""
    out = {}
    for k, v in (values or {}).items():
        if v is None:
            continue
        v = float(v)
        if not math.isnan(v):
            out[k] = v
    return out


def _order(a: float, b: float) -> int:
    """-1, 0 or 1 as ``a`` is below, equal to or above ``b``; two infinities of one sign are equal (never NaN)."""
    return (a > b) - (a < b)


def _direction_word(order: int, better: str, names: tuple[str, str] = ("CE", "LS")) -> str:
    """``LS lower than CE (the paper's direction)`` for ``order`` = the sign of LS - CE (``names``: what the two
    sides are)."""
    first, second = names
    if order == 0:
        return f"{second} equal to {first}"
    agrees = (order < 0) == (better == "lower")
    return (f"{second} {'lower' if order < 0 else 'higher'} than {first} "
            f"({'the paper' if agrees else 'against the paper'}'s direction)")


def sign_test_p(k: int, n: int) -> float:
    """One-sided sign test: the chance that at least ``k`` of ``n`` untied seed pairs go one way when the two
    sides do not differ (each pair either way with probability 1/2)."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n if n else 1.0


def two_sided_sign_test_p(k: int, n: int) -> float:
    """Two-sided sign test: the chance that at least as many of ``n`` untied seed pairs as the larger of ``k`` and
    ``n - k`` go one way, either way, when the two sides do not differ. The p to give for a direction read off the
    pairs rather than fixed beforehand."""
    return min(1.0, 2 * sign_test_p(max(k, n - k), n)) if n else 1.0


def _sign_text(good: int, bad: int) -> str:
    """The sign test of a verdict's seed pairs, for the direction most untied pairs go: ``one-sided sign test
    p = 0.031 (the paper's way)`` when it is the paper's (a direction fixed before the runs); ``two-sided sign test
    p = 0.062 (most pairs against the paper)`` otherwise (a direction read off the pairs); nothing when as many go
    each way."""
    if good == bad:
        return ""
    if good > bad:
        return f"one-sided sign test p = {sign_test_p(good, good + bad):.2g} (the paper's way)"
    return f"two-sided sign test p = {two_sided_sign_test_p(bad, good + bad):.2g} (most pairs against the paper)"


def _left_out(ce: Mapping[Any, float], ls: Mapping[Any, float], names: tuple[str, str]) -> str:
    """``s3 CE only, s4 LS only: no seed pair, left out`` for the seeds only one side has."""
    parts = [f"{', '.join(f's{k}' for k in sorted(set(a) - set(b), key=str))} {name} only"
             for a, b, name in ((ce, ls, names[0]), (ls, ce, names[1])) if set(a) - set(b)]
    return f"{', '.join(parts)}: no seed pair, left out" if parts else ""


class Judgement(NamedTuple):
    """A verdict on one test (:func:`judge`), and what the claims table keeps of it beside the note."""

    verdict: str
    n_seeds: int  # seed pairs compared (the smaller side when unpaired; a deterministic C6 row has none)
    note: str
    #: the seed pairs the verdict reads: how many go the paper's way, against it, tied; None when it reads none (no
    #: pair, or fewer than two pairs but two seeds a side: the min-max ranges)
    pair_split: tuple[int, int, int] | None = None


def judge(ce: Mapping[Any, float], ls: Mapping[Any, float], better: str = "lower",
          names: tuple[str, str] = ("CE", "LS")) -> Judgement:
    """Verdict on "LS is ``better`` (lower / higher) than CE" from per-seed values (``{seed: value}``).

    Returns a :class:`Judgement`: the verdict, the number of seed pairs compared (the smaller side when
    unpaired), the note, and how the seed pairs split. None / NaN values count as missing; +inf is a value ("never
    reached") that compares normally, and two infinities tie. With seed pairs, the note gives the sign test's p
    for the direction most pairs go (:func:`_sign_text`) and names the seeds of one side only, which are left out.
    ``names``: the two sides in the note (``("before TS", "after TS")`` for a test whose sides are not CE and LS).
    See the module docstring for the rules."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    sign = 1 if better == "lower" else -1
    ce, ls = _clean(ce), _clean(ls)
    if not ce or not ls:
        missing = " and ".join(side for side, vals in ((names[0], ce), (names[1], ls)) if not vals)
        return Judgement("inconclusive (missing runs)", 0, f"no finished {missing} run with this measurement")
    paired = sorted(set(ce) & set(ls), key=str)
    left_out = _left_out(ce, ls, names)
    ways = [sign * _order(ls[s], ce[s]) for s in paired]  # -1: the paper's direction
    n, good, bad = len(paired), ways.count(-1), ways.count(1)
    split = (good, bad, n - good - bad) if paired else None
    if n >= 2:
        if good == n:
            verdict, note = "supported", f"all {n} seed pairs go the paper's way"
        elif bad == n:
            verdict, note = "not supported", f"all {n} seed pairs go against the paper"
        else:
            verdict, note = "inconclusive", f"seed pairs: {good} the paper's way, {bad} against, {n - good - bad} tied"
        return Judgement(verdict, n, "; ".join(t for t in (note, _sign_text(good, bad), left_out) if t), split)
    n_ce, n_ls = len(ce), len(ls)
    if min(n_ce, n_ls) >= 2:
        lo_ce, hi_ce, lo_ls, hi_ls = min(ce.values()), max(ce.values()), min(ls.values()), max(ls.values())
        common = f", {len(paired)} common" if paired else ""
        unpaired = f"unpaired ({n_ce} {names[0]}, {n_ls} {names[1]} seeds{common}): "
        ls_below = hi_ls < lo_ce
        ls_above = lo_ls > hi_ce
        if (ls_below and better == "lower") or (ls_above and better == "higher"):
            return Judgement("supported", min(n_ce, n_ls), unpaired + "min-max ranges do not overlap, the paper's way")
        if ls_below or ls_above:
            return Judgement("not supported", min(n_ce, n_ls),
                             unpaired + "min-max ranges do not overlap, against the paper")
        return Judgement("inconclusive", min(n_ce, n_ls), unpaired + "min-max ranges overlap")
    if paired:  # one seed pair: its own direction, not the means of unequal sides
        (s,) = paired
        word = f"seed pair s{s}: {_direction_word(_order(ls[s], ce[s]), better, names)}"
        return Judgement("inconclusive", 1, "; ".join(t for t in (f"1 seed: direction only ({word})", left_out) if t),
                         split)
    order = _order(float(np.mean(list(ls.values()))), float(np.mean(list(ce.values()))))
    return Judgement("inconclusive", min(n_ce, n_ls), (f"1 seed: direction only, no seed pair ({n_ce} {names[0]}, "
                                                       f"{n_ls} {names[1]} seeds; means: "
                                                       f"{_direction_word(order, better, names)})"))


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many rows have each verdict (both inconclusive kinds counted under "inconclusive", both prefix
    directions under "prefix")."""
    out = {"supported": 0, "not supported": 0, "inconclusive": 0, "prefix": 0}
    if table is None or table.empty:
        return out
    for v in table["verdict"]:
        v = str(v)
        out["inconclusive" if v.startswith("inconclusive") else "prefix" if v.startswith("prefix") else v] += 1
    return out


def verdict_glue(table: pd.DataFrame, prefix: str) -> dict[str, int]:
    """:func:`verdict_counts` named for the page's text: ``{prefix}supported``, ``{prefix}not_supported``,
    ``{prefix}inconclusive``, ``{prefix}prefix``."""
    return {prefix + verdict.replace(" ", "_"): n for verdict, n in verdict_counts(table).items()}


#: The marks of :func:`verdict_matrix`, one per verdict (both inconclusive kinds: "?").
VERDICT_MARKS = {"supported": "+", "not supported": "−", "inconclusive": "?", "inconclusive (missing runs)": "?",
                 PREFIX_VERDICTS["supported"]: "(+)", PREFIX_VERDICTS["not supported"]: "(−)"}


def verdict_matrix(table: pd.DataFrame, runs: Iterable[Any] | None = None) -> pd.DataFrame:
    """The claims table at a glance: one row per group, one column per claim, each cell the count of its tests per
    verdict in :data:`VERDICT_MARKS` ("+3 −1 ?2": 3 supported, 1 not supported, 2 inconclusive; "(+)2": 2 rows of a
    prefix going the paper's way), so a group's verdicts are never pooled with another's. With ``runs`` (those the
    table was evaluated on), a first column says what each group compared: data, model, epochs (of which recipe,
    for prefixes) and seed pairs."""
    if table is None or table.empty:
        return pd.DataFrame()
    unknown = set(table["verdict"]) - set(VERDICT_MARKS)
    if unknown:
        raise ValueError(f"verdicts without a mark: {sorted(unknown)}")
    marks = table.assign(mark=table["verdict"].map(VERDICT_MARKS))
    order = list(dict.fromkeys(VERDICT_MARKS.values()))

    def cell(rows: pd.Series) -> str:
        counts = rows.value_counts()
        return " ".join(f"{m}{counts[m]}" for m in order if m in counts)
    out = marks.groupby(["dataset", "claim"], sort=False)["mark"].agg(cell).unstack("claim").fillna("")
    out = out[sorted(out.columns)]
    if runs is not None:
        groups = by_dataset(list(runs))
        out.insert(0, "runs compared", [compared_text(groups.get(g, [])) for g in out.index])
    out.index.name = "group"
    return out


#: The claims at a glance (:func:`glance_lines`): one measurement per part of a claim, ``(what, its test_id, whether
#: an LS / CE ratio of its values says how large the effect is)``. C2 by each run's own pace (its tests at shared
#: levels follow where the runs end, C3), C1 at the every-epoch resolution; C5's TS by the paper's "narrows the gap"
#: and by which side is ahead after TS, both with T fitted on a held-out split.
GLANCE = (("epochs to zero running train error", "c1-running-zero", True),
          *((f"epochs to {C2_OWN_FRACTION:.0%} of its own {nc} decline", f"c2-own-{nc.lower()}", True)
            for nc in NC_COLUMNS),
          ("final NC1", "c3-final-nc1", True), ("final NC2", "c3-final-nc2", True),
          ("NC2 at the same NC1", "c4-nc2-at-nc1", True),
          ("test ECE before TS", "c5-ece", True),
          ("TS narrows the CE-LS ECE gap (held-out T)", "c5-ts-narrows-holdout", False),
          ("LS still better calibrated after TS (held-out T; this book's check, not the paper's claim)", "c5-after-ts",
           True),
          ("class-mean norm", "c5-class-mean-norm", True),
          ("classifier-row norm", "c5-classifier-norm", True))


def _finite_pairs(row: Mapping[str, Any]) -> tuple[list[float], list[float], int]:
    """A claims row's CE and LS values over its seed pairs (every seed when it has no pairs) where both are finite,
    and how many pairs (seeds) there were."""
    ce, ls = _clean(row["ce_values"]), _clean(row["ls_values"])
    pairs = sorted(set(ce) & set(ls), key=str)
    if not pairs:
        ce_v, ls_v = [v for v in ce.values() if math.isfinite(v)], [v for v in ls.values() if math.isfinite(v)]
        return ce_v, ls_v, max(len(ce), len(ls))
    keep = [s for s in pairs if math.isfinite(ce[s]) and math.isfinite(ls[s])]
    return [ce[s] for s in keep], [ls[s] for s in keep], len(pairs)


def ls_ce_ratio(row: Mapping[str, Any]) -> float:
    """The LS / CE ratio of a claims row's means over its seed pairs where both values are finite (every seed when
    it has no pairs; an epoch never reached is infinite and leaves its pair out); NaN without such a pair."""
    ce, ls, _ = _finite_pairs(row)
    if not ce or not ls or np.mean(ce) == 0:
        return math.nan
    return float(np.mean(ls) / np.mean(ce))


def _glance_entry(row: Mapping[str, Any], ratio: bool) -> str:
    """One group in a :func:`glance_lines` bullet: its name, "(epochs 0–E of N)" for a prefix, the LS / CE ratio
    (with how many pairs it is over when some never reached the level), the seeds that never did, and for an
    undecided row how its seed pairs split."""
    text = f"`{row['dataset']}`"
    prefix_at = row.get("prefix_at")
    if isinstance(prefix_at, tuple):
        text += " (epochs 0–{} of {})".format(*prefix_at)
    ce, ls, n = _finite_pairs(row)
    value = ls_ce_ratio(row) if ratio else math.nan
    if not math.isnan(value):
        text += f" ×{value:.2f}" + (f" ({len(ce)} of {n} pairs)" if len(ce) < n else "")
    for name, side in (("CE", "ce_values"), ("LS", "ls_values")):
        values = _clean(row[side]).values()
        never = sum(math.isinf(v) for v in values)
        if never:
            text += f", {name} never in {never} of {len(values)} seeds"
    split = row.get("pair_split")
    if isinstance(split, tuple) and str(row["verdict"]) == "inconclusive":
        ways = [(k, way) for k, way in zip(split, ("the paper's way", "against", "tied")) if k]
        if sum(split) == 1:
            text += f" (1 seed pair: {ways[0][1]})"
        else:
            text += " (pairs: " + ", ".join(f"{k} {way}" for k, way in ways) + ")"
    return text


def glance_lines(table: pd.DataFrame) -> str:
    """Markdown bullets, one per measurement of :data:`GLANCE`: in which groups it goes the paper's way, against it,
    neither, or could not be measured, each group as :func:`_glance_entry` writes it ("×0.58": LS's mean is 0.58 of
    CE's). Empty when ``table`` has none of the measurements."""
    lines = []
    if table is None or table.empty:
        return ""
    for what, test_id, ratio in GLANCE:
        rows = table[table["test_id"] == test_id]
        if rows.empty:
            continue
        buckets: dict[str, list[str]] = {"the paper's way": [], "against": [], "undecided": [], "not measured": []}
        for _, row in rows.sort_values("dataset").iterrows():
            v = str(row["verdict"])
            if v == "inconclusive (missing runs)" or not row["n_seeds"]:
                buckets["not measured"].append(f"`{row['dataset']}` ({str(row['note']).split(';')[0]})")
                continue
            bucket = ("the paper's way" if v in ("supported", PREFIX_VERDICTS["supported"]) else
                      "against" if v in ("not supported", PREFIX_VERDICTS["not supported"]) else "undecided")
            buckets[bucket].append(_glance_entry(row, ratio))
        parts = [f"{name} in {len(groups)}: {', '.join(groups)}" for name, groups in buckets.items() if groups]
        groups = f"{len(rows)} group{'' if len(rows) == 1 else 's'}"
        lines.append(f"* **{rows['claim'].iloc[0]}, {what}** ({groups}): " + "; ".join(parts) + ".")
    return "\n".join(lines)


def compared_lines(table: pd.DataFrame, runs: Iterable[Any]) -> str:
    """One line per group of ``table``, in its order: ``"* group: what it compares"`` (:func:`compared_text`), the
    verdict matrix's first column as text lines for a terminal (``lsnc claims``)."""
    groups = by_dataset(list(runs))
    return "\n".join(f"* {g}: {compared_text(groups.get(g, []))}" for g in dict.fromkeys(table["dataset"]))


def compared_text(runs: Sequence[Any]) -> str:
    """"CIFAR-10 (JPEG copy) [...], resnet18 (width 64, 11.17M parameters), epochs 0–20 of the 800-epoch recipe;
    2 seed pairs": what
    :func:`select_comparison` compares in a group."""
    comp = select_comparison(runs)
    if not comp.runs:
        return "no CE or LS run"
    n = len(set(comp.ce) & set(comp.ls))
    return f"{describe_setting(comp.runs)}; {n} seed pair{'' if n == 1 else 's'}"


def prefix_epoch(runs: Sequence[Any]) -> tuple[int, int] | None:
    """``(E, recipe epochs)`` when ``runs`` (one comparison, cut to a common epoch) stopped before the end of their
    recipe, E the last epoch they reached; None when they ran it to the end."""
    reaches = [reach(r) for r in runs]
    prefixes = [r for r in reaches if r.prefix]
    if not prefixes:
        return None
    return max(r.reached for r in prefixes), max(r.epochs for r in prefixes)


def as_prefix(table: pd.DataFrame, runs: Sequence[Any]) -> pd.DataFrame:
    """``table`` (rows of one comparison) with the verdicts of a prefix comparison made :data:`PREFIX_VERDICTS`, its
    ``prefix_at`` the (last epoch, recipe epochs) of :func:`prefix_epoch`, and its notes saying so; unchanged when the
    runs ran their recipe to the end."""
    at = prefix_epoch(runs)
    if at is None:
        return table
    table = table.copy()
    table["verdict"] = table["verdict"].map(lambda v: PREFIX_VERDICTS.get(v, v))
    table["prefix_at"] = [at] * len(table)
    why = (f"epochs 0–{at[0]} are a prefix of the {at[1]}-epoch recipe: which way LS goes so far, not a verdict on "
           "a claim about the end of training")
    table["note"] = [f"{note}; {why}" if note else why for note in table["note"]]
    return table


# ----------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------
def _num(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "never"
    if float(v).is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.{digits}g}"


def format_per_seed(values: Mapping[Any, float]) -> str:
    """``s0: 20, s1: 35`` (seed order); "never" for +inf."""
    vals = {k: v for k, v in values.items() if v is not None}
    if not vals:
        return "n/a"
    return ", ".join(f"s{k}: {_num(v)}" if isinstance(k, (int, np.integer)) else f"{k}: {_num(v)}"
                     for k, v in sorted(vals.items(), key=lambda kv: str(kv[0])))


def format_spread(values: Mapping[Any, float]) -> str:
    """``mean [min, max] (n)`` over seeds; a single value alone."""
    vals = [v for v in _clean(values).values()]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{_num(vals[0])} (1 seed)"
    return f"{_num(float(np.mean(vals)))} [{_num(min(vals))}, {_num(max(vals))}] ({len(vals)} seeds)"


# ----------------------------------------------------------------------------------------------
# selecting the runs of one comparison
# ----------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """The CE and LS runs of one dataset group, keyed by seed (UFM-style runs excluded)."""

    dataset: str
    label: str
    ls_delta: float
    ce: dict[int, Any] = field(default_factory=dict)
    ls: dict[int, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def runs(self) -> list[Any]:
        return list(self.ce.values()) + list(self.ls.values())


def select_comparison(runs: Iterable[Any], ls_delta: float = MAIN_DELTA) -> Comparison:
    """CE (δ = 0) and LS (δ = ``ls_delta``) runs of one dataset group, non-UFM, in the group's main precision
    (:func:`.comparable.standard_runs`: fp32 or TF32, or bf16 where a GPU window trained in it), with metrics, one per
    seed.

    When runs of several settings (:func:`.comparable.setting_key`: data, model and width, recipe, optimizer,
    precision) are present, the setting with the most CE + LS runs is used and the others are named in ``notes``.
    A second run with the same δ and seed is skipped (noted). Runs of the setting that stopped at different epochs
    of the recipe (prefixes from different GPU windows, say) are compared at one epoch they reached
    (:func:`.comparable.align_prefixes`), and ``notes`` says so."""
    comp = _pick(runs, ls_delta)
    aligned = align_prefixes(comp.runs)
    if aligned.epoch is not None:
        comp.ce = {int(r.config["seed"]): r for r in aligned.runs if float(r.config["delta"]) == 0}
        comp.ls = {int(r.config["seed"]): r for r in aligned.runs if float(r.config["delta"]) != 0}
        comp.notes.append(aligned.note)
    return comp


def _pick(runs: Iterable[Any], ls_delta: float) -> Comparison:
    """:func:`select_comparison` before its prefixes are cut to one epoch: the runs of one setting, one per δ and
    seed."""
    # The claims are about the paper's recipe: UFM-style runs and precision twins are compared elsewhere.
    runs = [r for r in standard_runs(runs) if r.metrics is not None and not r.metrics.empty]
    if not runs:
        return Comparison(dataset="?", label="?", ls_delta=ls_delta)
    dataset, label = runs[0].dataset, runs[0].label
    cand = [r for r in runs if in_deltas(r.config["delta"], (0.0, ls_delta))]
    comp = Comparison(dataset=dataset, label=label, ls_delta=ls_delta)
    if not cand:
        return comp
    settings = pd.Series([setting_key(r) for r in cand]).value_counts()
    main = settings.index[0]
    for r in cand:
        if setting_key(r) != main:
            comp.notes.append(f"skipped {r.name} (another setting)")
            continue
        side = comp.ce if float(r.config["delta"]) == 0 else comp.ls
        seed = int(r.config["seed"])
        if seed in side:
            comp.notes.append(f"skipped {r.name} (duplicate of seed {seed})")
            continue
        side[seed] = r
    return comp


def paired_comparisons(runs: Iterable[Any], ls_delta: float = MAIN_DELTA) -> list[Comparison]:
    """:func:`select_comparison` of every run group (a Selection or runs), groups without a CE and LS run of a
    common seed left out: the pairs the claims compare, for the pages that read across groups."""
    comps = [select_comparison(group_runs, ls_delta) for group_runs in by_dataset(as_runs(runs)).values()]
    return [c for c in comps if set(c.ce) & set(c.ls)]


# ----------------------------------------------------------------------------------------------
# the claims on one comparison
# ----------------------------------------------------------------------------------------------
def _row(comp: Comparison, test_id: str, test: str, ce: Mapping, ls: Mapping, better: str = "lower",
         note: str = "", per_seed: bool = False, verdict: Judgement | None = None,
         ce_text: str | None = None, ls_text: str | None = None) -> dict[str, Any]:
    """One row of the claims table. ``test_id`` ("c3-final-nc1") names the test for code (the glance, tests) and
    gives the claim ("C3"); ``test`` describes it for the reader, and may be reworded."""
    v, n, why, split = verdict if verdict is not None else judge(ce, ls, better)
    fmt = format_per_seed if per_seed else format_spread
    return dict(dataset=comp.dataset, label=comp.label, claim=test_id.split("-")[0].upper(), test_id=test_id,
                test=test, ce=ce_text if ce_text is not None else fmt(ce),
                ls=ls_text if ls_text is not None else fmt(ls), verdict=v, n_seeds=n,
                note="; ".join(s for s in (why, note) if s), ce_values=dict(ce), ls_values=dict(ls), pair_split=split,
                prefix_at=None)


def _per_seed(side: Mapping[int, Any], fn) -> dict[int, float]:
    return {s: fn(r) for s, r in sorted(side.items())}


def _both(comp: Comparison, fn) -> tuple[dict[int, float], dict[int, float]]:
    """``fn`` of every CE run and of every LS run, per seed."""
    return _per_seed(comp.ce, fn), _per_seed(comp.ls, fn)


def _c1_rows(comp: Comparison) -> list[dict[str, Any]]:
    rows = []
    for thr, name, level in ((0.0, "= 0", "zero"), (C1_LOOSE_ERROR, f"<= {C1_LOOSE_ERROR:.1%}", "loose")):
        ce, ls = _both(comp, lambda r: epochs_to_zero_error(r, thr))
        rows.append(_row(comp, f"c1-evaluated-{level}", f"first evaluated epoch with train error {name}", ce, ls,
                         "lower",
                         "resolution = the evaluation schedule", per_seed=True))
    for thr, name, level in ((0.0, "= 0", "zero"), (C1_LOOSE_ERROR, f"<= {C1_LOOSE_ERROR:.1%}", "loose")):
        ce, ls = _both(comp, lambda r: epochs_to_zero_running_error(r, thr))
        rows.append(_row(comp, f"c1-running-{level}", f"first epoch with running train error {name} (every epoch, "
                         "epochs.csv: train mode, averaged over the epoch's batches as the model trains)", ce, ls,
                         "lower",
                         "resolution = one epoch; running error, not the evaluated (eval-mode) train error",
                         per_seed=True))
    return rows


def _c2_row(comp: Comparison, nc: str, frac: float) -> dict[str, Any]:
    col = NC_COLUMNS[nc]
    level, start, worst = c2_level(comp.runs, col, frac)
    ce, ls = _both(comp, lambda r: epochs_to_level(r, col, level))
    test_id = f"c2-{nc.lower()}-{frac:.0%}".rstrip("%")
    test = (f"epoch from which {nc} stays <= its level at {frac:.0%} of the way (log scale) from the "
            f"epoch-0 value to the worst final value")
    if math.isnan(level):
        why = (f"{nc} does not decrease from initialisation (start {_num(start)}, worst final "
               f"{_num(worst)}): level undefined") if not math.isnan(start) else (
            f"a run's {nc} has no value, or a value not positive, at epoch 0 or at its end: level undefined")
        verdict = ("inconclusive (missing runs)", 0, "no finished CE or LS run") if not comp.runs \
            else ("inconclusive", 0, why)
        return _row(comp, test_id, test, ce, ls, "lower", per_seed=True, verdict=Judgement(*verdict))
    note = f"level {_num(level)} (epoch 0: {_num(start)}, worst final: {_num(worst)})"
    if nc == "NC3":
        fin_ce, fin_ls = _both(comp, lambda r: final_value(r, col))
        note += f"; final NC3 CE {format_spread(fin_ce)}, LS {format_spread(fin_ls)}"
    return _row(comp, test_id, test, ce, ls, "lower", note, per_seed=True)


def _c2_own_row(comp: Comparison, nc: str, frac: float) -> dict[str, Any]:
    """C2 with each run against its own end (:func:`.measures.epochs_to_own_level`): apart from where the runs end
    (C3)."""
    col = NC_COLUMNS[nc]
    ce, ls = _both(comp, lambda r: epochs_to_own_level(r, col, frac))
    test = (f"epoch from which {nc} stays <= {frac:.0%} of the way (log scale) from the run's own epoch-0 value to "
            "its own final value")
    rising = sorted(f"{loss_label(float(r.config['delta']))} s{r.config['seed']}" for r in comp.runs
                    if math.isnan(epochs_to_own_level(r, col, frac)) and len(series(r, col)[1]) >= 2)
    note = "each run against its own end, so apart from where the runs end (C3)"
    if rising:
        note += f"; {nc} does not decrease (or is not positive) over {', '.join(rising)}: left out"
    return _row(comp, f"c2-own-{nc.lower()}", test, ce, ls, "lower", note, per_seed=True)


def _c3_rows(comp: Comparison) -> list[dict[str, Any]]:
    rows = []
    for nc in ("NC1", "NC2"):
        col = NC_COLUMNS[nc]
        ce, ls = _both(comp, lambda r: final_value(r, col))
        rows.append(_row(comp, f"c3-final-{nc.lower()}", f"final {nc} ({col}, last evaluated epoch)", ce, ls,
                         "lower"))
    return rows


def _c4_row(comp: Comparison) -> dict[str, Any]:
    ce4, ls4, fracs, ranges = {}, {}, [], []
    for s in sorted(set(comp.ce) & set(comp.ls)):
        a, b, f, rng = nc2_at_matched_nc1(comp.ce[s], comp.ls[s])
        ce4[s], ls4[s] = a, b
        if not math.isnan(f):
            fracs.append(f"s{s}: {f:.0%}")
            ranges.append(rng)
    note, verdict = "", None
    if fracs:
        note = (f"LS lower on {', '.join(fracs)} of the NC1 grid; each pair compared on the NC1 range both its "
                f"runs pass through (together {_num(min(r[0] for r in ranges))} to {_num(max(r[1] for r in ranges))})")
    elif comp.ce and comp.ls and not set(comp.ce) & set(comp.ls):
        verdict = Judgement("inconclusive", 0, f"no CE-LS seed pair (CE seeds {sorted(comp.ce)}, LS seeds "
                                               f"{sorted(comp.ls)}): the measure compares the two runs of one seed")
    elif comp.ce and comp.ls:
        note = "no seed pair with an overlapping NC1 range"
    return _row(comp, "c4-nc2-at-nc1", f"mean NC2 over {C4_GRID} NC1 values both runs pass through (NC2 interpolated "
                "in log NC1 at first passage), per seed pair", ce4, ls4, "lower", note, verdict=verdict)


NO_HOLDOUT = "these runs hold out no split to fit T on (holdout_per_class 0 in their recipe)"


def _holds_out_none(comp: Comparison) -> bool:
    """True when no compared run's recipe holds out a split to fit the temperature on."""
    return bool(comp.runs) and not any(int(r.config.get("holdout_per_class") or 0) > 0 for r in comp.runs)


def _no_split(comp: Comparison, ts: tuple[dict, dict]) -> Judgement | None:
    """The verdict of an after-TS row whose runs hold out no split to fit T on (no after-TS value on either side
    and no such split in their recipe); None otherwise."""
    if not (_clean(ts[0]) or _clean(ts[1])) and _holds_out_none(comp):
        return Judgement("inconclusive", 0, NO_HOLDOUT)
    return None


def _ts_row(comp: Comparison, ece: tuple[dict, dict], ts: tuple[dict, dict], label: str,
            holdout: bool) -> dict[str, Any]:
    """C5, "temperature scaling narrows the gap": the gap LS's better calibration opens before TS (CE ECE - LS ECE,
    > 0) against the |LS - CE| ECE gap after TS, per seed pair. The claim presupposes that advantage: where LS is
    not better calibrated before TS in every seed pair, the row is inconclusive and says in how many it is (a
    |gap| that TS shrinks where CE is the better calibrated is CE's advantage, not LS's). ``holdout``: T is fitted on
    a held-out split, which runs whose recipe holds out none do not have (the row says so). ``ece`` / ``ts``: the
    final test ECE before / after TS, per side and seed."""
    pairs = sorted(set(_clean(ece[0])) & set(_clean(ece[1])) & set(_clean(ts[0])) & set(_clean(ts[1])))
    better = [s for s in pairs if ece[1][s] < ece[0][s]]
    before = {s: ece[0][s] - ece[1][s] for s in pairs}
    after = {s: abs(ts[1][s] - ts[0][s]) for s in pairs}
    if pairs and len(better) < len(pairs):
        verdict = Judgement("inconclusive", len(pairs), f"LS is better calibrated than CE before TS in {len(better)} "
                            f"of {len(pairs)} seed pairs: no LS advantage in every pair for TS to narrow")
        note = "ce / ls columns: ECE after TS"
    elif pairs:
        verdict = judge(before, after, "lower", names=("the gap before TS", "the gap after TS"))
        note = (f"CE - LS ECE before TS -> |LS - CE| after TS: {format_spread(before)} -> {format_spread(after)}; "
                f"ce / ls columns: ECE after TS")
        flipped = [s for s in pairs if (ece[1][s] - ece[0][s]) * (ts[1][s] - ts[0][s]) < 0]
        if flipped:
            note += (f"; the gap changes sign in {len(flipped)} of {len(pairs)} seed pairs ("
                     + ", ".join(f"s{s}: LS {'higher' if ts[1][s] > ts[0][s] else 'lower'} than CE after TS"
                                 for s in flipped) + ")")
    elif holdout and (no_split := _no_split(comp, ts)):
        verdict, note = no_split, "ce / ls columns: ECE after TS"
    else:
        verdict = judge(*ts) if not (_clean(ts[0]) and _clean(ts[1])) else Judgement(
            "inconclusive", 0, "no CE-LS seed pair with ECE before and after TS")
        note = "ce / ls columns: ECE after TS"
    return _row(comp, f"c5-ts-narrows-{'holdout' if holdout else 'testfit'}", f"TS narrows the CE-LS ECE gap "
                f"({label})", *ts, "lower", note, verdict=verdict)


def _after_ts_row(comp: Comparison, ts: tuple[dict, dict]) -> dict[str, Any]:
    """C5, read as "LS is better calibrated" after TS too: the final test ECE after TS with T fitted on a held-out
    split, LS lower than CE per seed pair. The "TS narrows" rows judge |LS - CE|, so a gap that TS turns around
    (CE better calibrated after TS) still counts there as narrowed; this row says which side is ahead after TS.
    ``ts``: the final test ECE after TS (held-out T), per side and seed."""
    return _row(comp, "c5-after-ts", "LS still better calibrated after TS: final test ECE after TS (T fitted on a "
                "held-out split)", *ts, "lower", verdict=_no_split(comp, ts))


def _c5_rows(comp: Comparison) -> list[dict[str, Any]]:
    ece = _both(comp, lambda r: final_value(r, ece_column()))
    rows = [_row(comp, "c5-ece", f"final test ECE ({ECE_DEFAULT_BINS} bins), before temperature scaling", *ece,
                 "lower")]
    held_out, test_fit = (_both(comp, lambda r, c=ece_column(fit): final_value(r, c)) for fit in ("holdout", "testfit"))
    rows.append(_ts_row(comp, ece, held_out, "T fitted on a held-out split", holdout=True))
    rows.append(_ts_row(comp, ece, test_fit, "T fitted on the test set, as in the paper's code", holdout=False))
    rows.append(_after_ts_row(comp, held_out))
    for col, key, what in ((CLASS_MEAN_NORM, "class-mean", "mean class-mean norm ||mu_k - mu_G||"),
                           (CLASSIFIER_NORM, "classifier", "mean classifier-row norm ||w_k||")):
        rows.append(_row(comp, f"c5-{key}-norm", f"final {what} (train)",
                         *_both(comp, lambda r: final_value(r, col)), "lower"))
    return rows


def claims_for_comparison(comp: Comparison) -> pd.DataFrame:
    """Rows for C1-C5 on one comparison (see the module docstring and each measurement's docstring)."""
    rows = _c1_rows(comp)
    rows += [_c2_row(comp, nc, frac) for nc in NC_COLUMNS for frac in C2_FRACTIONS]
    rows += [_c2_own_row(comp, nc, C2_OWN_FRACTION) for nc in NC_COLUMNS]
    rows += _c3_rows(comp) + [_c4_row(comp)] + _c5_rows(comp)
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if comp.notes:
        df["note"] = df["note"] + "; " + ", ".join(comp.notes)
    df["n_seeds"] = df["n_seeds"].astype("Int64")
    return as_prefix(df, comp.runs)


def furthest_pairs(runs: Iterable[Any], ls_delta: float = MAIN_DELTA) -> dict[str, list]:
    """Per group whose claims compare prefixes cut short for the sake of more seed pairs (:func:`select_comparison`),
    the runs of the seed pair(s) that reached furthest, uncut, chosen as :func:`select_comparison` chooses:
    ``{group: [CE and LS runs of those seeds]}``. :func:`evaluate_claims` on them reads the longest stretch of the
    recipe the group has, with fewer pairs (one pair: directions only). Groups compared at their furthest epoch
    already are not in it."""
    out = {}
    for group, group_runs in sorted(by_dataset(list(runs)).items()):
        at = prefix_epoch(select_comparison(group_runs, ls_delta).runs)
        picked = _pick(group_runs, ls_delta)
        pair_reach = {s: min(reach(picked.ce[s]).reached, reach(picked.ls[s]).reached)
                      for s in set(picked.ce) & set(picked.ls)}
        furthest = max(pair_reach.values(), default=0)
        if at is not None and furthest > at[0]:
            out[group] = [side[s] for s in sorted(pair_reach) if pair_reach[s] == furthest
                          for side in (picked.ce, picked.ls)]
    return out


def evaluate_claims(runs: Iterable[Any], ls_delta: float = MAIN_DELTA) -> pd.DataFrame:
    """The C1-C5 table for any collection of runs (Run or Run-like objects with ``dataset``, ``label``,
    ``name``, ``config`` and ``metrics``; ``epochs`` too for C1's running-error rows, which are missing
    measurements without it), one block per dataset group, groups in sorted order."""
    by_group: dict[str, list] = {}
    for r in runs:
        by_group.setdefault(r.dataset, []).append(r)
    frames = []
    for group in sorted(by_group):
        comp = select_comparison(by_group[group], ls_delta)
        if comp.dataset == "?":  # only UFM-style or empty runs: still name the group
            comp.dataset, comp.label = group, by_group[group][0].label
        frames.append(claims_for_comparison(comp))
    if not frames:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def paired_table(runs: Iterable[Any], column: str = "test_error", ls_delta: float = MAIN_DELTA) -> pd.DataFrame:
    """A final value of CE against LS, one row per dataset group, over the seed pairs the claims compare
    (:func:`select_comparison`: one setting, prefixes cut to a common epoch; a seed of one side only is left out):
    the runs compared, the CE and LS values (``mean [min, max] (n seeds)``), LS - CE per pair (the same form), how
    many pairs have LS lower / higher / tied, and the two-sided sign test's p (:func:`two_sided_sign_test_p`: no
    direction is predicted).
    Not a verdict: the paper claims nothing about test error, but a reader weighing LS wants it beside the
    claims."""
    rows = []
    for group, group_runs in sorted(by_dataset(list(runs)).items()):
        comp = select_comparison(group_runs, ls_delta)
        ce, ls = (_clean(v) for v in _both(comp, lambda r: final_value(r, column)))
        pairs = sorted(set(ce) & set(ls))
        if not pairs:
            continue
        diff = {s: ls[s] - ce[s] for s in pairs}
        lower, higher = sum(d < 0 for d in diff.values()), sum(d > 0 for d in diff.values())
        rows.append({"group": group, "runs compared": describe_setting(comp.runs),
                     "CE": format_spread({s: ce[s] for s in pairs}), "LS": format_spread({s: ls[s] for s in pairs}),
                     "LS - CE per seed pair": format_spread(diff),
                     "pairs: LS lower / higher / tied": f"{lower} / {higher} / {len(pairs) - lower - higher}",
                     "two-sided sign test": (f"p = {two_sided_sign_test_p(lower, lower + higher):.2g}, LS "
                                             f"{'lower' if lower > higher else 'higher'} in most" if lower != higher
                                             else "no majority")})
    return pd.DataFrame(rows)


def selection_problem(runs_dir: str | Path | None = None, dataset: str | None = None) -> str | None:
    """None when ``claims_table(runs_dir, dataset)`` has runs to use; otherwise a readable message naming
    what is available. ``dataset``: a name a reader types (see :mod:`lsnc.book.select`); one no run group
    holds raises :class:`lsnc.book.select.UnknownDataset`."""
    from .select import resolve_datasets, shown_path
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    present = sorted({r.dataset for r in finished_runs(root)})
    if not present and dataset is None:
        running = sorted({r.dataset for r in finished_runs(root, status=None)})
        extra = f" (runs not finished yet in: {', '.join(running)})" if running else ""
        return f"No finished runs under {shown_path(root)}{extra}. Train some with `lsnc train` or `lsnc reproduce`."
    resolve_datasets(root, dataset)
    return None


def claims_table(runs_dir: str | Path | None = None, dataset: str | None = None,
                 ls_delta: float = MAIN_DELTA, runs: Sequence[Any] | None = None) -> pd.DataFrame:
    """C1-C5 for the finished runs under ``runs_dir`` (default: the repository's runs/), all dataset groups or
    those ``dataset`` names (``runs``: those finished runs, already read). Raises :class:`ClaimsError` (naming what
    is available) when there is nothing to use, :class:`lsnc.book.select.UnknownDataset` for a name no group
    holds."""
    from .select import resolve_datasets
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    runs = finished_runs(root) if runs is None else list(runs)   # read once (seconds for a few hundred runs)
    problem = selection_problem(root, dataset) if not runs else None
    if problem:
        raise ClaimsError(problem)
    groups = resolve_datasets(root, dataset, runs=runs)
    return evaluate_claims([r for r in runs if r.dataset in groups], ls_delta)


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The readable columns only (drops dataset / label and the raw value dicts)."""
    return table[DISPLAY_COLUMNS].reset_index(drop=True)


def styled_matrix(table: pd.DataFrame, runs: Iterable[Any] | None = None):
    """:func:`verdict_matrix` for a page: the group a column, no index, each claim's cell on one line."""
    matrix = verdict_matrix(table, runs).reset_index()
    claims = [c for c in matrix.columns if c in CLAIMS]
    return (matrix.style.hide(axis="index")
            .set_properties(**{"text-align": "left", "vertical-align": "top", "font-size": "0.85em"})
            .set_properties(subset=claims, **{"white-space": "nowrap"}))


def styled_table(table: pd.DataFrame):
    """``display_table`` for a page: no index, text left-aligned, the note column given room to read."""
    return (display_table(table).style.hide(axis="index")
            .set_properties(**{"text-align": "left", "vertical-align": "top", "font-size": "0.85em"})
            .set_properties(subset=["note"], **{"min-width": "16em"})
            .set_properties(subset=["test"], **{"min-width": "11em"}))


# ----------------------------------------------------------------------------------------------
# C6: theory (lsnc.ufm)
# ----------------------------------------------------------------------------------------------
def theory_claims(*, sizes: Sequence[Any] | None = None, **settings: Any) -> pd.DataFrame:
    """C6 on the theory page's small UFM instance, with its settings (``lsnc.book.theory.THEORY_PAGE``;
    ``settings`` overrides any of its keys: num_classes, n_per_class, dim, lambda_w, lambda_h, deltas, seeds,
    steps, lr, lr_over_max_curvature, loose, tight, gd_classes, gd_classes_ufm, gd_classes_seeds,
    gd_classes_steps). About 30 seconds on one core, two thirds of it the gradient descent at K = 50.

    Rows: (1) closed-form norms ||w_k||, ||h_i|| lower for every LS δ than for CE; (2) condition number of the
    full UFM Hessian at the minimizer, symmetry directions removed (the Hessian that governs gradient descent,
    so the one the claim is about); (3) condition number of the softmax Hessian diag(p) - pp^T in logit space;
    (4) gradient-descent iterations to the ``tight`` logit distance from the same start and a common step
    ``lr``, per seed; (5) the same with each δ given the step ``lr_over_max_curvature / λ_max(δ)``, where the
    rate is set by the condition number. Rows 4-5 compare CE with the first LS δ > 0 (the main δ);
    the deterministic rows (1-3) are judged over all δ > 0 and have no seeds. (6) Row 5 again on a second UFM
    at each number of classes in ``gd_classes`` (:func:`lsnc.book.theory.gd_by_classes`: there the number of
    classes turns κ(LS)/κ(CE) around; none when ``gd_classes`` is empty). Then row (2) again for each UFM
    in ``sizes`` (``ufm.UFMProblem``; default ``lsnc.book.theory.paper_size_problems()``, the sizes of the
    paper's experiments with a nonzero minimizer), exact from the Hessian's blocks."""
    from .. import ufm
    from .theory import THEORY_PAGE, problem_label

    unknown = sorted(set(settings) - set(THEORY_PAGE))
    if unknown:
        raise TypeError(f"theory_claims: unknown setting(s) {unknown}; the settings are {sorted(THEORY_PAGE)}")
    s = {**THEORY_PAGE, **settings}
    deltas, seeds, steps, lr, lr_over_max_curvature, loose, tight = (
        s["deltas"], s["seeds"], s["steps"], s["lr"], s["lr_over_max_curvature"], s["loose"], s["tight"])
    deltas = [float(x) for x in deltas]
    if deltas[0] != 0.0 or len(deltas) < 2:
        raise ValueError("deltas must start with 0 (the CE baseline) and contain at least one LS δ")
    problem = ufm.UFMProblem(s["num_classes"], s["n_per_class"], s["dim"], s["lambda_w"], s["lambda_h"], delta=0.0)
    label = f"UFM ({problem_label(problem)})"
    comp = Comparison(dataset=THEORY_GROUP, label=label, ls_delta=deltas[1])
    with ufm.single_thread():
        rows = _closed_form_rows(comp, problem, deltas) + _hessian_rows(comp, problem, deltas)
        for rule, step, what, test_id in (("same", lr, f"common step {lr:g}", "c6-gd-common-step"),
                                          ("inverse_max_curvature", lr_over_max_curvature,
                                           f"step {lr_over_max_curvature:g} / λ_max(δ) per δ", "c6-gd-step-per-delta")):
            cmp_ = ufm.compare_convergence(problem, [0.0, deltas[1]], list(seeds), lr=step, steps=steps,
                                           loose=loose, tight=tight, lr_rule=rule, record_every=1)
            rows.append(_gd_row(comp, test_id, cmp_, what, steps))
        rows += _gd_classes_rows(s, deltas[1])
        rows += _size_rows(deltas, sizes)
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    df["n_seeds"] = df["n_seeds"].astype("Int64")
    return df


def _deterministic_row(comp: Comparison, deltas: Sequence[float], test_id: str, test: str, ce_val: float,
                       ls_vals: Sequence[float], note: str = "") -> dict[str, Any]:
    """A C6 row without seeds: LS (every δ > 0) against CE, judged on the exact values."""
    from ..ufm import ls_against_ce

    ls_map = {f"δ={d:g}": v for d, v in zip(deltas[1:], ls_vals)}
    word = ls_against_ce(ce_val, ls_vals)
    v = {"lower": "supported", "higher": "not supported"}.get(word, "inconclusive")
    why = f"deterministic: LS {word} than CE for every δ in " + ", ".join(f"{d:g}" for d in deltas[1:])
    row = _row(comp, test_id, test, {"δ=0": ce_val}, ls_map, verdict=Judgement(v, 0, why), note=note,
               ce_text=_num(ce_val), ls_text=format_per_seed(ls_map))
    row["n_seeds"] = None
    return row


def _closed_form_rows(comp: Comparison, problem, deltas: Sequence[float]) -> list[dict[str, Any]]:
    sols = [problem.with_delta(d).solution() for d in deltas]
    note = ("the closed form evaluated: true of the formula at any size, not a measurement (fig9 sets it against "
            "trained UFM-style runs)")
    return [_deterministic_row(comp, deltas, f"c6-closed-form-{key.replace('_', '-')}",
                               f"closed-form {what} at the global minimizer", getattr(sols[0], key),
                               [getattr(s, key) for s in sols[1:]], note)
            for key, what in (("w_norm", "classifier-row norm ||w_k||"), ("h_norm", "feature norm ||h_i||"))]


def _hessian_rows(comp: Comparison, problem, deltas: Sequence[float]) -> list[dict[str, Any]]:
    from .. import ufm

    spectrum = ufm.condition_numbers_vs_delta(problem, deltas)
    return [
        _deterministic_row(comp, deltas, "c6-kappa-full", "condition number of the full UFM Hessian at the "
                           "minimizer (symmetry "
                           "directions removed): the one that governs GD", spectrum["kappa_restricted"][0],
                           list(spectrum["kappa_restricted"][1:]),
                           note=f"smallest curvature CE {_num(spectrum['restricted_min'][0])}, LS up to "
                                f"{_num(spectrum['restricted_min'][1:].max())}"),
        _deterministic_row(comp, deltas, "c6-kappa-softmax",
                           "condition number of the softmax Hessian diag(p) - pp^T in logit space",
                           spectrum["kappa_softmax"][0], list(spectrum["kappa_softmax"][1:])),
    ]


def _gd_classes_rows(settings: Mapping[str, Any], ls_delta: float) -> list[dict[str, Any]]:
    """Gradient descent where the number of classes turns κ(LS)/κ(CE) around (``theory.gd_by_classes`` with the
    theory page's settings): per K, the iterations to the tight logit distance, CE against LS at ``ls_delta``,
    each δ with the step ``lr_over_max_curvature`` / λ_max(δ); the note says whether descent followed κ."""
    from .theory import gd_by_classes

    counts = settings["gd_classes"]
    if not counts:
        return []
    table, comparisons = gd_by_classes(counts, settings["gd_classes_ufm"], ls_delta,
                                       list(settings["gd_classes_seeds"]), settings["lr_over_max_curvature"],
                                       settings["gd_classes_steps"], settings["loose"], settings["tight"])
    rows = []
    for r in table.to_dict("records"):
        K = r["K"]
        comp = Comparison(dataset=THEORY_GROUP, label=f"UFM (K={K}, {r['UFM']})", ls_delta=ls_delta)
        row = _gd_row(comp, f"c6-gd-step-per-delta-K{K}", comparisons[K],
                      f"step {settings['lr_over_max_curvature']:g} / λ_max(δ) per δ, K = {K}, "
                      f"κ(LS)/κ(CE) = {r['κ LS / CE']:.3g}",
                      settings["gd_classes_steps"])
        row["note"] += f"; gradient descent against κ: {r['GD vs κ']}"
        rows.append(row)
    return rows


def _size_rows(deltas: Sequence[float], sizes: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Condition number (a) of larger UFMs (by default the sizes of the paper's experiments), from
    ``ufm.block_spectrum``."""
    from .theory import paper_size_problems, problem_label, size_table

    problems = paper_size_problems() if sizes is None else list(sizes)
    table = size_table(problems, deltas)
    rows = []
    for problem in problems:
        label = problem_label(problem)
        sub = table[table["UFM"] == label]
        if len(sub) != len(deltas):
            raise ValueError(f"UFM {label}: no nonzero minimizer at some δ in {list(deltas)} (s + δ >= 1)")
        comp = Comparison(dataset=THEORY_GROUP, label=f"UFM ({label})", ls_delta=deltas[1])
        size = f"K{problem.num_classes}-n{problem.n_per_class}-d{problem.dim}"
        rows.append(_deterministic_row(
            comp, deltas, f"c6-kappa-full-{size}", f"condition number of the full UFM Hessian at the minimizer "
            f"(symmetry directions removed), UFM of {label} ({int(sub['parameters'].iloc[0]):,} parameters; exact, "
            "from the Hessian's blocks)",
            float(sub["κ"].iloc[0]), [float(v) for v in sub["κ"].iloc[1:]],
            note=f"smallest curvature CE {_num(sub['λ_min'].iloc[0])} ({sub['λ_min from'].iloc[0]}), LS from "
                 f"{_num(sub['λ_min'].iloc[1:].min())} to {_num(sub['λ_min'].iloc[1:].max())}"))
    return rows


def _gd_row(comp: Comparison, test_id: str, result, what: str, steps: int) -> dict[str, Any]:
    """Iterations to the tight distance, CE against LS per seed (never arrived: +inf)."""
    it = np.where(np.isfinite(result.iters_tight), result.iters_tight, np.inf)
    ce = {int(s): float(it[0, j]) for j, s in enumerate(result.seeds)}
    ls = {int(s): float(it[1, j]) for j, s in enumerate(result.seeds)}
    diverged = int(result.diverged.sum())
    return _row(comp, test_id, f"GD iterations to logit distance {result.tight:g}, same start, {what} "
                f"({loss_label(0)} vs {loss_label(result.deltas[1])})", ce, ls, "lower",
                (f"{diverged} runs diverged; " if diverged else "") + f"budget {steps} iterations", per_seed=True)
