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

Settings: environment variables, each with its default, listed and checked in device/stages/settings.py
(`device/window.py --preview` says what a window started now would train).

Exit status: that of the set's training (its last attempt); 2 for bad settings or data, 4 when no time is left for
training, 143 on SIGTERM or SIGINT. Only the standard library: it runs on the device's python3 beside torch.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # device/stages, also under python -P or -I

from stages.call import Exit, Window  # noqa: E402
from stages.data import describe_machine, find_data  # noqa: E402
from stages.keep import continue_kept, sent_source  # noqa: E402
from stages.pack import pack  # noqa: E402
from stages.plan import plan_new_set  # noqa: E402
from stages.preview import preview  # noqa: E402
from stages.seeds import choose_seeds  # noqa: E402
from stages.settings import REPO, Settings, fail_setting  # noqa: E402
from stages.train import train_set  # noqa: E402


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
        fail_setting(f"unknown arguments {sys.argv[1:]}: the settings are environment variables "
                     "(device/stages/settings.py); --preview alone says what a window would train")
    os.chdir(REPO)
    window = Window(settings)
    # decoded images, kept for a second call on the same machine (outside the checkout, as KEEP; keyed by the files)
    tmp = os.environ.get("TMPDIR") or "/tmp"
    os.environ["LSNC_CACHE"] = os.environ.get("LSNC_CACHE") or f"{tmp}/lsnc-window-cache"
    os.environ["PYTHONPATH"] = str(REPO) + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    os.environ["PYTHONUNBUFFERED"] = "1"
    # The device's copy has no .git, or one at the session's base commit (not what was sent): the runs' provenance
    # takes the commit that prepare.sh recorded, and whether lsnc/ had uncommitted changes then.
    source, warning = sent_source(Path(".device/source.txt"))
    os.environ.update(source)
    if warning:
        window.log(warning)
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
