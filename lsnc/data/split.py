"""What training sees: a split held on the device (normalized tensors, their batches) and the dataset of splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch


@dataclass
class Split:
    """One split held on the device: ``x`` normalized float32 (N x C x H x W or N x F), ``y`` int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def num_batches(self, batch_size: int, *, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int | None = None,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` batches.

        With ``shuffle`` the order is ``torch.randperm`` from a CPU generator seeded with ``seed``
        (the same on every device and torch build, so a resumed run can replay an epoch), then moved
        to the device; batches are gathered by indexing there. ``seed=None`` draws a fresh seed.
        Without ``shuffle`` batches are views in stored order.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        stop = n - n % batch_size if drop_last else n
        if not shuffle:
            for i in range(0, stop, batch_size):
                yield self.x[i:i + batch_size], self.y[i:i + batch_size]
            return
        g = torch.Generator()
        if seed is None:
            g.seed()
        else:
            g.manual_seed(int(seed))
        order = torch.randperm(n, generator=g).to(self.x.device)
        for i in range(0, stop, batch_size):
            idx = order[i:i + batch_size]
            yield self.x[idx], self.y[idx]


@dataclass
class Dataset:
    """A loaded dataset: its splits on the device (``holdout`` None without a held-out split), the class names in
    label order, the label results carry (``CIFAR-10 (JPEG copy)``) and the description provenance.json records."""

    name: str
    label: str
    classes: list[str]
    train: Split
    test: Split
    holdout: Split | None
    description: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.train.x.shape[1:])

