"""lsnc.book.theory: the theory page's numbers (closed form, spectrum, GD end points) and its verdict."""

from __future__ import annotations

import numpy as np
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
    deltas = theory.kappa_deltas(problem, 4)
    assert deltas[0] == 0 and deltas[-1] == pytest.approx(0.9 * (1 - problem.solution().s))
    spectrum = ufm.condition_numbers_vs_delta(problem, deltas)
    n = theory.spectrum_numbers(spectrum)
    assert n["sym_dim"] == int(spectrum["symmetry_dim"][0]) and n["kappa_delta_max"] == pytest.approx(deltas[-1])
    for key in ("kappa_restricted", "restricted_min", "restricted_max", "kappa_softmax"):
        assert n[f"{key}_ce"] == spectrum[key][0]
        assert n[f"{key}_min"] <= n[f"{key}_max"]
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
