"""Fan a reproduction out over a SLURM cluster (or local processes) with submitit.

On SLURM one job array per submission, one task per run or per fused group of runs that differ only in δ and
seed (``--fuse``); locally one job per GPU, or a single sequential job on CPU. Jobs are checkpointable: on
preemption or timeout submitit requeues them (``scontrol requeue`` does the same), and the requeued job resumes
each run from its last epoch checkpoint. Submission is idempotent: a run that is done is skipped, a run whose
recorded job is queued or running (by SLURM's accounting, ``sacct``) is left alone, and anything else (missing,
failed, cancelled, or its job gone) is submitted.
While training, a run holds an exclusive claim (see ``lsnc.runs.lifecycle.claim_run``), so two jobs never write
into the same run folder at once.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..config import ConfigError, TrainConfig
from ..runs.format import RunError, read_status
from ..runs.lifecycle import foreign_claim, live_claim, pid_alive, run_folder, run_key
from .inline import fusable_groups, train_configs

# SLURM job states (sacct), grouped as ``lsnc reproduce --status`` reports them.
QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "READY"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
FAILED_STATES = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED",
                 "REVOKED"}


def _submitit():
    try:
        import submitit
    except ImportError as exc:  # pragma: no cover - submitit is pinned in requirements.txt
        raise ConfigError("the slurm/local executors need submitit: pip install -r requirements.txt") from exc
    return submitit


class TrainJob:
    """The callable a job runs: :func:`lsnc.orchestrate.inline.train_configs` on its share of the runs."""

    def __call__(self, configs: list[dict[str, Any]], runs_dir: str, fuse: int = 1) -> list[dict[str, Any]]:
        # torch's threads: the CPUs SLURM gave the job, not every core of the node (unless the run sets them).
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        cfgs = [TrainConfig.from_dict({**c, "threads": c.get("threads") or (int(cpus) if cpus else None)})
                for c in configs]
        outcome = train_configs(cfgs, runs_dir, fuse=fuse, progress=False, log=print)  # into the job's log
        results = []
        for what, items in outcome.items():
            for item in items:
                key, _, error = item.partition(": ")
                status = what if what in ("failed", "claimed elsewhere") else "done"
                results.append({"run": key, "status": status, **({"error": error} if error else {})})
        return results

    def checkpoint(self, configs, runs_dir, fuse: int = 1):
        # Called by submitit on preemption / timeout: requeue the same call; training resumes each run.
        return _submitit().helpers.DelayedSubmission(self, configs, runs_dir, fuse)


@dataclass
class ExecutorOptions:
    kind: str = "slurm"  # "slurm" | "local"
    log_dir: str = "runs/.jobs/logs"
    partition: str | None = None
    gpus: int = 1
    cpus: int = 8
    time_min: int = 24 * 60
    mem_gb: int | None = None
    account: str | None = None
    qos: str | None = None
    extra: dict[str, Any] | None = None  # any other SLURM option, e.g. {"constraint": "a100"}

    @classmethod
    def from_file(cls, path: str | Path, defaults: dict[str, Any] | None = None,
                  **overrides: Any) -> "ExecutorOptions":
        """The options in the JSON file ``path``: ``defaults`` fill what it lacks, ``overrides`` (not None)
        replace what it has."""
        values = {**(defaults or {}), **json.loads(Path(path).read_text())}
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown executor options {sorted(unknown)} in {path}; "
                              f"valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**values)


def make_executor(opts: ExecutorOptions):
    submitit = _submitit()
    if opts.kind not in ("slurm", "local"):
        raise ConfigError(f"unknown executor {opts.kind!r}; choose slurm or local")
    try:
        ex = submitit.AutoExecutor(folder=opts.log_dir, cluster=opts.kind)
    except RuntimeError as exc:  # e.g. no srun/sbatch on this machine
        raise ConfigError(f"cannot use the {opts.kind} executor here: {exc} "
                          "(run on a SLURM login node, or use --executor local / inline)") from exc
    params: dict[str, Any] = {"timeout_min": opts.time_min}
    if opts.kind == "slurm":
        params.update(slurm_partition=opts.partition, gpus_per_node=opts.gpus or None, cpus_per_task=opts.cpus,
                      slurm_signal_delay_s=min(120, 60 * opts.time_min // 4))
        if opts.mem_gb:
            params["mem_gb"] = opts.mem_gb
        extra = dict(opts.extra or {})
        if opts.account:
            extra["account"] = opts.account
        if opts.qos:
            extra["qos"] = opts.qos
        if extra:
            params["slurm_additional_parameters"] = extra
        params = {k: v for k, v in params.items() if v is not None}
    ex.update_parameters(**params)
    return ex


def _record_path(runs_dir: str | Path, key: str) -> Path:
    return Path(runs_dir) / ".jobs" / (key.replace("/", "__") + ".json")


def job_record(runs_dir: str | Path, key: str) -> dict[str, str] | None:
    """The last job submitted for this run: {"kind", "job_id", "log_dir"}, or None."""
    path = _record_path(runs_dir, key)
    return json.loads(path.read_text()) if path.exists() else None


def job_states(records: list[dict[str, str]]) -> dict[str, str]:
    """State of each recorded job by job id: SLURM's (see :func:`slurm_states`) or, for a local job (its id is
    its process id), RUNNING / FINISHED. A job the scheduler does not know is UNKNOWN."""
    states = {r["job_id"]: ("RUNNING" if pid_alive(int(r["job_id"])) else "FINISHED")
              for r in records if r["kind"] == "local"}
    return {**states, **slurm_states({r["job_id"] for r in records if r["kind"] == "slurm"})}


def slurm_states(job_ids: set[str]) -> dict[str, str]:
    """SLURM's state of each job (array task ids "A_i" included): its accounting (one ``sacct`` call for all),
    overridden by the controller's queue (``squeue``) for jobs it still holds; accounting lags a just-submitted
    job by a few seconds, and the queue forgets a job soon after it ends."""
    if not job_ids:
        return {}
    watcher = _submitit().slurm.slurm.SlurmInfoWatcher(delay_s=0)
    for job_id in job_ids:
        watcher.register_job(job_id)
    watcher.update()
    states = {j: watcher.get_state(j, mode="cache").split()[0] for j in job_ids}  # "CANCELLED by 0" -> CANCELLED
    try:
        queue = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True,
                               timeout=60, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return states
    live = dict(line.split("|", 1) for line in queue)
    return {j: live.get(j, s) for j, s in states.items()}


def _job_error(rec: dict[str, str], key: str) -> str | None:
    """What the finished job said about this run: its error in the job's result, else its traceback's last line."""
    submitit = _submitit()
    job = (submitit.SlurmJob if rec["kind"] == "slurm" else submitit.LocalJob)(rec["log_dir"], rec["job_id"])
    try:
        outcome, result = submitit.core.utils.pickle_load(job.paths.result_pickle)
    except (OSError, EOFError, ValueError):
        outcome, result = "error", job.stderr() or ""
    if outcome == "success":
        return next((r.get("error") for r in result if r["run"] == key), None)
    lines = [line for line in str(result).splitlines() if line.strip() and not line.startswith("srun:")]
    return lines[-1].strip() if lines else None


def run_state(runs_dir: str | Path, cfg: TrainConfig, states: dict[str, str] | None = None) -> tuple[str, str | None]:
    """(state, detail) of one run: done / queued / running / failed / missing. ``states``: :func:`job_states`
    of the recorded jobs (asked here when not given)."""
    key = run_key(cfg)
    try:
        status = read_status(run_folder(runs_dir, cfg))
    except RunError as exc:  # a damaged status.json: reported with the file, never a traceback
        return "damaged", str(exc)
    if status and status["status"] == "done":
        reached = status.get("epoch", cfg.epochs)
        return "done", (f"prefix: epochs 0-{reached} of the {cfg.epochs}-epoch recipe" if reached < cfg.epochs
                        else None)
    rec = job_record(runs_dir, key)
    js = ((states if states is not None else job_states([rec])).get(rec["job_id"], "UNKNOWN") if rec else None)
    job = f"job {rec['job_id']} {js}" if rec else None
    if js in QUEUED_STATES:
        return "queued", job
    if js in RUNNING_STATES:
        return "running", job + (f", epoch {status.get('epoch')}" if status else "")
    claim = live_claim(run_folder(runs_dir, cfg))
    if claim:  # an inline ``lsnc train`` / ``lsnc reproduce`` in another process on this host (resuming, maybe)
        return "running", f"process {claim['pid']} on this host" + (f", epoch {status.get('epoch')}" if status else "")
    if status and status["status"] == "failed":
        return "failed", status.get("error") + (f" ({job})" if job else "")
    error = _job_error(rec, key) if rec and js != "UNKNOWN" else None
    if status:
        foreign = foreign_claim(run_folder(runs_dir, cfg))
        return "failed", (f"stopped at epoch {status.get('epoch')} (resumable), {job or 'no job recorded'}"
                          + (f": {error}" if error else "") + (f"; {foreign}" if foreign else ""))
    if rec and (error or js in FAILED_STATES):
        return "failed", f"{job}" + (f": {error}" if error else "")
    return "missing", None


def _chunks(todo: list[TrainConfig], opts: ExecutorOptions, fuse: int) -> list[list[TrainConfig]]:
    if opts.kind == "slurm":
        return fusable_groups(todo, fuse)  # one array task per run, or per fused group
    import torch
    n = max(1, torch.cuda.device_count())  # local: one job per GPU (one sequential job on CPU)
    return [c for c in (todo[i::n] for i in range(n)) if c]


def _submit_local(ex, i: int, chunk: list[TrainConfig], runs_dir, fuse: int):
    """Local job i sees GPU i alone (submitit hides every GPU from a local job that asks for none)."""
    import torch
    if torch.cuda.device_count() > 0:
        ex.update_parameters(gpus_per_node=1, visible_gpus=(i,))
    return ex.submit(TrainJob(), [c.to_dict() for c in chunk], str(runs_dir), fuse)


def submit(configs: list[TrainConfig], runs_dir: str | Path, opts: ExecutorOptions, *, fuse: int = 1,
           log=print) -> list:
    """Submit what is missing or failed (as one SLURM job array); leave done, queued and running runs alone.
    Returns the submitted jobs."""
    states = job_states([r for r in (job_record(runs_dir, run_key(c)) for c in configs) if r])
    todo = []
    for cfg in configs:
        state, detail = run_state(runs_dir, cfg, states)
        if state in ("done", "running", "queued"):
            log(f"{state:<8} {run_key(cfg)}" + (f" ({detail})" if detail else ""))
        else:
            todo.append(cfg)
    if not todo:
        return []
    ex, chunks = make_executor(opts), _chunks(todo, opts, fuse)
    if opts.kind == "local":
        jobs = [_submit_local(ex, i, chunk, runs_dir, fuse) for i, chunk in enumerate(chunks)]
    else:
        with ex.batch():  # one job array (a single job when there is one chunk)
            jobs = [ex.submit(TrainJob(), [c.to_dict() for c in chunk], str(runs_dir), fuse) for chunk in chunks]
    for job, chunk in zip(jobs, chunks):
        for c in chunk:
            write_json_atomic(_record_path(runs_dir, run_key(c)), {"kind": opts.kind, "job_id": str(job.job_id),
                                                                   "log_dir": os.fspath(opts.log_dir)})
            log(f"submitted {run_key(c)} as job {job.job_id}")
    return jobs


def wait(configs: list[TrainConfig], runs_dir: str | Path, poll_s: float = 5.0) -> None:
    """Until no run is queued or running (by SLURM's accounting): also the jobs of an earlier submission."""
    import time
    while True:
        states = job_states([r for r in (job_record(runs_dir, run_key(c)) for c in configs) if r])
        if not any(run_state(runs_dir, c, states)[0] in ("queued", "running") for c in configs):
            return
        time.sleep(poll_s)


def report(configs: list[TrainConfig], runs_dir: str | Path, log=print) -> dict[str, int]:
    """Print the state of every run (SLURM's accounting for those with a job); return counts per state."""
    states = job_states([r for r in (job_record(runs_dir, run_key(c)) for c in configs) if r])
    counts: dict[str, int] = {}
    for cfg in configs:
        state, detail = run_state(runs_dir, cfg, states)
        counts[state] = counts.get(state, 0) + 1
        log(f"{state:<8} {run_key(cfg)}" + (f": {detail}" if detail else ""))
    log(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return counts
