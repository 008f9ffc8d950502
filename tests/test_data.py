"""Tests of lsnc.data on data made on the spot (plus a few images of the shared CIFAR-10 JPEG copy if present)."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lsnc.data as D
from lsnc.data import (CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, DataError, Split, fetch_dataset,
                       load_dataset, reorganize_tinyimagenet_val)

from lsnc.paths import shared_cifar10_jpeg_dir

SHARED_CIFAR = shared_cifar10_jpeg_dir()


def _pixel_image(cls: int, idx: int, size: int = 4) -> Image.Image:
    """A unique image: pixel (0,0) encodes the class, pixel (0,1) the index, the rest a constant."""
    a = np.full((size, size, 3), 100, np.uint8)
    a[0, 0] = (cls * 10, 1, 2)
    a[0, 1] = (idx, 3, 4)
    return Image.fromarray(a)


def make_tree(root: Path, classes=("cat", "ant", "bee"), n_train=6, n_test=3, fmt="png", size=4) -> Path:
    for split, n in (("train", n_train), ("test", n_test)):
        for k, c in enumerate(sorted(classes)):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _pixel_image(k, i, size).save(d / f"{i:04d}.{fmt}")
    return root


def ids(split: Split, mean, std) -> list[tuple[int, int]]:
    """(class, index) of every sample, read back from the normalized pixels."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    u = ((split.x * s + m) * 255).round().to(torch.int64)
    return [(int(a) // 10, int(b)) for a, b in zip(u[:, 0, 0, 0], u[:, 0, 0, 1])]


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


# --------------------------------------------------------------------------- image folders

def test_imagefolder_reads_tree_and_normalizes(tmp_path, cache):
    root = make_tree(tmp_path / "tree")
    ds = load_dataset("imagefolder", root=root, cache_dir=cache)
    assert ds.name == "imagefolder"
    assert ds.classes == ["ant", "bee", "cat"]  # alphabetical
    assert ds.num_classes == 3 and ds.input_shape == (3, 4, 4)
    assert len(ds.train) == 18 and len(ds.test) == 9 and ds.holdout is None
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert ds.train.x.is_contiguous()
    assert ds.label == "image folder tree"
    # generic image folders default to ImageNet statistics: x = (u/255 - mean)/std
    for c, v in enumerate((100, 100, 100)):
        assert ds.train.x[0, c, 2, 2].item() == pytest.approx((v / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-6)
    assert ds.train.x[0, 1, 0, 0].item() == pytest.approx((1 / 255 - IMAGENET_MEAN[1]) / IMAGENET_STD[1], abs=1e-6)
    # labels follow folder order, samples identifiable
    got = ids(ds.train, IMAGENET_MEAN, IMAGENET_STD)
    assert [k for k, _ in got] == ds.train.y.tolist()
    assert sorted(got) == [(k, i) for k in range(3) for i in range(6)]
    desc = ds.description
    json.dumps(desc)
    assert desc["sizes"] == {"train": 18, "test": 9}
    assert desc["per_class_counts"]["train"] == {"ant": 6, "bee": 6, "cat": 6}
    assert desc["normalization"]["mean"] == list(IMAGENET_MEAN)
    assert desc["input_shape"] == [3, 4, 4]
    assert len(desc["sha256"]["train"]) == 64 and desc["sha256"]["train"] != desc["sha256"]["test"]
    assert desc["source"] == str(root.absolute())


def test_imagefolder_custom_stats_label_and_jpeg(tmp_path, cache):
    root = make_tree(tmp_path / "jpg", fmt="jpg")
    ds = load_dataset("imagefolder", root=root, cache_dir=cache, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                      label="my set")
    assert ds.label == "my set" and ds.description["label"] == "my set"
    assert ds.description["options"]["mean"] == [0.5, 0.5, 0.5]
    assert ds.train.x.min() >= -1 and ds.train.x.max() <= 1


def test_cifar10_jpeg_copy_detected_from_readme(tmp_path, cache):
    root = make_tree(tmp_path / "copy")
    (root / "README.md").write_text("# CIFAR-10, offline copy (JPEG, image-folder layout)\n")
    ds = load_dataset("imagefolder", root=root, cache_dir=cache)
    assert ds.label == "CIFAR-10 (JPEG copy)"
    assert "JPEG" in ds.description["copy_note"]
    assert ds.description["normalization"]["mean"] == list(CIFAR_MEAN)
    assert ds.description["normalization"]["std"] == list(CIFAR_STD)
    assert ds.train.x[0, 2, 2, 2].item() == pytest.approx((100 / 255 - CIFAR_MEAN[2]) / CIFAR_STD[2], abs=1e-6)
    assert load_dataset("imagefolder", root=root, cache_dir=cache, label="other").label == "other"
    # a README.md that says nothing does not hide a README.txt that names the copy
    (root / "README.md").rename(root / "README.txt")
    (root / "README.md").write_text("notes\n")
    assert load_dataset("imagefolder", root=root, cache_dir=cache).label == "CIFAR-10 (JPEG copy)"


def test_a_folder_read_as_cifar10_jpeg_but_not_recognised_says_so(tmp_path, cache):
    """Given as cifar10-jpeg, a folder with no README naming the copy is normalized as CIFAR-10 (the name asks for
    it) but not labelled the copy; read as a plain image folder it keeps ImageNet's statistics."""
    root = make_tree(tmp_path / "elsewhere")
    ds = load_dataset("cifar10-jpeg", root=root, cache_dir=cache)
    assert ds.label.startswith("image folder elsewhere (read as cifar10-jpeg")
    assert "no README names it the CIFAR-10 JPEG copy" in ds.label and ds.description.get("copy_note") is None
    assert ds.description["normalization"]["mean"] == list(CIFAR_MEAN)
    plain = load_dataset("imagefolder", root=root, cache_dir=cache)
    assert plain.label == "image folder elsewhere" and plain.description["normalization"]["mean"] == list(IMAGENET_MEAN)


def test_fetch_dataset_refuses_an_unknown_name():
    with pytest.raises(DataError, match="unknown dataset 'cifar-10'; valid choices: cifar10, cifar10-jpeg"):
        fetch_dataset("cifar-10")


def test_cache_hit_skips_decoding_and_tree_change_misses(tmp_path, cache, monkeypatch):
    root = make_tree(tmp_path / "tree")
    calls = []
    real = D.images._decode_files
    monkeypatch.setattr(D.images, "_decode_files", lambda paths, **kw: calls.append(len(paths)) or real(paths, **kw))
    a = load_dataset("imagefolder", root=root, cache_dir=cache)
    assert calls == [18, 9]
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # no temp file left behind
    mtime = files[0].stat().st_mtime_ns
    b = load_dataset("imagefolder", root=root, cache_dir=cache, train_per_class=2, seed=3)
    assert calls == [18, 9]  # second load: no decoding, any subset served from the cache
    assert files[0].stat().st_mtime_ns == mtime
    assert torch.equal(load_dataset("imagefolder", root=root, cache_dir=cache).train.x, a.train.x)
    assert len(b.train) == 6
    _pixel_image(0, 99).save(root / "train" / "ant" / "0099.png")  # file list changed -> new key
    c = load_dataset("imagefolder", root=root, cache_dir=cache)
    assert calls == [18, 9, 19, 9] and len(c.train) == 19
    assert len(list(cache.iterdir())) == 2
    # an image replaced by another of the same size (same names, same sizes): a new key too
    target = root / "train" / "ant" / "0099.png"
    size, stamp = target.stat().st_size, target.stat().st_mtime_ns
    _pixel_image(0, 98).save(target)
    assert target.stat().st_size == size
    os.utime(target, ns=(stamp + 10**9, stamp + 10**9))
    d = load_dataset("imagefolder", root=root, cache_dir=cache)
    assert calls == [18, 9, 19, 9, 19, 9] and not torch.equal(d.train.x, c.train.x)


def test_corrupt_cache_is_rebuilt(tmp_path, cache):
    root = make_tree(tmp_path / "tree")
    a = load_dataset("imagefolder", root=root, cache_dir=cache)
    (f,) = cache.iterdir()
    f.write_bytes(b"garbage")
    b = load_dataset("imagefolder", root=root, cache_dir=cache)
    assert torch.equal(a.train.x, b.train.x)


def test_no_cache_decodes_only_selected(tmp_path, cache, monkeypatch):
    root = make_tree(tmp_path / "tree")
    calls = []
    real = D.images._decode_files
    monkeypatch.setattr(D.images, "_decode_files", lambda paths, **kw: calls.append(len(paths)) or real(paths, **kw))
    ds = load_dataset("imagefolder", root=root, cache_dir=cache, cache=False, train_per_class=2, test_per_class=1)
    assert sorted(calls) == [3, 6] and not cache.exists()
    ref = load_dataset("imagefolder", root=root, cache_dir=cache, train_per_class=2, test_per_class=1)
    assert torch.equal(ds.train.x, ref.train.x) and ds.description["sha256"] == ref.description["sha256"]


def test_parallel_decode_matches_serial(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "tree", n_train=10)
    paths = sorted(str(p) for p in (root / "train").rglob("*.png"))
    serial = D.images._decode_files(paths, workers=1)
    monkeypatch.setattr(D.images, "_PARALLEL_MIN_FILES", 1)
    assert np.array_equal(D.images._decode_files(paths, workers=2), serial)
    assert serial.shape == (30, 4, 4, 3) and serial.dtype == np.uint8


def test_nested_files_and_non_images_ignored(tmp_path, cache):
    root = make_tree(tmp_path / "tree")
    (root / "train" / "ant" / "boxes.txt").write_text("not an image")
    sub = root / "train" / "ant" / "images"
    sub.mkdir()
    _pixel_image(0, 50).save(sub / "x.png")
    ds = load_dataset("imagefolder", root=root, cache_dir=cache)
    assert ds.description["per_class_counts"]["train"]["ant"] == 7


@pytest.mark.parametrize("breakage, message", [
    ("no_test", "no test/ folder"),
    ("empty_class", "holds no image files"),
    ("class_mismatch", "different class folders"),
    ("no_classes", "no class folders"),
])
def test_malformed_imagefolder(tmp_path, cache, breakage, message):
    root = make_tree(tmp_path / "tree")
    import shutil
    if breakage == "no_test":
        shutil.rmtree(root / "test")
    elif breakage == "empty_class":
        (root / "train" / "dog").mkdir()
        (root / "test" / "dog").mkdir()
        _pixel_image(0, 0).save(root / "test" / "dog" / "a.png")
    elif breakage == "class_mismatch":
        shutil.rmtree(root / "test" / "bee")
    elif breakage == "no_classes":
        shutil.rmtree(root / "test")
        (root / "test").mkdir()
    with pytest.raises(DataError, match=message):
        load_dataset("imagefolder", root=root, cache_dir=cache)


def test_imagefolder_missing_root_and_mixed_sizes(tmp_path, cache):
    with pytest.raises(DataError, match="needs --data-root"):
        load_dataset("imagefolder", cache_dir=cache)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagefolder", root=tmp_path / "nope", cache_dir=cache)
    root = make_tree(tmp_path / "tree")
    _pixel_image(0, 7, size=6).save(root / "train" / "ant" / "0007.png")
    with pytest.raises(DataError, match="image_size"):
        load_dataset("imagefolder", root=root, cache_dir=cache)
    ds = load_dataset("imagefolder", root=root, cache_dir=cache, image_size=5)
    assert ds.input_shape == (3, 5, 5)


# --------------------------------------------------------------------------- subsets

def test_subsets_balanced_seeded_and_holdout_disjoint(tmp_path, cache):
    root = make_tree(tmp_path / "tree", n_train=10, n_test=5)
    kw = dict(root=root, cache_dir=cache, train_per_class=4, test_per_class=2, holdout_per_class=3)
    a = load_dataset("imagefolder", seed=1, **kw)
    b = load_dataset("imagefolder", seed=1, **kw)
    c = load_dataset("imagefolder", seed=2, **kw)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.holdout.x, b.holdout.x)
    assert a.description["sha256"] == b.description["sha256"]
    assert not torch.equal(a.train.x, c.train.x)
    assert a.description["sha256"]["train"] != c.description["sha256"]["train"]
    for split, n in ((a.train, 4), (a.test, 2), (a.holdout, 3)):
        assert torch.bincount(split.y, minlength=3).tolist() == [n] * 3
    tr, ho = set(ids(a.train, IMAGENET_MEAN, IMAGENET_STD)), set(ids(a.holdout, IMAGENET_MEAN, IMAGENET_STD))
    assert len(tr) == 12 and len(ho) == 9 and not tr & ho
    assert a.description["sizes"] == {"train": 12, "test": 6, "holdout": 9}
    assert a.description["per_class_counts"]["holdout"] == {"ant": 3, "bee": 3, "cat": 3}
    # holdout with all of the remaining training pool
    d = load_dataset("imagefolder", root=root, cache_dir=cache, holdout_per_class=3, seed=1)
    assert len(d.train) == 21 and not set(ids(d.train, IMAGENET_MEAN, IMAGENET_STD)) & set(
        ids(d.holdout, IMAGENET_MEAN, IMAGENET_STD))
    # the holdout does not depend on train_per_class
    e = load_dataset("imagefolder", root=root, cache_dir=cache, holdout_per_class=3, train_per_class=2, seed=1)
    assert torch.equal(e.holdout.x, d.holdout.x)


def test_subset_too_large_names_available_count(tmp_path, cache):
    root = make_tree(tmp_path / "tree", n_train=5)
    with pytest.raises(DataError, match="class 'ant' has only 5 train"):
        load_dataset("imagefolder", root=root, cache_dir=cache, train_per_class=6)
    with pytest.raises(DataError, match="has only 5 train.*holdout_per_class=2"):
        load_dataset("imagefolder", root=root, cache_dir=cache, train_per_class=4, holdout_per_class=2)
    with pytest.raises(DataError, match="has only 3 test"):
        load_dataset("imagefolder", root=root, cache_dir=cache, test_per_class=4)
    with pytest.raises(DataError, match="train_per_class must be an integer"):
        load_dataset("imagefolder", root=root, cache_dir=cache, train_per_class=0)


# --------------------------------------------------------------------------- batches

def test_batches_shuffle_reproducible_permutation_and_drop_last():
    x = torch.arange(10, dtype=torch.float32).view(10, 1)
    s = Split(x, torch.arange(10))
    plain = list(s.batches(4))
    assert [len(b[1]) for b in plain] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in plain]), torch.arange(10))
    assert [len(b[1]) for b in s.batches(4, drop_last=True)] == [4, 4]
    assert s.num_batches(4) == 3 and s.num_batches(4, drop_last=True) == 2
    one = torch.cat([b[1] for b in s.batches(3, shuffle=True, seed=7)])
    two = torch.cat([b[1] for b in s.batches(3, shuffle=True, seed=7)])
    other = torch.cat([b[1] for b in s.batches(3, shuffle=True, seed=8)])
    assert torch.equal(one, two) and not torch.equal(one, other)
    assert sorted(one.tolist()) == list(range(10))
    # x and y stay paired, and the order is torch.randperm of a CPU generator seeded with seed
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(7))
    assert torch.equal(one, expected)
    for bx, by in s.batches(3, shuffle=True, seed=7):
        assert torch.equal(bx.view(-1).long(), by)
    dropped = [b[1] for b in s.batches(4, shuffle=True, seed=7, drop_last=True)]
    assert [len(b) for b in dropped] == [4, 4] and torch.equal(torch.cat(dropped), expected[:8])
    assert sorted(torch.cat([b[1] for b in s.batches(4, shuffle=True)]).tolist()) == list(range(10))
    with pytest.raises(ValueError):
        next(s.batches(0))


# --------------------------------------------------------------------------- synthetic / mnist1d

def test_synthetic_deterministic(cache):
    a = load_dataset("synthetic", seed=5, train_per_class=10, test_per_class=4, cache_dir=cache)
    b = load_dataset("synthetic", seed=5, train_per_class=10, test_per_class=4, cache_dir=cache)
    c = load_dataset("synthetic", seed=6, train_per_class=10, test_per_class=4, cache_dir=cache)
    assert a.name == "synthetic" and a.label == "synthetic Gaussian mixture"
    assert a.num_classes == 4 and a.input_shape == (3, 8, 8)
    assert len(a.train) == 40 and len(a.test) == 16
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)
    assert a.description["stored_dtype"] == "uint8"
    # stored as uint8: every value is (k/255 - 0.5)/0.25 for an integer k
    k = (a.train.x * 0.25 + 0.5) * 255
    assert torch.allclose(k, k.round(), atol=1e-3)
    # class means differ much more than the within-class spread
    mu = torch.stack([a.train.x[a.train.y == i].mean(0) for i in range(4)]).flatten(1)
    assert torch.cdist(mu, mu)[~torch.eye(4, dtype=bool)].min() > 5
    d = load_dataset("synthetic", num_classes=3, image_size=5, channels=1, holdout_per_class=2,
                     train_per_class=3, cache_dir=cache)
    assert d.input_shape == (1, 5, 5) and len(d.holdout) == 6 and len(d.train) == 9


def test_mnist1d_generated_offline_and_cached(cache, monkeypatch):
    np.random.seed(123)
    random.seed(123)
    before = np.random.get_state()[1].copy(), random.getstate()
    ds = load_dataset("mnist1d", cache_dir=cache)
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    assert ds.label == "MNIST-1D" and ds.num_classes == 10
    assert len(ds.train) == 4000 and len(ds.test) == 1000 and ds.input_shape == (40,)
    assert abs(ds.train.x.mean().item()) < 1e-4 and abs(ds.train.x.std().item() - 1) < 1e-3
    assert torch.bincount(ds.train.y, minlength=10).min() > 300
    json.dumps(ds.description)
    assert len(list(cache.glob("mnist1d-*.pt"))) == 1
    import mnist1d.data
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda *a, **k: pytest.fail("cache not used"))
    again = load_dataset("mnist1d", cache_dir=cache, train_per_class=20, test_per_class=5, holdout_per_class=10)
    assert len(again.train) == 200 and len(again.holdout) == 100 and len(again.test) == 50
    # standardised with the statistics of the selected training subset
    assert abs(again.train.x.mean().item()) < 1e-4
    assert again.description["normalization"]["mean"] != ds.description["normalization"]["mean"]


# --------------------------------------------------------------------------- torchvision / Tiny ImageNet

@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                          ("stl10", "stl10_binary")])
def test_torchvision_missing_files_without_download(tmp_path, cache, name, folder):
    with pytest.raises(DataError, match="--download") as e:
        load_dataset(name, root=tmp_path, cache_dir=cache)
    assert str(tmp_path / folder) in str(e.value)


def test_torchvision_corrupt_files_without_download(tmp_path, cache):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="corrupted"):
        load_dataset("cifar10", root=tmp_path, cache_dir=cache)


def test_torchvision_download_without_network_is_a_clean_error(tmp_path, cache, monkeypatch):
    """No network: torchvision raises URLError (an OSError, not a RuntimeError); it must become a DataError."""
    import urllib.error

    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(DataError, match="downloading CIFAR-10 .* failed .*check network access"):
        load_dataset("cifar10", root=tmp_path, download=True, cache_dir=cache)
    with pytest.raises(DataError, match="check network access"):
        fetch_dataset("cifar10", tmp_path)
    fetch_dataset("synthetic", tmp_path)  # nothing to fetch: no error, nothing written
    assert not any(tmp_path.iterdir())


def make_fake_tiny(root: Path, wnids=("n02", "n01", "n03"), per_class_train=4, per_class_val=2) -> Path:
    tiny = root / "tiny-imagenet-200"
    (tiny / "val" / "images").mkdir(parents=True)
    (tiny / "test" / "images").mkdir(parents=True)
    (tiny / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (tiny / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    lines = []
    for k, w in enumerate(sorted(wnids)):
        d = tiny / "train" / w / "images"
        d.mkdir(parents=True)
        (tiny / "train" / w / f"{w}_boxes.txt").write_text("boxes")
        for i in range(per_class_train):
            _pixel_image(k, i, 8).convert("L" if i == 0 else "RGB").save(d / f"{w}_{i}.JPEG", format="JPEG")
        for i in range(per_class_val):
            name = f"val_{k * per_class_val + i}.JPEG"
            _pixel_image(k, i, 8).save(tiny / "val" / "images" / name, format="JPEG")
            lines.append(f"{name}\t{w}\t0\t0\t7\t7")
    (tiny / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    _pixel_image(0, 0, 8).save(tiny / "test" / "images" / "test_0.JPEG", format="JPEG")
    return tiny


def test_tinyimagenet_val_reorganisation_idempotent(tmp_path):
    tiny = make_fake_tiny(tmp_path)
    assert reorganize_tinyimagenet_val(tiny) == 6
    assert not (tiny / "val" / "images").exists()
    assert sorted(p.name for p in (tiny / "val").iterdir()) == ["n01", "n02", "n03", "val_annotations.txt"]
    assert sorted(p.name for p in (tiny / "val" / "n02").iterdir()) == ["val_2.JPEG", "val_3.JPEG"]
    assert reorganize_tinyimagenet_val(tiny) == 0  # second run: nothing to do
    # resume after an interruption: one file still in images/
    (tiny / "val" / "images").mkdir()
    (tiny / "val" / "n03" / "val_4.JPEG").rename(tiny / "val" / "images" / "val_4.JPEG")
    assert reorganize_tinyimagenet_val(tiny) == 1 and (tiny / "val" / "n03" / "val_4.JPEG").exists()
    (tiny / "val" / "n03" / "val_4.JPEG").unlink()
    with pytest.raises(DataError, match="re-extract"):
        reorganize_tinyimagenet_val(tiny)


def test_tinyimagenet_load_from_fake_tree(tmp_path, cache):
    make_fake_tiny(tmp_path)
    ds = load_dataset("tinyimagenet", root=tmp_path, cache_dir=cache, holdout_per_class=1)
    assert ds.label == "Tiny ImageNet" and ds.classes == ["n01", "n02", "n03"]
    assert len(ds.train) == 9 and len(ds.holdout) == 3 and len(ds.test) == 6
    assert ds.input_shape == (3, 8, 8)
    assert ds.description["normalization"]["mean"] == list(IMAGENET_MEAN)
    assert ds.description["class_names"]["n02"] == "thing n02"
    # root may also be the tiny-imagenet-200 folder itself
    again = load_dataset("tinyimagenet", root=tmp_path / "tiny-imagenet-200", cache_dir=cache, holdout_per_class=1)
    assert torch.equal(again.test.x, ds.test.x)


def test_tinyimagenet_partial_extraction_is_named(tmp_path, cache):
    tiny = make_fake_tiny(tmp_path)
    (tiny / "wnids.txt").write_text("n01\nn02\nn03\nn04\n")   # a class whose folders are missing
    with pytest.raises(DataError, match=r"differ from wnids.txt \(missing: \['n04'\].*extract the archive again"):
        load_dataset("tinyimagenet", root=tmp_path, cache_dir=cache)
    (tiny / "wnids.txt").write_text("n01\nn02\nn03\n")
    next((tiny / "train" / "n02" / "images").iterdir()).unlink()   # one image short
    with pytest.raises(DataError, match=r"train: classes have unequal image counts \(most have 4; fewer in n02 \(3\)"):
        load_dataset("tinyimagenet", root=tmp_path, cache_dir=cache)
    (tiny / "wnids.txt").unlink()
    with pytest.raises(DataError, match="wnids.txt is missing"):
        load_dataset("tinyimagenet", root=tmp_path, cache_dir=cache)


def test_tinyimagenet_missing_without_download(tmp_path, cache):
    with pytest.raises(DataError, match="--download"):
        load_dataset("tinyimagenet", root=tmp_path, cache_dir=cache)


# --------------------------------------------------------------------------- errors, defaults

def test_unknown_name_and_option(tmp_path, cache):
    with pytest.raises(DataError, match="valid choices: .*cifar10.*imagefolder.*mnist1d.*synthetic"):
        load_dataset("cifar11")
    with pytest.raises(DataError, match=r"unknown option\(s\) \['colour'\]"):
        load_dataset("synthetic", cache_dir=cache, colour=1)


def test_registry_and_default_cache_dir(monkeypatch, tmp_path):
    assert {"cifar10", "cifar100", "stl10", "tinyimagenet", "imagefolder", "mnist1d", "synthetic"} <= set(D.DATASETS)
    monkeypatch.setenv("LSNC_CACHE", str(tmp_path / "c"))
    from lsnc.paths import default_cache_dir
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LSNC_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "lsnc-data")


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason="shared CIFAR-10 JPEG copy not present")
def test_shared_cifar10_jpeg_copy_few_per_class(cache):
    ds = load_dataset("imagefolder", root=SHARED_CIFAR, cache=False, train_per_class=2, test_per_class=1,
                      cache_dir=cache)
    assert ds.label == "CIFAR-10 (JPEG copy)"
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert ds.input_shape == (3, 32, 32) and len(ds.train) == 20 and len(ds.test) == 10
    assert ds.description["normalization"]["mean"] == list(CIFAR_MEAN)
    assert -3 < ds.train.x.min() < ds.train.x.max() < 3
    assert load_dataset("cifar10-jpeg", cache=False, train_per_class=2, test_per_class=1).description["sha256"] \
        == ds.description["sha256"]


def test_unreadable_image_is_named(tmp_path, cache, monkeypatch):
    root = make_tree(tmp_path / "tree")
    (root / "train" / "bee" / "0002.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*0002.png"):
        load_dataset("imagefolder", root=root, cache_dir=cache)
    monkeypatch.setattr(D.images, "_PARALLEL_MIN_FILES", 1)  # the error also crosses the process pool
    with pytest.raises(DataError, match="cannot read image .*0002.png"):
        load_dataset("imagefolder", root=root, cache_dir=cache, workers=2)


def test_too_large_image_is_named(tmp_path, cache, monkeypatch):
    root = make_tree(tmp_path / "tree")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4)  # 4x4 images are then over twice the limit: PIL refuses
    with pytest.raises(DataError, match="image .*0000.png is too large to decode safely"):
        load_dataset("imagefolder", root=root, cache_dir=cache)


def test_symlink_loop_is_named(tmp_path, cache):
    root = make_tree(tmp_path / "tree")
    (root / "train" / "bee" / "again").symlink_to(root / "train")
    with pytest.raises(DataError, match=r"links back to .*\(a symlink loop\); remove the link"):
        load_dataset("imagefolder", root=root, cache_dir=cache)
    (root / "train" / "bee" / "again").unlink()
    (root / "train" / "bee" / "more").symlink_to(root / "test" / "bee")   # a link that is not a loop is read
    assert len(load_dataset("imagefolder", root=root, cache_dir=cache).train) == 3 * 6 + 3


def test_unwritable_cache_warns_and_loads(tmp_path):
    root = make_tree(tmp_path / "tree")
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would go")
    with pytest.warns(UserWarning, match="cannot be written .*Set LSNC_CACHE"):
        ds = load_dataset("imagefolder", root=root, cache_dir=blocked / "cache")
    assert torch.equal(ds.train.x, load_dataset("imagefolder", root=root, cache=False).train.x)
    assert blocked.read_text().startswith("a file")


@pytest.mark.parametrize("option, message", [
    (dict(mean=(0.5, 0.5)), r"mean=\(0.5, 0.5\): give 3 numbers"),
    (dict(std=(0.5, 0.0, 0.5)), r"std=.*: give 3 positive numbers"),
    (dict(mean="abc"), r"mean='abc': give 3 numbers"),
    (dict(std=(0.5, float("nan"), 0.5)), "std=.*one per RGB channel"),
])
def test_channel_statistics_checked(tmp_path, cache, option, message):
    root = make_tree(tmp_path / "tree")
    with pytest.raises(DataError, match=message):
        load_dataset("imagefolder", root=root, cache_dir=cache, **option)


def test_synthetic_drawn_in_blocks_is_the_same(cache, monkeypatch):
    whole = load_dataset("synthetic", seed=3, train_per_class=10, test_per_class=4, cache=False)
    monkeypatch.setattr(D.generated, "_SYNTHETIC_BLOCK_VALUES", 8 * 8 * 3 * 7)   # 7 images a block
    blocks = load_dataset("synthetic", seed=3, train_per_class=10, test_per_class=4, cache=False)
    assert torch.equal(whole.train.x, blocks.train.x) and torch.equal(whole.test.x, blocks.test.x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(cache):
    cpu = load_dataset("synthetic", seed=1, holdout_per_class=2, cache_dir=cache)
    gpu = load_dataset("synthetic", seed=1, holdout_per_class=2, cache_dir=cache, device="cuda")
    assert gpu.train.x.is_cuda and gpu.train.y.is_cuda and gpu.holdout.x.is_cuda
    assert torch.allclose(gpu.train.x.cpu(), cpu.train.x) and torch.equal(gpu.test.y.cpu(), cpu.test.y)
    a = [y.cpu() for _, y in cpu.train.batches(16, shuffle=True, seed=3)]
    b = [y.cpu() for _, y in gpu.train.batches(16, shuffle=True, seed=3)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
