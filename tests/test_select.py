"""Dataset names a reader types select the right run groups, and a figure notebook run with papermill draws
the family asked for or fails with one line naming the datasets that exist (the design card's usage)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lsnc import book
from lsnc.paths import REPO_ROOT, default_runs_dir

RUNS = default_runs_dir()
needs_runs = pytest.mark.skipif(not (RUNS / "cifar10-jpeg").is_dir() or not (RUNS / "mnist1d").is_dir(),
                                reason="the committed runs are not present")


@needs_runs
@pytest.mark.parametrize("name, group", [("cifar10", "cifar10-jpeg"), ("CIFAR-10", "cifar10-jpeg"),
                                         ("cifar10-jpeg", "cifar10-jpeg"), ("CIFAR-10 (JPEG copy)", "cifar10-jpeg"),
                                         ("mnist1d", "mnist1d"), ("MNIST-1D", "mnist1d"), ("mnist-1d", "mnist1d")])
def test_names_a_reader_types(name, group):
    """The name selects its family's groups (the plain group first, then e.g. longer-schedule groups of the same
    data) and nothing of the other family."""
    other = "mnist1d" if group.startswith("cifar10") else "cifar10"
    groups = book.resolve_datasets(RUNS, name)
    assert groups[0] == group and all(g.startswith(group) for g in groups)
    assert not any(g.startswith(other) for g in groups)
    sel = book.select(name)
    assert sel and {r.dataset for r in sel.runs} == set(groups)


@needs_runs
def test_unknown_dataset_is_one_line_naming_what_exists():
    with pytest.raises(book.UnknownDataset) as exc:
        book.select("nope")
    msg = str(exc.value)
    assert "\n" not in msg and "'nope'" in msg and "cifar10" in msg and "mnist1d" in msg
    assert "runs/cifar10-jpeg" in msg and str(REPO_ROOT) not in msg  # repository-relative


def test_family_spans_copies_and_scales(tmp_path):
    """Two groups of one dataset (e.g. a CPU-scale and a GPU-scale CIFAR-10 copy) are both selected by the
    family name, each by its own folder name, and by the copy's dataset key."""
    import shutil
    src = RUNS / "cifar10-jpeg" / "ce-resnet18w16-s0"
    if not src.is_dir():
        pytest.skip("the committed runs are not present")
    for group in ("cifar10-jpeg", "cifar10-jpeg-full-resnet18-gpu"):
        shutil.copytree(src, tmp_path / group / src.name, ignore=shutil.ignore_patterns("snapshots.npz"))
    both = ["cifar10-jpeg", "cifar10-jpeg-full-resnet18-gpu"]
    assert book.resolve_datasets(tmp_path, "cifar10") == both
    assert book.resolve_datasets(tmp_path, "cifar10-jpeg") == both
    assert book.resolve_datasets(tmp_path, "cifar10-jpeg-full-resnet18-gpu") == both[1:]


def _papermill(args, cwd):
    return subprocess.run([sys.executable, "-m", "papermill", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@needs_runs
@pytest.mark.parametrize("cwd", ["repo", "elsewhere"])
def test_papermill_fig2_cifar10(tmp_path, cwd):
    import nbformat
    out = tmp_path / "out.ipynb"
    nb_path = "book/fig2.ipynb" if cwd == "repo" else str(REPO_ROOT / "book" / "fig2.ipynb")
    res = _papermill([nb_path, str(out), "-p", "dataset", "cifar10"], REPO_ROOT if cwd == "repo" else tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    outputs = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "CIFAR-10 (JPEG copy)" in text and "MNIST-1D" not in text
    assert str(REPO_ROOT) not in json.dumps(outputs)  # no machine path in what the page shows


@needs_runs
def test_papermill_unknown_dataset_fails_with_one_line(tmp_path):
    res = _papermill(["book/fig2.ipynb", str(tmp_path / "out.ipynb"), "-p", "dataset", "nope"], REPO_ROOT)
    assert res.returncode != 0
    last = [ln for ln in res.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("UnknownDataset: Unknown dataset 'nope'") and "cifar10" in last and "mnist1d" in last


def test_one_rule_matches_delta_values_everywhere():
    import numpy as np
    from lsnc.vocab import in_deltas, is_delta
    assert is_delta(0.1 + 0.2, 0.3) and not is_delta(0.05, 0.0500001) and not is_delta(0.0, 1e-6)
    assert is_delta(np.array([0.0, 0.05, 0.1]), 0.05).tolist() == [False, True, False]
    assert in_deltas(0.05, (0.0, 0.05)) and not in_deltas(0.2, (0.0, 0.05)) and not in_deltas(0.2, ())
