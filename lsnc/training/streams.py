"""K runs trained together as K separate networks, each SGD step of each run on its own CUDA stream.

The other way to train runs together (``--together streams``; :mod:`.fused` is the default). Each run keeps a
whole single-run :class:`.engine.Engine` of its own (network, fused SGD, lr schedule, and with ``--cuda-graphs``
its own captured graph): one step of the set issues every run's step on that run's stream, so the GPU can overlap
the runs' kernels where one run's small kernels leave it idle (a ResNet-18 step at batch 128 does). The arithmetic
of each run is exactly a separate run's: the same kernels on the same tensors, only interleaved with the others'.
On a CPU the steps run one after another.

Stream order: every run's stream waits for the work queued so far on the current stream (the batch gathered
there, and the reads of the previous step's outputs) before its step, and the current stream waits for every
run's stream after it, so the loop, evaluation and checkpoints see finished steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..config import TrainConfig
from ..data import Dataset
from .engine import Engine

__all__ = ["StreamedRuns"]


class _Schedulers:
    """The runs' lr schedules stepped together (they share the recipe, so they stay equal)."""

    def __init__(self, schedulers):
        self.schedulers = schedulers

    def step(self) -> None:
        for s in self.schedulers:
            s.step()


class StreamedRuns:
    """The engine interface of :class:`.engine.Engine` (``step``, ``member``, ``lr``, checkpoint states, ``net``
    and ``scheduler`` for the epoch loop) over K single-run engines, one CUDA stream each."""

    def __init__(self, cfgs: list[TrainConfig], data: list[Dataset], device: torch.device):
        self.configs, self.data, self.device = cfgs, data, device
        self.runs = [Engine([c], [d], device) for c, d in zip(cfgs, data)]
        self.net = torch.nn.ModuleList([r.net for r in self.runs])  # .train() / .parameters() of all K
        self.scheduler = _Schedulers([r.scheduler for r in self.runs])
        self.num_classes = data[0].num_classes
        self.streams = [torch.cuda.Stream(device) for _ in self.runs] if device.type == "cuda" else None

    @property
    def lr(self) -> float:
        return self.runs[0].lr

    def step(self, batches: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list[Tensor]]:
        """One SGD step of every run on its own batch (each on its stream): the losses (a K-vector) and logits."""
        if self.streams is None:
            results = [run.step([batch]) for run, batch in zip(self.runs, batches)]
        else:
            here = torch.cuda.current_stream(self.device)
            results = []
            for run, stream, (x, y) in zip(self.runs, self.streams, batches):
                stream.wait_stream(here)
                x.record_stream(stream)  # the batch was made on this stream; the run's stream reads it
                y.record_stream(stream)
                with torch.cuda.stream(stream):
                    results.append(run.step([(x, y)]))
            for stream in self.streams:
                here.wait_stream(stream)
        return torch.cat([losses for losses, _ in results]), [logits[0] for _, logits in results]

    def member(self, k: int) -> torch.nn.Module:
        return self.runs[k].net

    def describe(self, k: int) -> dict[str, Any]:
        """Run k's :meth:`.engine.Engine.describe`, trained beside the others on its own CUDA stream."""
        return {**self.runs[k].describe(0), "together": {"how": "streams", "runs": [c.name for c in self.configs]}}

    def checkpoint_state(self, k: int) -> dict[str, Any]:
        return self.runs[k].checkpoint_state(0)

    def load_checkpoint_state(self, k: int, state: dict[str, Any]) -> None:
        self.runs[k].load_checkpoint_state(0, state)

    @property
    def graph_captures(self) -> int:
        """CUDA graphs captured so far, all runs together (0 without ``--cuda-graphs``)."""
        return sum(r.graph_captures for r in self.runs)

