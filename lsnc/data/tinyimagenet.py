"""Tiny ImageNet: download (MD5-checked, SHA-256 recorded), val/ reorganised into class folders, read as an image tree."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..paths import default_data_root
from .images import read_image_tree
from .pool import IMAGENET_MEAN, IMAGENET_STD, DataError, Pool, Request

TINYIMAGENET_URL = "https://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


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
                            f"{TINYIMAGENET_URL}). Pass --download (download=True from Python) to fetch it, or "
                            "--data-root (root= from Python) the folder that holds tiny-imagenet-200/.")
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


def _check_complete(tiny: Path, classes: list[str], arrays: dict) -> None:
    """The class folders are those of wnids.txt, and every class has as many images as the others in each split
    (the archive is balanced: 500 train and 50 val images per class); anything else is a partial extraction."""
    listing = tiny / "wnids.txt"
    if not listing.is_file():
        raise DataError(f"{listing} is missing: {tiny} is not a whole extracted tiny-imagenet-200 archive; extract "
                        "the archive again")
    wnids = sorted(set(listing.read_text().split()))
    if classes != wnids:
        missing, extra = sorted(set(wnids) - set(classes)), sorted(set(classes) - set(wnids))
        raise DataError(f"{tiny}: the class folders differ from wnids.txt (missing: {missing[:10]}"
                        f"{' ...' if len(missing) > 10 else ''}; not in wnids.txt: {extra[:10]}); a partial or mixed "
                        "extraction: delete the folder and extract the archive again")
    for split, folder in (("train", "train"), ("test", "val")):
        counts = np.bincount(arrays[f"{split}_y"], minlength=len(classes))
        if counts.min() != counts.max():
            short = [f"{classes[k]} ({counts[k]})" for k in np.flatnonzero(counts < counts.max())[:10]]
            raise DataError(f"{tiny / folder}: classes have unequal image counts (most have {counts.max()}; "
                            f"fewer in {', '.join(short)}); a partial extraction: delete the folder and extract "
                            "the archive again")


def _read_tinyimagenet(req: Request) -> Pool:
    tiny = prepare_tinyimagenet(req.root or default_data_root(), req.download)
    image_size = req.options.pop("image_size", None)
    workers = req.options.pop("workers", None)
    # The official test/ has no labels, so the (reorganised) validation set is the test split.
    arrays, classes = read_image_tree(tiny, tiny / "train", tiny / "val", req.cache_dir, image_size, workers)
    _check_complete(tiny, classes, arrays)
    extra = {}
    if (tiny / "download.json").is_file():
        extra["download"] = json.loads((tiny / "download.json").read_text())
    words = tiny / "words.txt"
    if words.is_file():
        names = dict(line.split("\t", 1) for line in words.read_text().splitlines() if "\t" in line)
        extra["class_names"] = {c: names.get(c, c) for c in classes}
    return Pool(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], classes,
                label="Tiny ImageNet", source=f"{TINYIMAGENET_URL} extracted at {tiny} (test split = val/)",
                mean=IMAGENET_MEAN, std=IMAGENET_STD, extra=extra)

