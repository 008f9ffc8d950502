"""The benchmark scripts run end to end on tiny settings (they measure speed; these tests only check that they
still run against the library and report what they say they report, never how fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str, timeout: int = 300) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_bench_training_times_lsncs_own_epoch(tmp_path):
    out = tmp_path / "bench.json"
    text = _run("bench_training.py", "--dataset", "synthetic", "--train-per-class", "40", "--test-per-class", "8",
                "--width", "4", "--epochs", "1", "--workers", "0", "--variants", "fp32", "bf16", "--out", str(out))
    result = json.loads(out.read_text())
    assert set(result["train"]) == {"reference", "fp32", "bf16"} and all(v > 0 for v in result["train"].values())
    assert {"lsnc_s", "reference_s", "bare_forward_s"} <= set(result["eval"])
    assert "lsnc fp32" in text and "evaluation / forward" in text


def test_bench_fused_and_metrics_run():
    text = _run("bench_fused.py", "--k", "1", "2", "--width", "4", "--batch-size", "8", "--steps", "1",
                "--device", "cpu")
    assert "fused" in text and "vmap" in text
    text = _run("bench_metrics.py", "--n", "600", "--dim", "8", "--classes", "3", "--batch-size", "200",
                "--repeats", "1")
    assert "max_rel_diff" in text and "600" in text  # the table of its one size, streaming against plain
