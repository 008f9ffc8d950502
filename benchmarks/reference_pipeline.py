"""A training/evaluation pipeline built the way the paper's code is built, used only as a speed baseline.

torchvision-style dataset (uint8 HWC arrays, one PIL image per sample), per-sample ToTensor + Normalize,
a DataLoader with worker processes, fp32, one-hot (smoothed) targets built on the CPU and moved each step,
and NC metrics from all features held in memory with a generic pseudo-inverse. Same model and data as lsnc.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from lsnc.calibration import ece_equal_width


class ArrayImageDataset(Dataset):
    """Like torchvision.datasets.CIFAR10: uint8 HWC arrays in memory, a PIL image and transform per sample."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, mean, std):
        self.images, self.labels = images_hwc, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def make_loader(images_hwc, labels, mean, std, batch_size=128, shuffle=True, workers=2, drop_last=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ArrayImageDataset(images_hwc, labels, mean, std), batch_size=batch_size, shuffle=shuffle,
                      num_workers=workers, drop_last=drop_last, generator=g, persistent_workers=False,
                      pin_memory=torch.cuda.is_available())


def smoothed_one_hot(labels: torch.Tensor, num_classes: int, delta: float) -> torch.Tensor:
    return F.one_hot(labels, num_classes).float() * (1 - delta) + delta / num_classes


def train_step(model, x, y, optimizer, num_classes, delta, device) -> None:
    """One SGD step on a CPU batch from the loader."""
    targets = smoothed_one_hot(y, num_classes, delta)  # built on the CPU, as the paper's code does
    x, targets = x.to(device), targets.to(device)
    logits, _ = model(x)
    loss = -(targets * F.log_softmax(logits, 1)).sum(1).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def train_epoch(model, loader, optimizer, num_classes, delta, device) -> int:
    model.train()
    seen = 0
    for x, y in loader:
        train_step(model, x, y, optimizer, num_classes, delta, device)
        seen += len(y)
    return seen


@torch.no_grad()
def collect(model, loader, device):
    model.eval()
    feats, logits, labels = [], [], []
    for x, y in loader:
        z, h = model(x.to(device))
        feats.append(h.cpu())
        logits.append(z.cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(logits), torch.cat(labels)


def evaluate(model, train_loader, test_loader, num_classes, device) -> dict:
    """All features held in memory, metrics by per-class loops and a generic pinv (see bench_metrics.py)."""
    from bench_metrics import plain_metrics
    H, _, y = collect(model, train_loader, device)
    W, b = model.classifier.weight.detach().cpu(), model.classifier.bias.detach().cpu()
    out = plain_metrics(H, y, W, b, num_classes)
    _, test_logits, test_y = collect(model, test_loader, device)
    probs = test_logits.softmax(1)
    conf, pred = probs.max(1)
    out["test_ece20"] = ece_equal_width(conf, (pred == test_y).double(), 20)
    out["test_accuracy"] = (pred == test_y).double().mean().item()
    return out
