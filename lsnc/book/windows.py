"""The GPU windows that trained a run group: one row per window, read from what each window brought back.

device/unpack.sh puts every window's ``summary.txt`` and ``env.txt`` into ``runs/<group>/speed/<window-id>/``
beside the runs it trained (lsnc reads no ``speed/`` folder as a run). ``summary.txt`` has ``key: value`` lines
(``elapsed_s``, ``budget_s``, ``matrix: reused <id>``, ``continued: window <id> after epoch <E>`` with
``continued.after_epoch: <E>``, ``run_group``, the streams probe's ``probe.mode``, ``probe.k``,
``probe.streams_over_fused`` and ``probe.k4_keep``, the ``train.<stage>`` commands, ``fallback`` lines) and one
``run.<name>: {status json}`` line per run folder the window packed; ``env.txt`` has the nvidia-smi table;
``speed.json`` (a matrix) or ``check.json`` (the cells a window timed before training) the evaluation cell, one
full evaluation against a bare forward pass on that GPU.
:func:`windows_table` turns them into the runs page's table: which GPU, how long the command ran, how the plan
was made, each run's epochs, and the model-epochs the window trained (a continuation counts only the epochs it
added). Windows are listed once even when their speed folder sits in two groups (a bf16 set and its TF32 twin).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ..runs import default_runs_dir

__all__ = ["windows_table", "read_window"]

WINDOW_ID = re.compile(r"^[0-9]{8}T[0-9]{4}Z$")   # device/unpack.py names the speed folders so
GPU_NAME = re.compile(r"^\|\s+\d+\s+(NVIDIA[^|]*?)\s{2,}", re.M)


def read_window(folder: Path) -> dict | None:
    """One window's row from ``folder`` (``speed/<window-id>/``); None when it holds no summary.txt."""
    try:
        summary = (folder / "summary.txt").read_text()
    except OSError:
        return None
    fields: dict[str, str] = {}
    runs: dict[str, dict] = {}
    fallbacks: list[str] = []
    for line in summary.splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            continue
        if key.startswith("run."):
            try:
                runs[key[4:]] = json.loads(value)
            except ValueError:
                runs[key[4:]] = {}
        elif key == "fallback":
            fallbacks.append(value.strip())
        elif key == "stalled":   # the window's watchdog stopped a training stage that wrote nothing
            fallbacks.append(f"{value.strip()} stopped as hung")
        else:
            fields.setdefault(key, value.strip())
    try:
        gpu = GPU_NAME.search((folder / "env.txt").read_text())
    except OSError:
        gpu = None
    start = 0
    how = "speed matrix"
    if "continued" in fields:
        start = _int(fields.get("continued.after_epoch")) or 0
        how = f"continued {fields['continued']}"
    elif fields.get("matrix", "").startswith("reused"):
        how = f"plan from window {fields['matrix'].split()[-1]}"
    elif fields.get("matrix", "").startswith("skipped"):
        how = "default plan"
    if "probe.mode" in fields:  # the streams probe on the window's machine (device/stages/plan.py)
        ratio = fields.get("probe.streams_over_fused")
        how += (f"; probe: streams {ratio}x fused" if ratio
                else f"; probe: {fields['probe.mode']} (streams not measured or not checked)")
        if "probe.k4_keep" in fields:  # four networks on streams timed too: K = 4 where each member keeps enough
            how += f", K={fields.get('probe.k', '?')} (K=4 keeps {fields['probe.k4_keep']} of a member's epochs)"
    done = {name: s for name, s in runs.items() if s.get("status") == "done" and isinstance(s.get("epoch"), int)}
    return {"window": folder.name, "GPU": gpu.group(1).strip() if gpu else "",
            "command s": _int(fields.get("elapsed_s")), "budget s": _int(fields.get("budget_s")), "plan": how,
            "trained as": trained_as(fields, fallbacks),
            "runs (epochs reached)": ", ".join(f"{name} 0–{s['epoch']}" for name, s in sorted(done.items())),
            "model-epochs": sum(max(s["epoch"] - start, 0) for s in done.values()),
            "training s": round(max((float(s.get("train_seconds") or 0) for s in done.values()), default=0.0)),
            "evaluation / forward": evaluation_cost(folder), "exit": fields.get("exit", "")}


def evaluation_cost(folder: Path) -> str:
    """The window's evaluation cell (benchmarks/speed_matrix.py), from its matrix or its check stage: one full
    evaluation (train-set NC + test calibration) against a bare forward pass over the same images, e.g. "1.64x
    (0.72 s / 0.44 s)", and where that cell timed its parts, how far each pass is above its own forward; "" where
    the window timed none."""
    for name in ("speed.json", "check.json"):
        try:
            cells = json.loads((folder / name).read_text())["cells"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not isinstance(cells, list):
            continue
        ev = next((c for c in cells if isinstance(c, dict) and c.get("pipeline") == "evaluation"
                   and c.get("status") == "ok"), None)
        if ev is None or not all(isinstance(ev.get(k), (int, float)) and ev[k] > 0
                                 for k in ("evaluate_s", "bare_forward_s")):
            continue
        total, forward = ev["evaluate_s"], ev["bare_forward_s"]
        text = f"{total / forward:.2f}x ({total:.2f} s / {forward:.2f} s)"
        parts = [(label, ev.get(part), ev.get(floor)) for label, part, floor in (
            ("train pass", "train_pass_s", "forward_train_s"), ("test pass", "test_pass_s", "forward_test_s"))]
        if all(isinstance(x, (int, float)) and x > 0 for _, a, b in parts for x in (a, b)):
            text += "; " + ", ".join(f"{label} {a / b:.2f}x" for label, a, b in parts)
            if isinstance(ev.get("finalize_s"), (int, float)):
                text += f", metrics {ev['finalize_s']:.2f} s"
        return text
    return ""


def trained_as(fields: dict[str, str], fallbacks=()) -> str:
    """How the window trained its set, read off the `lsnc train` commands its summary logs (``train.<stage>``; a
    bf16 set's tf32 twin, ``train.twin``, aside): fused, on CUDA streams or as concurrent processes, bf16 or TF32,
    with CUDA graphs, as its first command asked; then each stage that ran again without graphs (``<stage>-nographs``)
    and each fallback (``fallback:`` and ``stalled:`` lines, in order)."""
    stages = {k[len("train."):]: v for k, v in fields.items() if k.startswith("train.") and k != "train.twin"}
    if not stages:
        return ""
    first = next(iter(stages.values()))
    pairs = [k for k in stages if k.startswith("d") and "-s" in k]   # concurrent processes, one per (δ, seed)
    if pairs and len(pairs) == len(stages):
        mode = f"{len(pairs)} concurrent processes"
    else:
        mode = "streams" if "--together streams" in first else "fused"
    text = f"{mode}, {'bf16' if '--amp bf16' in first else 'TF32'}" + (" + CUDA graphs" if "--cuda-graphs" in first
                                                                         else "")
    notes = [f"{k[:-len('-nographs')]} again without graphs" for k in stages if k.endswith("-nographs")]
    return "; ".join([text, *notes, *fallbacks])


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def windows_table(runs_dir: str | Path | None = None, groups=None) -> pd.DataFrame:
    """One row per GPU window found under ``runs_dir`` (default: the repository's runs/), in the order they ran;
    ``groups`` (names of run groups) limits the search. ``training s`` is the longest run's training seconds
    (the whole run's, a continued run included); ``model-epochs`` what this window added. Empty when no group has
    a ``speed/`` folder."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    rows: dict[str, dict] = {}
    for folder in sorted(root.glob("*/speed/*")):
        if not folder.is_dir() or not WINDOW_ID.match(folder.name):
            continue
        if groups is not None and folder.parent.parent.name not in set(groups):
            continue
        row = read_window(folder)
        if row is None:
            continue
        row["groups"] = folder.parent.parent.name
        if folder.name in rows:  # one window, two groups (a bf16 set and its twin): one row
            rows[folder.name]["groups"] += f", {row['groups']}"
        else:
            rows[folder.name] = row
    if not rows:
        return pd.DataFrame()
    columns = ["window", "GPU", "groups", "plan", "trained as", "runs (epochs reached)", "model-epochs", "training s",
               "evaluation / forward", "command s", "budget s", "exit"]
    return pd.DataFrame([rows[k] for k in sorted(rows)])[columns]
