"""``lsnc reproduce --executor slurm`` end to end on a real (throwaway, single-node) SLURM cluster.

The cluster (tests/slurm_cluster.py) is installed with apt-get when missing and started once per session; the
tests are skipped, with the reason, only where it cannot be installed (not root, or no apt-get)."""

import json
import os
import time

import pandas as pd
import pytest

pytest.importorskip("submitit")

import slurm_cluster  # noqa: E402
from lsnc.cli import main  # noqa: E402
from lsnc.orchestrate import reproduce as reproduce_module  # noqa: E402
from lsnc.orchestrate.matrix import RunSpec  # noqa: E402
from lsnc.presets import preset_config  # noqa: E402
from lsnc.runs import load_run  # noqa: E402
from lsnc.training import train  # noqa: E402

from lsnc.runs.compare import TIMING_COLUMNS as TIMING  # noqa: E402  (wall clock, not the run)
JOB = ["--executor", "slurm", "--gpus", "0", "--cpus", "1", "--time-min", "10"]
# ~15 s of training, checkpointed each epoch: long enough to be cancelled or requeued mid-run.
SLOW = {"epochs": 40, "milestones": [20, 30], "eval_epochs": [1, 5, 10, 20, 30, 39], "train_per_class": 1500,
        "data_options": {"num_classes": 4, "image_size": 16}, "width": 256, "batch_size": 32, "threads": 1,
        "name": "slow"}


@pytest.fixture(scope="session")
def slurm():
    try:
        slurm_cluster.install()
    except slurm_cluster.Unavailable as exc:
        pytest.skip(str(exc))
    cluster = slurm_cluster.start()
    before = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)  # sbatch / sacct / scancel (from submitit) and the jobs find this cluster
    try:
        yield cluster
    finally:
        slurm_cluster.stop(cluster)
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The SLOW run trained here without interruption."""
    return load_run(train(preset_config("smoke", **SLOW).resolved(), tmp_path_factory.mktemp("ref"), progress=False))


def _lsnc(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["reproduce", *args])
    return rc, capsys.readouterr().out


def _matrix(monkeypatch, *specs: RunSpec) -> None:
    """A test-local reproduction preset: `lsnc reproduce --preset test` trains these runs."""
    monkeypatch.setattr(reproduce_module, "reproduction_runs", lambda name: list(specs))


def _submitted(out: str) -> dict[str, str]:
    """run -> job id of the `submitted RUN as job ID` lines."""
    return {line.split()[1]: line.split()[-1] for line in out.splitlines() if line.startswith("submitted")}


def _tasks(cluster, array_id: str, expect: int, timeout: float = 20) -> list[str]:
    """The array's tasks as SLURM's accounting lists them (allocations only, no steps), once it lists ``expect``
    of them or ``timeout`` seconds have passed: slurmctld records a finished task a moment after its run folder
    says done (a loaded CI machine listed one of two tasks)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = cluster.run("sacct", "-X", "-n", "-P", "-o", "JobID", "-j", array_id).split()
        if len(tasks) >= expect or time.monotonic() > deadline:
            return tasks
        time.sleep(0.2)


def _wait_epoch(folder, epoch: int, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads((folder / "status.json").read_text())["epoch"] >= epoch:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{folder} did not reach epoch {epoch}")


def _assert_same_run(reference, folder) -> None:
    run = load_run(folder)
    assert run.status["status"] == "done"
    assert run.epochs["epoch"].is_unique and len(run.epochs) == len(reference.epochs)  # no epoch lost or repeated
    for table in ("metrics", "epochs"):
        ref, got = getattr(reference, table), getattr(run, table)
        cols = [c for c in ref.columns if c not in TIMING]
        pd.testing.assert_frame_equal(ref[cols], got[cols])


def test_smoke_sweep_is_one_job_array_queued_then_done_and_idempotent(slurm, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    held = tmp_path / "held.json"
    held.write_text(json.dumps({"extra": {"hold": True}}))  # submitted held: SLURM keeps it pending
    rc, out = _lsnc(capsys, "--preset", "smoke", *JOB, "--runs-dir", runs, "--executor-config", str(held))
    jobs = _submitted(out)
    assert rc == 0 and len(jobs) == 3
    array = {j.split("_")[0] for j in jobs.values()}
    assert len(array) == 1 and sorted(jobs.values()) == [f"{next(iter(array))}_{i}" for i in range(3)]
    rc, out = _lsnc(capsys, "--preset", "smoke", "--status", "--runs-dir", runs)
    assert rc == 1 and "queued: 3" in out and out.count("PENDING") == 3
    rc, out = _lsnc(capsys, "--preset", "smoke", *JOB, "--runs-dir", runs)  # while queued: nothing submitted
    assert not _submitted(out) and out.count("queued") == 3
    slurm.run("scontrol", "release", *array)
    rc, out = _lsnc(capsys, "--preset", "smoke", *JOB, "--runs-dir", runs, "--wait")  # waits for those jobs
    assert rc == 0 and not _submitted(out) and "done: 3" in out
    assert len(_tasks(slurm, *array, expect=3)) == 3
    rc, out = _lsnc(capsys, "--preset", "smoke", *JOB, "--runs-dir", runs, "--wait")
    assert rc == 0 and not _submitted(out) and "done: 3" in out
    slurm.wait_idle()  # the jobs end just after their runs; accounting records it a moment later on a busy machine
    deadline = time.monotonic() + 30
    while (states := slurm.run("sacct", "-X", "-n", "-P", "-o", "State", "-j", *array).split()) != ["COMPLETED"] * 3:
        assert time.monotonic() < deadline, states
        time.sleep(0.5)


def test_failed_jobs_are_reported_with_run_and_error(slurm, tmp_path, capsys, monkeypatch):
    _matrix(monkeypatch, RunSpec("smoke", {"delta": 0.0}), RunSpec("smoke", {"lr": 1e30, "name": "diverges"}),
            RunSpec("smoke", {"dataset": "imagefolder", "data_root": str(tmp_path / "none"), "data_options": {},
                              "name": "nodata"}))
    runs = str(tmp_path / "runs")
    rc, out = _lsnc(capsys, "--preset", "test", *JOB, "--runs-dir", runs, "--wait")
    assert rc == 1 and len(_submitted(out)) == 3
    lines = {line.split()[1].rstrip(":"): line for line in out.splitlines() if line.startswith(("done", "failed"))}
    assert lines["synthetic/ce-mlpw32-s0"].startswith("done")
    assert lines["synthetic/diverges"].startswith("failed") and "NonFiniteLoss" in lines["synthetic/diverges"]
    assert lines["imagefolder/nodata"].startswith("failed") and "DataError" in lines["imagefolder/nodata"]
    assert "does not exist" in lines["imagefolder/nodata"]  # before any status.json: the job's own result
    rc, out = _lsnc(capsys, "--preset", "test", *JOB, "--runs-dir", runs)  # a rerun retries only the failed
    assert set(_submitted(out)) == {"synthetic/diverges", "imagefolder/nodata"}
    slurm.run("scancel", *{j.split("_")[0] for j in _submitted(out).values()})
    slurm.wait_idle()


def test_fuse_trains_a_delta_sweep_in_one_job(slurm, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    rc, out = _lsnc(capsys, "--preset", "smoke", *JOB, "--runs-dir", runs, "--fuse", "2", "--wait")
    jobs = _submitted(out)
    assert rc == 0 and "done: 3" in out
    # CE and LS (δ differs) share one job; the UFM run (another model) has its own: 2 array tasks for 3 runs.
    ce, ls, ufm = (jobs[f"synthetic/{n}-s0"] for n in ("ce-mlpw32", "ls0.05-mlpw32", "ls0.05-ufm-mlpw32"))
    assert ce == ls != ufm
    assert len(_tasks(slurm, jobs["synthetic/ce-mlpw32-s0"].split("_")[0], expect=2)) == 2


def _start_slow_run(capsys, monkeypatch, runs) -> str:
    """Submit the slow test run and wait until it has finished epoch 3; its job id."""
    _matrix(monkeypatch, RunSpec("smoke", SLOW))
    rc, out = _lsnc(capsys, "--preset", "test", *JOB, "--runs-dir", str(runs))
    (job,) = _submitted(out).values()
    _wait_epoch(runs / "synthetic" / "slow", 3)
    return job


def test_scancel_leaves_resumable_runs_that_the_rerun_finishes_identically(slurm, tmp_path, capsys, monkeypatch,
                                                                           reference):
    runs = tmp_path / "runs"
    job = _start_slow_run(capsys, monkeypatch, runs)
    rc, out = _lsnc(capsys, "--preset", "test", "--status", "--runs-dir", str(runs))
    assert rc == 1 and out.startswith("running") and f"job {job} RUNNING" in out
    slurm.run("scancel", job.split("_")[0])
    slurm.wait_idle()
    rc, out = _lsnc(capsys, "--preset", "test", "--status", "--runs-dir", str(runs))
    assert rc == 1 and out.startswith("failed") and "(resumable)" in out and "CANCELLED" in out
    stopped_at = json.loads((runs / "synthetic" / "slow" / "status.json").read_text())["epoch"]
    assert 0 < stopped_at < SLOW["epochs"]
    rc, out = _lsnc(capsys, "--preset", "test", *JOB, "--runs-dir", str(runs), "--wait")
    (rerun,) = _submitted(out).values()
    assert rc == 0 and rerun != job and "done: 1" in out
    assert "resuming after epoch" in (runs / ".jobs" / "logs" / f"{rerun}_0_log.out").read_text()
    _assert_same_run(reference, runs / "synthetic" / "slow")


def test_requeued_job_resumes_from_its_checkpoint_and_loses_no_epoch(slurm, tmp_path, capsys, monkeypatch,
                                                                     reference):
    runs = tmp_path / "runs"
    job = _start_slow_run(capsys, monkeypatch, runs)
    slurm.run("scontrol", "requeue", job)  # what preemption does: the job is killed and queued again
    rc, out = _lsnc(capsys, "--preset", "test", *JOB, "--runs-dir", str(runs))
    assert not _submitted(out) and out.startswith(("queued", "running"))  # in flight again: nothing submitted
    slurm.wait_idle(timeout=90)
    rc, out = _lsnc(capsys, "--preset", "test", "--status", "--runs-dir", str(runs))
    assert rc == 0 and "done: 1" in out
    states = slurm.run("sacct", "-X", "-n", "-P", "-D", "-o", "State", "-j", job).split()
    assert states == ["REQUEUED", "COMPLETED"]  # one job, run twice
    log = (runs / ".jobs" / "logs" / f"{job}_0_log.out").read_text()
    assert log.count("Starting with JobEnvironment") == 2 and log.count("resuming after epoch") == 1
    _assert_same_run(reference, runs / "synthetic" / "slow")
