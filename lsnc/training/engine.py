"""What trains: one network, or K runs fused into one (:mod:`.fused`), with its SGD optimizer and lr schedule
(:func:`make_engine` picks it, or K networks on K CUDA streams, :mod:`.streams`).

Both cases expose the same small interface to the loop: ``step(batches)`` for one SGD step (eager, or replayed
from a CUDA graph with ``cuda_graphs``, :mod:`.graphs`), ``losses(batches)`` for the objective, ``member(k)`` for
evaluation, and per-member checkpoint states in the plain-model format, so a fused run's checkpoints are
ordinary run checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..config import ConfigError, TrainConfig, fields_with
from ..data import Dataset
from .fused import FusedNet
from .graphs import GraphedStep
from .prepare import build_net
from .step import BATCHES, LOSS, UFM_LOSS, autocast_for, objective, sgd_step

#: The fields fused runs may differ in: δ and seed (the role ``identity`` of lsnc.config.ROLES) and the run's name;
#: every other field (the setting, the execution and kernels, the folders, when to stop) is shared.
FUSABLE_FIELDS = (*fields_with("identity"), "name")


def check_fusable(cfgs: list[TrainConfig]) -> None:
    first = {k: v for k, v in cfgs[0].to_dict().items() if k not in FUSABLE_FIELDS}
    for c in cfgs[1:]:
        diff = sorted(k for k, v in c.to_dict().items() if k not in FUSABLE_FIELDS and first.get(k) != v)
        if diff:
            raise ConfigError(f"runs trained together may differ only in δ and seed; {c.name} also differs in "
                              f"{', '.join(diff)}. Train them in separate commands.")
    names = [c.name for c in cfgs]
    if len(set(names)) != len(names):
        raise ConfigError(f"runs trained together need distinct names; got {names}")


#: SGD param-group settings that say how the update runs on a device, not what it computes: chosen by
#: :func:`_optimizer` for the device at hand, never taken from a checkpoint.
OPTIMIZER_EXECUTION = ("fused", "foreach")


def _optimizer(params, cfg: TrainConfig, device: torch.device) -> torch.optim.SGD:
    # (UFM-style runs have weight_decay 0: the config refuses anything else, the penalties replace it.)
    kwargs: dict[str, Any] = {"lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay}
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.SGD(params, **kwargs)


def make_engine(cfgs: list[TrainConfig], data: list[Dataset], device: torch.device):
    """The engine that trains ``cfgs`` together: one network (one run, or K fused, :class:`Engine`), or K networks
    on K CUDA streams (``--together streams``, :class:`.streams.StreamedRuns`)."""
    if len(cfgs) > 1 and cfgs[0].together == "streams":
        from .streams import StreamedRuns
        return StreamedRuns(cfgs, data, device)
    return Engine(cfgs, data, device)


class Engine:
    def __init__(self, cfgs: list[TrainConfig], data: list[Dataset], device: torch.device):
        self.configs, self.data, self.device = cfgs, data, device
        nets = [build_net(c, d, device) for c, d in zip(cfgs, data)]
        self.fused = len(nets) > 1
        if self.fused:
            self.net = FusedNet(nets).to(device)
            if cfgs[0].channels_last and len(data[0].input_shape) == 3:
                self.net.to_channels_last()
        else:
            self.net = nets[0]
        cfg = cfgs[0]
        self.optimizer = _optimizer(self.net.parameters(), cfg, device)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=cfg.milestones,
                                                              gamma=cfg.gamma)
        self.step_fn = torch.compile(self.net) if cfg.compile else self.net
        self.num_classes = data[0].num_classes
        self.graphed = GraphedStep(self) if cfg.cuda_graphs else None

    def step(self, batches: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list[Tensor]]:
        """One SGD step of every member on its own batch: the losses (a K-vector) and logits, detached."""
        return self.graphed(batches) if self.graphed is not None else sgd_step(self, batches)

    def autocast(self, cache_enabled: bool = True):
        return autocast_for(self.configs[0], self.device, cache_enabled)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def graph_captures(self) -> int:
        """CUDA graphs captured so far (0 without ``--cuda-graphs``)."""
        return self.graphed.captures if self.graphed is not None else 0

    def _classifier(self, k: int) -> tuple[Tensor, Tensor]:
        head = self.net.body.classifier if self.fused else self.net.classifier
        return (head.weight[k], head.bias[k]) if self.fused else (head.weight, head.bias)

    def losses(self, batches: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list[Tensor]]:
        """Each member's loss on its own batch (a K-vector) and its logits."""
        if self.fused:
            logits, feats = self.step_fn(torch.stack([x for x, _ in batches]))
        else:
            logits, feats = self.step_fn(batches[0][0])
            logits, feats = logits.unsqueeze(0), feats.unsqueeze(0)
        losses = [objective(logits[k], feats[k], y, c, self._classifier(k), len(d.train))
                  for k, ((_, y), c, d) in enumerate(zip(batches, self.configs, self.data))]
        return torch.stack(losses), list(logits)

    def member(self, k: int) -> torch.nn.Module:
        """Run k's network as a plain model (for evaluation and snapshots)."""
        return self.net.member(k) if self.fused else self.net

    def describe(self, k: int) -> dict[str, Any]:
        """How run k trains, read from the objects built here (provenance.json's ``training``): the runs it trains
        with, its network, the optimizer's and the lr schedule's settings as torch holds them, its batches and
        loss. What config.json asked for, as the code carried it out."""
        cfg, net = self.configs[k], self.member(k)
        layers: dict[str, int] = {}
        for module in net.modules():
            own = len(list(module.parameters(recurse=False)))
            if own:
                layers[type(module).__name__] = layers.get(type(module).__name__, 0) + own
        groups = self.optimizer.param_groups
        return {
            "together": {"how": "fused" if self.fused else "alone", "runs": [c.name for c in self.configs]},
            "model": {"class": _qualname(net), "parameters": sum(p.numel() for p in net.parameters()),
                      "parameter_tensors": layers, "feature_dim": getattr(net, "feature_dim", None),
                      "classifier": repr(net.classifier)},
            "optimizer": {"class": _qualname(self.optimizer), "param_groups": [
                {"parameter_tensors": len(g["params"]),
                 **{key: v for key, v in g.items() if key not in ("params", "lr") and _plain(v)}} for g in groups]},
            "lr_schedule": {"class": _qualname(self.scheduler), "milestones": sorted(self.scheduler.milestones),
                            "gamma": self.scheduler.gamma, "stepped": "once per epoch, after it"},
            "batches": {"batch_size": cfg.batch_size, **BATCHES},
            "loss": UFM_LOSS if cfg.ufm else LOSS,
        }

    # ------------------------------------------------------------------ checkpoints, plain format per run

    def checkpoint_state(self, k: int) -> dict[str, Any]:
        if not self.fused:
            return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict()}
        return {"model": self.net.member_state_dict(k),
                "optimizer": self.net.member_optimizer_state(self.optimizer, k),
                "scheduler": self.scheduler.state_dict()}

    def load_checkpoint_state(self, k: int, state: dict[str, Any]) -> None:
        """Run k's network, momentum, lr and schedule from its checkpoint. How the optimizer runs (its
        :data:`OPTIMIZER_EXECUTION` settings) stays as :func:`_optimizer` chose it for this device, not as the
        checkpoint's device had it: a run begun on a CPU resumes on a GPU with fused SGD."""
        chosen = [{key: g[key] for key in OPTIMIZER_EXECUTION if key in g} for g in self.optimizer.param_groups]
        if self.fused:
            self.net.load_member_state_dict(k, state["model"])
            self.net.load_member_optimizer_state(self.optimizer, k, state["optimizer"])
            # the lr lives in the param groups (the scheduler only multiplies it at milestones)
            for group, saved in zip(self.optimizer.param_groups, state["optimizer"]["param_groups"]):
                group.update({key: v for key, v in saved.items() if key != "params"})
        else:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        for group, how in zip(self.optimizer.param_groups, chosen):
            group.update(how)
        self.scheduler.load_state_dict(state["scheduler"])


def _qualname(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _plain(value) -> bool:
    """A value JSON writes as it is (the optimizer's settings; not its tensors)."""
    return value is None or isinstance(value, (bool, int, float, str))
