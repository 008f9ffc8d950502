"""submitit executors on the smoke preset, with submitit's local executor (real subprocesses)."""

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("submitit")

from lsnc import cli  # noqa: E402
from lsnc.orchestrate import cluster  # noqa: E402
from lsnc.presets import preset_config  # noqa: E402
from lsnc.runs import load_run  # noqa: E402
from lsnc.runs.lifecycle import pid_alive  # noqa: E402
from lsnc.training import train  # noqa: E402

from lsnc.runs.compare import TIMING_COLUMNS as TIMING  # noqa: E402  (wall clock, not the run)


def _opts(tmp_path):
    return cluster.ExecutorOptions(kind="local", log_dir=str(tmp_path / "logs"), time_min=10)


def _wait(jobs):
    for job in jobs:
        job.wait()
    return [job.result() for job in jobs]


def test_local_sweep_completes_and_failures_are_reported_not_fatal(tmp_path):
    runs = tmp_path / "runs"
    configs = [preset_config("smoke", delta=d, threads=1).resolved() for d in (0.0, 0.05)]
    configs.insert(1, preset_config("smoke", lr=1e30, name="diverges", threads=1).resolved())
    results = _wait(cluster.submit(configs, runs, _opts(tmp_path), log=lambda *_: None))
    flat = {r["run"]: r for res in results for r in res}
    assert flat["synthetic/ce-mlpw32-s0"]["status"] == "done"
    assert flat["synthetic/ls0.05-mlpw32-s0"]["status"] == "done"  # after the failing one, in the same job
    assert flat["synthetic/diverges"]["status"] == "failed" and "NonFiniteLoss" in flat["synthetic/diverges"]["error"]
    lines = []
    counts = cluster.report(configs, runs, log=lines.append)
    assert counts == {"done": 2, "failed": 1}
    assert any(line.startswith("failed") and "NonFiniteLoss" in line for line in lines)
    # Idempotent: a second submission submits only the failed run.
    logged = []
    jobs = cluster.submit(configs, runs, _opts(tmp_path), log=logged.append)
    _wait(jobs)
    assert sum(line.startswith("submitted") for line in logged) == 1
    assert sum(line.startswith("done") for line in logged) == 2


def test_killed_job_is_resumed_with_an_identical_table(tmp_path):
    cfg = preset_config("smoke", epochs=14, milestones=[6, 11], eval_epochs=[1, 2, 3, 5, 8, 13],
                        train_per_class=400, data_options={"num_classes": 4, "image_size": 16}, width=256,
                        batch_size=32, threads=1).resolved()
    reference = load_run(train(cfg, tmp_path / "ref", progress=False))
    runs = tmp_path / "runs"
    (job,) = cluster.submit([cfg], runs, _opts(tmp_path), log=lambda *_: None)
    status = runs / "synthetic" / cfg.name / "status.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(status.read_text())["epoch"] >= 4:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    # the job's process and the one training (its child, which the job's death alone leaves running as an orphan)
    trainer = json.loads((runs / "synthetic" / f".{cfg.name}.lock").read_text())["pid"]
    for pid in {int(job.job_id), trainer}:
        os.kill(pid, signal.SIGKILL)
    while not job.done() or pid_alive(trainer):  # job.done() reaps the job; SIGKILL takes a moment to end the trainer
        time.sleep(0.05)
    state, detail = cluster.run_state(runs, cfg)
    assert state == "failed", detail  # stopped mid-run, its job gone
    _wait(cluster.submit([cfg], runs, _opts(tmp_path), log=lambda *_: None))
    resumed = load_run(runs / "synthetic" / cfg.name)
    assert resumed.status["status"] == "done"
    cols = [c for c in reference.metrics.columns if c not in TIMING]
    pd.testing.assert_frame_equal(reference.metrics[cols], resumed.metrics[cols])
    cols = [c for c in reference.epochs.columns if c not in TIMING]
    pd.testing.assert_frame_equal(reference.epochs[cols], resumed.epochs[cols])


def test_executor_options_file(tmp_path):
    f = tmp_path / "slurm.json"
    f.write_text(json.dumps({"partition": "gpu", "gpus": 1, "time_min": 240, "extra": {"constraint": "a100"}}))
    opts = cluster.ExecutorOptions.from_file(f, kind="slurm", account="lab")
    assert opts.partition == "gpu" and opts.account == "lab" and opts.extra == {"constraint": "a100"}
    # the CLI's default log folder fills in only where the file names none
    args = cli.build_parser().parse_args(["reproduce", "--preset", "smoke", "--runs-dir", str(tmp_path / "r"),
                                          "--executor", "slurm", "--executor-config", str(f)])
    assert cli._executor_options(args).log_dir == str(tmp_path / "r" / ".jobs" / "logs")
    f.write_text(json.dumps({"partition": "gpu", "log_dir": str(tmp_path / "mylogs")}))
    assert cli._executor_options(args).log_dir == str(tmp_path / "mylogs")
    f.write_text(json.dumps({"partiton": "gpu"}))
    with pytest.raises(ValueError, match="partiton"):
        cluster.ExecutorOptions.from_file(f)


def test_slurm_executor_without_slurm_is_a_clean_error(tmp_path, capsys, monkeypatch):
    from lsnc.cli import main
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch / srun here, even where SLURM is installed
    assert main(["reproduce", "--preset", "smoke", "--executor", "slurm", "--runs-dir", str(tmp_path)]) == 2
    assert "SLURM" in capsys.readouterr().err


def test_a_run_claimed_by_a_live_process_here_reports_running_not_failed(tmp_path):
    """``--status`` beside an inline ``lsnc reproduce`` in another process: its run in progress is running (the lock
    of a live process on this host). A lock does not count when its process is gone, is a zombie, or when its pid
    now belongs to a later process (the start time differs), nor when it comes from another host (a killed run
    with a status is then failed, resumable: the test above)."""
    import socket
    import subprocess

    from lsnc.runs.lifecycle import claim_run, process_start, run_folder
    cfg = preset_config("smoke", threads=1).resolved()
    runs = tmp_path / "runs"
    folder = run_folder(runs, cfg)
    with claim_run(folder):
        assert cluster.run_state(runs, cfg) == ("running", f"process {os.getpid()} on this host")
    assert cluster.run_state(runs, cfg) == ("missing", None)
    lock = folder.parent / f".{folder.name}.lock"
    lock.parent.mkdir(parents=True)

    def claimed_by(**owner):
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                    "start": process_start(os.getpid()), "slurm_job": None, **owner}))
        return cluster.run_state(runs, cfg)[0]
    assert claimed_by() == "running"
    assert claimed_by(start="0") == "missing"  # this pid, but a later process than the one that claimed it
    assert claimed_by(host="another-node") == "missing"  # cannot be checked from here
    zombie = subprocess.Popen(["true"])
    deadline = time.time() + 30
    while (Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
           and time.time() < deadline):
        time.sleep(0.02)  # ended, not yet reaped: still in the process table
    assert claimed_by(pid=zombie.pid, start=None) == "missing" and not pid_alive(zombie.pid)
    zombie.wait()
    assert claimed_by(pid=zombie.pid, start=None) == "missing"  # reaped: gone
    # a killed run (a status at epoch 2) whose lock comes from another PID namespace of this host: failed,
    # resumable, and the detail says where the lock comes from and which file to remove
    from lsnc.runs.format import write_status
    folder.mkdir(parents=True)
    write_status(folder, "running", 2)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid_namespace": "pid:[1]", "pid": os.getpid()}))
    state, detail = cluster.run_state(runs, cfg)
    assert state == "failed" and detail.startswith("stopped at epoch 2 (resumable)")
    assert "PID namespace pid:[1]" in detail and f"remove {lock}" in detail
