"""Datasets made offline, with no files to fetch: MNIST-1D and the synthetic Gaussian mixture of the tests."""

from __future__ import annotations

import random

import numpy as np

from .pool import DataError, cached, Pool, Request


def _read_mnist1d(req: Request) -> Pool:
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

    a = cached(req.cache_dir, "mnist1d", {"reader": "mnist1d", "args": args}, build)
    return Pool(a["train_x"], a["train_y"], a["test_x"], a["test_y"], [str(i) for i in range(10)],
                label="MNIST-1D", source=f"mnist1d.data.make_dataset (generated offline), args={args}",
                mean=None, std=None)


# --------------------------------------------------------------------------- synthetic

_SYNTHETIC_BLOCK_VALUES = 1 << 22  # float64 values drawn at a time (32 MB)


def _read_synthetic(req: Request) -> Pool:
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
        # In blocks, so the float64 noise never holds more than a block: the size check above counts the uint8
        # result. Consecutive blocks draw the same numbers as one call would.
        r = np.random.default_rng([req.seed, stream])
        y = np.repeat(np.arange(k, dtype=np.int64), n)
        x = np.empty((len(y), s, s, c), np.uint8)
        block = max(1, _SYNTHETIC_BLOCK_VALUES // (s * s * c))
        for i in range(0, len(y), block):
            part = centers[y[i:i + block]] + r.normal(0.0, noise, size=(len(y[i:i + block]), s, s, c))
            x[i:i + block] = np.clip(np.rint(part), 0, 255)
        return x, y

    (trx, tr_y), (tex, te_y) = draw(n_train, 1), draw(n_test, 2)
    return Pool(trx, tr_y, tex, te_y, [f"class{i}" for i in range(k)], label="synthetic Gaussian mixture",
                source=f"lsnc synthetic Gaussian mixture (seed={req.seed}, noise={noise}, {s}x{s}x{c})",
                mean=(0.5,) * c, std=(0.25,) * c)

