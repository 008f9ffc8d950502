"""The window's settings, from the environment, checked before anything is made: a bad one is a message and
exit 2.

Settings (environment; defaults are the GPU window's):
  OUT                      where the archive goes (default $TMPDIR/lsnc-window-out, TMPDIR default /tmp)
  PYTHON                   the python that runs lsnc and the benchmarks (default python3), from this checkout
                           via PYTHONPATH
  LSNC_WINDOW_BUDGET_S     wall seconds from start to the end of training (default 520; a fraction is dropped)
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
  LSNC_WINDOW_STALL_S      a training stage that writes no run file and no log line for this long is stopped as
                           hung and its fallback trains for the time left (default 150; 0: never; call.Watchdog)
  LSNC_WINDOW_TWINS        a bf16 set trains its tf32 twin (CE, first seed) only while the group holds fewer seeds
                           than this with CE runs in both precisions (default 2), and not where that seed has one
  LSNC_WINDOW_CONTINUE     1 | 0 (default 1): continue the runs an earlier call of this session kept (same source
                           commit, lsnc/ code, group and width) instead of training new seeds; LSNC_WINDOW_SEEDS
                           also turns it off
  LSNC_WINDOW_KEEP         where a call keeps its set's runs for the next one (default .window-keep/ in the
                           checkout, git-ignored: the device tool keeps a checkout's ignored files between calls on a
                           warm machine, and replaces only the carried .device/, so never inside that)
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: the default LSNC_WINDOW_KEEP, in the checkout (git-ignored)
KEEP_DIR = ".window-keep"


def fail_setting(message: str) -> None:
    """Bad settings: nothing is made yet, no archive."""
    print(f"window: {message}", file=sys.stderr)
    sys.exit(2)


def absolute(path: str) -> str:
    return path if path.startswith("/") else os.path.join(os.getcwd(), path)


def relative_to_repo(path) -> str:
    text = str(path)
    return text[len(str(REPO)) + 1:] if text.startswith(str(REPO) + "/") else text


class Settings:
    """The environment's settings, checked before anything is made (a bad one: a message and exit 2)."""

    def __init__(self, env):
        get = lambda k, default="": env.get(k) or default   # unset and empty are the same, as in the shell
        tmp = get("TMPDIR", "/tmp")
        self.out = absolute(get("OUT", f"{tmp}/lsnc-window-out"))
        self.data = absolute(get("LSNC_WINDOW_DATA")) if get("LSNC_WINDOW_DATA") else ""
        self.runs_dir = absolute(get("LSNC_WINDOW_RUNS_DIR")) if get("LSNC_WINDOW_RUNS_DIR") else ""
        self.known = absolute(get("LSNC_WINDOW_KNOWN_RUNS")) if get("LSNC_WINDOW_KNOWN_RUNS") else str(REPO / "runs")
        self.keep = Path(absolute(get("LSNC_WINDOW_KEEP", str(REPO / KEEP_DIR))))
        self.python = get("PYTHON", "python3")
        # whole seconds (a fraction is dropped)
        for key in ("LSNC_WINDOW_BUDGET_S", "LSNC_WINDOW_MATRIX_S", "LSNC_WINDOW_STALL_S"):
            if not re.fullmatch(r"[0-9]+(\.[0-9]*)?", get(key, "0")):
                fail_setting(f"{key} must be seconds (e.g. 520)")
        self.budget_s = int(float(get("LSNC_WINDOW_BUDGET_S", "520")))
        self.matrix_s = int(float(get("LSNC_WINDOW_MATRIX_S", "90")))
        self.stall_s = int(float(get("LSNC_WINDOW_STALL_S", "150")))
        self.width = get("LSNC_WINDOW_WIDTH", "64")
        self.group = get("LSNC_WINDOW_GROUP", "cifar10-jpeg-full-resnet18-gpu")
        self.matrix = get("LSNC_WINDOW_MATRIX", "auto")
        self.graphs = get("LSNC_WINDOW_GRAPHS")   # "" = the plan's
        self.seeds = get("LSNC_WINDOW_SEEDS")
        self.mode = get("LSNC_WINDOW_MODE")   # "" = the plan's
        self.matrix_args = get("LSNC_WINDOW_MATRIX_ARGS").split()
        self.train_args = get("LSNC_WINDOW_TRAIN_ARGS").split()
        self.continue_ = get("LSNC_WINDOW_CONTINUE", "1") != "0"
        self.twins_enough = get("LSNC_WINDOW_TWINS", "2")
        if self.matrix not in ("auto", "full", "skip"):
            fail_setting("LSNC_WINDOW_MATRIX must be auto, full or skip")
        if self.graphs not in ("", "0", "1"):
            fail_setting("LSNC_WINDOW_GRAPHS must be 0 or 1")
        if self.seeds and not re.fullmatch(r" *[0-9]+( +[0-9]+)* *", self.seeds):
            fail_setting('LSNC_WINDOW_SEEDS must be seeds separated by spaces (e.g. "3 4")')
        if (str(self.keep) + "/").startswith(str(REPO / ".device") + "/"):
            fail_setting("LSNC_WINDOW_KEEP must lie outside .device/ (each call's carry replaces it)")
        if not self.twins_enough.isdigit():
            fail_setting("LSNC_WINDOW_TWINS must be a whole number (e.g. 2)")
        self.twins_enough = int(self.twins_enough)
        self.both_groups = [self.group, f"{self.group}-bf16"]
