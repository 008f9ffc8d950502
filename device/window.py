"""One GPU window in one command (`bash device/window.sh`, which runs this file; see device/README.md).

Stages, in the order they run, each in its module of device/stages/ (its __init__ has the map):
  1. data.py: unpack the carried CIFAR-10 JPEG copy (.device/cifar10-jpeg.tar.gz), describe the machine (env.txt);
  2. the set. keep.py: a second call of the session continues the first call's runs (kept with their checkpoints
     outside the checkout); else plan.py: the speed matrix (benchmarks/speed_matrix.py) under a hard wall cap, or
     the plan re-derived from an earlier window's matrix (benchmarks/training_plan.py) and checked on this machine;
     and seeds.py: seeds no earlier window trained at the plan's precision (device/next_seeds.py);
  3. train.py: train the δ x seed set the plan suggests (fused, on CUDA streams, or as concurrent processes) with
     the paper's recipe, as a prefix of its 800 epochs, for the rest of the wall budget (python -m lsnc train
     --time-budget-s ...); a failed set trains again another way (--resume);
  4. pack.py: pack run folders (no checkpoints), speed table, logs and env into $OUT/window.tar.gz (+ $OUT/speed.md),
     also when a stage fails or the process is stopped by a signal; keep the set's runs, checkpoints included, for
     a later call on the same machine (keep.py).
This file holds the order (run), the environment the stages' children get, and the signal handling (main).
The log (stdout and logs/window.log) and summary.txt (`key: value` lines) are read by the tests, device/unpack.sh
and lsnc.book.windows: their wording is part of the interface.

Settings (environment; defaults are the GPU window's):
  OUT                      where the archive goes (default /tmp/lsnc-window-out)
  PYTHON                   the python that runs lsnc and the benchmarks (default python3), from this checkout
                           via PYTHONPATH
  LSNC_WINDOW_BUDGET_S     wall seconds from start to the end of training (default 520)
  LSNC_WINDOW_MATRIX       auto | full | skip (default auto): auto skips the matrix where an earlier window ran one
                           (LSNC_WINDOW_KNOWN_RUNS/<group>[-bf16]/speed/<window-id>/speed.json: its plan re-derived by
                           today's rule; else the newest plan.env), else runs it; full always runs it; skip never
                           does (no earlier plan: the default one)
  LSNC_WINDOW_MATRIX_S     wall cap of the speed matrix's cells (default 90)
  LSNC_WINDOW_KNOWN_RUNS   runs folder of the earlier windows' runs and plans (default this checkout's runs/)
  LSNC_WINDOW_SEEDS        seeds to train, e.g. "3 4" (default: as many as the plan has, the lowest whose whole
                           δ set at the plan's precision is in none of LSNC_WINDOW_KNOWN_RUNS/<group>[-bf16]/, the
                           scratch runs folder and the runs kept by an earlier call)
  LSNC_WINDOW_GRAPHS       0 | 1: train with `lsnc train --cuda-graphs` (default: the plan's PLAN_GRAPHS, else 0);
                           graphs, forced ones too, train only where a graph check passed: the reused plan's are
                           checked on this machine first, forced ones after this window's matrix take its check;
                           only LSNC_WINDOW_MATRIX=skip with no earlier plan checks nothing (the CPU tests);
                           a stage that fails with it trains again without it (--resume) for its time left
  LSNC_WINDOW_WIDTH        ResNet-18 base width (default 64, the paper's)
  LSNC_WINDOW_DATA         an image folder (train/<class>/, test/<class>/) or a .tar.gz of one, instead of
                           the CIFAR-10 JPEG copy
  LSNC_WINDOW_GROUP        runs group (default cifar10-jpeg-full-resnet18-gpu); a bf16 set trains into <group>-bf16
  LSNC_WINDOW_RUNS_DIR     scratch runs folder, emptied first (default .device/runs: repo-relative, so the runs'
                           provenance records a portable command)
  LSNC_WINDOW_MATRIX_ARGS  extra speed_matrix.py options (e.g. "--steps 2 --skip compile")
  LSNC_WINDOW_TRAIN_ARGS   extra `lsnc train` options
  LSNC_WINDOW_MODE         fused | streams | concurrent: override the plan's way of training the set together
                           (streams: `lsnc train --together streams`, K networks on K CUDA streams)
  LSNC_WINDOW_TWINS        a bf16 set trains its tf32 twin (CE, first seed) only while the group holds fewer seeds
                           than this with CE runs in both precisions (default 2), and not where that seed has one
  LSNC_WINDOW_CONTINUE     1 | 0 (default 1): continue the runs an earlier call of this session kept (same source
                           commit, group and width) instead of training new seeds; LSNC_WINDOW_SEEDS also turns it off
  LSNC_WINDOW_KEEP         where a call keeps its set's runs for the next one (default $TMPDIR/lsnc-window-keep,
                           outside the checkout: the next call's carried .device/ replaces that folder)

Exit status: that of the set's training (its last attempt); 2 for bad settings or data, 4 when no time is left for
training, 143 on SIGTERM or SIGINT. Only the standard library: it runs on the device's python3 beside torch.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path

from stages.call import Exit, Window
from stages.data import describe_machine, find_data
from stages.keep import continue_kept
from stages.pack import pack
from stages.plan import plan_new_set
from stages.preview import preview
from stages.seeds import choose_seeds
from stages.settings import REPO, Settings, fail_setting
from stages.train import train_set


def run(w: Window) -> int:
    """Stages 1-3 (pack, stage 4, is main's, after whatever happened here): the exit status of the set's training."""
    describe_machine(w)
    find_data(w)
    continued = continue_kept(w)
    if not continued:
        plan_new_set(w)
        choose_seeds(w)
    w.summary(f"run_group: {w.run_group}")
    plan = w.plan
    w.log(f"plan: K={plan['PLAN_K']} amp={plan['PLAN_AMP']} δ=({plan['PLAN_DELTAS']}) seeds=({' '.join(w.seeds)}) "
          f"tf32 twin={plan['PLAN_TWIN']} mode={plan['PLAN_MODE']} graphs={w.graphs} group={w.run_group}")
    return train_set(w, continued)


def main() -> int:
    settings = Settings(os.environ)
    if sys.argv[1:] == ["--preview"]:
        return preview(settings)
    if sys.argv[1:]:
        fail_setting(f"unknown arguments {sys.argv[1:]}: the settings are environment variables (this file's "
                     "docstring); --preview alone says what a window would train")
    os.chdir(REPO)
    window = Window(settings)
    # decoded images, kept for a second call on the same machine (outside the checkout, as KEEP; keyed by the files)
    tmp = os.environ.get("TMPDIR") or "/tmp"
    os.environ["LSNC_CACHE"] = os.environ.get("LSNC_CACHE") or f"{tmp}/lsnc-window-cache"
    os.environ["PYTHONPATH"] = str(REPO) + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    os.environ["PYTHONUNBUFFERED"] = "1"
    # The device's copy has no .git, or one at the session's base commit (not what was sent): the runs' provenance
    # takes the commit that prepare.sh recorded, and whether lsnc/ had uncommitted changes then.
    source = Path(".device/source.txt")
    if source.is_file():
        fields = dict(x.split(": ", 1) for x in source.read_text().splitlines() if ": " in x)
        os.environ["LSNC_SOURCE_COMMIT"] = fields.get("source_commit", "")
        os.environ["LSNC_SOURCE_LSNC_MODIFIED"] = fields.get("source_lsnc_modified", "")
    window.source_commit = os.environ.get("LSNC_SOURCE_COMMIT") or "unknown"

    def stop(signum, frame):
        for sig in (signal.SIGTERM, signal.SIGINT):   # the first signal stops the window; pack() is next
            signal.signal(sig, lambda *_: None)   # (a handler, not SIG_IGN: a child started now does not inherit it)
        window.signalled = True   # logged after the handler (a print inside it could meet the main thread's)
        if window.spawning:   # raised once the child that is starting is recorded (Window.spawn)
            window.stop_pending = True
            return
        raise Exit(143)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        try:
            rc = run(window)
        except Exit as e:
            rc = e.code
        except Exception:   # a bug here must still leave the archive
            window.log("error: " + traceback.format_exc().rstrip())
            rc = 1
    except Exit as e:   # the signal arrived while the error above was being logged
        rc = e.code
    if window.signalled:
        window.log("signal: stopping")
    return pack(window, rc)


if __name__ == "__main__":
    sys.exit(main())
