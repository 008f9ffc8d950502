"""The run-folder format, and loading runs into pandas.

A run lives in ``<runs_dir>/<dataset>/<run-name>/``::

    config.json      the full resolved TrainConfig
    provenance.json  lsnc commit, package versions, device, dataset description (source, copy, subsets, fingerprint)
    status.json      {"status": "running" | "done" | "failed", "epoch": last completed epoch, "error": ...};
                     a "done" run whose epoch is below config.json's "epochs" is a finished *prefix* of its
                     recipe (stopped by a time budget or --stop-epoch at an evaluated epoch; "stopped_by" says
                     which): its rows are the recipe's run up to that epoch, never a rescaled schedule
    metrics.csv      one row per evaluated epoch (epoch 0 = initialisation): train-set NC, test metrics, calibration
    epochs.csv       one row per trained epoch: lr, running train loss / accuracy, wall seconds
    snapshots.npz    low-dimensional views of features, class means and classifier rows at a few epochs
    checkpoint.pt    latest training state for --resume (git-ignored; not part of the committed result)

Every file is written atomically, so a killed run leaves each file either old or new, never torn.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..atomic import write_json_atomic, write_text_atomic

STATUSES = ("running", "done", "failed")


class RunError(RuntimeError):
    """A run folder that cannot be used as asked; the message says what to do."""


def write_status(folder: Path, status: str, epoch: int, error: str | None = None, **extra: Any) -> None:
    assert status in STATUSES, status
    write_json_atomic(folder / "status.json", {"status": status, "epoch": epoch, "error": error, **extra})


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def read_status(folder: Path) -> dict[str, Any] | None:
    """The run's status.json, or None when the folder has none (never started)."""
    path = Path(folder) / "status.json"
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
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


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
    path = Path(path)
    if not (path / "config.json").exists():
        raise RunError(f"{path} is not a run folder (no config.json)")
    metrics = pd.DataFrame(read_rows_csv(path / "metrics.csv"))
    epochs = pd.DataFrame(read_rows_csv(path / "epochs.csv"))
    prov = read_json(path / "provenance.json") if (path / "provenance.json").exists() else {}
    status = read_status(path) or {"status": "unknown"}
    return Run(path, read_json(path / "config.json"), prov, status, metrics, epochs)


def find_runs(runs_dir: str | Path, dataset: str | None = None, status: str | None = "done") -> list[Run]:
    """All runs under ``runs_dir`` (optionally one dataset; by default only finished runs), sorted by path."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    pattern = f"{dataset}/*/config.json" if dataset else "*/*/config.json"
    runs = [load_run(p.parent) for p in sorted(root.glob(pattern))]
    return [r for r in runs if status is None or r.status.get("status") == status]


CONFIG_COLUMNS = ("delta", "seed", "model", "width", "ufm", "epochs", "lambda_w", "lambda_h", "lambda_b",
                  "weight_decay", "train_per_class")


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
