"""Speed matrix for a short GPU window: images/s of a training step per pipeline, precision and fused K,
plus one full evaluation against a bare forward pass, all within a hard wall cap.

    python benchmarks/speed_matrix.py --data-root DIR [--width 64] [--batch-size 128] [--wall-s 90]
                                      [--skip compile cudagraph ...] [--cells NAME ...] --out-dir DIR

The whole training set is resident on the device (lsnc's load_dataset). Every cell times a few SGD steps
(ResNet, batch --batch-size, δ = 0.05) after --warmup untimed steps, on random batches gathered on the device;
the reference cell does the same through reference_pipeline.py (DataLoader workers, per-sample ToTensor and
Normalize, one-hot targets on the CPU, torch's default precision). Cells, in the order they run:

  lsnc fp32 / tf32 / bf16        one model, channels-last, eager (fp32 = TF32 off for matmuls and cuDNN), lsnc's
                                 own training step (lsnc.training.engine.Engine)
  reference                      the paper-style pipeline
  fused tf32 K=1,2,4,8, bf16 ... K models as one FusedNet (lsnc.training.fused), one forward/backward a step,
                                 through lsnc's Engine as `lsnc train` runs them (K = 1 is the plain network:
                                 the Engine fuses from K = 2, so K = 1 repeats the lsnc cell at that precision)
  evaluation                     lsnc evaluate_model on all train + test images (its second call: the first pays
                                 one-time costs) vs a bare forward pass without autograd; a third call timed in
                                 parts (train pass, test pass, metrics from the statistics), each pass against its
                                 own bare forward: where an evaluation's cost above the forward goes
  cudagraph check bf16/tf32 K=2  the graphed step against the eager one, same start and batches (losses, and
                                 parameters against the size of the update; a second eager run against the first
                                 beside it, the eager step's own noise); graphs are used only where it passed
  cudagraph bf16 / tf32 K=1,2,4  lsnc's --cuda-graphs step (lsnc.training.graphs): forward, backward and fused
                                 SGD of K fused models captured once, replayed
  streams check bf16/tf32 K=2    K networks on K CUDA streams, graphed (lsnc --together streams --cuda-graphs),
                                 against the same K stepped one after another eagerly on one stream (a missing
                                 stream wait would show here)
  streams bf16 / tf32 K=2,4      K separate networks, each its own captured step, replayed on its own CUDA stream
                                 so the GPU overlaps them (lsnc.training.streams)
  vmap tf32 K=4                  the other way to fuse: torch.func.functional_call + vmap (bench_fused.py)
  compile bf16 / tf32 / fp32     torch.compile (default mode) of the model, compile time in the warm-up

Each cell is failure-isolated: an exception (or the wall cap, enforced with SIGALRM) is recorded in the cell and
the matrix goes on; cells that no longer fit are recorded as skipped. After every cell the output folder gets
speed.json, speed.md (a readable table) and plan.env (the training set the results suggest, see
benchmarks/training_plan.py), so a process killed from outside still leaves what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_pipeline as ref  # noqa: E402
from bench_training import SGD_OPTIONS, bare_forward, sync, to_uint8_hwc  # noqa: E402
from training_plan import KS, plan_env, plan_text, training_plan  # noqa: E402,F401  (the plan rule's home; re-exported)

from lsnc.data import load_dataset  # noqa: E402
from lsnc.models import build_model  # noqa: E402
from lsnc.paths import resolve_data_root  # noqa: E402
from lsnc.config import TrainConfig  # noqa: E402
from lsnc.training.engine import make_engine  # noqa: E402
from lsnc.training.evaluate import evaluate_model  # noqa: E402
from lsnc.training.graphs import WARMUP as GRAPH_WARMUP  # noqa: E402
from lsnc.vocab import MAIN_DELTA  # noqa: E402

DELTA = MAIN_DELTA
FUSED_DELTAS = (0.0, 0.05, 0.1, 0.2)  # the members' δ in fused cells, cycled (costs do not depend on δ)
GRAPH_CHECK_RTOL = 1e-2  # ... and the graphed step's losses match the eager step's to this relative difference
GRAPH_CHECK_UPDATE = 0.1  # ... and its parameters differ from the eager step's by < this fraction of the update
GRAPH_KS = (1, 2, 4)
STREAM_KS = (2, 4)
MIN_SECONDS = {"compile": 15.0}  # a cell of this kind starts only with this much wall time left (others: 1 s)


class CellTimeout(BaseException):
    """Raised by SIGALRM inside a cell at the wall cap (a BaseException so library code does not swallow it)."""


@contextlib.contextmanager
def alarm(seconds: float):
    """Raise CellTimeout in the main thread after ``seconds`` (no-op where SIGALRM is unavailable)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise CellTimeout(f"stopped at the matrix wall cap ({seconds:.0f} s were left for this cell)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def set_precision(device: torch.device, mode: str) -> None:
    """fp32: TF32 off for matmuls and cuDNN; tf32 / bf16: TF32 on; default: torch's defaults (cuDNN TF32 on,
    matmul TF32 off), which is what the reference pipeline runs with. No effect off CUDA."""
    if device.type != "cuda":
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cuda.matmul.allow_tf32 = mode in ("tf32", "bf16")
        torch.backends.cudnn.allow_tf32 = mode != "fp32"


class Bench:
    """The data, the device and the settings shared by the cells."""

    def __init__(self, args, data, device):
        self.a, self.data, self.device = args, data, device
        self.K = data.num_classes
        self.B = args.batch_size
        self.n_steps = max(args.warmup, GRAPH_WARMUP + 2) + args.steps  # graph cells warm up longer
        self.x = data.train.x.contiguous(memory_format=torch.channels_last) if data.train.x.ndim == 4 \
            else data.train.x
        self.y = data.train.y

    def model(self, seed: int = 0):
        torch.manual_seed(seed)
        m = build_model(self.a.model, self.K, self.data.input_shape, width=self.a.width).to(self.device)
        return m.to(memory_format=torch.channels_last) if self.x.ndim == 4 else m

    def sgd(self, params):
        kw = {"fused": True} if self.device.type == "cuda" else {}
        return torch.optim.SGD(params, **SGD_OPTIONS, **kw)

    def indices(self, *shape):
        g = torch.Generator().manual_seed(0)
        return torch.randint(len(self.y), (self.n_steps, *shape), generator=g).to(self.device)

    def timed(self, step, warmup: int | None = None) -> dict:
        """Run ``step(i)`` for the warm-up then the timed steps; seconds of each phase."""
        warmup = self.a.warmup if warmup is None else warmup
        t0 = time.perf_counter()
        for i in range(warmup):
            step(i)
        sync(self.device)
        t1 = time.perf_counter()
        for i in range(warmup, warmup + self.a.steps):
            step(i)
        sync(self.device)
        t2 = time.perf_counter()
        return {"warmup_s": t1 - t0, "timed_s": t2 - t1, "steps": self.a.steps}


def rates(timing: dict, batch: int, k: int = 1) -> dict:
    per_model = batch * timing["steps"] / timing["timed_s"]
    return {**timing, "img_s": per_model * k, "img_s_per_model": per_model}


# --------------------------------------------------------------------------- cells

def cell_lsnc(b: Bench, precision: str, compiled: bool = False) -> dict:
    """One model trained by lsnc's own step (``lsnc.training.engine.Engine``: the loss, autocast and fused SGD that
    ``lsnc train`` runs), eager or with the forward under torch.compile (``--compile``)."""
    return _engine_cell(b, precision, 1, compiled=compiled)


def _engine_cell(b: Bench, precision: str, k: int, graphs: bool = False, compiled: bool = False,
                 together: str = "fused") -> dict:
    """Images/s of lsnc's engine for ``k`` members (fused for k > 1, or on streams), each on its own batches."""
    set_precision(b.device, precision)
    engine = _engine(b, precision, k, graphs=graphs, compiled=compiled, together=together)
    idx = b.indices(k, b.B)
    step = lambda i: engine.step([(b.x[idx[i, j]], b.y[idx[i, j]]) for j in range(k)])  # noqa: E731
    out = rates(b.timed(step, warmup=max(b.a.warmup, GRAPH_WARMUP + 2) if graphs else None), b.B, k)
    if graphs:
        out["captures"] = engine.graph_captures
    return out


def _engine(b: Bench, precision: str, k: int, graphs: bool, compiled: bool = False, together: str = "fused"):
    """lsnc's own training engine (lsnc.training.engine.make_engine) for k members (fused for k > 1, or K
    networks on K streams) on the bench's data, stepping eagerly or replaying CUDA graphs (lsnc.training.graphs)."""
    cfgs = [TrainConfig(dataset=b.a.dataset, model=b.a.model, width=b.a.width, batch_size=b.B, seed=j,
                        delta=DELTA if k == 1 else FUSED_DELTAS[j % len(FUSED_DELTAS)],
                        amp="bf16" if precision == "bf16" else "none",
                        channels_last=b.x.ndim == 4, cuda_graphs=graphs, compile=compiled, together=together,
                        device=str(b.device)).resolved()
            for j in range(k)]
    return make_engine(cfgs, [b.data] * k, b.device)


def cell_cudagraph(b: Bench, precision: str, k: int) -> dict:
    """The whole training step (forward, backward, fused SGD) of k models captured as one CUDA graph and
    replayed: the library's ``--cuda-graphs`` path. Capture happens in the warm-up."""
    if b.device.type != "cuda":
        raise RuntimeError("CUDA graphs need a CUDA device")
    return _engine_cell(b, precision, k, graphs=True)


def cell_graph_check(b: Bench, precision: str, k: int, steps: int = 8, together: str = "fused") -> dict:
    """:func:`graph_check` of lsnc's engine for ``k`` fused models at ``precision`` on the bench's data; with
    ``together="streams"``, the K networks graphed on K streams against the same K stepped eagerly one after
    another on one stream."""
    if b.device.type != "cuda":
        raise RuntimeError("CUDA graphs need a CUDA device")
    set_precision(b.device, precision)
    idx = torch.randint(len(b.y), (steps, k, b.B), generator=torch.Generator().manual_seed(1)).to(b.device)
    batches = [[(b.x[idx[i, j]], b.y[idx[i, j]]) for j in range(k)] for i in range(steps)]

    def make(graphs):
        engine = _engine(b, precision, k, graphs, together=together)
        if together == "streams" and not graphs:
            engine.streams = None  # the reference: one run after another on the current stream
        return engine
    return graph_check(make, batches)


def cell_streams(b: Bench, precision: str, k: int) -> dict:
    """k separate networks, each its own captured step, replayed on its own CUDA stream (``lsnc train --together
    streams --cuda-graphs``): the GPU overlaps their kernels."""
    if b.device.type != "cuda":
        raise RuntimeError("CUDA graphs need a CUDA device")
    return _engine_cell(b, precision, k, graphs=True, together="streams")


def graph_check(make_engine, batches: list) -> dict:
    """The graphed step against the eager one: ``make_engine(graphs)`` from the same initialisation, the same
    batches (one list of per-member batches a step), eagerly twice and graphed once, across an lr milestone: before
    step ``milestone_step`` (the middle one) each engine's own lr schedule is stepped on to its next milestone, as
    epoch ends would, so the graphed engine captures a second graph at the new lr, as a run does at epoch 150 (a
    graph that kept the old lr goes on updating 10x too far). ``captures``: the graphs it captured.
    ``max_rel_diff``: the largest relative difference of the members' losses, graphed against eager, over the steps
    after the first capture;
    ``update_rel_diff``: ||θ_graphed − θ_eager|| / ||θ_eager − θ_0||, the parameters' difference against the size
    of the eager update itself (a graph that dropped the update or replayed a stale batch is near 1).
    ``eager_rel_diff`` / ``eager_update_rel_diff``: the same for the second eager run against the first, the
    run-to-run noise of the eager step itself (cuDNN's autotuned TF32 kernels are not bitwise reproducible, and SGD
    amplifies a difference within a few steps), reported beside the graph's so that a failed check can be read:
    a graph fault, or an eager step as far from itself. The graph passes when both of its differences are within
    GRAPH_CHECK_RTOL / GRAPH_CHECK_UPDATE; else it raises, naming both. (The limits do not widen with the noise:
    where eager runs end a whole update apart, a graph that dropped the update would pass too.)"""
    def flat(engine):
        return torch.cat([p.detach().float().flatten() for p in engine.net.parameters()])

    milestone_step = len(batches) // 2 + 1
    losses, params = [], []
    for graphs in (False, False, True):
        engine = make_engine(graphs)
        start = flat(engine)
        run = []
        for i, step in enumerate(batches):
            if i == milestone_step:
                _to_next_milestone(engine)
            run.append(engine.step(step)[0].clone())
        losses.append(torch.stack(run))
        params.append(flat(engine))
        captures = engine.graph_captures
        del engine
    after = slice(GRAPH_WARMUP, len(batches))

    def apart(i):  # (losses, parameters) of run i against the first eager run
        diff = ((losses[i][after] - losses[0][after]).abs() / losses[0][after].abs().clamp_min(1e-6)).max().item()
        update = ((params[i] - params[0]).norm() / (params[0] - start).norm().clamp_min(1e-12)).item()
        return diff, update

    (noise, noise_update), (diff, update) = apart(1), apart(2)
    if not (diff <= GRAPH_CHECK_RTOL and update <= GRAPH_CHECK_UPDATE):
        raise RuntimeError(f"graphed step differs from the eager one: losses by {diff:.2e} (limit "
                           f"{GRAPH_CHECK_RTOL:g}), parameters by {update:.2e} of the update (limit "
                           f"{GRAPH_CHECK_UPDATE:g}); eager against eager: {noise:.2e} and {noise_update:.2e}")
    return {"max_rel_diff": diff, "update_rel_diff": update, "eager_rel_diff": noise,
            "eager_update_rel_diff": noise_update, "check_steps": len(batches), "milestone_step": milestone_step,
            "captures": captures}


def _to_next_milestone(engine, most: int = 10_000) -> None:
    """Step the engine's lr schedule (once per epoch in training) until its lr changes."""
    lr = engine.lr
    for _ in range(most):
        engine.scheduler.step()
        if engine.lr != lr:
            return
    raise RuntimeError(f"the lr schedule has no milestone within {most} epochs")


def cell_fused(b: Bench, precision: str, k: int) -> dict:
    """k models fused into one network (``lsnc.training.fused``) and trained by lsnc's engine, as ``lsnc train``
    with several δ / seeds does."""
    return _engine_cell(b, precision, k)


def cell_vmap(b: Bench, precision: str, k: int) -> dict:
    """The other way to fuse: torch.func.functional_call over stacked parameters under vmap (bench_fused.py)."""
    from bench_fused import vmap_step
    set_precision(b.device, precision)
    idx = b.indices(k, b.B)
    step_all = vmap_step([b.model(seed) for seed in range(k)], b.x[idx[0]], b.y[idx[0]])
    return rates(b.timed(lambda i: step_all()), b.B, k)


def cell_reference(b: Bench, uint8: tuple) -> dict:
    set_precision(b.device, "default")
    model = b.model()
    model = model.to(memory_format=torch.contiguous_format)  # the reference runs the plain NCHW model
    opt = b.sgd(model.parameters())
    norm = b.data.description["normalization"]
    xs, ys = uint8
    g = torch.Generator().manual_seed(0)
    pick = torch.randint(len(ys), (b.n_steps * b.B,), generator=g).numpy()
    loader = ref.make_loader(xs[pick], ys[pick], norm["mean"], norm["std"], b.B, workers=b.a.workers)
    model.train()
    batches = {"it": iter(loader)}

    def step(i):
        x, y = next(batches["it"])
        ref.train_step(model, x, y, opt, b.K, DELTA, b.device)

    try:
        out = rates(b.timed(step), b.B)
    finally:
        batches.clear()   # the last reference to the iterator: its DataLoader workers stop
    out["note"] = f"DataLoader {b.a.workers} workers, torch default precision"
    return out


def cell_eval(b: Bench, precision: str) -> dict:
    set_precision(b.device, precision)
    model = b.model()
    bs, train, test = b.a.eval_batch_size, b.data.train, b.data.test
    if train.x.ndim == 4:
        train = type(train)(b.x, train.y)
        test = type(test)(test.x.contiguous(memory_format=torch.channels_last), test.y)
    t0 = time.perf_counter()
    bare_forward(model, [train, test], bs, b.device)  # warm-up: cuDNN autotuning for these shapes
    warm = time.perf_counter() - t0
    forward_s = bare_forward(model, [train, test], bs, b.device)
    # each pass's own floor, against the evaluation's parts below
    forward_train_s, forward_test_s = (bare_forward(model, [split], bs, b.device) for split in (train, test))

    def evaluate(phases=None):
        sync(b.device)
        t0 = time.perf_counter()
        evaluate_model(model, train.batches(bs), test.batches(bs), b.K, delta=DELTA, device=b.device, phases=phases)
        sync(b.device)
        return time.perf_counter() - t0
    # The first call also pays one-time costs (the float64 linear-algebra libraries load, kernels for the
    # accumulators' shapes): a training run pays them once, so the steady-state call is what is compared.
    first_s = evaluate()
    eval_s = evaluate()
    phases = {}
    evaluate(phases)  # a third call, its parts timed (their synchronizations stay out of eval_s)
    n = len(train) + len(test)
    return {"evaluate_s": eval_s, "bare_forward_s": forward_s, "eval_over_forward": eval_s / forward_s,
            "evaluate_first_s": first_s, "warmup_s": warm + first_s, "images": n, "eval_img_s": n / eval_s,
            "forward_img_s": n / forward_s, "eval_batch_size": bs, **phases,
            "forward_train_s": forward_train_s, "forward_test_s": forward_test_s}


# --------------------------------------------------------------------------- the matrix

def cell_plan(args) -> list[dict]:
    """Every cell: name, kind (for --skip), pipeline, precision, compile, cuda_graphs, k, and the call."""
    cells = []

    def add(name, kind, pipeline, precision, fn, k=1, compiled=False, graphs=False, together="fused"):
        cells.append({"name": name, "kind": kind, "pipeline": pipeline, "precision": precision, "k": k,
                      "compile": compiled, "cuda_graphs": graphs, "together": together, "fn": fn})

    def fused(p, ks):
        for k in ks:
            add(f"fused {p} K={k}", "fused", "fused", p, lambda b, p=p, k=k: cell_fused(b, p, k), k=k)

    def compiled(p):
        add(f"compile {p}", "compile", "lsnc", p, lambda b, p=p: cell_lsnc(b, p, compiled=True), compiled=True)

    # Ordered by what the training plan needs first; what the wall cap cuts is the least needed.
    for p in ("fp32", "tf32", "bf16"):
        add(f"lsnc {p}", "lsnc", "lsnc", p, lambda b, p=p: cell_lsnc(b, p))
    add("reference", "reference", "reference", "default", None)
    fused("tf32", args.ks)
    fused("bf16", [k for k in args.ks if k > 1])
    add("evaluation", "eval", "evaluation", "tf32", lambda b: cell_eval(b, "tf32"))
    for p in ("bf16", "tf32"):
        add(f"cudagraph check {p} K=2", "graphcheck", "check", p, lambda b, p=p: cell_graph_check(b, p, 2), k=2,
            graphs=True)
    for p in ("bf16", "tf32"):
        for k in [k for k in GRAPH_KS if k in args.ks]:
            add(f"cudagraph {p} K={k}", "cudagraph", "fused" if k > 1 else "lsnc", p,
                lambda b, p=p, k=k: cell_cudagraph(b, p, k), k=k, graphs=True)
    for p in ("bf16", "tf32"):
        add(f"streams check {p} K=2", "graphcheck", "check", p,
            lambda b, p=p: cell_graph_check(b, p, 2, together="streams"), k=2, graphs=True, together="streams")
        for k in [k for k in STREAM_KS if k in args.ks]:
            add(f"streams {p} K={k}", "streams", "streams", p, lambda b, p=p, k=k: cell_streams(b, p, k), k=k,
                graphs=True, together="streams")
    if 4 in args.ks:  # the other way to fuse, at one K of those asked for
        add("vmap tf32 K=4", "vmap", "vmap", "tf32", lambda b: cell_vmap(b, "tf32", 4), k=4)
    compiled("bf16")
    compiled("tf32")
    compiled("fp32")
    fused("bf16", [k for k in args.ks if k == 1])
    return cells


def run_cells(cells: list[dict], bench, deadline: float, records: list | None = None, on_update=lambda: None,
              log=print) -> list[dict]:
    """Run each cell within the wall cap, isolating failures; each cell's record is appended to ``records``
    before it runs (``on_update`` is called after each), and the list is returned."""
    records = [] if records is None else records
    for c in cells:
        rec = {k: v for k, v in c.items() if k != "fn"}
        records.append(rec)
        left = deadline - time.perf_counter()
        if c.get("skip"):
            rec.update(status="skipped", error=c["skip"])
        elif left < MIN_SECONDS.get(c["kind"], 1.0):
            rec.update(status="skipped", error=f"wall cap: {max(left, 0):.0f} s left")
        else:
            device = getattr(bench, "device", None)
            if device is not None and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            try:
                with alarm(left - 1.0):  # 1 s kept for the cleanup and the write-out
                    rec.update(c["fn"](bench))
                rec["status"] = "ok"
            except CellTimeout as e:
                rec.update(status="timeout", error=str(e))
            except Exception as e:  # noqa: BLE001 - a failing cell is a result, not the end of the matrix
                rec.update(status="error", error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                           if str(e).strip() else type(e).__name__)
                log(f"[speed] {c['name']} failed:\n{traceback.format_exc()}")
            rec["cell_s"] = time.perf_counter() - t0
            rec["max_mem_gb"] = None
            if device is not None and device.type == "cuda":
                with contextlib.suppress(Exception):
                    rec["max_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            cleanup(device, c.get("compile", False))
        log(f"[speed] {rec['name']}: {rec['status']}"
            + (f", {rec['img_s']:.0f} img/s" if "img_s" in rec else "")
            + (f" ({rec['error']})" if rec.get("error") else ""))
        on_update()
    return records


def cleanup(device, compiled: bool) -> None:
    gc.collect()
    if compiled:
        with contextlib.suppress(Exception):
            torch._dynamo.reset()
    if device is not None:
        set_precision(device, "default")
        if device.type == "cuda":
            with contextlib.suppress(Exception):
                torch.cuda.synchronize(device)
                torch.cuda.empty_cache()


def render_markdown(result: dict) -> str:
    r = result
    lines = [f"# Speed matrix: {r['model']}, batch {r['batch_size']}, {r['dataset']}",
             "",
             f"Device: {r['device']} ({r['platform']}); python {r['python']}, torch {r['torch']}"
             + (f", CUDA {r['cuda']}, cuDNN {r['cudnn']}" if r.get("cuda") else "") + ".",
             f"Training set resident on the device: {r['train_images']} train / {r['test_images']} test images "
             f"(loaded in {r['load_s']:.1f} s). Each cell: {r['warmup']} warm-up + {r['steps']} timed steps "
             f"(random batches, δ = {DELTA}); wall cap {r['wall_cap_s']:.0f} s, used {r.get('matrix_s', 0):.0f} s.",
             "fp32 = TF32 off, tf32 = TF32 matmuls and convolutions, bf16 = bf16 autocast (on CUDA; on a CPU fp32 "
             "and tf32 are the same). Reference: DataLoader + per-sample transforms, torch's default precision. "
             "K = models fused into one network (streams: K networks, each on its own CUDA stream); per model = "
             "all models / K.",
             "", "| cell | precision | K | img/s (all models) | img/s per model | vs reference | warm-up s | "
                 "peak GiB | status |",
             "|---|---|---|---|---|---|---|---|---|"]
    refc = next((c for c in r["cells"] if c["name"] == "reference" and c.get("status") == "ok"), None)
    for c in r["cells"]:
        if c["pipeline"] in ("evaluation", "check"):
            continue
        ok = c.get("status") == "ok"
        vs = f"{c['img_s_per_model'] / refc['img_s']:.2f}x" if ok and refc else ""
        warm = c.get("warmup_s", 0) + c.get("capture_s", 0)
        status = c.get("status", "?") + (f": {c['error']}" if c.get("error") else "")
        mem = f"{c['max_mem_gb']:.1f}" if c.get("max_mem_gb") is not None else ""
        cols = [f"{c['img_s']:.0f}", f"{c['img_s_per_model']:.0f}", vs, f"{warm:.1f}", mem] if ok else [""] * 5
        lines.append("| " + " | ".join([c["name"], c["precision"], str(c["k"]), *cols, status.replace("|", "/")])
                     + " |")
    lines.append("")
    lines += _result_line(r["cells"], "evaluation", "Full evaluation", lambda ev: (
        f"Full evaluation ({ev['images']} images, batch {ev['eval_batch_size']}, tf32): lsnc evaluate_model "
        f"{ev['evaluate_s']:.2f} s vs bare forward {ev['bare_forward_s']:.2f} s (evaluation / forward = "
        f"{ev['eval_over_forward']:.2f})" + (f"; its first call {ev['evaluate_first_s']:.2f} s"
                                             if "evaluate_first_s" in ev else "")
        + (f". Its parts (a call of their own): train pass {ev['train_pass_s']:.3f} s (bare forward "
           f"{ev['forward_train_s']:.3f}), test pass {ev['test_pass_s']:.3f} s (bare forward "
           f"{ev['forward_test_s']:.3f}), metrics from the statistics {ev['finalize_s']:.3f} s"
           if "finalize_s" in ev else "") + "."))
    lines += _result_line(r["cells"], "check", "CUDA-graph check", lambda c: (
        f"CUDA-graph check ({c['precision']}, K={c['k']}, {c['check_steps']} steps): graphed losses within "
        f"{c['max_rel_diff']:.1e} (relative) of the eager step's; parameters {c['update_rel_diff']:.1e} of the "
        "update apart" + (f" (eager against eager: {c['eager_rel_diff']:.1e} and {c['eager_update_rel_diff']:.1e})"
                          if "eager_rel_diff" in c else "") + "."))
    plan = r.get("plan")
    if plan:
        lines += ["", plan_text(plan)]
    elif r.get("cells_asked"):
        lines += ["", "Only the cells asked for (--cells): no training plan from them."]
    return "\n".join(lines) + "\n"


def _result_line(cells: list[dict], pipeline: str, title: str, text) -> list[str]:
    """The sentences for the cells of ``pipeline`` that are no training speed (one line each): ``text(cell)``
    when it ran, else its status; nothing when none is in the matrix."""
    return [text(c) if c.get("status") == "ok" else f"{title} ({c['name']}): {c.get('status')} {c.get('error', '')}"
            for c in cells if c["pipeline"] == pipeline]


def write_outputs(result: dict, out_dir: Path) -> None:
    """speed.json, speed.md and plan.env; a partial matrix (``--cells``: a window's check stage) gets no plan."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    if not result.get("cells_asked"):
        result["plan"] = training_plan(result["cells"], result.get("train_images"))
        files.append(("plan.env", plan_env(result["plan"])))
    for name, text in [("speed.json", json.dumps(result, indent=2, default=str)),
                       ("speed.md", render_markdown(result)), *files]:
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out_dir / name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cifar10-jpeg")
    p.add_argument("--data-root")
    p.add_argument("--train-per-class", type=int)
    p.add_argument("--test-per-class", type=int)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per cell (compile/capture happen here)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per cell")
    p.add_argument("--ks", type=int, nargs="+", default=list(KS), help="fused K values")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="reference DataLoader workers")
    p.add_argument("--wall-s", type=float, default=90.0, help="hard cap on the cells' total wall time")
    p.add_argument("--skip", nargs="*", default=[],
                   help="cell kinds to skip: lsnc reference fused eval graphcheck cudagraph streams vmap compile")
    p.add_argument("--cells", nargs="+", metavar="NAME",
                   help="run only the cells of these names (e.g. 'cudagraph check bf16 K=2'), in the order given: "
                        "what the wall cap cuts is the last")
    p.add_argument("--device", default="auto")
    p.add_argument("--out-dir", required=True)
    a = p.parse_args(argv)

    cells = cell_plan(a)
    if a.cells:
        unknown = sorted(set(a.cells) - {c["name"] for c in cells})
        if unknown:
            p.error(f"--cells: no cell named {', '.join(map(repr, unknown))} (with --ks {' '.join(map(str, a.ks))})")
        by_name = {c["name"]: c for c in cells}
        cells = [by_name[n] for n in dict.fromkeys(a.cells)]
    out = Path(a.out_dir)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    data = load_dataset(a.dataset, root=resolve_data_root(a.data_root), train_per_class=a.train_per_class,
                        test_per_class=a.test_per_class, device=device)
    sync(device)
    for c in cells:
        if c["kind"] in a.skip:
            c["skip"] = "skipped by --skip"
        elif c["kind"] in ("cudagraph", "graphcheck", "streams") and device.type != "cuda":
            c["skip"] = "CUDA graphs need a CUDA device"
        elif c["kind"] == "reference":
            norm = data.description["normalization"]
            uint8 = to_uint8_hwc(data.train, norm["mean"], norm["std"])
            c["fn"] = lambda b, uint8=uint8: cell_reference(b, uint8)
    load_s = time.perf_counter() - t0
    start = time.perf_counter()
    deadline = start + a.wall_s
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
              f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
              "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
              "cuda": torch.version.cuda if device.type == "cuda" else None,
              "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
              "dataset": data.label, "train_images": len(data.train), "test_images": len(data.test),
              "model": f"{a.model} width {a.width}", "batch_size": a.batch_size, "warmup": a.warmup,
              "steps": a.steps, "wall_cap_s": a.wall_s, "load_s": load_s, "cells": [],
              "cells_asked": a.cells or None}
    bench = Bench(a, data, device)

    def update():
        result["matrix_s"] = time.perf_counter() - start
        write_outputs(result, out)

    run_cells(cells, bench, deadline, records=result["cells"], on_update=update, log=lambda s: print(s, flush=True))
    update()
    print(render_markdown(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
