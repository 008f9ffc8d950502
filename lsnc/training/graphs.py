"""The whole SGD step (forward, loss, backward, update) captured once as a CUDA graph, then replayed per batch.

On a fast GPU a ResNet-18 step at batch 128 is short enough that launching its few hundred kernels from Python
costs about as much as running them; a replayed graph launches them all at once. The step is the same
arithmetic as the eager step (:func:`.step.sgd_step`), on the same batches in the same order:

- the first ``WARMUP`` steps of a session run eagerly (on a side stream, as PyTorch's whole-network capture
  recipe asks: cuDNN autotuning, momentum buffers and gradients allocated); they are real steps of the run;
- the next step is captured (recorded, not run) on static input tensors, then replayed on its own batch;
- every later step copies its batch into the static inputs and replays.

A captured graph holds its constants: the learning rate is one, so a new graph is captured whenever the lr
changes (at each milestone). Gradients are written, not accumulated, by each replay. The graph reads and
writes the parameters, buffers and momentum in place, so evaluation, checkpoints and resume see the same
tensors as the eager step would.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from .step import sgd_step

__all__ = ["GraphedStep", "CudaGraph", "WARMUP"]

#: eager steps before the first capture
WARMUP = 3


class CudaGraph:
    """A torch.cuda.CUDAGraph behind two calls, ``capture(body)`` and ``replay()`` (tests pass a stand-in).

    Each graph is captured on a capture stream of its own (the next of PyTorch's pooled streams), not PyTorch's one
    shared capture stream: cuBLAS keeps its workspace per stream, so graphs captured on one stream would share it,
    and runs replaying their graphs at the same time on their own streams (:mod:`.streams`) would race in it. (The
    pool hands out 32 streams in turn: the runs of one set, captured one after another, get distinct ones.)"""

    def __init__(self):
        self.graph = torch.cuda.CUDAGraph()
        self.stream = torch.cuda.Stream()

    def capture(self, body) -> None:
        with torch.cuda.graph(self.graph, stream=self.stream):
            body()

    def replay(self) -> None:
        self.graph.replay()


@contextlib.contextmanager
def side_stream():
    """The context the eager warm-up steps run in: a side stream joined back to the current one."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream().wait_stream(side)


class GraphedStep:
    """``step(batches) -> (losses, logits)`` like :func:`.step.sgd_step`, replaying a captured graph.

    ``engine`` gives ``losses(batches)``, ``optimizer``, ``lr``, ``num_classes`` and ``autocast(cache_enabled)``
    (capture needs the weight-cast cache off). ``graph_factory`` and ``warmup_context`` are CUDA's; the tests
    pass CPU stand-ins. The returned tensors are the graph's static outputs: read them before the next step.
    """

    def __init__(self, engine, graph_factory=CudaGraph, warmup_context=side_stream):
        self.engine, self.graph_factory, self.warmup_context = engine, graph_factory, warmup_context
        self.steps = 0          # eager warm-up steps taken
        self.graph = None
        self.graph_lr: float | None = None
        self.captures = 0

    def __call__(self, batches: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list[Tensor]]:
        if self.steps < WARMUP:
            self.steps += 1
            with self.warmup_context():
                return sgd_step(self.engine, batches)
        if self.graph is None or self.graph_lr != self.engine.lr:
            self._capture(batches)
        else:
            for (sx, sy), (x, y) in zip(self.inputs, batches):
                sx.copy_(x)
                sy.copy_(y)
        self.graph.replay()
        return self.losses, self.logits

    def _capture(self, batches) -> None:
        engine = self.engine
        engine.optimizer.zero_grad(set_to_none=True)  # the old graph's gradients, then the graph itself, go
        self.graph = None                              # before a new one is recorded
        self.inputs = [(x.clone(), y.clone()) for x, y in batches]  # clone keeps channels-last
        k, b = len(batches), len(batches[0][1])
        num_classes = engine.num_classes
        device = batches[0][1].device
        self.losses = torch.zeros(k, device=device)
        self.logits = [torch.zeros(b, num_classes, device=device) for _ in range(k)]

        def body():
            # While recording, the grads are None: this records nothing, and backward allocates them in the
            # graph's memory, which each replay overwrites. (An eager stand-in replays it as a real zeroing.)
            engine.optimizer.zero_grad(set_to_none=False)
            with engine.autocast(cache_enabled=False):
                losses, logits = engine.losses(self.inputs)
                total = losses.sum()
            total.backward()
            engine.optimizer.step()
            self.losses.copy_(losses.detach())
            for out, lg in zip(self.logits, logits):
                out.copy_(lg.detach())

        graph = self.graph_factory()
        graph.capture(body)
        self.graph, self.graph_lr = graph, engine.lr
        self.captures += 1
