"""One evaluation pass of a model: train-set NC metrics, test-set split metrics and calibration.

The returned dict is one row of the training log, so its keys are CSV columns: lowercase snake_case, the
same set at every call (quantities that cannot be computed are NaN, never missing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..calibration import calibration_metrics
from ..metrics import FeatureAccumulator, PredictedClassAccumulator

__all__ = ["evaluate_model"]


def evaluate_model(model: nn.Module, train_batches: Iterable[tuple[Tensor, Tensor]],
                   test_batches: Iterable[tuple[Tensor, Tensor]], num_classes: int, *,
                   holdout_batches: Iterable[tuple[Tensor, Tensor]] | None = None, delta: float = 0.0,
                   device=None, ncc_samples: int = 10_000,
                   autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Evaluate ``model`` (contract: ``logits, features = model(x)``, ``model.classifier`` the
    ``nn.Linear(d, K)`` mapping features to logits, ``model.feature_dim`` = d) in eval mode without
    gradients; the model's train/eval mode is restored afterwards.

    Keys:
      ``train_*``  :class:`lsnc.metrics.FeatureAccumulator` metrics over ``train_batches`` (label-grouped NC
                   metrics, accuracy, error, ``loss_ce``, and ``loss_ls`` = the loss with the model's own
                   smoothing ``delta``, equal to ``loss_ce`` when delta = 0);
      ``test_*``   :class:`lsnc.metrics.PredictedClassAccumulator` metrics over ``test_batches`` (NC1,
                   loss and entropy split all / correct / incorrect by predicted class) and
                   :func:`lsnc.calibration.calibration_metrics` of the test logits, with the temperature
                   also fitted on ``holdout_batches`` when given (NaN columns otherwise).
    ``autocast_dtype`` (e.g. torch.bfloat16) runs the forward passes under autocast; features are cast to
    float64 only inside the accumulators.
    """
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    classifier = model.classifier
    dim = getattr(model, "feature_dim", classifier.in_features)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            train_acc = FeatureAccumulator(num_classes, dim, device=device, ncc_samples=ncc_samples,
                                           delta=delta)
            for x, y in train_batches:
                with autocast:
                    logits, features = model(x)
                train_acc.update(features, y, logits)

            test_acc = PredictedClassAccumulator(num_classes, dim, device=device)
            test_logits, test_labels = [], []
            for x, y in test_batches:
                with autocast:
                    logits, features = model(x)
                test_acc.update(features, y, logits)
                test_logits.append(logits.float())
                test_labels.append(y)

            holdout_logits = holdout_labels = None
            if holdout_batches is not None:
                pairs = []
                for x, y in holdout_batches:
                    with autocast:
                        logits, _ = model(x)
                    pairs.append((logits.float(), y))
                if pairs:
                    holdout_logits = torch.cat([p[0] for p in pairs])
                    holdout_labels = torch.cat([p[1] for p in pairs])

            train = train_acc.compute(classifier.weight, classifier.bias)
            test = test_acc.compute()
            calibration = calibration_metrics(torch.cat(test_logits), torch.cat(test_labels),
                                              holdout_logits=holdout_logits, holdout_labels=holdout_labels)
    finally:
        model.train(was_training)

    row = {f"train_{k}": v for k, v in train.items()}
    row.update({f"test_{k}": v for k, v in test.items()})
    row.update({f"test_{k}": v for k, v in calibration.items()})
    return {k: float(v) for k, v in row.items()}
