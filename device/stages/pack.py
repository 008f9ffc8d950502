"""Stage 4, always last, also after a failed stage or a signal: stop the children; write the summary's closing
lines (exit statuses and wall seconds of the stages, each run's status.json); pack run folders (no checkpoints),
speed table, logs and env.txt into $OUT/window.tar.gz (and speed.md beside it); keep the set's runs, checkpoints
included, for a later call on the same machine (keep.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

from .call import Window
from .files import CHECKPOINT_FILE, human_size
from .keep import keep_runs


def pack(w: Window, rc: int) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)   # a second signal must not cut the archive short
    for proc in w.children:
        if proc.poll() is None:
            proc.terminate()
    for proc in w.children:   # (with a timeout: a signal mid-wait elsewhere can leave Popen's wait lock held)
        try:
            proc.wait(timeout=20)   # timeout -k 10 kills what its SIGTERM did not stop
        except subprocess.TimeoutExpired:
            try:   # `timeout` leads its own process group: this takes its command along
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
    lines = [f"window_id: {w.window_id}", f"elapsed_s: {w.elapsed()}", f"budget_s: {w.s.budget_s}",
             f"matrix_cap_s: {w.s.matrix_s}", f"exit: {rc}"]
    lines += [f"stage_rc.{k}: {v}" for k, v in w.rc.items()]
    lines += [f"stage_s.{k}: {v}" for k, v in w.wall.items()]
    for status in sorted(w.runs.glob("*/*/status.json")):
        try:
            compact = re.sub(r"[\n ]", "", status.read_text(errors="replace"))
        except OSError as e:
            compact = f"unreadable: {e}"
        lines.append(f"run.{status.parent.name}: {compact}")
    speed_md = w.stage / "speed" / "speed.md"
    # each step by itself, so that a failing one still leaves the archive
    try:
        w.summary("\n".join(lines))
        if speed_md.is_file():
            shutil.copy(speed_md, Path(w.s.out) / "speed.md")
    except OSError as e:
        w.log(f"error: writing the summary or copying speed.md: {e}")
    # run folders without checkpoints (and without lock or temporary files)
    try:
        shutil.copytree(w.runs, w.stage / "runs", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(CHECKPOINT_FILE, ".*.lock", ".*.tmp"))
    except (OSError, shutil.Error) as e:
        w.log(f"error: copying the run folders into the archive: {e}")
    try:
        keep_runs(w)   # (after the copy above: it may move the scratch folders away)
    except OSError as e:
        w.log(f"error: keeping the runs for a second call: {e}")
    archive = Path(w.s.out) / "window.tar.gz"
    try:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(w.stage, arcname="window")
        w.log(f"packed {archive} ({human_size(archive.stat().st_size)})")
    except OSError as e:
        w.log(f"error: could not pack {archive}: {e}")
    try:
        print("---- summary\n" + (w.stage / "summary.txt").read_text(), end="")
        print("---- speed\n" + (speed_md.read_text() if speed_md.is_file() else ""), end="", flush=True)
    except OSError:
        pass
    shutil.rmtree(w.work, ignore_errors=True)
    if w.scratch_runs:
        shutil.rmtree(w.runs, ignore_errors=True)
    return rc
