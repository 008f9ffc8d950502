"""The GPU window script (device/window.sh) end to end on the CPU, and the speed matrix's cell runner and plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


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


@pytest.mark.parametrize("mode", ["plan", "concurrent"])
def test_window_end_to_end_on_cpu(tmp_path, mode):
    """The default path (the matrix's plan: fused here), and concurrent processes (the plan when fusion loses)."""
    make_image_tree(tmp_path / "tiny")
    with tarfile.open(tmp_path / "tiny.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tiny", arcname="tiny")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "TMPDIR": str(tmp_path),
           "LSNC_WINDOW_DATA": str(tmp_path / "tiny.tar.gz"), "LSNC_WINDOW_RUNS_DIR": str(tmp_path / "runs"),
           "LSNC_WINDOW_WIDTH": "4", "LSNC_WINDOW_BUDGET_S": "45", "LSNC_WINDOW_MATRIX_S": "10",
           "LSNC_WINDOW_MATRIX_ARGS": "--warmup 1 --steps 1 --ks 1 2 --skip compile",
           "LSNC_CACHE": str(tmp_path / "cache")}
    if mode == "concurrent":
        env.update(LSNC_WINDOW_MODE="concurrent", LSNC_WINDOW_BUDGET_S="40",
                   LSNC_WINDOW_MATRIX_ARGS="--warmup 1 --steps 1 --skip lsnc reference fused eval vmap cudagraph compile")
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(REPO / "device" / "window.sh")], env=env, capture_output=True, text=True,
                          timeout=240)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (out / "speed.md").read_text().startswith("# Speed matrix")

    with tarfile.open(out / "window.tar.gz") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "x", filter="data")
    w = tmp_path / "x" / "window"
    assert not [n for n in names if n.endswith("checkpoint.pt") or n.endswith(".lock")], names
    logs = ("logs/train.log",) if mode == "plan" else ("logs/train-d0-s0.log", "logs/train-d0.05-s0.log")
    for f in ("env.txt", "summary.txt", "speed/speed.md", "speed/speed.json", "logs/matrix.log", *logs):
        assert (w / f).is_file(), f
    speed = json.loads((w / "speed" / "speed.json").read_text())
    by_name = {c["name"]: c for c in speed["cells"]}
    if mode == "plan":
        assert by_name["lsnc fp32"]["status"] == "ok" and by_name["lsnc fp32"]["img_s"] > 0
    assert by_name["compile bf16"]["status"] == "skipped"
    if mode == "concurrent":
        assert "mode=concurrent" in (w / "logs" / "window.log").read_text()
    runs = sorted((w / "runs" / "cifar10-jpeg-full-resnet18-gpu").iterdir())
    done = {(json.loads((r / "config.json").read_text())["delta"], json.loads((r / "config.json").read_text())["seed"])
            for r in runs if json.loads((r / "status.json").read_text())["status"] == "done"}
    assert {(0.0, 0), (0.05, 0)} <= done, [r.name for r in runs]
    for r in runs:
        assert (r / "metrics.csv").is_file()

    # device/unpack.sh: finished runs into <runs>/<group>/, the speed table into <runs>/<group>/speed/
    up = subprocess.run(["bash", str(REPO / "device" / "unpack.sh"), str(out / "window.tar.gz"),
                         str(tmp_path / "committed")], capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    group = tmp_path / "committed" / "cifar10-jpeg-full-resnet18-gpu"
    assert (group / "speed" / "speed.md").is_file()
    assert len([p for p in group.glob("*/config.json")]) >= 2
    print(f"window.sh on the CPU: {wall:.0f} s")


def test_cells_isolated_and_capped():
    import speed_matrix as sm

    def boom(b):
        raise ValueError("bad cell")

    def slow(b):
        time.sleep(30)

    cells = [{"name": "a", "kind": "lsnc", "pipeline": "lsnc", "precision": "fp32", "k": 1, "fn": boom},
             {"name": "b", "kind": "lsnc", "pipeline": "lsnc", "precision": "fp32", "k": 1,
              "fn": lambda b: {"img_s": 10.0, "img_s_per_model": 10.0}},
             {"name": "c", "kind": "lsnc", "pipeline": "lsnc", "precision": "fp32", "k": 1, "fn": slow},
             {"name": "d", "kind": "lsnc", "pipeline": "lsnc", "precision": "fp32", "k": 1, "fn": boom}]
    t0 = time.perf_counter()
    recs = sm.run_cells(cells, bench=None, deadline=time.perf_counter() + 3.0, log=lambda s: None)
    assert time.perf_counter() - t0 < 10
    assert [r["status"] for r in recs] == ["error", "ok", "timeout", "skipped"]
    assert "bad cell" in recs[0]["error"] and "wall cap" in recs[3]["error"]


@pytest.mark.parametrize("per_model, eval_s, expect", [
    ({("tf32", 2): 100, ("tf32", 4): 85, ("tf32", 8): 60, ("bf16", 2): 110}, None, (4, "none")),
    ({("tf32", 2): 100, ("tf32", 4): 70, ("tf32", 8): 81, ("bf16", 2): 140, ("bf16", 4): 139}, None, (4, "bf16")),
    ({("tf32", 2): 100, ("tf32", 4): 90, ("tf32", 8): 85}, 0.1, (8, "none")),   # 10 s of training an epoch
    ({("tf32", 2): 100, ("tf32", 4): 90, ("tf32", 8): 85}, 5.0, (2, "none")),   # evaluation dominates
    ({}, None, (2, "none")),
])
def test_training_plan_rule(per_model, eval_s, expect):
    _check_plan(per_model, eval_s, expect)


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
    deltas, seeds = sm.PLAN_SETS[plan["k"]]
    assert len(deltas) * len(seeds) == plan["k"] and {0.0, 0.05} <= set(deltas)
    env = sm.plan_env(plan)
    assert all(line.startswith("PLAN_") for line in env.splitlines())
    return plan
