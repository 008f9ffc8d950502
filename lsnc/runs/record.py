"""Writing one run folder while it trains: opening (new or resumed), the two tables, snapshots, status and
checkpoint. The format itself is documented in :mod:`lsnc.runs.format`.

A checkpoint holds the plain model's ``state_dict``, the optimizer's and the scheduler's, the epoch and the
training seconds so far; rows written after the checkpoint (a kill between a table write and the checkpoint)
are dropped on resume and redone, so a resumed run writes the same tables as an uninterrupted one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_atomic, write_json_atomic
from ..config import TrainConfig
from ..snapshots import load_snapshots, save_snapshots
from .format import RunError, read_rows_csv, read_status, write_rows_csv, write_status
from .lifecycle import check_resumable, provenance, run_folder


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

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.pt"

    # ------------------------------------------------------------------ opening

    @classmethod
    def check(cls, cfg: TrainConfig, runs_dir: str | Path, *, resume: bool, overwrite: bool) -> str:
        """Before anything is written: "new", "resume", or "done" (nothing to do). Raises RunError."""
        folder = run_folder(runs_dir, cfg)
        if not folder.exists() or overwrite:
            return "new"
        if not resume:
            raise RunError(f"run folder {folder} already exists; pass --resume to continue it or "
                           "--overwrite to replace it")
        if not (folder / "config.json").exists():
            return "new"
        check_resumable(folder, cfg)
        status = read_status(folder) or {}
        if status.get("status") != "done":
            return "resume"
        if status.get("epoch", cfg.epochs) >= _last_epoch(cfg):
            return "done"
        if not (folder / "checkpoint.pt").exists():
            if cfg.time_budget_s is not None:  # a budgeted call leaves a finished prefix as it is
                return "done"
            raise RunError(f"{folder} is a finished prefix (epochs 0-{status.get('epoch')}) without its checkpoint; "
                           "it cannot be extended: pass --overwrite to train it again from the start")
        return "resume"

    @classmethod
    def open(cls, cfg: TrainConfig, runs_dir: str | Path, mode: str, load) -> "RunRecord":
        """Create the folder (mode "new") or read it back for a resume; ``load(path)`` reads a checkpoint."""
        folder = run_folder(runs_dir, cfg)
        rec = cls(cfg, folder)
        if mode == "resume" and rec.checkpoint_path.exists():
            state = load(rec.checkpoint_path)
            rec.resume_state, rec.start_epoch, rec.train_seconds = state, state["epoch"], state["train_seconds"]
            rec.metrics_rows = [r for r in read_rows_csv(folder / "metrics.csv") if r["epoch"] <= rec.start_epoch]
            rec.epoch_rows = [r for r in read_rows_csv(folder / "epochs.csv") if r["epoch"] <= rec.start_epoch]
            rec.snapshots = {e: s for e, s in load_snapshots(folder / "snapshots.npz").items()
                             if e <= rec.start_epoch}
        else:
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            write_json_atomic(folder / "config.json", cfg.to_dict())
        return rec

    def start(self, data, device) -> None:
        write_json_atomic(self.folder / "provenance.json", provenance(self.cfg, data.description, data.label, device))
        write_status(self.folder, "running", self.start_epoch)

    # ------------------------------------------------------------------ while training

    def add_epoch(self, row: dict[str, Any]) -> None:
        self.epoch_rows.append(row)
        write_rows_csv(self.folder / "epochs.csv", self.epoch_rows)

    def add_metrics(self, row: dict[str, Any]) -> None:
        self.metrics_rows.append(row)
        write_rows_csv(self.folder / "metrics.csv", self.metrics_rows)

    def add_snapshot(self, epoch: int, snapshot: dict) -> None:
        self.snapshots[epoch] = snapshot
        save_snapshots(self.folder / "snapshots.npz", self.snapshots)

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
