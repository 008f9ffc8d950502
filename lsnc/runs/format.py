"""The run-folder format, and loading runs into pandas.

A run lives in ``<runs_dir>/<group>/<run-name>/`` (group: the dataset's name unless ``--group`` or the preset names
one)::

    config.json      the full resolved TrainConfig
    provenance.json  lsnc commit, package versions, device, dataset description (source, copy, subsets, fingerprint);
                     "training": how the code trained it, read from the objects it built (the runs it trained with
                     and how: alone, fused or streams; network class and parameter count; the optimizer's and lr
                     schedule's settings as torch holds them; batches; loss), with "since_epoch" and, for a run
                     resumed another way, the "earlier" ways (runs trained before this was recorded lack it);
                     "execution_changes": for a run resumed with other execution options than config.json's (the
                     role "execution" of lsnc.config.ROLES: device, threads, compile, ...) or on another kind of
                     device or GPU model, one entry per start that changed them, in effect from its epoch on:
                     {"since_epoch", "device": the device type, "gpu": its model (CUDA only), "changed": {option:
                     [as started, then]}} ({}: back to the start's)
    status.json      {"status": "running" | "done" | "failed", "epoch": last completed epoch, "error": ...;
                     done: "train_seconds"}; a "done" run whose epoch is below config.json's "epochs" is a
                     finished *prefix* of its recipe (stopped by a time budget or --stop-epoch at an evaluated
                     epoch; "stopped_by" says which, "recipe_epochs" repeats the recipe's length): its rows are
                     the recipe's run up to that epoch, never a rescaled schedule
    metrics.csv      one row per evaluated epoch (epoch 0 = initialisation): train-set NC, test metrics, calibration;
                     the evaluated epochs are config.json's "eval_epochs", and the epoch where a time budget stopped
                     the run, on the schedule or not (resumed, the run drops a stop row off the schedule); its
                     "lr" is the scheduler's after the epoch, i.e. the next epoch's (0.005 in the row of epoch 150
                     of the 800-epoch recipe): the lr an epoch trained at is epochs.csv's
    epochs.csv       one row per trained epoch: the lr it trained at, running train loss / accuracy, wall seconds
    snapshots.npz    low-dimensional views of features, class means and classifier rows at a few epochs
    checkpoint.pt    latest training state for --resume (git-ignored; not part of the committed result)

Beside the run folders, not part of a run: ``<group>/.<name>.lock`` (the exclusive claim of the process training
it, lsnc.runs.lifecycle) and ``<runs_dir>/.jobs/`` (job records and logs of ``lsnc reproduce --executor``).

Every file is written atomically, so a killed run leaves each file either old or new, never torn.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..atomic import write_json_atomic, write_text_atomic
from ..vocab import NC_COLUMNS, ece_column

#: The files of a run folder, named once (the module docstring says what each holds).
CONFIG_FILE, PROVENANCE_FILE, STATUS_FILE = "config.json", "provenance.json", "status.json"
METRICS_FILE, EPOCHS_FILE = "metrics.csv", "epochs.csv"
SNAPSHOTS_FILE, CHECKPOINT_FILE = "snapshots.npz", "checkpoint.pt"

STATUSES = ("running", "done", "failed")
#: Columns that measure the wall clock, not the run (epochs.csv's seconds, metrics.csv's train_seconds and
#: eval_seconds): they differ between any two machines.
TIMING_COLUMNS = frozenset({"seconds", "train_seconds", "eval_seconds"})
#: Columns every metrics row of a finished run has as finite numbers: the paper's NC1-NC3, the losses and
#: errors, and the ECE. A run that cannot produce them (diverged, or collapsed to zero features) is failed.
REQUIRED_FINITE = (*NC_COLUMNS.values(), "train_loss_ce", "train_error", "test_error", "test_loss_ce_all",
                   ece_column())


class RunError(RuntimeError):
    """A run folder that cannot be used as asked; the message says what to do."""


class RunDamaged(UserWarning):
    """A run folder whose files cannot be read: it is left out of every table and figure."""


def write_status(folder: Path, status: str, epoch: int, error: str | None = None, **extra: Any) -> None:
    assert status in STATUSES, status
    write_json_atomic(folder / STATUS_FILE, {"status": status, "epoch": epoch, "error": error, **extra})


def read_json(path: Path) -> dict[str, Any]:
    """A run file's JSON object; a damaged file raises RunError naming it."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc
    if not isinstance(value, dict):
        raise RunError(f"{path} is damaged (not a JSON object)")
    return value


def read_status(folder: Path) -> dict[str, Any] | None:
    """The run's status.json, or None when the folder has none (never started)."""
    path = Path(folder) / STATUS_FILE
    return read_json(path) if path.exists() else None


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole table atomically (tables are small: one row per evaluated epoch)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    write_text_atomic(path, buf.getvalue())


def read_rows_csv(path: Path) -> list[dict[str, Any]]:
    """A run table's rows; a truncated or malformed table raises RunError naming the file and the row."""
    if not Path(path).exists():
        return []
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            width = len(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc
    for i, row in enumerate(rows, start=2):
        if None in row or sum(v is not None for v in row.values()) != width or "epoch" not in row:
            raise RunError(f"{path} is damaged (line {i} has the wrong number of fields: truncated?)")
    return [{k: _parse(v) for k, v in row.items()} for row in rows]


def _fmt(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else v  # repr keeps every digit: a resumed run compares exactly


def _parse(v: str) -> Any:
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    provenance: dict[str, Any]
    status: dict[str, Any]
    metrics: pd.DataFrame
    epochs: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dataset(self) -> str:
        """The run's *group*: the folder it lives in (``cifar10-jpeg-150ep``), which the book calls a dataset group
        and pages select by. The dataset itself is ``config["dataset"]`` (``cifar10-jpeg``), its label
        ``provenance["dataset"]["label"]`` (``CIFAR-10 (JPEG copy)``)."""
        return self.path.parent.name

    @property
    def epochs_reached(self) -> int:
        """The last completed epoch: the recipe's ``epochs`` for a complete run, fewer for a prefix."""
        return int(self.status.get("epoch", self.config["epochs"]))

    @property
    def is_prefix(self) -> bool:
        """A finished run stopped before the recipe's last epoch (epochs 0-E of the recipe, exactly)."""
        return self.status.get("status") == "done" and self.epochs_reached < int(self.config["epochs"])

    @property
    def label(self) -> str:
        """The dataset label to print beside every figure (e.g. "CIFAR-10 (JPEG copy)")."""
        return self.provenance.get("dataset", {}).get("label", self.dataset)


def load_run(path: str | Path) -> Run:
    """Read a run folder. Raises RunError naming the file when it is damaged: unreadable JSON, a truncated
    table, or a finished run whose metrics table is missing or holds a non-finite value in REQUIRED_FINITE."""
    path = Path(path)
    if not (path / CONFIG_FILE).exists():
        raise RunError(f"{path} is not a run folder (no {CONFIG_FILE})")
    config = read_json(path / CONFIG_FILE)
    metrics = pd.DataFrame(read_rows_csv(path / METRICS_FILE))
    epochs = pd.DataFrame(read_rows_csv(path / EPOCHS_FILE))
    prov = read_json(path / PROVENANCE_FILE) if (path / PROVENANCE_FILE).exists() else {}
    status = read_status(path) or {"status": "unknown"}
    if status.get("status") == "done":
        problem = non_finite(metrics.to_dict("records")) if not metrics.empty else "no rows (missing or empty)"
        if problem:
            raise RunError(f"{path / METRICS_FILE} is damaged: {problem}")
    return Run(path, config, prov, status, metrics, epochs)


def non_finite(rows: list[dict[str, Any]]) -> str | None:
    """The first REQUIRED_FINITE value that is missing or not finite, as "<column> at epoch E", else None."""
    for row in rows:
        for col in REQUIRED_FINITE:
            v = row.get(col)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"{col} is {v} at epoch {row.get('epoch')}"
    return None


def find_runs(runs_dir: str | Path, dataset: str | None = None, status: str | None = "done") -> list[Run]:
    """All runs under ``runs_dir`` (optionally one group; by default only finished runs), sorted by path.
    A damaged run is left out with one warning line naming the file (:func:`damaged_runs` lists them)."""
    runs = []
    for path in _run_paths(runs_dir, dataset):
        try:
            runs.append(load_run(path))
        except RunError as exc:
            warnings.warn(f"skipped a damaged run: {exc}", RunDamaged, stacklevel=2)
    return [r for r in runs if status is None or r.status.get("status") == status]


def damaged_runs(runs_dir: str | Path, dataset: str | None = None) -> list[tuple[Path, str]]:
    """(folder, what is wrong) of every run under ``runs_dir`` that cannot be read."""
    out = []
    for path in _run_paths(runs_dir, dataset):
        try:
            load_run(path)
        except RunError as exc:
            out.append((path, str(exc)))
    return out


def _run_paths(runs_dir: str | Path, dataset: str | None) -> list[Path]:
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    pattern = f"{dataset}/*/{CONFIG_FILE}" if dataset else f"*/*/{CONFIG_FILE}"
    return [p.parent for p in sorted(root.glob(pattern))]


CONFIG_COLUMNS = ("delta", "seed", "model", "width", "ufm", "epochs", "lambda_w", "lambda_h", "lambda_b",
                  "weight_decay", "train_per_class", "amp", "tf32")


def runs_table(runs: Iterable[Run], table: str = "metrics") -> pd.DataFrame:
    """Long table of many runs: every row of each run's metrics (or epochs) table plus identifying columns
    (dataset, label, run name, and the config values that distinguish runs)."""
    frames = []
    for r in runs:
        df = getattr(r, table).copy()
        if df.empty:
            continue
        df.insert(0, "run", r.name)
        df.insert(0, "label", r.label)
        df.insert(0, "dataset", r.dataset)
        for key in CONFIG_COLUMNS:
            df[key] = r.config.get(key)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
