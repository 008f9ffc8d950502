"""The CUDA-graph training step (lsnc.training.graphs) is the eager step replayed.

On the CPU a stand-in graph records the step's body at capture and runs nothing then, and each replay runs the
body with the learning rate that was current at capture: the two properties of a CUDA graph that the step's
bookkeeping must respect (capture does not train; a graph holds its constants). Training through it must give
bit-identical epochs to the eager step, across an lr milestone, for one network and for fused ones. On a CUDA
machine the last test compares the real graph with the eager step.
"""

import contextlib

import pytest
import torch

from lsnc.cli import main
from lsnc.config import ConfigError, TrainConfig
from lsnc.training.engine import Engine
from lsnc.training.graphs import WARMUP, GraphedStep
from lsnc.training.prepare import configure_backends, load_data
from lsnc.training.step import train_epoch

BASE = dict(dataset="synthetic", model="resnet18", width=4, epochs=4, milestones=[2], batch_size=16,
            deterministic=True, threads=1,
            data_options={"num_classes": 4, "image_size": 8, "n_train_per_class": 24, "n_test_per_class": 8})


class StandInGraph:
    """A CPU stand-in for a CUDA graph: ``capture`` records and runs nothing; ``replay`` runs the recorded body
    with the optimizer's lr as it was at capture."""

    def __init__(self, optimizer):
        self.optimizer, self.body, self.replays = optimizer, None, 0

    def capture(self, body):
        self.body, self.lrs = body, [g["lr"] for g in self.optimizer.param_groups]

    def replay(self):
        now = [g["lr"] for g in self.optimizer.param_groups]
        for g, lr in zip(self.optimizer.param_groups, self.lrs):
            g["lr"] = lr
        try:
            self.body()
        finally:
            for g, lr in zip(self.optimizer.param_groups, now):
                g["lr"] = lr
        self.replays += 1


def _engine(pairs, device=torch.device("cpu"), **extra):
    cfgs = [TrainConfig(**{**BASE, **extra}, delta=d, seed=s).resolved() for d, s in pairs]
    configure_backends(cfgs[0], device)
    cache: dict = {}
    return Engine(cfgs, [load_data(c, device, cache) for c in cfgs], device)


def _train(engine, epochs):
    return [train_epoch(engine, e) for e in range(1, epochs + 1)]


@pytest.mark.parametrize("pairs", [[(0.05, 0)], [(0.0, 0), (0.1, 1)]], ids=["one network", "fused K=2"])
def testgraphed_step_equals_eager_step_across_a_milestone(pairs):
    eager, graphed = _engine(pairs), _engine(pairs)
    step = GraphedStep(graphed, graph_factory=lambda: StandInGraph(graphed.optimizer),
                       warmup_context=contextlib.nullcontext)
    graphed.graphed = step
    a, b = _train(eager, 4), _train(graphed, 4)
    assert a == b  # running losses and accuracies of every epoch, bit for bit
    for (na, pa), (nb, pb) in zip(eager.net.state_dict().items(), graphed.net.state_dict().items()):
        assert na == nb and torch.equal(pa, pb), na
    # 3 eager warm-up steps, one capture at lr 0.05, a second one after the milestone at epoch 2
    assert step.steps == WARMUP and step.captures == 2 and step.graph_lr == pytest.approx(0.005)
    assert step.graph.replays > 0


def test_a_graph_that_kept_the_old_lr_would_be_caught():
    """The stand-in is strict enough to catch a step that never captures again after a milestone."""

    class CapturesOnce(GraphedStep):
        def __call__(self, batches):
            if self.graph is not None:
                self.graph_lr = self.engine.lr  # the bug: the lr-0.05 graph goes on being replayed
            return super().__call__(batches)

    pairs = [(0.05, 0)]
    eager, graphed = _engine(pairs), _engine(pairs)
    graphed.graphed = CapturesOnce(graphed, graph_factory=lambda: StandInGraph(graphed.optimizer),
                                    warmup_context=contextlib.nullcontext)
    a, b = _train(eager, 4), _train(graphed, 4)
    assert a[:2] == b[:2] and a[2:] != b[2:]


def test_cuda_graphs_are_refused_off_cuda(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--cuda-graphs"):
        TrainConfig(**BASE, device="cpu", cuda_graphs=True).resolved()
    with pytest.raises(ConfigError, match="cannot be combined"):
        TrainConfig(**BASE, device="cuda", cuda_graphs=True, compile=True).resolved()
    if not torch.cuda.is_available():
        rc = main(["train", "--preset", "smoke", "--cuda-graphs", "--runs-dir", str(tmp_path / "runs")])
        assert rc == 2 and "--cuda-graphs" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_graph_matches_eager_on_the_gpu():
    """The real graph against the eager step: the matrix's check on 8 steps, then 3 epochs across the lr
    milestone at epoch 2 (a second capture), parameters compared with the size of the update itself."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import speed_matrix as sm

    def make(graphs):
        return _engine([(0.0, 0), (0.05, 0)], torch.device("cuda"), deterministic=False, cuda_graphs=graphs)

    data = make(False).data[0]
    g = torch.Generator().manual_seed(0)
    steps = [[(data.train.x[i], data.train.y[i]) for i in torch.randint(len(data.train.y), (2, 16), generator=g)]
             for _ in range(8)]
    assert sm.graph_check(make, steps)["update_rel_diff"] < sm.GRAPH_CHECK_UPDATE

    def flat(engine):
        return torch.cat([p.detach().float().flatten() for p in engine.net.parameters()])

    eager, graphed = make(False), make(True)
    start = flat(eager)
    _train(eager, 3), _train(graphed, 3)
    assert graphed.graphed.captures == 2
    moved = (flat(graphed) - flat(eager)).norm() / (flat(eager) - start).norm()
    assert moved < 0.1, float(moved)


def _plan(eager, graphed, check=True, single=None):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import speed_matrix as sm

    cells = [{"name": f"fused {p} K={k}", "pipeline": "fused", "precision": p, "k": k, "status": "ok",
              "img_s_per_model": v} for (p, k), v in eager.items()]
    cells += [{"name": f"lsnc {p}", "pipeline": "lsnc", "precision": p, "k": 1, "status": "ok",
               "img_s_per_model": v} for p, v in (single or {}).items()]
    cells += [{"name": f"cudagraph {p} K={k}", "pipeline": "fused" if k > 1 else "lsnc", "precision": p, "k": k,
               "cuda_graphs": True, "status": "ok", "img_s_per_model": v} for (p, k), v in graphed.items()]
    passed = check if isinstance(check, dict) else {"bf16": check, "tf32": check}
    cells += [{"name": f"cudagraph check {p} K=2", "pipeline": "check", "precision": p, "k": 2, "cuda_graphs": True,
               "status": "ok" if passed[p] else "error"} for p in ("bf16", "tf32")]
    plan = sm.training_plan(cells, train_images=1000)
    return plan, sm.plan_env(plan)


@pytest.mark.parametrize("eager, graphed, check, expect", [
    ({("tf32", 2): 100, ("tf32", 4): 60}, {("tf32", 2): 150}, True, (2, True)),     # graphs pay at K = 2
    ({("tf32", 2): 100, ("tf32", 4): 60}, {("tf32", 2): 110}, True, (2, False)),    # 1.10 < 1.15: eager
    ({("tf32", 2): 100, ("tf32", 4): 60}, {("tf32", 2): 150}, False, (2, False)),   # check failed: eager
    # K = 4 eager keeps 0.9 of K = 2 eager's epochs, but only 0.6 of K = 2 graphed: graphs at K = 2 win
    ({("tf32", 2): 100, ("tf32", 4): 90}, {("tf32", 2): 150}, True, (2, True)),
    ({("tf32", 2): 100, ("tf32", 4): 90}, {}, True, (4, False)),
    ({("tf32", 2): 100, ("tf32", 4): 90}, {("tf32", 2): 150, ("tf32", 4): 140}, True, (4, True)),
])
def test_training_plan_uses_cuda_graphs_only_where_checked_and_paying(eager, graphed, check, expect):
    plan, env = _plan(eager, graphed, check)
    assert (plan["k"], plan["cuda_graphs"]) == expect, plan["reasons"]
    assert f'PLAN_GRAPHS="{int(expect[1])}"' in env


def test_concurrent_plan_takes_graphs_of_one_model():
    plan, env = _plan({("tf32", 2): 40}, {("tf32", 1): 300}, single={"tf32": 100})
    assert plan["mode"] == "concurrent" and plan["cuda_graphs"], plan["reasons"]


def test_graphs_need_the_check_at_the_plans_precision():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import speed_matrix as sm
    cells = [{"name": "fused tf32 K=2", "pipeline": "fused", "precision": "tf32", "k": 2, "status": "ok",
              "img_s_per_model": 100},
             {"name": "cudagraph tf32 K=2", "pipeline": "fused", "precision": "tf32", "k": 2, "cuda_graphs": True,
              "status": "ok", "img_s_per_model": 200},
             {"name": "cudagraph check bf16 K=2", "pipeline": "check", "precision": "bf16", "k": 2,
              "cuda_graphs": True, "status": "ok"}]
    plan = sm.training_plan(cells, train_images=1000)
    assert plan["amp"] == "none" and not plan["cuda_graphs"]
    assert any("tf32 graph check did not run" in r for r in plan["reasons"]), plan["reasons"]


def test_graphs_count_in_the_precision_choice():
    """The H200's matrix (window 20261127T2052Z, rounded): eager bf16 no faster than TF32 at K = 2, graphed bf16
    1.7x it, the bf16 graph check passed and the TF32 one failed: a bf16 set with graphs at K = 2 (and its twin).
    Where the bf16 check fails too, its graphs do not count: TF32, eager."""
    eager = {("tf32", 2): 12000, ("tf32", 4): 6500, ("tf32", 8): 3300, ("bf16", 2): 12200, ("bf16", 4): 10400,
             ("bf16", 8): 5500}
    graphed = {("bf16", 1): 43400, ("bf16", 2): 20900, ("bf16", 4): 11500, ("tf32", 1): 29100, ("tf32", 2): 12700}
    plan, env = _plan(eager, graphed, check={"bf16": True, "tf32": False})
    assert (plan["amp"], plan["k"], plan["mode"], plan["cuda_graphs"], plan["tf32_twin"]) == \
        ("bf16", 2, "fused", True, True), plan["reasons"]
    assert "bf16 graphed, tf32 eager) = 1.74" in plan["reasons"][0]
    assert 'PLAN_AMP="bf16"' in env and 'PLAN_GRAPHS="1"' in env
    plan, _ = _plan(eager, graphed, check=False)
    assert (plan["amp"], plan["cuda_graphs"]) == ("none", False), plan["reasons"]


def test_a_bf16_plan_never_goes_concurrent():
    """device/window.sh trains a bf16 set fused (then its tf32 twin): concurrent processes are for tf32."""
    plan, _ = _plan({("tf32", 2): 40, ("bf16", 2): 80}, {}, single={"tf32": 100, "bf16": 200})
    assert plan["amp"] == "bf16" and plan["mode"] == "fused", plan["reasons"]


def test_speed_matrix_engine_cells_build_lsnc_engines_on_the_cpu():
    """The matrix's graph cells time lsnc's own Engine; on the CPU build it eagerly and take one fused step."""
    import sys
    from argparse import Namespace
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import speed_matrix as sm

    from lsnc.data import load_dataset
    data = load_dataset("synthetic", num_classes=4, image_size=8, n_train_per_class=24, n_test_per_class=8)
    args = Namespace(dataset="synthetic", model="resnet18", width=4, batch_size=16, warmup=1, steps=1)
    bench = sm.Bench(args, data, torch.device("cpu"))
    engine = sm._engine(bench, "bf16", 2, graphs=False)
    assert engine.fused and engine.configs[0].amp == "bf16" and [c.seed for c in engine.configs] == [0, 1]
    losses, logits = engine.step([(bench.x[:16], bench.y[:16]), (bench.x[16:32], bench.y[16:32])])
    assert losses.shape == (2,) and torch.isfinite(losses).all() and logits[0].shape == (16, 4)
    with pytest.raises(RuntimeError, match="CUDA"):
        sm.cell_graph_check(bench, "bf16", 2)
    # the timed cells go through the same Engine: one model at the main δ, K fused models
    assert sm._engine(bench, "fp32", 1, graphs=False).configs[0].delta == sm.DELTA
    single, fused = sm.cell_lsnc(bench, "fp32"), sm.cell_fused(bench, "bf16", 2)
    assert single["steps"] == fused["steps"] == 1 and single["img_s_per_model"] > 0
    assert fused["img_s"] == pytest.approx(2 * fused["img_s_per_model"])  # K = 2 models a step


def test_the_matrix_graph_check_passes_a_correct_graph_and_catches_a_broken_one():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import speed_matrix as sm

    class DropsTheUpdate(StandInGraph):
        """A broken graph: replays the forward and backward but not the optimizer step."""

        def replay(self):
            step, self.optimizer.step = self.optimizer.step, lambda: None
            try:
                super().replay()
            finally:
                self.optimizer.step = step

    def factory(graph_cls, step_cls=GraphedStep):
        def make(graphs):
            engine = _engine([(0.0, 0), (0.05, 1)])
            if graphs:
                engine.graphed = step_cls(engine, graph_factory=lambda: graph_cls(engine.optimizer),
                                          warmup_context=contextlib.nullcontext)
            return engine
        return make

    data = _engine([(0.0, 0)]).data[0]
    g = torch.Generator().manual_seed(0)
    batches = [[(data.train.x[i], data.train.y[i]) for i in torch.randint(len(data.train.y), (2, 16), generator=g)]
               for _ in range(8)]
    ok = sm.graph_check(factory(StandInGraph), batches)
    assert ok["max_rel_diff"] == 0 and ok["update_rel_diff"] == 0 and ok["check_steps"] == 8
    assert ok["milestone_step"] == 5 and ok["captures"] == 2   # the lr changed before step 5: a second graph
    assert ok["eager_rel_diff"] == 0 and ok["eager_update_rel_diff"] == 0  # the CPU's eager step is deterministic
    with pytest.raises(RuntimeError, match="of the update"):
        sm.graph_check(factory(DropsTheUpdate), batches)

    class KeepsTheOldLr(GraphedStep):   # never captures again at the milestone: replays the lr-0.05 graph
        def __call__(self, batches):
            if self.graph is not None:
                self.graph_lr = self.engine.lr
            return super().__call__(batches)

    with pytest.raises(RuntimeError, match="graphed step differs"):
        sm.graph_check(factory(StandInGraph, KeepsTheOldLr), batches)

    # An eager step that is not reproducible run to run (as cuDNN's TF32 kernels on a GPU): the second eager run
    # is nudged a little before each step. The check reports that noise, and a failure names it.
    def noisy(make, calls=[0]):  # noqa: B006 (counts the engines built)
        def build(graphs):
            engine, calls[0] = make(graphs), calls[0] + 1
            if calls[0] % 3 == 2:  # the second eager run of each check
                step, gen = engine.step, torch.Generator().manual_seed(calls[0])

                def nudged(batch):
                    with torch.no_grad():
                        for p in engine.net.parameters():
                            p.add_(torch.randn(p.shape, generator=gen) * 1e-4 * p.abs().mean())
                    return step(batch)
                engine.step = nudged
            return engine
        return build

    passed = sm.graph_check(noisy(factory(StandInGraph)), batches)
    assert passed["eager_rel_diff"] > 0 and passed["eager_update_rel_diff"] > 0 and passed["update_rel_diff"] == 0
    with pytest.raises(RuntimeError, match="eager against eager: [1-9]"):
        sm.graph_check(noisy(factory(DropsTheUpdate)), batches)


def test_fused_cells_that_failed_make_a_concurrent_tf32_plan():
    """A fused network that fails in the matrix would fail the window's training: concurrent tf32 processes."""
    failed = [{"name": f"fused {p} K=2", "pipeline": "fused", "precision": p, "k": 2, "status": "error",
               "error": "RuntimeError: cuDNN error: CUDNN_STATUS_NOT_SUPPORTED"} for p in ("tf32", "bf16")]
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import speed_matrix as sm
    single = [{"name": f"lsnc {p}", "pipeline": "lsnc", "precision": p, "k": 1, "status": "ok",
               "img_s_per_model": v} for p, v in (("tf32", 100), ("bf16", 200))]
    plan = sm.training_plan(failed + single, train_images=1000)
    assert (plan["mode"], plan["amp"], plan["k"], plan["tf32_twin"]) == ("concurrent", "none", 2, False)
    assert "fused bf16 K=2 failed (RuntimeError: cuDNN error" in plan["reasons"][-1], plan["reasons"]
    # a fused cell that only ran out of time says nothing about fusion: the default fused plan
    timed_out = [{**c, "status": "timeout"} for c in failed]
    assert sm.training_plan(timed_out + single, train_images=1000)["mode"] == "fused"


def test_the_training_log_says_when_a_graph_is_captured(tmp_path, monkeypatch):
    """`lsnc train`'s log names each epoch in which a graph was captured and its lr: in a GPU window's logs, the
    capture after the first lr decay (epoch 151 of the recipe) shows that the step took the new lr."""
    from lsnc.training import engine as engine_module
    from lsnc.training.loop import train
    init = engine_module.Engine.__init__

    def graphed(self, *args, **kwargs):   # the loop's engine, graphed through the CPU stand-in
        init(self, *args, **kwargs)
        self.graphed = GraphedStep(self, graph_factory=lambda: StandInGraph(self.optimizer),
                                   warmup_context=contextlib.nullcontext)

    monkeypatch.setattr(engine_module.Engine, "__init__", graphed)
    lines: list[str] = []
    train(TrainConfig(**BASE, delta=0.05, seed=0), tmp_path, progress=False, log=lines.append)
    assert [line for line in lines if "CUDA graph" in line] == [
        "epoch 1: CUDA graph(s) captured at lr 0.05 (1 captures in this process)",
        "epoch 3: CUDA graph(s) captured at lr 0.005 (2 captures in this process)"]
