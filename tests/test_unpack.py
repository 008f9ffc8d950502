"""device/unpack.py: a window archive's runs and speed files into runs/, on archives made here from a committed run
(the end-to-end window tests in test_device_window.py unpack real ones)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "device"))
import unpack  # noqa: E402

GROUP = "cifar10-jpeg-full-resnet18-gpu"
SOURCE = REPO / "runs" / GROUP / "ce-resnet18-s0"   # a committed budget stop: epoch 75, off the schedule


def _prefix(dest: Path, epoch: int) -> Path:
    """SOURCE cut at ``epoch`` (the rows up to it; status "done" there), as a budget stop writes it."""
    shutil.copytree(SOURCE, dest)
    for table in ("metrics.csv", "epochs.csv"):
        lines = (dest / table).read_text().splitlines(keepends=True)
        keep = [lines[0]] + [x for x in lines[1:] if int(x.split(",")[0]) <= epoch]
        (dest / table).write_text("".join(keep))
    status = json.loads((dest / "status.json").read_text())
    (dest / "status.json").write_text(json.dumps({**status, "epoch": epoch}))
    return dest


def _archive(tmp: Path, runs: dict[str, Path], name="w.tar.gz", date="2026-11-27T20:52:07Z", check=True) -> Path:
    """window.tar.gz holding ``runs`` (name -> folder) under runs/GROUP/, a checkpoint in each, and speed files."""
    w = tmp / (name + ".d") / "window"
    for run_name, folder in runs.items():
        shutil.copytree(folder, w / "runs" / GROUP / run_name)
        (w / "runs" / GROUP / run_name / "checkpoint.pt").write_bytes(b"weights")
    (w / "speed").mkdir(parents=True)
    (w / "speed" / "speed.md").write_text("# Speed matrix skipped\n")
    (w / "speed" / "plan.env").write_text('PLAN_K="2"\n')
    if check:
        (w / "speed" / "check").mkdir()
        (w / "speed" / "check" / "speed.json").write_text('{"cells": []}')
    (w / "summary.txt").write_text(f"group: {GROUP}\nexit: 0\n")
    if date:
        (w / "env.txt").write_text(f"date: {date}\n")
    with tarfile.open(tmp / name, "w:gz") as tar:
        tar.add(w, arcname="window")
    return tmp / name


def _run(archive: Path, runs_dir: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "device" / "unpack.sh"), str(archive), str(runs_dir)],
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=120)


def test_finished_runs_and_speed_files_arrive_and_nothing_is_replaced(tmp_path):
    unfinished = _prefix(tmp_path / "u", 30)
    (unfinished / "status.json").write_text(json.dumps({"status": "running", "epoch": 30}))
    archive = _archive(tmp_path, {"ce-resnet18-s0": SOURCE, "ls0.05-resnet18-s0": unfinished})
    runs = tmp_path / "runs"
    proc = _run(archive, runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"not finished, not copied: {GROUP}/ls0.05-resnet18-s0" in proc.stdout
    assert sorted(p.name for p in (runs / GROUP).iterdir()) == ["ce-resnet18-s0", "speed"]
    run = runs / GROUP / "ce-resnet18-s0"
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in SOURCE.iterdir())   # no checkpoint
    assert (run / "metrics.csv").read_bytes() == (SOURCE / "metrics.csv").read_bytes()
    speed = runs / GROUP / "speed" / "20261127T2052Z"
    assert sorted(p.name for p in speed.iterdir()) == ["check.json", "env.txt", "plan.env", "speed.md", "summary.txt"]
    assert proc.stdout.endswith("1 run folder(s) copied; logs stay in " + str(archive) + " (window/logs/)\n")

    (run / "metrics.csv").write_text("edited\n")
    again = _run(archive, runs)
    assert again.returncode == 0 and again.stdout.count("exists, not replaced (FORCE=1 replaces it)") == 2
    assert (run / "metrics.csv").read_text() == "edited\n"
    forced = _run(archive, runs, FORCE="1")
    assert forced.returncode == 0 and (run / "metrics.csv").read_bytes() == (SOURCE / "metrics.csv").read_bytes()
    assert not [p for p in (runs / GROUP).iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("off_schedule", [True, False])
def test_a_continued_run_replaces_the_shorter_one_and_never_the_reverse(tmp_path, off_schedule):
    runs = tmp_path / "runs"
    short = 44 if off_schedule else 45   # 45 is on the evaluation schedule, 44 is not
    old = _prefix(runs / GROUP / "ce-resnet18-s0", short)
    if off_schedule:  # a budget stop at 44 evaluated that epoch, which the continued run does not have
        row45 = next(x for x in (SOURCE / "metrics.csv").read_text().splitlines() if x.startswith("45,"))
        (old / "metrics.csv").write_text((old / "metrics.csv").read_text() + "44" + row45[2:] + "\n")
    out = _run(_archive(tmp_path, {"ce-resnet18-s0": SOURCE}), runs).stdout
    note = f"(extended: epochs 0-{short} -> 0-75; identical up to {short}"
    assert note + (f", but for the evaluation at {short}, off the schedule, which the continued run does not have)"
                   if off_schedule else ")") in out, out
    assert json.loads((runs / GROUP / "ce-resnet18-s0" / "status.json").read_text())["epoch"] == 75

    shorter = _archive(tmp_path, {"ce-resnet18-s0": _prefix(tmp_path / "p30", 30)}, name="short.tar.gz",
                       date="2026-11-27T21:02:00Z")
    out = _run(shorter, runs).stdout
    assert "exists, not replaced" in out and "extended" not in out
    assert json.loads((runs / GROUP / "ce-resnet18-s0" / "status.json").read_text())["epoch"] == 75


def test_a_longer_run_that_differs_is_not_taken_for_a_continuation(tmp_path):
    runs = tmp_path / "runs"
    old = _prefix(runs / GROUP / "ce-resnet18-s0", 40)
    lines = (old / "metrics.csv").read_text().splitlines(keepends=True)
    cells = lines[5].split(",")
    cells[5] = repr(float(cells[5]) * 1.5)
    (old / "metrics.csv").write_text("".join(lines[:5] + [",".join(cells)] + lines[6:]))
    out = _run(_archive(tmp_path, {"ce-resnet18-s0": SOURCE}), runs).stdout
    assert "exists, not replaced" in out and "it reached epoch 75, but does not continue the run there: " in out
    assert ": differs (" in out, out
    assert json.loads((old / "status.json").read_text())["epoch"] == 40


def test_a_failed_copy_leaves_the_old_folder_and_no_half_copied_one(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    dest = runs / GROUP / "ce-resnet18-s0"
    dest.mkdir(parents=True)
    (dest / "marker").write_text("old")

    def copy_then_fail(src, dst, **kw):
        Path(dst).mkdir()
        (Path(dst) / "metrics.csv").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(unpack.shutil, "copytree", copy_then_fail)
    with pytest.raises(OSError):
        unpack.put_folder(SOURCE, dest)
    assert [p.name for p in (runs / GROUP).iterdir()] == ["ce-resnet18-s0"]
    assert [p.name for p in dest.iterdir()] == ["marker"]


def test_window_ids_and_bad_archives(tmp_path):
    runs = tmp_path / "runs"
    undated = _archive(tmp_path, {}, name="undated.tar.gz", date=None)
    proc = _run(undated, runs)
    assert proc.returncode == 0 and "no date: line in window/env.txt; window id " in proc.stdout
    # no runs: the speed files go to the summary's group
    assert len(list((runs / GROUP / "speed").iterdir())) == 1
    bad_id = _run(undated, runs, WINDOW_ID="yesterday")
    assert bad_id.returncode == 1 and "window id yesterday is not YYYYMMDDTHHMMZ" in bad_id.stderr
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    junk = _run(tmp_path / "junk.tar.gz", runs)
    assert junk.returncode == 1 and "cannot be read" in junk.stderr
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz") as tar:
        tar.add(REPO / "device" / "README.md", arcname="README.md")
    empty = _run(tmp_path / "empty.tar.gz", runs)
    assert empty.returncode == 1 and "holds no window/ folder" in empty.stderr
    assert _run(undated, runs, WINDOW_ID="").returncode == 0   # empty: from env.txt / mtime, as unset


def test_a_replace_stopped_between_its_renames_loses_nothing(tmp_path, monkeypatch):
    """Replacing a folder moves the old one into the staging folder, then renames the new one in. Interrupted between
    the two (Ctrl-C), the old one goes back; killed there, the next unpack puts it back before it starts."""
    runs = tmp_path / "runs"
    dest = runs / GROUP / "ce-resnet18-s0"
    dest.mkdir(parents=True)
    (dest / "marker").write_text("old")
    real_replace = unpack.os.replace

    def interrupted(src, dst):
        if Path(src).name == "new":
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(unpack.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        unpack.put_folder(SOURCE, dest)
    monkeypatch.setattr(unpack.os, "replace", real_replace)
    assert [p.name for p in (runs / GROUP).iterdir()] == ["ce-resnet18-s0"] and (dest / "marker").is_file()

    # killed between the renames: the old folder waits in the staging folder, where no reader of runs looks
    staging = runs / GROUP / ".ce-resnet18-s0.unpack-abc123"
    (staging / "new").mkdir(parents=True)
    real_replace(dest, staging / "old")
    from lsnc.runs import find_runs
    assert find_runs(runs, status=None) == []
    out = _run(_archive(tmp_path, {}), runs).stdout
    assert f"unpack: {dest} put back (an earlier unpack was stopped while replacing it)" in out, out
    assert (dest / "marker").read_text() == "old" and not staging.exists()

