"""Named training settings. ``lsnc train --preset NAME`` starts from one; command-line options override it.

- ``paper-*``: the paper's exact recipe (the experimental setup of arXiv 2402.03979), for a GPU with the dataset downloaded.
- ``cpu-*``: the reduced scale committed in runs/ (2 CPU cores), with the paper's optimizer and loss.
- ``smoke``: seconds, on synthetic data, for tests.
"""

from __future__ import annotations

import copy
from typing import Any

from .config import PAPER_RECIPE, ConfigError, TrainConfig, recipe_milestones
from .paths import CIFAR10_JPEG

# The paper's recipe (lsnc.config.PAPER_RECIPE: optimizer, batch, 800 epochs, decays at 150 and 350), CE.
_PAPER_COMMON: dict[str, Any] = dict(copy.deepcopy(PAPER_RECIPE), delta=0.0)
# Its schedule alone, for the CPU settings trained at the paper's full length.
_PAPER_SCHEDULE: dict[str, Any] = dict(epochs=PAPER_RECIPE["epochs"], milestones=list(PAPER_RECIPE["milestones"]))

# The CPU-scale settings the cpu-* presets start from (each of those changes one thing: length, width or data).
_CPU_CIFAR10: dict[str, Any] = dict(_PAPER_COMMON, dataset="cifar10-jpeg", data_root=CIFAR10_JPEG, model="resnet18",
                                    width=16, train_per_class=500, test_per_class=100, holdout_per_class=50,
                                    epochs=50, milestones=recipe_milestones(50), eval_batch_size=500,
                                    channels_last=True)
_CPU_MNIST1D: dict[str, Any] = dict(_PAPER_COMMON, dataset="mnist1d", model="mlp", width=256, holdout_per_class=20,
                                    epochs=150, milestones=recipe_milestones(150), eval_batch_size=2000)

PRESETS: dict[str, dict[str, Any]] = {
    "paper-cifar10": dict(_PAPER_COMMON, dataset="cifar10", model="resnet18"),
    "paper-cifar100": dict(_PAPER_COMMON, dataset="cifar100", model="resnet50"),
    # STL-10's 96x96 images through ResNet-50's CIFAR stem: about 9x CIFAR's activations per image (estimated from
    # the layer shapes, not measured), so a smaller evaluation batch than the default 1024 (same numbers, less memory).
    "paper-stl10": dict(_PAPER_COMMON, dataset="stl10", model="resnet50", eval_batch_size=256),
    "paper-tinyimagenet": dict(_PAPER_COMMON, dataset="tinyimagenet", model="resnet50", epochs=300,
                               milestones=[100, 200]),
    # The paper's recipe on the full offline JPEG copy of CIFAR-10 (for a GPU).
    "paper-cifar10-jpeg": dict(_PAPER_COMMON, dataset="cifar10-jpeg", data_root=CIFAR10_JPEG, model="resnet18"),
    # CPU scale: 500 training images per class of the JPEG copy, ResNet-18 at base width 16, 50 epochs with the
    # lr decays at the same fractions of training as the paper's 150/350 of 800 (rounded). 8-13 min of
    # training a run on one core (measured, runs/cifar10-jpeg).
    "cpu-cifar10": dict(_CPU_CIFAR10),
    # The cpu-cifar10 runs trained 3x longer: 150 epochs, lr decays at the same fractions of training, their own group.
    # 33 min of training a run, two runs side by side on the 2-core machine (measured, runs/cifar10-jpeg-150ep).
    "cpu-cifar10-150": dict(_CPU_CIFAR10, epochs=150, milestones=recipe_milestones(150), group="cifar10-jpeg-150ep"),
    # The cpu-cifar10 runs at twice the base width (32; the paper's is 64), same data, schedule and 50 epochs, in
    # their own group: what a wider network changes at the same data and length. 41-43 min of training a run, two
    # runs side by side on the 2-core machine (measured, runs/cifar10-jpeg-w32).
    "cpu-cifar10-w32": dict(_CPU_CIFAR10, width=32, group="cifar10-jpeg-w32"),
    # The cpu-cifar10 runs on twice the training images (1000 per class; the same test and holdout images), same
    # model, schedule and 50 epochs, in their own group: what more data changes at the same model and length.
    # 24-26 min of training a run, two runs side by side (measured, runs/cifar10-jpeg-1000pc).
    "cpu-cifar10-1000pc": dict(_CPU_CIFAR10, train_per_class=1000, group="cifar10-jpeg-1000pc"),
    # The cpu-cifar10 runs with ResNet-50 (the paper's network for CIFAR-100, STL-10 and Tiny ImageNet: bottleneck
    # blocks, 4x the channels out of each stage) at the same base width 16 (512 features, as ResNet-18 at the
    # paper's width 64), same data, schedule and 50 epochs, in their own group: whether the CE / LS picture holds
    # for the other network (the claims page's depth axis). 26 min of training a run, about 31 min with its
    # evaluations, two runs side by side (measured, runs/cifar10-jpeg-resnet50); it fits its training set more slowly
    # than ResNet-18 under the same lr decays (seed 0 at epoch 50: train error 0.0002 CE, 0.0014 LS).
    "cpu-cifar10-resnet50": dict(_CPU_CIFAR10, model="resnet50", group="cifar10-jpeg-resnet50"),
    # The ResNet-50 runs trained 3x longer (150 epochs, lr decays at the same fractions of training), their own group:
    # whether ResNet-50's CE / LS picture at 50 epochs comes from its slower fitting (the length axis at depth 50, and
    # the depth axis at 150 epochs beside cpu-cifar10-150). 83 min of training a run, two side by side on the 2-core
    # machine with tests beside them (about 26 s an epoch alone; measured, runs/cifar10-jpeg-resnet50-150ep).
    "cpu-cifar10-resnet50-150": dict(_CPU_CIFAR10, model="resnet50", epochs=150, milestones=recipe_milestones(150),
                                     group="cifar10-jpeg-resnet50-150ep"),
    # MNIST-1D (generated offline, 4000 train / 1000 test), MLP of width 256; ~1 min a run.
    "cpu-mnist1d": dict(_CPU_MNIST1D),
    # The same MNIST-1D runs with the paper's own schedule: 800 epochs, lr decays at 150 and 350 (not rescaled), in
    # their own group: what a 5x longer training changes at the same data and model. ~1 min a run on one core.
    "cpu-mnist1d-800": dict(_CPU_MNIST1D, **_PAPER_SCHEDULE, group="mnist1d-800ep"),
    # The same MNIST-1D runs with a 4x wider MLP (1024, as the paper's ResNet-18 is 4x the cpu-cifar10 one), in
    # their own group: what width changes at the same data and length. ~2 min of training a run, two side by side.
    "cpu-mnist1d-w1024": dict(_CPU_MNIST1D, width=1024, group="mnist1d-w1024"),
    # MNIST-1D on a 5x larger generated set (mnist1d num_samples 25000: 20000 train, 5000 test; generation seed
    # 42) so the training set can grow: 400 (about the canonical set's 380 after its holdout) and 1600 balanced
    # training samples per class, the same 100 test and 20 holdout per class, the cpu-mnist1d MLP and schedule,
    # each size in its own group: what 4x more training data changes at the same model and length. 19-23 s and
    # 60-70 s of training a run (measured, runs/mnist1d-400pc, runs/mnist1d-1600pc).
    "cpu-mnist1d-400pc": dict(_CPU_MNIST1D, data_options={"num_samples": 25000}, train_per_class=400,
                              test_per_class=100, group="mnist1d-400pc"),
    "cpu-mnist1d-1600pc": dict(_CPU_MNIST1D, data_options={"num_samples": 25000}, train_per_class=1600,
                               test_per_class=100, group="mnist1d-1600pc"),
    # The 1600-per-class runs with the paper's own schedule: 800 epochs, lr decays at 150 and 350 (not rescaled), in
    # their own group: does what 4x more data did to calibration hold over the paper's length? 5-6.5 min of training
    # a run, two side by side (measured, runs/mnist1d-1600pc-800ep).
    "cpu-mnist1d-1600pc-800": dict(_CPU_MNIST1D, data_options={"num_samples": 25000}, train_per_class=1600,
                                   test_per_class=100, **_PAPER_SCHEDULE, group="mnist1d-1600pc-800ep"),
    "smoke": dict(_PAPER_COMMON, dataset="synthetic", model="mlp", width=32, epochs=3, milestones=[2],
                  batch_size=16, holdout_per_class=4, eval_batch_size=256,
                  data_options={"num_classes": 4, "image_size": 8}),
}


def preset_config(preset: str | None, /, **overrides: Any) -> TrainConfig:
    """The preset's TrainConfig (``None``: no preset, TrainConfig's defaults) with ``overrides`` (None values are
    ignored; data_options are merged). UFM-style runs (``ufm=True``) get weight decay 0 unless an override gives
    one: the UFM penalties replace it."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    base = copy.deepcopy(PRESETS[preset]) if preset is not None else {}
    values = {**base, **{k: v for k, v in overrides.items() if v is not None}, "preset": preset}
    if values.get("ufm") and overrides.get("weight_decay") is None:
        values["weight_decay"] = 0.0
    if overrides.get("data_options") is not None:
        values["data_options"] = {**base.get("data_options", {}), **overrides["data_options"]}
    return TrainConfig(**values)
