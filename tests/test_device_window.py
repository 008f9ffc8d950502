"""The GPU window (device/window.sh, which runs device/window.py) end to end on the CPU, and the speed matrix's cell runner and plan."""

from __future__ import annotations

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
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "device"))   # device/stages, the window's parts


def make_image_tree(root: Path, classes: int = 10, train: int = 14, test: int = 3) -> None:
    """A tiny image folder (PNG and JPEG), 140 training images: one batch of 128 per epoch."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for k in range(classes):
            d = root / split / f"class{k}"
            d.mkdir(parents=True)
            base = np.array([25 * k, 255 - 25 * k, (80 * k) % 256])
            for i in range(n):
                img = np.clip(base + rng.integers(-40, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.{'png' if i % 2 else 'jpg'}")


GROUP = "cifar10-jpeg-full-resnet18-gpu"


def _tiny_tar(tmp_path: Path) -> Path:
    make_image_tree(tmp_path / "tiny")
    with tarfile.open(tmp_path / "tiny.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tiny", arcname="tiny")
    return tmp_path / "tiny.tar.gz"


def _env(tmp_path: Path, tag: str = "", **kw) -> dict:
    """window.sh's settings for a CPU run; earlier windows are looked for in an empty folder unless given.
    Training stops at epoch 2 (--stop-epoch): the budgets are generous so a loaded machine cannot starve it, and
    the runs still end as finished prefixes."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LSNC_WINDOW_")}
    return {**base, "OUT": str(tmp_path / f"out{tag}"), "PYTHON": sys.executable, "TMPDIR": str(tmp_path),
            "LSNC_WINDOW_DATA": str(tmp_path / "tiny.tar.gz"), "LSNC_WINDOW_RUNS_DIR": str(tmp_path / f"runs{tag}"),
            "LSNC_WINDOW_KNOWN_RUNS": str(tmp_path / "no-earlier-windows"),
            "LSNC_WINDOW_WIDTH": "4", "LSNC_WINDOW_BUDGET_S": "150", "LSNC_WINDOW_MATRIX_S": "10",
            "LSNC_WINDOW_TRAIN_ARGS": "--stop-epoch 2",
            "LSNC_WINDOW_MATRIX_ARGS": "--warmup 1 --steps 1 --ks 1 2 --skip compile",
            "LSNC_WINDOW_CONTINUE": "0",   # each call a window of its own session (the continuation test says 1)
            "LSNC_CACHE": str(tmp_path / "cache"), **kw}


def _window(env: dict, expect_rc: int = 0) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(REPO / "device" / "window.sh")], env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == expect_rc, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, time.perf_counter() - t0


def _extract(archive: Path, into: Path) -> tuple[Path, list[str]]:
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(into, filter="data")
    return into / "window", names


def _n_done(w: Path) -> int:
    """How many finished run folders the window brought back, in every group (a bf16 plan's set is a group of its
    own, its tf32 twin in GROUP)."""
    return sum(json.loads((r / "status.json").read_text())["status"] == "done"
               for r in (w / "runs").glob("*/*") if (r / "status.json").is_file())


def _done(w: Path, group: str = "*") -> set[tuple[float, int]]:
    """(δ, seed) of the window's finished runs in ``group`` (default: every group; on a CPU the matrix may plan
    bf16, whose set is GROUP-bf16 and its twin in GROUP)."""
    out = set()
    for r in sorted((w / "runs").glob(f"{group}/*")):
        assert (r / "metrics.csv").is_file(), r
        if json.loads((r / "status.json").read_text())["status"] == "done":
            cfg = json.loads((r / "config.json").read_text())
            out.add((cfg["delta"], cfg["seed"]))
    return out


def _unpack(archive: Path, runs_dir: Path, **env) -> str:
    up = subprocess.run(["bash", str(REPO / "device" / "unpack.sh"), str(archive), str(runs_dir)],
                        env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stdout + up.stderr
    return up.stdout


def _window_id(w: Path) -> str:
    date = next(line for line in (w / "env.txt").read_text().splitlines() if line.startswith("date: "))[6:]
    return time.strftime("%Y%m%dT%H%MZ", time.strptime(date, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.parametrize("mode", ["plan", "concurrent"])
def test_window_end_to_end_on_cpu(tmp_path, mode):
    """The default path (the matrix's plan: fused here), and concurrent processes (the plan when fusion loses).
    plan: then a second window that finds the first one's runs and plan (unpacked into a known-runs folder): it
    skips the matrix, reuses the plan, trains the next seeds, and unpacks beside the first without replacing it."""
    _tiny_tar(tmp_path)
    # the matrix's cap with room for its last cell, the evaluation, on a loaded machine (10 s cut it once)
    env = _env(tmp_path, LSNC_WINDOW_MATRIX_S="60")
    if mode == "concurrent":
        env.update(LSNC_WINDOW_MODE="concurrent",
                   LSNC_WINDOW_MATRIX_ARGS="--warmup 1 --steps 1 --skip lsnc reference fused eval vmap cudagraph compile")
    proc, wall = _window(env)
    out = tmp_path / "out"
    assert (out / "speed.md").read_text().startswith("# Speed matrix")

    w, names = _extract(out / "window.tar.gz", tmp_path / "x")
    assert not [n for n in names if n.endswith("checkpoint.pt") or n.endswith(".lock")], names
    # the matrix's plan trains the set in one process, or as processes where its timings (on a loaded machine, say)
    # find that fusion does not pay
    planned = (w / "speed" / "plan.env").read_text()
    one_process = mode == "plan" and 'PLAN_MODE="concurrent"' not in planned
    logs = ("logs/train.log",) if one_process else ("logs/train-d0-s0.log", "logs/train-d0.05-s0.log")
    for f in ("env.txt", "summary.txt", "speed/speed.md", "speed/speed.json", "speed/plan.env", "logs/matrix.log",
              *logs):
        assert (w / f).is_file(), f
    speed = json.loads((w / "speed" / "speed.json").read_text())
    by_name = {c["name"]: c for c in speed["cells"]}
    if mode == "plan":
        assert by_name["lsnc fp32"]["status"] == "ok" and by_name["lsnc fp32"]["img_s"] > 0
        # the evaluation's parts, each against its pass's bare forward
        ev = by_name["evaluation"]
        assert ev["status"] == "ok" and {"train_pass_s", "test_pass_s", "finalize_s", "forward_train_s"} <= set(ev)
        assert "Its parts (a call of their own): train pass " in (w / "speed" / "speed.md").read_text()
    assert by_name["compile bf16"]["status"] == "skipped"
    if mode == "concurrent":
        assert "mode=concurrent" in (w / "logs" / "window.log").read_text()
    done1 = _done(w)
    assert {(0.0, 0), (0.05, 0)} <= done1, done1
    print(f"window.sh on the CPU: {wall:.0f} s")
    if mode == "concurrent":
        return

    # device/unpack.sh: finished runs into <runs>/<group>/, the speed files into <runs>/<group>/speed/<window-id>/
    known = tmp_path / "committed"
    _unpack(out / "window.tar.gz", known, WINDOW_ID="20000101T0000Z")  # an id apart from the second window's
    # (on a CPU the 1-step matrix may plan bf16: its set goes to GROUP-bf16, the twin to GROUP, the speed folder
    # beside both; GROUP's own when the plan is tf32)
    group = next(g for g in (known / GROUP, known / (GROUP + "-bf16")) if (g / "speed").is_dir())
    first = group / "speed" / "20000101T0000Z"
    assert sorted(p.name for p in first.iterdir()) == ["env.txt", "plan.env", "speed.json", "speed.md", "summary.txt"]
    assert len(list(known.glob("*/*/config.json"))) == _n_done(w)

    # The second window: no matrix (auto), the first one's plan, seeds no run in `known` has.
    proc, wall2 = _window(_env(tmp_path, "2", LSNC_WINDOW_KNOWN_RUNS=str(known)))
    w2, names2 = _extract(tmp_path / "out2" / "window.tar.gz", tmp_path / "x2")
    log2 = (w2 / "logs" / "window.log").read_text()
    reused = "speed matrix skipped: plan derived by today's rule from the matrix of window 20000101T0000Z"
    assert reused in (tmp_path / "out2" / "speed.md").read_text()
    assert not (w2 / "logs" / "matrix.log").exists() and "stage matrix" not in log2
    assert (w2 / "speed" / "plan.env").read_text() == (w / "speed" / "plan.env").read_text()
    plan_seeds = [x for x in (w / "speed" / "plan.env").read_text().splitlines() if x.startswith("PLAN_SEEDS=")]
    done2 = _done(w2)
    seeds1, seeds2 = {s for _, s in done1}, {s for _, s in done2}
    assert done2 and not seeds1 & seeds2, (done1, done2)
    if plan_seeds == ['PLAN_SEEDS="0"']:
        assert done2 == {(0.0, 1), (0.05, 1)} and "seeds: 1 (" in log2, log2

    # Both windows' speed folders side by side; unpacking the first again replaces nothing.
    id2 = _window_id(w2)
    _unpack(tmp_path / "out2" / "window.tar.gz", known)
    assert sorted(p.name for p in (group / "speed").iterdir()) == ["20000101T0000Z", id2]
    assert (group / "speed" / id2 / "speed.md").read_text().startswith("# Speed matrix skipped")
    assert len(list(known.glob("*/*/config.json"))) == _n_done(w) + _n_done(w2)
    before = (first / "summary.txt").read_text()
    again = _unpack(out / "window.tar.gz", known, WINDOW_ID="20000101T0000Z")
    assert "20000101T0000Z exists, not replaced" in again and (first / "summary.txt").read_text() == before
    print(f"second window.sh (plan reused): {wall2:.0f} s")


def test_a_signal_mid_training_still_packs_and_leaves_no_process(tmp_path):
    """The device tool's timeout ends a call with SIGTERM: the window stops its training processes, packs what it
    has (exit 143), and a second signal right after the first does not cut the archive short."""
    _tiny_tar(tmp_path)
    env = _env(tmp_path, LSNC_WINDOW_MATRIX="skip", LSNC_WINDOW_TRAIN_ARGS="")   # trains until stopped
    proc = subprocess.Popen(["bash", str(REPO / "device" / "window.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "stage train (hard limit" in line:
                break
        time.sleep(8)   # the training process is up and in its epochs
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    out = "".join(seen) + rest
    assert proc.returncode == 143, out[-3000:]
    assert "signal: stopping" in out and "packed " in out, out[-3000:]
    w, _ = _extract(tmp_path / "out" / "window.tar.gz", tmp_path / "x")
    assert "exit: 143" in (w / "summary.txt").read_text()
    assert "stage train" in (w / "logs" / "window.log").read_text()
    deadline = time.time() + 20   # `timeout` passes the SIGTERM on to lsnc (SIGKILL after 10 s)
    while time.time() < deadline:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        left = [x for x in ps.splitlines() if str(tmp_path / "runs") in x]
        if not left:
            break
        time.sleep(0.5)
    assert not left, left


def test_window_graphs_fall_back(tmp_path):
    """LSNC_WINDOW_GRAPHS=1 on the CPU: `lsnc train --cuda-graphs` refuses, and the stage trains again without it
    (--resume: nothing was written, so the runs start fresh). LSNC_WINDOW_MATRIX=skip with no earlier plan: the
    default plan, no matrix."""
    help_text = subprocess.run([sys.executable, "-m", "lsnc", "train", "--help"], capture_output=True, text=True,
                               cwd=REPO).stdout
    if "--cuda-graphs" not in help_text:
        pytest.skip("this lsnc train has no --cuda-graphs yet (window.sh then drops it)")
    _tiny_tar(tmp_path)
    proc, wall = _window(_env(tmp_path, LSNC_WINDOW_GRAPHS="1", LSNC_WINDOW_MATRIX="skip"))
    w, _ = _extract(tmp_path / "out" / "window.tar.gz", tmp_path / "x")
    log = (w / "logs" / "window.log").read_text()
    summary = (w / "summary.txt").read_text()
    assert "stage train with --cuda-graphs failed" in log, log
    assert "--cuda-graphs" in (w / "logs" / "train.log").read_text()
    assert "stage_rc.train-nographs: 0" in summary and "--resume --delta 0 0.05 --seed 0" in summary, summary
    assert "LSNC_WINDOW_MATRIX=skip" in (w / "speed" / "speed.md").read_text()
    assert not (w / "speed" / "plan.env").exists() and not (w / "logs" / "matrix.log").exists()
    assert _done(w) == {(0.0, 0), (0.05, 0)}
    print(f"window.sh with the CUDA-graphs fallback: {wall:.0f} s")


def test_window_concurrent_pairs_fall_back_one_by_one_and_reused_graphs_are_checked_first(tmp_path):
    """Concurrent processes with LSNC_WINDOW_GRAPHS=1: each (δ, seed) is refused --cuda-graphs on the CPU and
    trains again without it by itself (--resume); here the LS pair's graphed process hangs instead (a PYTHON
    wrapper), and the watchdog stops that pair alone, by its own log and run folders. Then a window that reuses a
    plan with PLAN_GRAPHS=1 runs the graph check on its own machine first; on the CPU the check cannot run, so it
    trains without CUDA graphs."""
    _tiny_tar(tmp_path)
    keep = tmp_path / "keep"
    wrapper = tmp_path / "python-ls-graphs-hang"
    wrapper.write_text("#!/bin/bash\n"
                       'if [[ " $* " == *" --delta 0.05 "* && " $* " == *" --cuda-graphs"* ]]; then\n'
                       "    exec sleep 300\n"
                       "fi\n"
                       f'exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    _window(_env(tmp_path, LSNC_WINDOW_GRAPHS="1", LSNC_WINDOW_MATRIX="skip", LSNC_WINDOW_MODE="concurrent",
                 LSNC_WINDOW_CONTINUE="1", LSNC_WINDOW_KEEP=str(keep), PYTHON=str(wrapper), LSNC_WINDOW_STALL_S="40"))
    w, _ = _extract(tmp_path / "out" / "window.tar.gz", tmp_path / "x")
    for d in ("0", "0.05"):
        pair_log = (w / "logs" / f"train-d{d}-s0.log").read_text()
        assert "--cuda-graphs" in pair_log and "again without CUDA graphs (--resume)" in pair_log, pair_log
    log = (w / "logs" / "window.log").read_text()
    assert "stage train d0.05-s0: no progress for 40s (no run file or log line written): stopped as hung" in log, log
    assert "stage train d0-s0: no progress" not in log and "stage train: exit 0" in log, log
    assert "stalled: train d0.05-s0\n" in (w / "summary.txt").read_text()
    assert _done(w) == {(0.0, 0), (0.05, 0)}
    # the pairs fell back: a second call continues them without graphs, not through another failed capture
    kept = (keep / "keep.env").read_text()
    assert 'CONT_MODE="concurrent"' in kept and 'CONT_GRAPHS="0"' in kept, kept

    known = tmp_path / "known"
    (known / GROUP / "speed" / "20240101T0000Z").mkdir(parents=True)
    (known / GROUP / "speed" / "20240101T0000Z" / "plan.env").write_text(
        'PLAN_K="2"\nPLAN_AMP="none"\nPLAN_DELTAS="0 0.05"\nPLAN_SEEDS="0"\nPLAN_MODE="fused"\nPLAN_GRAPHS="1"\n')
    _window(_env(tmp_path, "2", LSNC_WINDOW_KNOWN_RUNS=str(known)))
    w2, _ = _extract(tmp_path / "out2" / "window.tar.gz", tmp_path / "x2")
    log2 = (w2 / "logs" / "window.log").read_text()
    assert "plan reused from window 20240101T0000Z" in log2
    assert "graph check tf32 K=2 on this machine: skipped: training without CUDA graphs" in log2, log2
    # the check stage also timed this machine's evaluation, and its parts (a window that reuses a plan runs no matrix)
    check = {c["name"]: c for c in json.loads((w2 / "speed" / "check" / "speed.json").read_text())["cells"]}
    assert check["evaluation"]["status"] == "ok" and check["evaluation"]["finalize_s"] > 0, check
    assert "Its parts (a call of their own): train pass " in (w2 / "speed" / "check" / "speed.md").read_text()
    summary2 = (w2 / "summary.txt").read_text()
    assert "graph_check: skipped" in summary2 and "train.train: " in summary2 and "--cuda-graphs" not in summary2
    assert _done(w2) == {(0.0, 0), (0.05, 0)}


@pytest.mark.parametrize("how", ["fails", "hangs"])
def test_window_unfuses_a_fused_set_that_fails_or_hangs(tmp_path, how):
    """A fused network has never trained on a GPU before the first window: if the fused stage fails, the same set
    trains again as concurrent tf32 processes with --resume. Here a PYTHON wrapper makes every fused `lsnc train`
    (several δ in one command) exit 1, as a CUDA-only failure of the fused network would; or hang without a word,
    as a graph replay that never returns would: the watchdog (LSNC_WINDOW_STALL_S) stops it long before its hard
    limit, and the fallback gets the time."""
    _tiny_tar(tmp_path)
    wrapper = tmp_path / "python-no-fusion"
    act = ('echo "simulated: fused training failed" >&2; exit 1' if how == "fails" else "exec sleep 300")
    wrapper.write_text("#!/bin/bash\n"
                       'if [[ " $* " == *" lsnc train "* && " $* " == *" --delta 0 0.05 "* ]]; then\n'
                       f"    {act}\n"
                       "fi\n"
                       f'exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    # (the watchdog only where the test needs it: two processes starting on a busy 2-core machine can be slow)
    stall = {"LSNC_WINDOW_STALL_S": "60"} if how == "hangs" else {}
    proc, wall = _window(_env(tmp_path, LSNC_WINDOW_MATRIX="skip", PYTHON=str(wrapper), **stall))
    w, _ = _extract(tmp_path / "out" / "window.tar.gz", tmp_path / "x")
    log = (w / "logs" / "window.log").read_text()
    summary = (w / "summary.txt").read_text()
    rc = 1 if how == "fails" else 143
    if how == "fails":
        assert "simulated: fused training failed" in (w / "logs" / "train.log").read_text()
        assert "stalled" not in summary and "stopped as hung" not in log
    else:
        assert "stage train: no progress for 60s (no run file or log line written): stopped as hung" in log, log
        assert "stalled: train" in summary, summary
        stage_s = float(re.search(r"stage_s\.train: ([0-9.]+)", summary).group(1))
        assert stage_s < 120, summary   # not its hard limit (200 s)
    assert f"fused training failed (exit {rc}): the set again as concurrent tf32 processes (--resume)" in log, log
    assert f"fallback: concurrent after fused exit {rc}" in summary and "stage train-concurrent: exit 0" in log
    assert f"stage_rc.train: {rc}" in summary and "stage_rc.train-concurrent: 0" in summary, summary
    assert "stage_s.train: " in summary and "stage_s.train-concurrent: " in summary, summary   # wall seconds
    for d in ("0", "0.05"):
        assert f"--delta {d} --seed 0 --resume" in summary, summary
    assert _done(w) == {(0.0, 0), (0.05, 0)}
    print(f"window.sh with the fused fallback ({how}): {wall:.0f} s")


def test_window_reuses_newest_valid_plan_and_new_seeds(tmp_path):
    """No training (a budget too short for it): which earlier plan is reused, and which seeds are chosen."""
    make_image_tree(tmp_path / "tiny", train=1, test=1)
    known = tmp_path / "known"
    speed = known / GROUP / "speed"
    plans = {"20240101T0000Z": 'PLAN_K="4"\nPLAN_AMP="none"\nPLAN_DELTAS="0 0.05"\nPLAN_SEEDS="0 1"\n',
             "20250101T0000Z": 'PLAN_K="4"\nPLAN_AMP="none"\nPLAN_SEEDS=0; echo hi\n',   # newer, but not a plan
             "notawindow": 'PLAN_K="2"\n'}
    for wid, text in plans.items():
        (speed / wid).mkdir(parents=True)
        (speed / wid / "plan.env").write_text(text)
    for name, delta, seed in (("ce-resnet18-s0", 0.0, 0), ("ls0.05-resnet18-s2", 0.05, 2),
                              ("ls0.1-resnet18-s1", 0.1, 1)):   # δ = 0.1 is not in the plan: seed 1 stays free
        (known / GROUP / name).mkdir(parents=True)
        (known / GROUP / name / "config.json").write_text(json.dumps({"delta": delta, "seed": seed}))
    env = _env(tmp_path, LSNC_WINDOW_DATA=str(tmp_path / "tiny"), LSNC_WINDOW_KNOWN_RUNS=str(known),
               LSNC_WINDOW_BUDGET_S="1")
    proc, _ = _window(env, expect_rc=4)
    assert "plan reused from window 20240101T0000Z" in proc.stdout, proc.stdout
    assert "invalid plan, ignored" in proc.stdout and "not a window folder, ignored" in proc.stdout
    assert "seeds=(1 3)" in proc.stdout, proc.stdout
    proc, _ = _window({**env, "LSNC_WINDOW_SEEDS": "2 7", "LSNC_WINDOW_MATRIX": "full", "LSNC_WINDOW_GRAPHS": "1",
                       "LSNC_WINDOW_MATRIX_ARGS": "--skip lsnc reference fused eval vmap cudagraph compile"},
                      expect_rc=4)
    assert "plan reused" not in proc.stdout and "stage matrix" in proc.stdout
    assert "seeds=(2 7)" in proc.stdout and "warning: seed 2 was trained before" in proc.stdout, proc.stdout
    # graphs forced past this window's own matrix go only where its check passed (on the CPU it cannot run)
    assert "graph check tf32 K=2 in this window's matrix: skipped: training without CUDA graphs" in proc.stdout
    assert "graphs=0" in proc.stdout, proc.stdout


def test_window_rederives_the_plan_from_the_newest_matrix_and_skips_a_twin_trained_before(tmp_path):
    """The newest earlier speed.json decides the plan by today's rule (here bf16: 2x tf32), over its own plan.env
    and a newer window's reused plan.env; the bf16 set takes the lowest seed no bf16 run has, the tf32 twin of its
    CE run is not trained again where an earlier window trained it, and the set trains in bf16 for the whole
    budget. Then (no training: a budget too short for it) a speed.json that cannot be read leaves the newest
    plan.env."""
    _tiny_tar(tmp_path)
    known = tmp_path / "known"
    speed = known / GROUP / "speed"
    cells = [{"name": f"fused {p} K=2", "pipeline": "fused", "precision": p, "k": 2, "status": "ok",
              "img_s_per_model": v} for p, v in (("tf32", 100), ("bf16", 200))]
    tf32_plan = 'PLAN_K="2"\nPLAN_AMP="none"\nPLAN_DELTAS="0 0.05"\nPLAN_SEEDS="0"\n'
    for wid, files in {"20240101T0000Z": {"speed.json": json.dumps({"cells": cells, "train_images": 1000}),
                                          "plan.env": tf32_plan},
                       "20250101T0000Z": {"plan.env": tf32_plan}}.items():
        (speed / wid).mkdir(parents=True)
        for name, text in files.items():
            (speed / wid / name).write_text(text)
    for name, delta, amp in (("ce-resnet18-s0", 0.0, "none"), ("ls0.05-resnet18-s0", 0.05, "none"),
                             ("ls0.05-bf16-resnet18-s1", 0.05, "bf16")):
        (known / GROUP / name).mkdir(parents=True)
        (known / GROUP / name / "config.json").write_text(json.dumps({"delta": delta, "seed": int(name[-1]),
                                                                      "amp": amp}))
    proc, _ = _window(_env(tmp_path, LSNC_WINDOW_KNOWN_RUNS=str(known)))
    assert "plan derived by today's rule from the matrix of window 20240101T0000Z" in proc.stdout, proc.stdout
    assert "bf16/tf32 per-model img/s (fused K=2; bf16 eager, tf32 eager) = 2.00" in proc.stdout
    assert "tf32 twin of seed 0: trained before (ce-resnet18-s0 ): not again" in proc.stdout, proc.stdout
    assert "amp=bf16 δ=(0 0.05) seeds=(0) tf32 twin=0" in proc.stdout, proc.stdout
    w, _ = _extract(tmp_path / "out" / "window.tar.gz", tmp_path / "x")
    summary = (w / "summary.txt").read_text()
    assert "--amp bf16 --delta 0 0.05 --seed 0" in summary and "stage_rc.twin" not in summary, summary
    # a bf16 set is a group of its own beside the TF32 one
    assert sorted(p.name for p in (w / "runs").iterdir()) == [GROUP + "-bf16"]
    assert sorted(r.name for r in (w / "runs" / (GROUP + "-bf16")).iterdir()) == ["ce-bf16-resnet18w4-s0",
                                                                                  "ls0.05-bf16-resnet18w4-s0"]
    assert _done(w, GROUP + "-bf16") == {(0.0, 0), (0.05, 0)}
    assert "run_group: " + GROUP + "-bf16" in summary
    # device/prepare.sh's preview takes the same plan, seed and twin from the same runs
    preview = subprocess.run([sys.executable, str(REPO / "device" / "window.py"), "--preview"], capture_output=True,
                             text=True, env={**os.environ, "LSNC_WINDOW_KNOWN_RUNS": str(known)}).stdout
    assert "the window re-derives its plan from " + str(speed / "20240101T0000Z" / "speed.json") in preview, preview
    assert f"(bf16, group {GROUP}-bf16) with seeds 0 (device/next_seeds.py)" in preview, preview
    assert "its tf32 twin (CE, seed 0) was trained before: ce-resnet18-s0\n" in preview, preview
    (speed / "20240101T0000Z" / "speed.json").write_text("{not json")
    proc, _ = _window(_env(tmp_path, "2", LSNC_WINDOW_KNOWN_RUNS=str(known), LSNC_WINDOW_BUDGET_S="1"), expect_rc=4)
    assert "could not re-derive a plan from" in proc.stdout and "plan reused from window 20250101T0000Z" in proc.stdout
    assert "amp=none δ=(0 0.05) seeds=(1) tf32 twin=0" in proc.stdout, proc.stdout


def test_a_bf16_set_trains_a_twin_only_while_the_group_has_too_few(tmp_path):
    """No training (a budget too short for it). Seeds 0 and 1 have CE runs in TF32 and bf16: the next bf16 set
    (seed 2) trains no tf32 twin, since 2 twin pairs are enough by default; with LSNC_WINDOW_TWINS=3 it does."""
    make_image_tree(tmp_path / "tiny", train=1, test=1)
    known = tmp_path / "known"
    speed = known / GROUP / "speed" / "20240101T0000Z"
    speed.mkdir(parents=True)
    (speed / "plan.env").write_text('PLAN_K="2"\nPLAN_AMP="bf16"\nPLAN_DELTAS="0 0.05"\nPLAN_SEEDS="0"\n'
                                    'PLAN_TWIN="1"\n')
    for seed in (0, 1):
        for delta, amp in ((0.0, "none"), (0.0, "bf16"), (0.05, "bf16")):
            folder = known / GROUP / f"{'ce' if delta == 0 else 'ls0.05'}{'-bf16' if amp == 'bf16' else ''}-resnet18-s{seed}"
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps({"delta": delta, "seed": seed, "amp": amp}))
    env = _env(tmp_path, LSNC_WINDOW_DATA=str(tmp_path / "tiny"), LSNC_WINDOW_KNOWN_RUNS=str(known),
               LSNC_WINDOW_BUDGET_S="1")
    proc, _ = _window(env, expect_rc=4)
    assert "the group has CE runs in both precisions for seeds 0 1" in proc.stdout, proc.stdout
    assert "amp=bf16 δ=(0 0.05) seeds=(2) tf32 twin=0" in proc.stdout, proc.stdout
    proc, _ = _window({**env, "LSNC_WINDOW_TWINS": "3"}, expect_rc=4)
    assert "amp=bf16 δ=(0 0.05) seeds=(2) tf32 twin=1" in proc.stdout, proc.stdout
    proc, _ = _window({**env, "LSNC_WINDOW_TWINS": "two"}, expect_rc=2)
    assert "LSNC_WINDOW_TWINS must be a whole number" in proc.stderr


def _earlier_graphed_bf16_matrix(tmp_path: Path) -> Path:
    """A known-runs folder whose one earlier matrix plans bf16 for its graphs alone (eager bf16 no faster than
    TF32, graphed bf16 2x, its graph check passed there), fused K=2, with no streams cells; and the TF32 CE run of
    seed 0, the set's tf32 twin, so no twin trains."""
    known = tmp_path / "known"
    speed = known / GROUP / "speed" / "20240101T0000Z"
    speed.mkdir(parents=True)
    cells = [{"name": f"fused {p} K=2", "pipeline": "fused", "precision": p, "k": 2, "status": "ok",
              "img_s_per_model": 100} for p in ("tf32", "bf16")]
    cells += [{"name": "cudagraph bf16 K=2", "pipeline": "fused", "precision": "bf16", "k": 2, "cuda_graphs": True,
               "status": "ok", "img_s_per_model": 200},
              {"name": "cudagraph check bf16 K=2", "pipeline": "check", "precision": "bf16", "k": 2,
               "cuda_graphs": True, "status": "ok"}]
    (speed / "speed.json").write_text(json.dumps({"cells": cells, "train_images": 1000}))
    (known / GROUP / "ce-resnet18-s0").mkdir(parents=True)
    (known / GROUP / "ce-resnet18-s0" / "config.json").write_text(json.dumps({"delta": 0.0, "seed": 0}))
    return known


def test_a_bf16_plan_chosen_for_its_graphs_goes_back_to_tf32_when_the_graph_check_fails_here(tmp_path):
    """No training (a budget too short for it). The earlier matrix: eager bf16 no faster than TF32, graphed bf16
    2x, its graph check passed there. Here (a CPU) the check cannot pass, so the plan is derived again without the
    graph cells: TF32, eager, and its seeds are the TF32 ones."""
    make_image_tree(tmp_path / "tiny", train=1, test=1)
    known = _earlier_graphed_bf16_matrix(tmp_path)
    proc, _ = _window(_env(tmp_path, LSNC_WINDOW_DATA=str(tmp_path / "tiny"), LSNC_WINDOW_KNOWN_RUNS=str(known),
                           LSNC_WINDOW_BUDGET_S="1"), expect_rc=4)
    out = proc.stdout
    assert "bf16 + CUDA graphs" in out and "graph check bf16 K=2 on this machine: skipped" in out, out
    assert "the plan again, without CUDA graphs: Training plan: K = 2 fused models, tf32" in out, out
    assert "amp=none δ=(0 0.05) seeds=(1) tf32 twin=0 mode=fused graphs=0" in out, out


FAKE_PROBE = """# a stand-in for benchmarks/speed_matrix.py --cells on a GPU: every asked-for cell 'ok' at made-up rates
import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--out-dir") + 1])
names = []
for a in args[args.index("--cells") + 1:]:
    if a.startswith("--"):
        break
    names.append(a)
env = __import__("os").environ
rate = {"cudagraph": 100.0, "streams": float(env.get("FAKE_STREAMS_RATE", "150"))}
four = float(env.get("FAKE_STREAMS_K4_RATE", "90"))   # a member's rate with 4 networks on streams
cells = [{"name": n, "status": "ok", "precision": n.split()[-2], "k": int(n.split("K=")[1]),
          "pipeline": "check" if " check " in n else n.split()[0],
          **({} if " check " in n else {"img_s_per_model": four if n.startswith("streams") and n.endswith("K=4")
                                        else rate[n.split()[0]]})} for n in names if n != "evaluation"]
if "evaluation" in names:
    cells.append({"name": "evaluation", "pipeline": "evaluation", "precision": "tf32", "k": 1, "status": "ok",
                  "evaluate_s": 0.7, "bare_forward_s": 0.4})
out.mkdir(parents=True, exist_ok=True)
(out / "speed.json").write_text(json.dumps({"cells": cells}))
print("fake probe:", names)
"""


def _fake_gpu_python(tmp_path: Path, streams_fail: bool = False, name: str = "python-fake-gpu") -> Path:
    """A PYTHON for window.sh that plays a GPU on the CPU: it reports the cells a check stage asks for (FAKE_PROBE's
    made-up rates) and drops --cuda-graphs from `lsnc train`; with ``streams_fail`` every `lsnc train --together
    streams` exits 1, as a streams set failing on the GPU would."""
    (tmp_path / "fake_probe.py").write_text(FAKE_PROBE)
    wrapper = tmp_path / name
    wrapper.write_text("#!/bin/bash\n"
                       'if [[ " $* " == *"speed_matrix.py"* && " $* " == *" --cells "* ]]; then\n'
                       f'    exec "{sys.executable}" "{tmp_path / "fake_probe.py"}" "$@"\n'
                       "fi\n"
                       + ('if [[ " $* " == *" --together streams "* ]]; then\n'
                          '    echo "simulated: streams training failed" >&2; exit 1\n'
                          "fi\n" if streams_fail else "")
                       + 'args=(); for a in "$@"; do [ "$a" = --cuda-graphs ] || args+=("$a"); done\n'
                       f'exec "{sys.executable}" "${{args[@]}}"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_a_second_call_continues_a_streams_set_and_falls_back_to_fused_graphs_if_it_fails(tmp_path):
    """Call 1 trains the set on streams (the probe chose them) and keeps it; call 2 continues it on streams, where
    it fails: the set goes on as one fused network, graphed, since call 1's fused graph check passed (keep.env)."""
    make_image_tree(tmp_path / "tiny")
    known, keep = _earlier_graphed_bf16_matrix(tmp_path), tmp_path / "keep"
    common = dict(LSNC_WINDOW_DATA=str(tmp_path / "tiny"), LSNC_WINDOW_KNOWN_RUNS=str(known),
                  LSNC_WINDOW_KEEP=str(keep), LSNC_WINDOW_CONTINUE="1")
    _window(_env(tmp_path, PYTHON=str(_fake_gpu_python(tmp_path)), **common))
    kept = (keep / "keep.env").read_text()
    assert 'CONT_MODE="streams"' in kept and 'CONT_GRAPHS="1"' in kept and 'CONT_FUSED_CHECK="ok"' in kept, kept
    proc, _ = _window(_env(tmp_path, "2", LSNC_WINDOW_TRAIN_ARGS="--stop-epoch 4",
                           PYTHON=str(_fake_gpu_python(tmp_path, True, "python-streams-fail")), **common))
    assert "continuing the runs of window" in proc.stdout, proc.stdout
    assert "streams training failed (exit 1): the set again as one fused network (--resume, graphs=1)" in proc.stdout
    w, _ = _extract(tmp_path / "out2" / "window.tar.gz", tmp_path / "x2")
    summary = (w / "summary.txt").read_text()
    assert "--cuda-graphs --amp bf16 --resume --delta 0 0.05 --seed 0" in summary, summary
    for name in ("ce-bf16-resnet18w4-s0", "ls0.05-bf16-resnet18w4-s0"):
        status = json.loads((w / "runs" / (GROUP + "-bf16") / name / "status.json").read_text())
        assert (status["status"], status["epoch"]) == ("done", 4), status
    assert 'CONT_MODE="fused"' in (keep / "keep.env").read_text()


@pytest.mark.parametrize("case", ["streams", "streams fail", "streams K=4", "streams K=4 fail"])
def test_a_reused_graphed_plan_probes_streams_on_the_machine_and_trains_the_set_on_streams(tmp_path, case):
    """The earlier matrix plans bf16 + CUDA graphs, fused (no streams cells: it predates them). The check stage
    measures the graph check, the graphed fused set and the set on streams (K = 2 and 4) on this machine, the probe
    switches the set to streams (1.5x), and the set trains with --together streams. A CPU runs no CUDA graphs, so a
    PYTHON wrapper plays the GPU: it reports the asked-for cells (made-up rates) and drops --cuda-graphs from
    `lsnc train`. Where the streams stage fails (the wrapper fails it), the set trains again as one fused network,
    --resume. Where four networks on streams keep each member's rate (K=4), the set is two seed pairs; if that
    fails before the second pair trained an epoch, the fused network is the plan's K = 2 one, the first pair."""
    make_image_tree(tmp_path / "tiny")
    known = _earlier_graphed_bf16_matrix(tmp_path)
    streams_fail = case.endswith("fail")
    proc, _ = _window(_env(tmp_path, LSNC_WINDOW_DATA=str(tmp_path / "tiny"), LSNC_WINDOW_KNOWN_RUNS=str(known),
                           PYTHON=str(_fake_gpu_python(tmp_path, streams_fail)),
                           FAKE_STREAMS_K4_RATE="150" if "K=4" in case else "90"))
    out = proc.stdout
    w, _ = _extract(tmp_path / "out" / "window.tar.gz", tmp_path / "x")
    check_log = (w / "logs" / "graphcheck.log").read_text()
    assert ("fake probe: ['cudagraph check bf16 K=2', 'cudagraph bf16 K=2', 'streams check bf16 K=2', "
            "'streams bf16 K=2', 'streams bf16 K=4', 'evaluation']") in check_log, check_log
    assert "streams check bf16 K=2 on this machine: ok" in out, out
    assert "streams bf16 K=2 / one graphed fused network = 1.50 (>= 1.1): streams" in out, out
    assert "mode=streams graphs=1 group=" + GROUP + "-bf16" in out, out
    summary = (w / "summary.txt").read_text()
    assert "probe: streams (on this machine streams bf16 K=2 / one graphed fused network = 1.50" in summary, summary
    assert "probe.mode: streams\n" in summary and "probe.streams_over_fused: 1.50\n" in summary, summary
    if "K=4" in case:
        assert "; epochs per member on streams here, K=4 vs K=2: " in summary and "-> K=4)\n" in summary, summary
        assert "--amp bf16 --together streams --cuda-graphs --delta 0 0.05 --seed 0 1" in summary, summary
        assert 'PLAN_K="4"' in (w / "speed" / "plan.env").read_text()
        if streams_fail:   # no epoch on streams: the first pair alone, fused K=2, for the time left
            assert "seed(s) 1 trained no epoch on streams: fused K=2, seed 0 only" in out, out
            assert "fallback: fused K=2 after streams exit 1" in summary, summary
            assert "--cuda-graphs --amp bf16 --resume --delta 0 0.05 --seed 0\n" in summary, summary
            assert _done(w, GROUP + "-bf16") == {(0.0, 0), (0.05, 0)}
            from lsnc.book.windows import read_window
            assert read_window(w)["trained as"] == "streams, bf16 + CUDA graphs; fused K=2 after streams exit 1"
            return
        assert _done(w, GROUP + "-bf16") == {(0.0, 0), (0.05, 0), (0.0, 1), (0.05, 1)}
        from lsnc.book.windows import read_window
        assert ", K=4 (K=4 keeps " in read_window(w)["plan"]
        return
    assert "-> K=2)\n" in summary, summary
    assert "--amp bf16 --together streams --cuda-graphs --delta 0 0.05 --seed 0" in summary, summary
    assert 'PLAN_MODE="streams"' in (w / "speed" / "plan.env").read_text()
    assert _done(w, GROUP + "-bf16") == {(0.0, 0), (0.05, 0)}
    together = {json.loads((r / "config.json").read_text())["together"]
                for r in (w / "runs" / (GROUP + "-bf16")).iterdir()}
    from lsnc.book.windows import read_window
    if streams_fail:
        assert "streams training failed (exit 1): the set again as one fused network (--resume, graphs=1)" in out
        assert "fallback: fused after streams exit 1" in summary and together == {"fused"}
        assert read_window(w)["trained as"] == "streams, bf16 + CUDA graphs; fused after streams exit 1"
        return
    assert together == {"streams"} and "fallback" not in summary
    assert read_window(w)["trained as"] == "streams, bf16 + CUDA graphs"
    # unpacked: the probe's cells come along as check.json (never taken for a whole matrix), the plan column says
    _unpack(tmp_path / "out" / "window.tar.gz", tmp_path / "committed")
    folder = next((tmp_path / "committed" / (GROUP + "-bf16") / "speed").iterdir())
    assert (folder / "check.json").is_file() and not (folder / "speed.json").exists()
    from lsnc.book.windows import windows_table
    assert windows_table(tmp_path / "committed")["plan"].tolist() == [
        "plan from window 20240101T0000Z; probe: streams 1.50x fused, K=2 (K=4 keeps 0.60 of a member's epochs)"]


def test_a_bf16_window_trains_its_twin_into_the_tf32_group_and_a_second_call_continues_the_bf16_group(tmp_path):
    """An earlier matrix that plans bf16 (eager, 2x TF32) and no runs yet: the bf16 set trains into GROUP-bf16 and
    its tf32 twin (CE, seed 0) into GROUP; the set, not the twin, is kept, and a second call continues it there."""
    _tiny_tar(tmp_path)
    known, keep = tmp_path / "known", tmp_path / "keep"
    speed = known / GROUP / "speed" / "20240101T0000Z"
    speed.mkdir(parents=True)
    cells = [{"name": f"fused {p} K=2", "pipeline": "fused", "precision": p, "k": 2, "status": "ok",
              "img_s_per_model": v} for p, v in (("tf32", 100), ("bf16", 200))]
    (speed / "speed.json").write_text(json.dumps({"cells": cells, "train_images": 1000}))
    common = dict(LSNC_WINDOW_KNOWN_RUNS=str(known), LSNC_WINDOW_KEEP=str(keep), LSNC_WINDOW_CONTINUE="1")
    proc, _ = _window(_env(tmp_path, **common))
    assert "tf32 twin=1" in proc.stdout and "group=" + GROUP + "-bf16" in proc.stdout, proc.stdout
    w, _ = _extract(tmp_path / "out" / "window.tar.gz", tmp_path / "x")
    assert _done(w, GROUP + "-bf16") == {(0.0, 0), (0.05, 0)} and _done(w, GROUP) == {(0.0, 0)}
    assert [p.name for p in (w / "runs" / GROUP).iterdir()] == ["ce-resnet18w4-s0"]
    assert f'CONT_RUN_GROUP="{GROUP}-bf16"' in (keep / "keep.env").read_text()
    assert sorted(p.name for p in (keep / "runs" / (GROUP + "-bf16")).iterdir()) == [
        "ce-bf16-resnet18w4-s0", "ls0.05-bf16-resnet18w4-s0"]
    assert "kept: 2 run folder(s)" in (w / "summary.txt").read_text()

    proc, _ = _window(_env(tmp_path, "2", LSNC_WINDOW_TRAIN_ARGS="--stop-epoch 4", **common))
    assert "continuing the runs of window" in proc.stdout and "group=" + GROUP + "-bf16" in proc.stdout, proc.stdout
    w2, _ = _extract(tmp_path / "out2" / "window.tar.gz", tmp_path / "x2")
    for name in ("ce-bf16-resnet18w4-s0", "ls0.05-bf16-resnet18w4-s0"):
        status = json.loads((w2 / "runs" / (GROUP + "-bf16") / name / "status.json").read_text())
        assert (status["status"], status["epoch"]) == ("done", 4), status
    assert not (w2 / "runs" / GROUP).exists()


def test_a_second_call_continues_the_first_calls_runs_and_unpack_extends_them(tmp_path, request):
    """A session's second call on the same machine: the first call kept its set's runs, checkpoints included, in
    LSNC_WINDOW_KEEP; the second trains them on with --resume (no matrix, no new seeds) and its archive's runs
    replace the first's when unpacked (identical up to epoch 2, then on to 4). A keep folder from another source
    commit is not continued: that call trains new seeds."""
    _tiny_tar(tmp_path)
    # KEEP on another filesystem where there is one (LSNC_WINDOW_KEEP may name any folder; the device's default is in
    # the checkout): the second call moves the kept runs across it
    shm = Path("/dev/shm")
    other_fs = shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev
    keep = Path(tempfile.mkdtemp(prefix="lsnc-keep-", dir=shm)) / "keep" if other_fs else tmp_path / "keep"
    request.addfinalizer(lambda: shutil.rmtree(keep.parent, ignore_errors=True) if other_fs else None)
    proc, _ = _window(_env(tmp_path, LSNC_WINDOW_MATRIX="skip", LSNC_WINDOW_KEEP=str(keep), LSNC_WINDOW_CONTINUE="1"))
    assert "a second call of this session continues them" in proc.stdout, proc.stdout
    env_text = (keep / "keep.env").read_text()
    assert 'CONT_EPOCH="2"' in env_text and 'CONT_SEEDS="0"' in env_text and 'CONT_DELTAS="0 0.05"' in env_text
    assert sorted(p.name for p in (keep / "runs" / GROUP).iterdir()) == ["ce-resnet18w4-s0", "ls0.05-resnet18w4-s0"]

    proc, _ = _window(_env(tmp_path, "2", LSNC_WINDOW_KEEP=str(keep), LSNC_WINDOW_TRAIN_ARGS="--stop-epoch 4",
                           LSNC_WINDOW_CONTINUE="1"))
    log = proc.stdout
    assert "continuing the runs of window" in log and "(stopped after epoch 2) with --resume" in log, log
    assert "stage matrix" not in log and "next_seeds" not in log
    w2, _ = _extract(tmp_path / "out2" / "window.tar.gz", tmp_path / "x2")
    summary = (w2 / "summary.txt").read_text()
    assert "continued: window" in summary and "--resume" in summary, summary
    from lsnc.book.windows import read_window
    assert read_window(w2)["model-epochs"] == 2 * (4 - 2)   # the runs page counts only the epochs it added
    for name in ("ce-resnet18w4-s0", "ls0.05-resnet18w4-s0"):
        status = json.loads((w2 / "runs" / GROUP / name / "status.json").read_text())
        assert (status["status"], status["epoch"]) == ("done", 4), status
    assert (w2 / "speed" / "speed.md").read_text().startswith("# Speed matrix skipped\n\nA continuation of window")

    known = tmp_path / "committed"
    _unpack(tmp_path / "out" / "window.tar.gz", known, WINDOW_ID="20000101T0000Z")
    out = _unpack(tmp_path / "out2" / "window.tar.gz", known, WINDOW_ID="20000101T0001Z")
    assert out.count("(extended: epochs 0-2 -> 0-4; identical up to 2)") == 2, out
    assert json.loads((known / GROUP / "ce-resnet18w4-s0" / "status.json").read_text())["epoch"] == 4
    again = _unpack(tmp_path / "out" / "window.tar.gz", known, WINDOW_ID="20000101T0002Z")
    assert again.count("exists, not replaced") == 2 and "extended" not in again     # the shorter never wins
    # A budget stop off the evaluation schedule: the first call's last epoch has a metrics row the continued run
    # lacks (emulated: that row taken out of the second archive's runs), so unpack says it was not compared.
    x2 = tmp_path / "x2-off"
    with tarfile.open(tmp_path / "out2" / "window.tar.gz") as tar:
        tar.extractall(x2, filter="data")
    for metrics in (x2 / "window" / "runs").glob("*/*/metrics.csv"):
        metrics.write_text("".join(line for line in metrics.read_text().splitlines(keepends=True)
                                   if not line.startswith("2,")))
    with tarfile.open(tmp_path / "off.tar.gz", "w:gz") as tar:
        tar.add(x2 / "window", arcname="window")
    _unpack(tmp_path / "out" / "window.tar.gz", tmp_path / "known-off", WINDOW_ID="20000101T0000Z")
    off = _unpack(tmp_path / "off.tar.gz", tmp_path / "known-off", WINDOW_ID="20000101T0001Z")
    assert off.count("identical up to 2, but for the evaluation at 2, off the schedule, which the continued run "
                     "does not have)") == 2, off

    # a call that continues them but stops before training (too little budget) keeps them for the next one
    proc, _ = _window(_env(tmp_path, "2b", LSNC_WINDOW_KEEP=str(keep), LSNC_WINDOW_CONTINUE="1",
                           LSNC_WINDOW_BUDGET_S="1"), expect_rc=4)
    assert "continuing the runs of window" in proc.stdout and 'CONT_EPOCH="4"' in (keep / "keep.env").read_text()
    assert (keep / "runs" / GROUP / "ce-resnet18w4-s0" / "checkpoint.pt").is_file()
    # the second call kept them again; from another source commit they are not continued
    text = (keep / "keep.env").read_text()
    (keep / "keep.env").write_text("\n".join(line if not line.startswith("CONT_SOURCE=") else 'CONT_SOURCE="abc"'
                                             for line in text.splitlines()) + "\n")
    proc, _ = _window(_env(tmp_path, "3", LSNC_WINDOW_KEEP=str(keep), LSNC_WINDOW_MATRIX="skip", LSNC_WINDOW_CONTINUE="1",
                           LSNC_WINDOW_KNOWN_RUNS=str(known), LSNC_WINDOW_BUDGET_S="1"), expect_rc=4)
    assert "not continued (trained from source abc" in proc.stdout and "seeds=(1)" in proc.stdout, proc.stdout
    # nor with other code in lsnc/ (an uncommitted fix between the calls leaves the commit as it was)
    (keep / "keep.env").write_text("\n".join('CONT_CODE="0000"' if line.startswith("CONT_CODE=") else line
                                             for line in text.splitlines()) + "\n")
    proc, _ = _window(_env(tmp_path, "4", LSNC_WINDOW_KEEP=str(keep), LSNC_WINDOW_MATRIX="skip", LSNC_WINDOW_CONTINUE="1",
                           LSNC_WINDOW_KNOWN_RUNS=str(known), LSNC_WINDOW_BUDGET_S="1"), expect_rc=4)
    assert "not continued (lsnc/ differs from the code that trained them" in proc.stdout, proc.stdout


SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def test_prepare_checks_the_archive_and_what_travels(tmp_path):
    """prepare.sh refuses an archive with the wrong sha256 (and leaves none in .device/), and refuses a checkout
    whose tracked and untracked-not-ignored files plus .device/ exceed the device's 64 MiB."""
    repo = tmp_path / "repo"
    (repo / "device").mkdir(parents=True)
    for f in ("prepare.sh", "next_seeds.py", "window.py", "cifar10-jpeg.sha256"):
        (repo / "device" / f).write_bytes((REPO / "device" / f).read_bytes())
    shutil.copytree(REPO / "device" / "stages", repo / "device" / "stages",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text(".device/\n")

    def prepare(archive):
        return subprocess.run(["bash", str(repo / "device" / "prepare.sh"), str(archive)], capture_output=True,
                              text=True, timeout=120, cwd=repo)

    proc = prepare(_tiny_tar(tmp_path))
    assert proc.returncode == 1 and "wrong sha256" in proc.stderr, proc.stderr
    assert not (repo / ".device" / "cifar10-jpeg.tar.gz").exists()
    if not SHARED_ARCHIVE.exists():
        pytest.skip(f"{SHARED_ARCHIVE} absent: the size check needs the real archive (its sha256 is fixed)")
    (repo / "gone.txt").write_text("tracked, then deleted from the work tree")
    subprocess.run(["git", "-C", str(repo), "add", "gone.txt"], check=True)
    (repo / "gone.txt").unlink()
    proc = prepare(SHARED_ARCHIVE)
    assert proc.returncode == 0 and "of 64 MiB travel" in proc.stdout, proc.stderr
    # its preview of the window (device/window.py --preview): no earlier window here, so the matrix and seeds 0 1
    assert "no earlier plan in runs/" + GROUP + "[-bf16]/speed/: the window runs the speed matrix" in proc.stdout
    assert "(TF32, group " + GROUP + ") with the first 1 or 2 (its plan says) of seeds 0 1" in proc.stdout, proc.stdout
    with open(repo / "big.bin", "wb") as f:   # sparse: 50 MiB apparent size, what the device counts
        f.truncate(50 * 2**20)
    proc = prepare(SHARED_ARCHIVE)
    assert proc.returncode == 1 and "over the device's 64 MiB" in proc.stderr, proc.stderr
    (repo / ".gitignore").write_text(".device/\nbig.bin\n")
    assert prepare(SHARED_ARCHIVE).returncode == 0


def test_window_reads_plan_files_and_refuses_bad_settings(tmp_path, capsys):
    """The window (device/stages/files.py) reads plan.env and keep.env back line by line (never sources them): a line of any other
    form makes the file invalid. A bad setting exits 2 before anything is made, naming the setting."""
    from stages import call, files, settings
    plan = tmp_path / "plan.env"
    for text, expect in (('PLAN_K="2"\nPLAN_DELTAS="0 0.05"\n', {"PLAN_K": "2", "PLAN_DELTAS": "0 0.05"}),
                         ('PLAN_K="2"\nPLAN_SEEDS=0; echo hi\n', None), ('PLAN_DELTAS="0"\n', None),
                         ('PLAN_K="2"\n\n', None), ('PLAN_K="$(id)"\n', None), ("", None),
                         ('PLAN_K="2"\nPLAN_SEEDS=""\n', None), ('PLAN_K="2"\nPLAN_DELTAS=" "\n', None)):
        plan.write_text(text)
        assert files.read_plan(plan) == expect, text
    assert files.read_plan(tmp_path / "missing.env") is None
    keep = tmp_path / "keep.env"
    keep.write_text('CONT_RUN_GROUP="cifar10-jpeg-full-resnet18-gpu-bf16"\nCONT_FROM="20261127T2052Z"\n')
    assert files.read_assignments(keep, files.KEEP_LINE)["CONT_RUN_GROUP"].endswith("-bf16")
    assert call.command_output(["no-such-command-here"])[0] == 1   # env.txt says so; the window goes on
    assert call.command_output(["sleep", "5"], timeout=1)[2].startswith("sleep: ")
    assert files.cell_status(tmp_path / "none.json", "cudagraph check bf16 K=2") == "not run"
    (tmp_path / "s.json").write_text(json.dumps({"cells": [{"name": "a", "status": "ok"}]}))
    assert [files.cell_status(tmp_path / "s.json", n) for n in ("a", "b")] == ["ok", "missing"]
    for bad, message in (({"LSNC_WINDOW_BUDGET_S": "8m"}, "LSNC_WINDOW_BUDGET_S must be seconds"),
                         ({"LSNC_WINDOW_GRAPHS": "yes"}, "LSNC_WINDOW_GRAPHS must be 0 or 1"),
                         ({"LSNC_WINDOW_STALL_S": "-1"}, "LSNC_WINDOW_STALL_S must be seconds"),
                         ({"LSNC_WINDOW_KEEP": str(REPO / ".device" / "keep")},
                          "LSNC_WINDOW_KEEP must lie outside .device/")):
        with pytest.raises(SystemExit) as stop:
            settings.Settings(bad)
        assert stop.value.code == 2 and message in capsys.readouterr().err
    # budget_left_s - 110 may be fractional: whole seconds of it
    assert settings.Settings({"LSNC_WINDOW_BUDGET_S": "173.4", "TMPDIR": str(tmp_path)}).budget_s == 173
    assert settings.Settings({"TMPDIR": str(tmp_path)}).stall_s == 150   # the hang watchdog's default
    # runs kept for a second call: in the checkout, where the device tool keeps ignored files between calls
    default = settings.Settings({"TMPDIR": str(tmp_path)}).keep
    assert default == REPO / settings.KEEP_DIR and subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", str(default / "keep.env")]).returncode == 0
    proc = subprocess.run([sys.executable, str(REPO / "device" / "window.py"), "--budget", "60"], capture_output=True,
                          text=True, env={**os.environ, "OUT": str(tmp_path / "never")})
    assert proc.returncode == 2 and "unknown arguments" in proc.stderr and not (tmp_path / "never").exists()


def test_a_signal_while_a_child_starts_is_raised_once_the_child_is_recorded(tmp_path, monkeypatch):
    """main's SIGTERM handler, landing while Window.spawn starts a child, only leaves stop_pending: spawn records the
    child first (so pack can stop it), then raises the stop."""
    from stages.call import Exit, Window
    from stages.settings import Settings
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    w = Window(Settings({"OUT": str(tmp_path / "out"), "LSNC_WINDOW_RUNS_DIR": str(tmp_path / "runs")}))
    try:
        with open(tmp_path / "child.log", "w") as log:
            assert w.spawn(["sleep", "30"], log).poll() is None and not w.stop_pending   # no signal: it runs
            w.stop_pending = True
            with pytest.raises(Exit) as stop:
                w.spawn(["sleep", "30"], log)
        assert stop.value.code == 143 and len(w.children) == 2 and w.children[1].poll() is None
    finally:
        for child in w.children:
            child.kill()
            child.wait()
        shutil.rmtree(w.work, ignore_errors=True)


def test_the_runs_record_lsnc_as_modified_when_it_changed_after_prepare_sh(tmp_path):
    """.device/source.txt (prepare.sh) gives the runs their commit; where lsnc/ is no longer what prepare.sh hashed
    (a commit made after it), the window says so and the runs record lsnc/ as modified."""
    from stages.keep import code_digest, sent_source
    assert sent_source(tmp_path / "none.txt") == ({}, "")
    source = tmp_path / "source.txt"
    for digest, modified in ((code_digest(), "0"), ("0" * 16, "1"), ("", "0")):   # "": an older prepare.sh
        source.write_text(f"source_commit: 0123abc\nsource_lsnc_modified: 0\nsource_lsnc_digest: {digest}\n")
        env, warning = sent_source(source)
        assert env == {"LSNC_SOURCE_COMMIT": "0123abc", "LSNC_SOURCE_LSNC_MODIFIED": modified}
        assert (warning != "") == (modified == "1")
        assert not warning or "run prepare.sh right before a window" in warning


def test_a_failed_streams_k4_set_goes_on_fused_with_every_run_that_trained_an_epoch(tmp_path):
    """The probe raised K to 4 for streams alone: a fused fallback drops the second seed only where none of its
    runs trained an epoch (then the plan's K = 2 pair gets ~2x the epochs); runs with epochs are never dropped."""
    from types import SimpleNamespace

    from stages.train import _fused_members
    members = ["--delta", "0", "0.05", "--seed", "0", "1"]

    def window(k_before, rows):
        runs = tmp_path / f"runs-{k_before}-{rows}"
        for seed in (0, 1):
            run = runs / GROUP / f"ce-s{seed}"
            run.mkdir(parents=True)
            (run / "config.json").write_text(json.dumps({"seed": seed}))
            (run / "epochs.csv").write_text("epoch,lr\n" + "".join(f"{e},0.05\n" for e in range(1, rows + 1)))
        return SimpleNamespace(k_before_probe=k_before, plan={"PLAN_K": "4"}, seeds=["0", "1"], deltas=["0", "0.05"],
                               runs=runs, log=lambda message: None)

    w = window("2", 0)
    assert _fused_members(w, members) == (["--delta", "0", "0.05", "--seed", "0"], " K=2")
    assert w.seeds == ["0"] and w.plan["PLAN_K"] == "2"
    for w in (window("2", 3), window("4", 0)):   # the second pair trained epochs; K=4 was the plan's own
        assert _fused_members(w, members) == (members, "") and w.seeds == ["0", "1"] and w.plan["PLAN_K"] == "4"


def test_next_seeds(tmp_path):
    """The lowest seeds whose whole δ set is new at the precision asked, over several runs folders; damaged folders
    block by name; --find lists a seed's runs (the twin question)."""
    g = tmp_path / "a" / GROUP

    def run(root, name, cfg=None, raw=None):
        (root / name).mkdir(parents=True)
        if cfg is not None or raw is not None:
            (root / name / "config.json").write_text(raw if raw is not None else json.dumps(cfg))

    run(g, "ce-resnet18-s0", {"delta": 0.0, "seed": 0})
    run(g, "x-s1", {"delta": 0.05, "seed": 1})                     # any name: config.json decides
    run(g, "ls0.1-resnet18-s2", {"delta": 0.1, "seed": 2})         # another δ: seed 2 stays free
    run(g, "ls0.05-bf16-resnet18-s3", raw="{not json")             # damaged: (0.05, 3, bf16) from its name
    run(g, "ce-bf16-resnet18-s1", {"delta": 0.0, "seed": 1, "amp": "bf16"})
    run(g, "junk", raw="[]")                                       # neither: ignored
    run(g / "speed", "20250101T0000Z")                             # the windows' speed folders
    run(tmp_path / "a" / "other-group", "ce-resnet18-s4", {"delta": 0.0, "seed": 4})
    run(tmp_path / "b" / GROUP, "ls0.05-resnet18-s5", {"delta": 0.05, "seed": 5})
    (tmp_path / "b" / GROUP / "ls0.05-resnet18-s5" / "status.json").write_text('{"status": "failed"}')
    dirs = [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "missing")]

    def next_seeds(*args):
        return subprocess.run([sys.executable, str(REPO / "device" / "next_seeds.py"), "--group", GROUP, *args],
                              capture_output=True, text=True, timeout=30)

    proc = next_seeds("--deltas", "0", "0.05", "--count", "3", *dirs)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "3", "4"], proc.stderr     # fp32/TF32: the bf16 runs take no seed
    assert "seed 3 taken" not in proc.stderr and "(fp32/TF32)" in proc.stderr
    proc = next_seeds("--deltas", "0", "0.05", "--count", "3", "--amp", "bf16", *dirs)
    assert proc.stdout.split() == ["0", "2", "4"], proc.stderr
    assert "seed 3 taken (ls0.05-bf16-resnet18-s3)" in proc.stderr and "config.json unreadable" in proc.stderr
    assert next_seeds("--deltas", "0", "0.05", "--count", "3", dirs[-1]).stdout.split() == ["0", "1", "2"]
    # --find: the tf32 CE run of a seed, or exit 1
    proc = next_seeds("--deltas", "0", "--find", "0", *dirs)
    assert proc.returncode == 0 and proc.stdout.strip() == str(g / "ce-resnet18-s0"), proc
    assert next_seeds("--deltas", "0", "--find", "1", *dirs).returncode == 1          # its CE run is bf16
    assert next_seeds("--deltas", "0", "--find", "1", "--amp", "bf16", *dirs).returncode == 0
    # --twin-pairs: seeds with runs of the δ values in both precisions
    assert next_seeds("--deltas", "0", "--twin-pairs", *dirs).stdout.split() == []
    assert next_seeds("--deltas", "0", "0.05", "--twin-pairs", *dirs).stdout.split() == ["1"]


def test_cells_isolated_and_capped():
    import speed_matrix as sm

    def boom(b):
        raise ValueError("bad cell")

    finished = []

    def slow(b):
        time.sleep(30)
        finished.append("slow")

    cells = [{"name": "a", "kind": "lsnc", "pipeline": "lsnc", "precision": "fp32", "k": 1, "fn": boom},
             {"name": "b", "kind": "lsnc", "pipeline": "lsnc", "precision": "fp32", "k": 1,
              "fn": lambda b: {"img_s": 10.0, "img_s_per_model": 10.0}},
             {"name": "c", "kind": "lsnc", "pipeline": "lsnc", "precision": "fp32", "k": 1, "fn": slow},
             {"name": "d", "kind": "lsnc", "pipeline": "lsnc", "precision": "fp32", "k": 1, "fn": boom}]
    recs = sm.run_cells(cells, bench=None, deadline=time.perf_counter() + 8.0, log=lambda s: None)
    assert not finished  # the slow cell was cut at the wall cap, not waited for
    assert [r["status"] for r in recs] == ["error", "ok", "timeout", "skipped"]
    assert "bad cell" in recs[0]["error"] and "wall cap" in recs[3]["error"]


@pytest.mark.parametrize("per_model, eval_s, expect", [
    ({("tf32", 2): 100, ("tf32", 4): 85, ("tf32", 8): 60, ("bf16", 2): 110}, None, (4, "none")),
    ({("tf32", 2): 100, ("tf32", 4): 70, ("tf32", 8): 81, ("bf16", 2): 140, ("bf16", 4): 139}, None, (4, "bf16")),
    ({("tf32", 2): 100, ("tf32", 4): 90, ("tf32", 8): 85}, 0.1, (8, "none")),   # 10 s of training an epoch
    ({("tf32", 2): 100, ("tf32", 4): 90, ("tf32", 8): 85}, 30.0, (2, "none")),  # evaluation dominates
    ({("tf32", 2): 100, ("tf32", 4): 90, ("tf32", 8): 85}, 5.0, (4, "none")),   # ... on 36 of 200 epochs only
    ({}, None, (2, "none")),
])
def test_training_plan_rule(per_model, eval_s, expect):
    _check_plan(per_model, eval_s, expect)


def test_the_plans_evaluations_per_epoch_are_the_recipes():
    """training_plan.py runs without lsnc: its evaluations per epoch must be the evaluation schedule's."""
    from lsnc.config import dense_then_sparse_epochs
    from training_plan import EVALS_PER_EPOCH
    assert EVALS_PER_EPOCH == len([e for e in dense_then_sparse_epochs(800) if 1 <= e <= 200]) / 200


def test_training_plan_prefers_concurrent_processes_when_fusion_does_not_pay():
    plan = _check_plan({("tf32", 2): 40, ("tf32", 4): 20}, None, (2, "none"), single={"tf32": 100})
    assert plan["mode"] == "concurrent" and 'PLAN_MODE="concurrent"' in __import__("speed_matrix").plan_env(plan)
    assert _check_plan({("tf32", 2): 60}, None, (2, "none"), single={"tf32": 100})["mode"] == "fused"


def _check_plan(per_model, eval_s, expect, single=None):
    import speed_matrix as sm

    cells = [{"name": f"fused {p} K={k}", "pipeline": "fused", "precision": p, "k": k, "status": "ok",
              "img_s_per_model": v} for (p, k), v in per_model.items()]
    cells += [{"name": f"lsnc {p}", "pipeline": "lsnc", "precision": p, "k": 1, "status": "ok",
               "img_s_per_model": v} for p, v in (single or {}).items()]
    if eval_s is not None:
        cells.append({"name": "evaluation", "pipeline": "evaluation", "precision": "tf32", "k": 1, "status": "ok",
                      "evaluate_s": eval_s})
    plan = sm.training_plan(cells, train_images=1000)
    assert (plan["k"], plan["amp"]) == expect, plan["reasons"]
    assert plan["tf32_twin"] == (plan["amp"] == "bf16")
    deltas, seeds = __import__("training_plan").PLAN_SETS[plan["k"]]
    assert len(deltas) * len(seeds) == plan["k"] and {0.0, 0.05} <= set(deltas)
    env = sm.plan_env(plan)
    assert all(line.startswith("PLAN_") for line in env.splitlines())
    return plan


def test_the_device_scripts_copies_of_lsnc_names_are_lsncs(tmp_path):
    """device/ runs without lsnc, so it copies a few of its names; each copy must be lsnc's."""
    import next_seeds
    import unpack
    from stages import data, files

    from lsnc.book import windows
    from lsnc.config import TrainConfig, default_run_name
    from lsnc.paths import CIFAR10_JPEG
    from lsnc.runs.format import CHECKPOINT_FILE
    from lsnc.vocab import CE_VS_LS
    from training_plan import PLAN_SETS

    assert files.WINDOW_ID_RE.pattern == unpack.WINDOW_ID.pattern == windows.WINDOW_ID.pattern
    assert files.CHECKPOINT_FILE == unpack.CHECKPOINT_FILE == CHECKPOINT_FILE
    assert data.JPEG_ROOT == CIFAR10_JPEG
    assert [float(d) for d in files.DEFAULT_PLAN["PLAN_DELTAS"].split()] == list(CE_VS_LS)
    assert PLAN_SETS[2][0] == CE_VS_LS
    # next_seeds reads (δ, seed, autocast) back from lsnc's default run names
    for delta, seed, amp, ufm in ((0.0, 0, "none", False), (0.05, 12, "bf16", False), (0.1, 3, "none", True),
                                  (1e-5, 1, "none", False)):
        cfg = TrainConfig(dataset="cifar10-jpeg", model="resnet18", delta=delta, seed=seed, amp=amp, ufm=ufm)
        folder = tmp_path / default_run_name(cfg)   # a run folder whose config.json is not there yet
        folder.mkdir()
        assert next_seeds.folder_key(folder) == (delta, seed, amp), folder.name
