"""CIFAR-10, CIFAR-100 and STL-10 from their official archives, through torchvision."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..paths import default_data_root
from .pool import CIFAR_MEAN, CIFAR_STD, DataError, Pool, Request


_TORCHVISION = {
    # name: (class name, label, folder inside root, official URL)
    "cifar10": ("CIFAR10", "CIFAR-10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("CIFAR100", "CIFAR-100", "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "stl10": ("STL10", "STL-10", "stl10_binary", "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"),
}


def _read_torchvision(req: Request) -> Pool:
    import torchvision.datasets as tvd

    cls_name, label, folder, url = _TORCHVISION[req.name]
    root = Path(req.root or default_data_root()).expanduser().absolute()
    if not req.download and not (root / folder).is_dir():
        raise DataError(f"{label} not found: the files must be in {root / folder}/ (from {url}). Pass --download "
                        f"(download=True from Python) to fetch them, or --data-root (root= from Python) the folder "
                        f"that holds {folder}/.")
    cls = getattr(tvd, cls_name)
    splits = {}
    for split, kw in (("train", {"train": True}), ("test", {"train": False})):
        if req.name == "stl10":
            kw = {"split": split}
        try:
            ds = cls(str(root), download=req.download, **kw)
        except (RuntimeError, OSError) as e:  # torchvision: RuntimeError; no network: URLError, an OSError
            if req.download:
                raise DataError(f"downloading {label} into {root} failed ({e}); check network access") from e
            raise DataError(f"{label} files in {root / folder} are incomplete or corrupted ({e}); delete them and "
                            "pass --download (download=True from Python) to fetch them again") from e
        if req.name == "stl10":
            x = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1))  # N x 3 x 96 x 96 -> N x 96 x 96 x 3
            y = np.asarray(ds.labels, dtype=np.int64)
        else:
            x = np.asarray(ds.data, dtype=np.uint8)
            y = np.asarray(ds.targets, dtype=np.int64)
        splits[split] = (x, y, list(ds.classes))
    return Pool(splits["train"][0], splits["train"][1], splits["test"][0], splits["test"][1], splits["train"][2],
                label=label, source=f"torchvision.datasets.{cls_name} at {root / folder} (from {url})",
                mean=CIFAR_MEAN, std=CIFAR_STD)

