"""Datasets as tensors resident on the training device.

Every dataset goes through the same three steps:

1. a *reader* returns the full pool of each split as raw arrays: uint8 images N x H x W x C
   (or float32 vectors N x F for MNIST-1D) plus int64 labels; decoded image folders are cached
   once as uint8 so a second load skips the decoding;
2. a balanced, seeded selection picks ``holdout_per_class`` / ``train_per_class`` /
   ``test_per_class`` samples per class (the holdout is taken out of the training pool first);
3. the selected arrays are moved to the device and normalized once: x = (uint8/255 - mean)/std per channel for
   images (the statistics the source declares), x = (x - mean)/std with one scalar mean and std of the selected
   training subset for vectors (MNIST-1D).

No augmentation (the paper uses none), so a training epoch is just a permutation of indices on the
device: see :meth:`Split.batches`.

Where each part lives: :mod:`.pool` (what a reader returns, the array cache, :class:`DataError`), :mod:`.split`
(:class:`Split`, :class:`Dataset`), the readers (:mod:`.images` image folders and the CIFAR-10 JPEG copy,
:mod:`.tinyimagenet`, :mod:`.torchvision_sets` CIFAR-10/100 and STL-10, :mod:`.generated` MNIST-1D and the
synthetic mixture), and :mod:`.load` (the registry :data:`DATASETS`, selection, normalization, description:
:func:`load_dataset`; :func:`fetch_dataset`).
"""

from __future__ import annotations

from .load import (DATASETS, GENERATED_SOURCES, READ_OPTIONS, VECTOR_SOURCES, fetch_dataset, load_dataset,
                   seed_changes_data)
from .pool import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, DataError
from .split import Dataset, Split
from .tinyimagenet import prepare_tinyimagenet, reorganize_tinyimagenet_val

__all__ = [
    "CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD", "DATASETS", "DataError", "Dataset", "GENERATED_SOURCES",
    "READ_OPTIONS", "VECTOR_SOURCES", "Split", "fetch_dataset", "load_dataset", "seed_changes_data",
    "prepare_tinyimagenet", "reorganize_tinyimagenet_val",
]
