"""After a GPU window: bring its archive's runs and speed files into runs/ (`bash device/unpack.sh ARCHIVE [RUNS_DIR]`).

    python device/unpack.py ARCHIVE [RUNS_DIR]       # RUNS_DIR: default this checkout's runs/

- Each finished run folder of window.tar.gz goes to RUNS_DIR/<group>/<name>/, its checkpoint left out. An
  unfinished one is listed, not copied.
- An existing run folder is not replaced (FORCE=1 replaces it), unless the archive's run continues it: a second
  call of the session trained it on (device/stages/keep.py, "continuing the runs of window ..."), it reached a later
  epoch, and `lsnc compare` finds the two identical up to the existing one's last epoch. The shorter never wins.
- The speed table, plan, environment and summary (and check.md/check.json, the cells a window measured on its own
  machine before training) go to RUNS_DIR/<group>/speed/<window-id>/ for each group the window brought runs of
  (else each group it made folders for, else the group its summary names). The window id is its UTC start as
  YYYYMMDDTHHMMZ, from the `date:` line of its env.txt (else the archive's mtime; WINDOW_ID=... names it
  otherwise). An existing window folder is not replaced unless FORCE=1.
- Every folder is copied whole into a hidden staging folder beside its destination (``.<name>.unpack-XXXX/``),
  then renamed into place; a replaced folder waits in that staging folder until the new one is in place. A killed
  unpack leaves no half-copied run or window folder where the book reads runs, and the next unpack puts back a
  folder it had moved aside (recover()).

Then review and commit RUNS_DIR/<group>/. The printed lines (`unpack: ...`) are read by tests/test_device_window.py.
Exit 1 when the archive cannot be read or holds no window/ folder, or the window id is malformed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# lsnc's names, copied since this script runs without lsnc (tests/test_device_window.py checks them)
WINDOW_ID = re.compile(r"^[0-9]{8}T[0-9]{4}Z$")
CHECKPOINT_FILE = "checkpoint.pt"
DATE_LINE = re.compile(r"^date: ([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})")
GROUP_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
SPEED_FILES = ("speed/speed.md", "speed/speed.json", "speed/plan.env", "env.txt", "summary.txt")
CHECK_FILES = {"speed/check/speed.md": "check.md", "speed/check/speed.json": "check.json"}
STAGING = ".unpack-"   # in the name of the hidden folders a copy is staged in


class UnpackError(Exception):
    """The archive cannot be unpacked (the message says why)."""


def window_id(window: Path, archive: Path, given: str | None = None) -> str:
    """The window's UTC start as YYYYMMDDTHHMMZ: ``given``, else env.txt's ``date:`` line, else the archive's mtime."""
    if given:
        wid = given
    else:
        try:
            lines = (window / "env.txt").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        match = next((m for m in map(DATE_LINE.match, lines) if m), None)
        if match:
            wid = "{}{}{}T{}{}Z".format(*match.groups())
        else:
            wid = time.strftime("%Y%m%dT%H%MZ", time.gmtime(archive.stat().st_mtime))
            print(f"unpack: no date: line in window/env.txt; window id {wid} from the archive's mtime")
    if not WINDOW_ID.match(wid):
        raise UnpackError(f"window id {wid} is not YYYYMMDDTHHMMZ")
    return wid


def status_of(run: Path) -> dict:
    """The run's status.json, read by lsnc.runs.format ({} when it is missing or damaged)."""
    from lsnc.runs.format import RunError, read_status   # lsnc is imported where used: --help needs no pandas
    try:
        return read_status(run) or {}
    except RunError:
        return {}


def metrics_epochs(run: Path) -> list:
    """The epochs of the run's metrics.csv rows in order, read by lsnc.runs.format ([] when missing or damaged)."""
    from lsnc.runs.format import METRICS_FILE, RunError, read_rows_csv
    try:
        return [row["epoch"] for row in read_rows_csv(run / METRICS_FILE)]
    except RunError:
        return []


def extends(old: Path, new: Path) -> tuple[str | None, str]:
    """Does ``new`` continue ``old``? (the "(extended: ...)" note, "") when it reached a later epoch and is identical
    up to ``old``'s last one; (None, why not) otherwise ("" when it did not reach further)."""
    old_epoch, new_epoch = status_of(old).get("epoch"), status_of(new).get("epoch")
    if not (isinstance(old_epoch, int) and isinstance(new_epoch, int) and new_epoch > old_epoch):
        return None, ""
    try:
        from lsnc.runs.compare import compare_folders
        pairs, _, _ = compare_folders(old, new)
        verdict = pairs[0].verdict if pairs else "nothing to compare"
        line = pairs[0].line() if pairs else verdict
    except Exception as exc:   # a damaged folder, or no lsnc dependencies in this python: say so, replace nothing
        verdict, line = "unreadable", f"{type(exc).__name__}: {exc}"
    if verdict != "identical":
        return None, f"it reached epoch {new_epoch}, but does not continue the run there: {line}"
    note = f" (extended: epochs 0-{old_epoch} -> 0-{new_epoch}; identical up to {old_epoch}"
    # A budget stop evaluates its last epoch even off the evaluation schedule; the continued run, like an
    # uninterrupted one, has no row there, so that evaluation was not compared and goes with the old folder.
    if metrics_epochs(old)[-1:] == [old_epoch] and old_epoch not in metrics_epochs(new):
        note += f", but for the evaluation at {old_epoch}, off the schedule, which the continued run does not have"
    return note + ")", ""


def _staging(dest: Path) -> Path:
    """A hidden folder beside ``dest`` (``.<name>.unpack-XXXX/``) for its new copy (``new/``) and, while it is being
    replaced, the old one (``old/``): both one level deeper than any run folder, where no reader of runs looks."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}{STAGING}", dir=dest.parent))


def _place(new: Path, dest: Path, staging: Path) -> None:
    """Rename ``new`` to ``dest``; an existing ``dest`` is moved into ``staging`` first, and put back if the rename
    fails (recover() puts it back after a kill between the two renames)."""
    old = staging / "old"
    if dest.exists():
        os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        if old.exists() and not dest.exists():
            os.replace(old, dest)
        raise


def put_folder(src: Path, dest: Path, ignore=None) -> None:
    """Copy ``src`` to ``dest`` (replacing it): copied whole into a staging folder, then renamed into place."""
    staging = _staging(dest)
    try:
        shutil.copytree(src, staging / "new", ignore=ignore)
        _place(staging / "new", dest, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def put_files(files: dict[Path, str], dest: Path) -> None:
    """Copy ``files`` (source -> name) into a new folder ``dest`` (replacing it), renamed into place."""
    staging = _staging(dest)
    try:
        (staging / "new").mkdir()
        for src, name in files.items():
            shutil.copy2(src, staging / "new" / name)
        _place(staging / "new", dest, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def recover(runs_dir: Path) -> None:
    """Undo what a killed unpack left in ``runs_dir``: a folder it had moved aside to replace, and not yet
    replaced, is put back; staging folders are removed."""
    for staging in sorted([*runs_dir.glob(f"*/.*{STAGING}*"), *runs_dir.glob(f"*/speed/.*{STAGING}*")]):
        dest = staging.parent / staging.name[1:staging.name.rindex(STAGING)]
        if (staging / "old").is_dir() and not dest.exists():
            os.replace(staging / "old", dest)
            print(f"unpack: {dest} put back (an earlier unpack was stopped while replacing it)")
        shutil.rmtree(staging, ignore_errors=True)


def unpack(archive: Path, runs_dir: Path, given_id: str | None = None, force: bool = False) -> int:
    """Unpack ``archive`` into ``runs_dir``; returns how many run folders were copied."""
    recover(runs_dir)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with tarfile.open(archive) as tar:
                # (filter: Python >= 3.11.4; the archive is ours, from the device, so without it where missing)
                tar.extractall(tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        except (OSError, tarfile.TarError) as exc:
            raise UnpackError(f"{archive} cannot be read: {exc}") from exc
        window = Path(tmp) / "window"
        if not window.is_dir():
            raise UnpackError(f"{archive} holds no window/ folder")
        wid = window_id(window, archive, given_id)

        copied, groups = 0, []
        for run in sorted(p.parent for p in (window / "runs").glob("*/*/config.json")):
            group, name = run.parent.name, run.name
            status = status_of(run)
            if status.get("status") != "done":
                text = (run / "status.json").read_text().replace("\n", "") if (run / "status.json").is_file() else ""
                print(f"unpack: not finished, not copied: {group}/{name} ({text})")
                continue
            dest = runs_dir / group / name
            note = ""
            if dest.exists() and not force:
                # A later call of the same session continued this run (device/stages/keep.py): its folder replaces
                # the shorter one when it reached further and agrees with it, bit for bit, up to where that stopped.
                note, why_not = extends(dest, run)
                if note is None:
                    print(f"unpack: {dest} exists, not replaced (FORCE=1 replaces it)")
                    if why_not:
                        print(f"unpack:   {why_not}")
                    continue
            put_folder(run, dest, ignore=shutil.ignore_patterns(CHECKPOINT_FILE))
            print(f"unpack: {dest}{note}")
            copied += 1
            if group not in groups:
                groups.append(group)

        # The speed files go beside the runs of each group the window produced (else the groups it made folders
        # for, else its summary's group), one folder per window: device/stages/plan.py reuses the newest plan among
        # them.
        if not groups and (window / "runs").is_dir():
            groups = sorted(p.name for p in (window / "runs").iterdir() if p.is_dir())
        if not groups:
            try:
                summary = (window / "summary.txt").read_text().splitlines()
            except OSError:
                summary = []
            named = next((line[len("group: "):] for line in summary if line.startswith("group: ")), "")
            groups = [named] if GROUP_NAME.match(named) else []
        files = {window / f: Path(f).name for f in SPEED_FILES if (window / f).is_file()}
        # the cells the window measured on its own machine before training (graph check, streams probe): check.*,
        # so that no later window takes them for a whole matrix (speed.json)
        files.update({window / f: name for f, name in CHECK_FILES.items() if (window / f).is_file()})
        for group in groups:
            dest = runs_dir / group / "speed" / wid
            if dest.exists() and not force:
                print(f"unpack: {dest} exists, not replaced (FORCE=1 replaces it)")
                continue
            put_files(files, dest)
            print(f"unpack: {dest}/")
    print(f"unpack: {copied} run folder(s) copied; logs stay in {archive} (window/logs/)")
    return copied


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] in ("-h", "--help"):
        print(__doc__ if argv[:1] in (["-h"], ["--help"]) else "usage: device/unpack.sh ARCHIVE [RUNS_DIR]",
              file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 1
    archive = Path(argv[0])
    runs_dir = Path(argv[1]) if len(argv) == 2 else REPO / "runs"
    sys.path.insert(0, str(REPO))
    try:
        unpack(archive, runs_dir, os.environ.get("WINDOW_ID") or None, os.environ.get("FORCE", "0") == "1")
    except UnpackError as exc:
        print(f"unpack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
