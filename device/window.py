"""One GPU window in one command (`bash device/window.sh`, which runs this file; see device/README.md).

Stages, in the order they run:
  1. data: unpack the carried CIFAR-10 JPEG copy (.device/cifar10-jpeg.tar.gz), describe the machine (env.txt);
  2. the set: a second call of the session continues the first call's runs (kept with their checkpoints outside the
     checkout); else the plan: the speed matrix (benchmarks/speed_matrix.py) under a hard wall cap, or the plan
     re-derived from an earlier window's matrix (benchmarks/training_plan.py) and checked on this machine, and
     seeds no earlier window trained at the plan's precision (device/next_seeds.py);
  3. train the δ x seed set the plan suggests (fused, or on CUDA streams) with the paper's recipe, as a prefix of
     its 800 epochs, for the rest of the wall budget (python -m lsnc train --time-budget-s ...); a failed set trains
     again as concurrent processes (--resume);
  4. pack run folders (no checkpoints), speed table, logs and env into $OUT/window.tar.gz (+ $OUT/speed.md), also
     when a stage fails or the process is stopped by a signal; keep the set's runs, checkpoints included, for a
     later call on the same machine.
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

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHA256 = "01373fb925a97e9c13f8df5ff9307dfc9bf58c509d575ff73ec5478d71a9bed8"   # .device/cifar10-jpeg.tar.gz
TARBALL = ".device/cifar10-jpeg.tar.gz"
PACK_RESERVE_S = 10   # kept at the end of the budget for packing
WINDOW_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{4}Z$")   # device/unpack.sh's speed folder names
PLAN_LINE = re.compile(r'^PLAN_[A-Z]+="[0-9a-z. ]*"$')   # plan.env: numbers and plain words only
KEEP_LINE = re.compile(r'^CONT_[A-Z_]+="[0-9A-Za-z. _-]*"$')   # keep.env: the same, and names
#: The plan when no matrix gives one (benchmarks/training_plan.py writes the same keys)
DEFAULT_PLAN = {"PLAN_K": "2", "PLAN_AMP": "none", "PLAN_DELTAS": "0 0.05", "PLAN_SEEDS": "0", "PLAN_TWIN": "0",
                "PLAN_MODE": "fused", "PLAN_GRAPHS": "0"}
MODES = ("fused", "streams", "concurrent")


class Exit(Exception):
    """Leave the window with this status (packing first)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def fail_setting(message: str) -> None:
    """Bad settings: nothing is made yet, no archive."""
    print(f"window: {message}", file=sys.stderr)
    sys.exit(2)


def absolute(path: str) -> str:
    return path if path.startswith("/") else os.path.join(os.getcwd(), path)


def relative_to_repo(path) -> str:
    text = str(path)
    return text[len(str(REPO)) + 1:] if text.startswith(str(REPO) + "/") else text


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


def newest_earlier(known: str, groups: list[str], log) -> tuple[Path | None, str, Path | None, str]:
    """The newest earlier window's matrix (speed.json) and newest valid plan.env in ``known``/<group>/speed/ of
    ``groups`` (window ids sort by time; unpack.sh puts a window's folder beside the runs it brought back), with
    their window ids; what is ignored, and why, goes to ``log``."""
    speed_json, json_id, plan_env, env_id = None, "", None, ""
    for group in groups:
        for name in ("speed.json", "plan.env"):
            for f in sorted(Path(known, group, "speed").glob(f"*/{name}")):
                wid = f.parent.name
                if not WINDOW_ID_RE.match(wid):
                    log(f"not a window folder, ignored: {f}")
                elif name == "speed.json":
                    if wid >= json_id:
                        speed_json, json_id = f, wid
                elif read_plan(f) is None:
                    log(f"invalid plan, ignored: {f}")
                elif wid >= env_id:
                    plan_env, env_id = f, wid
    return speed_json, json_id, plan_env, env_id


def derive_plan(python: str, speed_json: Path, out_dir: Path, why: Path, *options: str) -> dict[str, str] | None:
    """benchmarks/training_plan.py on ``speed_json`` (and ``options``): its plan.env in ``out_dir`` read back, or
    None where it failed; what it printed (the plan and why) in ``why``."""
    with open(why, "w") as f:
        rc = subprocess.run([python, str(REPO / "benchmarks" / "training_plan.py"), str(speed_json), *options,
                             "--out-dir", str(out_dir)], stdout=f, stderr=subprocess.STDOUT).returncode
    return read_plan(out_dir / "plan.env") if rc == 0 else None


def next_seeds(python: str, groups: list[str], *args: str) -> tuple[int, str, str]:
    """device/next_seeds.py over ``groups`` with ``args`` (its options, then the runs folders to look in): its exit
    status, stdout and stderr."""
    return command_output([python, str(REPO / "device" / "next_seeds.py"), "--group", *groups, *args])


def command_output(cmd: list[str], timeout: int = 120) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``cmd``; a command that is missing or hangs past ``timeout`` gives status 1
    and says so in stderr, instead of stopping the window before it trains."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, "", f"{cmd[0]}: {e}"
    return signal_rc(p.returncode), p.stdout, p.stderr


def last_line(path: Path) -> str:
    return (path.read_text(errors="replace").splitlines() or [""])[-1]


def code_digest() -> str:
    """sha256 over lsnc/'s .py files (a continuation trains on only with the code that trained the runs so far)."""
    files = sorted(os.path.join(d, f) for d, _, names in os.walk("lsnc") for f in names if f.endswith(".py"))
    listing = "".join(f"{hashlib.sha256(Path(f).read_bytes()).hexdigest()}  {f}\n" for f in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def first_epoch(status_json: Path) -> str:
    """The epoch a run's status.json says it stopped after ("" when unreadable)."""
    try:
        m = re.search(r'"epoch": *([0-9]*)', status_json.read_text())
    except OSError:
        return ""
    return m.group(1) if m else ""


def human_size(n: float) -> str:
    """Bytes as `du -h` writes them: 980, 9.2K, 12K, 3.4M."""
    for unit in ("", "K", "M"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "" or n >= 10 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}G"


def signal_rc(rc: int) -> int:
    """A child's exit status as the shell reports it (128 + signal for a killed one)."""
    return 128 - rc if rc < 0 else rc


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


class Window:
    """One call: its scratch folders, its log and summary, its stages' exit statuses and the set it trains."""

    def __init__(self, s: Settings):
        self.s = s
        self.t0 = time.monotonic()
        self.now_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.window_id = self.now_utc[:4] + self.now_utc[5:7] + self.now_utc[8:13] + self.now_utc[14:16] + "Z"
        self.code = code_digest()
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
        # the set (section 2)
        self.plan = dict(DEFAULT_PLAN)
        self.deltas: list[str] = []
        self.seeds: list[str] = []
        self.run_group = s.group
        self.graphs = "0"
        self.set_graphs = ""   # the set's own graphs, for a continuation (a tf32 twin trains without)
        self.fused_check = ""   # the fused graph check here ("ok": a failed streams stage may retry fused graphed)
        self.cont_from = ""
        self.train_started = False   # from then on, pack keeps the set's runs for a later call
        self.data_root = ""

    # ------------------------------------------------------------------ log, summary, stages
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

    def run_stage(self, name: str, limit: int, cmd: list[str]) -> int:
        """``cmd`` under a hard timeout, its output in logs/NAME.log, its exit status in rc[NAME], its wall seconds
        in wall[NAME]."""
        self.log(f"stage {name} (hard limit {limit}s): {' '.join(cmd)}")
        path = self.stage / "logs" / f"{name}.log"
        t0 = time.monotonic()
        with open(path, "w") as f:
            proc = self.spawn(["timeout", "-k", "10", str(limit), *cmd], f)
            rc = signal_rc(proc.wait())
            self.children = []
        self.rc[name], self.wall[name] = rc, round(time.monotonic() - t0, 1)
        self.log(f"stage {name}: exit {rc}")
        if rc != 0:
            for line in path.read_text(errors="replace").splitlines()[-20:]:
                print(f"  [{name}] {line}", flush=True)
        return rc

    # ------------------------------------------------------------------ 4. pack (always, last)
    def pack(self, rc: int) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)   # a second signal must not cut the archive short
        for proc in self.children:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.children:
            proc.wait()
        lines = [f"window_id: {self.window_id}", f"elapsed_s: {self.elapsed()}", f"budget_s: {self.s.budget_s}",
                 f"matrix_cap_s: {self.s.matrix_s}", f"exit: {rc}"]
        lines += [f"stage_rc.{k}: {v}" for k, v in self.rc.items()]
        lines += [f"stage_s.{k}: {v}" for k, v in self.wall.items()]
        for status in sorted(self.runs.glob("*/*/status.json")):
            try:
                compact = re.sub(r"[\n ]", "", status.read_text(errors="replace"))
            except OSError as e:
                compact = f"unreadable: {e}"
            lines.append(f"run.{status.parent.name}: {compact}")
        speed_md = self.stage / "speed" / "speed.md"
        # each step by itself, so that a failing one still leaves the archive
        try:
            self.summary("\n".join(lines))
            if speed_md.is_file():
                shutil.copy(speed_md, Path(self.s.out) / "speed.md")
        except OSError as e:
            self.log(f"error: writing the summary or copying speed.md: {e}")
        # run folders without checkpoints (and without lock or temporary files)
        try:
            shutil.copytree(self.runs, self.stage / "runs", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("checkpoint.pt", ".*.lock", ".*.tmp"))
        except (OSError, shutil.Error) as e:
            self.log(f"error: copying the run folders into the archive: {e}")
        try:
            self.keep_runs()   # (after the copy above: it may move the scratch folders away)
        except OSError as e:
            self.log(f"error: keeping the runs for a second call: {e}")
        archive = Path(self.s.out) / "window.tar.gz"
        try:
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(self.stage, arcname="window")
            self.log(f"packed {archive} ({human_size(archive.stat().st_size)})")
        except OSError as e:
            self.log(f"error: could not pack {archive}: {e}")
        try:
            print("---- summary\n" + (self.stage / "summary.txt").read_text(), end="")
            print("---- speed\n" + (speed_md.read_text() if speed_md.is_file() else ""), end="", flush=True)
        except OSError:
            pass
        shutil.rmtree(self.work, ignore_errors=True)
        if self.scratch_runs:
            shutil.rmtree(self.runs, ignore_errors=True)
        return rc

    def keep_runs(self) -> None:
        """The set's run folders, checkpoints included, into KEEP for a later call of this session (section 2)."""
        if not (self.train_started and self.s.continue_):
            return
        keep, n, epoch = self.s.keep, 0, ""
        shutil.rmtree(keep, ignore_errors=True)
        try:
            (keep / "runs" / self.run_group).mkdir(parents=True)
        except OSError:
            return
        for r in sorted(p for p in (self.runs / self.run_group).glob("*") if p.is_dir()):
            if not (r / "checkpoint.pt").is_file():
                continue
            # a bf16 set's tf32 twin (no -bf16 in its name) is not part of the set
            if self.plan["PLAN_AMP"] == "bf16" and "-bf16-" not in r.name:
                continue
            dest = keep / "runs" / self.run_group / r.name
            try:
                if self.scratch_runs:
                    shutil.move(str(r), str(dest))
                else:
                    shutil.copytree(r, dest, symlinks=True)
            except OSError:
                continue
            epoch = epoch or first_epoch(dest / "status.json")
            n += 1
        if n == 0:
            shutil.rmtree(keep, ignore_errors=True)
            return
        values = {"FROM": self.cont_from or self.window_id, "EPOCH": epoch or "0", "SOURCE": self.source_commit,
                  "CODE": self.code, "GROUP": self.s.group, "RUN_GROUP": self.run_group, "WIDTH": self.s.width,
                  "K": self.plan["PLAN_K"], "AMP": self.plan["PLAN_AMP"], "DELTAS": " ".join(self.deltas),
                  "SEEDS": " ".join(self.seeds), "MODE": self.plan["PLAN_MODE"],
                  "GRAPHS": self.set_graphs or self.graphs, "FUSED_CHECK": self.fused_check}
        (keep / "keep.env").write_text("".join(f'CONT_{k}="{v}"\n' for k, v in values.items()))
        self.log(f"kept {n} run folder(s) with their checkpoints in {keep}: a second call of this session continues "
                 "them")
        self.summary(f"kept: {n} run folder(s) for a second call (after epoch {epoch or 0})")

    # ------------------------------------------------------------------ 1. data and machine
    def describe_machine(self) -> None:
        lines = [f"date: {self.now_utc}", f"window_id: {self.window_id}",
                 "host: " + command_output(["uname", "-a"])[1].strip(),
                 f"nproc: {len(os.sched_getaffinity(0))}"]
        try:
            kib = int(re.search(r"MemTotal: *([0-9]+)", Path("/proc/meminfo").read_text()).group(1))
            lines.append(f"memory_gib: {kib // 1024 ** 2}")
        except (OSError, AttributeError):
            pass
        source = Path(".device/source.txt")
        if source.is_file():
            lines.append(source.read_text().rstrip("\n"))
        _, version, err = self.python("-c", "import sys; print(sys.version.split()[0])")
        lines.append(f"python: {self.s.python} = {(version + err).strip()}")
        _, versions, err = self.python("-c", "from importlib.metadata import version\n"
                                             "for m in ('torch', 'torchvision', 'numpy', 'scipy', 'pandas', 'pillow', "
                                             "'triton'):\n"
                                             "    try:\n        print(f'{m}: {version(m)}')\n"
                                             "    except Exception:\n        print(f'{m}: not installed')\n")
        lines.append((versions + err).rstrip("\n"))
        if shutil.which("nvidia-smi"):
            _, out, err = command_output(["nvidia-smi"])
            lines.append("---- nvidia-smi\n" + (out + err).rstrip("\n"))
        text = "\n".join(lines) + "\n"
        (self.stage / "env.txt").write_text(text)
        print(text, end="", flush=True)

    def unpack(self, archive: str, into: str) -> bool:
        """Extract ``archive`` next to ``into``, then move its one top folder into place (never half-extracted)."""
        try:
            tmp = tempfile.mkdtemp(prefix=".unpack.", dir=os.path.dirname(into))
        except OSError:
            return False
        try:
            if subprocess.run(["tar", "-xzf", archive, "-C", tmp]).returncode != 0:
                return False
            tops = sorted(p for p in Path(tmp).iterdir() if p.is_dir())
            if not tops or not (tops[0] / "train").is_dir():
                self.log(f"error: {archive} holds no <folder>/train/")
                return False
            shutil.rmtree(into, ignore_errors=True)
            os.rename(tops[0], into)
            return True
        except OSError as e:
            self.log(f"error: could not unpack {archive}: {e}")
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def find_data(self) -> None:
        data = self.s.data
        if data and os.path.isfile(data):
            os.makedirs(self.work / "data", exist_ok=True)
            if not self.unpack(data, str(self.work / "data" / "images")):
                raise Exit(2)
            root = str(self.work / "data" / "images")
        elif data:
            root = data
        elif os.path.isdir("../shared/data/cifar10-jpeg/train"):
            root = "../shared/data/cifar10-jpeg"   # the preset's own data_root: config.json as on any machine
        else:
            if not os.path.isfile(TARBALL):
                self.log(f"error: no {TARBALL} (run device/prepare.sh and carry .device)")
                raise Exit(2)
            if hashlib.sha256(Path(TARBALL).read_bytes()).hexdigest() != SHA256:
                self.log(f"error: {TARBALL} has the wrong sha256 (expected {SHA256})")
                raise Exit(2)
            # Beside the checkout as on the development machines, so the runs record the same relative data_root;
            # inside .device/ where that folder cannot be made.
            root = "../shared/data/cifar10-jpeg"
            try:
                os.makedirs("../shared/data", exist_ok=True)
                beside = self.unpack(TARBALL, root)
            except OSError:
                beside = False
            if not beside:
                root = ".device/data/cifar10-jpeg"
                os.makedirs(".device/data", exist_ok=True)
                if not self.unpack(TARBALL, root):
                    raise Exit(2)
        files = sum(len(names) for _, _, names in os.walk(os.path.join(root, "train")))
        self.log(f"data: {root} ({files} train files)")
        self.summary(f"data_root: {root}")
        self.data_root = root

    # ------------------------------------------------------------------ 2. the set
    # A session may make a second call on the same warm machine with the device time its first call left. The first
    # call's pack moved its set's run folders, checkpoints included, to KEEP (outside the checkout: each call's
    # carried .device/ replaces that folder). A later call of the same source commit, group and width trains those
    # runs on (--resume) for its own budget, with the same plan and the graphs that call trained with, instead of new
    # seeds: a longer prefix of the same runs beats a short extra seed, which would pull the group's compared epoch
    # back (lsnc.book.scale.align_prefixes). LSNC_WINDOW_CONTINUE=0, or LSNC_WINDOW_SEEDS, starts new seeds instead.
    def continue_kept(self) -> bool:
        """Take over the runs an earlier call kept; False (and why, in the log) where they do not fit this call."""
        s, keep = self.s, self.s.keep
        if not s.continue_ or s.seeds or not (keep / "keep.env").is_file():
            return False
        kept = read_assignments(keep / "keep.env", KEEP_LINE)
        get = (lambda k: kept.get(f"CONT_{k}", "")) if kept is not None else None
        why = ""
        if kept is None:
            why = f"invalid {keep}/keep.env"
        elif get("SOURCE") != self.source_commit:
            why = f"trained from source {get('SOURCE')}, this call's is {self.source_commit}"
        elif get("CODE") != self.code:
            why = f"lsnc/ differs from the code that trained them (sha256 {get('CODE')}, here {self.code})"
        elif get("GROUP") != s.group or get("WIDTH") != s.width or get("RUN_GROUP") not in s.both_groups:
            why = f"group {get('GROUP')} ({get('RUN_GROUP')}) width {get('WIDTH')}, not {s.group} width {s.width}"
        elif not list((keep / "runs" / get("RUN_GROUP")).glob("*/checkpoint.pt")):
            why = "no checkpoints"
        elif not (get("DELTAS").strip() and get("SEEDS").strip()):
            why = "no δ or no seed in keep.env"
        else:
            # (renamed; KEEP, under $TMPDIR, may be another filesystem than the checkout: copied then, and KEEP
            # removed below only once the copy is whole)
            src, dst = keep / "runs" / get("RUN_GROUP"), self.runs / get("RUN_GROUP")
            try:
                self.runs.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(src, dst)
                except OSError:
                    shutil.copytree(src, dst, symlinks=True)
            except (OSError, shutil.Error) as e:
                why = f"could not move them into {self.runs}: {e}"
                shutil.rmtree(dst, ignore_errors=True)   # a partial copy; KEEP still has them all
        if why:
            self.log(f"runs kept by an earlier call in {keep} not continued ({why}): a new set")
            return False
        shutil.rmtree(keep, ignore_errors=True)
        self.train_started = True   # they are in the runs folder now: pack keeps them again, whatever happens next
        self.plan.update(PLAN_K=get("K"), PLAN_AMP=get("AMP"), PLAN_DELTAS=get("DELTAS"), PLAN_SEEDS=get("SEEDS"),
                         PLAN_TWIN="0", PLAN_MODE=get("MODE"))
        self.graphs, self.run_group, self.fused_check = get("GRAPHS"), get("RUN_GROUP"), get("FUSED_CHECK")
        self.deltas, self.seeds = get("DELTAS").split(), get("SEEDS").split()
        self.cont_from = get("FROM")
        self.log(f"continuing the runs of window {get('FROM')} (stopped after epoch {get('EPOCH')}) with --resume: "
                 "no matrix, no new seeds")
        (self.stage / "speed" / "speed.md").write_text(
            f"# Speed matrix skipped\n\nA continuation of window {get('FROM')}'s runs (after epoch {get('EPOCH')}), "
            "same plan.\n")
        self.summary(f"continued: window {get('FROM')} after epoch {get('EPOCH')}")
        self.summary(f"seeds: {' '.join(self.seeds)}")
        return True

    def earlier_plan(self) -> tuple[Path | None, str, str, Path | None]:
        """The plan of the newest earlier window (window ids sort by time): its matrix's plan re-derived by today's
        rule (benchmarks/training_plan.py), so a rule changed since that window applies; only where no earlier window
        left a speed.json that still gives a plan, the newest valid plan.env as it was written. Both groups' speed
        folders (unpack.sh puts a window's beside the runs it brought back). Returns (plan.env, window id, how,
        speed.json the plan was derived from)."""
        s = self.s
        speed_json, json_id, plan_env, env_id = newest_earlier(s.known, s.both_groups, self.log)
        if speed_json is not None:
            replan = self.work / "replan.txt"
            if derive_plan(s.python, speed_json, self.work / "replan", replan) is not None:
                for line in replan.read_text().splitlines():
                    self.log(line)
                return (self.work / "replan" / "plan.env", json_id, "plan derived by today's rule from the matrix "
                        f"of window {json_id} ({relative_to_repo(speed_json)})", speed_json)
            if plan_env is not None:
                self.log(f"could not re-derive a plan from {speed_json}: {last_line(replan)}")
        if plan_env is not None:
            return plan_env, env_id, f"plan reused from window {env_id} ({relative_to_repo(plan_env)})", speed_json
        return None, "", "", speed_json

    def plan_new_set(self) -> None:
        """The plan (a reused one, checked here, or this window's matrix's), then its seeds."""
        s, speed = self.s, self.stage / "speed"
        reuse, reuse_json = None, None
        if s.matrix != "full":
            reuse, reuse_id, how, reuse_json = self.earlier_plan()
        if reuse is not None:
            shutil.copy(reuse, speed / "plan.env")
            msg = f"speed matrix skipped: {how}"
            text = f"# Speed matrix skipped\n\n{msg} (LSNC_WINDOW_MATRIX={s.matrix}; full measures again).\n\n"
            if (self.work / "replan.txt").is_file():
                text += (self.work / "replan.txt").read_text() + "\n"
            text += "".join(f"    {line}\n" for line in reuse.read_text().splitlines())
            (speed / "speed.md").write_text(text)
            self.log(msg)
            self.summary(f"matrix: reused {reuse_id}")
        elif s.matrix == "skip":
            msg = (f"speed matrix skipped (LSNC_WINDOW_MATRIX=skip): no earlier plan in "
                   f"{relative_to_repo(s.known)}/{s.group}[-bf16]/speed/; the default plan")
            (speed / "speed.md").write_text(f"# Speed matrix skipped\n\n{msg}.\n")
            self.log(msg)
            self.summary("matrix: skipped, default plan")
        else:
            # The cells stop at the cap (SIGALRM inside); the outer limit adds time for decoding the images once.
            self.run_stage("matrix", s.matrix_s + 120, [
                s.python, "benchmarks/speed_matrix.py", "--dataset", "cifar10-jpeg", "--data-root", self.data_root,
                "--width", s.width, "--wall-s", str(s.matrix_s), "--out-dir", str(speed), *s.matrix_args])

        # The plan: K fused models, precision, δ x seeds (benchmarks/training_plan.py); a failed matrix leaves the
        # minimum set.
        plan = read_plan(speed / "plan.env")
        if plan is not None:
            self.plan.update(plan)
        elif (speed / "plan.env").exists():
            self.log(f"invalid {speed / 'plan.env'}: the default plan")
        self.plan["PLAN_MODE"] = s.mode or self.plan["PLAN_MODE"]   # an override, e.g. to test each path
        if self.plan["PLAN_MODE"] not in MODES:
            self.log("error: LSNC_WINDOW_MODE (or the plan's PLAN_MODE) must be fused, streams or concurrent")
            raise Exit(2)
        self.graphs = s.graphs or self.plan["PLAN_GRAPHS"]
        if self.graphs == "1" and (reuse is not None or s.matrix != "skip"):
            self.check_graphs(reuse, reuse_json)
        self.deltas = self.plan["PLAN_DELTAS"].split()
        if self.plan["PLAN_AMP"] == "bf16":
            self.run_group = f"{s.group}-bf16"
        self.choose_seeds()

    def check_graphs(self, reuse: Path | None, reuse_json: Path | None) -> None:
        """Train with CUDA graphs only where a graph check passed on this machine.

        A reused plan's graphs were checked on another machine, and LSNC_WINDOW_GRAPHS=1 forces them unchecked:
        check the graphed step against the eager one here (the matrix's graph-check cell alone, a few seconds after
        the data are decoded) before training with it. (Window 20261127T2102Z forced graphs past this check, in
        TF32, whose check had failed in the matrix of the window before it.) Graphs forced past this window's own
        matrix go only where its check at the plan's precision passed.
        A graphed plan (fused or streams) re-derived from an earlier speed.json, at K = 2 or 4, also probes streams
        on this machine: the same set graphed as one fused network and as K networks on K CUDA streams, both timed
        here, the streams step checked against the eager one (benchmarks/training_plan.py --probe): streams where
        they pass and are >= 1.1x, else fused. A K = 2 set on streams may take K = 4 (a second seed) where its
        members keep enough of their epochs (that cell after the others the plan needs). (A streams plan reused
        from a plan.env gets the streams check only.) The cells' names fix --ks and no --skip applies
        (LSNC_WINDOW_MATRIX_ARGS may carry both, for the matrix). The check stage also runs the evaluation cell, last
        (the cells run in the order given; the wall cap cuts the last first): a window that reuses a plan runs no
        matrix, and so would never time an evaluation (and its parts) against a bare forward pass on the GPU; the
        probe takes that cell's seconds for a member's evaluation."""
        s, plan, speed = self.s, self.plan, self.stage / "speed"
        prec = "bf16" if plan["PLAN_AMP"] == "bf16" else "tf32"
        fused_cell = f"cudagraph check {prec} K=2"
        if reuse is not None:
            cells = [fused_cell]
            probe = (plan["PLAN_MODE"] != "concurrent" and plan["PLAN_GRAPHS"] == "1" and not s.mode
                     and reuse == self.work / "replan" / "plan.env" and plan["PLAN_K"] in ("2", "4"))
            k = plan["PLAN_K"]
            if probe:
                cells += [f"cudagraph {prec} K={k}", f"streams check {prec} K=2", f"streams {prec} K={k}"]
                if k == "2":
                    cells.append(f"streams {prec} K=4")
            elif plan["PLAN_MODE"] == "streams":
                cells.append(f"streams check {prec} K=2")
            cells.append("evaluation")   # last (the cap cuts it first): this machine's evaluation, against forwards
            self.run_stage("graphcheck", 180, [
                s.python, "benchmarks/speed_matrix.py", "--dataset", "cifar10-jpeg", "--data-root", self.data_root,
                "--width", s.width, "--wall-s", "90", "--out-dir", str(speed / "check"), *s.matrix_args,
                "--skip", "--ks", "1", "2", "4", "--cells", *cells])
            check_json, where, note = speed / "check" / "speed.json", "on this machine", ""
            if probe:
                self.probe_streams(reuse_json, check_json)
        else:
            check_json, where, note = speed / "speed.json", "in this window's matrix", " (this window's matrix)"
        self.fused_check = cell_status(check_json, fused_cell)
        check_cell, check = fused_cell, self.fused_check
        if plan["PLAN_MODE"] == "streams":
            check_cell = f"streams check {prec} K=2"
            check = cell_status(check_json, check_cell)
            if check != "ok" and self.fused_check == "ok" and not s.mode:
                self.log(f"{check_cell} {where}: {check}; the fused one passed: the set trains as one fused network, "
                         "graphed")
                plan["PLAN_MODE"], check_cell, check = "fused", fused_cell, "ok"
        if check == "ok":
            self.log(f"{check_cell} {where}: ok")
        else:
            self.log(f"{check_cell} {where}: {check}: training without CUDA graphs")
            self.graphs = "0"
            # streams pay only graphed (an explicit LSNC_WINDOW_MODE=streams stays)
            if plan["PLAN_MODE"] == "streams" and not s.mode:
                plan["PLAN_MODE"] = "fused"
            # A plan derived here from an earlier matrix may have chosen bf16 for its graphs alone (on the H200 eager
            # bf16 was no faster than TF32): derive it again from that matrix without graphs.
            if plan["PLAN_AMP"] == "bf16" and reuse == self.work / "replan" / "plan.env":
                txt = self.work / "replan-nographs.txt"
                again = derive_plan(s.python, reuse_json, self.work / "replan-nographs", txt, "--no-graphs")
                if again is not None:
                    plan.update(again)
                    shutil.copy(self.work / "replan-nographs" / "plan.env", speed / "plan.env")
                    plan["PLAN_MODE"] = s.mode or plan["PLAN_MODE"]
                    if plan["PLAN_MODE"] == "streams" and not s.mode:
                        plan["PLAN_MODE"] = "fused"
                    self.log(f"the plan again, without CUDA graphs: {txt.read_text().rstrip(chr(10))}")
                    self.summary(f"plan: derived again without CUDA graphs (amp={plan['PLAN_AMP']} "
                                 f"K={plan['PLAN_K']})")
        self.summary(f"graph_check: {check}{note}")
        if check_cell != fused_cell:
            self.summary(f"fused_check: {self.fused_check}")

    def probe_streams(self, reuse_json: Path, check_json: Path) -> None:
        """The plan again with this machine's probe cells (streams or one fused network, K = 2 or 4)."""
        txt = self.work / "probe.txt"
        probed = derive_plan(self.s.python, reuse_json, self.work / "probe", txt, "--probe", str(check_json))
        text = txt.read_text()
        if probed is None:
            self.log(f"the streams probe gave no plan (the plan stays {self.plan['PLAN_MODE']}): {last_line(txt)}")
            return
        self.plan.update(probed)
        shutil.copy(self.work / "probe" / "plan.env", self.stage / "speed" / "plan.env")
        self.log(f"the plan with this machine's streams probe: {text.rstrip(chr(10))}")
        reasons = re.compile(r"on this machine [^;]*|streams not used here[^;]*|epochs per member on streams here[^;]*")
        why = [m.group(0).removesuffix(".") for line in text.splitlines() for m in reasons.finditer(line)]
        self.summary(f"probe: {self.plan['PLAN_MODE']} ({'; '.join(why)})")

    def next_seeds(self, *args: str) -> tuple[int, str, str]:
        """device/next_seeds.py over the earlier windows' runs, this call's and the kept ones."""
        return next_seeds(self.s.python, self.s.both_groups, *args)

    def choose_seeds(self) -> None:
        """Every window adds runs. Its seeds are the lowest whose whole δ set no earlier window trained at the plan's
        precision, as found in LSNC_WINDOW_KNOWN_RUNS (the committed runs, carried with the checkout): unpack.sh
        never replaces a run folder, and checkpoints never come back, so a repeated (δ, seed, precision) would be a
        lost window. A bf16 set's runs are named apart from TF32 ones (-bf16-): TF32 runs of the same seeds are its
        precision twins."""
        s, plan = self.s, self.plan
        keep_runs, plan_seeds = str(s.keep / "runs"), plan["PLAN_SEEDS"].split()
        amp = ["--amp", "bf16" if plan["PLAN_AMP"] == "bf16" else "none"]
        rc, found, err = self.next_seeds("--deltas", *self.deltas, "--count", str(len(plan_seeds)), *amp,
                                         keep_runs, s.known, str(self.runs))
        found = found.rstrip("\n")
        for line in err.splitlines():
            self.log(line)
        if s.seeds:
            self.seeds = s.seeds.split()
            self.log(f"seeds: {' '.join(self.seeds)} (LSNC_WINDOW_SEEDS; the plan's {plan['PLAN_SEEDS']}; new ones "
                     f"would be {found or 'unknown'})")
            for seed in self.seeds:
                if f"seed {seed} taken" in err:
                    self.log(f"warning: seed {seed} was trained before: unpack.sh will not replace those runs")
        elif rc == 0 and re.fullmatch(r"[0-9]+( [0-9]+)*", found):
            self.seeds = found.split()
            self.log(f"seeds: {' '.join(self.seeds)} (as many as the plan's, the lowest not yet trained with δ "
                     f"{' '.join(self.deltas)} at this precision)")
        else:
            self.seeds = plan_seeds
            self.log(f"warning: device/next_seeds.py failed (exit {rc}): the plan's seeds {' '.join(self.seeds)}")
        # The tf32 twin of a bf16 set (its CE run of the first seed) trains only where no earlier window trained it
        # (the TF32 runs of that seed are its twins then) and while the group holds fewer than LSNC_WINDOW_TWINS
        # seeds with CE runs in both precisions: past that, the bf16 set gets the whole budget.
        if plan["PLAN_AMP"] == "bf16" and plan["PLAN_TWIN"] == "1":
            rc, twins, _ = self.next_seeds("--deltas", "0", "--find", self.seeds[0], "--amp", "none", s.known,
                                           str(self.runs), keep_runs)
            if rc == 0:
                plan["PLAN_TWIN"] = "0"
                names = "".join(os.path.basename(x) + " " for x in twins.split())
                self.log(f"tf32 twin of seed {self.seeds[0]}: trained before ({names}): not again")
                self.summary(f"twin: trained before: {names}")
            else:
                _, have, _ = self.next_seeds("--deltas", "0", "--twin-pairs", s.known, str(self.runs), keep_runs)
                have = have.split()
                if len(have) >= s.twins_enough:
                    plan["PLAN_TWIN"] = "0"
                    self.log(f"tf32 twin: not trained, the group has CE runs in both precisions for seeds "
                             f"{' '.join(have)} (LSNC_WINDOW_TWINS={s.twins_enough} is enough)")
                    self.summary(f"twin: enough twins already (seeds {' '.join(have)})")
        self.summary(f"seeds: {' '.join(self.seeds)}")

    # ------------------------------------------------------------------ 3. training
    def train_command(self) -> list[str]:
        cmd = ["-m", "lsnc", "train", "--preset", "paper-cifar10-jpeg", "--data-root", self.data_root, "--tf32",
               "--channels-last", "--group", self.run_group, "--runs-dir", str(self.runs), "--quiet"]
        if self.s.width != "64":
            cmd += ["--width", self.s.width]
        cmd += self.s.train_args
        return cmd

    def train_for(self, name: str, secs: int, args: list[str]) -> int:
        """One `lsnc train` stage: lsnc stops itself within ``secs`` (after the last epoch that fits, evaluated)."""
        self.summary(f"train.{name}: {self.s.python} {' '.join(self.train)} --time-budget-s {secs} {' '.join(args)}")
        return self.run_stage(name, secs + 60, [self.s.python, *self.train, "--time-budget-s", str(secs), *args])

    def train_stage(self, name: str, secs: int, args: list[str]) -> int:
        """train_for, with --cuda-graphs where graphs are on; if that fails, again without CUDA graphs for the
        stage's time left, with --resume (runs stopped after an epoch continue from their checkpoint, runs never
        started start fresh, finished ones stay as they are); later stages then train without them."""
        end = self.elapsed() + secs
        if self.graphs != "1":
            return self.train_for(name, secs, args)
        if self.train_for(name, secs, ["--cuda-graphs", *args]) == 0:
            return 0
        secs, self.graphs = end - self.elapsed(), "0"   # and no CUDA graphs for the stages after it
        self.log(f"stage {name} with --cuda-graphs failed (exit {self.rc[name]}): again without CUDA graphs "
                 f"(--resume), {secs}s left")
        if secs < 10:
            self.log(f"no time left for {name} without CUDA graphs")
            return self.rc[name]
        return self.train_for(f"{name}-nographs", secs, ["--resume", *args])

    def train_concurrent(self, name: str, secs: int, extra: list[str]) -> int:
        """One process per (δ, seed) of the set, all at once on the one GPU, each for ``secs`` with ``extra``,
        logged to logs/train-dD-sS.log; with graphs on, first with --cuda-graphs and, if that fails, again without
        CUDA graphs for its own time left, with --resume (each pair falls back by itself: the others keep their
        graphs and their time). The stage's exit status (1 if any pair failed) goes to rc[NAME]."""
        pairs = [(d, s) for s in self.seeds for d in self.deltas]
        note = "--cuda-graphs (if it fails: again without, --resume)" if self.graphs == "1" else ""
        jobs, self.children, t0 = [], [], time.monotonic()
        self.set_graphs = self.graphs   # what a continuation of these runs trains with: off once a pair falls back
        for d, s in pairs:
            self.summary(f"train.d{d}-s{s}: {self.s.python} {' '.join(self.train)} --time-budget-s {secs} "
                         f"--delta {d} --seed {s} {' '.join(extra)} {note}")
            job = {"d": d, "s": s, "end": self.elapsed() + secs, "log": self.stage / "logs" / f"train-d{d}-s{s}.log",
                   "graphs": self.graphs == "1", "rc": None}
            job["log"].write_text("")
            self._start_pair(job, secs, ["--cuda-graphs"] if job["graphs"] else [], extra)
            jobs.append(job)
        self.log(f"stage {name} (concurrent, {len(jobs)} processes, budget {secs}s, graphs={self.graphs})")
        while any(j["rc"] is None for j in jobs):
            time.sleep(0.2)
            for job in jobs:
                if job["rc"] is not None or job["proc"].poll() is None:
                    continue
                rc = signal_rc(job["proc"].returncode)
                if rc == 0 or not job["graphs"]:
                    job["rc"] = rc
                    continue
                job["graphs"], left = False, job["end"] - self.elapsed()
                self.set_graphs = "0"   # (at once: this call may be stopped before the stage ends)
                with open(job["log"], "a") as f:
                    f.write(f"window: d{job['d']}-s{job['s']} with --cuda-graphs failed: again without CUDA graphs "
                            f"(--resume), {left}s left\n")
                if left < 10:
                    job["rc"] = 1
                else:
                    self._start_pair(job, left, ["--resume"], extra)
        self.children = []
        failed = [f"{j['d']}:{j['s']}" for j in jobs if j["rc"] != 0]
        rc = 1 if failed else 0
        self.rc[name], self.wall[name] = rc, round(time.monotonic() - t0, 1)
        self.log(f"stage {name}: exit {rc}" + (f" (failed: {' '.join(failed)})" if failed else ""))
        for log in sorted((self.stage / "logs").glob("train-d*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("window: "):
                    self.log(line)
        return rc

    def _start_pair(self, job: dict, secs: int, options: list[str], extra: list[str]) -> None:
        old = job.get("proc")
        self.children = [p for p in self.children if p is not old]
        with open(job["log"], "a") as f:
            job["proc"] = self.spawn(
                ["timeout", "-k", "10", str(secs + 60), self.s.python, *self.train, "--time-budget-s", str(secs),
                 "--delta", job["d"], "--seed", job["s"], *extra, *options], f)

    def unfuse(self, rc: int) -> int:
        """The fused (or streams) set failed with ``rc`` (such a set never trained on this machine before): the same
        (δ, seed) set again as concurrent processes at the set's precision, for the time left, with --resume (members
        that stopped after an epoch continue from their checkpoints, the others start fresh). No fallback with less
        than a minute left."""
        secs, mode = self.left() - PACK_RESERVE_S, self.plan["PLAN_MODE"]
        if secs < 60:
            self.log(f"{mode} training failed (exit {rc}) with {secs}s left: no fallback")
            return rc
        self.log(f"{mode} training failed (exit {rc}): the set again as concurrent {self.prec} processes (--resume), "
                 f"{secs}s left")
        self.summary(f"fallback: concurrent after {mode} exit {rc}")
        self.plan["PLAN_MODE"] = "concurrent"   # what a continuation of these runs must do too (members stop apart)
        return self.train_concurrent("train-concurrent", secs, [*self.amp, "--resume"])

    def train_set(self, continued: bool) -> int:
        plan = self.plan
        t = self.left() - PACK_RESERVE_S
        if t < 10:
            self.log(f"error: only {t}s left for training; none")
            raise Exit(4)
        if self.graphs != "1" and plan["PLAN_MODE"] == "streams" and not self.s.mode:
            self.log("no CUDA graphs: the set trains as one fused network (streams pay only graphed)")
            plan["PLAN_MODE"] = "fused"
        self.train = self.train_command() + (["--resume"] if continued else [])   # the earlier call's checkpoints
        self.train_started = True
        # The set's precision: TF32 (--tf32 in the command), or bf16 autocast on top of it (names then carry -bf16).
        bf16 = plan["PLAN_AMP"] == "bf16"
        self.amp, self.prec = (["--amp", "bf16"], "bf16") if bf16 else ([], "tf32")
        members = ["--delta", *self.deltas, "--seed", *self.seeds]
        # (a bf16 plan is a set of one process; concurrent bf16 processes only continue a set that fell back to them)
        if plan["PLAN_MODE"] == "concurrent" and (not bf16 or continued):
            return self.train_concurrent("train", t, self.amp)
        if bf16 and plan["PLAN_TWIN"] == "1":
            t = t * 3 // 4   # a bf16 set with its tf32 twin: 3/4 of the time for the set, the rest for the twin
        if plan["PLAN_MODE"] == "streams":
            # One try (with graphs where on); if it fails, the set again as one fused network with --resume for the
            # time left (graphed where this machine's fused graph check passed), then as processes.
            end = self.elapsed() + t
            graphed = ["--cuda-graphs"] if self.graphs == "1" else []
            rc = self.train_for("train", t, [*self.amp, "--together", "streams", *graphed, *members])
            if rc != 0 and end - self.elapsed() >= 10:
                if self.fused_check != "ok":
                    self.graphs = "0"
                self.log(f"streams training failed (exit {rc}): the set again as one fused network (--resume, "
                         f"graphs={self.graphs}), {end - self.elapsed()}s left")
                self.summary(f"fallback: fused after streams exit {rc}")
                plan["PLAN_MODE"] = "fused"   # what a continuation of these runs does too
                rc = self.train_stage("train-fused", end - self.elapsed(), [*self.amp, "--resume", *members])
        else:
            rc = self.train_stage("train", t, [*self.amp, *members])
        self.set_graphs = self.graphs
        if rc != 0 and len(self.deltas) * len(self.seeds) > 1:   # a fused/streams set failed
            return self.unfuse(rc)
        if rc == 0 and bf16 and plan["PLAN_TWIN"] == "1":
            t = self.left() - PACK_RESERVE_S
            # The tf32 twin of the bf16 CE run of the first seed: its default name has no "-bf16", its own folder.
            if t >= 10:
                # the graph check ran at the set's precision (bf16) only: the TF32 twin trains eagerly
                if self.graphs == "1":
                    self.log("tf32 twin: without CUDA graphs (no TF32 graph check passed here)")
                self.graphs = "0"
                self.train_stage("twin", t, ["--group", self.s.group, "--delta", "0", "--seed", self.seeds[0]])
            else:
                self.log("no time left for the tf32 twin")
        return rc

    # ------------------------------------------------------------------ the whole window
    def run(self) -> int:
        self.describe_machine()
        self.find_data()
        continued = self.continue_kept()
        if not continued:
            self.plan_new_set()
        self.summary(f"run_group: {self.run_group}")
        plan = self.plan
        self.log(f"plan: K={plan['PLAN_K']} amp={plan['PLAN_AMP']} δ=({plan['PLAN_DELTAS']}) "
                 f"seeds=({' '.join(self.seeds)}) tf32 twin={plan['PLAN_TWIN']} mode={plan['PLAN_MODE']} "
                 f"graphs={self.graphs} group={self.run_group}")
        return self.train_set(continued)


def preview(s: Settings) -> int:
    """What a window started now would train, from the earlier windows in LSNC_WINDOW_KNOWN_RUNS (this checkout's
    runs/): the plan it takes (the same choice as a window's, before its machine's checks), its seeds and its tf32
    twin. device/prepare.sh prints it; nothing is written."""
    say = lambda message: print(f"prepare: {message}", flush=True)
    speed_json, _, plan_env, _ = newest_earlier(s.known, s.both_groups, lambda message: None)
    plan, from_json = None, False
    with tempfile.TemporaryDirectory() as tmp:
        if speed_json is not None:
            plan = derive_plan(s.python, speed_json, Path(tmp), Path(tmp, "why.txt"))
            if plan is not None:
                from_json = True
                say(f"the window re-derives its plan from {relative_to_repo(speed_json)}: "
                    f"{Path(tmp, 'why.txt').read_text().rstrip()}")
    if plan is None and plan_env is not None:
        plan = read_plan(plan_env)
        say(f"the window reuses the plan {relative_to_repo(plan_env)}: {' '.join(plan_env.read_text().split())}")
    if plan is None:
        say(f"no earlier plan in {relative_to_repo(s.known)}/{s.group}[-bf16]/speed/: the window runs the speed "
            "matrix")
        plan, which = {**DEFAULT_PLAN, "PLAN_SEEDS": "0 1"}, "the first 1 or 2 (its plan says) of seeds"
    else:
        plan, which = {**DEFAULT_PLAN, **plan}, "seeds"
    if (from_json and plan["PLAN_MODE"] in ("fused", "streams") and plan["PLAN_GRAPHS"] == "1"
            and plan["PLAN_K"] in ("2", "4")):
        say("before training, the window checks the graphed step on its machine and probes the set on CUDA streams "
            "there (training_plan.py --probe): streams where they pass and are >= 1.1x one graphed fused network, "
            "else fused; on streams, K=4 (a second seed) where each member keeps >= 0.8 of its epochs")
    bf16 = plan["PLAN_AMP"] == "bf16"
    seeds = lambda *args: next_seeds(s.python, s.both_groups, *args, s.known)
    rc, found, err = seeds("--deltas", *plan["PLAN_DELTAS"].split(), "--count", str(len(plan["PLAN_SEEDS"].split())),
                           "--amp", "bf16" if bf16 else "none")
    if rc != 0:
        say(f"device/next_seeds.py failed: {err.strip()}")
        return 1
    group = f"bf16, group {s.group}-bf16" if bf16 else f"TF32, group {s.group}"
    say(f"the window trains δ {{{plan['PLAN_DELTAS']}}} ({group}) with {which} {found.strip()} "
        "(device/next_seeds.py)")
    if bf16 and plan["PLAN_TWIN"] == "1":
        first = found.split()[0]
        twins_rc, twins, _ = seeds("--deltas", "0", "--find", first, "--amp", "none")
        have = seeds("--deltas", "0", "--twin-pairs")[1].split()
        if twins_rc == 0:
            say(f"its tf32 twin (CE, seed {first}) was trained before: "
                f"{' '.join(os.path.basename(x) for x in twins.split())}")
        elif len(have) >= s.twins_enough:
            say(f"no tf32 twin: seeds {' '.join(have)} already have CE runs in both precisions")
        else:
            say(f"it also trains the tf32 twin (CE, seed {first}) for the last quarter of its budget")
    return 0


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
            rc = window.run()
        except Exit as e:
            rc = e.code
        except Exception:   # a bug here must still leave the archive
            window.log("error: " + traceback.format_exc().rstrip())
            rc = 1
    except Exit as e:   # the signal arrived while the error above was being logged
        rc = e.code
    if window.signalled:
        window.log("signal: stopping")
    return window.pack(rc)


if __name__ == "__main__":
    sys.exit(main())
