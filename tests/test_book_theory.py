"""lsnc.book.theory: the theory page's numbers (closed form, spectrum, GD end points) and its verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lsnc import ufm
from lsnc.book import theory


@pytest.fixture(scope="module")
def problem():
    return ufm.UFMProblem(3, 2, 2, 1e-2, 1e-2, 0.0)


@pytest.fixture(scope="module")
def comparison(problem):
    return ufm.compare_convergence(problem, [0.0, 0.3], seeds=[0, 1], lr=4.0, steps=4000, loose=1e-3, tight=1e-7)


def test_closed_form_numbers(problem):
    n = theory.closed_form_numbers(problem, 0.3)
    ce, ls = problem.solution(), problem.with_delta(0.3).solution()
    assert n["s"] == ce.s and n["boundary"] == pytest.approx(1 - ce.s) and n["delta_ls"] == 0.3
    assert n["w_ratio"] == pytest.approx(ls.w_norm / ce.w_norm) and 0 < n["w_ratio"] < 1  # LS shrinks the norms
    assert n["h_ratio"] == pytest.approx(n["w_ratio"])  # by the same factor
    assert n["py_ls"] < n["py_ce"]


def test_spectrum_numbers(problem):
    from lsnc.vocab import MAIN_DELTA
    deltas = theory.kappa_deltas(problem, 4)
    top = 0.9 * (1 - problem.solution().s)
    assert deltas[0] == 0 and deltas[-1] == pytest.approx(top)
    # the paper's main δ is on the grid (the linspace alone skips it), sorted in, once
    assert MAIN_DELTA in deltas and len(deltas) == 5 and np.all(np.diff(deltas) > 0)
    assert list(theory.kappa_deltas(problem, 3, also=(0.0, top / 2, 2.0))) == list(np.linspace(0, top, 3))
    spectrum = ufm.condition_numbers_vs_delta(problem, deltas)
    n = theory.spectrum_numbers(spectrum)
    assert n["sym_dim"] == int(spectrum["symmetry_dim"][0]) and n["kappa_delta_max"] == pytest.approx(deltas[-1])
    for key in ("kappa_restricted", "restricted_min", "restricted_max", "kappa_softmax"):
        assert n[f"{key}_ce"] == spectrum[key][0]
        assert n[f"{key}_min"] <= n[f"{key}_max"]
    # the text states the grid it ranges over, and where κ is smallest and largest on it
    assert n["kappa_ls_count"] == 4 and n["kappa_grid"] == ", ".join(f"{d:.3g}" for d in deltas[1:])
    assert n["kappa_grid"].startswith(f"{MAIN_DELTA:g}, ")
    kappa = spectrum["kappa_restricted"][1:]
    assert n["kappa_restricted_min_delta"] == deltas[1:][np.argmin(kappa)]
    assert n["kappa_restricted_max_delta"] == deltas[1:][np.argmax(kappa)]
    broken = dict(spectrum, num_dropped=spectrum["num_dropped"] + 1)
    with pytest.raises(ValueError, match="flat"):
        theory.spectrum_numbers(broken)


def test_endpoint_and_iteration_numbers(problem, comparison):
    n = theory.endpoint_numbers(problem, comparison)
    assert set(n) == {"max_rel_err", "max_nc1", "max_nc2", "max_nc3"}
    assert n["max_rel_err"] < 1e-4  # GD ends at the closed form
    assert all(np.isfinite(v) for v in n.values())
    it = theory.iteration_numbers(comparison, "iters")
    med = comparison.median_iters("tight")
    assert it == {"iters_ce": med[0], "iters_ls_min": med[1], "iters_ls_max": med[1]}


def test_verdict_summary(comparison):
    text = theory.verdict_summary(comparison)
    assert text.count("\n* ") == 3 and "**Verdict" in text
    assert ("numbers support the claim" in text) == comparison.verdict()["supports_claim"]


def test_verdict_says_which_curvature_sets_the_rate_at_each_step(problem, comparison):
    """At a common step the smallest curvature sets the rate, at a step matched to each δ's largest curvature κ does:
    the verdict says which comparison showed what, so "faster, but not because of κ" and "followed κ" agree."""
    tuned = ufm.compare_convergence(problem, [0.0, 0.3], seeds=[0, 1], lr=0.5, steps=4000, loose=1e-3, tight=1e-7,
                                    lr_rule="inverse_max_curvature")
    assert ufm.spectrum_against_baseline(comparison.spectrum, "kappa_restricted") == "higher"
    assert np.all(comparison.iters_tight[1] < comparison.iters_tight[0])  # faster at the common step
    assert np.all(tuned.iters_tight[1] > tuned.iters_tight[0])  # slower at the matched step, as κ says
    text = theory.verdict_summary(comparison, tuned)
    verdict = text.split("**Verdict")[1]
    assert "At a common step size η the local rate is |1 − η λ_min|, set by the smallest curvature" in verdict
    assert ("With the step matched to each δ's largest curvature (η = 0.5 / λ_max(δ)) the rate is |1 − 0.5/κ|, set "
            "by the condition number: there LS, whose κ is higher, needed more iterations than CE to reach the tight "
            "distance for every seed, as κ predicts.") in verdict
    assert "(symmetry directions removed; at δ = 0.3)" in text and "LS: 47.8 to 47.8" not in text
    # the matched step's outcome is read from its runs: where none arrives, it says so and claims nothing
    short = ufm.compare_convergence(problem, [0.0, 0.3], seeds=[0], lr=0.5, steps=50, loose=1e-3, tight=1e-7,
                                    lr_rule="inverse_max_curvature")
    text = theory.verdict_summary(comparison, short)
    assert "measured medians: none arrived (CE) and none arrived (LS)" in text
    assert "was neither faster nor slower than CE on any seed-run (did not arrive" in text
    assert "as κ predicts" not in text and "against κ" not in text


def test_size_table_and_its_lines():
    small = ufm.UFMProblem(3, 2, 2, 1e-2, 1e-2, 0.0)
    wide = ufm.UFMProblem(4, 50, 16, 1e-3, 1e-6, 0.0, lambda_b=1e-2)
    table = theory.size_table([small, wide], [0.0, 0.1, 0.9999])  # 0.9999: s + δ > 1, skipped
    assert list(table["UFM"].unique()) == ["K=3, n=2, d=2, λ_W=0.01, λ_H=0.01, λ_b=0", theory.problem_label(wide)]
    assert len(table) == 4 and set(table["δ"]) == {0.0, 0.1}
    dense = ufm.hessian_spectrum(small.with_delta(0.1))
    row = table[(table["UFM"] == theory.problem_label(small)) & (table["δ"] == 0.1)].iloc[0]
    assert row["κ"] == pytest.approx(dense.kappa_restricted, rel=1e-9) and row["parameters"] == small.num_params
    assert "within class, off E" in table.loc[table["UFM"] == theory.problem_label(wide), "λ_min from"].iloc[0]
    verdicts = theory.size_verdicts(table)
    for label, word in verdicts.items():
        rows = table[table["UFM"] == label]
        higher = rows.loc[rows["δ"] > 0, "κ"].iloc[0] > rows.loc[rows["δ"] == 0, "κ"].iloc[0]
        assert word == ("higher" if higher else "lower")
    line = theory.size_line(table)
    assert line.startswith("* **Larger UFMs**") and line.count(" for LS at K=") == 2
    assert line.count("LS δ = 0.1 (") == 2  # the δ each UFM has: 0.9999 was skipped
    details = theory.size_details(table).splitlines()
    assert len(details) == 2 and all(d.startswith("* **K=") for d in details)
    assert "is 1e-06 for every δ, so κ follows λ_max" in details[1]  # the wide UFM: λ_min = λ_H for CE and LS
    assert "for every δ" not in details[0]
    assert theory.same_smallest_curvature(table) == [theory.problem_label(wide)]
    with pytest.raises(ValueError, match="same size"):
        theory.size_table([wide, wide], [0.0])
    assert theory.size_description([wide, wide.with_delta(0.1)]).startswith("K = 4 classes, n = 50 samples")
    with pytest.raises(ValueError, match="δ = 0"):
        theory.size_verdicts(table[table["δ"] > 0])
    shown = theory.size_styled(table).data  # each UFM once per block; the parameter count kept (sizes differ)
    assert list(shown["UFM"]) == [theory.problem_label(small), "", theory.problem_label(wide), ""]
    assert "parameters" in shown and "parameters" not in theory.size_styled(table[table["UFM"] == shown["UFM"][0]]).data


def test_paper_size_problems_come_from_the_recipe():
    from lsnc.config import TrainConfig
    from lsnc.models import build_model
    from lsnc.presets import PRESETS
    sizes = theory.paper_sizes()
    assert sizes == {"CIFAR-10": (10, 5000, 512), "CIFAR-100": (100, 500, 2048), "STL-10": (10, 500, 2048),
                     "Tiny ImageNet": (200, 500, 2048)}
    for name, (preset, K, _) in theory.PAPER_EXPERIMENTS.items():  # d is the feature dimension of the model
        assert build_model(PRESETS[preset]["model"], K, (3, 32, 32)).feature_dim == sizes[name][2]
    every = theory.paper_size_problems(keep_zero=True)
    assert len(every) == 8 and [(p.num_classes, p.n_per_class, p.dim) for p in every[::2]] == list(sizes.values())
    wd_problem, ufm_problem = every[:2]
    assert wd_problem.lambda_w == wd_problem.lambda_h == wd_problem.lambda_b == PRESETS["paper-cifar10"]["weight_decay"]
    defaults = TrainConfig.__dataclass_fields__
    assert (ufm_problem.lambda_w, ufm_problem.lambda_h, ufm_problem.lambda_b) == tuple(
        defaults[k].default for k in ("lambda_w", "lambda_h", "lambda_b"))
    # the paper's weight decay at 100 and 200 classes: s = K sqrt(n λ_W λ_H) >= 1, only the zero minimizer
    kept = theory.paper_size_problems()
    zero = [p for p in every if p not in kept]
    assert [(p.num_classes, p.lambda_h) for p in zero] == [(100, 5e-4), (200, 5e-4)]
    line = theory.zero_minimizer_line(every)
    assert line.startswith("No κ for CIFAR-100 size: K=100") and "Tiny ImageNet size" in line and "s = 1.12" in line
    assert theory.zero_minimizer_line(kept) == ""
    assert theory.with_nonzero_minimizer(every) == kept  # the page and the claims table filter the same way
    assert theory.problem_label(ufm_problem) == "CIFAR-10 size: K=10, n=5000, d=512, λ_W=0.001, λ_H=1e-06, λ_b=0.01"
    assert theory.problem_label(ufm.UFMProblem(3, 2, 2, 1e-2, 1e-2, 0.0)) == "K=3, n=2, d=2, λ_W=0.01, λ_H=0.01, λ_b=0"
    assert theory.size_description(kept[:3]).startswith("CIFAR-10: K = 10 classes, n = 5000 samples per class")
    assert theory.size_description(kept[:3]).count("; ") == 1  # one entry per size


def test_verdict_summary_with_sizes(comparison):
    spectrum = comparison.spectrum
    small = ufm.spectrum_against_baseline(spectrum, "kappa_restricted")
    # a UFM dominated by lambda_h: its smallest curvature is lambda_h for CE and every LS δ
    wide = ufm.UFMProblem(3, 50, 8, 1e-3, 1e-6, 0.0, lambda_b=1e-2)
    table = theory.size_table([ufm.UFMProblem(3, 20, 8, 1e-2, 1e-2, 0.0), wide], comparison.deltas)
    assert theory.same_smallest_curvature(table) == [theory.problem_label(wide)]
    text = theory.verdict_summary(comparison, spectrum=spectrum, sizes=table)
    assert text.count("\n* ") == 4 and "* **Larger UFMs**" in text
    same = set(theory.size_verdicts(table).values()) == {small}
    assert (f"is also {small} for LS, so this is not an effect" in text) == same
    assert ("it depends on the UFM" in text) == (not same)
    relies = "larger smallest curvature" in text.split("**Verdict")[1]
    assert ("the smallest curvature of the whole Hessian is the same for CE and every LS" in text) == relies
    if relies:   # that curvature is off the logits: the sentence goes by the smallest one the logits see
        rows = table[table["UFM"] == theory.problem_label(wide)]
        word = ufm.ls_against_ce(rows.loc[rows["δ"] == 0, "logit λ_min"].iloc[0],
                                 rows.loc[rows["δ"] > 0, "logit λ_min"])
        assert ("carries over to a logit distance" in text) == (word == "higher")
        assert ("cannot explain a faster descent" in text) == (word != "higher")
        lowered = table.copy()
        lowered.loc[lowered["δ"] > 0, "logit λ_min"] = lowered["logit λ_min"].min() / 2
        text_low = theory.verdict_summary(comparison, spectrum=spectrum, sizes=lowered)
        assert "is lower for LS there (" in text_low and "cannot explain a faster descent" in text_low
    # the other branch: κ made lower for LS on the larger UFMs
    flipped = table.copy()
    flipped.loc[flipped["δ"] > 0, "κ"] = flipped["κ"].min() / 2
    other = "lower" if small != "lower" else "higher"
    if other == "higher":
        flipped.loc[flipped["δ"] > 0, "κ"] = flipped["κ"].max() * 2
    text = theory.verdict_summary(comparison, spectrum=spectrum, sizes=flipped)
    assert (f"it depends on the UFM (the small one: {small} for LS): the full-Hessian condition number is "
            f"{other} for LS at K=3, n=20, d=8 (λ_W=0.01, λ_H=0.01, λ_b=0), K=3, n=50, d=8 (λ_W=0.001, λ_H=1e-06, "
            "λ_b=0.01).") in text
    # mixed: each verdict with the UFMs it holds for
    mixed = table.copy()
    first = mixed["UFM"] == mixed["UFM"].iloc[0]
    mixed.loc[first & (mixed["δ"] > 0), "κ"] = mixed.loc[first, "κ"].iloc[0] / 2
    mixed.loc[~first & (mixed["δ"] > 0), "κ"] = mixed.loc[~first, "κ"].iloc[0] * 2
    text = theory.verdict_summary(comparison, spectrum=spectrum, sizes=mixed)
    assert ("lower for LS at K=3, n=20, d=8 (λ_W=0.01, λ_H=0.01, λ_b=0); higher for LS at K=3, n=50, d=8 (λ_W=0.001, "
            "λ_H=1e-06, λ_b=0.01).") in text


def test_classes_table_sweeps_the_number_of_classes():
    # n = 500, d = 2048 with the UFM-training penalties: κ higher for LS with few classes, lower with many
    # (exact, class-mean block by symmetry); with the paper's weight decay the minimizer is zero from K = 100 on
    many = ufm.UFMProblem(100, 500, 2048, 1e-3, 1e-6, 0.0, lambda_b=1e-2)
    wd = ufm.UFMProblem(10, 500, 2048, 5e-4, 5e-4, 0.0, lambda_b=5e-4)
    table = theory.classes_table([many, many.with_delta(0.1), wd], 0.05, counts=(4, 10, 100))
    assert list(table["K"]) == [4, 10, 100] * 2  # the duplicate counted once
    assert list(table["no κ"]) == [""] * 5 + ["zero minimizer"]  # K = 100 with the paper's weight decay
    ratio = table.set_index(["UFM", "K"])["LS / CE"]
    label = "n=500, d=2048, λ_W=0.001, λ_H=1e-06, λ_b=0.01"
    assert ratio[(label, 4)] > 1 > ratio[(label, 100)]
    single = ufm.block_spectrum(ufm.UFMProblem(10, 500, 2048, 1e-3, 1e-6, 0.05, lambda_b=1e-2))
    assert table.set_index(["UFM", "K"]).loc[(label, 10), "κ LS"] == pytest.approx(single.kappa_restricted, rel=1e-12)
    lines = theory.classes_lines(table, 0.05).splitlines()
    assert lines[0].startswith(f"* **{label}**, LS δ = 0.05: κ is higher for LS at K = 4, 10; lower for LS at K = 100")
    assert lines[1].endswith("no κ at K = 100 (zero minimizer).")
    # d < K - 1 (a small user-set UFM) and a minimizer that is zero for LS only: skipped, with the reason
    small = theory.classes_table([ufm.UFMProblem(3, 20, 8, 1e-2, 1e-2, 0.0)], 0.85, counts=(4, 10))
    assert list(small["no κ"]) == ["zero minimizer for LS (s + δ >= 1)", "d < K - 1"]
    assert theory.classes_lines(small, 0.85).endswith(": no κ at any K; no κ at K = 4 (zero minimizer for LS "
                                                      "(s + δ >= 1)); no κ at K = 10 (d < K - 1).")


def test_gd_by_classes_and_its_words():
    table, comps = theory.gd_by_classes((3, 4), (2, 4, 1e-2, 1e-2, 0.0), 0.3, (0, 1), 0.5, 3000, 1e-2, 1e-6,
                                        record_every=5)
    assert list(table["K"]) == [3, 4] and set(comps) == {3, 4}
    for row in table.to_dict("records"):
        comp = comps[row["K"]]
        problem = ufm.UFMProblem(row["K"], 2, 4, 1e-2, 1e-2, 0.0)
        assert row["κ CE"] == pytest.approx(ufm.block_spectrum(problem).kappa_restricted, rel=1e-12)
        assert row["κ LS"] == pytest.approx(ufm.block_spectrum(problem.with_delta(0.3)).kappa_restricted, rel=1e-12)
        assert comp.lrs == pytest.approx(0.5 / comp.spectrum["restricted_max"])  # the step κ sets the rate for
        assert np.all(np.isfinite(comp.iters_tight)) and np.all(comp.iters_tight % 5 == 0)
        assert [row["iterations CE"], row["iterations LS"]] == list(np.median(comp.iters_tight, axis=1))
        first = int((comp.iters_tight[1] < comp.iters_tight[0]).sum())
        assert row["LS first (seeds)"] == f"{first} of 2"
        # the local phase's prediction from the curvature the logits see is close to what GD did
        for side in ("CE", "LS"):
            assert row[f"local phase {side} (measured)"] == pytest.approx(row[f"local phase {side} (predicted)"],
                                                                          rel=0.3)
    lines = theory.gd_classes_lines(table)
    assert lines.count("\n") == 1 and lines.startswith("* K = 3: κ(LS)/κ(CE) = ")
    assert list(table["GD vs κ"]) == ["followed", "followed"]  # κ(LS) > κ(CE) at K = 3 and 4, LS slower
    assert all(table["κ LS / CE"] > 1)
    assert theory.gd_classes_verdict(table).startswith(
        "**With the step matched to each δ's largest curvature, gradient descent followed κ on the small UFM")
    assert "more slowly where its κ was higher (K = 3 and 4)" in theory.gd_classes_verdict(table)
    with pytest.raises(ValueError, match="δ must be in"):
        theory.gd_by_classes((3,), (2, 4, 1e-2, 1e-2, 0.0), 0.0, (0,), 0.5, 10, 1e-2, 1e-6)
    with pytest.raises(ValueError, match="K=3, δ=0.3: .* only the zero minimizer"):
        theory.gd_by_classes((3,), (2, 4, 0.5, 0.5, 0.0), 0.3, (0,), 0.5, 10, 1e-2, 1e-6)


@pytest.mark.parametrize("ratio, iters, outcome", [
    (2.0, [[10, 20], [30, 40]], "followed"),
    (0.5, [[30, 40], [10, 20]], "followed"),
    (0.5, [[10, 20], [30, 40]], "contradicted"),
    (2.0, [[10, 50], [30, 40]], "inconclusive (the seeds disagree)"),
    (2.0, [[10, 40], [30, 40]], "inconclusive (a tie)"),
    (2.0, [[10, np.nan], [30, 40]], "inconclusive (a run did not arrive)"),
    (1.0, [[10, 20], [30, 40]], "inconclusive (equal κ)"),
])
def test_gd_against_kappa(ratio, iters, outcome):
    assert theory._gd_against_kappa(ratio, np.array(iters, dtype=float)) == outcome


def test_gd_classes_verdict_words():
    rows = [{"UFM": "u", "K": 4, "κ LS / CE": 7.0, "GD vs κ": "followed"},
            {"UFM": "u", "K": 50, "κ LS / CE": 0.8, "GD vs κ": "followed"}]
    verdict = theory.gd_classes_verdict(pd.DataFrame(rows))
    assert verdict == ("**With the step matched to each δ's largest curvature, gradient descent followed κ on the "
                       "small UFM (u) at K = 4 and 50, on every seed**: LS converged faster where its κ (full Hessian) "
                       "was lower (K = 50) and more slowly where its κ was higher (K = 4).")
    rows[1]["GD vs κ"] = "contradicted"
    assert "did not follow κ" in theory.gd_classes_verdict(pd.DataFrame(rows)) and "K = 50 every seed" in \
        theory.gd_classes_verdict(pd.DataFrame(rows))
    rows[1]["GD vs κ"] = "inconclusive (a tie)"
    assert theory.gd_classes_verdict(pd.DataFrame(rows)).startswith(
        "**With the step matched to each δ's largest curvature: inconclusive on the small UFM (u)")


def test_the_theory_page_parameters_are_the_library_settings():
    """book/theory.ipynb writes THEORY_PAGE out in its parameter cell; claims.theory_claims runs THEORY_PAGE: one
    experiment on both pages. Changing one without the other fails here."""
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "book" / "theory.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    params: dict = {}
    exec("".join(cell["source"]), {}, params)
    for key, value in theory.THEORY_PAGE.items():
        got = params[key]
        assert (list(got) if isinstance(value, tuple) else got) == (list(value) if isinstance(value, tuple)
                                                                    else value), key


def test_theory_claims_refuse_an_unknown_setting():
    from lsnc.book import claims

    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['stepz'\]"):
        claims.theory_claims(stepz=10)


def test_ls_against_ce_words():
    assert ufm.ls_against_ce(2.0, [1.0, 1.5]) == "lower"
    assert ufm.ls_against_ce(2.0, [2.5, 3.0]) == "higher"
    assert ufm.ls_against_ce(2.0, [1.0, 3.0]) == "not uniformly lower"
    assert ufm.ls_against_ce(2.0, [2.0]) == "not uniformly lower"  # a tie is not lower


def test_the_common_step_rate_names_the_curvature_that_sets_it():
    """|1 − η λ_min| is the rate only while η λ_max <= 2 − η λ_min: the sentence says so, or where it fails."""
    from lsnc import ufm
    from lsnc.book.theory import THEORY_PAGE, _min_sets_rate

    p = THEORY_PAGE
    problem = ufm.UFMProblem(p["num_classes"], p["n_per_class"], p["dim"], p["lambda_w"], p["lambda_h"], 0.0)
    assert _min_sets_rate(ufm.compare_convergence(problem, p["deltas"], (0,), lr=p["lr"], steps=20)).startswith(
        "(as η λ_max <= ")
    large = ufm.compare_convergence(problem, p["deltas"], (0,), lr=12.0, steps=20)
    top = large.lrs * large.spectrum["restricted_max"]
    assert (top > 2 - large.lrs * large.spectrum["restricted_min"]).any()
    assert "the largest curvature sets it" in _min_sets_rate(large)


def test_the_other_candidates_and_the_endpoint_errors(problem, comparison):
    """The verdict's sentence on candidates (b) and (c) follows their numbers δ by δ; the endpoint error is the
    worst single ||w_k|| and ||h_i||, not their means."""
    sp = {"delta": np.array([0.0, 0.1, 0.5]), "kappa_softmax": np.array([4.0, 3.0, 2.0]),
          "kappa_features_block": np.array([5.0, 9.0, 4.0])}
    assert theory.other_candidates_sentence(sp) == (
        " Of the other candidates, (b) the logit-space softmax Hessian is lower for LS at every δ; (c) the H-block at "
        "fixed W is lower for LS only at δ = 0.5.")
    sp["kappa_features_block"] = np.array([5.0, 5.0, 9.0])
    assert "(c) the H-block at fixed W is lower for LS at no δ" in theory.other_candidates_sentence(sp)
    assert theory.other_candidates_sentence({"delta": np.array([0.0, 0.1])}) == ""
    worst, of_means = 0.0, 0.0
    for (delta, _seed), traj in comparison.trajectories.items():
        sol = problem.with_delta(delta).solution()
        worst = max(worst, float((traj.W.norm(dim=1) - sol.w_norm).abs().max() / sol.w_norm),
                    float((traj.H.norm(dim=1) - sol.h_norm).abs().max() / sol.h_norm),
                    abs(traj.objective[-1] - sol.objective) / sol.objective)
        of_means = max(of_means, abs(traj.w_norm[-1] - sol.w_norm) / sol.w_norm,
                       abs(traj.h_norm[-1] - sol.h_norm) / sol.h_norm)
    assert theory.endpoint_numbers(problem, comparison)["max_rel_err"] == pytest.approx(worst, rel=1e-9)
    assert worst >= of_means
