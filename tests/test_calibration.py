import math

import pytest
import torch
from scipy.optimize import minimize_scalar
from torchmetrics.functional import calibration_error

from lsnc.calibration import (
    CALIBRATION_FORMULAS,
    calibration_metrics,
    confidence_and_correct,
    ece_equal_mass,
    ece_equal_width,
    equal_width_bin_index,
    fit_temperature,
    mean_nll,
    reliability_diagram,
)


def random_logits(N=2000, K=7, scale=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(N, K, generator=g, dtype=torch.float64)
    labels = torch.randint(0, K, (N,), generator=g)
    labels = torch.where(torch.rand(N, generator=g) < 0.5, logits.argmax(1), labels)  # partly accurate
    return logits, labels


@pytest.mark.parametrize("bins", [15, 20, 25])
def test_ece_matches_torchmetrics(bins):
    logits, labels = random_logits(seed=bins)
    conf, correct = confidence_and_correct(logits, labels)
    assert conf.max() < 1.0
    ours = ece_equal_width(conf, correct, bins)
    reference = calibration_error(torch.softmax(logits, 1).float(), labels, task="multiclass",
                                  num_classes=logits.shape[1], n_bins=bins, norm="l1")
    assert ours == pytest.approx(reference.item(), abs=1e-6)
    assert ours > 1e-3


def test_bin_edges_are_lower_open_upper_closed():
    conf = torch.tensor([0.0, 0.05, 0.05000001, 0.15, 0.5, 0.5000001, 0.99, 1.0], dtype=torch.float64)
    assert equal_width_bin_index(conf, 20).tolist() == [0, 0, 1, 2, 9, 10, 19, 19]


def test_confidence_exactly_one_falls_in_last_bin():
    # softmax of [0, 1000] is exactly (0, 1) in float64
    logits = torch.tensor([[0.0, 1000.0], [0.0, 1000.0], [0.3, 0.0], [0.0, 0.1]], dtype=torch.float64)
    labels = torch.tensor([1, 0, 0, 0])  # the second confident prediction is wrong
    conf, correct = confidence_and_correct(logits, labels)
    assert conf[0] == 1.0 and conf[1] == 1.0
    diagram = reliability_diagram(conf, correct, 20)
    assert diagram["count"][-1] == 2 and diagram["count"].sum() == 4
    assert diagram["accuracy"][-1] == 0.5 and diagram["confidence"][-1] == 1.0
    # by hand: bin (0.95, 1] contributes (2/4)|0.5 - 1|; the other two sit alone in their bins
    p3, p4 = conf[2].item(), conf[3].item()
    expected = 0.5 * 0.5 + 0.25 * abs(1 - p3) + 0.25 * abs(0 - p4)
    assert ece_equal_width(conf, correct, 20) == pytest.approx(expected, abs=1e-15)


def test_equal_mass_ece_by_hand():
    conf = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.9, 0.8], dtype=torch.float64)
    correct = torch.tensor([False, False, True, True, True, False])
    # sorted: [0.1, 0.2, 0.3 | 0.4, 0.8, 0.9]; bin 1: |1/3 - 0.2|, bin 2: |2/3 - 0.7|, weights 1/2 each
    expected = 0.5 * abs(1 / 3 - 0.2) + 0.5 * abs(2 / 3 - 0.7)
    assert ece_equal_mass(conf, correct, 2) == pytest.approx(expected, abs=1e-15)
    # 7 samples in 3 bins: sizes 3, 2, 2
    conf7 = torch.tensor([0.7, 0.1, 0.6, 0.2, 0.3, 0.5, 0.4], dtype=torch.float64)
    correct7 = torch.tensor([True, False, True, False, True, False, True])
    # sorted (conf, correct): (.1,F) (.2,F) (.3,T) | (.4,T) (.5,F) | (.6,T) (.7,T)
    expected7 = (3 / 7) * abs(1 / 3 - 0.2) + (2 / 7) * abs(0.5 - 0.45) + (2 / 7) * abs(1.0 - 0.65)
    assert ece_equal_mass(conf7, correct7, 3) == pytest.approx(expected7, abs=1e-15)


def test_reliability_diagram_shapes_and_empty_bins():
    conf = torch.tensor([0.12, 0.13, 0.91], dtype=torch.float64)
    correct = torch.tensor([True, False, True])
    d = reliability_diagram(conf, correct, 10)
    assert d["count"].tolist() == [0, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert math.isnan(d["accuracy"][0]) and d["accuracy"][1] == 0.5
    assert d["confidence"][1] == pytest.approx(0.125)
    assert d["lower"][1] == pytest.approx(0.1) and d["upper"][1] == pytest.approx(0.2)


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_temperature_fit_recovers_known_temperature(true_temperature):
    # labels drawn from softmax(z): z is calibrated, so logits T0 * z are calibrated at T = T0
    g = torch.Generator().manual_seed(3)
    z = 2.0 * torch.randn(20000, 10, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    fitted = fit_temperature(true_temperature * z, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.03)


def test_temperature_fit_is_the_nll_minimiser():
    logits, labels = random_logits(N=3000, seed=5)
    fitted = fit_temperature(logits, labels)
    reference = minimize_scalar(lambda log_t: mean_nll(logits, labels, math.exp(log_t)),
                                bounds=(math.log(1e-2), math.log(1e2)), method="bounded",
                                options={"xatol": 1e-10})
    assert math.log(fitted) == pytest.approx(reference.x, abs=1e-5)
    assert mean_nll(logits, labels, fitted) <= reference.fun + 1e-12


def test_temperature_hits_bound_on_separable_data():
    logits = torch.tensor([[3.0, 0.0], [0.0, 2.0], [5.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0])
    assert fit_temperature(logits, labels, t_min=0.05) == 0.05


def test_calibration_metrics_keys_and_holdout():
    logits, labels = random_logits(seed=9)
    without = calibration_metrics(logits, labels)
    with_holdout = calibration_metrics(logits, labels, holdout_logits=logits, holdout_labels=labels)
    assert set(without) == set(with_holdout)
    for key in ("ece15", "ece20", "ece25", "ece20_equal_mass", "temperature_testfit", "ece20_ts_testfit",
                "nll_ts_testfit", "temperature_holdout", "ece20_ts_holdout", "nll_ts_holdout"):
        assert key in without
    assert math.isnan(without["temperature_holdout"]) and math.isnan(without["ece20_ts_holdout"])
    # fitting on the same logits as the test set reproduces the test-fitted variant
    assert with_holdout["temperature_holdout"] == with_holdout["temperature_testfit"]
    assert with_holdout["ece20_ts_holdout"] == with_holdout["ece20_ts_testfit"]
    # a different held-out split: its own temperature, applied to the test logits
    hold_logits, hold_labels = random_logits(N=500, scale=6.0, seed=10)
    apart = calibration_metrics(logits, labels, holdout_logits=hold_logits, holdout_labels=hold_labels)
    t_hold = fit_temperature(hold_logits, hold_labels)
    assert apart["temperature_holdout"] == t_hold and abs(t_hold - apart["temperature_testfit"]) > 0.1
    assert apart["temperature_testfit"] == without["temperature_testfit"]
    assert apart["ece20_ts_holdout"] == ece_equal_width(*confidence_and_correct(logits / t_hold, labels), 20)
    assert apart["nll_ts_holdout"] == pytest.approx(mean_nll(logits, labels, t_hold))
    empty = calibration_metrics(logits, labels, holdout_logits=hold_logits[:0], holdout_labels=hold_labels[:0])
    assert math.isnan(empty["temperature_holdout"]) and math.isnan(empty["ece20_ts_holdout"])
    # scaling at the NLL-optimal temperature cannot increase the NLL
    assert without["nll_ts_testfit"] <= mean_nll(logits, labels) + 1e-12


def test_calibration_formulas_cover_every_key():
    logits, labels = random_logits(seed=4)
    assert set(calibration_metrics(logits, labels)) == set(CALIBRATION_FORMULAS)


def test_integer_labels_of_any_dtype():
    logits, labels = random_logits(seed=5)
    assert calibration_metrics(logits, labels.int()) == pytest.approx(calibration_metrics(logits, labels), nan_ok=True)


def test_empty_input_raises():
    with pytest.raises(ValueError):
        ece_equal_width(torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.bool))


def test_bin_edges_are_the_nearest_doubles_to_b_over_B():
    """A confidence equal to b/B (as a literal: the double nearest to it) is in the bin that edge closes, for every
    edge (linspace's edges 0.15000000000000002 or 0.5499999999999999 put some on the wrong side)."""
    for bins in (15, 20, 25):
        conf = torch.tensor([b / bins for b in range(1, bins + 1)], dtype=torch.float64)
        assert equal_width_bin_index(conf, bins).tolist() == list(range(bins))
    assert equal_width_bin_index(torch.tensor([0.15, 0.2, 0.55], dtype=torch.float64), 20).tolist() == [2, 3, 10]
    assert reliability_diagram(torch.tensor([0.5]), torch.tensor([True]), 20)["upper"][10].item() == 0.55


@pytest.mark.parametrize("bad", [-100, -1, 3])
def test_labels_that_are_not_class_indices_are_refused(bad):
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, bad])
    for call in (lambda: mean_nll(logits, labels), lambda: fit_temperature(logits, labels),
                 lambda: calibration_metrics(logits, labels)):
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
            call()
    with pytest.raises(ValueError, match=r"holdout labels must lie in \[0, 3\)"):
        calibration_metrics(logits, labels.clamp(0, 2), holdout_logits=logits, holdout_labels=labels)
