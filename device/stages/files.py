"""Reading back the small files windows write: plan.env and keep.env (KEY="value" lines, never sourced), a speed
matrix's speed.json, a run's status.json; the window id every window's speed folder is named by; and plan.env's
keys: the default plan and the ways a set trains together (PLAN_MODE)."""

from __future__ import annotations

import json
import re
from pathlib import Path

# Copies of lsnc's names, since the window runs its stages without lsnc; tests/test_device_window.py checks each
# against lsnc (and device/unpack.py's own copies, which runs without this package too).
WINDOW_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{4}Z$")   # device/unpack.sh's speed folder names (lsnc.book.windows)
CHECKPOINT_FILE = "checkpoint.pt"   # lsnc.runs.format.CHECKPOINT_FILE: never packed, never committed
PLAN_LINE = re.compile(r'^PLAN_[A-Z]+="[0-9a-z. ]*"$')   # plan.env: numbers and plain words only
KEEP_LINE = re.compile(r'^CONT_[A-Z_]+="[0-9A-Za-z. _-]*"$')   # keep.env: the same, and names
#: The plan when no matrix gives one (benchmarks/training_plan.py writes the same keys)
DEFAULT_PLAN = {"PLAN_K": "2", "PLAN_AMP": "none", "PLAN_DELTAS": "0 0.05", "PLAN_SEEDS": "0", "PLAN_TWIN": "0",
                "PLAN_MODE": "fused", "PLAN_GRAPHS": "0"}
MODES = ("fused", "streams", "concurrent")   # PLAN_MODE: one fused network, K networks on CUDA streams, processes


def read_assignments(path: Path, line: re.Pattern, required: str | None = None) -> dict[str, str] | None:
    """KEY="value" lines of ``path`` as a dict, or None when it is missing or any line is not of ``line``'s form
    (or ``required`` is not among the keys): files written by a script, never sourced."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    if not lines or not all(line.match(x) for x in lines):
        return None
    values = {x.split("=", 1)[0]: x.split("=", 1)[1][1:-1] for x in lines}
    return values if required is None or required in values else None


def read_plan(path: Path) -> dict[str, str] | None:
    """plan.env's values, or None where it is invalid: see read_assignments; PLAN_K, PLAN_DELTAS and PLAN_SEEDS,
    where given, must not be blank (a set with no seed trains nothing)."""
    plan = read_assignments(path, PLAN_LINE, "PLAN_K")
    if plan is None or not all(plan.get(k, "given").strip() for k in ("PLAN_K", "PLAN_DELTAS", "PLAN_SEEDS")):
        return None
    return plan


def cell_status(speed_json: Path, name: str) -> str:
    """The status of the matrix's cell ``name`` (a graph check): "missing" where the matrix has no such cell,
    "not run" where there is no readable matrix."""
    try:
        cells = json.loads(speed_json.read_text())["cells"]
        return next((c["status"] for c in cells if c["name"] == name), "missing")
    except (OSError, ValueError, KeyError, TypeError):
        return "not run"


def stopped_after(status_json: Path) -> str:
    """The epoch a run's status.json says it stopped after ("" when unreadable)."""
    try:
        m = re.search(r'"epoch": *([0-9]*)', status_json.read_text())
    except OSError:
        return ""
    return m.group(1) if m else ""


def last_line(path: Path) -> str:
    return (path.read_text(errors="replace").splitlines() or [""])[-1]


def human_size(n: float) -> str:
    """Bytes as `du -h` writes them: 980, 9.2K, 12K, 3.4M."""
    for unit in ("", "K", "M"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "" or n >= 10 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}G"
