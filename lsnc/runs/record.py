"""Writing one run folder while it trains: opening (new or resumed), the two tables, snapshots, status and
checkpoint. The format itself is documented in :mod:`lsnc.runs.format`.

A checkpoint holds the plain model's ``state_dict``, the optimizer's and the scheduler's, the epoch and the
training seconds so far; rows written after the checkpoint (a kill between a table write and the checkpoint)
are dropped on resume and redone, so a resumed run writes the same tables as an uninterrupted one. So is the
metrics row a time budget adds where it stops a prefix off the evaluation schedule (lsnc.runs.format).
:class:`CheckpointWriter` writes the checkpoints of an epoch in a background thread while the next one trains.
"""

from __future__ import annotations

import shutil
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_atomic, write_json_atomic
from ..config import TrainConfig, field_defaults, fields_with
from ..snapshots import load_snapshots, save_snapshots
from .format import (CHECKPOINT_FILE, CONFIG_FILE, EPOCHS_FILE, METRICS_FILE, PROVENANCE_FILE, SNAPSHOTS_FILE, RunError,
                     read_json, read_rows_csv, read_status, write_rows_csv, write_status)
from .lifecycle import check_resumable, cpu_description, gpu_model, is_run_folder, provenance, run_folder


@dataclass
class RunRecord:
    cfg: TrainConfig
    folder: Path
    start_epoch: int = 0
    train_seconds: float = 0.0
    metrics_rows: list[dict[str, Any]] = field(default_factory=list)
    epoch_rows: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict = field(default_factory=dict)
    resume_state: dict | None = None  # the checkpoint to continue from, if any
    #: the processors the run's earlier epochs were trained on, where a resume runs on another one
    earlier_cpus: list[dict[str, Any]] = field(default_factory=list)
    earlier_training: dict[str, Any] | None = None   # provenance.json's "training" before a resume
    #: provenance.json's "execution_changes" before a resume, the config.json the run started with, and the device
    #: its previous start trained on
    earlier_changes: list[dict[str, Any]] = field(default_factory=list)
    started_config: dict[str, Any] | None = None
    earlier_device: tuple[str, str | None] | None = None  # (type, GPU model) of the start before this one

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / CHECKPOINT_FILE

    # ------------------------------------------------------------------ opening

    @classmethod
    def check(cls, cfg: TrainConfig, runs_dir: str | Path, *, resume: bool, overwrite: bool) -> str:
        """Before anything is written: "new", "resume", "restart" (started, but no checkpoint to continue
        from), or "done" (nothing to do). Raises RunError for a folder that may not be used as asked."""
        folder = run_folder(runs_dir, cfg)
        if not folder.exists():
            return "new"
        if not is_run_folder(folder) and any(folder.iterdir()):
            raise RunError(f"{folder} exists and is not a run folder (no config.json or status.json); lsnc will "
                           "not delete it: choose another --name or --group")
        if overwrite or not is_run_folder(folder):
            return "new"
        if not resume:
            raise RunError(f"run folder {folder} already exists; pass --resume to continue it or "
                           "--overwrite to replace it")
        check_resumable(folder, cfg)
        status = read_status(folder) or {}
        has_checkpoint = (folder / CHECKPOINT_FILE).exists()
        if status.get("status") != "done":
            return "resume" if has_checkpoint else "restart"
        if status.get("epoch", cfg.epochs) >= _last_epoch(cfg):
            return "done"
        if has_checkpoint:
            return "resume"
        if cfg.time_budget_s is not None:  # a budgeted call leaves a finished prefix as it is
            return "done"
        raise RunError(f"{folder} is a finished prefix (epochs 0-{status.get('epoch')}) without its checkpoint; "
                       "it cannot be extended: pass --overwrite to train it again from the start")

    @classmethod
    def open(cls, cfg: TrainConfig, runs_dir: str | Path, mode: str, device) -> "RunRecord":
        """Create the folder (mode "new" / "restart") or read it back to continue ("resume")."""
        folder = run_folder(runs_dir, cfg)
        rec = cls(cfg, folder)
        if mode == "resume":
            rec._read_back(device)
            return rec
        try:
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        except OSError as exc:
            raise RunError(f"cannot write the run folder {folder} ({exc.strerror}); choose a writable --runs-dir")
        write_json_atomic(folder / CONFIG_FILE, cfg.to_dict())
        return rec

    def _read_back(self, device) -> None:
        import torch
        folder, path = self.folder, self.checkpoint_path
        earlier = read_json(folder / PROVENANCE_FILE) if (folder / PROVENANCE_FILE).exists() else {}
        recorded = earlier.get("device", {})
        self.earlier_training = earlier.get("training")
        self.earlier_changes = list(earlier.get("execution_changes", []))
        self.started_config = read_json(folder / CONFIG_FILE)
        self.earlier_device = (recorded["type"], recorded.get("name")) if "type" in recorded else None
        if device.type == "cpu" and recorded.get("type") == "cpu" and recorded.get("threads") not in (
                None, torch.get_num_threads()):
            raise RunError(f"{folder} was trained with {recorded['threads']} CPU threads and this process has "
                           f"{torch.get_num_threads()}; an exact resume needs the same: pass --threads "
                           f"{recorded['threads']}")
        here = cpu_description()
        self.earlier_cpus = list(recorded.get("earlier_cpus", []))
        if device.type == "cpu" and recorded.get("type") == "cpu" and "cpu" in recorded and (
                recorded["cpu"], recorded.get("cpu_capability")) != (here["cpu"], here["cpu_capability"]):
            self.earlier_cpus.append({"cpu": recorded["cpu"], "cpu_capability": recorded.get("cpu_capability")})
            warnings.warn(f"{folder}: its first epochs were trained on {recorded['cpu']} "
                          f"({recorded.get('cpu_capability')}), this is {here['cpu']} ({here['cpu_capability']}): "
                          f"the resumed epochs round differently, so the run will not equal an uninterrupted one "
                          f"bit for bit (provenance.json's device.earlier_cpus records it)", stacklevel=2)
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # truncated, corrupt, or not a checkpoint
            raise RunError(f"{path} is damaged ({type(exc).__name__}); pass --overwrite to train the run again") from exc
        self.resume_state, self.start_epoch, self.train_seconds = state, state["epoch"], state["train_seconds"]
        # a time budget's stop row off the evaluation schedule is the end of a prefix, not part of the run that
        # goes on from it: dropped, so the longer run has the uninterrupted run's rows (and one grid of epochs)
        scheduled = {0, *(self.cfg.eval_epochs or ())}
        self.metrics_rows = [r for r in read_rows_csv(folder / METRICS_FILE)
                             if r["epoch"] <= self.start_epoch and r["epoch"] in scheduled]
        self.epoch_rows = [r for r in read_rows_csv(folder / EPOCHS_FILE) if r["epoch"] <= self.start_epoch]
        self.snapshots = {e: s for e, s in load_snapshots(folder / SNAPSHOTS_FILE).items() if e <= self.start_epoch}

    def start(self, data, device, training: dict[str, Any] | None = None) -> None:
        """Write provenance.json (with ``training``, how the engine trains the run: :meth:`Engine.describe
        <lsnc.training.engine.Engine.describe>`) and mark the run running."""
        prov = provenance(self.cfg, data.description, data.label, device)
        if training is not None:
            prov["training"] = {**training, "since_epoch": self.start_epoch}
            before = self.earlier_training
            if before is not None:   # resumed: how the earlier epochs trained, where that differs (the oldest first)
                kept = before.get("earlier", [])
                old = {k: v for k, v in before.items() if k != "earlier"}
                if {k: v for k, v in old.items() if k != "since_epoch"} != training:
                    kept = [*kept, old]
                if kept:
                    prov["training"]["earlier"] = kept
        if self.earlier_cpus:
            prov["device"]["earlier_cpus"] = self.earlier_cpus
        changes = self._execution_changes(device)
        if changes:
            prov["execution_changes"] = changes
        write_json_atomic(self.folder / PROVENANCE_FILE, prov)
        write_status(self.folder, "running", self.start_epoch)

    def _execution_changes(self, device) -> list[dict[str, Any]]:
        """provenance.json's ``execution_changes``: for a resumed run, one entry per start that changed how it
        executes, each in effect from its epoch on: ``{"since_epoch": E, "device": the device type it trained on,
        ("gpu": its model, on CUDA), "changed": {option: [as started, then]}}``, the execution options
        (lsnc.config.ROLES) that differ from config.json's, which keeps those it started with (``{}``: back to them).
        A start that changes nothing (options, device type, GPU model) adds nothing; entries of a resume killed before
        its first checkpoint (from this start's epoch on) are dropped, as its epochs are."""
        if self.started_config is None:
            return []
        kept = [c for c in self.earlier_changes if c.get("since_epoch", 0) < self.start_epoch]
        now = self.cfg.to_dict()
        defaults = field_defaults()
        started = {k: self.started_config.get(k, defaults[k]) for k in fields_with("execution")}
        changed = {k: [v, now[k]] for k, v in started.items() if v != now[k]}
        in_effect = kept[-1]["changed"] if kept else {}
        here = (device.type, gpu_model(device))
        if changed != in_effect or (self.earlier_device is not None and here != self.earlier_device):
            gpu = {"gpu": here[1]} if here[1] else {}
            kept.append({"since_epoch": self.start_epoch, "device": device.type, **gpu, "changed": changed})
        return kept

    # ------------------------------------------------------------------ while training

    def add_epoch(self, row: dict[str, Any]) -> None:
        self.epoch_rows.append(row)
        write_rows_csv(self.folder / EPOCHS_FILE, self.epoch_rows)

    def add_metrics(self, row: dict[str, Any]) -> None:
        self.metrics_rows.append(row)
        write_rows_csv(self.folder / METRICS_FILE, self.metrics_rows)

    def add_snapshot(self, epoch: int, snapshot: dict) -> None:
        self.snapshots[epoch] = snapshot
        save_snapshots(self.folder / SNAPSHOTS_FILE, self.snapshots)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch
        write_atomic(self.checkpoint_path, lambda p: torch.save(state, p))

    def running(self, epoch: int) -> None:
        write_status(self.folder, "running", epoch)

    def failed(self, epoch: int, exc: BaseException) -> None:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        write_status(self.folder, "failed", epoch, error=reason)

    def done(self, epoch: int, stopped_by: str | None) -> None:
        extra = {"recipe_epochs": self.cfg.epochs, "stopped_by": stopped_by} if stopped_by else {}
        write_status(self.folder, "done", epoch, train_seconds=self.train_seconds, **extra)


def _last_epoch(cfg: TrainConfig) -> int:
    """The epoch a run of this config ends on: the recipe's last, or its --stop-epoch."""
    return cfg.stop_epoch if cfg.stop_epoch is not None else cfg.epochs


class CheckpointWriter:
    """The runs' checkpoints, written in a background thread while the next epoch trains (``background``), or in line.

    Writing a ResNet-18's checkpoint (about 90 MB with its momentum) takes 0.1-0.4 s, a tenth of an epoch on a GPU,
    whose host CPU is idle while it trains; a CPU that trains has no core to spare for it (measured on 2 cores:
    writing behind a training on both is slower than in line, and faster where the training takes one), so the loop
    writes behind on a GPU only. In the background, :meth:`save` copies the states into host memory (so the next
    epoch's in-place updates cannot reach them; on a GPU a few milliseconds at the end of an epoch, when the loop
    has synchronized anyway), waits until the previous save is on disk, and queues this one: each run's checkpoint
    (atomic: the previous file stays until the new one is whole), then its status.json ("running", this epoch).
    :meth:`wait` returns once the queued save is on disk and raises its error if it failed; the loop calls it before
    a run is marked done or failed. A run killed at any moment resumes from a whole checkpoint (the rows written
    after it are dropped then), and ``epoch`` is the epoch of the last checkpoint on disk. The tables are the same
    as with writes in line: only when the bytes reach the disk changes. The thread touches no GPU: a CUDA-graph
    capture in the training thread must see no other thread's CUDA work (and the loop waits for the write before an
    epoch that captures one: the first, and the first at a new lr)."""

    def __init__(self, records: list[RunRecord], epoch: int, background: bool = True):
        self.records, self.epoch = records, epoch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lsnc-checkpoint") if background else None
        self._pending: tuple[Future, int] | None = None

    def save(self, states: list[dict[str, Any]], epoch: int) -> None:
        """Write (or queue) the checkpoints of ``epoch``, one state per record as ``Engine.checkpoint_state`` gives
        it."""
        behind = self._pool is not None
        states = [{**(_copied(state) if behind else state), "epoch": epoch, "train_seconds": r.train_seconds}
                  for r, state in zip(self.records, states)]
        if not behind:
            self._write(states, epoch)
            self.epoch = epoch
            return
        self.wait()
        self._pending = (self._pool.submit(self._write, states, epoch), epoch)

    def _write(self, states: list[dict[str, Any]], epoch: int) -> None:
        for r, state in zip(self.records, states):
            r.save_checkpoint(state)
            r.running(epoch)

    def wait(self) -> None:
        """Until the queued save is on disk; re-raises its error (then ``epoch`` stays the last whole one)."""
        if self._pending is None:
            return
        future, epoch = self._pending
        self._pending = None
        future.result()
        self.epoch = epoch

    def close(self) -> None:
        """Wait for the queued save (its error is raised), and stop the thread."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def _copied(obj: Any) -> Any:
    """A copy of a checkpoint state in host memory: tensors copied to the CPU (a view becomes a tensor of its own;
    torch.load's map_location puts them back on the run's device), dicts, lists and tuples rebuilt as the same kind
    (a scheduler's milestones stay a Counter, a state_dict an OrderedDict with its _metadata: the checkpoint is
    the one an inline write makes), other values deep-copied."""
    import copy

    import torch
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        out = copy.copy(obj)   # its kind and attributes; every value is replaced below
        for k, v in obj.items():
            out[k] = _copied(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copied(v) for v in obj)
    return copy.deepcopy(obj)
