"""The training objective, one SGD step and one epoch of SGD, for one network or K fused ones.

The loss is ``F.cross_entropy(logits, y, label_smoothing=δ)`` (δ = 0: cross-entropy), plus, for UFM-style
runs, the UFM penalties. The batch order of epoch e is a permutation drawn from a generator seeded by
(seed, e): nothing else random happens after initialisation, so a resumed run replays its epochs exactly on
a CPU (same thread count), and on a GPU with ``--deterministic``; without it cuDNN's autotuned and atomic
kernels differ from run to run in the last bits, so a resumed GPU run matches an uninterrupted one only to
within that noise.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import TrainConfig


class NonFiniteLoss(RuntimeError):
    pass


#: The incomplete last batch of an epoch is dropped (the paper's loaders).
DROP_LAST = True

#: :func:`epoch_seed` = (seed * EPOCH_SEED_STRIDE + epoch) mod EPOCH_SEED_MODULUS
EPOCH_SEED_STRIDE, EPOCH_SEED_MODULUS = 1_000_003, 2**63 - 1

#: How an epoch's batches are drawn (provenance.json's ``training.batches``, next to the code that does it).
BATCHES = {
    "drop_last": DROP_LAST,
    "order": "torch.randperm(N) from a CPU torch.Generator seeded with epoch_seed(seed, epoch) = "
             f"(seed * {EPOCH_SEED_STRIDE} + epoch) mod (2^63 - 1): a new permutation every epoch, the same on "
             "every device",
    "augmentation": "none (the stored tensors, normalized once when the data are loaded)",
}

#: The loss of one run on one batch, as :func:`objective` computes it (provenance.json's ``training.loss``).
LOSS = "F.cross_entropy(logits.float(), y, label_smoothing=delta), the mean over the batch"
UFM_LOSS = (LOSS + " + lambda_w/2 ||W||^2 + lambda_b/2 ||b||^2 + lambda_h/2 (N/B) sum_batch ||h_i||^2 "
            "(the UFM penalties, weight_decay 0)")


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s batch order: distinct per (seed, epoch), fixed so a resumed run replays it."""
    return (seed * EPOCH_SEED_STRIDE + epoch) % EPOCH_SEED_MODULUS


def ufm_penalty(classifier_weight: Tensor, classifier_bias: Tensor, feats: Tensor, cfg: TrainConfig,
                n_train: int) -> Tensor:
    """λ_W‖W‖²/2 + λ_b‖b‖²/2 + λ_H (N/B) Σ_batch ‖h_i‖²/2: an unbiased batch estimate of the UFM penalties."""
    feats = feats.float()
    return (cfg.lambda_w / 2 * classifier_weight.pow(2).sum() + cfg.lambda_b / 2 * classifier_bias.pow(2).sum()
            + cfg.lambda_h / 2 * (n_train / len(feats)) * feats.pow(2).sum())


def objective(logits: Tensor, feats: Tensor, y: Tensor, cfg: TrainConfig, classifier, n_train: int) -> Tensor:
    """One run's loss on one batch (the weights for the UFM penalty are the run's own classifier)."""
    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.delta)
    if cfg.ufm:
        loss = loss + ufm_penalty(classifier[0], classifier[1], feats, cfg, n_train)
    return loss


def autocast_for(cfg: TrainConfig, device: torch.device, cache_enabled: bool = True):
    """A fresh context manager per use: bf16 autocast, or nothing (fp32). A CUDA-graph capture needs the
    weight-cast cache off."""
    if cfg.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return contextlib.nullcontext()


def sgd_step(engine, batches: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list[Tensor]]:
    """One eager SGD step, every member on its own batch: the members' losses (a K-vector) and logits."""
    with engine.autocast():
        losses, logits = engine.losses(batches)
        total = losses.sum()
    engine.optimizer.zero_grad(set_to_none=True)
    total.backward()
    engine.optimizer.step()
    return losses.detach(), [lg.detach() for lg in logits]


def train_epoch(engine, epoch: int) -> list[dict[str, Any]]:
    """One epoch over every member's own batch order; returns each member's running loss and accuracy.
    ``engine.step`` is :func:`sgd_step` or its CUDA-graph replay (:mod:`.graphs`): the same arithmetic."""
    cfgs, device, k = engine.configs, engine.device, len(engine.configs)
    loss_sum = torch.zeros(k, device=device, dtype=torch.float64)
    correct = torch.zeros(k, device=device, dtype=torch.int64)
    seen = 0
    engine.net.train()
    streams = [d.train.batches(c.batch_size, shuffle=True, seed=epoch_seed(c.seed, epoch),
                                 drop_last=DROP_LAST)
               for c, d in zip(cfgs, engine.data)]
    for batches in zip(*streams):
        ys = [y for _, y in batches]
        losses, logits = engine.step(batches)
        loss_sum += losses.double() * len(ys[0])
        correct += torch.stack([(lg.argmax(1) == y).sum() for lg, y in zip(logits, ys)])
        seen += len(ys[0])
    engine.scheduler.step()
    means = (loss_sum / seen).tolist()
    accs = (correct.double() / seen).tolist()
    for cfg, m in zip(cfgs, means):
        if not math.isfinite(m):
            raise NonFiniteLoss(f"{cfg.name}: training loss became {m} in epoch {epoch}; lower --lr or check the data")
    return [{"train_loss_running": m, "train_acc_running": a} for m, a in zip(means, accs)]
