"""Train a list of runs in this process: skip the done, resume the interrupted, claim each run while it trains,
fuse runs that differ only in δ and seed (up to ``fuse`` at a time), and keep going when one fails.
Used by ``lsnc reproduce`` directly and by every cluster job."""

from __future__ import annotations

import traceback
from pathlib import Path

from ..config import TrainConfig
from ..runs.format import CHECKPOINT_FILE, RunError, read_status
from ..runs.lifecycle import RunClaimed, run_folder, run_key, run_status
from ..training import train_many
from ..training.engine import FUSABLE_FIELDS

OUTCOMES = ("skipped (done)", "trained", "resumed", "restarted (no checkpoint)", "claimed elsewhere", "failed")


def fusable_groups(configs: list[TrainConfig], fuse: int,
                   runs_dir: str | Path | None = None) -> list[list[TrainConfig]]:
    """Consecutive chunks of at most ``fuse`` configs that share everything but δ and seed (and, given
    ``runs_dir``, the epoch they would continue from: runs trained together start from one epoch)."""
    groups: dict[str, list[TrainConfig]] = {}
    for c in configs:
        key = repr(sorted((k, v) for k, v in c.to_dict().items() if k not in FUSABLE_FIELDS))
        if runs_dir is not None and fuse > 1:
            key += f"@{_progress_epoch(runs_dir, c)}"
        groups.setdefault(key, []).append(c)
    return [g[i:i + max(1, fuse)] for g in groups.values() for i in range(0, len(g), max(1, fuse))]


def _progress_epoch(runs_dir, cfg: TrainConfig) -> int:
    """The epoch an unfinished run would continue from (0 without a checkpoint)."""
    folder = run_folder(runs_dir, cfg)
    if not (folder / CHECKPOINT_FILE).exists():
        return 0
    try:
        return int((read_status(folder) or {}).get("epoch", 0))
    except RunError:
        return 0


def train_configs(configs: list[TrainConfig], runs_dir: str | Path, *, fuse: int = 1, dry_run: bool = False,
                  progress: bool = True, log=print) -> dict[str, list[str]]:
    """Train what is not done; returns the run keys per outcome (see OUTCOMES)."""
    outcome: dict[str, list[str]] = {k: [] for k in OUTCOMES}
    todo = []
    for cfg in configs:
        try:
            status = run_status(runs_dir, cfg)
        except RunError as exc:  # a damaged status.json: this run fails, the others go on
            outcome["failed"].append(f"{run_key(cfg)}: {exc}")
            continue
        if status == "done":
            outcome["skipped (done)"].append(run_key(cfg))
        elif dry_run:
            log(f"would {'resume' if status else 'train'}: {run_key(cfg)}")
        else:
            started = status is not None
            resumable = started and (run_folder(runs_dir, cfg) / CHECKPOINT_FILE).exists()
            todo.append((cfg, "resumed" if resumable else "restarted (no checkpoint)" if started else "trained"))
    action = {run_key(c): a for c, a in todo}
    for group in fusable_groups([c for c, _ in todo], fuse, runs_dir):
        _train_group(group, runs_dir, outcome, action, progress, log)
    return outcome


def _train_group(group: list[TrainConfig], runs_dir, outcome: dict, action: dict, progress: bool, log) -> None:
    keys = [run_key(c) for c in group]
    try:
        train_many(group, runs_dir, resume=True, progress=progress, log=log)  # claims each run
        for k in keys:
            outcome[action[k]].append(k)
    except RunClaimed:
        outcome["claimed elsewhere"] += keys
    except Exception as exc:  # one failure must not stop the rest of the matrix
        if len(group) > 1:  # e.g. one member diverged: the others go on, each alone, from their checkpoints
            log(f"fused group failed ({type(exc).__name__}: {exc}); training its runs one at a time")
            for c in group:
                _train_group([c], runs_dir, outcome, action, progress, log)
            return
        outcome["failed"] += [f"{k}: {type(exc).__name__}: {exc}" for k in keys]
        log(traceback.format_exc(limit=3))


def log_outcome(outcome: dict[str, list[str]], log=print) -> None:
    for what, keys in outcome.items():
        log(f"{what}: {len(keys)}")
        for k in keys if what != "skipped (done)" else []:
            log(f"  {k}")
