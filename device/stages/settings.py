"""The window's settings, from the environment (their list and defaults: device/window.py's docstring), checked
before anything is made: a bad one is a message and exit 2."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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
        self.keep = Path(absolute(get("LSNC_WINDOW_KEEP", f"{tmp}/lsnc-window-keep")))
        self.python = get("PYTHON", "python3")
        for key in ("LSNC_WINDOW_BUDGET_S", "LSNC_WINDOW_MATRIX_S"):
            if not get(key, "0").isdigit():
                fail_setting(f"{key} must be whole seconds (e.g. 520)")
        self.budget_s = int(get("LSNC_WINDOW_BUDGET_S", "520"))
        self.matrix_s = int(get("LSNC_WINDOW_MATRIX_S", "90"))
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
        if (str(self.keep) + "/").startswith(str(REPO) + "/"):
            fail_setting("LSNC_WINDOW_KEEP must lie outside the checkout (each call's copy replaces it)")
        if not self.twins_enough.isdigit():
            fail_setting("LSNC_WINDOW_TWINS must be a whole number (e.g. 2)")
        self.twins_enough = int(self.twins_enough)
        self.both_groups = [self.group, f"{self.group}-bf16"]
