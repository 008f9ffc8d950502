"""The figure functions (lsnc.book.plots) and the book helpers (lsnc.book) on tiny runs made on the spot."""

from __future__ import annotations

import shutil

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lsnc import book  # noqa: E402
from lsnc.book import comparable  # noqa: E402
from lsnc.book.plots import theory as TP  # noqa: E402
from lsnc.book.plots import training as T  # noqa: E402
from lsnc.presets import preset_config  # noqa: E402
from lsnc.training import train  # noqa: E402

DELTAS = (0.0, 0.05, 0.1)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for seed in SEEDS:
        for delta in DELTAS:
            train(preset_config("smoke", delta=delta, seed=seed, threads=1), root, progress=False)
    for delta in (0.0, 0.05):
        train(preset_config("smoke", delta=delta, seed=0, ufm=True, threads=1), root, progress=False)
    return root


@pytest.fixture(scope="module")
def sel(runs_dir):
    return book.select(None, runs_dir)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def lines_with_data(ax):
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]


def test_select(runs_dir, sel):
    assert sel and sel.message is None
    assert sel.datasets == ["synthetic"]
    assert len(sel.runs) == len(DELTAS) * len(SEEDS)  # UFM-style runs left out by default
    ufm = book.select("synthetic", runs_dir, ufm=True)
    assert len(ufm.runs) == 2 and all(r.config["ufm"] for r in ufm.runs)
    assert len(book.select(None, runs_dir, ufm=None).runs) == len(DELTAS) * len(SEEDS) + 2
    pair = sel.pick("synthetic", (0.0, 0.05))
    assert [r.config["delta"] for r in pair] == [0.0, 0.05] and {r.config["seed"] for r in pair} == {0}


def test_unknown_dataset_and_empty_folder(runs_dir, tmp_path):
    with pytest.raises(book.UnknownDataset, match="'nope'.*synthetic"):  # names what is available
        book.select("nope", runs_dir)
    with pytest.raises(book.UnknownDataset, match="synthetic"):
        book.resolve_datasets(runs_dir, "nope")
    with pytest.raises(book.UnknownDataset, match="'nope'"):
        book.start("nope", runs_dir)
    empty = book.select(None, tmp_path / "nothing")
    assert not empty and "No finished runs" in empty.message
    s = book.select("synthetic", runs_dir, deltas=[0.7])
    assert not s and "0.05" in s.message  # says which deltas exist
    s = book.select(None, runs_dir, min_deltas=5)
    assert not s and "at least 5" in s.message
    s.note()  # displays, never raises
    assert book.caption(s) == ""


def test_caption_and_tables(sel):
    text = book.caption(sel, "test")
    for part in ("seeds {0, 1}", "δ ∈ {0, 0.05, 0.1}", "lsnc commit", "epochs"):
        assert part in text
    table = book.scales_table(sel)
    assert len(table) == 1 and table["runs"].iloc[0] == 6
    summary = book.summary_by_loss(sel, "synthetic")
    assert list(summary.index) == [0.0, 0.05] and (summary["seeds"] == 2).all()
    assert "synthetic" in book.compare_sentence(sel).lower() or book.compare_sentence(sel).startswith("- **")


def test_geometry(sel):
    pair = sel.pick("synthetic", (0.0, 0.05))
    epochs = T.drawn_snapshot_epochs(pair)
    assert T.snapshot_samples_text(pair) == "first 20 training samples per class"
    fig = T.plot_geometry(pair)
    assert len(fig.axes) == 2 * len(epochs) and epochs
    fig = T.plot_geometry_3d(pair)
    assert len(fig.axes) == 2
    saved = T.drawn_snapshot_epochs(pair, max_epochs=10 ** 6)
    text = T.snapshot_epochs_text(pair, max_epochs=2)
    assert text.startswith(f"drawn at epochs {saved[0]}, {saved[-1]}")
    assert f"at epochs {', '.join(map(str, saved))}" in text
    assert T.snapshot_epochs_text(pair, last=True).startswith(f"drawn at epoch {saved[-1]} ")
    # a prefix that stopped after its last snapshot says so
    cut = [comparable.UpTo(r, saved[-1] + 1) for r in pair]
    assert T.snapshot_epochs_text(cut).endswith(f"none after epoch {saved[-1]} up to epoch {saved[-1] + 1}, where the "
                                                "runs stopped")


def test_dynamics(sel):
    fig = T.plot_dynamics(sel.runs)
    assert len(fig.axes) == 4
    error, nc1, nc2, nc3 = fig.axes
    assert len(lines_with_data(error)) == 4  # train + test for CE and LS
    assert all(len(lines_with_data(ax)) == 2 for ax in (nc1, nc2, nc3))
    assert nc1.get_yscale() == "log"
    assert len(error.collections) == 4  # min-max bands: two seeds per loss


def test_nc1_vs_nc2(sel):
    fig = T.plot_nc1_vs_nc2(sel.runs)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert len(ax.collections) == 2  # CE '+' and LS '^'
    assert len(fig.axes) == 2  # panel + colour bar


def test_nc1_vs_nc2_wraps_many_groups_into_rows(tmp_path, runs_dir):
    group = next(p for p in runs_dir.iterdir() if p.is_dir())
    for i in range(4):
        shutil.copytree(group, tmp_path / f"g{i}")
    fig = T.plot_nc1_vs_nc2(book.select(None, tmp_path).runs)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert len(panels) == 4 and len({round(ax.get_position().y0, 3) for ax in panels}) == 2  # 3 + 1
    assert sum(not ax.get_visible() for ax in fig.axes) == 2


def test_loss_convergence(sel):
    fig = T.plot_loss_convergence(sel.runs, first_epochs=2)
    assert len(fig.axes) == 2
    assert all(len(lines_with_data(ax)) == 2 for ax in fig.axes)


def test_delta_figures(sel):
    fig = T.plot_delta_dynamics(sel.runs)
    assert len(fig.axes) == 4
    assert all(len(lines_with_data(ax)) == len(DELTAS) for ax in fig.axes)
    fig = T.plot_final_vs_delta(sel.runs)
    assert len(fig.axes) == 5
    assert len(lines_with_data(fig.axes[3])) == 2  # class-mean and classifier norms
    fig = T.plot_calibration_vs_delta(sel.runs)
    assert len(fig.axes) == 3
    assert len(lines_with_data(fig.axes[0])) == 3  # ECE before, after TS (held-out), after TS (test-fitted)


def test_calibration_dynamics(sel):
    assert set(T.CALIBRATION_PART_WORDS) == set(T.CALIBRATION_PARTS)   # each part has its caption words
    fig = T.plot_calibration_dynamics(sel.runs)
    assert len(fig.axes) == 5
    loss, entropy, nc1, error, ece = fig.axes
    assert len(lines_with_data(loss)) <= 6 and len(lines_with_data(loss)) >= 4  # incorrect may be empty
    assert len(lines_with_data(error)) == 4
    assert len(lines_with_data(ece)) == 4


def test_ufm_norms(runs_dir):
    ufm = book.select(None, runs_dir, ufm=True)
    fig = T.plot_ufm_norms(ufm.runs)
    assert len(fig.axes) == 3
    assert len(lines_with_data(fig.axes[0])) == 2  # one per delta
    err = book.summary.ufm_errors(ufm.runs)
    assert (err["rel_err_w"] >= 0).all()
    # LS / CE of the final norms, measured and closed form, from the same end-of-training means
    ratios = book.ufm_ratio_table(ufm.runs)
    means = book.ufm_error_table(ufm.runs).droplevel("label")
    assert len(ratios) == len(means) - means.index.get_level_values("dataset").nunique()
    for (_, dataset, delta), row in ratios.iterrows():
        ls, ce = means.loc[(dataset, delta)], means.loc[(dataset, 0.0)]
        assert row["classifier-row norm ‖w‖: LS / CE"] == round(ls.train_mean_classifier_norm
                                                               / ce.train_mean_classifier_norm, 3)
        assert row["epoch"] == ls.epoch == ce.epoch
        theory = row[book.summary.UFM_RATIO_THEORY]
        assert theory == round(ls.ufm_theory_h_norm / ce.ufm_theory_h_norm, 3) < 1  # one factor for ‖w‖ and ‖h‖
        assert theory == pytest.approx(ls.ufm_theory_w_norm / ce.ufm_theory_w_norm, abs=1e-3)
    assert book.ufm_ratio_table([r for r in ufm.runs if r.config["delta"] > 0]).empty


def test_missing_metric_is_annotated(sel):
    run = sel.runs[0]
    stripped = type(run)(run.path, run.config, run.provenance, run.status,
                         run.metrics.drop(columns=["train_nc3_duality_sq"]), run.epochs)
    fig = T.plot_delta_dynamics([stripped])
    assert any("not logged" in t.get_text() for t in fig.axes[3].texts)


def test_run_and_closed_form():
    fig = TP.plot_closed_form(10, 50, 1e-3, 1e-4, 0.1)
    assert len(fig.axes) == 2


def test_plot_run_and_widgets(sel):
    fig = T.plot_run(sel.runs[0])
    assert len(fig.axes) == 6
    pytest.importorskip("ipywidgets")
    assert book.closed_form_explorer() is not None
    assert book.run_browser(sel) is not None
    assert "Nothing to browse" in book.run_browser(book.select(None, sel.runs_dir, deltas=[0.7])).value


def test_ufm_dynamics_view_reports_both_condition_numbers():
    fig, text = TP.ufm_dynamics(num_classes=3, n_per_class=2, lambda_wh=5e-3, delta=0.1, lr=2.0, steps=50)
    ax = fig.axes[0]
    assert [l.get_label() for l in ax.get_lines()] == ["CE", "LS δ=0.1"]
    assert text.count("κ(full Hessian") == 2 and text.count("κ(softmax") == 2


def test_gd_by_classes_figure_with_sparse_records():
    import numpy as np

    from lsnc.book import theory
    _, comps = theory.gd_by_classes((3,), (2, 4, 1e-2, 1e-2, 0.0), 0.3, (0, 1), 0.5, 2000, 1e-2, 1e-6,
                                    record_every=7)
    steps, dist = TP._distance_matrix(comps[3], 0.0)
    trajs = [comps[3].trajectories[(0.0, s)] for s in (0, 1)]
    assert set(steps) <= set(trajs[0].step) | set(trajs[1].step) and np.all(steps % 7 == 0)
    for row, t in zip(dist, trajs):  # every kept record, NaN only after the run stopped
        np.testing.assert_array_equal(row[steps <= t.step[-1]], t.logit_distance[np.isin(t.step, steps)])
        assert np.all(np.isnan(row[steps > t.step[-1]]))
    fig = TP.plot_gd_by_classes(comps)
    assert len(fig.axes) == 1 and fig.axes[0].get_title().startswith("K = 3: κ(LS)/κ(CE) = ")
    plt.close(fig)


def test_scale_ratio_figure():
    import numpy as np
    import pandas as pd

    from lsnc.book.plots.scale import plot_scale_ratios
    from lsnc.book.scale import SCALE_COLUMNS

    metrics = list(SCALE_COLUMNS.values())
    rows = [{"setting": "long name A", "groups": g, "value": v, "factor": v / 50, "metric": m, "ratio": r,
             "ratio_min": r * 0.9, "ratio_max": r * 1.1, "seeds": 2}
            for g, v, r in (("a-50", 50, 1.4), ("a-150", 150, 2.2)) for m in metrics]
    rows += [{"setting": "long name B", "groups": "b", "value": 10, "factor": 1.0, "metric": "NC3", "ratio": 0.5,
              "ratio_min": 0.4, "ratio_max": 0.6, "seeds": 3},
             {"setting": "long name B", "groups": "b-40", "value": 40, "factor": 4.0, "metric": "NC3", "ratio": 0.8,
              "ratio_min": 0.7, "ratio_max": 0.9, "seeds": 3}]
    empty = pd.DataFrame(columns=list(rows[0]))
    assert plot_scale_ratios({"epochs": empty, "width": empty}) is None
    fig = plot_scale_ratios({"epochs": pd.DataFrame(rows), "width": empty})
    axes = np.array(fig.axes).reshape(len(metrics), 1)  # one column: the width axis has no data
    assert axes[0, 0].get_title() == "by length"
    assert [ax.get_ylabel() for ax in axes[:, 0]] == [f"{m}: LS / CE" for m in metrics]
    nc3 = axes[metrics.index("NC3"), 0]
    drawn = [ln for ln in nc3.get_lines() if len(ln.get_xdata()) == 2 and ln.get_linestyle() == "-"]
    assert sorted(tuple(np.round(ln.get_ydata(), 3)) for ln in drawn) == [(0.5, 0.8), (1.4, 2.2)]
    assert {t.get_text() for t in axes[0, 0].get_legend().get_texts()} == {"a-50 → a-150 (seeds: 2)", "b → b-40 (seeds: 3)"}
    assert [t.get_text() for t in nc3.get_xticklabels()] == ["×1", "×3", "×4"]
    assert "1" in [t.get_text() for t in nc3.get_yticklabels()]  # the LS = CE line is labelled


def test_calibration_lines_state_the_runs_means(sel):
    from lsnc.book.summary import final_rows
    line = book.calibration_lines(sel)
    means = final_rows(sel.runs).groupby("delta")[["test_ece20", "test_temperature_holdout"]].mean()
    assert line.startswith("- **") and "(`synthetic`; CE 2 seeds, LS 2 per δ)" in line
    assert f"before TS, mean over seeds: CE {means.loc[0.0, 'test_ece20']:.3g}; LS " in line
    for d in (0.05, 0.1):  # each LS δ on its side of CE, with its mean ECE and its temperature
        side = "lower" if means.loc[d, "test_ece20"] < means.loc[0.0, "test_ece20"] else "higher"
        assert f"{side} than CE at δ = " in line and f"{d:g} ({means.loc[d, 'test_ece20']:.3g})" in line
        assert f"{d:g} ({means.loc[d, 'test_temperature_holdout']:.3g})" in line
    t = means.loc[0.0, "test_temperature_holdout"]
    assert f"T: CE {t:.3g} ({'over' if t > 1 else 'under'}-confident)" in line
    assert book.calibration_lines([r for r in sel.runs if r.config["delta"] != 0.1]) == ""  # fewer than 3 δ


def test_calibration_gain_pairs_seeds_and_states_the_split(sel):
    """One row per group from seed pairs (CE's held-out T against LS / CE ECE); the figure draws it; the sentences
    name the groups on each side of LS = CE and say whether CE's temperatures sort them."""
    import pandas as pd

    from lsnc.book.plots.scale import plot_calibration_gain
    from lsnc.book.summary import final_rows
    final = final_rows(sel.runs).set_index(["delta", "seed"])
    ce, ls = final.loc[0.0], final.loc[0.05]
    gain = book.calibration_gain(sel)
    assert len(gain) == 1 and gain.loc[0, "dataset"] == "synthetic" and gain.loc[0, "pairs"] == 2
    assert gain.loc[0, "ce_temperature"] == pytest.approx(ce["test_temperature_holdout"].mean())
    assert gain.loc[0, "ratio"] == pytest.approx(ls["test_ece20"].mean() / ce["test_ece20"].mean())
    assert gain.loc[0, "ratio_min"] == pytest.approx((ls["test_ece20"] / ce["test_ece20"]).min())
    unpaired = book.calibration_gain([r for r in sel.runs if (r.config["delta"], r.config["seed"]) != (0.05, 1)])
    assert unpaired.loc[0, "pairs"] == 1 and unpaired.loc[0, "ce_temperature"] == pytest.approx(
        ce.loc[0, "test_temperature_holdout"])  # CE's seed 1 has no LS partner: left out
    assert book.calibration_gain([r for r in sel.runs if r.config["delta"] != 0.05]).empty
    fig = plot_calibration_gain(gain)
    assert [t.get_text() for t in fig.axes[0].texts] == ["synthetic"]
    assert plot_calibration_gain(gain.iloc[:0]) is None

    def table(t, ratio):
        return pd.DataFrame({"dataset": [f"g{i}" for i in range(len(t))], "ce_temperature": t, "ratio": ratio})
    apart = book.calibration_gain_lines(table([1.0, 1.4, 2.0, 2.5], [5.0, 2.0, 0.4, 0.2]))
    assert ("lower ECE in 2 of the 4 group(s) with a held-out temperature (`g2`, `g3`); there CE's held-out T (mean "
            "over seeds) is 2 to 2.5") in apart
    assert "higher ECE in 2 of the 4 group(s)" in apart and "(`g0`, `g1`)" in apart and "ranges are apart" in apart
    assert "overlap" in book.calibration_gain_lines(table([1.0, 2.2, 2.0], [0.5, 2.0, 0.4]))
    assert "apart" not in book.calibration_gain_lines(table([2.0, 2.5], [0.4, 0.2]))


def test_calibration_gain_names_groups_without_a_held_out_temperature(tmp_path, sel):
    """Runs that hold nothing out (the paper presets) have no held-out T: their group is a row with a note, not
    drawn, named in the sentences, and its runs are not in the figure's caption."""
    from lsnc.book.plots.scale import plot_calibration_gain
    for delta in (0.0, 0.05):
        train(preset_config("smoke", delta=delta, holdout_per_class=0, group="no-holdout", threads=1), tmp_path,
              progress=False)
    mixed = sel.runs + book.select(None, tmp_path).runs
    gain = book.calibration_gain(mixed)
    assert list(gain["dataset"]) == ["synthetic", "no-holdout"]
    assert gain.loc[1, "note"].startswith("no held-out temperature") and gain.loc[1, "ratio"] != gain.loc[1, "ratio"]
    assert "Left out: `no-holdout` (no held-out temperature" in book.calibration_gain_lines(gain)
    assert "of the 1 group(s)" in book.calibration_gain_lines(gain)
    assert {r.dataset for r in book.calibration_gain_runs(mixed)} == {"synthetic"}
    assert len(plot_calibration_gain(gain).axes[0].texts) == 1
    assert plot_calibration_gain(gain.iloc[1:]) is None


def test_end_of_training_tables_keep_two_groups_of_one_dataset_apart(tmp_path):
    """Two scales of one dataset (same label, two run groups) get a block each, never one mean over both."""
    for group, epochs in (("short", 2), ("long", 5)):
        train(preset_config("smoke", group=group, epochs=epochs, milestones=[1], threads=1), tmp_path,
              progress=False)
    sel = book.select(None, tmp_path)
    table = book.final_calibration_table(sel)
    label = "synthetic Gaussian mixture"
    assert list(table.index) == [(label, "long", 0.0), (label, "short", 0.0)]
    assert table["test_ece20"].nunique() == 2
    shown = book.page_table(table).data
    assert list(shown["dataset"]) == [label, label] and list(shown["group"]) == ["long", "short"]
    assert len(book.final_collapse_table(sel)) == 2


def test_nc3_decomposition_reads_the_seed_pairs_and_names_groups_without_it(tmp_path, runs_dir, sel):
    """The final values of each CE / LS seed pair, as logged; the identity that splits NC3 holds on the logged
    values; a group whose runs predate the columns is named, not read; the figure draws the pairs' runs."""
    import json
    import math

    import pandas as pd

    from lsnc.book import nc3
    from lsnc.book.plots.nc3 import plot_nc3_decomposition
    from lsnc.book.summary import final_rows
    final, used, left_out = nc3.final_decomposition(sel)
    assert left_out == [] and len(final) == 4 and len(used) == 4
    assert sorted(zip(final["delta"], final["seed"])) == [(0.0, 0), (0.0, 1), (0.05, 0), (0.05, 1)]
    logged = final_rows(sel.runs).set_index(["delta", "seed"])
    for _, row in final.iterrows():
        assert row[nc3.SPAN_FRACTION] == logged.loc[(row["delta"], row["seed"]), nc3.SPAN_FRACTION]
        assert 1 - row["train_nc3_duality_sq"] / 2 == pytest.approx(
            row[nc3.SPAN_FRACTION] * (1 - row[nc3.NC3_IN_SPAN] / 2), rel=1e-9)
        assert 1 - row[nc3.NC3_WHITENED] / 2 == pytest.approx(
            row[nc3.SPAN_FRACTION] * (1 - row[nc3.NC3_IN_SPAN_WHITENED] / 2), rel=1e-12)
    table = nc3.decomposition_table(final)
    assert list(table["loss"]) == ["CE", "LS δ=0.05"] and list(table["seeds"]) == ["0, 1", "0, 1"]
    a_m = nc3.DECOMPOSITION_COLUMNS[nc3.MEANS_WHITENED]  # logged by every run here: no seeds named in its cells
    assert final[nc3.MEANS_WHITENED].notna().all() and not table[a_m].str.contains("seeds|n/a").any()
    # logged by seed 1 only (as in a group with older runs): its cells name the seed they come from
    partial = nc3.decomposition_table(final.assign(**{nc3.MEANS_WHITENED: final[nc3.MEANS_WHITENED].where(
        final["seed"] == 1)}))
    assert list(partial[a_m]) == [f"{v:.3g} (seeds 1)" for v in final.loc[final["seed"] == 1, nc3.MEANS_WHITENED]]
    lines = nc3.decomposition_lines(final)
    assert lines.startswith("* `synthetic`, ") and " (seeds 0, 1, epoch " in lines and "CE / LS: NC3 " in lines
    setting = final["setting"].iloc[0]   # the group's setting (data, subset, model, epochs), in bullets and table
    assert f"* `synthetic`, {setting} (seeds" in lines and list(table["setting"]) == [setting] * 2 and "epochs" in setting
    assert "WP lies nearer A than M for LS in " in lines and "of 1 group(s)" in lines
    assert nc3.decomposition_lines(final.iloc[:0]) == ""
    made = nc3.with_in_span_whitened(pd.DataFrame([
        {"dataset": "g", "label": "G", "delta": d, "seed": s, "epoch": 10, "train_nc3_duality_sq": nc3_,
         nc3.SPAN_FRACTION: frac, nc3.NC3_IN_SPAN: 2 - (2 - nc3_) / frac, nc3.NC3_WHITENED: w_a,
         "train_nc2_wh_etf": 0.1, "train_nc2_means_etf": 0.2}
        for d, s, nc3_, frac, w_a in ((0.0, 0, 0.2, 0.95, 0.3), (0.0, 1, 0.2, 0.95, 0.3),
                                      (0.05, 0, 0.4, 0.9, 0.2), (0.05, 1, 0.4, 0.9, 0.2))]))
    assert nc3.decomposition_lines(made) == (
        "* `g` (seeds 0, 1, epoch 10), CE / LS: NC3 0.2 / 0.4; ‖WP‖/‖W‖ 0.95 / 0.9; WP against M 0.105 / 0.222, "
        "against A 0.211 / 0 (WP nearer M for CE, nearer A for LS). Of LS's lower cos(W, M), 46 % (on a log "
        "scale) is W outside the span, the rest WP turning from M.\n\n"
        "WP lies nearer A than M for LS in 1 of 1 group(s), for CE in 0 of 1.")
    # ln(0.95 / 0.9) / ln(0.9 / 0.8): the share of the gap in ln cos(W, M) that ||WP|| / ||W|| carries
    assert nc3.outside_share(made)["g"] == pytest.approx(math.log(0.95 / 0.9) / math.log(0.9 / 0.8))
    swapped = made.assign(delta=made["delta"].map({0.0: 0.05, 0.05: 0.0})).sort_values("delta", kind="stable")
    assert "LS's NC3 is not higher here." in nc3.decomposition_lines(swapped)
    # a copy of the CE / LS seed-0 pair without the columns, as runs trained before them are
    old = tmp_path / "old"
    columns = (nc3.SPAN_FRACTION, nc3.NC3_IN_SPAN, nc3.NC3_WHITENED)
    for run in (r for r in sel.runs if r.config["seed"] == 0 and r.config["delta"] in (0.0, 0.05)):
        dst = old / "legacy" / run.path.name
        shutil.copytree(run.path, dst)
        m = pd.read_csv(dst / "metrics.csv").drop(columns=list(columns))
        m.to_csv(dst / "metrics.csv", index=False)
        cfg = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps({**cfg, "group": "legacy"}))
    mixed = sel.runs + book.select(None, old).runs
    final2, used2, left_out2 = nc3.final_decomposition(mixed)
    assert left_out2 == ["legacy"] and final2.equals(final)
    assert nc3.left_out_line(left_out2) == ("Not read (their runs were trained before lsnc logged the decomposition): "
                                            "`legacy`.")
    assert nc3.left_out_line([]) == "" and "every δ of the group" in nc3.left_out_line(["g"], across_delta=True)
    fig = plot_nc3_decomposition(used)
    assert fig.axes[0].get_yscale() == "log" and len(lines_with_data(fig.axes[0])) == 4  # CE, LS x (M, A)
    assert plot_nc3_decomposition([]) is None


def test_nc3_decomposition_against_delta_keeps_seeds_logged_at_every_delta(tmp_path, runs_dir, sel):
    """Across δ: every δ of a group on the same seeds, those whose run at each δ logged the columns; a seed whose
    run at one δ predates them is left out at every δ, and a group with no such seed is named."""
    import json

    import pandas as pd

    from lsnc.book import nc3
    from lsnc.book.plots.nc3 import plot_decomposition_vs_delta
    from lsnc.book.summary import final_rows
    final, used, left_out = nc3.final_vs_delta(sel)
    assert left_out == [] and len(used) == len(DELTAS) * len(SEEDS)
    assert sorted(zip(final["delta"], final["seed"])) == sorted((d, s) for d in DELTAS for s in SEEDS)
    logged = final_rows(sel.runs).set_index(["delta", "seed"])
    for _, row in final.iterrows():
        assert row[nc3.NC3_WHITENED] == logged.loc[(row["delta"], row["seed"]), nc3.NC3_WHITENED]
    assert nc3.final_vs_delta(sel, min_deltas=len(DELTAS) + 1)[0].empty  # too few δ values
    text = nc3.delta_lines(final)  # every run here logs A against M: on all the seeds, none named
    assert "A against M, the NC3 of W = A" in text and "the runs that log it" not in text
    # a copy of the group in which seed 1's δ = 0.1 run predates the columns: seed 1 goes at every δ
    old = tmp_path / "old"
    for run in sel.runs:
        dst = old / "partial" / run.path.name
        shutil.copytree(run.path, dst)
        cfg = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps({**cfg, "group": "partial"}))
        if run.config["seed"] == 1 and run.config["delta"] == 0.1:
            m = pd.read_csv(dst / "metrics.csv").drop(columns=[nc3.SPAN_FRACTION, nc3.NC3_IN_SPAN, nc3.NC3_WHITENED])
            m.to_csv(dst / "metrics.csv", index=False)
    partial, used2, left_out2 = nc3.final_vs_delta(book.select(None, old))
    assert left_out2 == [] and set(partial["seed"]) == {0} and sorted(partial["delta"]) == sorted(DELTAS)
    assert len(used2) == len(DELTAS)
    for run in used2:  # seed 0 of the copy is no longer the only seed logging: drop it too, the group goes
        m = pd.read_csv(run.path / "metrics.csv").drop(columns=[nc3.SPAN_FRACTION])
        m.to_csv(run.path / "metrics.csv", index=False)
    none, used3, left_out3 = nc3.final_vs_delta(book.select(None, old))
    assert none.empty and used3 == [] and left_out3 == ["partial"]
    fig = plot_decomposition_vs_delta(final)
    assert fig.axes[0].get_yscale() == "log" and len(lines_with_data(fig.axes[0])) == 2  # against M, against A
    assert plot_decomposition_vs_delta(none) is None


def test_delta_lines_reads_the_means_in_delta_order_and_says_what_is_missing():
    """The bullets of the δ page from a made table, rows out of δ order: endpoints, the smallest δ, the counts."""
    import pandas as pd

    from lsnc.book import nc3

    def row(dataset, delta, seed, nc3_, frac, wp_a, means_etf):
        wp_m = 2 - (2 - nc3_) / frac
        return {"dataset": dataset, "label": "G", "delta": delta, "seed": seed, "epoch": 10,
                "train_nc3_duality_sq": nc3_, nc3.SPAN_FRACTION: frac, nc3.NC3_IN_SPAN: wp_m, nc3.NC3_WHITENED: 2 - frac * (2 - wp_a),
                "train_nc2_wh_etf": 0.1, "train_nc2_means_etf": means_etf}
    rows = [row("g", d, s, *v) for s in (0, 1) for d, v in ((0.5, (0.6, 0.8, 0.01, 0.5)), (0.0, (0.2, 0.95, 0.3, 0.4)),
                                                             (0.1, (0.4, 0.9, 0.02, 0.45)))]
    rows += [row("only-ls", d, 0, 0.5, 0.9, 0.01, 0.5) for d in (0.05, 0.1, 0.2)]
    made = nc3.with_in_span_whitened(pd.DataFrame(rows))
    assert made[nc3.NC3_IN_SPAN_WHITENED].iloc[0] == pytest.approx(0.01)  # the derivation inverts the made column
    assert nc3.delta_lines(made) == (
        "* `g` (seeds 0, 1, epoch 10): WP against A is 0.3 for CE and 0.01–0.02 for LS at δ = 0.1–0.5 (smallest at "
        "δ = 0.5); for LS, WP lies nearer A than M at 2 of its 2 δ values; for CE, nearer M. ‖WP‖/‖W‖ is 0.95 for CE, "
        "0.8–0.9 for LS. From δ = 0.1 to 0.5, NC3 goes from 0.4 to 0.6 (CE: 0.2), WP against M from 0.222 to 0.25, and "
        "the class means' own distance from the ETF (M Mᵀ against it) from 0.45 to 0.5 (CE: 0.4).\n"
        "* `only-ls` (seeds 0, epoch 10): no CE run to compare with.")
    # A against M where only seed 1 logged it (older runs beside newer ones): that seed's means, named
    logged = made.assign(**{nc3.MEANS_WHITENED: made["delta"].map({0.0: 0.3, 0.1: 0.2, 0.5: 0.1}).where(
        (made["dataset"] == "g") & (made["seed"] == 1))})
    assert nc3.delta_lines(logged).split("\n")[0].endswith(
        "(CE: 0.4). A against M, the NC3 of W = A (the least-norm classifier with NC2 = 0), goes from 0.2 to 0.1 "
        "(CE: 0.3; seeds 1, the runs that log it).")
    no_ls = made[made["dataset"] == "g"].assign(**{nc3.SPAN_FRACTION: lambda d: d[nc3.SPAN_FRACTION].where(
        d["delta"] == 0.0)})
    assert nc3.delta_lines(nc3.with_in_span_whitened(no_ls)).endswith("no LS δ with the decomposition logged.")
    assert nc3.delta_lines(made.iloc[:0]) == ""


def test_the_seeds_note_says_where_shorter_runs_end():
    import pandas as pd
    from lsnc.book.plots.training import _seeds_note
    rows = [{"dataset": "gpu", "delta": d, "seed": s, "epoch": e} for d in (0.0, 0.05) for s, last in ((0, 75), (1, 20))
            for e in range(0, last + 1, 5)]
    assert _seeds_note(pd.DataFrame(rows)).endswith("; fewer seeds after epoch 20, where shorter runs end")
    same = pd.DataFrame([r for r in rows if r["epoch"] <= 20])
    assert _seeds_note(same) == "lines: mean over 2 seed(s); bands: min-max over seeds"


def test_seed_means_leave_out_a_stop_row_another_run_went_past():
    """A time budget evaluates a prefix where it stops (seed 1 at epoch 17, between the scheduled 15 and 20); seed 0
    went on without a row there: the seed mean skips 17 rather than show seed 1 alone between two means of both."""
    import pandas as pd

    from lsnc.book.plots.style import seed_stats, stop_rows_off_the_grid

    rows = [{"dataset": "g", "run": f"ce-s{s}", "epoch": e, "v": float(s)} for s, epochs in
            ((0, (0, 10, 15, 20, 25, 27)), (1, (0, 10, 15, 17))) for e in epochs]
    df = pd.DataFrame(rows)
    assert list(df[stop_rows_off_the_grid(df)].epoch) == [17]    # 27 is a stop row too, but no run went past it
    stats = seed_stats(df, "v")
    assert list(stats.index) == [0, 10, 15, 20, 25, 27] and list(stats["n"]) == [2, 2, 2, 1, 1, 1]
    assert not stop_rows_off_the_grid(df.drop(columns="run")).any()
    # a set trained together stops together: three seeds at 17 and one that went on keep their common end point
    many = pd.DataFrame(rows + [{"dataset": "g", "run": f"ce-s{s}", "epoch": e, "v": float(s)}
                                for s in (2, 3) for e in (0, 10, 15, 17)])
    assert not stop_rows_off_the_grid(many).any()
    assert list(seed_stats(many, "v").loc[17, ["n"]]) == [3]
    # counted per δ: another δ's runs that went past 17 do not outvote this δ's
    other = pd.DataFrame([{**r, "delta": 0.0} for r in rows] + [
        {"dataset": "g", "run": f"ls-s{s}", "epoch": e, "v": 1.0, "delta": 0.05}
        for s in (0, 1, 2) for e in (0, 10, 15, 20)])
    assert list(other[stop_rows_off_the_grid(other)].epoch) == [17]
    assert not stop_rows_off_the_grid(other[other.delta == 0.05]).any()


def _regroup(runs, group, **config):
    """Copies of ``runs`` in another dataset group (``group``), with ``config`` changed: a recipe of more epochs makes
    them prefixes (finished before the recipe's last epoch)."""
    return [type(r)(r.path.parent.parent / group / r.name, {**r.config, **config}, r.provenance,
                    {**r.status, "epoch": int(r.metrics["epoch"].max())}, r.metrics, r.epochs) for r in runs]


def test_loss_convergence_titles_the_epochs_drawn_and_leaves_prefixes_out(sel):
    complete = sel.runs
    prefixes = _regroup(complete, "gpu-prefix", epochs=30)
    assert all(r.is_prefix for r in prefixes) and not any(r.is_prefix for r in complete)
    last = int(complete[0].metrics["epoch"].max())
    fig = T.plot_loss_convergence(complete + prefixes)
    (_, gap), (left, gap_prefix) = fig.axes[:2], fig.axes[2:]
    # the epochs actually drawn (up to the first lr decay of the smoke recipe, epoch 2), never the horizon alone
    assert gap.get_title() == "epochs 0–2, before the first lr decay (epoch 2):\ndistance to the run's minimum"
    assert max(x for ln in lines_with_data(gap) for x in ln.get_xdata()) == 2
    # a group of prefixes: its loss is drawn, the distance to its smallest loss is not, and the panel says why
    assert len(lines_with_data(left)) == 2 and not gap_prefix.get_lines()
    assert gap_prefix.get_title() == "distance to the run's minimum: not drawn"
    note = gap_prefix.texts[0].get_text()
    assert "prefixes" in note and f"epochs 0–{last} of the 30-epoch recipe" in note and "not\na converged" in note
    fig = T.plot_loss_convergence(complete, first_epochs=1)
    assert fig.axes[1].get_title().startswith("epochs 0–1:\n")
    # a group with some prefixes: those are left out, and the title says so
    seed0_prefixes = _regroup([r for r in complete if r.config["seed"] == 0], "synthetic", epochs=30)
    fig = T.plot_loss_convergence([r for r in complete if r.config["seed"] == 1] + seed0_prefixes)
    assert fig.axes[1].get_title().endswith("; prefix runs left out")


def test_calibration_dynamics_says_where_no_temperature_was_fitted_on_a_held_out_split(sel):
    held_out = [c for c in sel.runs[0].metrics.columns
                if c.endswith("_ts_holdout") or c == "test_temperature_holdout"]
    unfitted = [type(r)(r.path, r.config, r.provenance, r.status, r.metrics.assign(**{c: np.nan for c in held_out}),
                        r.epochs) for r in sel.runs]
    none = _regroup(unfitted, "no-holdout")
    fig = T.plot_calibration_dynamics(sel.runs + none, part="calibration")
    (_, ece), (_, ece_none) = fig.axes[:2], fig.axes[2:]
    assert len(lines_with_data(ece)) == 4 and not ece.texts  # before and after TS, CE and LS
    assert len(lines_with_data(ece_none)) == 2  # before TS only
    assert ece_none.texts[0].get_text() == "no held-out split:\nno after-TS curve"
    assert "after TS" not in ece_none.get_ylabel()
    # only some runs of a row with a held-out fit: the after-TS line is theirs, and the row says so
    some = [r if r.config["seed"] == 0 else n for r, n in zip(sel.runs, unfitted)]
    fig = T.plot_calibration_dynamics(some, part="calibration")
    # CE and LS δ = 0.05 (the default δ), seeds 0 and 1: the two seed-0 runs kept their fit
    assert fig.axes[1].texts[0].get_text() == "after TS: the 2 of 4 runs\nwith a held-out split"


def test_ufm_norms_never_use_one_line_style_for_two_quantities(runs_dir):
    ufm = book.select(None, runs_dir, ufm=True)
    fig = T.plot_ufm_norms(ufm.runs)

    def styles(ax):
        return {(ln.get_linestyle(), tuple(ln._unscaled_dash_pattern[1] or ())): ln.get_label()
                for ln in ax.get_legend().get_lines()}

    features, norms = styles(fig.axes[1]), styles(fig.axes[2])
    solid = {key for key in features if key[0] == "-"}
    assert not (set(features) - solid) & set(norms)  # the centred class means' style is not the measured ||h_i||'s
    assert "centred class means" in " ".join(features.values())


def test_seeds_note_for_captions(sel, runs_dir):
    assert T.seeds_note(sel.runs) == "lines: mean over 2 seed(s); bands: min-max over seeds"
    assert T.seeds_note(book.select(None, runs_dir, ufm=True).runs) == "one seed per setting: each line is one run"
    assert T.seeds_note(sel.runs, deltas=[0.0]) == "lines: mean over 2 seed(s); bands: min-max over seeds"
    assert T.seeds_note([]) == ""


def test_a_row_label_names_its_group_even_when_it_is_the_only_one_drawn():
    import pandas as pd

    from lsnc.book.plots.style import group_label

    df = pd.DataFrame({"dataset": ["cifar10-jpeg-150ep"], "label": ["CIFAR-10 (JPEG copy)"]})
    assert group_label(df, "cifar10-jpeg-150ep") == "CIFAR-10 (JPEG copy)\n(cifar10-jpeg-150ep)"


def test_a_row_label_says_the_groups_scale_and_a_prefix_as_one():
    import pandas as pd

    from lsnc.book.plots.style import group_label

    rows = dict(dataset="g", label="CIFAR-10 (JPEG copy)", model="resnet18")
    df = pd.DataFrame([{**rows, "width": 16, "train_per_class": 500, "epochs": 150, "epoch": e} for e in (0, 150)])
    assert group_label(df, "g") == "CIFAR-10 (JPEG copy)\n(g)\nresnet18 w16\n500/class\n150 epochs"
    gpu = pd.DataFrame([{**rows, "width": None, "train_per_class": None, "epochs": 800, "epoch": e}
                        for e in (0, 20, 75)])
    assert group_label(gpu, "g").endswith("\nresnet18 w64\nall train images\nepochs 0–75 of 800")


@pytest.mark.parametrize("page,expected", [
    *((f"fig{i}", {"deltas": "CE_VS_LS"}) for i in (1, 2, 3, 4)),
    ("fig8", {"deltas": "CE_VS_LS", "bins": "ECE_DEFAULT_BINS"}),
    ("fig7", {"bins": "ECE_DEFAULT_BINS"}),
    ("fig9", {"deltas": "UFM_DELTAS"}),
])
def test_figure_page_parameters_are_the_library_defaults(page, expected):
    """A figure page's papermill defaults write out the library's: CE against LS at the main δ, the UFM-style
    δ values, the default ECE bins. Changing the library without the page fails here."""
    import json
    from pathlib import Path

    from lsnc import vocab
    from lsnc.calibration import ECE_DEFAULT_BINS

    nb = json.loads((Path(__file__).parents[1] / "book" / f"{page}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    params: dict = {}
    exec("".join(cell["source"]), {}, params)
    library = {"CE_VS_LS": list(vocab.CE_VS_LS), "UFM_DELTAS": list(vocab.UFM_DELTAS),
               "ECE_DEFAULT_BINS": ECE_DEFAULT_BINS}
    for key, name in expected.items():
        assert params[key] == library[name], f"{page}: {key} = {params[key]}, the library's {name} is {library[name]}"
