"""Low-dimensional views of the penultimate geometry at a few epochs (what collapse looks like).

At each snapshot epoch (:func:`snapshot_epochs`: start, early, middle and end, among the evaluated epochs), a
fixed set of training samples (the first :data:`SNAPSHOT_PER_CLASS` of each class, :func:`snapshot_indices`) is
passed through the model; their features, the class means of that set and the classifier rows are projected onto
the top-3 principal directions of the centred class means. Only these few coordinates are stored (the run
folder's ``snapshots.npz``), so a committed run stays small. ``lsnc.training.loop`` takes them while training;
fig1 draws them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .atomic import write_atomic


#: training samples per class in every snapshot
SNAPSHOT_PER_CLASS = 20


def snapshot_epochs(epochs: int, eval_epochs) -> set[int]:
    """The snapshot epochs of a run of ``epochs`` epochs: the evaluated epochs (``eval_epochs``) nearest the start,
    5 %, 20 %, 50 % and the end of training (none when nothing is evaluated)."""
    ev = list(eval_epochs or [])
    wanted = [0, epochs // 20, epochs // 5, epochs // 2, epochs]
    return {min(ev, key=lambda e: abs(e - w)) for w in wanted} if ev else set()


def samples_per_class(snapshots: dict[int, dict[str, np.ndarray]]) -> int | None:
    """How many training samples per class a run's stored snapshots hold (the largest class count; None when
    there are no snapshots)."""
    for snap in snapshots.values():
        return int(np.unique(snap["labels"], return_counts=True)[1].max())
    return None


def snapshot_indices(labels: torch.Tensor, per_class: int = SNAPSHOT_PER_CLASS) -> torch.Tensor:
    idx = [torch.nonzero(labels == k).flatten()[:per_class] for k in torch.unique(labels)]
    return torch.cat(idx)


@torch.no_grad()
def take_snapshot(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, *,
                  batch_size: int = 1024) -> dict[str, np.ndarray]:
    """The features of ``x`` (eval mode, in batches of ``batch_size``: a large K x 20 images would not fit a GPU in
    one) projected on the top 3 principal directions of their class means, with those means and the classifier rows
    on the same basis."""
    was_training = model.training
    model.eval()
    try:
        feats = torch.cat([model(x[i:i + batch_size])[1] for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
    h = feats.double().cpu()
    labels = y.cpu()
    means = torch.stack([h[labels == k].mean(0) for k in range(num_classes)])
    centre = means.mean(0)
    # Principal directions of the centred class means (at most K-1 carry signal).
    _, _, vt = torch.linalg.svd(means - centre, full_matrices=False)
    basis = vt[:3].T  # d x 3
    w = model.classifier.weight.detach().double().cpu()
    return {
        "features": ((h - centre) @ basis).numpy().astype(np.float32),
        "labels": labels.numpy().astype(np.int16),
        "means": ((means - centre) @ basis).numpy().astype(np.float32),
        # W rows are compared with the means up to scale: project them on the same basis.
        "classifier": (w @ basis).numpy().astype(np.float32),
    }


def save_snapshots(path: Path, snapshots: dict[int, dict[str, np.ndarray]]) -> None:
    arrays = {f"e{epoch}_{key}": value for epoch, snap in snapshots.items() for key, value in snap.items()}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    write_atomic(path, write)


def load_snapshots(path: str | Path) -> dict[int, dict[str, np.ndarray]]:
    out: dict[int, dict[str, np.ndarray]] = {}
    if not Path(path).exists():
        return out
    with np.load(path) as z:
        for key in z.files:
            epoch, name = key[1:].split("_", 1)
            out.setdefault(int(epoch), {})[name] = z[key]
    return dict(sorted(out.items()))
