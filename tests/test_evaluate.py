import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsnc.calibration import calibration_metrics
from lsnc.training.evaluate import COLUMN_FORMULAS, evaluate_model
from lsnc.metrics import collapse_metrics_from_features


class TinyMLP(nn.Module):
    """Follows the model contract: ``logits, features = model(x)``, ``classifier``, ``feature_dim``."""

    def __init__(self, in_dim=6, feature_dim=5, num_classes=4):
        super().__init__()
        self.feature_dim = feature_dim
        # dropout makes train and eval mode give different features, so the mode used is observable
        self.body = nn.Sequential(nn.Linear(in_dim, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, feature_dim))
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, x):
        features = self.body(x)
        return self.classifier(features), features


def make_batches(num_batches, batch_size, in_dim, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(num_batches):
        y = torch.randint(0, num_classes, (batch_size,), generator=g)
        x = torch.randn(batch_size, in_dim, generator=g) + F.one_hot(y, in_dim).float() * 2.0
        batches.append((x, y))
    return batches


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = TinyMLP()
    train = make_batches(4, 32, 6, 4, seed=1)
    test = make_batches(3, 32, 6, 4, seed=2)
    holdout = make_batches(2, 32, 6, 4, seed=3)
    # a short fit, so that the model predicts every class (an untrained one predicts a single class)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(30):
        for x, y in train:
            optimizer.zero_grad()
            F.cross_entropy(model(x)[0], y).backward()
            optimizer.step()
    return model, train, test, holdout


def test_evaluate_model_agrees_with_direct_computation(setup):
    model, train, test, holdout = setup
    model.train()
    row = evaluate_model(model, train, test, 4, holdout_batches=holdout, delta=0.1, ncc_samples=1000)
    assert model.training  # mode restored

    model.eval()
    with torch.no_grad():
        x_train = torch.cat([x for x, _ in train])
        y_train = torch.cat([y for _, y in train])
        _, h_train = model(x_train)
        expected_train = collapse_metrics_from_features(h_train, y_train, model.classifier.weight,
                                                        model.classifier.bias, 4, delta=0.1)
        x_test = torch.cat([x for x, _ in test])
        y_test = torch.cat([y for _, y in test])
        z_test, _ = model(x_test)
        z_hold, _ = model(torch.cat([x for x, _ in holdout]))
    y_hold = torch.cat([y for _, y in holdout])

    for key, value in expected_train.items():
        assert row[f"train_{key}"] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert row["test_num_predicted_classes"] == 4 and 0 < row["test_num_incorrect"] < 96
    pred = z_test.argmax(1)
    assert row["test_accuracy"] == pytest.approx((pred == y_test).double().mean().item(), abs=1e-12)
    assert row["test_loss_ce_all"] == pytest.approx(F.cross_entropy(z_test.double(), y_test).item(), rel=1e-6)
    wrong = pred != y_test
    assert row["test_loss_ce_incorrect"] == pytest.approx(
        F.cross_entropy(z_test[wrong].double(), y_test[wrong]).item(), rel=1e-6)
    expected_cal = calibration_metrics(z_test, y_test, holdout_logits=z_hold, holdout_labels=y_hold)
    for key, value in expected_cal.items():
        assert row[f"test_{key}"] == pytest.approx(value, rel=1e-6, abs=1e-9), key

    assert all(isinstance(v, float) for v in row.values())
    assert all(math.isfinite(v) for v in row.values()), [k for k, v in row.items() if not math.isfinite(v)]
    assert all(k == k.lower() and k.startswith(("train_", "test_")) for k in row)


def test_evaluate_model_keys_are_stable(setup):
    model, train, test, holdout = setup
    model.eval()
    without = evaluate_model(model, train, test, 4)
    with_holdout = evaluate_model(model, train, test, 4, holdout_batches=holdout)
    assert not model.training  # eval mode restored as eval
    assert list(without) == list(with_holdout)
    assert math.isnan(without["test_temperature_holdout"])
    for key in ("train_nc1_within_between", "train_nc2_wh_etf", "train_nc3_duality_sq", "train_accuracy",
                "train_loss_ce", "train_loss_ls", "test_nc1_by_prediction_all", "test_nc1_by_prediction_correct",
                "test_nc1_by_prediction_incorrect", "test_entropy_correct", "test_ece20", "test_temperature_testfit",
                "test_ece20_ts_testfit", "test_ece20_ts_holdout"):
        assert key in without, key
    # delta = 0: the smoothed training loss is the plain one
    assert without["train_loss_ls"] == pytest.approx(without["train_loss_ce"], rel=1e-12)
    # every column has its formula, and every formula is a column
    assert set(without) == set(COLUMN_FORMULAS)


def test_evaluate_model_takes_int32_labels(setup):
    """Labels of any integer dtype (a user's loader), the same metrics as int64 ones."""
    model, train, test, holdout = setup
    as_int32 = lambda batches: [(x, y.int()) for x, y in batches]
    reference = evaluate_model(model, train, test, 4, holdout_batches=holdout, device="cpu")
    row = evaluate_model(model, as_int32(train), as_int32(test), 4, holdout_batches=as_int32(holdout), device="cpu")
    assert all(row[k] == reference[k] or (math.isnan(row[k]) and math.isnan(reference[k])) for k in reference)


def test_evaluate_model_times_its_parts_only_when_asked(setup):
    """``phases`` gets the seconds of the train pass, the test pass and the finalization (a benchmark's breakdown);
    the metrics are the same with it as without."""
    model, train, test, holdout = setup
    plain = evaluate_model(model, train, test, 4, holdout_batches=holdout, delta=0.1)
    phases = {}
    timed = evaluate_model(model, train, test, 4, holdout_batches=holdout, delta=0.1, phases=phases)
    assert set(phases) == {"train_pass_s", "test_pass_s", "finalize_s"} and all(v >= 0 for v in phases.values())
    assert timed.keys() == plain.keys()
    assert all(timed[k] == plain[k] or (math.isnan(timed[k]) and math.isnan(plain[k])) for k in plain)


def test_evaluate_model_under_bf16_autocast(setup):
    model, train, test, _ = setup
    dtypes = set()
    hook = model.register_forward_hook(lambda m, args, out: dtypes.add(out[1].dtype))
    row = evaluate_model(model, train, test, 4, autocast_dtype=torch.bfloat16)
    assert dtypes == {torch.bfloat16}  # the forward passes ran under autocast
    dtypes.clear()
    reference = evaluate_model(model, train, test, 4)
    hook.remove()
    assert dtypes == {torch.float32}
    assert math.isfinite(row["train_nc1_within_between"])
    assert row["train_nc1_within_between"] == pytest.approx(reference["train_nc1_within_between"], rel=0.1)
    assert row["train_nc1_within_between"] != reference["train_nc1_within_between"]


def test_single_predicted_class_gives_nan_test_nc1():
    # documented: with one predicted class Sigma_B = 0 and test NC1 is NaN; everything else stays finite
    torch.manual_seed(0)
    model = TinyMLP()
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 100.0, 0.0]))
    train, test = make_batches(2, 16, 6, 4, seed=1), make_batches(2, 16, 6, 4, seed=2)
    row = evaluate_model(model, train, test, 4)
    assert row["test_num_predicted_classes"] == 1
    assert math.isnan(row["test_nc1_by_prediction_all"])
    assert math.isfinite(row["test_loss_ce_all"]) and math.isfinite(row["train_nc1_within_between"])


def test_nc4_uses_every_training_sample_by_default(setup):
    """A dataset stored by class (as image folders are) and larger than the accumulator's default NCC cap: the
    first 10,000 samples would be two classes only. evaluate_model's NC4 must see all of them."""
    model, _, test, _ = setup
    g = torch.Generator().manual_seed(4)
    y = torch.arange(4).repeat_interleave(3000)  # 12,000 samples, class 0 first, then 1, 2, 3
    x = torch.randn(len(y), 6, generator=g) + F.one_hot(y, 6).float() * 2.0
    train = [(x[i:i + 500], y[i:i + 500]) for i in range(0, len(y), 500)]
    row = evaluate_model(model, train, test, 4)
    assert row["train_ncc_samples_used"] == len(y)
    with torch.no_grad():
        logits, H = model.eval()(x)
    exact = collapse_metrics_from_features(H.double(), y, model.classifier.weight, model.classifier.bias)
    assert row["train_nc4_ncc_accuracy"] == pytest.approx(float(exact["nc4_ncc_accuracy"]), abs=1e-12)
    capped = evaluate_model(model, train, test, 4, ncc_samples=6000)  # classes 0 and 1 only
    assert capped["train_ncc_samples_used"] == 6000
    assert capped["train_nc4_ncc_accuracy"] != pytest.approx(row["train_nc4_ncc_accuracy"], abs=1e-3)
