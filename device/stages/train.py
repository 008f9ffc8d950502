"""Stage 3: train the set with the paper's recipe, as a prefix of its 800 epochs, for the rest of the budget
(`python -m lsnc train --time-budget-s ...`: lsnc stops itself after the last epoch that fits, evaluated).

The set trains as the plan says: K models fused into one network, K networks on K CUDA streams, or one process per
(δ, seed) at once on the one GPU; with CUDA graphs where the graph check passed. Each way has its fallback, with
--resume for the time left (members stopped after an epoch continue from their checkpoints, the others start
fresh): graphed → eager; streams → one fused network (the first seed's pair alone where the probe raised K to 4
for streams and the second pair trained no epoch); fused or streams → concurrent processes. A stage that writes
nothing for LSNC_WINDOW_STALL_S is stopped as hung (call.Watchdog) and falls back the same way. A bf16 set may also
train its tf32 twin (the CE run of its first seed) in the last quarter of the budget."""

from __future__ import annotations

import json
import time

from .call import Exit, Watchdog, Window, signal_rc

PACK_RESERVE_S = 10   # kept at the end of the budget for packing


def train_command(w: Window) -> list[str]:
    """`-m lsnc train` with the preset, data, TF32, channels-last, group and runs folder (no budget, no members)."""
    cmd = ["-m", "lsnc", "train", "--preset", "paper-cifar10-jpeg", "--data-root", w.data_root, "--tf32",
           "--channels-last", "--group", w.run_group, "--runs-dir", str(w.runs), "--quiet"]
    if w.s.width != "64":
        cmd += ["--width", w.s.width]
    return cmd + w.s.train_args


def train_for(w: Window, name: str, secs: int, args: list[str]) -> int:
    """One `lsnc train` stage: lsnc stops itself within ``secs`` (after the last epoch that fits, evaluated)."""
    w.summary(f"train.{name}: {w.s.python} {' '.join(w.train_cmd)} --time-budget-s {secs} {' '.join(args)}")
    return w.run_stage(name, secs + 60, [w.s.python, *w.train_cmd, "--time-budget-s", str(secs), *args],
                       watched=True)


def train_stage(w: Window, name: str, secs: int, args: list[str]) -> int:
    """train_for, with --cuda-graphs where graphs are on; if that fails, again without CUDA graphs for the stage's
    time left, with --resume (runs stopped after an epoch continue from their checkpoint, runs never started start
    fresh, finished ones stay as they are); later stages then train without them."""
    end = w.elapsed() + secs
    if w.graphs != "1":
        return train_for(w, name, secs, args)
    if train_for(w, name, secs, ["--cuda-graphs", *args]) == 0:
        return 0
    secs, w.graphs = end - w.elapsed(), "0"   # and no CUDA graphs for the stages after it
    w.log(f"stage {name} with --cuda-graphs failed (exit {w.rc[name]}): again without CUDA graphs (--resume), "
          f"{secs}s left")
    if secs < 10:
        w.log(f"no time left for {name} without CUDA graphs")
        return w.rc[name]
    return train_for(w, f"{name}-nographs", secs, ["--resume", *args])


def train_concurrent(w: Window, name: str, secs: int, extra: list[str]) -> int:
    """One process per (δ, seed) of the set, all at once on the one GPU, each for ``secs`` with ``extra``, logged to
    logs/train-dD-sS.log; with graphs on, first with --cuda-graphs and, if that fails, again without CUDA graphs for
    its own time left, with --resume (each pair falls back by itself: the others keep their graphs and their time).
    The stage's exit status (1 if any pair failed) goes to rc[NAME]."""
    pairs = [(d, s) for s in w.seeds for d in w.deltas]
    note = "--cuda-graphs (if it fails: again without, --resume)" if w.graphs == "1" else ""
    jobs, w.children, t0 = [], [], time.monotonic()
    w.set_graphs = w.graphs   # what a continuation of these runs trains with: off once a pair falls back
    for d, s in pairs:
        w.summary(f"train.d{d}-s{s}: {w.s.python} {' '.join(w.train_cmd)} --time-budget-s {secs} "
                  f"--delta {d} --seed {s} {' '.join(extra)} {note}")
        job = {"d": d, "s": s, "end": w.elapsed() + secs, "log": w.stage / "logs" / f"train-d{d}-s{s}.log",
               "graphs": w.graphs == "1", "rc": None}
        job["log"].write_text("")
        _start_pair(w, job, secs, ["--cuda-graphs"] if job["graphs"] else [], extra)
        jobs.append(job)
    w.log(f"stage {name} (concurrent, {len(jobs)} processes, budget {secs}s, graphs={w.graphs})")
    for job in jobs:   # each pair by its own log and run folders
        job["watch"] = Watchdog(w, (job["d"], job["s"]), job["log"])
    while any(j["rc"] is None for j in jobs):
        time.sleep(0.2)
        for job in jobs:
            if job["rc"] is None and job["watch"].stalled():
                job["watch"].stop(f"{name} d{job['d']}-s{job['s']}", [job["proc"]])
        for job in jobs:
            if job["rc"] is not None or job["proc"].poll() is None:
                continue
            rc = signal_rc(job["proc"].returncode)
            if rc == 0 or not job["graphs"]:
                job["rc"] = rc
                continue
            job["graphs"], left = False, job["end"] - w.elapsed()
            w.set_graphs = "0"   # (at once: this call may be stopped before the stage ends)
            with open(job["log"], "a") as f:
                f.write(f"window: d{job['d']}-s{job['s']} with --cuda-graphs failed: again without CUDA graphs "
                        f"(--resume), {left}s left\n")
            if left < 10:
                job["rc"] = 1
            else:
                _start_pair(w, job, left, ["--resume"], extra)
    w.children = []
    failed = [f"{j['d']}:{j['s']}" for j in jobs if j["rc"] != 0]
    rc = 1 if failed else 0
    w.rc[name], w.wall[name] = rc, round(time.monotonic() - t0, 1)
    w.log(f"stage {name}: exit {rc}" + (f" (failed: {' '.join(failed)})" if failed else ""))
    for log in sorted((w.stage / "logs").glob("train-d*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("window: "):
                w.log(line)
    return rc


def _start_pair(w: Window, job: dict, secs: int, options: list[str], extra: list[str]) -> None:
    old = job.get("proc")
    w.children = [p for p in w.children if p is not old]
    with open(job["log"], "a") as f:
        job["proc"] = w.spawn(
            ["timeout", "-k", "10", str(secs + 60), w.s.python, *w.train_cmd, "--time-budget-s", str(secs),
             "--delta", job["d"], "--seed", job["s"], *extra, *options], f)


def _fused_members(w: Window, members: list[str]) -> tuple[list[str], str]:
    """The members a failed streams set trains on as one fused network, and a note for the summary. Where this
    machine's streams probe raised K from 2 to 4 (a second seed, for streams alone) and no run of the later seeds
    trained an epoch, the fused network is the K = 2 one the plan chose: the first seed's pair, each member ~2x the
    epochs of a fused K = 4 (the H200's graphed bf16: 20.9k against 11.5k img/s a member). Runs that trained
    epochs are kept, all of them."""
    if not (w.k_before_probe == "2" and w.plan["PLAN_K"] == "4" and len(w.seeds) > 1):
        return members, ""
    later = w.seeds[1:]
    if any(_epochs_trained(w, seed) for seed in later):
        w.log(f"seed(s) {' '.join(later)} trained epochs on streams: all four members go on fused (K=4)")
        return members, ""
    w.log(f"seed(s) {' '.join(later)} trained no epoch on streams: fused K=2, seed {w.seeds[0]} only (the plan's K "
          "before the streams probe)")
    w.seeds, w.plan["PLAN_K"] = w.seeds[:1], "2"   # and a continuation of these runs
    return ["--delta", *w.deltas, "--seed", *w.seeds], " K=2"


def _epochs_trained(w: Window, seed: str) -> bool:
    """Whether a run of ``seed`` in the scratch runs folder has a row in its epochs.csv (a trained epoch)."""
    for config in w.runs.glob("*/*/config.json"):
        try:
            if str(json.loads(config.read_text()).get("seed")) != seed:
                continue
            rows = (config.parent / "epochs.csv").read_text().splitlines()
        except (OSError, ValueError):
            continue
        if len(rows) > 1:
            return True
    return False


def unfuse(w: Window, rc: int) -> int:
    """The fused (or streams) set failed with ``rc`` (such a set never trained on this machine before): the same
    (δ, seed) set again as concurrent processes at the set's precision, for the time left, with --resume (members
    that stopped after an epoch continue from their checkpoints, the others start fresh). No fallback with less
    than a minute left."""
    secs, mode = w.left() - PACK_RESERVE_S, w.plan["PLAN_MODE"]
    if secs < 60:
        w.log(f"{mode} training failed (exit {rc}) with {secs}s left: no fallback")
        return rc
    w.log(f"{mode} training failed (exit {rc}): the set again as concurrent {w.prec} processes (--resume), "
          f"{secs}s left")
    w.summary(f"fallback: concurrent after {mode} exit {rc}")
    w.plan["PLAN_MODE"] = "concurrent"   # what a continuation of these runs must do too (members stop apart)
    return train_concurrent(w, "train-concurrent", secs, [*w.amp, "--resume"])


def train_set(w: Window, continued: bool) -> int:
    """The set (w.deltas x w.seeds) for the rest of the budget, as w.plan says, with its fallbacks; then a bf16
    set's tf32 twin. ``continued``: the runs an earlier call kept, trained on with --resume."""
    plan = w.plan
    t = w.left() - PACK_RESERVE_S
    if t < 10:
        w.log(f"error: only {t}s left for training; none")
        raise Exit(4)
    if w.graphs != "1" and plan["PLAN_MODE"] == "streams" and not w.s.mode:
        w.log("no CUDA graphs: the set trains as one fused network (streams pay only graphed)")
        plan["PLAN_MODE"] = "fused"
    w.train_cmd = train_command(w) + (["--resume"] if continued else [])   # the earlier call's checkpoints
    w.train_started = True
    # The set's precision: TF32 (--tf32 in the command), or bf16 autocast on top of it (names then carry -bf16).
    bf16 = plan["PLAN_AMP"] == "bf16"
    w.amp, w.prec = (["--amp", "bf16"], "bf16") if bf16 else ([], "tf32")
    members = ["--delta", *w.deltas, "--seed", *w.seeds]
    # (a bf16 plan is a set of one process; concurrent bf16 processes only continue a set that fell back to them)
    if plan["PLAN_MODE"] == "concurrent" and (not bf16 or continued):
        return train_concurrent(w, "train", t, w.amp)
    if bf16 and plan["PLAN_TWIN"] == "1":
        t = t * 3 // 4   # a bf16 set with its tf32 twin: 3/4 of the time for the set, the rest for the twin
    if plan["PLAN_MODE"] == "streams":
        # One try (with graphs where on); if it fails, the set again as one fused network with --resume for the
        # time left (graphed where this machine's fused graph check passed), then as processes.
        end = w.elapsed() + t
        graphed = ["--cuda-graphs"] if w.graphs == "1" else []
        rc = train_for(w, "train", t, [*w.amp, "--together", "streams", *graphed, *members])
        if rc != 0 and end - w.elapsed() >= 10:
            if w.fused_check != "ok":
                w.graphs = "0"
            w.log(f"streams training failed (exit {rc}): the set again as one fused network (--resume, "
                  f"graphs={w.graphs}), {end - w.elapsed()}s left")
            members, fewer = _fused_members(w, members)
            w.summary(f"fallback: fused{fewer} after streams exit {rc}")
            plan["PLAN_MODE"] = "fused"   # what a continuation of these runs does too
            rc = train_stage(w, "train-fused", end - w.elapsed(), [*w.amp, "--resume", *members])
    else:
        rc = train_stage(w, "train", t, [*w.amp, *members])
    w.set_graphs = w.graphs
    if rc != 0 and len(w.deltas) * len(w.seeds) > 1:   # a fused/streams set failed
        return unfuse(w, rc)
    if rc == 0 and bf16 and plan["PLAN_TWIN"] == "1":
        t = w.left() - PACK_RESERVE_S
        # The tf32 twin of the bf16 CE run of the first seed: its default name has no "-bf16", its own folder.
        if t >= 10:
            # the graph check ran at the set's precision (bf16) only: the TF32 twin trains eagerly
            if w.graphs == "1":
                w.log("tf32 twin: without CUDA graphs (no TF32 graph check passed here)")
            w.graphs = "0"
            train_stage(w, "twin", t, ["--group", w.s.group, "--delta", "0", "--seed", w.seeds[0]])
        else:
            w.log("no time left for the tf32 twin")
    return rc
