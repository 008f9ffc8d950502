"""Fan a reproduction out over a SLURM cluster (or local processes) with submitit.

One job per run on SLURM (several runs per job locally: one job per GPU, or a single sequential job on CPU).
Jobs are checkpointable: on preemption or timeout submitit requeues them, and the requeued job resumes the
run from its checkpoint. Submission is idempotent: a run that is done is skipped, a run whose recorded job is
still pending or running is left alone, and anything else (missing, failed, or its job gone) is submitted.
While training, a run holds an exclusive claim (see ``lsnc.runs.lifecycle.claim_run``), so two jobs never write
into the same run folder at once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..config import ConfigError, TrainConfig
from ..runs.format import read_status
from ..runs.lifecycle import pid_alive, run_folder, run_key
from .inline import fusable_groups, train_configs

ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "READY"}


def _submitit():
    try:
        import submitit
    except ImportError as exc:  # pragma: no cover - submitit is pinned in requirements.txt
        raise ConfigError("the slurm/local executors need submitit: pip install -r requirements.txt") from exc
    return submitit


class TrainJob:
    """The callable a job runs: :func:`lsnc.orchestrate.inline.train_configs` on its share of the runs."""

    def __call__(self, configs: list[dict[str, Any]], runs_dir: str, fuse: int = 1) -> list[dict[str, Any]]:
        outcome = train_configs([TrainConfig.from_dict(c) for c in configs], runs_dir, fuse=fuse, progress=False,
                                log=lambda *_: None)
        results = []
        for what, items in outcome.items():
            for item in items:
                key, _, error = item.partition(": ")
                status = "done" if what in ("trained", "resumed", "skipped (done)") else what
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
    def from_file(cls, path: str | Path, **overrides: Any) -> "ExecutorOptions":
        values = json.loads(Path(path).read_text())
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
        params.update(slurm_partition=opts.partition, gpus_per_node=opts.gpus, cpus_per_task=opts.cpus,
                      slurm_signal_delay_s=120)
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


def job_state(runs_dir: str | Path, key: str) -> str | None:
    """SLURM/local state of the last job recorded for this run, or None when none was recorded."""
    path = _record_path(runs_dir, key)
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    if rec["kind"] == "local":
        # A local job's id is its process id; submitit cannot re-attach to it from another process.
        return "RUNNING" if pid_alive(int(rec["job_id"])) else "FINISHED"
    try:
        return _submitit().SlurmJob(rec["log_dir"], rec["job_id"]).state
    except Exception:  # a job the scheduler no longer knows
        return "UNKNOWN"


def run_state(runs_dir: str | Path, cfg: TrainConfig) -> tuple[str, str | None]:
    """(state, detail) of one run: done / running / pending / failed / missing."""
    key = run_key(cfg)
    status = read_status(run_folder(runs_dir, cfg))
    if status and status["status"] == "done":
        reached = status.get("epoch", cfg.epochs)
        return "done", (f"prefix: epochs 0-{reached} of the {cfg.epochs}-epoch recipe" if reached < cfg.epochs
                        else None)
    js = job_state(runs_dir, key)
    if js in ACTIVE_STATES:
        return ("running" if status else "pending"), f"job {js.lower()}"
    if status and status["status"] == "failed":
        return "failed", status.get("error")
    if status:
        return "failed", f"stopped at epoch {status.get('epoch')} and its job is {str(js).lower()}"
    return "missing", None


def submit(configs: list[TrainConfig], runs_dir: str | Path, opts: ExecutorOptions, *, fuse: int = 1,
           log=print) -> list:
    """Submit what is missing or failed; leave done and in-flight runs alone. Returns the submitted jobs."""
    todo = []
    for cfg in configs:
        state, detail = run_state(runs_dir, cfg)
        key = run_key(cfg)
        if state in ("done", "running", "pending"):
            log(f"{state:<8} {key}" + (f" ({detail})" if detail else ""))
        else:
            todo.append(cfg)
    if not todo:
        return []
    ex = make_executor(opts)
    if opts.kind == "slurm":
        chunks = fusable_groups(todo, fuse)  # one job per run, or per fused group
    else:
        import torch
        n = max(1, torch.cuda.device_count())
        chunks = [todo[i::n] for i in range(n)]
    jobs = []
    for chunk in (c for c in chunks if c):
        job = ex.submit(TrainJob(), [c.to_dict() for c in chunk], str(runs_dir), fuse)
        jobs.append(job)
        for c in chunk:
            key = run_key(c)
            write_json_atomic(_record_path(runs_dir, key), {"kind": opts.kind, "job_id": str(job.job_id),
                                                            "log_dir": os.fspath(opts.log_dir)})
            log(f"submitted {key} as job {job.job_id}")
    return jobs


def report(configs: list[TrainConfig], runs_dir: str | Path, log=print) -> dict[str, int]:
    """Print the state of every run; return counts per state."""
    counts: dict[str, int] = {}
    for cfg in configs:
        state, detail = run_state(runs_dir, cfg)
        counts[state] = counts.get(state, 0) + 1
        log(f"{state:<8} {run_key(cfg)}" + (f": {detail}" if detail else ""))
    log(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return counts
