"""``lsnc reproduce``: the runs a reproduction preset needs (:mod:`.matrix`), trained here (:mod:`.inline`) or
sent to SLURM / local processes (:mod:`.cluster`). Done runs are skipped, interrupted ones resumed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import ConfigError
from .inline import log_outcome, train_configs
from .matrix import reproduction_runs
from ..runs.lifecycle import run_key


def reproduce(name: str, runs_dir: str | Path = "runs", *, data_root: str | None = None, download: bool = False,
              dry_run: bool = False, only: str | None = None, progress: bool = True, log=print,
              executor=None, wait: bool = True, status_only: bool = False, fuse: int = 1,
              together: str = "fused") -> int:
    """Train what is missing; return 0 if every run ends done, 1 otherwise.

    ``executor`` (a ``lsnc.orchestrate.cluster.ExecutorOptions``) sends the runs to SLURM or local processes
    through submitit instead of training them in this process (``wait``: until no run is queued or running);
    ``status_only`` just reports every run's state; ``download`` fetches each missing dataset once, here, before
    anything trains or is submitted; ``fuse`` trains up to that many runs that differ only in δ
    and seed together (on SLURM: one job array task per group), as one fused network or, with
    ``together="streams"``, as that many networks on CUDA streams (:mod:`lsnc.training.streams`).
    """
    configs = [dataclasses.replace(s.config(data_root, download), together=together) for s in reproduction_runs(name)]
    if only:
        chosen = [c for c in configs if only in run_key(c)]
        if not chosen:
            raise ConfigError(f"--only {only!r} matches none of the {len(configs)} runs of preset {name!r} (their "
                              f"keys look like {run_key(configs[0])!r}; `lsnc reproduce --preset {name} --dry-run` "
                              "lists them)")
        configs = chosen
    if download and not dry_run and not status_only:
        from ..data import fetch_dataset
        from ..paths import resolve_data_root
        for dataset, root in dict.fromkeys((c.dataset, c.data_root) for c in configs):
            log(f"download: {dataset} into {root or 'the default data root'} (once, before any run starts)")
            # here, on this host (jobs find the files and never fetch concurrently), into the folder the runs load from
            fetch_dataset(dataset, resolve_data_root(root))
    if status_only or executor is not None:
        from . import cluster
        if executor is not None and not dry_run and not status_only:
            jobs = cluster.submit(configs, runs_dir, executor, fuse=fuse, log=log)
            if executor.kind == "local":
                for job in jobs:
                    job.wait()  # reaps the local processes
            elif not wait:
                return 0
            else:
                cluster.wait(configs, runs_dir)  # this submission's jobs and any still in flight
        counts = cluster.report(configs, runs_dir, log=log)
        return 0 if set(counts) <= {"done"} else 1
    outcome = train_configs(configs, runs_dir, fuse=fuse, dry_run=dry_run, progress=progress, log=log)
    log_outcome(outcome, log)
    return 1 if outcome["failed"] else 0
