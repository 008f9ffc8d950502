"""Training K models at once: K separate steps, one horizontally fused network, or torch.func + vmap.

    python benchmarks/bench_fused.py [--k 1 2 4] [--width 16] [--batch-size 128] [--steps 10] [--device auto]

For each K, the time of one SGD step of all K models (forward, loss, backward, optimizer) after warm-up:
- ``separate``: K ordinary models stepped one after another (what K processes sharing a device amount to);
- ``fused``: :class:`lsnc.training.fused.FusedNet` (grouped convolutions, one optimizer);
- ``vmap``: ``torch.func.functional_call`` over stacked parameters and buffers under ``torch.func.vmap``, with
  one manual SGD update on the stacked tensors.
Prints images/s per model and in aggregate (K * batch / step time). Measures speed only.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from bench_training import SGD_OPTIONS
from lsnc.models import build_model
from lsnc.training.fused import FusedNet
from lsnc.vocab import MAIN_DELTA


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, steps: int, device) -> float:
    for _ in range(2):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def _sgd(params):
    return torch.optim.SGD(params, **SGD_OPTIONS)


def separate_step(models, xs, ys):
    opts = [_sgd(m.parameters()) for m in models]

    def step():
        for m, o, x, y in zip(models, opts, xs, ys):
            loss = F.cross_entropy(m(x)[0], y, label_smoothing=MAIN_DELTA)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
    return step


def fused_step(models, xs, ys):
    net = FusedNet(models).to(xs.device)
    opt = _sgd(net.parameters())

    def step():
        logits, _ = net(xs)
        loss = sum(F.cross_entropy(logits[k], ys[k], label_smoothing=MAIN_DELTA) for k in range(len(models)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def vmap_step(models, xs, ys):
    from torch.func import functional_call, grad, stack_module_state, vmap
    params, buffers = stack_module_state([copy.deepcopy(m) for m in models])
    base = copy.deepcopy(models[0]).to("meta")
    momentum = {k: torch.zeros_like(v) for k, v in params.items()}

    def loss_fn(p, b, x, y):
        logits, _ = functional_call(base, (p, b), (x,))
        return F.cross_entropy(logits, y, label_smoothing=MAIN_DELTA)

    grads_of = vmap(grad(loss_fn), in_dims=(0, 0, 0, 0))

    def step():
        g = grads_of(params, buffers, xs, ys)
        with torch.no_grad():
            for k in params:
                d = g[k] + SGD_OPTIONS["weight_decay"] * params[k]
                momentum[k].mul_(SGD_OPTIONS["momentum"]).add_(d)
                params[k].sub_(SGD_OPTIONS["lr"] * momentum[k])
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--ways", nargs="+", default=["separate", "fused", "vmap"])
    a = p.parse_args(argv)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    print(f"ResNet-18 width {a.width}, batch {a.batch_size}, 32x32x3, device {device}, "
          f"{torch.get_num_threads()} threads; images/s per model (aggregate)")
    ways = {"separate": separate_step, "fused": fused_step, "vmap": vmap_step}
    for k in a.k:
        torch.manual_seed(0)
        models = [build_model("resnet18", 10, (3, 32, 32), width=a.width).to(device) for _ in range(k)]
        xs = torch.randn(k, a.batch_size, 3, 32, 32, device=device)
        ys = torch.randint(0, 10, (k, a.batch_size), device=device)
        cells = []
        for way in a.ways:
            try:
                sec = _timed(ways[way]([copy.deepcopy(m) for m in models], xs, ys), a.steps, device)
                cells.append(f"{way} {a.batch_size / sec:8.0f} ({k * a.batch_size / sec:8.0f})")
            except Exception as exc:  # a way that does not run here is reported, not fatal
                cells.append(f"{way} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
        print(f"K={k}: " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
