"""The contract between a dataset source and the loader: the request a reader gets, the pool of raw arrays it
returns (with the normalization statistics it declares), the one user-facing error, and the on-disk array cache."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..atomic import write_atomic

# The paper's normalization statistics (also used for STL-10 and the CIFAR-10 JPEG copy).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.247, 0.243, 0.261)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CACHE_VERSION = 1  # bump when the cached array layout changes


class DataError(Exception):
    """A user-facing data problem; the message names the problem and the fix."""


@dataclass
class Pool:
    """A reader's output: every sample of each split, before selection and normalization."""

    train_x: np.ndarray          # uint8 N x H x W x C, or float32 N x F
    train_y: np.ndarray          # int64
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    label: str
    source: str
    mean: tuple | None           # per channel; None = standardise with the selected training subset
    std: tuple | None
    copy_note: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Request:
    name: str
    root: Path | None
    download: bool
    cache_dir: Path | None       # None = caching disabled
    train_per_class: int | None
    test_per_class: int | None
    holdout_per_class: int
    seed: int
    options: dict                # readers pop what they use; leftovers are an error


# --------------------------------------------------------------------------- cache

def _cache_key(parts: dict) -> str:
    blob = json.dumps({**parts, "cache_version": CACHE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached(cache_dir: Path | None, prefix: str, parts: dict,
            build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return the arrays stored under the key of ``parts``, building and storing them on a miss.

    The cache is a torch ``.pt`` file loaded with ``mmap=True``: a hit costs almost nothing until the
    selected rows are read.
    """
    if cache_dir is None:
        return build()
    path = Path(cache_dir) / f"{prefix}-{_cache_key(parts)}.pt"
    if path.exists():
        try:
            stored = torch.load(path, mmap=True, weights_only=True)
            return {k: (v.numpy() if isinstance(v, torch.Tensor) else np.array(v))
                    for k, v in stored.items() if k != "_key"}
        except Exception:  # truncated / corrupt / unreadable: rebuild it below
            pass
    arrays = build()
    payload = {k: (torch.from_numpy(np.ascontiguousarray(v)) if v.dtype != np.str_ and v.dtype.kind != "U"
                   else [str(t) for t in v]) for k, v in arrays.items()}
    payload["_key"] = json.dumps(parts, sort_keys=True, default=str)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic: a reader never sees a half-written file; concurrent writers just race to os.replace.
        write_atomic(path, lambda tmp: torch.save(payload, tmp))
    except (OSError, RuntimeError) as e:
        # read-only or full (torch.save says RuntimeError): the arrays are built, so go on without the cache
        warnings.warn(f"the data cache {path.parent} cannot be written ({e}); continuing without it, so the data "
                      "will be read again next time. Set LSNC_CACHE to a writable folder.", stacklevel=2)
    return arrays

