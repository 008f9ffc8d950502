"""Runs trained together on streams (``--together streams``) are exactly the separate runs, to the last bit on a
CPU; their checkpoints are ordinary; a prefix resumes exactly."""

import numpy as np
import pandas as pd
import pytest

from lsnc.cli import main
from lsnc.config import ConfigError, TrainConfig
from lsnc.runs import load_run
from lsnc.training import train, train_many
from lsnc.training.engine import Engine, make_engine
from lsnc.training.streams import StreamedRuns

from test_fused import BASE, PAIRS


def _same_bits(a, b):
    """Every logged number equal (the seconds columns aside), metrics and epoch tables."""
    ra, rb = load_run(a), load_run(b)
    for ta, tb in ((ra.metrics, rb.metrics), (ra.epochs, rb.epochs)):
        cols = [c for c in ta.columns if "seconds" not in c]
        assert cols == [c for c in tb.columns if "seconds" not in c]
        pd.testing.assert_frame_equal(ta[cols], tb[cols], check_exact=True)
    sa, sb = np.load(a / "snapshots.npz"), np.load(b / "snapshots.npz")
    assert sorted(sa.files) == sorted(sb.files)
    for key in sa.files:
        np.testing.assert_array_equal(sa[key], sb[key])


def test_streams_training_equals_separate_runs_bit_for_bit(tmp_path):
    together = train_many([TrainConfig(**BASE, delta=d, seed=s, group="streams", together="streams")
                           for d, s in PAIRS], tmp_path, progress=False)
    separate = [train(TrainConfig(**BASE, delta=d, seed=s, group="separate"), tmp_path, progress=False)
                for d, s in PAIRS]
    for t, s in zip(together, separate):
        assert load_run(t).status["status"] == "done" and (t / "checkpoint.pt").exists()
        assert load_run(t).config["together"] == "streams"
        _same_bits(t, s)
        tt, ts = load_run(t).provenance["training"], load_run(s).provenance["training"]
        assert tt.pop("together")["how"] == "streams" and ts.pop("together")["how"] == "alone" and tt == ts


def test_a_streams_prefix_resumes_alone_or_together_exactly(tmp_path):
    """Stopped at epoch 2 (the milestone), one run goes on alone and the other two on streams again:
    each equals its uninterrupted separate run."""
    cfgs = lambda **kw: [TrainConfig(**BASE, delta=d, seed=s, together="streams", **kw) for d, s in PAIRS]  # noqa
    first = train_many(cfgs(group="g", stop_epoch=2), tmp_path, progress=False)
    assert all(load_run(f).epochs_reached == 2 and load_run(f).is_prefix for f in first)
    train(TrainConfig(**BASE, delta=PAIRS[0][0], seed=PAIRS[0][1], group="g"), tmp_path, resume=True,
          progress=False)
    train_many(cfgs(group="g")[1:], tmp_path, resume=True, progress=False)
    for f, (d, s) in zip(first, PAIRS):
        whole = train(TrainConfig(**BASE, delta=d, seed=s, group="whole"), tmp_path, progress=False)
        assert not load_run(f).is_prefix
        assert list(load_run(f).epochs.lr) == pytest.approx([0.05, 0.05, 0.005, 0.005])
        _same_bits(f, whole)
        # provenance: epochs 1-2 on streams with all three, then alone (the first) or with the other one
        training = load_run(f).provenance["training"]
        earlier, = training["earlier"]
        assert earlier["together"] == {"how": "streams", "runs": [g.name for g in first]}
        now = ({"how": "alone", "runs": [f.name]} if f == first[0]
               else {"how": "streams", "runs": [g.name for g in first[1:]]})
        assert training["since_epoch"] == 2 and training["together"] == now


def test_make_engine_picks_streams_only_for_several_runs():
    cfgs = [TrainConfig(**BASE, delta=d, seed=s, together="streams").resolved() for d, s in PAIRS[:2]]
    from lsnc.training.prepare import load_data, pick_device
    device = pick_device("cpu")
    cache = {}
    data = [load_data(c, device, cache) for c in cfgs]
    engine = make_engine(cfgs, data, device)
    assert isinstance(engine, StreamedRuns) and len(engine.runs) == 2 and engine.streams is None
    assert engine.graph_captures == 0
    assert isinstance(make_engine(cfgs[:1], data[:1], device), Engine)  # one run: the plain engine
    fused = make_engine([TrainConfig(**BASE, delta=d, seed=s).resolved() for d, s in PAIRS[:2]], data, device)
    assert isinstance(fused, Engine) and fused.fused


def test_together_is_checked_and_is_an_execution_option(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--together"):
        TrainConfig(**BASE, together="vmap").resolved()
    # a run started fused may go on with streams: how runs train together does not change what they compute
    args = ["train", "--preset", "smoke", "--runs-dir", str(tmp_path), "--quiet", "--delta", "0", "0.05"]
    assert main(args + ["--stop-epoch", "2"]) == 0
    assert main(args + ["--resume", "--together", "streams"]) == 0
    assert main(args + ["--together", "nope"]) == 2
    assert "--together" in capsys.readouterr().err


# ---------------------------------------------------------------- graphs per run; the matrix's cells; the plan

def _streams_engine(pairs, graphs: bool):
    """K runs on streams (a CPU has none: one after another); with ``graphs`` each run's step replays its own
    stand-in graph (tests/test_graphs.py)."""
    import contextlib

    from lsnc.training.graphs import GraphedStep
    from lsnc.training.prepare import configure_backends, load_data
    from test_graphs import BASE as GBASE, StandInGraph
    import torch
    device = torch.device("cpu")
    cfgs = [TrainConfig(**GBASE, delta=d, seed=s, together="streams").resolved() for d, s in pairs]
    configure_backends(cfgs[0], device)
    cache: dict = {}
    engine = make_engine(cfgs, [load_data(c, device, cache) for c in cfgs], device)
    if graphs:
        for run in engine.runs:
            run.graphed = GraphedStep(run, graph_factory=lambda run=run: StandInGraph(run.optimizer),
                                      warmup_context=contextlib.nullcontext)
    return engine


def test_each_run_on_streams_replays_its_own_graph_across_a_milestone():
    import torch

    from lsnc.training.step import train_epoch
    from test_graphs import _engine as plain_engine
    pairs = [(0.0, 0), (0.1, 1)]
    eager, graphed = _streams_engine(pairs, False), _streams_engine(pairs, True)
    a = [train_epoch(eager, e) for e in range(1, 5)]
    b = [train_epoch(graphed, e) for e in range(1, 5)]
    assert a == b and graphed.graph_captures == 4  # 2 runs x (one capture at lr 0.05, one after the milestone)
    for run_a, run_b, pair in zip(eager.runs, graphed.runs, pairs):
        alone = plain_engine([pair])  # the same run as a separate one
        c = [train_epoch(alone, e) for e in range(1, 5)]
        assert [row[eager.runs.index(run_a)] for row in a] == [row[0] for row in c]
        for (na, pa), (nb, pb), (nc, pc) in zip(run_a.net.state_dict().items(), run_b.net.state_dict().items(),
                                               alone.net.state_dict().items()):
            assert na == nb == nc and torch.equal(pa, pb) and torch.equal(pa, pc), na


def _bench():
    import sys
    from argparse import Namespace
    from pathlib import Path

    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import speed_matrix as sm

    from lsnc.data import load_dataset
    data = load_dataset("synthetic", num_classes=4, image_size=8, n_train_per_class=24, n_test_per_class=8)
    args = Namespace(dataset="synthetic", model="resnet18", width=4, batch_size=16, warmup=1, steps=1, ks=[2, 4])
    return sm, sm.Bench(args, data, torch.device("cpu")), args


def test_the_matrix_has_streams_cells_and_a_streams_check():
    sm, bench, args = _bench()
    engine = sm._engine(bench, "bf16", 2, graphs=False, together="streams")
    assert isinstance(engine, StreamedRuns) and [c.seed for c in engine.configs] == [0, 1]
    losses, logits = engine.step([(bench.x[:16], bench.y[:16]), (bench.x[16:32], bench.y[16:32])])
    assert losses.shape == (2,) and len(logits) == 2 and logits[1].shape == (16, 4)
    names = {c["name"]: c for c in sm.cell_plan(args)}
    for p in ("bf16", "tf32"):
        assert names[f"streams check {p} K=2"]["pipeline"] == "check"
        assert names[f"streams check {p} K=2"]["together"] == "streams"
        assert names[f"streams {p} K=4"]["pipeline"] == "streams"
        assert names[f"cudagraph check {p} K=2"]["together"] == "fused"
    import pytest as _pytest
    with _pytest.raises(RuntimeError, match="CUDA"):
        sm.cell_streams(bench, "bf16", 2)
    with _pytest.raises(RuntimeError, match="CUDA"):
        sm.cell_graph_check(bench, "bf16", 2, together="streams")


def _cells(fused=None, graphed=None, streams=None, checks=("bf16", "tf32"), streams_checks=("bf16", "tf32")):
    cells = [{"name": f"fused {p} K={k}", "pipeline": "fused", "precision": p, "k": k, "status": "ok",
              "img_s_per_model": v} for (p, k), v in (fused or {}).items()]
    cells += [{"name": f"cudagraph {p} K={k}", "pipeline": "fused" if k > 1 else "lsnc", "precision": p, "k": k,
               "cuda_graphs": True, "status": "ok", "img_s_per_model": v} for (p, k), v in (graphed or {}).items()]
    cells += [{"name": f"streams {p} K={k}", "pipeline": "streams", "precision": p, "k": k, "cuda_graphs": True,
               "together": "streams", "status": "ok", "img_s_per_model": v} for (p, k), v in (streams or {}).items()]
    for p in ("bf16", "tf32"):
        cells.append({"name": f"cudagraph check {p} K=2", "pipeline": "check", "precision": p, "k": 2,
                      "cuda_graphs": True, "together": "fused", "status": "ok" if p in checks else "error"})
        cells.append({"name": f"streams check {p} K=2", "pipeline": "check", "precision": p, "k": 2,
                      "cuda_graphs": True, "together": "streams", "status": "ok" if p in streams_checks else "error"})
    return cells


# the H200's rates of window 20261127T2052Z, rounded (per model)
H200_FUSED = {("tf32", 2): 12000, ("tf32", 4): 6500, ("bf16", 2): 12200, ("bf16", 4): 10400}
H200_GRAPHED = {("bf16", 2): 20900, ("bf16", 4): 11500}


@pytest.mark.parametrize("streams, checks, expect", [
    ({("bf16", 2): 30000}, ("bf16", "tf32"), ("streams", 2, True)),      # 1.44x one graphed fused network
    ({("bf16", 2): 22000}, ("bf16", "tf32"), ("fused", 2, True)),        # 1.05x < 1.1: fused
    ({("bf16", 2): 30000}, ("tf32",), ("fused", 2, True)),               # the bf16 streams check failed
    # K = 4 on streams keeps >= 0.8 of K = 2's epochs per member: K = 4 (two seeds), on streams
    ({("bf16", 2): 30000, ("bf16", 4): 26000}, ("bf16", "tf32"), ("streams", 4, True)),
])
def test_training_plan_takes_streams_where_checked_and_faster(streams, checks, expect):
    sm, _, _ = _bench()
    plan = sm.training_plan(_cells(H200_FUSED, H200_GRAPHED, streams, checks=("bf16",), streams_checks=checks),
                            train_images=1000)
    assert (plan["mode"], plan["k"], plan["cuda_graphs"]) == expect, plan["reasons"]
    assert plan["amp"] == "bf16" and f'PLAN_MODE="{expect[0]}"' in sm.plan_env(plan)
    assert ("networks on CUDA streams" in sm.plan_text(plan)) == (expect[0] == "streams")


def test_a_probe_on_the_training_machine_chooses_streams_or_fused(tmp_path, capsys):
    """A plan from an earlier GPU's matrix (no streams cells), then the cells the window measured on its own
    machine: streams where that machine's check passed and its streams rate beats its own graphed fused rate."""
    import json
    sm, _, _ = _bench()
    import training_plan as tp
    earlier = _cells(H200_FUSED, H200_GRAPHED, checks=("bf16",), streams_checks=())
    earlier = [c for c in earlier if c["pipeline"] != "check" or c["together"] == "fused"]
    plan = sm.training_plan(earlier, train_images=1000)
    assert (plan["mode"], plan["amp"], plan["k"], plan["cuda_graphs"]) == ("fused", "bf16", 2, True)

    def probe(fused, streams, check="ok"):
        return [{"name": "cudagraph check bf16 K=2", "pipeline": "check", "precision": "bf16", "status": "ok"},
                {"name": "streams check bf16 K=2", "pipeline": "check", "precision": "bf16", "status": check},
                {"name": "cudagraph bf16 K=2", "status": "ok", "img_s_per_model": fused},
                {"name": "streams bf16 K=2", "status": "ok", "img_s_per_model": streams}]
    faster = tp.probe_streams(plan, probe(15000, 21000))
    assert faster["mode"] == "streams" and "= 1.40 (>= 1.1): streams" in faster["reasons"][-1]
    assert faster["probe"] == {"mode": "streams", "k": 2, "streams_over_fused": 1.4, "k4_keep": None}
    assert plan["mode"] == "fused"  # the plan given is left as it was
    assert tp.probe_streams(plan, probe(15000, 15500))["mode"] == "fused"
    assert tp.probe_streams(plan, probe(15000, 21000, check="error"))["mode"] == "fused"
    assert "not probed" in tp.probe_streams({**plan, "cuda_graphs": False}, probe(1, 9))["reasons"][-1]
    # a streams plan (from a matrix with streams cells) is probed too, and goes back to fused where streams fail here
    streams_plan = {**plan, "mode": "streams"}
    assert tp.probe_streams(streams_plan, probe(15000, 21000))["mode"] == "streams"
    assert tp.probe_streams(streams_plan, probe(15000, 21000, check="error"))["mode"] == "fused"
    assert tp.probe_streams({**plan, "mode": "concurrent"}, probe(1, 9))["mode"] == "concurrent"
    # a K = 2 set on streams takes K = 4 (a second seed) where its members keep >= K_KEEP of their epochs there
    four = [*probe(15000, 21000), {"name": "streams bf16 K=4", "status": "ok", "img_s_per_model": 17000}]
    wider = tp.probe_streams(plan, four)
    assert (wider["mode"], wider["k"], wider["seeds"], wider["deltas"]) == ("streams", 4, [0, 1], [0.0, 0.05])
    assert "K=4 vs K=2: 0.81 (>= 0.8) -> K=4" in wider["reasons"][-1] and plan["k"] == 2
    assert (wider["probe"]["mode"], wider["probe"]["k"], round(wider["probe"]["k4_keep"], 2)) == ("streams", 4, 0.81)
    # ... counting each member's evaluation (4 members evaluated per epoch, not 2)
    assert tp.probe_streams(plan, four, train_images=1000, eval_s=0.01)["k"] == 2
    four[-1]["img_s_per_model"] = 16000   # 0.76 of the epochs: K = 2
    assert tp.probe_streams(plan, four)["k"] == 2 and "-> K=2" in tp.probe_streams(plan, four)["reasons"][-1]
    assert tp.probe_streams(plan, [*probe(15000, 15500), four[-1]])["k"] == 2   # fused here: K stays
    # the command line: --probe with a speed.json of those cells
    (tmp_path / "earlier.json").write_text(json.dumps({"cells": earlier, "train_images": 1000}))
    (tmp_path / "probe.json").write_text(json.dumps({"cells": probe(15000, 21000)}))
    assert tp.main([str(tmp_path / "earlier.json"), "--probe", str(tmp_path / "probe.json"),
                    "--out-dir", str(tmp_path / "out")]) == 0
    assert 'PLAN_MODE="streams"' in (tmp_path / "out" / "plan.env").read_text()
    assert json.loads((tmp_path / "out" / "probe.json").read_text())["streams_over_fused"] == 1.4
    assert "networks on CUDA streams" in capsys.readouterr().out
    # a member's evaluation is this machine's where the check stage timed one (the earlier matrix has none here)
    four = [*probe(15000, 21000), {"name": "streams bf16 K=4", "status": "ok", "img_s_per_model": 17000}]
    evaluation = {"name": "evaluation", "pipeline": "evaluation", "status": "ok", "evaluate_s": 0.01}
    for cells, k in ((four, "4"), ([*four, evaluation], "2")):
        (tmp_path / "probe.json").write_text(json.dumps({"cells": cells}))
        assert tp.main([str(tmp_path / "earlier.json"), "--probe", str(tmp_path / "probe.json"),
                        "--out-dir", str(tmp_path / "out")]) == 0
        assert f'PLAN_K="{k}"' in (tmp_path / "out" / "plan.env").read_text()
    (tmp_path / "bad.json").write_text("{")
    assert tp.main([str(tmp_path / "earlier.json"), "--probe", str(tmp_path / "bad.json")]) == 2


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_real_streams_with_graphs_match_the_runs_stepped_one_after_another_on_the_gpu():
    """On a GPU: two runs graphed on two streams against the same two stepped eagerly one after another on one
    stream (the matrix's streams check), then 3 epochs across the milestone (a second capture per run)."""
    import torch

    import test_graphs
    sm, _, _ = _bench()

    def make(graphs):
        base = {**test_graphs.BASE, "deterministic": False}
        cfgs = [TrainConfig(**base, delta=d, seed=s, together="streams", cuda_graphs=graphs, device="cuda").resolved()
                for d, s in [(0.0, 0), (0.05, 1)]]
        from lsnc.training.prepare import configure_backends, load_data
        device = torch.device("cuda")
        configure_backends(cfgs[0], device)
        cache: dict = {}
        engine = make_engine(cfgs, [load_data(c, device, cache) for c in cfgs], device)
        if not graphs:
            engine.streams = None
        return engine

    data = make(False).data
    g = torch.Generator().manual_seed(0)
    steps = [[(d.train.x[i], d.train.y[i]) for d, i in zip(data, torch.randint(len(data[0].train.y), (2, 16),
                                                                                generator=g))] for _ in range(8)]
    assert sm.graph_check(make, steps)["update_rel_diff"] < sm.GRAPH_CHECK_UPDATE
    from lsnc.training.step import train_epoch
    eager, graphed = make(False), make(True)
    start = torch.cat([p.detach().float().flatten() for p in eager.net.parameters()])
    for e in range(1, 4):
        train_epoch(eager, e), train_epoch(graphed, e)
    assert graphed.graph_captures == 4
    flat = lambda m: torch.cat([p.detach().float().flatten() for p in m.net.parameters()])  # noqa: E731
    assert (flat(graphed) - flat(eager)).norm() / (flat(eager) - start).norm() < 0.1


def test_the_matrix_runs_only_the_cells_asked_for_and_plans_nothing_from_them(tmp_path, capsys):
    import json
    sm, _, _ = _bench()
    args = ["--dataset", "synthetic", "--width", "4", "--batch-size", "16", "--warmup", "1", "--steps", "1",
            "--out-dir", str(tmp_path)]
    assert sm.main(args + ["--cells", "streams check bf16 K=2", "lsnc fp32", "lsnc fp32"]) == 0
    result = json.loads((tmp_path / "speed.json").read_text())
    assert [(c["name"], c["status"]) for c in result["cells"]] == [("streams check bf16 K=2", "skipped"),
                                                                     ("lsnc fp32", "ok")]   # in the order asked
    assert "plan" not in result and not (tmp_path / "plan.env").exists()
    assert "no training plan" in (tmp_path / "speed.md").read_text()
    with pytest.raises(SystemExit):
        sm.main(args + ["--cells", "streams bf16 K=8"])
    assert "no cell named 'streams bf16 K=8'" in capsys.readouterr().err
