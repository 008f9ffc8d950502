"""One evaluation pass of a model: train-set NC metrics, test-set split metrics and calibration.

The returned dict is one row of the training log, so its keys are CSV columns: lowercase snake_case, the
same set at every call (quantities that cannot be computed are NaN, never missing).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..calibration import CALIBRATION_FORMULAS, calibration_metrics
from ..metrics import METRIC_FORMULAS, PREDICTED_CLASS_FORMULAS, FeatureAccumulator, PredictedClassAccumulator
from ..vocab import TEST_PREFIX, TRAIN_PREFIX

__all__ = ["evaluate_model", "COLUMN_FORMULAS"]

#: Every key :func:`evaluate_model` returns (a column of a run's metrics.csv) -> the formula behind it.
COLUMN_FORMULAS = {
    **{TRAIN_PREFIX + k: v for k, v in METRIC_FORMULAS.items()},
    **{TEST_PREFIX + k: v for k, v in {**PREDICTED_CLASS_FORMULAS, **CALIBRATION_FORMULAS}.items()},
}


def evaluate_model(model: nn.Module, train_batches: Iterable[tuple[Tensor, Tensor]],
                   test_batches: Iterable[tuple[Tensor, Tensor]], num_classes: int, *,
                   holdout_batches: Iterable[tuple[Tensor, Tensor]] | None = None, delta: float = 0.0,
                   device=None, ncc_samples: int | None = None,
                   autocast_dtype: torch.dtype | None = None, phases: dict | None = None) -> dict[str, float]:
    """Evaluate ``model`` (contract: ``logits, features = model(x)``, ``model.classifier`` the
    ``nn.Linear(d, K)`` mapping features to logits, ``model.feature_dim`` = d) in eval mode without
    gradients; the model's train/eval mode is restored afterwards. Batches may live anywhere: the images are moved
    to ``device`` (default: the model's), where the statistics are accumulated.

    Keys (each with its formula in :data:`COLUMN_FORMULAS`):
      ``train_*``  :class:`lsnc.metrics.FeatureAccumulator` metrics over ``train_batches`` (label-grouped NC
                   metrics, accuracy, error, ``loss_ce``, and ``loss_ls`` = the loss with the model's own
                   smoothing ``delta``, equal to ``loss_ce`` when delta = 0);
      ``test_*``   :class:`lsnc.metrics.PredictedClassAccumulator` metrics over ``test_batches`` (NC1,
                   loss and entropy split all / correct / incorrect by predicted class) and
                   :func:`lsnc.calibration.calibration_metrics` of the test logits, with the temperature
                   also fitted on ``holdout_batches`` when given (NaN columns otherwise).
    NC4 is computed on every training sample (``ncc_samples=None``: float64 features, N x d, kept for the
    pass) unless ``ncc_samples`` caps it; a cap takes the first samples of ``train_batches``, a biased subset
    when the data are stored by class (image folders are).
    ``autocast_dtype`` (e.g. torch.bfloat16) runs the forward passes under autocast; features are cast to
    float64 only inside the accumulators.
    ``phases`` (a dict, for benchmarks) receives the seconds of each part, the device synchronized at each end:
    ``train_pass_s`` (forward passes over ``train_batches`` and their accumulation), ``test_pass_s`` (the test and
    holdout passes) and ``finalize_s`` (the metrics from the accumulated statistics, and calibration).
    """
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    classifier = model.classifier
    dim = getattr(model, "feature_dim", classifier.in_features)

    was_training = model.training
    model.eval()
    mark = _phase_clock(device, phases)
    try:
        with torch.inference_mode():
            forward = lambda x: _forward(model, x, device, autocast_dtype)
            train_acc = FeatureAccumulator(num_classes, dim, device=device, ncc_samples=ncc_samples, delta=delta)
            for x, y in train_batches:
                logits, features = forward(x)
                train_acc.update(features, y, logits)
            mark("train_pass_s")
            test_acc = PredictedClassAccumulator(num_classes, dim, device=device)
            test_logits, test_labels = _logits(forward, test_batches, test_acc)
            holdout_logits, holdout_labels = (_logits(forward, holdout_batches) if holdout_batches is not None
                                              else (None, None))
            mark("test_pass_s")
            train = train_acc.compute(classifier.weight, classifier.bias)
            test = test_acc.compute()
            calibration = calibration_metrics(test_logits, test_labels, holdout_logits=holdout_logits,
                                              holdout_labels=holdout_labels)
            mark("finalize_s")
    finally:
        model.train(was_training)

    row = {TRAIN_PREFIX + k: v for k, v in train.items()}
    row.update({TEST_PREFIX + k: v for k, v in {**test, **calibration}.items()})
    return {k: float(v) for k, v in row.items()}


def _phase_clock(device: torch.device, phases: dict | None):
    """``mark(name)``: the seconds since the last mark (or this call) into ``phases[name]``, the device synchronized
    first; does nothing when ``phases`` is None (no synchronization in training)."""
    if phases is None:
        return lambda name: None

    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    last = [now()]

    def mark(name: str) -> None:
        t = now()
        phases[name] = t - last[0]
        last[0] = t
    return mark


def _forward(model: nn.Module, x: Tensor, device: torch.device, autocast_dtype) -> tuple[Tensor, Tensor]:
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    with autocast:
        return model(x.to(device, non_blocking=True))


def _logits(forward, batches, accumulator=None) -> tuple[Tensor | None, Tensor | None]:
    """All logits (float32) and labels of ``batches``; features also go to ``accumulator`` when given."""
    logits_all, labels = [], []
    for x, y in batches:
        logits, features = forward(x)
        if accumulator is not None:
            accumulator.update(features, y, logits)
        logits_all.append(logits.float())
        labels.append(y)
    if not logits_all:
        return None, None
    return torch.cat(logits_all), torch.cat(labels)
