import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from lsnc import book
from lsnc.book import claims, comparable, describe, measures, scale
from lsnc.book.claims import ClaimsError, judge

ALLOWED = set(claims.VERDICTS)
EPOCHS = [0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40]


@dataclass
class FakeRun:
    """What lsnc.book.claims and lsnc.book.describe read from a Run: dataset, label, name, config, metrics,
    provenance, epochs (None: no epochs table; no status: a complete run)."""

    config: dict
    metrics: pd.DataFrame
    dataset: str = "fake"
    label: str = "Fake data"
    provenance: dict = field(default_factory=lambda: {"dataset": {"sizes": {"train": 100}}})
    epochs: pd.DataFrame | None = None

    @property
    def name(self):
        c = self.config
        return f"{'ce' if c['delta'] == 0 else 'ls' + format(c['delta'], 'g')}-s{c['seed']}"


def fake_run(delta, seed, fast, *, ece=0.1, ece_ts=0.03, norm=2.0, nc_final=(1.0, 0.3, 0.2), ufm=False,
             epochs=EPOCHS):
    """A trajectory decaying with time constant ``fast`` (smaller = faster), ending at ``nc_final``."""
    t = np.asarray(epochs, dtype=float)
    jitter = 1 + 0.01 * seed
    decay = np.exp(-t / (fast * jitter))
    err = np.where(t >= 3 * fast * jitter, 0.0, 0.9 * decay)
    nc1 = 100 * decay + nc_final[0]
    nc2 = 1.3 * decay + nc_final[1]
    nc3 = 1.9 * decay + nc_final[2]
    m = pd.DataFrame(dict(
        epoch=epochs, train_error=err, train_nc1_within_between=nc1, train_nc2_wh_etf=nc2,
        train_nc3_duality_sq=nc3, test_ece20=np.full(len(t), ece), test_ece20_ts_holdout=np.full(len(t), ece_ts),
        test_ece20_ts_testfit=np.full(len(t), ece_ts * 0.9), train_mean_class_mean_norm=np.full(len(t), norm * 2),
        train_mean_classifier_norm=np.full(len(t), norm),
    ))
    cfg = dict(delta=delta, seed=seed, ufm=ufm, epochs=epochs[-1], model="mlp", width=8, train_per_class=None,
               weight_decay=5e-4)
    # epochs.csv: every trained epoch, the running error on the same trajectory
    te = np.arange(1, epochs[-1] + 1, dtype=float)
    running = np.where(te >= 3 * fast * jitter, 0.0, 0.9 * np.exp(-te / (fast * jitter)))
    ep = pd.DataFrame(dict(epoch=te.astype(int), lr=0.05, train_loss_running=running + 0.1,
                           train_acc_running=1.0 - running, seconds=0.1))
    return FakeRun(cfg, m, epochs=ep)


def paper_like(seeds=(0, 1, 2)):
    """LS faster, stronger collapse, better calibrated, smaller norms; TS narrows the ECE gap."""
    ce = [fake_run(0.0, s, fast=4.0, ece=0.15, ece_ts=0.04, norm=3.0, nc_final=(4.0, 0.6, 0.3)) for s in seeds]
    ls = [fake_run(0.05, s, fast=2.0, ece=0.05, ece_ts=0.038, norm=2.0, nc_final=(2.0, 0.15, 0.2)) for s in seeds]
    return ce, ls


def by_test(table):
    return dict(zip(table["test"], table["verdict"]))


# ---------------------------------------------------------------- judge
def test_judge_paired_both_directions_and_mixed():
    assert judge({0: 5, 1: 6}, {0: 3, 1: 4})[0] == "supported"
    assert judge({0: 5, 1: 6}, {0: 7, 1: 8})[0] == "not supported"
    assert judge({0: 5, 1: 6}, {0: 7, 1: 8}, better="higher")[0] == "supported"
    v, n, note, pairs = judge({0: 5, 1: 6, 2: 7}, {0: 3, 1: 8, 2: 7})
    assert (v, n, pairs) == ("inconclusive", 3, (1, 1, 1)) and "1 the paper's way, 1 against, 1 tied" in note
    assert judge({0: 5, 1: 6}, {0: 7, 1: 8}, better="higher").pair_split == (2, 0, 0)


def test_judge_infinity_means_never_reached():
    assert judge({0: math.inf, 1: math.inf}, {0: 10, 1: 12})[0] == "supported"
    assert judge({0: math.inf, 1: math.inf}, {0: math.inf, 1: math.inf})[0] == "inconclusive"


def test_judge_unpaired_uses_full_ranges():
    assert judge({0: 5, 1: 6}, {2: 3, 3: 4})[0] == "supported"
    assert judge({0: 5, 1: 6}, {2: 7, 3: 9})[0] == "not supported"
    v, n, note, pairs = judge({0: 5, 1: 8}, {2: 4, 3: 6})  # means go the paper's way, ranges overlap
    assert v == "inconclusive" and "overlap" in note and n == 2 and pairs is None


def test_judge_single_seed_and_missing():
    v, n, note, pairs = judge({0: 5}, {0: 3})
    assert v == "inconclusive" and n == 1 and note.startswith("1 seed: direction only") and "LS lower" in note
    assert pairs == (1, 0, 0) and judge({0: 5}, {0: 9}).pair_split == (0, 1, 0)
    assert judge({0: 5}, {1: 3}).pair_split is None
    v, _, note, _ = judge({0: 5, 1: 6}, {0: 9})
    assert v == "inconclusive" and "1 seed: direction only" in note and "against" in note
    assert judge({0: 5}, {})[0] == "inconclusive (missing runs)"
    v, n, note, _ = judge({0: float("nan")}, {0: 1.0})
    assert v == "inconclusive (missing runs)" and n == 0 and "CE" in note
    with pytest.raises(ValueError):
        judge({0: 1}, {0: 2}, better="smaller")


def test_judge_names_the_sign_test_and_the_seeds_it_left_out():
    assert claims.sign_test_p(2, 2) == 0.25 and claims.sign_test_p(3, 3) == 0.125
    assert claims.sign_test_p(9, 10) == 11 / 1024 and claims.sign_test_p(0, 0) == 1.0
    v, n, note, _ = judge({0: 5, 1: 6, 2: 1}, {0: 3, 1: 4, 3: 0})
    assert (v, n) == ("supported", 2) and "one-sided sign test p = 0.25 (the paper's way)" in note
    assert "s2 CE only, s3 LS only: no seed pair, left out" in note
    v, _, note, _ = judge({0: 5, 1: 6, 2: 7}, {0: 6, 1: 7, 2: 6})
    assert v == "inconclusive" and "two-sided sign test p = 1 (most pairs against the paper)" in note
    v, _, note, _ = judge({0: 5, 1: 6, 2: 7}, {0: 6, 1: 7, 2: 8})
    assert v == "not supported" and "two-sided sign test p = 0.25 (most pairs against the paper)" in note
    assert claims.two_sided_sign_test_p(0, 3) == claims.two_sided_sign_test_p(3, 3) == 0.25
    assert claims.two_sided_sign_test_p(1, 2) == 1.0 and claims.two_sided_sign_test_p(0, 0) == 1.0
    assert "sign test" not in judge({0: 5, 1: 6}, {0: 4, 1: 7})[2]  # one each way: no majority to test


def test_judge_one_seed_pair_goes_by_the_pair_not_the_means():
    v, n, note, _ = judge({0: 5, 1: 100}, {0: 6})  # the means say LS lower; the one pair says LS higher
    assert (v, n) == ("inconclusive", 1) and "seed pair s0: LS higher than CE (against" in note
    assert "s1 CE only" in note
    v, n, note, _ = judge({0: 5, 1: 100}, {0: 6, 2: 50})  # one pair, two seeds a side: the ranges, noted
    assert v == "inconclusive" and "unpaired (2 CE, 2 LS seeds, 1 common)" in note
    _, _, note, _ = judge({0: math.inf, 1: 3}, {2: math.inf})  # means inf and inf: equal, not NaN
    assert "no seed pair" in note and "LS equal to CE" in note
    _, _, note, _ = judge({0: 0.05}, {0: 0.01}, names=("the gap before TS", "the gap after TS"))
    assert "the gap after TS lower than the gap before TS (the paper's direction)" in note and "CE" not in note


# ---------------------------------------------------------------- measurements
def test_epoch_measurements():
    r = fake_run(0.0, 0, fast=2.0)
    assert measures.epochs_to_zero_error(r) == 6  # first evaluated epoch >= 3 * 2
    assert measures.epochs_to_zero_error(r, threshold=2.0) == 0
    m = r.metrics.copy()
    m["train_error"] = 0.5
    assert measures.epochs_to_zero_error(FakeRun(r.config, m)) == math.inf
    # "stays below": a dip and a rise do not count
    m["train_nc2_wh_etf"] = [1.0, 0.2, 0.9, 0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    run = FakeRun(r.config, m)
    assert measures.epochs_to_level(run, "train_nc2_wh_etf", 0.5) == 3
    assert measures.epochs_to_level(run, "train_nc2_wh_etf", 0.1) == math.inf
    level, start, worst = measures.c2_level([run], "train_nc2_wh_etf", 1.0)
    assert (start, worst) == (1.0, 0.3) and level == pytest.approx(0.3)
    m["train_nc2_wh_etf"] = np.linspace(1, 2, len(m))  # increases: level undefined
    assert math.isnan(measures.c2_level([FakeRun(r.config, m)], "train_nc2_wh_etf", 0.5)[0])


def with_running_error(run, errors):
    """``run`` with an epochs table whose running error at epoch 1, 2, ... is ``errors``."""
    errors = np.asarray(errors, dtype=float)
    ep = pd.DataFrame(dict(epoch=np.arange(1, len(errors) + 1), lr=0.05, train_loss_running=errors + 0.1,
                           train_acc_running=1.0 - errors, seconds=0.1))
    return FakeRun(dict(run.config, epochs=len(errors)), run.metrics, epochs=ep)


def test_running_error_measurement():
    r = fake_run(0.0, 0, fast=2.0)
    assert measures.epochs_to_zero_running_error(r) == 6  # every epoch: the first one >= 3 * 2
    run = with_running_error(r, [0.5, 0.01, 0.0008, 0.001, 0.0, 0.002, 0.0])
    assert measures.epochs_to_zero_running_error(run) == 5  # first touch, not "stays"
    assert measures.epochs_to_zero_running_error(run, claims.C1_LOOSE_ERROR) == 3
    never = with_running_error(r, [0.5, 0.01, 0.002])
    assert measures.epochs_to_zero_running_error(never) == math.inf
    assert measures.epochs_to_zero_running_error(never, claims.C1_LOOSE_ERROR) == math.inf
    # missing measurements, never a crash: no table, an empty one, no accuracy column, a gap before the answer,
    # rows that stop before the run's last epoch
    assert math.isnan(measures.epochs_to_zero_running_error(FakeRun(r.config, r.metrics)))
    assert math.isnan(measures.epochs_to_zero_running_error(FakeRun(r.config, r.metrics, epochs=pd.DataFrame())))
    assert math.isnan(measures.epochs_to_zero_running_error(
        FakeRun(r.config, r.metrics, epochs=run.epochs.drop(columns=["train_acc_running"]))))
    gap = run.epochs.drop(index=2)  # epoch 3 missing: 0.1 % first reached at 3 or 4
    assert math.isnan(measures.epochs_to_zero_running_error(FakeRun(run.config, r.metrics, epochs=gap),
                                                         claims.C1_LOOSE_ERROR))
    assert measures.epochs_to_zero_running_error(FakeRun(run.config, r.metrics, epochs=run.epochs.drop(index=5))) == 5
    short = FakeRun(dict(never.config, epochs=10), r.metrics, epochs=never.epochs)
    assert math.isnan(measures.epochs_to_zero_running_error(short))


def test_nc2_at_matched_nc1_uses_the_common_range():
    ce, ls = paper_like(seeds=(0,))
    a, b, frac, (lo, hi) = measures.nc2_at_matched_nc1(ce[0], ls[0])
    assert b < a and frac == 1.0
    assert lo == pytest.approx(4.0 + 100 * math.exp(-40 / 4.0)) and hi == pytest.approx(102.0)  # LS starts at 100 + 2
    # no overlap in NC1: NaN
    far = fake_run(0.05, 0, fast=2.0, nc_final=(500.0, 0.1, 0.1))
    far.metrics["train_nc1_within_between"] = np.linspace(1000, 900, len(far.metrics))
    assert math.isnan(measures.nc2_at_matched_nc1(ce[0], far)[0])


# ---------------------------------------------------------------- whole table
def test_paper_like_runs_support_every_claim():
    ce, ls = paper_like()
    table = claims.evaluate_claims(ce + ls + [fake_run(0.05, 0, fast=9.0, ufm=True)])  # UFM-style run ignored
    assert list(table.columns) == claims.TABLE_COLUMNS
    assert set(table["claim"]) == {"C1", "C2", "C3", "C4", "C5"}
    assert set(table["verdict"]) == {"supported"}, table[["test", "verdict", "note"]].to_string()
    assert set(table["n_seeds"]) == {3}
    assert table["note"].str.contains("one-sided sign test p = 0.12").all()  # 3 of 3 pairs: 1/8
    c4 = table.loc[table["claim"] == "C4", "note"].item()
    assert "each pair compared on the NC1 range both its runs pass through (together" in c4, c4
    assert claims.verdict_counts(table) == {"supported": len(table), "not supported": 0, "inconclusive": 0,
                                            "prefix": 0}


def test_prefixes_give_directions_not_verdicts():
    """The same paper-like runs stopped at epoch 20 of their 40-epoch recipe: every row that would be "supported"
    says only which way LS goes at that epoch, and why."""
    ce, ls = paper_like()
    full = claims.evaluate_claims(ce + ls)
    table = claims.evaluate_claims([_stopped(r, 20) for r in ce + ls])
    assert "supported" not in set(table["verdict"]) and set(table["verdict"]) <= ALLOWED
    assert (table["verdict"] == "prefix: the paper's way").sum() == claims.verdict_counts(table)["prefix"] > 0
    assert table["note"].str.contains("epochs 0–20 are a prefix of the 40-epoch recipe", regex=False).all()
    assert not full["note"].str.contains("a prefix", regex=False).any()
    # complete runs cut down to where two prefix pairs stopped (align_prefixes keeps the most seeds): prefixes too
    mixed = claims.evaluate_claims(ce[:1] + ls[:1] + [_stopped(r, 20) for r in ce[1:] + ls[1:]])
    assert "supported" not in set(mixed["verdict"]) and claims.verdict_counts(mixed)["prefix"] > 0
    assert mixed["note"].str.contains("epochs 0–20 are a prefix of the 40-epoch recipe", regex=False).all()


def test_reversed_runs_support_no_claim():
    ce, ls = paper_like()
    swapped = []
    # after TS the new LS (the old CE) stays the worse calibrated, so that "LS still better after TS" flips too
    for old, delta, after_ts in ((ce, 0.05, 0.3), (ls, 0.0, 0.2)):
        for r in old:
            m = r.metrics.copy()
            m["test_ece20_ts_holdout"] = m["test_ece20_ts_testfit"] = after_ts
            swapped.append(FakeRun(dict(r.config, delta=delta), m, epochs=r.epochs))
    table = claims.evaluate_claims(swapped)
    ts = table["test"].str.startswith("TS narrows")
    assert set(table.loc[~ts, "verdict"]) == {"not supported"}, table[["test", "verdict", "note"]].to_string()
    # LS is the worse calibrated before TS: no LS advantage for TS to narrow (the |gap| TS changes is CE's)
    assert set(table.loc[ts, "verdict"]) == {"inconclusive"}
    assert table.loc[ts, "note"].str.contains("better calibrated than CE before TS in 0 of 3 seed pairs").all()


def test_ts_narrowing_is_judged_only_where_ls_is_better_calibrated_before_ts():
    """The gap LS opens before TS against the |gap| after it; with a held-out split missing from the recipe the
    held-out row says so, not "missing runs"."""
    ce, ls = paper_like()
    table = claims.evaluate_claims(ce + ls)
    ts = table[table["test"].str.startswith("TS narrows")]
    assert set(ts["verdict"]) == {"supported"} and ts["note"].str.contains("CE - LS ECE before TS").all()
    for r in ce + ls:   # TS after which LS is as far from CE as before, the other way: not narrowed
        r.metrics = r.metrics.copy()
        before = float(r.metrics["test_ece20"].iloc[-1])
        r.metrics["test_ece20_ts_testfit"] = 2 * before if r.config["delta"] == 0 else 0.0
    row = claims.evaluate_claims(ce + ls).set_index("test").filter(like="test set", axis=0).iloc[0]
    assert row["verdict"] == "not supported", row.to_dict()
    for r in ce + ls:
        r.metrics = r.metrics.drop(columns=["test_ece20_ts_holdout"])
        r.config = dict(r.config, holdout_per_class=0)
    row = claims.evaluate_claims(ce + ls).set_index("test").filter(like="held-out", axis=0).iloc[0]
    assert row["verdict"] == "inconclusive" and "holdout_per_class 0" in row["note"], row.to_dict()


def test_ls_still_better_after_ts_says_which_side_ts_leaves_ahead():
    """A gap TS turns around counts as narrowed on the "TS narrows" row, and against the paper on this one."""
    ce, ls = paper_like()
    row = lambda t: t.set_index("test").filter(like="LS still better calibrated after TS", axis=0).iloc[0]
    first = row(claims.evaluate_claims(ce + ls))
    assert first["verdict"] == "supported" and first["claim"] == "C5", first.to_dict()
    for r in ls:   # after TS LS ends a little worse than CE: |gap| 0.15 - 0.05 = 0.1 -> 0.005
        r.metrics = r.metrics.copy()
        r.metrics["test_ece20_ts_holdout"] = 0.045
    table = claims.evaluate_claims(ce + ls)
    assert row(table)["verdict"] == "not supported"
    narrows = table.set_index("test").filter(like="held-out", axis=0)
    assert narrows.loc[narrows.index.str.startswith("TS narrows"), "verdict"].iloc[0] == "supported"
    assert "changes sign in 3 of 3 seed pairs" in narrows["note"].iloc[0]
    for r in ce + ls:
        r.metrics = r.metrics.drop(columns=["test_ece20_ts_holdout"])
        r.config = dict(r.config, holdout_per_class=0)
    last = row(claims.evaluate_claims(ce + ls))
    assert last["verdict"] == "inconclusive" and "holdout_per_class 0" in last["note"], last.to_dict()


def test_glance_lines_put_each_group_under_its_verdict_with_the_ls_ce_ratio():
    ce, ls = paper_like()
    other = (  # the same runs with LS and CE swapped, in a group "other"
        [FakeRun(dict(r.config, delta=0.0), r.metrics, dataset="other") for r in ls]
             + [FakeRun(dict(r.config, delta=0.05), r.metrics, dataset="other") for r in ce])
    table = claims.evaluate_claims(ce + ls + other)
    lines = dict(line.split("** (", 1) for line in claims.glance_lines(table).splitlines())
    assert len(lines) == len(claims.GLANCE)
    # final NC1 ends at 2.0 (LS) against 4.0 (CE) where epochs are long enough for the decay to vanish
    nc1 = lines["* **C3, final NC1"]
    assert nc1.startswith("2 groups): the paper's way in 1: `fake` ×0.50") and "against in 1: `other` ×2.00" in nc1
    row = table[(table["dataset"] == "fake") & table["test"].str.startswith("final NC1")].iloc[0]
    assert claims.ls_ce_ratio(row) == pytest.approx(np.mean([r.metrics["train_nc1_within_between"].iloc[-1]
                                                             for r in ls]) / np.mean(
        [r.metrics["train_nc1_within_between"].iloc[-1] for r in ce]))
    # an epoch never reached leaves its pair out of the ratio, and the line counts it
    assert math.isnan(claims.ls_ce_ratio({"ce_values": {0: math.inf}, "ls_values": {0: 3.0}}))
    c1 = dict(table.iloc[0], claim="C1", test_id="c1-running-zero", verdict="supported", pair_split=(2, 0, 0),
              ce_values={0: math.inf, 1: 10.0, 2: 20.0}, ls_values={0: 3.0, 1: 5.0, 2: 5.0})
    assert claims.ls_ce_ratio(c1) == pytest.approx(1 / 3)
    assert "`fake` ×0.33 (2 of 3 pairs), CE never in 1 of 3 seeds." in claims.glance_lines(pd.DataFrame([c1]))
    # undecided: how the pairs split; a prefix: where it stopped; no measurement: why, apart from the verdicts
    mixed = dict(c1, verdict="inconclusive", pair_split=(1, 1, 1))
    prefix = dict(c1, dataset="gpu", verdict="prefix: the paper's way", prefix_at=(20, 800))
    one = dict(c1, dataset="one", verdict="inconclusive", pair_split=(0, 1, 0), ce_values={0: 2.0}, ls_values={0: 3.0})
    none = dict(c1, dataset="none", verdict="inconclusive (missing runs)", n_seeds=0, pair_split=None,
                note="no finished LS run with this measurement", ls_values={})
    line = claims.glance_lines(pd.DataFrame([mixed, prefix, one, none]))
    assert "the paper's way in 1: `gpu` (epochs 0–20 of 800) ×0.33" in line
    assert "undecided in 2: `fake` ×0.33 (2 of 3 pairs), CE never in 1 of 3 seeds (pairs: 1 the paper's way, " \
           "1 against, 1 tied), `one` ×1.50 (1 seed pair: against)" in line
    assert line.endswith("not measured in 1: `none` (no finished LS run with this measurement).")
    assert claims.glance_lines(table.iloc[:0]) == "" == claims.glance_lines(pd.DataFrame())


def test_the_glance_reads_the_tables_ids_pair_splits_and_prefixes():
    """Each glance line reads one test by its id (one row per group), the pair split judge records and the prefix
    as_prefix records: the same facts the notes state in words."""
    ce, ls = paper_like()
    table = claims.evaluate_claims(ce + ls)
    assert table["test_id"].is_unique and table["prefix_at"].isna().all()
    assert set(table["claim"]) == {"C1", "C2", "C3", "C4", "C5"}
    for what, test_id, _ in claims.GLANCE:
        assert (table["test_id"] == test_id).sum() == 1, what
    nc1 = table.set_index("test_id").loc["c3-final-nc1"]
    assert nc1["pair_split"] == (3, 0, 0) and "all 3 seed pairs go the paper's way" in nc1["note"]
    cut = claims.evaluate_claims([_stopped(r, 20) for r in ce + ls])
    assert cut["prefix_at"].map(lambda at: at == (20, 40)).all()
    assert cut["note"].str.contains("epochs 0–20 are a prefix of the 40-epoch recipe").all()


def test_overlapping_seeds_give_inconclusive():
    ce, ls = paper_like()
    # seed 2 of LS is slower and less collapsed than its CE partner: mixed pairs
    ls[2] = fake_run(0.05, 2, fast=6.0, ece=0.2, ece_ts=0.2, norm=4.0, nc_final=(6.0, 0.9, 0.5))
    table = claims.evaluate_claims(ce + ls)
    assert (table["verdict"] == "inconclusive").all(), table[["test", "verdict", "note"]].to_string()
    assert table["note"].str.contains("2 the paper's way, 1 against").any()


def test_missing_and_single_seed_runs_do_not_crash():
    ce, ls = paper_like()
    only_ce = claims.evaluate_claims(ce)
    assert set(only_ce["claim"]) == {"C1", "C2", "C3", "C4", "C5"}
    assert set(only_ce["verdict"]) == {"inconclusive (missing runs)"}
    single = claims.evaluate_claims(ce[:1] + ls[:1])
    assert set(single["verdict"]) == {"inconclusive"}
    assert single["note"].str.contains("1 seed: direction only").all(), single["note"].tolist()
    assert claims.evaluate_claims([]).empty
    # only UFM-style runs: still one (empty-handed) block naming the group
    ufm_only = claims.evaluate_claims([fake_run(0.0, 0, 2.0, ufm=True)])
    assert set(ufm_only["verdict"]) == {"inconclusive (missing runs)"} and set(ufm_only["dataset"]) == {"fake"}


def test_missing_metric_column_is_inconclusive():
    ce, ls = paper_like()
    for r in ce + ls:
        r.metrics = r.metrics.drop(columns=["test_ece20_ts_testfit"])
    table = claims.evaluate_claims(ce + ls)
    row = table[table["test"].str.contains("test set")].iloc[0]
    assert row["verdict"].startswith("inconclusive")


def test_empty_or_unknown_selection_gives_a_readable_message(tmp_path):
    assert "No finished runs" in claims.selection_problem(tmp_path)
    with pytest.raises(ClaimsError, match="No finished runs"):
        claims.claims_table(tmp_path / "nowhere")


# ---------------------------------------------------------------- C1 per epoch, on run folders
RUNNING = "running train error"


def write_run_folder(root, run):
    """A finished run folder under ``root``/<dataset>/<name> holding ``run`` (a FakeRun); no epochs.csv when
    ``run.epochs`` is None."""
    from lsnc.atomic import write_json_atomic
    from lsnc.runs.format import write_rows_csv, write_status

    folder = root / run.dataset / run.name
    folder.mkdir(parents=True)
    m = run.metrics.assign(train_loss_ce=0.1, test_error=0.2, test_loss_ce_all=0.5)  # the other required columns
    write_json_atomic(folder / "config.json", run.config)
    write_json_atomic(folder / "provenance.json", {"dataset": {"label": run.label, "sizes": {"train": 100}}})
    write_rows_csv(folder / "metrics.csv", m.to_dict("records"))
    if run.epochs is not None:
        write_rows_csv(folder / "epochs.csv", run.epochs.to_dict("records"))
    write_status(folder, "done", int(run.config["epochs"]))
    return folder


def running_run(delta, seed, zero_at):
    """40 epochs; the running error is 1 % until ``zero_at`` - 2, 0.05 % at ``zero_at`` - 1 and 0 from
    ``zero_at`` (``None``: never below 1 %); the evaluated train error is the same for every δ."""
    t = np.arange(1, 41)
    err = np.full(len(t), 0.01) if zero_at is None else np.where(
        t >= zero_at, 0.0, np.where(t == zero_at - 1, 0.0005, 0.01))
    return with_running_error(fake_run(delta, seed, fast=3.0), err)


def c1_running(table):
    rows = table[(table["claim"] == "C1") & table["test"].str.contains(RUNNING)]
    assert len(rows) == 2 and rows["test"].str.contains("every epoch, epochs.csv: train mode").all()
    return rows.iloc[0], rows.iloc[1]  # = 0, <= 0.1 %


def test_c1_running_error_one_epoch_earlier_is_supported(tmp_path):
    for seed in (0, 1, 2):
        write_run_folder(tmp_path, running_run(0.0, seed, zero_at=12 + seed))
        write_run_folder(tmp_path, running_run(0.05, seed, zero_at=11 + seed))
    table = claims.claims_table(tmp_path)
    c1 = table[table["claim"] == "C1"]
    assert len(c1) == 4
    evaluated = c1[c1["test"].str.startswith("first evaluated epoch")]
    assert (evaluated["verdict"] == "inconclusive").all()  # the evaluated epochs tie: no resolution
    zero, loose = c1_running(table)
    assert zero["verdict"] == "supported" and zero["n_seeds"] == 3
    assert zero["ce_values"] == {0: 12, 1: 13, 2: 14} and zero["ls_values"] == {0: 11, 1: 12, 2: 13}
    assert zero["ce"] == "s0: 12, s1: 13, s2: 14"
    assert loose["verdict"] == "supported" and loose["ls_values"] == {0: 10, 1: 11, 2: 12}


def test_c1_running_error_tie_and_never(tmp_path):
    for seed in (0, 1):
        write_run_folder(tmp_path / "tie", running_run(0.0, seed, zero_at=12))
        write_run_folder(tmp_path / "tie", running_run(0.05, seed, zero_at=12))
        write_run_folder(tmp_path / "never", running_run(0.0, seed, zero_at=12))
        write_run_folder(tmp_path / "never", running_run(0.05, seed, zero_at=None))
    zero, loose = c1_running(claims.claims_table(tmp_path / "tie"))
    assert zero["verdict"] == loose["verdict"] == "inconclusive" and "2 tied" in zero["note"]
    zero, loose = c1_running(claims.claims_table(tmp_path / "never"))
    assert zero["ls_values"] == {0: math.inf, 1: math.inf} and zero["ls"] == "s0: never, s1: never"
    assert zero["verdict"] == loose["verdict"] == "not supported"  # never reached: slower than CE


def test_c1_running_error_without_epochs_table(tmp_path):
    for seed in (0, 1, 2):
        write_run_folder(tmp_path, running_run(0.0, seed, zero_at=12))
        write_run_folder(tmp_path, running_run(0.05, seed, zero_at=10))
    (tmp_path / "fake" / "ls0.05-s1" / "epochs.csv").unlink()
    zero, loose = c1_running(claims.claims_table(tmp_path))  # one LS seed without a measurement
    assert zero["verdict"] == "supported" and zero["n_seeds"] == 2 and set(zero["ls_values"]) == {0, 1, 2}
    assert math.isnan(zero["ls_values"][1]) and zero["ls"] == "s0: 10, s1: n/a, s2: 10"
    for seed in (0, 2):
        (tmp_path / "fake" / f"ls0.05-s{seed}" / "epochs.csv").unlink()
    table = claims.claims_table(tmp_path)
    zero, loose = c1_running(table)
    assert zero["verdict"] == loose["verdict"] == "inconclusive (missing runs)" and "LS" in zero["note"]
    assert zero["n_seeds"] == 0 and zero["ls"] == "s0: n/a, s1: n/a, s2: n/a"
    assert table.loc[table["test"].str.startswith("first evaluated epoch"), "n_seeds"].tolist() == [3, 3]
    # a table without the accuracy column: a missing measurement too
    path = tmp_path / "fake" / "ce-s0" / "epochs.csv"
    path.write_text("epoch,lr,seconds\n" + "".join(f"{e},0.05,0.1\n" for e in range(1, 41)))
    zero, _ = c1_running(claims.claims_table(tmp_path))
    assert math.isnan(zero["ce_values"][0]) and set(zero["ce_values"]) == {0, 1, 2}


# ---------------------------------------------------------------- integration
def test_claims_on_tiny_trained_runs(tmp_path):
    from lsnc.presets import preset_config
    from lsnc.training import train

    for delta in (0.0, 0.05):
        for seed in (0, 1):
            train(preset_config("smoke", delta=delta, seed=seed, threads=1), tmp_path, progress=False)
    table = claims.claims_table(tmp_path)
    assert set(table["dataset"]) == {"synthetic"}
    assert set(table["claim"]) == {"C1", "C2", "C3", "C4", "C5"}
    assert set(table["verdict"]) <= ALLOWED
    assert (table["n_seeds"].dropna() <= 2).all()
    assert claims.claims_table(tmp_path, "synthetic").equals(table)
    with pytest.raises(book.UnknownDataset, match=r"'cifar10'.*Datasets with runs: synthetic \(synthetic Gaussian"):
        claims.selection_problem(tmp_path, "cifar10")
    line = book.group_lines(book.select(None, tmp_path, ufm=None, amp=None))["synthetic"]
    assert "CE seeds 0, 1" in line and "3 epochs" in line and "4 finished runs" in line


def test_theory_rows_are_cheap_and_complete():
    table = claims.theory_claims(seeds=(0,), steps=1500, gd_classes=(4,), gd_classes_steps=5000)
    # 6 rows on the small UFM + one for each K of gd_classes + one per UFM of the paper's sizes with a nonzero
    # minimizer (6 of 8)
    assert set(table["claim"]) == {"C6"} and len(table) == 13
    # the second UFM at K = 4: κ(LS) > κ(CE), and gradient descent is slower for LS on both seeds, as κ says
    by_k = table[table["label"] == "UFM (K=4, n=5, d=64, λ_W=0.001, λ_H=0.0001, λ_b=0.01)"]
    assert len(by_k) == 1 and by_k["verdict"].iloc[0] == "not supported"
    assert by_k["test"].iloc[0].startswith("GD iterations") and "κ(LS)/κ(CE) = 7.09" in by_k["test"].iloc[0]
    assert by_k["note"].iloc[0].endswith("gradient descent against κ: followed")
    assert len(claims.theory_claims(seeds=(0,), steps=1500, gd_classes=())) == 12
    sized = table[table["test"].str.contains("K=10, n=5000, d=512")]
    assert len(sized) == 2 and sized["test"].str.contains("25,605,130 parameters").all()
    assert set(sized["label"]) == {"UFM (CIFAR-10 size: K=10, n=5000, d=512, λ_W=λ_H=λ_b=0.0005)",
                                   "UFM (CIFAR-10 size: K=10, n=5000, d=512, λ_W=0.001, λ_H=1e-06, λ_b=0.01)"}
    many = table[table["label"].str.contains("CIFAR-100 size|Tiny ImageNet size")]
    assert len(many) == 2 and (many["verdict"] == "supported").all()  # κ lower for LS with 100 and 200 classes
    assert set(table["verdict"]) <= ALLOWED
    closed = table[table["test"].str.startswith("closed-form")]
    assert (closed["verdict"] == "supported").all()  # LS shrinks both closed-form norms


def test_styled_table_renders_html_without_index():
    row = {c: "x" for c in claims.DISPLAY_COLUMNS}
    html = claims.styled_table(pd.DataFrame([row])).to_html()
    assert "min-width: 16em" in html and "<th class=\"blank" not in html


# ---------------------------------------------------------------------------------------------------------
# prefixes of one recipe that stopped at different epochs (GPU windows): compared at one epoch they all reached
# ---------------------------------------------------------------------------------------------------------
def _stopped(run, epoch):
    """The run as a prefix that stopped at ``epoch`` (what a shorter window of the same recipe records)."""
    return comparable.UpTo(run, epoch)


def test_furthest_pairs_reads_the_pair_that_went_furthest_when_the_claims_cut_it_short():
    ce, ls = paper_like()
    runs = [_stopped(r, 30 if r.config["seed"] == 0 else 20) for r in ce + ls]
    assert set(claims.evaluate_claims(runs)["note"].str.extract(r"(epochs 0–\d+)")[0]) == {"epochs 0–20"}
    furthest = claims.furthest_pairs(runs)
    assert list(furthest) == ["fake"] and sorted(r.name for r in furthest["fake"]) == ["ce-s0", "ls0.05-s0"]
    assert all(comparable.reach(r).reached == 30 for r in furthest["fake"])
    table = claims.evaluate_claims(furthest["fake"])
    assert table["note"].str.contains("epochs 0–30 are a prefix", regex=False).all()
    assert table["note"].str.contains("1 seed: direction only").any()
    assert claims.compared_text(furthest["fake"]).endswith("; 1 seed pair")
    # compared at their furthest epoch already (every pair as long), or complete runs: nothing further
    assert claims.furthest_pairs([_stopped(r, 20) for r in ce + ls]) == {} == claims.furthest_pairs(ce + ls)
    # an LS run without its CE partner does not make a pair
    assert claims.furthest_pairs(runs[1:]) == {}
    # runs chosen as the claims choose them: a duplicate of a (δ, seed) after the first is skipped, a run without
    # metrics is no partner
    duplicate = _stopped(ls[0], 10)
    empty = FakeRun(dict(ls[0].config, seed=5), ls[0].metrics.iloc[:0])
    again = claims.furthest_pairs(runs + [duplicate, fake_run(0.0, 5, fast=4.0), empty])
    assert sorted(r.name for r in again["fake"]) == ["ce-s0", "ls0.05-s0"]
    assert all(comparable.reach(r).reached == 30 for r in again["fake"])


def test_upto_is_the_run_cut_at_an_epoch():
    full = fake_run(0.05, 0, 3.0)
    cut = comparable.UpTo(full, 15)
    assert cut.epochs_reached == 15 and cut.is_prefix
    assert comparable.reach(cut).text == "epochs 0–15 of the 40-epoch recipe"
    assert list(cut.metrics.epoch) == [e for e in EPOCHS if e <= 15] and cut.epochs.epoch.max() == 15
    assert cut.config is full.config and cut.name == full.name and len(full.metrics) == len(EPOCHS)
    assert measures.final_value(cut, "train_nc1_within_between") == pytest.approx(
        float(full.metrics.set_index("epoch").loc[15, "train_nc1_within_between"]))


def test_prefixes_of_different_lengths_are_compared_at_the_latest_epoch_that_keeps_enough_pairs():
    runs = []
    for seed, (ce_stop, ls_stop) in enumerate([(None, None), (None, None), (20, 15), (20, 20)]):
        ce, ls = fake_run(0.0, seed, 6.0), fake_run(0.05, seed, 3.0)
        runs += [_stopped(ce, ce_stop) if ce_stop else ce, _stopped(ls, ls_stop) if ls_stop else ls]
    runs.append(_stopped(fake_run(0.0, 4, 6.0), 2))  # CE seed 4 stopped at epoch 2 and has no LS partner
    comp = claims.select_comparison(runs)
    # epochs reached: 40 (2 pairs), 20 (3 pairs), 15 (4 pairs), 2 (4 pairs): the latest epoch that keeps at least
    # half the best count (4) and at least two pairs is 40
    assert sorted(comp.ce) == [0, 1] and sorted(comp.ls) == [0, 1]
    assert {comparable.reach(r).reached for r in comp.runs} == {40}
    note = "; ".join(comp.notes)
    assert "skipped ce-s4 (stopped at epoch 2)" in note and "all compared at epoch 40 of the 40-epoch recipe" in note
    table = claims.evaluate_claims(runs)
    c3 = table[(table.claim == "C3") & table.test.str.contains("NC1")].iloc[0]
    truth = {s: float(r.metrics.set_index("epoch").loc[40, "train_nc1_within_between"]) for s, r in
             enumerate(runs[0:4:2])}
    assert c3.ce_values == pytest.approx(truth) and c3.n_seeds == 2 and c3.verdict == "supported"
    # a single long pair does not outweigh shorter ones: 1 pair at 40, 2 at 20, 3 at 15 -> 20
    short = [r for r in runs if r.config["seed"] != 1]
    assert {comparable.reach(r).reached for r in claims.select_comparison(short).runs} == {20}
    # ... nor one short pair two longer ones (the GPU windows: seeds 0 and 2 at epoch 75, seed 1 at 20)
    assert comparable.align_prefixes([_stopped(fake_run(d, s, 6.0), stop) for s, stop in ((0, 30), (1, 10), (2, 30))
                                 for d in (0.0, 0.05)], per_seed=2).epoch == 30


def test_a_prefix_stopped_off_the_evaluation_schedule_is_compared_at_an_epoch_all_evaluated():
    """A time budget evaluates a run where it stops (epoch 17 here, between the scheduled 15 and 20): runs are
    compared at the latest epoch every one of them has a row for."""
    off = [*[e for e in EPOCHS if e <= 15], 17, *[e for e in EPOCHS if e > 15]]
    runs = [_stopped(fake_run(d, 0, 6.0, epochs=off), 17) for d in (0.0, 0.05)]
    runs += [_stopped(fake_run(d, 1, 6.0), 20) for d in (0.0, 0.05)]
    aligned = comparable.align_prefixes(runs, per_seed=2)
    assert aligned.epoch == 15 and not aligned.skipped
    assert [int(r.metrics.epoch.iloc[-1]) for r in aligned.runs] == [15] * 4
    assert "all compared at epoch 15 of the 40-epoch recipe, the last evaluated epoch" in aligned.note
    assert comparable.common_epoch(runs[:2], 17) == 17 and comparable.common_epoch(runs, 40) == 15
    # a pair that stopped between the scheduled 15 and the 17 compared first is compared too, not skipped
    sixteen = [*[e for e in EPOCHS if e <= 15], 16, *[e for e in EPOCHS if e > 15]]
    runs += [_stopped(fake_run(d, 2, 6.0, epochs=off), 17) for d in (0.0, 0.05)]
    runs += [_stopped(fake_run(d, 3, 6.0, epochs=sixteen), 16) for d in (0.0, 0.05)]
    aligned = comparable.align_prefixes(runs, per_seed=2)
    assert aligned.epoch == 15 and not aligned.skipped and len(aligned.runs) == 8


def test_runs_that_all_reached_the_same_epoch_are_not_cut():
    runs = [_stopped(fake_run(d, s, f), 20) for s in range(2) for d, f in ((0.0, 6.0), (0.05, 3.0))]
    comp = claims.select_comparison(runs)
    assert len(comp.runs) == 4 and sorted(comp.ce) == sorted(comp.ls) == [0, 1]
    assert all(isinstance(r, comparable.UpTo) and r.epochs_reached == 20 for r in comp.runs)
    assert not any("compared at epoch" in n for n in comp.notes)


def test_bf16_runs_are_compared_with_their_twin_at_the_last_epoch_both_reached(tmp_path):
    """A GPU window trains the tf32 twin of a bf16 run for less time: compare where the twin stopped."""
    from lsnc.book.summary import precision_comparison, precision_page_table
    from lsnc.runs.format import write_rows_csv, write_status

    bf16 = fake_run(0.0, 0, 3.0)
    bf16.config.update(amp="bf16", tf32=True)   # a GPU window trains both with --tf32
    twin = fake_run(0.0, 0, 3.0, nc_final=(1.5, 0.3, 0.2))  # a different end point, same trajectory shape
    twin.config.update(tf32=True)
    twin.metrics = twin.metrics.assign(test_accuracy=0.8)
    bf16.metrics = bf16.metrics.assign(test_accuracy=0.9)
    for name, run, stop in (("ce-bf16-s0", bf16, None), ("ce-s0", twin, 15)):
        folder = write_run_folder(tmp_path, run).rename(tmp_path / run.dataset / name)
        if stop is not None:  # the twin: a prefix that stopped at epoch 15 of the 40-epoch recipe
            cut = comparable.UpTo(run, stop).metrics.assign(train_loss_ce=0.1, test_error=0.2, test_loss_ce_all=0.5)
            write_rows_csv(folder / "metrics.csv", cut.to_dict("records"))
            write_status(folder, "done", stop)
    from lsnc import book
    sel = book.select(None, tmp_path, ufm=None, amp=None)  # both precisions, as the runs page selects them
    table = precision_comparison(sel)
    assert len(table) == 1 and table["dataset"].iloc[0] == bf16.dataset and table["label"].iloc[0] == bf16.label
    # it reads the runs it is given, never the folder: without the twin there is no pair
    assert precision_comparison([r for r in sel.runs if r.config.get("amp") == "bf16"]).empty
    row = table.iloc[0]
    assert row["epoch"] == 15 and row["twin"] == "tf32"
    at15 = lambda run, col: float(run.metrics.set_index("epoch").loc[15, col])  # noqa: E731
    assert row["NC1 twin"] == pytest.approx(at15(twin, "train_nc1_within_between"))
    assert row["NC1 bf16"] == pytest.approx(at15(bf16, "train_nc1_within_between"))
    assert row["test accuracy rel. diff"] == pytest.approx(0.9 / 0.8 - 1)
    html = precision_page_table(table).to_html()
    assert "twin → bf16" in html and "tf32" in html


def test_a_bf16_run_finds_its_twin_in_the_tf32_group():
    """The GPU windows put a bf16 set in a group of its own beside the TF32 group: the twins are paired across the
    two (same δ, seed, data, model, recipe) and the table names the twin's group; another setting is no twin."""
    from lsnc.book.summary import precision_comparison
    bf16, twin, other = fake_run(0.05, 1, 3.0), fake_run(0.05, 1, 3.0), fake_run(0.05, 1, 3.0)
    bf16.dataset, twin.dataset, other.dataset = "gpu-bf16", "gpu", "gpu-w32"
    bf16.config.update(amp="bf16", tf32=True)
    twin.config.update(tf32=True)
    other.config.update(tf32=True, width=32)
    for r in (bf16, twin, other):
        r.metrics = r.metrics.assign(test_accuracy=0.8, train_loss_ce=0.1, test_error=0.2, test_loss_ce_all=0.5)
    table = precision_comparison([bf16, other])
    assert table.empty
    table = precision_comparison([bf16, twin, other])
    assert len(table) == 1 and table["twin"].iloc[0] == "tf32 (gpu)" and table["dataset"].iloc[0] == "gpu-bf16"
    # a TF32 run of the same setting elsewhere: the group the bf16 group's name derives from wins; with two
    # elsewhere and none there, no pair (not guessed); a plain fp32 run is no twin of a run trained with TF32
    elsewhere, again, fp32 = fake_run(0.05, 1, 3.0), fake_run(0.05, 1, 3.0), fake_run(0.05, 1, 3.0)
    elsewhere.dataset, again.dataset, fp32.dataset = "cpu-a", "cpu-b", "gpu"
    for r in (elsewhere, again, fp32):
        r.metrics = twin.metrics
    elsewhere.config.update(tf32=True)
    again.config.update(tf32=True)
    table = precision_comparison([bf16, elsewhere, twin])
    assert table["twin"].tolist() == ["tf32 (gpu)"]
    assert precision_comparison([bf16, elsewhere, again]).empty
    assert precision_comparison([bf16, fp32]).empty
    assert precision_comparison([bf16, elsewhere])["twin"].tolist() == ["tf32 (cpu-a)"]


def test_the_ce_ls_summary_uses_one_epoch_for_prefixes_of_different_lengths():
    from lsnc.book.summary import compare_sentence

    runs = []
    for seed, stop in ((0, None), (1, 20)):
        runs += [fake_run(0.0, seed, 6.0), fake_run(0.05, seed, 3.0)]
        for r in runs[-2:]:
            r.metrics = r.metrics.assign(test_error=0.2)
        if stop:
            runs[-2:] = [comparable.UpTo(r, stop) for r in runs[-2:]]
    text = compare_sentence(runs)
    assert "all compared at epoch 20 of the 40-epoch recipe" in text and "; 2 CE / 2 LS seeds." in text
    # headed by the group and what its runs are, as compared: a prefix of which recipe
    assert text.startswith(f"- **`{runs[0].dataset}`**: ") and "epochs 0–20 of the 40-epoch recipe;" in text
    nc1_at_20 = np.mean([float(r.metrics.set_index("epoch").loc[20, "train_nc1_within_between"])
                           for r in runs if r.config["delta"] == 0])
    assert f"NC1 {nc1_at_20:.3g} vs" in text


def _length_group(name, epochs, nc3_ce, nc3_ls, seeds=(0, 1)):
    runs = [fake_run(0.0, s, fast=4.0, nc_final=(4.0, 0.6, nc3_ce), epochs=epochs) for s in seeds]
    runs += [fake_run(0.05, s, fast=2.0, nc_final=(2.0, 0.15, nc3_ls), epochs=epochs) for s in seeds]
    for r in runs:
        r.dataset = name
        r.config.update(milestones=[epochs[-1] // 2], lr=0.05, batch_size=128)
        r.metrics["test_error"] = 0.3
    return runs


def test_scale_table_compares_one_setting_trained_for_two_lengths():

    short = _length_group("fake-short", EPOCHS, 0.3, 0.6, seeds=(0, 1, 2))
    long = _length_group("fake-long", EPOCHS + [60, 80], 0.2, 0.1)
    other = _length_group("other-lr", EPOCHS + [60], 0.2, 0.1)
    for r in other:
        r.config["lr"] = 0.1  # another setting: not compared with the two above
    table = scale.scale_table(short + long + other)
    assert list(table["group"]) == ["fake-short", "fake-short", "fake-long", "fake-long"]
    assert list(table["epochs"]) == ["40 epochs", "40 epochs", "80 epochs", "80 epochs"]
    assert list(table["loss"]) == ["CE", "LS δ=0.05", "CE", "LS δ=0.05"]
    # only the seeds both lengths have (seed 2 of the short group is left out); the final values averaged over them
    assert set(table["seeds"]) == {"0, 1"} and set(table["lr decays at"]) == {"20", "40"}
    np.testing.assert_allclose(table["NC3"], [0.3, 0.6, 0.2, 0.1], atol=1e-3)
    assert table["ECE20"].notna().all() and (table["setting"].str.contains("SGD lr 0.05")).all()
    lines = scale.scale_lines(table)
    assert lines.count("\n") == 0 and "mlp (3 hidden layers, width 8)" in lines and "(seeds 0, 1)" in lines
    assert "NC3: the order changes with length (LS / CE 2 at 40 epochs, 0.5 at 80 epochs)" in lines
    assert "NC1: LS lower at every length" in lines
    assert "test error: LS equal to CE at every length" in lines
    assert scale.scale_table(short + other).empty  # no setting trained for two lengths


def test_scale_table_leaves_out_prefixes_and_says_what_is_missing():

    short, long = _length_group("fake-short", EPOCHS, 0.3, 0.6), _length_group("fake-long", EPOCHS + [80], 0.2, 0.1)
    stopped = [comparable.UpTo(r, 40) for r in _length_group("fake-long", EPOCHS + [80], 0.2, 0.1, seeds=(5,))]
    assert all(comparable.reach(r).prefix for r in stopped)
    assert scale.scale_table(short + stopped).empty  # a prefix of the 80-epoch recipe is not a 40-epoch run
    for r in long:
        r.metrics = r.metrics.drop(columns=["test_ece20"])
    lines = scale.scale_lines(scale.scale_table(short + long + stopped))
    assert "ECE20: not recorded at every length" in lines and "(seeds 0, 1)" in lines
    with pytest.raises(ValueError, match="CE first"):
        scale.scale_table(short + long, deltas=(0.0, 0.05, 0.1))
    with pytest.raises(ValueError, match="axis must be one of epochs, width"):
        scale.scale_table(short + long, "layers")
    # the same lengths with the lr decays at other fractions of training: another setting, never pooled
    late = _length_group("fake-late", EPOCHS + [80], 0.2, 0.1)
    for r in late:
        r.config["milestones"] = [70]
    assert scale.scale_table(short + late).empty
    assert set(scale.scale_table(short + long + late)["group"]) == {"fake-short", "fake-long"}


def test_scale_table_compares_one_setting_at_two_widths():

    narrow = _length_group("fake-w8", EPOCHS, 0.3, 0.6)
    wide = _length_group("fake-w16", EPOCHS, 0.2, 0.5, seeds=(0, 1, 3))
    longer = _length_group("fake-long", EPOCHS + [80], 0.2, 0.1)  # another length: not a width comparison
    for r in wide + longer:
        r.config["width"] = 16
    table = scale.scale_table(narrow + wide + longer, "width")
    assert list(table["width"]) == ["width 8", "width 8", "width 16", "width 16"]
    assert list(table["group"]) == ["fake-w8", "fake-w8", "fake-w16", "fake-w16"]
    assert set(table["seeds"]) == {"0, 1"} and table["setting"].str.contains("mlp, 40 epochs").all()
    np.testing.assert_allclose(table["NC3"], [0.3, 0.6, 0.2, 0.5], atol=1e-3)
    lines = scale.scale_lines(table)
    assert "NC3: LS higher at every width (LS / CE 2 at width 8, 2.5 at width 16)" in lines
    assert scale.scale_table(narrow + longer, "width").empty  # the wide runs trained longer
    assert scale.scale_lines(scale.scale_table(narrow, "width")) == ""


def test_scale_table_compares_one_setting_with_two_networks_by_depth():
    """ResNet-18 against ResNet-50 at one base width and recipe: the depth axis (lsnc.models.model_depth); another
    width is another setting."""

    r18, r50, r50_wide = (_length_group(g, EPOCHS, 0.3, 0.6 * k) for g, k in (("r18", 1), ("r50", 2), ("r50w", 1)))
    for runs, model, width in ((r18, "resnet18", 16), (r50, "resnet50", 16), (r50_wide, "resnet50", 32)):
        for r in runs:
            r.config.update(model=model, width=width)
    table = scale.scale_table(r18 + r50 + r50_wide, "depth")
    assert list(table["depth"]) == ["18 layers"] * 2 + ["50 layers"] * 2 and set(table["group"]) == {"r18", "r50"}
    assert table["setting"].str.contains("width 16, 40 epochs").all() and not table["setting"].str.contains(
        "resnet").any()
    assert "NC3: LS higher at every depth (LS / CE 2 at 18 layers, 4 at 50 layers)" in scale.scale_lines(table)
    ratios = scale.scale_ratios(r18 + r50, "depth")
    assert sorted(set(ratios["factor"].round(3))) == [1.0, round(50 / 18, 3)]
    assert scale.scale_table(r18 + r50_wide, "depth").empty and scale.scale_table(r18 + r50, "width").empty


def test_scale_table_compares_one_setting_at_two_training_set_sizes():

    small, large = _length_group("fake-500", EPOCHS, 0.3, 0.6), _length_group("fake-1000", EPOCHS, 0.3, 0.3)
    for runs, n in ((small, 500), (large, 1000)):
        for r in runs:
            r.config.update(train_per_class=n, test_per_class=100, holdout_per_class=50)
    table = scale.scale_table(small + large, "train images")
    assert list(table["train images"]) == ["500 per class"] * 2 + ["1000 per class"] * 2
    assert table["setting"].str.contains("subset: 100 test, 50 holdout per class").all()
    lines = scale.scale_lines(table)
    assert "NC3: LS higher at every training-set size" not in lines
    assert "NC3: the order changes with training-set size (LS / CE 2 at 500 per class, 1 at 1000 per class)" in lines
    assert scale.scale_table(small + large, "width").empty


def test_scale_ratios_give_the_mean_ratio_and_the_seed_pairs_spread():

    short = _length_group("fake-short", EPOCHS, 0.3, 0.6, seeds=(0, 1, 2))
    long = _length_group("fake-long", EPOCHS + [60, 80], 0.2, 0.1)
    ls_seed1 = next(r for r in long if r.config["delta"] == 0.05 and r.config["seed"] == 1)
    ls_seed1.metrics["train_nc3_duality_sq"] *= 3  # final NC3 0.3: this seed pair's ratio is 1.5, seed 0's 0.5
    ratios = scale.scale_ratios(short + long)
    nc3 = ratios[ratios["metric"] == "NC3"].set_index("value")
    assert list(nc3.index) == [40, 80] and list(nc3["factor"]) == [1.0, 2.0]
    assert list(nc3["groups"]) == ["fake-short", "fake-long"] and set(nc3["seeds"]) == {2}  # seed 2: one length
    np.testing.assert_allclose(nc3["ratio"], [2.0, 0.2 / 0.2], atol=1e-3)  # LS mean (0.1 + 0.3) / 2 over CE 0.2
    np.testing.assert_allclose(nc3["ratio_min"], [2.0, 0.5], atol=1e-3)
    np.testing.assert_allclose(nc3["ratio_max"], [2.0, 1.5], atol=1e-3)
    # the ratio of means is the one the page's bullets state
    lines = scale.scale_lines(scale.scale_table(short + long))
    assert "NC3: the order changes with length (LS / CE 2 at 40 epochs, 1 at 80 epochs)" in lines
    # the runs behind the figure: the compared ones on the common seeds, not seed 2 or another setting
    other = _length_group("other-lr", EPOCHS, 0.2, 0.1)
    for r in other:
        r.config["lr"] = 0.1
    compared = scale.scale_runs(short + long + other)
    assert len(compared) == 8 and {r.config["seed"] for r in compared} == {0, 1}
    assert scale.scale_ratios(short + other).empty and scale.scale_runs(short) == []
    for r in long:
        r.metrics = r.metrics.drop(columns=["test_ece20"])
    ratios = scale.scale_ratios(short + long)
    assert set(ratios.loc[ratios["metric"] == "ECE20", "value"]) == {40}  # not recorded at 80 epochs: no row there


def test_the_claims_page_states_the_claims_of_the_library():
    """book/claims.ipynb's table of the six claims is claims.CLAIMS, word for word."""
    import json
    import re
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "book" / "claims.ipynb").read_text())
    text = "".join(nb["cells"][0]["source"])
    rows = dict(re.findall(r"^\| (C\d) \| (.+?) \|$", text, flags=re.M))
    assert rows == claims.CLAIMS


def test_a_group_trained_in_bf16_is_read_in_bf16_and_its_tf32_twin_is_left_to_the_runs_page(tmp_path):
    """A GPU window whose plan picks bf16 trains its CE / LS set in bf16 and one tf32 CE twin: the figures and
    claims read the bf16 set (the group's main precision) and say so; a CPU group's few bf16 twins stay out."""
    def run(group, delta, seed, amp="none", tf32=False):
        r = fake_run(delta, seed, 3.0 if delta else 5.0)
        r.dataset = group
        r.config.update(amp=amp, tf32=tf32)
        r.provenance = {**r.provenance, "precision": {"autocast": amp, "tf32": tf32},
                        "device": {"type": "cuda" if group == "gpu" else "cpu"}}
        return r
    gpu = [run("gpu", d, s, "bf16") for d in (0.0, 0.05) for s in (0, 1)] + [run("gpu", 0.0, 0, tf32=True)]
    cpu = [run("cpu", d, s) for d in (0.0, 0.05) for s in (0, 1)] + [run("cpu", 0.0, 0, "bf16")]
    assert comparable.main_precision(gpu + cpu) == {"gpu": "bf16", "cpu": "none"}
    standard = comparable.standard_runs(gpu + cpu)
    assert standard == gpu[:4] + cpu[:4]
    comp = claims.select_comparison(gpu)
    assert sorted(comp.ce) == sorted(comp.ls) == [0, 1]
    assert all(r.config["amp"] == "bf16" for r in [*comp.ce.values(), *comp.ls.values()])
    line = describe.group_line(gpu)
    assert "40 epochs, bf16 autocast; CE seeds 0, 1, LS δ=0.05 seeds 0, 1" in line
    assert "1 TF32 twin run (the runs page compares them)" in line and "5 finished runs" in line
    cpu_line = describe.group_line(cpu)
    assert "autocast;" not in cpu_line and "1 bf16 autocast twin run" in cpu_line
    assert describe.precision_text(gpu[-1]) == "TF32" and describe.precision_text(cpu[0]) == "fp32"
    # from run folders: a page's default selection holds each group's main precision
    root = tmp_path / "runs"
    for r in gpu + cpu:  # the twin and its bf16 run share δ and seed: written apart, then given their own names
        precision = f"{r.config['amp']}-{r.config['tf32']}"
        folder = write_run_folder(tmp_path / "staging" / precision, r)
        (root / r.dataset).mkdir(parents=True, exist_ok=True)
        folder.rename(root / r.dataset / f"{folder.name}-{precision}")
    sel = book.select(None, root)
    assert sorted((r.dataset, r.config["amp"]) for r in sel.runs) == [("cpu", "none")] * 4 + [("gpu", "bf16")] * 4
    assert len(book.select(None, root, amp=None).runs) == 10
    assert [r.config["tf32"] for r in book.select("gpu", root, amp="none").runs] == [True]


def test_the_main_precision_is_the_one_that_trained_the_most_epochs():
    """The GPU group holds TF32 CE / LS pairs (epochs 0-75 and 0-20 of the recipe) and, from a later window, a
    bf16 pair: bf16 becomes the group's main precision once its runs reached more epochs in all (2 x 170 > 190),
    not while they reached fewer (2 x 40); a tie stays with fp32 / TF32."""
    def run(delta, seed, amp, reached):
        r = fake_run(delta, seed, 3.0)
        r.dataset = "gpu"
        r.config.update(amp=amp, tf32=True, epochs=800)   # prefixes of the 800-epoch recipe
        r.epochs_reached, r.is_prefix = reached, True
        return r
    tf32 = [run(d, s, "none", reached) for d in (0.0, 0.05) for s, reached in ((0, 75), (1, 20))]
    assert comparable.main_precision(tf32 + [run(d, 0, "bf16", 170) for d in (0.0, 0.05)]) == {"gpu": "bf16"}
    assert comparable.main_precision(tf32 + [run(d, 0, "bf16", 40) for d in (0.0, 0.05)]) == {"gpu": "none"}
    assert comparable.main_precision(tf32 + [run(d, 0, "bf16", 95) for d in (0.0, 0.05)]) == {"gpu": "none"}


def test_final_rows_cut_prefixes_of_one_group_at_one_epoch():
    """Seed 1's CE / LS pair stopped at epoch 20 of the 40-epoch recipe, seed 0's ran it all: the final values of
    both seeds are read at epoch 20 (both complete there); a run of another recipe length is left as it is."""
    from lsnc.book.summary import final_rows

    runs = []
    for seed, stop in ((0, None), (1, 20)):
        pair = [fake_run(0.0, seed, 6.0), fake_run(0.05, seed, 3.0)]
        runs += [comparable.UpTo(r, stop) for r in pair] if stop else pair
    other = fake_run(0.0, 0, 6.0, epochs=EPOCHS[:-2])  # a 20-epoch recipe, complete: another setting
    other.dataset = "fake-20ep"
    final = final_rows(runs + [other])
    assert len(final) == 5 and set(final["epoch"]) == {20}
    at20 = float(runs[0].metrics.set_index("epoch").loc[20, "train_nc1_within_between"])
    assert final.loc[(final["seed"] == 0) & (final["delta"] == 0.0), "train_nc1_within_between"].tolist() == [
        at20, float(other.metrics["train_nc1_within_between"].iloc[-1])]
    assert list(final["dataset"]) == ["fake"] * 4 + ["fake-20ep"]  # in the order given
    # a third seed that stopped at epoch 10, CE only: it does not hold the others back, it is left out
    late = final_rows(runs + [comparable.UpTo(fake_run(0.0, 2, 6.0), 10)])
    assert len(late) == 4 and set(late["epoch"]) == {20}
    # the caption of a page's final values says which epoch, and which run it left out
    from lsnc.book.summary import final_epoch_text
    text = final_epoch_text(runs + [comparable.UpTo(fake_run(0.0, 2, 6.0), 10), other])
    assert text.startswith("last evaluated epoch of each run; `fake`: epoch 20, the last one all its compared runs")
    assert text.count("epoch 20") == 1 and "left out, stopped earlier: " in text and " at epoch 10)" in text
    assert "fake-20ep" not in text  # complete runs of one length: nothing to say
    assert final_epoch_text([other]) == "last evaluated epoch of each run"


def test_final_tables_say_what_each_mean_is_over():
    """fig6/fig7's tables: each cell a mean, so each row says over how many seeds and at which epoch (prefixes that
    stopped at different epochs: the one epoch they are compared at)."""
    from lsnc.book.summary import final_collapse_table

    runs = []
    for seed, stop in ((0, None), (1, 20), (2, 20)):
        pair = [fake_run(0.0, seed, 6.0), fake_run(0.05, seed, 3.0)]
        for r in pair:
            r.metrics = r.metrics.assign(test_error=0.2)
        runs += [comparable.UpTo(r, stop) for r in pair] if stop else pair
    table = final_collapse_table(runs)
    assert table["mean of"].tolist() == ["3 seeds", "3 seeds"] and table["epoch"].tolist() == ["20", "20"]
    nc1 = np.mean([float(r.metrics.set_index("epoch").loc[20, "train_nc1_within_between"])
                   for r in runs if r.config["delta"] == 0])
    assert table["nc1_within_between"].iloc[0] == pytest.approx(nc1, abs=1e-4)
    # a seed that did not log a column: that column's mean is over fewer seeds, and the row says so
    runs[0].metrics = runs[0].metrics.assign(test_error=float("nan"))
    assert final_collapse_table(runs)["mean of"].tolist() == ["3 seeds (2 for some columns)", "3 seeds"]


@pytest.mark.parametrize("share,says", [(0.46, "46 % (on a log scale) is W outside the span"),
                                        (1.13, "that part alone is 113 % of it"),
                                        (-0.2, "W lies more inside the span for LS"),
                                        (float("nan"), "not higher")])
def test_the_nc3_share_sentence_reads_right_beyond_0_and_100_percent(share, says):
    from lsnc.book.nc3 import _share_text

    assert says in _share_text(share)


def test_c2_against_each_runs_own_end():
    """Two runs with the same speed, ending at 0.1 and at 0.01: against a shared level the lower one is 'faster';
    against its own end (90 % of the way, log scale: 0.1**0.9 = 0.126, 0.01**0.9 = 0.0158) it takes longer."""
    class Curve:
        def __init__(self, end):
            e = np.arange(13.0)
            self.metrics = pd.DataFrame({"epoch": e, "train_nc1_within_between": end + (1 - end) * np.exp(-e)})

    high, low = Curve(0.1), Curve(0.01)
    col = "train_nc1_within_between"
    # 0.9 e^-t <= 0.026 from t = 3.54; 0.99 e^-t <= 0.0058 from t = 5.14
    assert measures.epochs_to_own_level(high, col, 0.9) == 4 and measures.epochs_to_own_level(low, col, 0.9) == 6
    assert measures.epochs_to_level(low, col, 0.126) < measures.epochs_to_level(high, col, 0.126) == 4
    rising = Curve(0.1)
    rising.metrics[col] = rising.metrics[col][::-1].to_numpy()
    assert math.isnan(measures.epochs_to_own_level(rising, col, 0.9))
    # in the claims table, a run whose NC1 rises is left out of the own-end row, and its note says so
    ce, ls = paper_like()
    ce[0].metrics = ce[0].metrics.assign(**{col: ce[0].metrics[col][::-1].to_numpy()})
    row = claims.evaluate_claims(ce + ls).query("test.str.contains('NC1 stays') and test.str.contains('own')").iloc[0]
    assert 0 not in row["ce_values"] or math.isnan(row["ce_values"][0])
    assert "NC1 does not decrease (or is not positive) over CE s0: left out" in row["note"]


def test_verdict_matrix_counts_each_groups_tests_by_verdict():
    ce, ls = paper_like()
    table = claims.evaluate_claims(ce + ls + [_stopped(r, 20) for r in paper_like(seeds=(5, 6))[0]])
    table = pd.concat([table, claims.evaluate_claims([_stopped(r, 20) for r in ce + ls]).assign(dataset="prefix")])
    m = claims.verdict_matrix(table)
    assert list(m.columns) == ["C1", "C2", "C3", "C4", "C5"] and list(m.index) == [ce[0].dataset, "prefix"]
    n_c3 = (table["claim"] == "C3").sum() // 2
    assert m.loc["prefix", "C3"] == f"(+){n_c3}" and "(" not in "".join(m.loc[ce[0].dataset])
    for group, row in m.iterrows():  # every test counted once
        sub = table[table["dataset"] == group]
        assert sum(int(n) for cell in row for n in re.findall(r"(\d+)", cell)) == len(sub)
    # with the runs: what each group compared, prefixes as such
    cut = [_stopped(r, 20) for r in ce + ls]
    m = claims.verdict_matrix(claims.evaluate_claims(cut), cut)
    assert m["runs compared"].iloc[0].endswith("epochs 0–20 of the 40-epoch recipe; 3 seed pairs")
    with pytest.raises(ValueError, match="verdicts without a mark"):
        claims.verdict_matrix(table.assign(verdict="maybe"))


def test_styled_matrix_keeps_each_claims_cell_on_one_line():
    ce, ls = paper_like()
    html = claims.styled_matrix(claims.evaluate_claims(ce + ls), ce + ls).to_html()
    assert "white-space: nowrap" in html and "runs compared" in html and ">group<" in html


def test_paired_table_reports_ls_minus_ce_per_seed_pair_with_its_sign_test():
    ce, ls = paper_like(seeds=(0, 1, 2, 3))
    for i, r in enumerate(ce + ls):  # LS 0.02 above CE in seeds 0-2, 0.01 below in seed 3
        loss_ls, seed = r.config["delta"] > 0, r.config["seed"]
        r.metrics["test_error"] = 0.3 + (0.0 if not loss_ls else (0.02 if seed < 3 else -0.01))
    table = claims.paired_table(ce + ls + [fake_run(0.0, 9, fast=4.0)])  # seed 9 has no LS twin: left out
    (row,) = table.to_dict("records")
    assert row["pairs: LS lower / higher / tied"] == "1 / 3 / 0" and row["CE"] == "0.3 [0.3, 0.3] (4 seeds)"
    assert row["LS - CE per seed pair"].startswith("0.0125 [-0.01, 0.02] (4 seeds)")
    assert row["two-sided sign test"] == "p = 0.62, LS higher in most"  # 3 of 4 either way: 2 x 5/16
    assert claims.paired_table(ce).empty  # no LS run: no row


def test_lsnc_claims_prints_the_verdicts_and_the_glance_and_writes_the_table(tmp_path, capsys):
    """`lsnc claims` on a copy of a committed group: the verdict counts and the glance, as the claims page has them
    for that group; --csv writes the table; a group no run holds, or a CSV it cannot write, exits 2 and says why."""
    import shutil
    from pathlib import Path

    from lsnc.cli import main
    from lsnc.runs import find_runs

    group = "mnist1d-w1024"
    runs_dir = tmp_path / "runs"
    shutil.copytree(Path(__file__).resolve().parents[1] / "runs" / group, runs_dir / group)
    table = claims.evaluate_claims(find_runs(runs_dir))
    out_csv = tmp_path / "claims.csv"
    assert main(["claims", "--runs-dir", str(runs_dir), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    matrix = claims.verdict_matrix(table)
    assert matrix.to_string() in out and group in matrix.index
    assert claims.glance_lines(table).replace("**", "").replace("`", "") in out
    compares = claims.verdict_matrix(table, find_runs(runs_dir))["runs compared"][group]
    assert f"What each group compares:\n* {group}: {compares}\n" in out and "10 seed pairs" in compares
    written = pd.read_csv(out_csv)
    assert list(written.columns) == claims.TABLE_COLUMNS and list(written["verdict"]) == list(table["verdict"])
    status = runs_dir / group / "ls0.05-mlpw1024-s9" / "status.json"   # a run still training is not read, and said
    status.write_text(status.read_text().replace('"done"', '"running"'))
    assert main(["claims", "--runs-dir", str(runs_dir)]) == 0
    assert f"1 run not finished, not read: {group}/ls0.05-mlpw1024-s9 (running)" in capsys.readouterr().out
    assert main(["claims", "--runs-dir", str(runs_dir), "--group", "nope"]) == 2
    assert "Unknown dataset 'nope'" in capsys.readouterr().err
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert main(["claims", "--runs-dir", str(runs_dir), "--csv", str(blocked / "x.csv")]) == 2
    assert "give a --csv path in a writable folder" in capsys.readouterr().err


def test_c4_without_a_seed_pair_says_so_rather_than_missing_runs():
    table = claims.evaluate_claims([fake_run(0.0, 0, 6.0), fake_run(0.05, 1, 3.0)])
    row = table.loc[table["test_id"] == "c4-nc2-at-nc1"].iloc[0]
    assert row["verdict"] == "inconclusive" and "no CE-LS seed pair (CE seeds [0], LS seeds [1])" in row["note"]
    assert "no finished" not in row["note"]
