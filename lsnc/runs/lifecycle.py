"""The life of a run folder: where a config's run lives, who may write it, what it was made with, and whether
it may be resumed. Training (``lsnc.training``) and orchestration (``lsnc.orchestrate``) both go through here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..config import TrainConfig, fields_with
from ..paths import REPO_ROOT, portable_paths
from .format import CONFIG_FILE, STATUS_FILE, RunError, read_json, read_status

#: The options a run may be resumed with changed: how it executes, where things live, when it stops (the roles
#: ``execution``, ``where`` and ``stop`` of lsnc.config.ROLES). The setting (precision included: amp and tf32 change
#: the numbers), δ and seed, and the kernels (memory layout, deterministic algorithms) stay as the run started.
RESUME_MAY_CHANGE = frozenset(fields_with("execution", "where", "stop"))


def run_key(cfg: TrainConfig) -> str:
    """``<group>/<name>``: the run's folder relative to the runs folder, and its name in every report."""
    return f"{cfg.group or cfg.dataset}/{cfg.name}"


def run_folder(runs_dir: str | Path, cfg: TrainConfig) -> Path:
    """``<runs_dir>/<group>/<name>``, which must lie inside ``runs_dir`` (names are plain, see TrainConfig)."""
    folder = Path(runs_dir) / run_key(cfg)
    root = Path(runs_dir).resolve()
    if folder.resolve().parent.parent != root:
        raise RunError(f"run folder {folder} would lie outside {runs_dir}; --group and --name must be plain names")
    return folder


def is_run_folder(folder: Path) -> bool:
    """A folder lsnc wrote: it has config.json or status.json (only such a folder may be replaced)."""
    return (folder / CONFIG_FILE).is_file() or (folder / STATUS_FILE).is_file()


def run_status(runs_dir: str | Path, cfg: TrainConfig) -> str | None:
    """"done" / "running" / "failed" from the run's status.json, or None when it was never started."""
    status = read_status(run_folder(runs_dir, cfg))
    return status["status"] if status else None


def check_resumable(folder: Path, cfg: TrainConfig) -> None:
    """Refuse to resume a folder started with another setting, δ, seed or kernels (:data:`RESUME_MAY_CHANGE` may
    change)."""
    stored, mine = read_json(folder / CONFIG_FILE), cfg.to_dict()
    diff = sorted(k for k in set(stored) | set(mine) if k not in RESUME_MAY_CHANGE and stored.get(k) != mine.get(k))
    if diff:
        raise RunError(f"{folder} was started with a different configuration ({', '.join(diff)} differ); "
                       "resume it with the same options, or choose another --name / --runs-dir.")


# --------------------------------------------------------------------------- provenance

@functools.cache
def git_commit() -> dict[str, Any]:
    """The checkout's commit, and whether lsnc/ has uncommitted changes. In a GPU window (device/window.sh) the
    commit is the one device/prepare.sh recorded (``$LSNC_SOURCE_COMMIT``, with ``$LSNC_SOURCE_LSNC_MODIFIED``):
    the device's copy of the checkout may have no .git, or one at another commit (the session's base), so its own
    git cannot say what was sent. Read once per process, at its first run: a process runs the code it imported,
    whatever is edited later."""
    if os.environ.get("LSNC_SOURCE_COMMIT", "unknown") != "unknown":  # prepare.sh writes "unknown" without git
        modified = {"0": False, "1": True}.get(os.environ.get("LSNC_SOURCE_LSNC_MODIFIED", ""))
        return {"commit": os.environ["LSNC_SOURCE_COMMIT"], "lsnc_modified": modified,
                "commit_from": "LSNC_SOURCE_COMMIT (device/prepare.sh's record of the checkout sent to the device)"}
    try:
        run = lambda *args: subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                           timeout=10).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no", "lsnc")
        return {"commit": commit or None, "lsnc_modified": bool(dirty) if commit else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "lsnc_modified": None}


@functools.cache
def cpu_description() -> dict[str, str]:
    """The processor (``/proc/cpuinfo``'s model name, else ``platform.processor()``) and the instruction set
    PyTorch's CPU kernels use here (``AVX512``, ``AVX2``...). Two CPUs that differ in either round differently:
    a CPU run reproduces bit for bit only on a CPU like the one it was trained on (``lsnc compare``)."""
    import torch
    name = ""
    try:
        name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "")
    except OSError:
        pass
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    return {"cpu": name or platform.processor() or "unknown", "cpu_capability": capability}


def gpu_model(device) -> str | None:
    """The GPU's model name on CUDA (provenance.json's ``device.name``, e.g. "NVIDIA H200"), else None."""
    import torch
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def provenance(cfg: TrainConfig, data_description: dict[str, Any], label: str, device) -> dict[str, Any]:
    """What a run was made with: lsnc commit, package versions, device and precision, dataset description."""
    import numpy
    import torch
    import torchvision

    from .. import __version__
    dev: dict[str, Any] = {"type": device.type, "threads": torch.get_num_threads(), **cpu_description()}
    name = gpu_model(device)
    if name:
        dev["name"] = name
    if device.type == "cuda":
        dev["cuda"] = torch.version.cuda
    return {
        "lsnc": {"version": __version__, **git_commit()},
        "packages": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": numpy.__version__},
        "platform": platform.platform(),
        "device": dev,
        "precision": {"autocast": cfg.amp, "tf32": bool(cfg.tf32 and device.type == "cuda")},
        "seed": cfg.seed,
        "dataset": {"label": label, **data_description,
                    "source": portable_paths(str(data_description.get("source", "")))},
        "command": portable_paths(" ".join(sys.argv)),
    }


# --------------------------------------------------------------------------- exclusive claims

class RunClaimed(RunError):
    """Another live process is training this run."""


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None where it cannot be read."""
    try:  # the command name sits in parentheses and may itself hold ")"
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot; Linux): with its pid, it names one process, where a pid
    alone can be reused by a later one. None where it cannot be read."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether the process runs on this host: a zombie (killed, not yet reaped by its parent) is not alive, and,
    with ``start`` (:func:`process_start` when it was recorded), neither is a later process that reuses the pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is None:  # not Linux, or gone meanwhile: os.kill's answer stands
        return True
    return fields[0] != "Z" and (start is None or (len(fields) > 19 and fields[19] == start))


def pid_namespace() -> str | None:
    """This process's PID namespace (Linux: "pid:[4026531836]"); None where it cannot be read. Two containers on
    one host may share a host name yet number their processes apart, so a pid is only looked up in its own."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _checkable_here(owner: dict) -> bool:
    """Whether the claim's process can be looked up from here: the same host and PID namespace (a claim that names
    no namespace, written before lsnc recorded it or where it could not be read, counts as this one's)."""
    return (owner.get("host") == socket.gethostname()
            and owner.get("pid_namespace") in (None, pid_namespace()))


def foreign_claim(folder: Path) -> str | None:
    """What to say of a claim on ``folder`` whose process cannot be looked up from here (another host, or another
    PID namespace of this one: another container, or this container before a restart); None when there is none."""
    lock = _lock_path(folder)
    owner = _read_claim(lock)
    if not owner or _checkable_here(owner):
        return None
    where = (f"host {owner.get('host')}" if owner.get("host") != socket.gethostname()
             else f"this host's PID namespace {owner.get('pid_namespace')} (another container, or this one before "
                  "a restart)")
    return (f"claimed by process {owner.get('pid')} in {where}, which cannot be checked from here: if nothing "
            f"there trains it, remove {lock}")


def _slurm_job() -> str | None:
    """This process's SLURM job (array task included), which a requeue keeps; None outside SLURM."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return None if job is None else f"{job}_{task}" if task is not None else job


def _lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def _read_claim(lock: Path) -> dict:
    """The lock file's owner (host, pid_namespace, pid, start, slurm_job); empty when it cannot be read (gone, or
    being written)."""
    try:
        return json.loads(lock.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def live_claim(folder: Path) -> dict | None:
    """The claim on a run folder when a live process on this host holds it (what ``lsnc reproduce --status`` reports
    as running); None when there is none, when its process is dead, or when it comes from another host or PID
    namespace (whose process cannot be checked from here)."""
    owner = _read_claim(_lock_path(folder))
    return owner if _checkable_here(owner) and pid_alive(owner.get("pid", -1), owner.get("start")) else None


@contextlib.contextmanager
def claim_run(folder: Path):
    """Exclusive claim on a run folder while it trains: an O_EXCL lock file beside it holding host, pid and the
    process's start time. A claim left by a dead process on this host (a killed run) is taken over; one from another
    host or PID namespace (another container) is not, since its process cannot be looked up from here."""
    lock = _lock_path(folder)
    made = [p for p in [lock.parent, *lock.parent.parents] if not p.exists()]
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create {lock.parent} ({exc.strerror}); choose a writable --runs-dir") from exc
    me = {"host": socket.gethostname(), "pid_namespace": pid_namespace(), "pid": os.getpid(),
          "start": process_start(os.getpid()), "slurm_job": _slurm_job()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = _read_claim(lock)
            dead_here = _checkable_here(owner) and not pid_alive(owner.get("pid", -1), owner.get("start"))
            # a requeued SLURM job (same job id, maybe another node) takes over the claim of its killed first life
            requeued = me["slurm_job"] is not None and owner.get("slurm_job") == me["slurm_job"]
            if dead_here or requeued:
                lock.unlink(missing_ok=True)
                continue
            raise RunClaimed(f"{folder} is being trained by {owner or 'another process'} (lock {lock}); wait for "
                             "it, or remove the lock if that process is gone"
                             + ("" if not owner or _checkable_here(owner) else
                                " (its host or PID namespace is not this one's, so lsnc cannot tell)"))
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise RunClaimed(f"could not claim {folder}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        for folder_made in made:  # leave no empty folder behind (e.g. after a refused run)
            try:
                folder_made.rmdir()
            except OSError:
                break
