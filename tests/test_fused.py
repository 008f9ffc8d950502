"""Fused K-model training equals K separate runs; runs stopped early are exact prefixes of the recipe."""

import numpy as np
import pytest
import torch

from lsnc.cli import main
from lsnc.config import ConfigError, TrainConfig
from lsnc.models import build_model
from lsnc.runs import RunError, load_run
from lsnc.runs.compare import machine
from lsnc.training import train, train_many
from lsnc.training.fused import FusedNet

BASE = dict(dataset="synthetic", model="resnet18", width=4, epochs=4, milestones=[2], batch_size=16,
            holdout_per_class=2, eval_batch_size=64, deterministic=True, threads=1,
            data_options={"num_classes": 4, "image_size": 8, "n_train_per_class": 24, "n_test_per_class": 8})
PAIRS = [(0.0, 0), (0.05, 0), (0.1, 1)]  # (δ, seed): K = 3 runs differing in both


def _numeric(df):
    cols = [c for c in df.columns if df[c].dtype.kind == "f" and "seconds" not in c]
    return df[cols].to_numpy()


def _assert_same_tables(a, b, rtol=1e-3):
    """fp32 summation order differs between one grouped convolution and K plain ones: measured relative
    differences after 4 epochs are at most ~2e-4 (largest in temperature-fitted columns); 1e-3 fails any bug."""
    ma, mb = load_run(a).metrics, load_run(b).metrics
    assert list(ma.columns) == list(mb.columns) and list(ma.epoch) == list(mb.epoch)
    np.testing.assert_allclose(_numeric(ma), _numeric(mb), rtol=rtol, atol=1e-6)
    ea, eb = load_run(a).epochs, load_run(b).epochs
    np.testing.assert_allclose(ea.train_loss_running, eb.train_loss_running, rtol=1e-4)
    np.testing.assert_array_equal(ea.train_acc_running, eb.train_acc_running)


@pytest.mark.parametrize("model,shape", [("resnet18", (3, 8, 8)), ("mlp", (10,))])
def test_fused_forward_equals_each_member(model, shape):
    torch.manual_seed(0)
    members = [build_model(model, 5, shape, width=8) for _ in range(3)]
    fused = FusedNet(members).eval()
    xs = torch.randn(3, 6, *shape)
    logits, feats = fused(xs)
    assert logits.shape == (3, 6, 5) and feats.shape[:2] == (3, 6)
    for k, m in enumerate(members):
        lk, hk = m.eval()(xs[k])
        torch.testing.assert_close(logits[k], lk, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(feats[k], hk, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fused.member(k)(xs[k])[0], lk, rtol=1e-5, atol=1e-5)
        assert fused.member_state_dict(k).keys() == m.state_dict().keys()


def test_fused_training_equals_separate_runs(tmp_path):
    fused = train_many([TrainConfig(**BASE, delta=d, seed=s, group="fused") for d, s in PAIRS], tmp_path,
                       progress=False)
    separate = [train(TrainConfig(**BASE, delta=d, seed=s, group="separate"), tmp_path, progress=False)
                for d, s in PAIRS]
    names = [load_run(f).config["name"] for f in fused]
    for f, s in zip(fused, separate):
        assert load_run(f).status["status"] == "done"
        assert (f / "snapshots.npz").exists() and (f / "checkpoint.pt").exists()
        _assert_same_tables(f, s)
        # provenance says how each was trained; all else (network, optimizer, schedule, batches, loss) is the same
        tf, ts = load_run(f).provenance["training"], load_run(s).provenance["training"]
        assert tf.pop("together") == {"how": "fused", "runs": names}
        assert ts.pop("together") == {"how": "alone", "runs": [load_run(s).config["name"]]}
        assert tf == ts and tf["since_epoch"] == 0
        group, = tf["optimizer"]["param_groups"]   # one group: weight decay on every parameter tensor
        assert group["parameter_tensors"] == sum(tf["model"]["parameter_tensors"].values())
        assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.9, BASE.get("weight_decay", 5e-4),
                                                                                False)
        assert tf["lr_schedule"]["milestones"] == [2] and tf["batches"]["drop_last"] is True
        # lsnc compare names it where the two differ
        assert machine(load_run(f)).endswith(", fused K=3 from epoch 0") and "fused" not in machine(load_run(s))


def test_fused_prefix_then_plain_resume_equals_uninterrupted(tmp_path):
    """A fused run's checkpoints are ordinary ones: stop the fused set at epoch 2, continue one member alone."""
    cfgs = [TrainConfig(**BASE, delta=d, seed=s, group="g", stop_epoch=2) for d, s in PAIRS[:2]]
    folders = train_many(cfgs, tmp_path, progress=False)
    run = load_run(folders[1])
    assert run.is_prefix and run.epochs_reached == 2 and run.status["stopped_by"] == "stop epoch 2"
    assert list(run.metrics.epoch) == [0, 1, 2]
    rest = TrainConfig(**BASE, delta=PAIRS[1][0], seed=PAIRS[1][1], group="g")
    train(rest, tmp_path, resume=True, progress=False)
    whole = train(TrainConfig(**BASE, delta=PAIRS[1][0], seed=PAIRS[1][1], group="whole"), tmp_path, progress=False)
    assert not load_run(folders[1]).is_prefix
    _assert_same_tables(folders[1], whole, rtol=1e-3)
    # provenance: trained alone from epoch 2, fused with the other run before
    training = load_run(folders[1]).provenance["training"]
    assert training["together"]["how"] == "alone" and training["since_epoch"] == 2
    earlier, = training["earlier"]
    assert earlier["together"] == {"how": "fused", "runs": [f.name for f in folders]} and earlier["since_epoch"] == 0
    assert machine(load_run(folders[1])).endswith(", fused K=2 from epoch 0")


def test_time_budget_stops_at_an_evaluated_epoch_as_a_prefix(tmp_path):
    six = {**BASE, "epochs": 6, "milestones": [3], "eval_epochs": [2, 4]}
    whole = train(TrainConfig(**six, group="whole"), tmp_path, progress=False)
    cut = train(TrainConfig(**six, group="cut", time_budget_s=1e-3), tmp_path, progress=False)
    run = load_run(cut)
    assert run.status["status"] == "done" and run.is_prefix
    # out of time after its first epoch, off the evaluation schedule: evaluated there, and stopped
    assert run.epochs_reached == 1 and list(run.metrics.epoch) == [0, 1]
    assert run.status["recipe_epochs"] == 6 and run.status["stopped_by"].startswith("time budget")
    assert run.config["milestones"] == [3] and run.config["eval_epochs"] == [0, 2, 4, 6]  # the recipe, unchanged
    full = load_run(whole).metrics
    np.testing.assert_array_equal(_numeric(run.metrics.iloc[:1]), _numeric(full.iloc[:1]))  # same code path
    # resumed with a budget, the prefix grows by an epoch at a time, still exact (the extra evaluation changed
    # nothing); the stop row off the schedule goes: the longer run has the uninterrupted run's rows
    train(TrainConfig(**six, group="cut", time_budget_s=1e-3), tmp_path, resume=True, progress=False)
    longer = load_run(cut)
    assert longer.epochs_reached == 2 and longer.is_prefix and list(longer.metrics.epoch) == [0, 2]
    np.testing.assert_array_equal(_numeric(longer.metrics), _numeric(full[full.epoch <= 2]))
    train(TrainConfig(**six, group="cut", time_budget_s=1e-3), tmp_path, resume=True, progress=False)
    assert list(load_run(cut).metrics.epoch) == [0, 2, 3]   # stopped off the schedule again
    train(TrainConfig(**six, group="cut"), tmp_path, resume=True, progress=False)   # to the end of the recipe
    np.testing.assert_array_equal(_numeric(load_run(cut).metrics), _numeric(full))
    np.testing.assert_array_equal(_numeric(load_run(cut).epochs), _numeric(load_run(whole).epochs))
    assert "earlier" not in load_run(cut).provenance["training"]   # resumed alone as it began: nothing to add
    # without its checkpoint (a run carried back from a GPU window) a prefix is left as it is, or refused
    cut2 = train(TrainConfig(**six, group="cut2", time_budget_s=1e-3), tmp_path, progress=False)
    (cut2 / "checkpoint.pt").unlink()
    train(TrainConfig(**six, group="cut2", time_budget_s=1e-3), tmp_path, resume=True, progress=False)
    assert load_run(cut2).epochs_reached == 1
    with pytest.raises(RunError, match="--overwrite"):
        train(TrainConfig(**six, group="cut2"), tmp_path, resume=True, progress=False)


def test_a_time_budget_counts_from_when_the_process_started(tmp_path):
    """`python -m lsnc train` passes when lsnc was imported (lsnc.IMPORTED_AT): importing torch is in the budget."""
    import time
    budget = dict(**BASE, time_budget_s=500)
    late = train_many([TrainConfig(**budget, group="late")], tmp_path, progress=False,
                      started=time.perf_counter() - 1000)[0]
    assert load_run(late).epochs_reached == 1 and load_run(late).status["stopped_by"] == "time budget 500 s"
    now = train_many([TrainConfig(**budget, group="now")], tmp_path, progress=False)[0]
    assert load_run(now).epochs_reached == BASE["epochs"] and not load_run(now).is_prefix


def test_a_time_budget_stops_one_epoch_before_it_runs_out():
    """The stop rule: go on while one more epoch and its evaluation (and this epoch's, where scheduled) fit, with
    10% to spare; an explicit stop epoch stops at the first evaluated epoch at or after it."""
    import time

    from lsnc.training.loop import _Training

    def rule(epoch, elapsed, *, epochs=(5.0,), evals=(2.0,), stop_epoch=None, budget=100.0, trained=5.0,
             logged=None, checkpoint=0.0):
        t = object.__new__(_Training)
        t.cfgs = [TrainConfig(**{**BASE, "epochs": 800, "milestones": [150]}, time_budget_s=budget,
                              stop_epoch=stop_epoch).resolved()]
        t.epoch_seconds, t.eval_seconds = list(epochs), list(evals)
        t.eval_logged, t.checkpoint_seconds = logged, checkpoint
        t.wall_start = time.perf_counter() - elapsed
        return t.stop_reason(epoch, trained)

    assert rule(13, 80.0) is None                       # 80 + 1.1 * (5 + 2) = 87.7 <= 100: epoch 14 fits
    assert rule(13, 93.0) == "time budget 100 s"        # 93 + 7.7 > 100: stop at 13, off the schedule
    assert rule(10, 91.0) == "time budget 100 s"        # 91 + 1.1 * (2 + 5 + 2) > 100 (epoch 10 is evaluated)
    assert rule(10, 91.0, evals=(0.5,)) is None         # 91 + 1.1 * 6 <= 100
    assert rule(13, 85.0) is None and rule(13, 90.0) is None
    assert rule(13, 85.0, trained=12.0) == "time budget 100 s"   # the slowest recent epoch counts
    assert rule(13, 90.0, evals=()) == "time budget 100 s"       # resumed, no evaluation yet: as long as an epoch
    assert rule(13, 90.0, evals=(), logged=2.0) is None          # ... or the one the runs logged last
    assert rule(13, 92.0) is None and rule(13, 92.0, checkpoint=1.0) == "time budget 100 s"  # its checkpoint counts
    assert rule(800, 1e9) is None                       # the recipe's end is not a stop
    assert rule(13, 0.0, stop_epoch=20, budget=None) is None
    assert rule(20, 0.0, stop_epoch=20, budget=None) == "stop epoch 20"


@pytest.mark.parametrize("k", [1, 2])
def test_a_checkpoint_does_not_choose_how_the_optimizer_runs(k):
    """A checkpoint saved with fused SGD (on a GPU) loads into this device's optimizer as it was built here."""
    from lsnc.training.engine import make_engine
    from lsnc.training.prepare import load_data, pick_device
    cfgs = [TrainConfig(**BASE, delta=d, seed=s).resolved() for d, s in PAIRS[:k]]
    device = pick_device("cpu")
    data = [load_data(c, device) for c in cfgs]
    source, target = make_engine(cfgs, data, device), make_engine(cfgs, data, device)
    state = source.checkpoint_state(0)
    for group in state["optimizer"]["param_groups"]:
        group.update(fused=True, foreach=False, lr=0.123)
    target.load_checkpoint_state(0, state)
    group, = target.optimizer.param_groups
    assert (group["fused"], group["foreach"], group["lr"]) == (None, None, 0.123)   # built here; the run's lr


def test_runs_that_differ_in_more_than_delta_and_seed_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="width"):
        train_many([TrainConfig(**BASE), TrainConfig(**{**BASE, "width": 8}, delta=0.1)], tmp_path)
    with pytest.raises(ConfigError, match="not an evaluated epoch"):
        TrainConfig(**BASE, stop_epoch=3, eval_epochs=[2]).resolved()
    assert not any(tmp_path.iterdir())


def test_cli_trains_the_cross_product_of_deltas_and_seeds(tmp_path, capsys):
    assert main(["train", "--preset", "smoke", "--runs-dir", str(tmp_path), "--quiet", "--delta", "0", "0.05",
                 "--seed", "0", "1"]) == 0
    names = sorted(p.name for p in (tmp_path / "synthetic").iterdir())
    assert names == ["ce-mlpw32-s0", "ce-mlpw32-s1", "ls0.05-mlpw32-s0", "ls0.05-mlpw32-s1"]
    assert main(["train", "--preset", "smoke", "--runs-dir", str(tmp_path), "--delta", "0", "0.1",
                 "--name", "x"]) == 2
    assert "--name" in capsys.readouterr().err


def test_fused_resume_after_a_milestone_keeps_the_decayed_lr(tmp_path):
    """Resumed fused, a run continues exactly: the lr after the milestone (2) stays decayed, tables equal."""
    cfgs = lambda **kw: [TrainConfig(**BASE, delta=d, seed=s, **kw) for d, s in PAIRS[:2]]
    first = train_many(cfgs(group="g", stop_epoch=3), tmp_path, progress=False)
    train_many(cfgs(group="g"), tmp_path, resume=True, progress=False)
    whole = train_many(cfgs(group="whole"), tmp_path, progress=False)
    for a, b in zip(first, whole):
        assert list(load_run(a).epochs.lr) == pytest.approx([0.05, 0.05, 0.005, 0.005])
        _assert_same_tables(a, b)


def test_a_failing_fused_group_goes_on_one_run_at_a_time(tmp_path, monkeypatch):
    """If a fused group fails (e.g. one member diverges), each run is retried alone from its checkpoint, so the
    healthy runs finish and only the failing one is reported."""
    from lsnc.orchestrate import inline
    from lsnc.presets import preset_config
    from lsnc.training import NonFiniteLoss
    real = inline.train_many

    def diverging(group, *args, **kw):
        if len(group) > 1 or group[0].delta == 0.05:
            raise NonFiniteLoss(f"{group[-1].name}: training loss became nan in epoch 1")
        return real(group, *args, **kw)

    monkeypatch.setattr(inline, "train_many", diverging)
    cfgs = [preset_config("smoke", delta=d, threads=1).resolved() for d in (0.0, 0.05)]
    lines: list[str] = []
    outcome = inline.train_configs(cfgs, tmp_path, fuse=2, progress=False, log=lines.append)
    assert any("one at a time" in line for line in lines)
    assert outcome["trained"] == ["synthetic/ce-mlpw32-s0"]
    assert len(outcome["failed"]) == 1 and outcome["failed"][0].startswith("synthetic/ls0.05-mlpw32-s0")
