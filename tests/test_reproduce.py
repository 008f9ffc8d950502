import pytest

from lsnc.data import DataError
from lsnc.orchestrate.reproduce import reproduce, reproduction_runs


def test_smoke_reproduction_trains_then_skips_everything(tmp_path):
    lines: list[str] = []
    assert reproduce("smoke", tmp_path, progress=False, log=lines.append) == 0
    assert "trained: 3" in lines
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("metrics.csv")}
    assert len(before) == 3
    lines.clear()
    assert reproduce("smoke", tmp_path, progress=False, log=lines.append) == 0
    assert "skipped (done): 3" in lines and "trained: 0" in lines
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("metrics.csv")} == before  # nothing rewritten


def test_download_fetches_each_dataset_once_before_any_run(tmp_path, monkeypatch):
    """--download: every dataset is fetched here, once, before anything trains (no two jobs fetch into one
    folder); a failed download stops the call with no run folder written; a dry run fetches nothing."""
    import lsnc.data

    # the smoke preset's synthetic data stand in for a dataset read from files (generated ones get no data root)
    monkeypatch.setattr(lsnc.data, "GENERATED_SOURCES", frozenset())
    fetched = []
    monkeypatch.setattr(lsnc.data, "fetch_dataset", lambda name, root=None: fetched.append((name, root)))
    assert reproduce("smoke", tmp_path, download=True, dry_run=True, progress=False, log=lambda _: None) == 0
    assert fetched == []
    assert reproduce("smoke", tmp_path, data_root=str(tmp_path / "data"), download=True, progress=False,
                     log=lambda _: None) == 0
    assert fetched == [("synthetic", str(tmp_path / "data"))]  # three runs, one dataset: one fetch

    def offline(name, root=None):
        raise DataError("downloading X failed; check network access")
    monkeypatch.setattr(lsnc.data, "fetch_dataset", offline)
    with pytest.raises(DataError, match="check network access"):
        reproduce("smoke", tmp_path / "other", download=True, progress=False, log=lambda _: None)
    assert not (tmp_path / "other").exists()


def test_cpu_reproduction_matrix():
    keys = [(c.group or c.dataset, c.name) for c in (s.config() for s in reproduction_runs("cpu"))]
    assert len(keys) == len(set(keys))  # no two runs share a folder
    groups = {g: [n for gg, n in keys if gg == g] for g, _ in keys}
    assert set(groups) == {"mnist1d", "cifar10-jpeg", "mnist1d-800ep", "cifar10-jpeg-150ep", "cifar10-jpeg-w32",
                           "cifar10-jpeg-1000pc", "mnist1d-w1024", "mnist1d-400pc", "mnist1d-1600pc",
                           "mnist1d-1600pc-800ep", "cifar10-jpeg-resnet50",
                           "cifar10-jpeg-resnet50-150ep"}
    # the scale axes: CIFAR at 150 epochs (seeds 0-6) and on 1000 images per class (seeds 0-5), at width 32 (seeds 0-4);
    # MNIST-1D 4x wider, and 400 against 1600 training samples per class of a larger generated set (seeds 0-9;
    # the 1600 with the paper's δ sweep on seeds 0-9, and over the paper's 800 epochs)
    def ce_and_ls(model, seeds):
        return sorted(f"{loss}-{model}-s{s}" for loss in ("ce", "ls0.05") for s in seeds)
    assert sorted(groups["cifar10-jpeg-w32"]) == ce_and_ls("resnet18w32", range(8))
    assert sorted(groups["cifar10-jpeg-1000pc"]) == ce_and_ls("resnet18w16", range(6))
    assert sorted(groups["cifar10-jpeg-resnet50"]) == ce_and_ls("resnet50w16", range(3))
    assert sorted(groups["cifar10-jpeg-resnet50-150ep"]) == ce_and_ls("resnet50w16", range(3))
    assert sorted(groups["cifar10-jpeg-150ep"]) == ce_and_ls("resnet18w16", range(7))
    assert sorted(groups["mnist1d-w1024"]) == ce_and_ls("mlpw1024", range(10))
    assert sorted(groups["mnist1d-400pc"]) == ce_and_ls("mlpw256", range(10))
    sweep = sorted(f"ls{d:g}-mlpw256-s{s}" for d in (0.1, 0.2, 0.5, 0.8, 0.9) for s in range(10))
    assert sorted(groups["mnist1d-1600pc"]) == sorted(ce_and_ls("mlpw256", range(10)) + sweep)
    assert sorted(groups["mnist1d-1600pc-800ep"]) == ce_and_ls("mlpw256", range(10))
    assert sum(n.startswith("ce-resnet18w16") for n in groups["cifar10-jpeg"]) == 9  # CE seeds 0-8 on CIFAR
    assert sorted(n for n in groups["cifar10-jpeg"] if n.startswith("ls0.5-")) == [  # its δ sweep
        f"ls0.5-resnet18w16-s{s}" for s in range(9)]
    assert sorted(groups["cifar10-jpeg-150ep"]) == ce_and_ls("resnet18w16", range(7))
    # the 800-epoch MNIST-1D group repeats the 150-epoch one's runs, bf16 twins aside
    assert sorted(groups["mnist1d-800ep"]) == sorted(n for n in groups["mnist1d"] if "bf16" not in n)
    assert sum(n.startswith("ce-mlpw256") for n in groups["mnist1d"]) == 10  # CE seeds 0-9
    # the δ sweep at 150 and 800 epochs: every δ on seeds 0-9
    assert sorted(n for n in groups["mnist1d"] if n.startswith("ls0.5-")) == [f"ls0.5-mlpw256-s{s}" for s in range(10)]
    assert sum("-ufm-" in n for _, n in keys) == 9
    assert sum("bf16" in n for _, n in keys) == 6


def test_reproduce_trains_fusable_runs_on_streams_from_the_cli(tmp_path):
    """`lsnc reproduce --fuse 2 --together streams`: the smoke runs that differ only in δ train together on
    streams, each an ordinary run that records how it trained."""
    import json

    from lsnc.cli import main
    assert main(["reproduce", "--preset", "smoke", "--runs-dir", str(tmp_path), "--quiet", "--fuse", "2",
                 "--together", "streams"]) == 0
    configs = [json.loads(p.read_text()) for p in tmp_path.rglob("config.json")]
    assert len(configs) == 3 and {c["together"] for c in configs} == {"streams"}
    assert main(["reproduce", "--preset", "smoke", "--runs-dir", str(tmp_path), "--together", "vmap"]) == 2


def test_only_matching_no_run_is_an_error_that_names_the_keys(tmp_path, capsys):
    from lsnc.cli import main
    assert main(["reproduce", "--preset", "smoke", "--runs-dir", str(tmp_path), "--only", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert "--only 'no-such-run' matches none" in err and "synthetic/" in err and "--dry-run" in err
    assert not any(tmp_path.iterdir())
