"""The loader: the registry of sources, a balanced seeded selection (holdout first), normalization on the device,
and the provenance description with fingerprints; ``fetch_dataset`` downloads ahead of the runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..paths import default_cache_dir, default_data_root
from .generated import _read_mnist1d, _read_synthetic
from .images import _read_cifar10_jpeg, _read_imagefolder
from .pool import DataError, Pool, Request
from .split import Dataset, Split
from .tinyimagenet import _read_tinyimagenet, prepare_tinyimagenet
from .torchvision_sets import _TORCHVISION, _read_torchvision


#: Options of :func:`load_dataset` that choose how the data are read, not which data: ``workers`` (image-folder
#: decoding processes) and ``cache`` (False: skip the decode cache). A run keeps them in its config's
#: ``read_options`` (an execution option), apart from ``data_options`` (what the data are).
READ_OPTIONS = ("workers", "cache")

DATASETS: dict[str, Callable[[Request], Pool]] = {
    "cifar10": _read_torchvision,
    "cifar100": _read_torchvision,
    "stl10": _read_torchvision,
    "tinyimagenet": _read_tinyimagenet,
    "imagefolder": _read_imagefolder,
    "cifar10-jpeg": _read_cifar10_jpeg,  # imagefolder with root defaulting to the shared offline copy
    "mnist1d": _read_mnist1d,
    "synthetic": _read_synthetic,
}
#: The sources whose reader draws the data from the run's seed (``Request.seed``); the others read files, or generate
#: them from options of their own (mnist1d's ``mnist1d_seed``).
SEEDED_SOURCES = frozenset({"synthetic"})
#: The sources made on the spot: they read no files, so a data root or a download means nothing for them.
GENERATED_SOURCES = frozenset({"mnist1d", "synthetic"})
#: The sources whose samples are vectors (the others give images, (C, H, W)): a ResNet cannot take them.
VECTOR_SOURCES = frozenset({"mnist1d"})


def seed_changes_data(name: str, train_per_class: int | None, test_per_class: int | None,
                      holdout_per_class: int) -> bool:
    """Whether :func:`load_dataset`'s ``seed`` changes the data it returns: it draws the balanced subsets and the
    held-out split, and seeded sources (:data:`SEEDED_SOURCES`) generate from it. Runs of other seeds may share one
    loaded copy where it does not."""
    return (name in SEEDED_SOURCES or train_per_class is not None or test_per_class is not None
            or holdout_per_class > 0)


def fetch_dataset(name: str, root: str | Path | None = None) -> None:
    """Download ``name`` into ``root`` (default: :func:`lsnc.paths.default_data_root`) unless it is there already:
    the official archives of CIFAR-10, CIFAR-100, STL-10 (through torchvision) and Tiny ImageNet. Other datasets
    have nothing to fetch. ``lsnc reproduce --download`` calls it once per dataset before any run starts, so
    runs trained side by side (or as SLURM jobs) never download into one folder at the same time."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid choices: {', '.join(sorted(DATASETS))}")
    if name == "tinyimagenet":
        prepare_tinyimagenet(root or default_data_root(), download=True)
    elif name in _TORCHVISION:
        _read_torchvision(Request(name, Path(root) if root is not None else None, True, None, None, None, 0, 0, {}))


# --------------------------------------------------------------------------- selection + normalization

def _check_count(value, what: str, minimum: int) -> None:
    if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum):
        raise DataError(f"{what} must be an integer >= {minimum} (or None for all), got {value!r}")


def _select(y: np.ndarray, classes: list[str], per_class: int | None, holdout: int, rng: np.random.Generator,
            split: str) -> tuple[np.ndarray, np.ndarray]:
    """Balanced random choice: returns (selected, held_out) sorted indices into the pool."""
    chosen, held = [], []
    for k, name in enumerate(classes):
        idx = np.flatnonzero(y == k)
        if holdout + (per_class or 0) > len(idx):
            ask = f"{split}_per_class={per_class}" + (f" + holdout_per_class={holdout}" if holdout else "")
            raise DataError(f"class '{name}' has only {len(idx)} {split} samples available, but {ask} were asked "
                            f"for; ask for at most {len(idx)} per class in total")
        if per_class is None and holdout == 0:
            chosen.append(idx)  # everything, in stored order
            continue
        perm = idx[rng.permutation(len(idx))]
        held.append(perm[:holdout])
        rest = perm[holdout:]
        chosen.append(rest if per_class is None else rest[:per_class])
    cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return cat(chosen), cat(held)


def _fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).data)
    h.update(np.ascontiguousarray(y.astype("<i8")).data)
    return h.hexdigest()


def _take(a, idx: np.ndarray) -> np.ndarray:
    # The full pool in order needs no gather (and stays memory-mapped until it is moved to the device).
    if isinstance(a, np.ndarray) and len(idx) == len(a):
        return a
    return a[idx]


def _to_split(x: np.ndarray, y: np.ndarray, mean, std, device) -> Split:
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)   # move the compact uint8 first
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    if xt.ndim == 4:
        # NHWC uint8 -> NCHW float32 in one copy, then (x/255 - mean)/std as (x - 255 mean)/(255 std).
        xt = xt.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        shape = (1, -1, 1, 1)
        m, s = m * 255.0, s * 255.0
    else:
        xt = xt.to(torch.float32, copy=True)
        shape = (1, -1)
    xt.sub_(m.float().view(shape).to(xt.device)).div_(s.float().view(shape).to(xt.device))
    return Split(xt, torch.tensor(y, dtype=torch.int64, device=device))


def _describe(name: str, label: str | None, pool: Pool, raw: dict, mean, std, seed: int, train: Split,
              given_options: dict, requested: dict) -> dict:
    """The dataset part of a run's provenance: source, copy note, subset sizes and counts, fingerprints."""
    return {
        "name": name,
        "label": label or pool.label,
        "source": pool.source,
        "copy_note": pool.copy_note,
        "classes": list(pool.classes),
        "num_classes": len(pool.classes),
        "seed": seed,
        "requested": requested,
        "pool_sizes": {"train": int(len(pool.train_y)), "test": int(len(pool.test_y))},
        "sizes": {k: int(len(y)) for k, (_, y) in raw.items()},
        "per_class_counts": {k: {c: int(n) for c, n in zip(pool.classes, np.bincount(y, minlength=len(pool.classes)))}
                             for k, (_, y) in raw.items()},
        "normalization": {"mean": [float(v) for v in mean], "std": [float(v) for v in std],
                          "formula": ("x = (uint8/255 - mean) / std per channel" if pool.train_x.dtype == np.uint8
                                      else "x = (x - mean) / std, statistics of the selected training subset")},
        "input_shape": list(train.x.shape[1:]),
        "stored_dtype": str(pool.train_x.dtype),
        "sha256": {k: _fingerprint(x, y) for k, (x, y) in raw.items()},
        "options": json.loads(json.dumps(given_options, default=str)),
        **pool.extra,
    }


def load_dataset(name: str, *, root: str | Path | None = None, download: bool = False,
                 train_per_class: int | None = None, test_per_class: int | None = None,
                 holdout_per_class: int = 0, seed: int = 0, device="cpu",
                 cache_dir: str | Path | None = None, **options) -> Dataset:
    """Load a dataset onto ``device``, normalized, as balanced seeded subsets.

    ``holdout_per_class`` samples per class are taken out of the training pool first (for temperature
    scaling), then ``train_per_class`` are drawn from the rest; ``test_per_class`` from the test pool.
    ``None`` = all. Options: ``label=`` (any dataset), ``cache=False`` (skip the decode cache),
    ``image_size=``/``workers=``/``mean=``/``std=`` (image folders), ``mnist1d_seed=`` and any
    ``mnist1d`` generator argument (mnist1d), ``num_classes``/``image_size``/``channels``/``noise``/
    ``n_train_per_class``/``n_test_per_class`` (synthetic).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid choices: {', '.join(sorted(DATASETS))}")
    _check_count(train_per_class, "train_per_class", 1)
    _check_count(test_per_class, "test_per_class", 1)
    _check_count(holdout_per_class, "holdout_per_class", 0)
    options = dict(options)
    given_options = dict(options)
    label = options.pop("label", None)
    use_cache = options.pop("cache", True)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    req = Request(name, Path(root) if root is not None else None, download, cache if use_cache else None,
                  train_per_class, test_per_class, holdout_per_class, int(seed), options)
    pool = DATASETS[name](req)
    if req.options:
        raise DataError(f"unknown option(s) {sorted(req.options)} for dataset {name!r}")

    tr_idx, ho_idx = _select(pool.train_y, pool.classes, train_per_class, holdout_per_class,
                             np.random.default_rng([int(seed), 1]), "train")
    te_idx, _ = _select(pool.test_y, pool.classes, test_per_class, 0, np.random.default_rng([int(seed), 2]), "test")
    raw = {"train": (_take(pool.train_x, tr_idx), _take(pool.train_y, tr_idx)),
           "test": (_take(pool.test_x, te_idx), _take(pool.test_y, te_idx))}
    if holdout_per_class:
        raw["holdout"] = (_take(pool.train_x, ho_idx), _take(pool.train_y, ho_idx))
    shapes = {k: x.shape[1:] for k, (x, _) in raw.items() if len(x)}
    if len(set(shapes.values())) > 1:
        raise DataError(f"the splits have different sample shapes {shapes}; for images pass image_size=S "
                        "to resize them all to S x S")

    mean, std = pool.mean, pool.std
    if mean is None:  # vectors: one scalar mean / std from the selected training subset
        xtr = raw["train"][0].astype(np.float64)
        mean, std = (float(xtr.mean()),), (float(xtr.std()),)
    splits = {k: _to_split(x, y, mean, std, device) for k, (x, y) in raw.items()}

    description = _describe(name, label, pool, raw, mean, std, int(seed), splits["train"], given_options,
                            {"train_per_class": train_per_class, "test_per_class": test_per_class,
                             "holdout_per_class": holdout_per_class})
    json.dumps(description)  # fail here, not in the caller's run log, if something is not serialisable
    return Dataset(name=name, label=label or pool.label, classes=list(pool.classes), train=splits["train"],
                   test=splits["test"], holdout=splits.get("holdout"), description=description)
