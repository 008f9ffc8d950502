"""Faults the book's pages meet (issue #15, presentation side): a damaged run is left out and every page that
would have drawn it says so; captions and claims count only the runs (and per claim the seeds) they use; a
wrong page parameter fails with one line naming it and what it accepts, never a silent fallback."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from lsnc import book
from lsnc.book import claims, measures
from lsnc.paths import REPO_ROOT, default_runs_dir

MNIST = default_runs_dir() / "mnist1d"
needs_runs = pytest.mark.skipif(not (MNIST / "ls0.05-mlpw256-s3").is_dir(), reason="the committed runs are not present")
DAMAGED = "ls0.05-mlpw256-s3"


def _copy_pairs(root, seeds=range(5)):
    """The committed MNIST-1D CE / LS (δ 0.05) runs of ``seeds`` under ``root``/mnist1d (no snapshots)."""
    for seed in seeds:
        for name in (f"ce-mlpw256-s{seed}", f"ls0.05-mlpw256-s{seed}"):
            shutil.copytree(MNIST / name, root / "mnist1d" / name, ignore=shutil.ignore_patterns("snapshots.npz"))
    return root


def _truncate(path):
    text = path.read_text()
    path.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # the last line cut in half


@pytest.fixture(scope="module")
def damaged_dir(tmp_path_factory):
    root = _copy_pairs(tmp_path_factory.mktemp("runs"))
    _truncate(root / "mnist1d" / DAMAGED / "metrics.csv")
    return root


@needs_runs
def test_damaged_run_is_named_by_selection_and_caption(damaged_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the page names it; no warning text on the page
        sel = book.select("mnist1d", damaged_dir)
    assert len(sel.runs) == 9 and DAMAGED not in {r.name for r in sel.runs}
    [(folder, why)] = sel.left_out
    assert folder.endswith(f"mnist1d/{DAMAGED}") and why.startswith("metrics.csv: ") and "truncated" in why
    text = book.caption(sel, "test")
    left = [ln for ln in text.splitlines() if "left out" in ln.lower()]
    assert len(left) == 1 and f"mnist1d/{DAMAGED} (metrics.csv" in left[0]
    # the counts and seed lists are those of the runs drawn
    assert "9 runs" in text and "10 runs" not in text
    assert "seeds {0–4} (δ 0), {0, 1, 2, 4} (δ 0.05)" in text
    # a page that would not have drawn it does not name it
    ce_only = book.select("mnist1d", damaged_dir, deltas=[0.0])
    assert ce_only.left_out == [] and "left out" not in book.caption(ce_only).lower()
    assert book.select("mnist1d", damaged_dir, deltas=[0.05]).left_out_text().startswith("left out (a damaged run)")


@needs_runs
def test_deleted_metrics_and_invalid_json_are_left_out(tmp_path):
    root = _copy_pairs(tmp_path, seeds=range(3))
    (root / "mnist1d" / "ce-mlpw256-s1" / "metrics.csv").unlink()
    (root / "mnist1d" / "ls0.05-mlpw256-s2" / "config.json").write_text('{"delta": 0.05, "se')
    sel = book.select(None, root, deltas=[0.0, 0.05])
    assert len(sel.runs) == 4
    why = dict(sel.left_out)
    assert len(why) == 2
    assert any(k.endswith("ce-mlpw256-s1") and v.startswith("metrics.csv: no rows") for k, v in why.items())
    assert any(k.endswith("ls0.05-mlpw256-s2") and v.startswith("config.json: JSONDecodeError") for k, v in why.items())
    text = book.caption(sel)
    assert "4 runs" in text and "6 runs" not in text and "left out (2 damaged runs)" in text.lower()
    assert "seeds {0, 2} (δ 0), {0, 1} (δ 0.05)" in text


@needs_runs
def test_claims_count_the_seeds_each_claim_uses(damaged_dir):
    table = claims.claims_table(damaged_dir, "mnist1d")  # LS seed 3 damaged: 4 LS seeds everywhere
    c3 = table[table["test"].str.startswith("final NC1")].iloc[0]
    assert "(4 seeds)" in c3["ls"] and "(5 seeds)" in c3["ce"] and c3["n_seeds"] == 4
    assert set(c3["ls_values"]) == {0, 1, 2, 4}
    # a measurement missing at the last evaluated epoch of one seed: that seed does not count for that claim
    runs = book.select("mnist1d", damaged_dir).runs
    ls1 = next(r for r in runs if r.name == "ls0.05-mlpw256-s1")
    last = ls1.metrics["epoch"].idxmax()
    ls1.metrics.loc[last, "test_ece20_ts_holdout"] = np.nan
    ls1.metrics.loc[last, "train_mean_class_mean_norm"] = np.nan
    assert math.isnan(measures.final_value(ls1, "train_mean_class_mean_norm"))  # not an earlier epoch's value
    table = claims.evaluate_claims(runs)
    norm = table[table["test"].str.contains("class-mean norm")].iloc[0]
    assert "(3 seeds)" in norm["ls"] and norm["n_seeds"] == 3 and "3 seed pairs" in norm["note"]
    ts = table[table["test"].str.contains("held-out split")].iloc[0]
    assert "(3 seeds)" in ts["ls"] and ts["n_seeds"] == 3
    untouched = table[table["test"].str.contains("classifier-row norm")].iloc[0]
    assert "(4 seeds)" in untouched["ls"] and untouched["n_seeds"] == 4


@pytest.mark.parametrize("name, value, accepts", [
    ("deltas", "abc", "a list of label-smoothing values"), ("deltas", [0.05, 1.5], "0 ≤ δ < 1"),
    ("bins", 17, "one of 15, 20, 25"), ("bins", "20", "one of 15, 20, 25"), ("seed", -1, "an integer ≥ 0"),
    ("seed", 1.5, "an integer ≥ 0"), ("first_epochs", -5, "an integer ≥ 1"), ("first_epochs", "10", "integer ≥ 1"),
    ("eps", 0, "a positive number"), ("dataset", 5, "a dataset name"), ("runs_dir", "/no/such/folder", "existing folder")])
def test_wrong_parameter_is_one_line_naming_it(name, value, accepts):
    with pytest.raises(book.ParameterError) as exc:
        book.check_params(**{name: value})
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"parameter {name} = {value!r}") and accepts in msg


def test_parameters_in_usable_form():
    assert book.check_params(deltas="0, 0.05") == [0.0, 0.05]
    assert book.check_params(deltas="[0, 0.05]", bins=15, seed=None) == ([0.0, 0.05], 15, None)
    assert book.check_params(deltas=0.1, first_epochs=None, eps=1e-6) == ([0.1], None, 1e-6)
    assert book.check_params(deltas=None) is None


@needs_runs
def test_seed_or_deltas_without_runs_fail_instead_of_falling_back(damaged_dir):
    with pytest.raises(book.ParameterError, match=r"^parameter seed = 99: no finished run has this seed \(seeds with "
                                                  r"runs: 0–4\)"):
        book.start("mnist1d", damaged_dir, deltas=[0.0, 0.05], seed=99)
    with pytest.raises(book.ParameterError, match=r"^parameter deltas = \[0\.3\]"):
        book.start("mnist1d", damaged_dir, deltas=[0.3])
    sel = book.start("mnist1d", damaged_dir, deltas=[0.0, 0.05], seed=3)  # LS seed 3 is damaged: CE only
    assert [r.name for r in sel.runs] == ["ce-mlpw256-s3"] and DAMAGED in sel.left_out_text()
    assert [r.name for r in sel.pick("mnist1d", [0.0, 0.05], 3)] == ["ce-mlpw256-s3"]  # no other seed's LS run
    part = book.start("mnist1d", damaged_dir, deltas=[0.0, 0.3])
    assert "No finished runs with δ 0.3" in part.message


def _papermill(*args):
    return subprocess.run([sys.executable, "-m", "papermill", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


@needs_runs
@pytest.mark.parametrize("page, name, value, start", [
    ("fig2", "deltas", "abc", "parameter deltas = 'abc': not a list of numbers"),
    ("fig7", "bins", "17", "parameter bins = 17: no ECE with this many bins"),
    ("fig1", "seed", "99", "parameter seed = 99: no finished run has this seed"),
    ("fig4", "first_epochs", "-5", "parameter first_epochs = -5 — first_epochs takes")])
def test_papermill_wrong_parameter_fails_with_one_line(tmp_path, damaged_dir, page, name, value, start):
    res = _papermill(f"book/{page}.ipynb", tmp_path / "out.ipynb", "-p", "runs_dir", damaged_dir, "-p", name, value)
    assert res.returncode != 0
    last = [ln for ln in res.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith(f"ParameterError: {start}") and PARAMETER_WORDS[name] in last


PARAMETER_WORDS = {"deltas": "deltas takes a list", "bins": "bins takes one of 15, 20, 25", "seed": "seed takes a seed",
                   "first_epochs": "first_epochs takes a number of epochs"}


@needs_runs
def test_papermill_page_names_the_damaged_run(tmp_path, damaged_dir):
    import nbformat
    out = tmp_path / "out.ipynb"
    res = _papermill("book/fig2.ipynb", out, "-p", "runs_dir", damaged_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    outputs = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert f"mnist1d/{DAMAGED} (metrics.csv" in text  # the note at the top and the caption
    assert "9 runs" in text and "10 runs" not in text
    assert not any(o.get("name") == "stderr" and "RunDamaged" in o.get("text", "") for o in outputs)


def test_every_book_notebook_is_valid_nbformat_with_cell_ids():
    """A cell added by hand without an id is a warning today and a hard error in later nbformat versions."""
    from pathlib import Path

    import nbformat

    for path in sorted((Path(__file__).parents[1] / "book").glob("*.ipynb")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
        assert all("id" in cell for cell in nb.cells), path.name
        if path.stem != "explorer":   # the explorer shows its code: a reader is meant to run and change it
            hidden = {"hide-input", "remove-input", "hide-cell", "remove-cell"}
            shown = [c.id for c in nb.cells if c.cell_type == "code" and not hidden & set(c.metadata.get("tags", []))]
            assert not shown, f"{path.name}: code cells shown (a page shows results; its code hides, hide-input)"
