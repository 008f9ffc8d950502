"""``lsnc reproduce``: the set of runs a reproduction needs, trained if missing, resumed if interrupted.

A run folder whose status is "done" is skipped; "running" or "failed" is resumed from its checkpoint; a
missing one is trained. One failing run is reported and does not stop the others.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, TrainConfig

PAPER_SWEEP = (0.0, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9)
MAIN_DELTA = 0.05
UFM_DELTAS = (0.0, 0.05, 0.1)


@dataclass(frozen=True)
class RunSpec:
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self, data_root: str | None = None, download: bool = False) -> TrainConfig:
        from .presets import preset_config
        extra: dict[str, Any] = {}
        if data_root:
            extra["data_root"] = data_root
        if download:
            extra["download"] = True
        return preset_config(self.preset, **{**self.overrides, **extra}).resolved()


def _matrix(preset: str, main_seeds, sweep_seeds, ufm_seeds=(0,), sweep=PAPER_SWEEP) -> list[RunSpec]:
    specs: list[RunSpec] = []
    for seed in main_seeds:
        for delta in (0.0, MAIN_DELTA):
            specs.append(RunSpec(preset, {"delta": delta, "seed": seed}))
    for seed in sweep_seeds:
        for delta in sweep:
            spec = RunSpec(preset, {"delta": delta, "seed": seed})
            if spec not in specs:
                specs.append(spec)
    for seed in ufm_seeds:
        for delta in UFM_DELTAS:
            specs.append(RunSpec(preset, {"delta": delta, "seed": seed, "ufm": True}))
    return specs


def reproduction_runs(name: str) -> list[RunSpec]:
    """The runs of a reproduction preset, in the order they are trained."""
    if name == "smoke":
        return [RunSpec("smoke", {"delta": 0.0}), RunSpec("smoke", {"delta": MAIN_DELTA}),
                RunSpec("smoke", {"delta": MAIN_DELTA, "ufm": True})]
    if name == "cpu":
        # bf16 autocast twins of three CE/LS seed pairs: how much the fast path's precision moves the results.
        bf16 = [RunSpec("cpu-mnist1d", {"delta": d, "seed": s, "amp": "bf16"}) for s in range(3) for d in (0.0, MAIN_DELTA)]
        return (_matrix("cpu-mnist1d", main_seeds=range(5), sweep_seeds=range(3))
                + _matrix("cpu-cifar10", main_seeds=range(2), sweep_seeds=range(1)) + bf16)
    if name == "paper":
        specs = _matrix("paper-cifar10", main_seeds=(0,), sweep_seeds=(0,))
        for preset in ("paper-cifar100", "paper-stl10", "paper-tinyimagenet"):
            specs += _matrix(preset, main_seeds=(0,), sweep_seeds=(), ufm_seeds=())
        return specs
    raise ConfigError(f"unknown reproduction preset {name!r}; choose one of: paper, cpu, smoke")


class RunClaimed(RuntimeError):
    """Another live process is training this run."""


@contextlib.contextmanager
def claim_run(folder: Path):
    """Exclusive claim on a run folder while it trains: an O_EXCL lock file beside it holding host and pid.
    A claim left by a dead process on this host (a killed run) is taken over."""
    lock = folder.parent / f".{folder.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text())
            except (OSError, json.JSONDecodeError):
                owner = {}
            if owner.get("host") == me["host"] and not _pid_alive(owner.get("pid", -1)):
                lock.unlink(missing_ok=True)
                continue
            raise RunClaimed(f"{folder} is being trained by {owner or 'another process'}")
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise RunClaimed(f"could not claim {folder}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def reproduce(name: str, runs_dir: str | Path = "runs", *, data_root: str | None = None, download: bool = False,
              dry_run: bool = False, only: str | None = None, progress: bool = True, log=print,
              executor=None, wait: bool = True, status_only: bool = False) -> int:
    """Train what is missing; return 0 if every run ends done, 1 otherwise.

    ``executor`` (a ``lsnc.cluster.ExecutorOptions``) sends the runs to SLURM or local processes through
    submitit instead of training them in this process; ``status_only`` just reports every run's state.
    """
    from .train import run_group

    configs = [s.config(data_root, download) for s in reproduction_runs(name)]
    if only:
        configs = [c for c in configs if only in f"{run_group(c)}/{c.name}"]
    if status_only or executor is not None:
        from . import cluster
        if executor is not None and not dry_run and not status_only:
            jobs = cluster.submit(configs, runs_dir, executor, log=log)
            if not (wait or executor.kind == "local"):
                return 0
            for job in jobs:
                job.wait()
        counts = cluster.report(configs, runs_dir, log=log)
        return 0 if set(counts) <= {"done"} else 1
    return train_inline(configs, runs_dir, dry_run=dry_run, progress=progress, log=log)


def train_inline(configs: list[TrainConfig], runs_dir: str | Path, *, dry_run: bool = False, progress: bool = True,
                 log=print) -> int:
    """Train the configs one after another in this process (skip done, resume interrupted)."""
    from .runs import read_json, run_dir
    from .train import run_group, train
    outcome: dict[str, list[str]] = {"skipped (done)": [], "trained": [], "resumed": [], "claimed elsewhere": [],
                                     "failed": []}
    for cfg in configs:
        folder = run_dir(runs_dir, run_group(cfg), cfg.name)
        status = read_json(folder / "status.json")["status"] if (folder / "status.json").exists() else None
        key = f"{run_group(cfg)}/{cfg.name}"
        if status == "done":
            outcome["skipped (done)"].append(key)
            continue
        action = "resumed" if status else "trained"
        if dry_run:
            log(f"would {'resume' if status else 'train'}: {key}")
            continue
        try:
            with claim_run(folder):
                # Re-read: another process may have finished it between the check above and the claim.
                train(cfg, runs_dir, resume=True, progress=progress, log=log)
            outcome[action].append(key)
        except RunClaimed:
            outcome["claimed elsewhere"].append(key)
        except Exception as exc:  # one failure must not stop the rest of the matrix
            outcome["failed"].append(f"{key}: {type(exc).__name__}: {exc}")
            log(traceback.format_exc(limit=3))
    for what, keys in outcome.items():
        log(f"{what}: {len(keys)}")
        for k in keys if what != "skipped (done)" else []:
            log(f"  {k}")
    return 1 if outcome["failed"] else 0
