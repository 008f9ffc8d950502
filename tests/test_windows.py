"""lsnc.book.windows: the runs page's GPU-window table, read from the files device/unpack.sh leaves."""

from __future__ import annotations

import json

import pandas as pd

from lsnc.book.windows import windows_table

GROUP = "cifar10-jpeg-full-resnet18-gpu"
NVIDIA_SMI = """---- nvidia-smi
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:00:06.0 Off |                    0 |
"""


def _window(root, group, wid, lines, runs, env=NVIDIA_SMI):
    folder = root / group / "speed" / wid
    folder.mkdir(parents=True)
    text = [f"group: {GROUP}", *lines, f"window_id: {wid}"]
    text += [f"run.{name}: {json.dumps(status)}" for name, status in runs.items()]
    (folder / "summary.txt").write_text("\n".join(text) + "\n")
    if env is not None:
        (folder / "env.txt").write_text(env)


def test_one_row_per_window_with_the_epochs_it_added(tmp_path):
    done = lambda epoch, secs: {"epoch": epoch, "status": "done", "train_seconds": secs}  # noqa: E731
    # a matrix window: a bf16 set and its twin, the speed folder beside both groups
    for group in (GROUP, GROUP + "-bf16"):
        _window(tmp_path, group, "20270101T1000Z",
                ["elapsed_s: 499", "budget_s: 520", "exit: 0"],
                {"ce-bf16-resnet18-s0": done(170, 400.4), "ls0.05-bf16-resnet18-s0": done(170, 400.4),
                 "ce-resnet18-s0": done(40, 110.0)})
    # its second call: the set continued from epoch 170 to 210; a run that failed counts nothing
    _window(tmp_path, GROUP + "-bf16", "20270101T1010Z",
            ["continued: window 20270101T1000Z after epoch 170", "continued.after_epoch: 170", "elapsed_s: 150", "budget_s: 140", "exit: 0"],
            {"ce-bf16-resnet18-s0": done(210, 500.0), "ls0.05-bf16-resnet18-s0": done(210, 500.0),
             "x-s9": {"epoch": 3, "status": "failed"}})
    # a reused plan, and a folder that is no window
    # (its fused stage hung: the watchdog stopped it, and the set trained on as concurrent processes)
    _window(tmp_path, GROUP, "20270102T0900Z", ["matrix: reused 20270101T1000Z",
                                                "train.train: python3 -m lsnc train --time-budget-s 80 --delta 0 0.05",
                                                "stalled: train", "fallback: concurrent after fused exit 143",
                                                "elapsed_s: 90"],
            {"ce-bf16-resnet18-s1": done(20, 60.0)}, env=None)
    (tmp_path / GROUP / "speed" / "notes").mkdir()
    table = windows_table(tmp_path)
    assert table["window"].tolist() == ["20270101T1000Z", "20270101T1010Z", "20270102T0900Z"]
    first, second, third = table.to_dict("records")
    assert first["GPU"] == "NVIDIA H100 80GB HBM3" and first["groups"] == f"{GROUP}, {GROUP}-bf16"
    assert first["model-epochs"] == 170 + 170 + 40 and first["training s"] == 400 and first["plan"] == "speed matrix"
    assert second["model-epochs"] == 2 * 40 and second["plan"].startswith("continued window 20270101T1000Z")
    assert "x-s9" not in second["runs (epochs reached)"]
    assert "ce-bf16-resnet18-s0 0–210" in second["runs (epochs reached)"]
    assert third["plan"] == "plan from window 20270101T1000Z" and third["GPU"] == "" and pd.isna(third["budget s"])
    assert third["trained as"] == "fused, TF32; train stopped as hung; concurrent after fused exit 143"
    assert windows_table(tmp_path, groups=[GROUP + "-bf16"])["window"].tolist() == ["20270101T1000Z",
                                                                                    "20270101T1010Z"]
    assert windows_table(tmp_path / "nothing").empty


def test_trained_as_is_read_off_the_logged_train_commands(tmp_path):
    from lsnc.book.windows import trained_as
    cmd = "python3 -m lsnc train --preset paper-cifar10-jpeg --tf32 --channels-last --quiet --time-budget-s 396"
    streams = {"train.train": f"{cmd} --cuda-graphs --amp bf16 --together streams --delta 0 0.05 --seed 0",
               "train.twin": f"{cmd} --group g --delta 0 --seed 0"}
    assert trained_as(streams) == "streams, bf16 + CUDA graphs"
    failed = {"train.train": f"{cmd} --cuda-graphs --delta 0 0.05 --seed 0",
              "train.train-nographs": f"{cmd} --resume --delta 0 0.05 --seed 0",
              "train.d0-s0": f"{cmd} --delta 0 --seed 0 --resume", "train.d0.05-s0": f"{cmd} --delta 0.05 --seed 0"}
    assert trained_as(failed, ["concurrent after fused exit 1"]) == \
        "fused, TF32 + CUDA graphs; train again without graphs; concurrent after fused exit 1"
    concurrent = {"train.d0-s1": f"{cmd} --delta 0 --seed 1  --cuda-graphs (if it fails: again without, --resume)",
                  "train.d0.05-s1": f"{cmd} --delta 0.05 --seed 1  --cuda-graphs (if it fails: again without)"}
    assert trained_as(concurrent) == "2 concurrent processes, TF32 + CUDA graphs"
    assert trained_as({"matrix": "reused 20270101T1000Z"}) == ""
    # in the table: the committed first window trained fused in TF32, eagerly
    _window(tmp_path, GROUP, "20270101T1000Z", [f"train.train: {cmd} --delta 0 0.05 --seed 0"], {})
    assert windows_table(tmp_path)["trained as"].tolist() == ["fused, TF32"]
    # every fallback, in order; a probe that measured no ratio says what it chose
    _window(tmp_path, GROUP, "20270102T1000Z",
            [f"train.train: {cmd} --together streams --cuda-graphs", "fallback: fused after streams exit 1",
             f"train.train-fused: {cmd} --cuda-graphs --resume", f"train.train-fused-nographs: {cmd} --resume",
             "fallback: concurrent after fused exit 1", f"train.d0-s0: {cmd} --resume",
             "probe: fused (streams not used here: the bf16 streams check did not run or did not pass)",
             "probe.mode: fused", "probe.k: 2"], {})
    row = windows_table(tmp_path).to_dict("records")[1]
    assert row["trained as"] == ("streams, TF32 + CUDA graphs; train-fused again without graphs; fused after streams "
                                 "exit 1; concurrent after fused exit 1")
    assert row["plan"] == "speed matrix; probe: fused (streams not measured or not checked)"
    # a probe that timed four networks on streams too, and took K = 4
    _window(tmp_path, GROUP, "20270103T1000Z", [
        "probe: streams (on this machine streams bf16 K=2 / one graphed fused network = 1.50 (>= 1.1): streams; "
        "epochs per member on streams here, K=4 vs K=2: 0.85 (>= 0.8) -> K=4)", "probe.mode: streams", "probe.k: 4",
        "probe.streams_over_fused: 1.50", "probe.k4_keep: 0.85"], {})
    assert windows_table(tmp_path).to_dict("records")[2]["plan"] == (
        "speed matrix; probe: streams 1.50x fused, K=4 (K=4 keeps 0.85 of a member's epochs)")


def test_the_evaluation_against_a_bare_forward_pass(tmp_path):
    """From the window's matrix (speed.json), else the cells its check stage timed (check.json); with its parts
    where the cell timed them; empty where the window timed no evaluation."""
    ev = {"name": "evaluation", "pipeline": "evaluation", "status": "ok", "evaluate_s": 0.72, "bare_forward_s": 0.44}
    _window(tmp_path, GROUP, "20270101T1000Z", [], {})
    (tmp_path / GROUP / "speed" / "20270101T1000Z" / "speed.json").write_text(json.dumps({"cells": [ev]}))
    _window(tmp_path, GROUP, "20270102T1000Z", [], {})
    parts = {**ev, "train_pass_s": 0.55, "forward_train_s": 0.37, "test_pass_s": 0.09, "forward_test_s": 0.075,
             "finalize_s": 0.08}
    (tmp_path / GROUP / "speed" / "20270102T1000Z" / "check.json").write_text(json.dumps({"cells": [
        {"name": "cudagraph check bf16 K=2", "pipeline": "check", "status": "ok"}, parts]}))
    _window(tmp_path, GROUP, "20270103T1000Z", [], {})
    (tmp_path / GROUP / "speed" / "20270103T1000Z" / "check.json").write_text(json.dumps({"cells": [
        {**ev, "status": "timeout"}]}))
    # unreadable cells: no value, and the table still stands
    _window(tmp_path, GROUP, "20270104T1000Z", [], {})
    (tmp_path / GROUP / "speed" / "20270104T1000Z" / "speed.json").write_text(json.dumps({"cells": None}))
    (tmp_path / GROUP / "speed" / "20270104T1000Z" / "check.json").write_text(json.dumps({"cells": [
        {**ev, "bare_forward_s": 0.0}]}))
    assert windows_table(tmp_path)["evaluation / forward"].tolist() == [
        "1.64x (0.72 s / 0.44 s)",
        "1.64x (0.72 s / 0.44 s); train pass 1.49x, test pass 1.20x, metrics 0.08 s", "", ""]

