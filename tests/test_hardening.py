"""Misuse and faults: every case is refused with one line and exit 2, or handled; nothing is lost or mixed."""

import os
import stat
import warnings

import pytest
import torch

from lsnc.cli import main
from lsnc.orchestrate.inline import train_configs
from lsnc.presets import preset_config
from lsnc.runs import RunDamaged, RunError, damaged_runs, find_runs, load_run
from lsnc.runs.lifecycle import claim_run
from lsnc.training import train

SMOKE = ["train", "--preset", "smoke", "--quiet", "--threads", "1"]


def _cli(runs, *args):
    return main([*SMOKE, "--runs-dir", str(runs), *args])


def _one_run(tmp_path, **kw):
    return train(preset_config("smoke", threads=1, **kw), tmp_path / "runs", progress=False)


# --------------------------------------------------------------------------- paths stay inside runs/

@pytest.mark.parametrize("args", [["--group", ".."], ["--group", "/tmp/elsewhere"], ["--name", "../x"],
                                  ["--name", ".hidden"], ["--group", "a/b"]])
def test_group_and_name_cannot_leave_the_runs_folder(tmp_path, capsys, args):
    assert _cli(tmp_path / "runs", *args) == 2
    assert "plain folder name" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


def test_overwrite_never_deletes_a_folder_lsnc_did_not_write(tmp_path, capsys):
    keep = tmp_path / "runs" / "synthetic" / "sub" / "keep.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("mine")
    assert _cli(tmp_path / "runs", "--name", "sub", "--overwrite") == 2
    assert "not a run folder" in capsys.readouterr().err
    assert keep.read_text() == "mine"


# --------------------------------------------------------------------------- one writer per run

def test_a_second_writer_of_the_same_run_is_refused(tmp_path, capsys):
    folder = tmp_path / "runs" / "synthetic" / "ce-mlpw32-s0"
    with claim_run(folder):  # this process is "the first writer", alive
        assert _cli(tmp_path / "runs", "--lr", "0.1") == 2
    assert "being trained by" in capsys.readouterr().err
    assert not folder.exists()
    assert _cli(tmp_path / "runs") == 0  # the claim is released: now it trains
    assert not list(folder.parent.glob(".*.lock"))


# --------------------------------------------------------------------------- damaged and missing files

def test_damaged_run_files_are_named_and_skipped(tmp_path):
    good, bad = _one_run(tmp_path, delta=0.0), _one_run(tmp_path, delta=0.05)
    text = (bad / "metrics.csv").read_text()
    (bad / "metrics.csv").write_text(text[: len(text) - 40])  # truncated mid-row
    with pytest.raises(RunError, match="metrics.csv is damaged"):
        load_run(bad)
    with pytest.warns(RunDamaged, match="metrics.csv"):
        runs = find_runs(tmp_path / "runs")
    assert [r.path for r in runs] == [good]
    (good / "status.json").write_text("{not json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunDamaged)
        assert find_runs(tmp_path / "runs") == []
    assert {p.name for p, _ in damaged_runs(tmp_path / "runs")} == {good.name, bad.name}


def test_missing_metrics_or_non_finite_core_metrics_make_a_finished_run_damaged(tmp_path):
    run = _one_run(tmp_path)
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    last = lines[-1].split(",")
    last[header.index("train_nc1_within_between")] = "nan"
    (run / "metrics.csv").write_text("\n".join(lines[:-1] + [",".join(last)]) + "\n")
    with pytest.raises(RunError, match="train_nc1_within_between is nan at epoch 3"):
        load_run(run)
    (run / "metrics.csv").unlink()
    with pytest.raises(RunError, match="no rows"):
        load_run(run)


def test_resume_with_a_damaged_checkpoint_or_config_names_the_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert _cli(runs, "--epochs", "3") == 0
    folder = runs / "synthetic" / "ce-mlpw32-s0"
    (folder / "status.json").write_text('{"status": "running", "epoch": 2, "error": null}')
    (folder / "checkpoint.pt").write_bytes(b"truncated")
    assert _cli(runs, "--resume") == 2
    assert "checkpoint.pt is damaged" in capsys.readouterr().err
    (folder / "config.json").write_text("{")
    assert _cli(runs, "--resume") == 2
    assert "config.json is damaged" in capsys.readouterr().err
    assert (folder / "metrics.csv").exists()  # nothing was deleted


def test_reproduce_reports_a_damaged_run_and_goes_on(tmp_path):
    cfgs = [preset_config("smoke", delta=d, threads=1).resolved() for d in (0.0, 0.05)]
    first = train(cfgs[0], tmp_path, progress=False)
    (first / "status.json").write_text("{")
    outcome = train_configs(cfgs, tmp_path, progress=False, log=lambda *_: None)
    assert len(outcome["failed"]) == 1 and "status.json is damaged" in outcome["failed"][0]
    assert outcome["trained"] == ["synthetic/ls0.05-mlpw32-s0"]


# --------------------------------------------------------------------------- honest resume

def test_a_started_run_without_checkpoint_is_reported_as_restarted(tmp_path):
    cfg = preset_config("smoke", threads=1).resolved()
    folder = train(cfg, tmp_path, progress=False)
    (folder / "checkpoint.pt").unlink()
    (folder / "status.json").write_text('{"status": "running", "epoch": 1, "error": null}')
    lines = []
    outcome = train_configs([cfg], tmp_path, progress=False, log=lines.append)
    assert outcome["restarted (no checkpoint)"] == ["synthetic/ce-mlpw32-s0"] and not outcome["resumed"]
    assert any("no checkpoint" in line for line in lines)


def test_exact_resume_requires_the_same_thread_count(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert _cli(runs, "--epochs", "3") == 0
    folder = runs / "synthetic" / "ce-mlpw32-s0"
    (folder / "status.json").write_text('{"status": "running", "epoch": 1, "error": null}')
    before = torch.get_num_threads()
    try:
        assert main(["train", "--preset", "smoke", "--quiet", "--threads", "2", "--runs-dir", str(runs), "--epochs",
                     "3", "--resume"]) == 2
    finally:
        torch.set_num_threads(before)
    assert "--threads 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input, refused up front

@pytest.mark.parametrize("args,words", [
    (["--eval-batch-size", "0"], "--eval-batch-size"), (["--threads", "-1"], "--threads"),
    (["--device", "foo"], "--device"), (["--lr", "nan"], "--lr must be a finite"),
    (["--momentum", "nan"], "--momentum"), (["--weight-decay", "inf"], "--weight-decay"),
    (["--ufm", "--weight-decay", "0.1"], "--weight-decay 0"), (["--train-per-class", "100000000"], "200 MB"),
    (["--time-budget-s", "0"], "--time-budget-s"), (["--stop-epoch", "7"], "not an evaluated epoch"),
    (["--seed", "-1"], "--seed must be an integer in [0, 2**32)"), (["--seed", "0", str(2**32)], "--seed"),
    (["--tf32", "--device", "cpu"], "--tf32 needs a CUDA device"),
    (["--stop-epoch", "0"], "--stop-epoch must be at least 1"), (["--resume", "--overwrite"], "give one of them"),
    (["--dataset", "mnist1d", "--model", "resnet18"], "use --model mlp"),
    (["--data-root", "/nowhere"], "generated on the spot"), (["--download"], "generated on the spot"),
    pytest.param(["--device", "mps"], "no MPS", marks=pytest.mark.skipif(torch.backends.mps.is_available(),
                                                                        reason="this machine has MPS")),
    pytest.param(["--device", "cuda:99"], "numbered from 0", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs CUDA (without it, any cuda device is refused as absent)")),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, capsys, args, words):
    assert _cli(tmp_path / "runs", *args) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("fuse", ["0", "-3", "two"])
def test_reproduce_refuses_a_fuse_below_one(tmp_path, capsys, fuse):
    assert main(["reproduce", "--preset", "smoke", "--runs-dir", str(tmp_path / "runs"), "--fuse", fuse,
                 "--dry-run"]) == 2
    assert "--fuse" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_ufm_replaces_the_default_weight_decay_with_or_without_a_preset():
    from lsnc.cli import build_parser, configs_from_args
    for args in (["--preset", "cpu-mnist1d"], ["--dataset", "mnist1d", "--model", "mlp"]):
        (cfg,) = configs_from_args(build_parser().parse_args(["train", *args, "--ufm"]))
        assert cfg.weight_decay == 0.0 and cfg.ufm
        (cfg,) = configs_from_args(build_parser().parse_args(["train", *args]))
        assert cfg.weight_decay > 0


def test_a_reproduction_gives_its_data_root_only_to_runs_that_read_files():
    from lsnc.orchestrate.matrix import RunSpec
    assert RunSpec("cpu-mnist1d", {"seed": 0}).config("/data", download=True).data_root is None
    cfg = RunSpec("paper-cifar10", {"seed": 0}).config("/data", download=True)
    assert cfg.data_root == "/data" and cfg.download


def test_weights_that_diverge_in_an_epoch_s_last_steps_fail_the_run_with_the_advice(tmp_path, monkeypatch, capsys):
    """The epoch's loss was finite, but its last update left infinities in the weights: the evaluation's features
    are not finite. The run fails as a divergence (exit 1, the advice, status failed), not with a traceback."""
    import json

    from lsnc.training import loop
    real = loop.train_epoch

    def poisoned(engine, epoch):
        out = real(engine, epoch)
        if epoch == 2:
            with torch.no_grad():
                next(engine.member(0).parameters()).fill_(float("inf"))
        return out
    monkeypatch.setattr(loop, "train_epoch", poisoned)
    assert _cli(tmp_path / "runs", "--name", "late", "--eval-epochs", "1", "2") == 1
    err = capsys.readouterr().err
    assert "lower --lr" in err and "non-finite" in err and "after epoch 2" in err and "Traceback" not in err
    status = json.loads((tmp_path / "runs" / "synthetic" / "late" / "status.json").read_text())
    assert status["status"] == "failed" and "NonFiniteLoss" in status["error"]


def test_snapshots_in_batches_are_the_snapshot_in_one(tmp_path):
    from lsnc.models import build_model
    from lsnc.snapshots import take_snapshot
    torch.manual_seed(0)
    net = build_model("resnet18", 3, (3, 8, 8), width=4)
    x, y = torch.randn(30, 3, 8, 8), torch.arange(30) % 3
    whole, parts = take_snapshot(net, x, y, 3), take_snapshot(net, x, y, 3, batch_size=7)
    for key in whole:
        assert whole[key].shape == parts[key].shape
        assert abs(whole[key] - parts[key]).max() <= 1e-4 * (1 + abs(whole[key]).max()), key


def test_an_unusable_runs_folder_is_refused(tmp_path, capsys):
    runs = tmp_path / "a-file"
    runs.write_text("not a folder")  # unwritable even for root
    assert _cli(runs) == 2
    err = capsys.readouterr().err
    assert "writable --runs-dir" in err and "Traceback" not in err


def test_run_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    folder = _one_run(tmp_path)
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.json", "metrics.csv", "status.json", "checkpoint.pt"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o666 & ~mask


def test_the_umask_is_read_without_being_changed_while_threads_write():
    """Checkpoints are written by a thread beside the loop's writes: reading the umask must not set it (os.umask
    can only be read by setting it, process-wide, and two threads doing so read 0 or leave it 0)."""
    import sys
    import threading
    from lsnc.atomic import _umask
    old, interval = os.umask(0o027), sys.getswitchinterval()
    sys.setswitchinterval(1e-6)   # threads switch as often as they can
    try:
        seen: set[int] = set()

        def read():
            for _ in range(30000):
                seen.add(_umask())
        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == {0o027} and os.umask(0o027) == 0o027
    finally:
        os.umask(old)
        sys.setswitchinterval(interval)


# --------------------------------------------------------------------------- a page that fails fails the book

def test_lsnc_book_exits_non_zero_when_a_page_fails(tmp_path, monkeypatch, capsys):
    import nbformat

    import lsnc.paths
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text("title: t\nexecute:\n  execute_notebooks: force\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: bad\n")
    (book / "intro.md").write_text("# intro\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# bad"),
                                         nbformat.v4.new_code_cell("raise ValueError('boom')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book / "bad.ipynb")
    monkeypatch.setattr(lsnc.paths, "book_dir", lambda: book)
    assert main(["book", "--no-train", "--quiet"]) == 1
    assert "1 page(s) failed to execute: bad" in capsys.readouterr().err


def test_a_requeued_slurm_job_takes_over_its_own_claim_from_another_node(tmp_path, monkeypatch):
    import json

    from lsnc.runs.lifecycle import RunClaimed
    folder = tmp_path / "g" / "run"
    lock = tmp_path / "g" / ".run.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": "another-node", "pid": 1, "slurm_job": "123"}))
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "999")
    with pytest.raises(RunClaimed):
        with claim_run(folder):
            pass
    monkeypatch.setenv("SLURM_JOB_ID", "123")  # the same job, requeued
    with claim_run(folder):
        assert json.loads(lock.read_text())["slurm_job"] == "123"
    assert not lock.exists()


def test_a_claim_from_another_pid_namespace_on_this_host_is_not_taken_over(tmp_path):
    """Two containers on one host can share its name but not their pids: a claim whose pid is free here may be a
    live process there, so it stands (as another host's does), and the refusal and foreign_claim say where it
    comes from; from this namespace, or naming none (from before lsnc recorded it, or unreadable there), a dead
    pid's claim is taken over."""
    import json
    import socket
    import subprocess
    import sys

    from lsnc.runs.lifecycle import RunClaimed, foreign_claim, live_claim, pid_namespace
    if pid_namespace() is None:
        pytest.skip("no /proc/self/ns/pid here")
    folder = tmp_path / "g" / "run"
    lock = tmp_path / "g" / ".run.lock"
    lock.parent.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid no process here holds now
    for namespace, taken_over in (("pid:[1]", False), (pid_namespace(), True), ("absent", True), (None, True)):
        owner = {"host": socket.gethostname(), "pid": gone.pid, "start": None}
        lock.write_text(json.dumps(owner if namespace == "absent" else {**owner, "pid_namespace": namespace}))
        if taken_over:
            with claim_run(folder):
                assert json.loads(lock.read_text())["pid_namespace"] == pid_namespace()
            assert not lock.exists()
        else:
            with pytest.raises(RunClaimed, match="PID namespace is not this one's"):
                with claim_run(folder):
                    pass
            assert lock.exists()
            assert "this host's PID namespace pid:[1]" in foreign_claim(folder) and str(lock) in foreign_claim(folder)
    # a live pid here, but in another namespace: not reported as running here
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid_namespace": "pid:[1]", "pid": os.getpid()}))
    assert live_claim(folder) is None
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid_namespace": pid_namespace(), "pid": os.getpid()}))
    assert live_claim(folder)["pid"] == os.getpid()
