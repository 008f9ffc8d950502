"""One call of the window: its clock and budget, scratch folders, log and summary, the exit status and wall
seconds of each stage, the children it runs (so that pack can stop them), and the set it trains (filled in by
keep.py or plan.py + seeds.py, changed by train.py's fallbacks; at pack, keep.py keeps it for a later call)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .files import DEFAULT_PLAN
from .settings import Settings, fail_setting


class Exit(Exception):
    """Leave the window with this status (packing first)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def signal_rc(rc: int) -> int:
    """A child's exit status as the shell reports it (128 + signal for a killed one)."""
    return 128 - rc if rc < 0 else rc


def command_output(cmd: list[str], timeout: int = 120) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``cmd``; a command that is missing or hangs past ``timeout`` gives status 1
    and says so in stderr, instead of stopping the window before it trains."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, "", f"{cmd[0]}: {e}"
    return signal_rc(p.returncode), p.stdout, p.stderr


class Window:
    """One call: its scratch folders, its log and summary, its stages' exit statuses and the set it trains."""

    def __init__(self, s: Settings):
        self.s = s
        self.t0 = time.monotonic()
        self.now_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.window_id = self.now_utc[:4] + self.now_utc[5:7] + self.now_utc[8:13] + self.now_utc[14:16] + "Z"
        if s.runs_dir:   # the caller's folder: must be new or empty, and is kept
            self.runs, self.scratch_runs = Path(s.runs_dir), False
            if self.runs.is_dir() and any(self.runs.iterdir()):
                fail_setting(f"{self.runs} is not empty")
        else:
            self.runs, self.scratch_runs = Path(".device/runs"), True
            shutil.rmtree(self.runs, ignore_errors=True)
        os.makedirs(s.out, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="lsnc-window.", dir=os.environ.get("TMPDIR") or "/tmp"))
        self.stage = self.work / "window"   # everything under it goes into the archive
        for d in (self.stage / "logs", self.stage / "speed", self.runs):
            d.mkdir(parents=True, exist_ok=True)
        (self.stage / "summary.txt").write_text(f"group: {s.group}\n")
        self.rc: dict[str, int] = {}
        # wall seconds of each stage: against its runs' train_seconds and eval_seconds, what start-up and the
        # checkpoints cost (summary.txt's stage_s.NAME)
        self.wall: dict[str, float] = {}
        self.children: list[subprocess.Popen] = []
        self.spawning = self.stop_pending = False   # a signal while a child starts is raised once it is recorded
        self.signalled = False
        self.source_commit = "unknown"
        self.data_root = ""
        # the set
        self.plan = dict(DEFAULT_PLAN)
        self.deltas: list[str] = []
        self.seeds: list[str] = []
        self.run_group = s.group
        self.graphs = "0"
        self.set_graphs = ""   # the set's own graphs, for a continuation (a tf32 twin trains without)
        self.fused_check = ""   # the fused graph check here ("ok": a failed streams stage may retry fused graphed)
        self.k_before_probe = ""   # the plan's K before this machine's streams probe (which may raise 2 to 4)
        self.cont_from = ""
        # training (train.py)
        self.train_cmd: list[str] = []   # `-m lsnc train ...` without the budget and the members
        self.amp: list[str] = []   # ["--amp", "bf16"] for a bf16 set
        self.prec = "tf32"
        self.train_started = False   # from then on, pack keeps the set's runs for a later call

    def elapsed(self) -> int:
        return int(time.monotonic() - self.t0)

    def left(self) -> int:
        return self.s.budget_s - self.elapsed()

    def log(self, message: str) -> None:
        line = f"[window +{self.elapsed()}s] {message}"
        print(line, flush=True)
        try:
            with open(self.stage / "logs" / "window.log", "a") as f:
                f.write(line + "\n")
        except OSError:   # (stdout has it; a full disk must not stop pack)
            pass

    def summary(self, line: str) -> None:
        with open(self.stage / "summary.txt", "a") as f:
            f.write(line + "\n")

    def python(self, *args: str) -> tuple[int, str, str]:
        """Run PYTHON with ``args``; returns (exit status, stdout, stderr)."""
        return command_output([self.s.python, *args])

    def spawn(self, cmd: list[str], log) -> subprocess.Popen:
        """Start ``cmd`` (output to the open file ``log``) and add it to the children pack() stops. A SIGTERM/SIGINT
        that arrives meanwhile is held back until the child is recorded (see main's handler), so none is left
        running unseen."""
        self.spawning = True
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            self.children.append(proc)
        finally:
            self.spawning = False
        if self.stop_pending:
            raise Exit(143)
        return proc

    def run_stage(self, name: str, limit: int, cmd: list[str], watched: bool = False) -> int:
        """``cmd`` under a hard timeout, its output in logs/NAME.log, its exit status in rc[NAME], its wall seconds
        in wall[NAME]. ``watched`` (training): stopped early if it makes no progress (:class:`Watchdog`)."""
        self.log(f"stage {name} (hard limit {limit}s): {' '.join(cmd)}")
        path = self.stage / "logs" / f"{name}.log"
        t0 = time.monotonic()
        with open(path, "w") as f:
            proc = self.spawn(["timeout", "-k", "10", str(limit), *cmd], f)
            watch = Watchdog(self) if watched else None
            while True:
                try:
                    rc = signal_rc(proc.wait(timeout=Watchdog.POLL_S))
                    break
                except subprocess.TimeoutExpired:
                    if watch and watch.stalled():
                        watch.stop(name, [proc])
                        watch = None
            self.children = []
        self.rc[name], self.wall[name] = rc, round(time.monotonic() - t0, 1)
        self.log(f"stage {name}: exit {rc}")
        if rc != 0:
            for line in path.read_text(errors="replace").splitlines()[-20:]:
                print(f"  [{name}] {line}", flush=True)
        return rc


class Watchdog:
    """Stops a training stage that has hung (a CUDA graph replay or a stream that never returns, say) instead of
    letting it hold the GPU until its hard limit, so that the stage's fallback gets the time left. Progress is any
    write under the runs folder (an epoch's row, a checkpoint, metrics, status.json) or to a stage log other than
    window.log; none for LSNC_WINDOW_STALL_S (0: never) is a hang. The default, 150 s, is over twice all the time
    outside training epochs (start-up and evaluations together) of each H200 window so far: 43 s and 70 s.
    ``pair`` (δ, seed) and ``log``: watch one process of a concurrent stage, by its own log and the run folders of
    that δ and seed only, so a pair that hangs beside one that trains is seen too."""

    POLL_S = 2

    def __init__(self, w: "Window", pair: tuple[str, str] | None = None, log: Path | None = None):
        self.w, self.pair, self.log = w, pair, log
        self.folders: set[Path] = set()   # the pair's run folders found so far
        self.reset()

    def _runs(self) -> list[Path]:
        if self.pair is None:
            return [self.w.runs]
        for config in self.w.runs.glob("*/*/config.json"):
            if config.parent in self.folders:
                continue
            try:
                c = json.loads(config.read_text())
                if (float(c["delta"]), int(c["seed"])) == (float(self.pair[0]), int(self.pair[1])):
                    self.folders.add(config.parent)
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(self.folders)

    def mark(self) -> int:
        """The newest write (ns) under the watched run folders and to the watched logs."""
        newest = 0
        logs = ([self.log] if self.log is not None else
                [p for p in (self.w.stage / "logs").glob("*.log") if p.name != "window.log"])
        for path in [*(f for folder in self._runs() for f in folder.rglob("*")), *logs]:
            try:
                newest = max(newest, path.stat().st_mtime_ns)
            except OSError:   # a temporary file renamed meanwhile
                continue
        return newest

    def reset(self) -> None:
        self.last, self.since = self.mark(), time.monotonic()
        self.checked = self.since

    def stalled(self) -> bool:
        if time.monotonic() - self.checked < self.POLL_S:   # (a concurrent stage asks every 0.2 s)
            return False
        self.checked = time.monotonic()
        now = self.mark()
        if now != self.last:
            self.last, self.since = now, time.monotonic()
            return False
        return self.w.s.stall_s > 0 and time.monotonic() - self.since >= self.w.s.stall_s

    def stop(self, name: str, procs: list) -> None:
        """Stop ``procs`` (each a `timeout` wrapper: it passes SIGTERM on to its command, SIGKILL 10 s later)."""
        self.w.log(f"stage {name}: no progress for {self.w.s.stall_s}s (no run file or log line written): "
                   "stopped as hung")
        self.w.summary(f"stalled: {name}")
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        self.reset()
