import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from lsnc.cli import main
from lsnc.config import ConfigError, TrainConfig, dense_then_sparse_epochs
from lsnc.presets import preset_config
from lsnc.runs import RunError, find_runs, load_run, runs_table
from lsnc.training import train

from lsnc.runs.compare import TIMING_COLUMNS  # wall clock, not the run


def _smoke(**kw) -> TrainConfig:
    return preset_config("smoke", threads=1, **kw)


def test_smoke_run_writes_a_complete_run_folder(tmp_path):
    folder = train(_smoke(), tmp_path, progress=False)
    assert folder == tmp_path / "synthetic" / "ce-mlpw32-s0"
    for f in ("config.json", "provenance.json", "status.json", "metrics.csv", "epochs.csv", "snapshots.npz",
              "checkpoint.pt"):
        assert (folder / f).exists(), f
    run = load_run(folder)
    assert run.status["status"] == "done"
    assert list(run.metrics["epoch"]) == [0, 1, 2, 3]
    assert list(run.epochs["epoch"]) == [1, 2, 3]
    # lr decays x0.1 at the milestone (epoch 2): epoch 3 trains at 0.005
    assert run.epochs["lr"].tolist() == pytest.approx([0.05, 0.05, 0.005])
    prov = run.provenance
    assert prov["packages"]["torch"] and prov["device"]["type"] == "cpu"
    assert prov["dataset"]["label"] == "synthetic Gaussian mixture"
    assert set(prov["dataset"]["sha256"]) >= {"train", "test"}
    from lsnc.book.describe import describe_run
    assert "synthetic" in describe_run(run) and "3 epochs" in describe_run(run)
    assert {"train_accuracy", "test_accuracy", "train_nc1_within_between", "test_ece20"} <= set(run.metrics.columns)


def test_same_seed_same_table_different_seed_differs(tmp_path):
    a = load_run(train(_smoke(), tmp_path / "a", progress=False)).metrics
    b = load_run(train(_smoke(), tmp_path / "b", progress=False)).metrics
    c = load_run(train(_smoke(seed=1), tmp_path / "c", progress=False)).metrics
    cols = [k for k in a.columns if k not in TIMING_COLUMNS]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert not a[cols].equals(c[cols])


def _resume_cfg() -> TrainConfig:
    # Big enough that an epoch takes a noticeable time, so the kill lands mid-training.
    return _smoke(epochs=14, milestones=[6, 11], eval_epochs=[1, 2, 3, 5, 8, 13], train_per_class=400,
                  data_options={"num_classes": 4, "image_size": 16}, width=256, batch_size=32)


def test_sigkill_then_resume_gives_the_uninterrupted_table(tmp_path):
    cfg = _resume_cfg()
    reference = load_run(train(cfg, tmp_path / "ref", progress=False))

    killed_dir = tmp_path / "killed"
    code = ("import sys, json; from lsnc.config import TrainConfig; from lsnc.training import train; "
            "train(TrainConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2], progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(cfg.to_dict()), str(killed_dir)])
    status_file = killed_dir / "synthetic" / cfg.resolved().name / "status.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if status_file.exists():
            try:
                if json.loads(status_file.read_text())["epoch"] >= 4:
                    break
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = json.loads(status_file.read_text())
    assert status["status"] == "running" and 4 <= status["epoch"] < 14, status

    with pytest.raises(RunError, match="--resume"):
        train(cfg, killed_dir, progress=False)
    resumed = load_run(train(cfg, killed_dir, resume=True, progress=False))
    assert resumed.status["status"] == "done"
    for table in ("metrics", "epochs"):
        ref, got = getattr(reference, table), getattr(resumed, table)
        cols = [k for k in ref.columns if k not in TIMING_COLUMNS]
        pd.testing.assert_frame_equal(ref[cols], got[cols])  # no epoch lost, none repeated, same numbers
    # A finished run is left alone.
    before = (resumed.path / "metrics.csv").read_text()
    train(cfg, killed_dir, resume=True, progress=False, log=lambda *_: None)
    assert (resumed.path / "metrics.csv").read_text() == before


def test_checkpoints_are_written_behind_the_training_and_a_failed_write_fails_the_run_where_it_is_whole(
        tmp_path, monkeypatch):
    """CheckpointWriter: the state is copied when the epoch ends (later in-place updates do not reach the file),
    status.json moves to an epoch only once its checkpoint is on disk, and a write that fails stops the training at
    the next checkpoint: the run is failed at the last whole checkpoint and resumes from it to the uninterrupted
    tables."""
    import threading

    import torch

    from lsnc.runs.record import CheckpointWriter, RunRecord

    class Record:  # what the writer uses of a RunRecord
        def __init__(self):
            self.train_seconds, self.saved, self.status, self.gate = 1.5, [], [], threading.Event()

        def save_checkpoint(self, state):
            self.gate.wait(10)
            self.saved.append(state)

        def running(self, epoch):
            self.status.append(epoch)

    rec = Record()
    writer = CheckpointWriter([rec], epoch=0, background=True)
    weight = torch.zeros(3)
    writer.save([{"model": {"w": weight}, "optimizer": {"param_groups": [{"lr": 0.1}]}}], epoch=1)
    weight += 7   # the next epoch's in-place update
    time.sleep(0.1)
    assert rec.status == [] and writer.epoch == 0   # not on disk yet: status.json still says the last whole one
    rec.gate.set()
    writer.close()
    assert rec.status == [1] and writer.epoch == 1
    assert rec.saved[0]["model"]["w"].tolist() == [0.0, 0.0, 0.0] and rec.saved[0]["epoch"] == 1
    assert rec.saved[0]["train_seconds"] == 1.5

    # in the loop: on a CPU the checkpoints are written in line; here behind, as on a GPU (the same tables)
    from lsnc.training.loop import writes_behind
    cfg = _smoke(epochs=6, milestones=[3], eval_epochs=[1, 2, 3, 4, 5])
    inline = load_run(train(cfg, tmp_path / "inline", progress=False))
    assert not writes_behind(torch.device("cpu")) and writes_behind(torch.device("cuda"))
    monkeypatch.setenv("LSNC_CHECKPOINT_WRITES", "behind")
    assert writes_behind(torch.device("cpu"))
    reference = load_run(train(cfg, tmp_path / "ref", progress=False))
    cols = [k for k in inline.metrics.columns if k not in TIMING_COLUMNS]
    pd.testing.assert_frame_equal(inline.metrics[cols], reference.metrics[cols])
    # and the same checkpoint, down to the kinds of its containers (a Counter of milestones, a state_dict's metadata)
    a, b = (torch.load(r.path / "checkpoint.pt", weights_only=True) for r in (inline, reference))
    for key in ("model", "optimizer", "scheduler"):
        assert type(a[key]) is type(b[key]) and a[key].keys() == b[key].keys()
    assert type(b["scheduler"]["milestones"]) is type(a["scheduler"]["milestones"]) and b["model"]._metadata
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    with monkeypatch.context() as m:
        m.setenv("LSNC_CHECKPOINT_WRITES", "later")
        with pytest.raises(ConfigError, match="use auto, inline or behind"):
            writes_behind(torch.device("cpu"))
    save = RunRecord.save_checkpoint

    def full_disk_at_epoch_3(self, state):
        if state["epoch"] == 3:
            raise OSError(28, "No space left on device")
        save(self, state)

    monkeypatch.setattr(RunRecord, "save_checkpoint", full_disk_at_epoch_3)
    with pytest.raises(OSError, match="No space left"):
        train(cfg, tmp_path / "full", progress=False)
    folder = tmp_path / "full" / "synthetic" / cfg.resolved().name
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "failed" and status["epoch"] == 2 and "No space left" in status["error"], status
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["epoch"] == 2
    monkeypatch.setattr(RunRecord, "save_checkpoint", save)
    resumed = load_run(train(cfg, tmp_path / "full", resume=True, progress=False, log=lambda *_: None))
    for table in ("metrics", "epochs"):
        ref, got = getattr(reference, table), getattr(resumed, table)
        cols = [k for k in ref.columns if k not in TIMING_COLUMNS]
        pd.testing.assert_frame_equal(ref[cols], got[cols])


def test_resume_with_a_different_recipe_is_refused(tmp_path):
    train(_smoke(), tmp_path, progress=False)
    with pytest.raises(RunError, match="different configuration.*lr"):
        train(_smoke(lr=0.1, name="ce-mlpw32-s0"), tmp_path, resume=True, progress=False)


def test_a_fields_role_decides_where_runs_may_differ_in_it(tmp_path):
    """One role per TrainConfig field (lsnc.config.ROLES): a run resumes with another execution, data folder or stop,
    never another setting (precision included), δ, seed or kernels; `lsnc compare` leaves out the folders and the
    stop but lists the execution; runs trained together differ only in δ, seed and name."""
    import dataclasses

    from lsnc.config import fields_with
    from lsnc.runs.compare import NOT_THE_RUN
    from lsnc.runs.lifecycle import check_resumable
    from lsnc.training.engine import check_fusable

    cfg = _smoke().resolved()
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    check_resumable(tmp_path, dataclasses.replace(cfg, device="cpu", threads=3, together="streams", compile=True,
                                                  data_root="/elsewhere", preset=None, time_budget_s=5.0))
    for field, value in (("tf32", True), ("amp", "bf16"), ("seed", 1), ("delta", 0.1), ("eval_epochs", [0, 1]),
                         ("test_per_class", 3), ("channels_last", True), ("deterministic", True)):
        with pytest.raises(RunError, match=f"different configuration \\({field} differ"):
            check_resumable(tmp_path, dataclasses.replace(cfg, **{field: value}))
    assert NOT_THE_RUN == set(fields_with("where", "stop")) and {"device", "tf32"}.isdisjoint(NOT_THE_RUN)
    check_fusable([cfg, dataclasses.replace(cfg, delta=0.05, seed=2, name="other")])
    with pytest.raises(ConfigError, match="also differs in threads"):
        check_fusable([cfg, dataclasses.replace(cfg, delta=0.05, name="other", threads=2)])


def test_a_run_resumed_with_other_execution_options_records_them(tmp_path):
    """config.json keeps the options a run started with; provenance.json's execution_changes says what each resume
    changed, from which epoch."""
    def changes():
        return json.loads((folder / "provenance.json").read_text()).get("execution_changes")

    folder = train(_smoke(stop_epoch=1), tmp_path, progress=False)
    assert changes() is None
    train(_smoke(stop_epoch=2, eval_batch_size=7), tmp_path, resume=True, progress=False)
    assert changes() == [{"since_epoch": 1, "device": "cpu", "changed": {"eval_batch_size": [256, 7]}}]
    train(_smoke(stop_epoch=2, eval_batch_size=7), tmp_path, resume=True, progress=False)  # done: nothing to add
    assert json.loads((folder / "config.json").read_text())["eval_batch_size"] == 256
    train(_smoke(), tmp_path, resume=True, progress=False)   # back to the options it started with, from epoch 2
    assert changes() == [{"since_epoch": 1, "device": "cpu", "changed": {"eval_batch_size": [256, 7]}},
                         {"since_epoch": 2, "device": "cpu", "changed": {}}]
    assert load_run(folder).status["status"] == "done" and load_run(folder).epochs_reached == 3


def test_a_run_resumed_on_another_gpu_model_records_it(tmp_path, monkeypatch):
    """A resume on another GPU model (a window's H100 after an H200) is an execution change even with the same
    options; resuming on the same model again adds nothing. (The GPU is simulated: the CPU run reports a model.)"""
    import lsnc.runs.lifecycle as lifecycle
    import lsnc.runs.record as record

    def on(model):
        for module in (lifecycle, record):
            monkeypatch.setattr(module, "gpu_model", lambda device: model)

    def changes():
        return json.loads((folder / "provenance.json").read_text()).get("execution_changes")

    on("GPU A")
    folder = train(_smoke(stop_epoch=1), tmp_path, progress=False)
    on("GPU B")
    train(_smoke(stop_epoch=2), tmp_path, resume=True, progress=False)
    assert changes() == [{"since_epoch": 1, "device": "cpu", "gpu": "GPU B", "changed": {}}]
    assert json.loads((folder / "provenance.json").read_text())["device"]["name"] == "GPU B"
    train(_smoke(), tmp_path, resume=True, progress=False)
    assert changes() == [{"since_epoch": 1, "device": "cpu", "gpu": "GPU B", "changed": {}}]


def test_how_the_data_are_read_is_not_which_data(tmp_path):
    """read_options (decoding workers, the decode cache) are execution options: a run resumes with other ones, runs
    share one loaded copy of the data across them; data_options are the data, and misplaced options are refused."""
    import dataclasses

    from lsnc.runs.lifecycle import check_resumable
    from lsnc.training.prepare import data_key

    cfg = _smoke().resolved()
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    check_resumable(tmp_path, dataclasses.replace(cfg, read_options={"workers": 2, "cache": False}))
    with pytest.raises(RunError, match="data_options differ"):
        check_resumable(tmp_path, dataclasses.replace(cfg, data_options={**cfg.data_options, "noise": 0.5}))
    same = [dataclasses.replace(cfg, read_options={"workers": 2}), dataclasses.replace(cfg, download=True)]
    assert {data_key(c) for c in same} == {data_key(cfg)}
    assert data_key(dataclasses.replace(cfg, data_options={**cfg.data_options, "noise": 0.5})) != data_key(cfg)
    assert data_key(dataclasses.replace(cfg, seed=cfg.seed + 1)) != data_key(cfg)   # synthetic: drawn from the seed
    whole = preset_config("cpu-mnist1d", holdout_per_class=0).resolved()   # files (here: generated from their own
    assert data_key(dataclasses.replace(whole, seed=5)) == data_key(whole)  # seed), no subset: one copy for all seeds
    assert data_key(dataclasses.replace(whole, seed=5, holdout_per_class=1)) != data_key(
        dataclasses.replace(whole, holdout_per_class=1))
    for kw, match in ((dict(data_options={"workers": 2}), r"pass them in read_options"),
                      (dict(read_options={"image_size": 8}), r"unknown read_options \['image_size'\]")):
        with pytest.raises(ConfigError, match=match):
            _smoke(**kw).resolved()


@pytest.mark.parametrize("kw, match", [
    (dict(delta=1.0), "delta"), (dict(delta=-0.1), "delta"), (dict(milestones=[5]), "milestones"),
    (dict(milestones=[2, 1]), "milestones"), (dict(epochs=0), "epochs"), (dict(lr=0.0), "lr"),
    (dict(amp="fp8"), "amp"), (dict(name="../x"), "name"),
])
def test_bad_config_refused_before_anything_is_written(tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        train(_smoke(**kw), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_dense_then_sparse_eval_epochs():
    e = dense_then_sparse_epochs(800)
    assert e[:12] == list(range(12)) or e[:11] == list(range(11))
    assert e[0] == 0 and e[-1] == 800 and 150 in e and 325 in e and 333 not in e


def _cli(tmp_path, *args) -> int:
    return main(["train", "--runs-dir", str(tmp_path), "--quiet", "--threads", "1", *args])


def test_cli_errors_exit_2_with_readable_messages(tmp_path, capsys):
    assert _cli(tmp_path, "--preset", "nope") == 2
    assert "choose one of" in capsys.readouterr().err
    assert _cli(tmp_path, "--preset", "smoke", "--dataset", "imagenet22k") == 2
    err = capsys.readouterr().err
    assert "mnist1d" in err and "cifar10" in err  # lists the valid datasets
    assert _cli(tmp_path, "--preset", "smoke", "--model", "vgg") == 2
    assert "resnet18" in capsys.readouterr().err
    assert _cli(tmp_path, "--preset", "smoke", "--delta", "1.5") == 2
    assert "[0, 1)" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_missing_data_names_the_download_flag(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    assert _cli(tmp_path / "runs", "--preset", "paper-cifar10", "--data-root", str(root), "--epochs", "1",
                "--milestones") == 2
    err = capsys.readouterr().err
    assert "--download" in err and str(root) in err
    assert not (tmp_path / "runs").exists()


def test_cli_existing_run_not_overwritten_unless_asked(tmp_path, capsys):
    assert _cli(tmp_path, "--preset", "smoke") == 0
    first = (tmp_path / "synthetic" / "ce-mlpw32-s0" / "metrics.csv").read_text()
    assert _cli(tmp_path, "--preset", "smoke") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "synthetic" / "ce-mlpw32-s0" / "metrics.csv").read_text() == first
    assert _cli(tmp_path, "--preset", "smoke", "--overwrite") == 0


def test_resume_of_a_run_that_does_not_exist_says_so_and_starts_it(tmp_path, capsys):
    assert _cli(tmp_path, "--preset", "smoke", "--resume", "--stop-epoch", "1") == 0
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "ce-mlpw32-s0" in err
    assert _cli(tmp_path, "--preset", "smoke", "--resume") == 0  # an existing run: resumed without the note
    assert "nothing to resume" not in capsys.readouterr().err


def test_nonfinite_loss_marks_run_failed_and_exits_1(tmp_path, capsys):
    assert _cli(tmp_path, "--preset", "smoke", "--lr", "1e30", "--name", "diverge") == 1
    assert "epoch" in capsys.readouterr().err
    status = json.loads((tmp_path / "synthetic" / "diverge" / "status.json").read_text())
    # status.json's epoch is the last completed one (its checkpoint exists); the error names the failing epoch
    assert status["status"] == "failed" and status["epoch"] == 0 and "NonFiniteLoss" in status["error"]
    assert "in epoch 1" in status["error"] and "diverge" in status["error"]


def test_ufm_style_training_logs_theory_norms(tmp_path):
    run = load_run(train(_smoke(ufm=True, delta=0.05), tmp_path, progress=False))
    assert run.name == "ls0.05-ufm-mlpw32-s0"
    assert run.metrics["ufm_theory_w_norm"].gt(0).all() and run.metrics["ufm_theory_h_norm"].gt(0).all()
    assert run.config["ufm"] is True


def test_the_training_objective_is_the_smoothed_loss_plus_the_ufm_penalties():
    """objective() against the formulas written out: cross entropy with the smoothed target (1-δ) e_y + δ/K, plus,
    for UFM-style runs, λ_W‖W‖²/2 + λ_b‖b‖²/2 + λ_H (N/B) Σ‖h_i‖²/2."""
    import torch.nn.functional as F

    from lsnc.training.step import objective
    g = torch.Generator().manual_seed(0)
    k, batch, n_train = 5, 8, 1000
    logits, feats = torch.randn(batch, k, generator=g), torch.randn(batch, 3, generator=g)
    y, w, b = torch.randint(0, k, (batch,), generator=g), torch.randn(k, 3, generator=g), torch.randn(k, generator=g)
    for delta in (0.0, 0.2):
        target = (1 - delta) * F.one_hot(y, k).double() + delta / k
        smoothed = -(target * torch.log_softmax(logits.double(), 1)).sum(1).mean().item()
        assert objective(logits, feats, y, _smoke(delta=delta), (w, b), n_train).item() == pytest.approx(smoothed)
        cfg = _smoke(delta=delta, ufm=True, lambda_w=0.3, lambda_h=0.002, lambda_b=0.5)
        penalty = (0.3 / 2 * w.double().pow(2).sum() + 0.5 / 2 * b.double().pow(2).sum()
                   + 0.002 / 2 * n_train / batch * feats.double().pow(2).sum()).item()
        assert objective(logits, feats, y, cfg, (w, b), n_train).item() == pytest.approx(smoothed + penalty)


def test_delta_and_the_ufm_penalties_reach_the_training_loss(tmp_path):
    """Same seed, same batches: the first epoch's running loss moves with δ, and again with the UFM penalties (a
    path that dropped either would log the same loss)."""
    first = {name: load_run(train(_smoke(epochs=1, milestones=[], name=name, **kw), tmp_path, progress=False)
                            ).epochs["train_loss_running"].iloc[0]
             for name, kw in (("ce", {}), ("ls", {"delta": 0.1}), ("ls-ufm", {"delta": 0.1, "ufm": True,
                                                                         "lambda_h": 0.05}))}
    assert first["ls"] != first["ce"]
    assert first["ls-ufm"] != first["ls"]


def test_runs_table_and_find_runs(tmp_path):
    train(_smoke(), tmp_path, progress=False)
    train(_smoke(delta=0.05), tmp_path, progress=False)
    runs = find_runs(tmp_path)
    assert [r.name for r in runs] == ["ce-mlpw32-s0", "ls0.05-mlpw32-s0"]
    table = runs_table(runs)
    assert set(table["delta"]) == {0.0, 0.05} and len(table) == 8
    assert find_runs(tmp_path / "missing") == []


def test_help_documents_every_option(capsys):
    import dataclasses

    from lsnc.config import TrainConfig
    from lsnc.data import DATASETS
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    options = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(TrainConfig) if f.metadata.get("section")]
    assert len(options) > 30
    for opt in options + ["--runs-dir", "--resume", "--overwrite", "--preset"]:
        assert opt in out, opt
    assert all(name in out for name in DATASETS)  # --dataset lists the registry, cifar10-jpeg included


def test_provenance_paths_are_portable():
    from lsnc.paths import REPO_ROOT
    from lsnc.paths import portable_paths
    assert portable_paths(f"{REPO_ROOT}/../shared/data/x") == "../shared/data/x"
    assert portable_paths(f"{REPO_ROOT}/runs") == "runs"
    assert portable_paths(f"{REPO_ROOT.parent}/other") == "../other"


def test_fast_path_switches_keep_the_results(tmp_path):
    """channels_last changes only memory layout: same seed, fp32 -> the same metrics to a tight tolerance.
    (A small lr keeps the few-step training from amplifying float rounding differences of the kernels.)"""
    kw = dict(model="resnet18", width=8, epochs=2, milestones=[1], lr=0.005,
              data_options={"num_classes": 3, "image_size": 8}, deterministic=True)
    plain = load_run(train(_smoke(**kw), tmp_path / "plain", progress=False)).metrics
    fast = load_run(train(_smoke(channels_last=True, **kw), tmp_path / "fast", progress=False)).metrics
    cols = [c for c in plain.columns if c not in TIMING_COLUMNS and plain[c].dtype.kind == "f"]
    for c in ("train_nc1_within_between", "train_nc2_wh_etf", "test_accuracy", "train_loss_ce"):
        assert c in cols
    pd.testing.assert_frame_equal(plain[cols], fast[cols], rtol=1e-4, atol=1e-6)


def test_a_bf16_run_is_evaluated_in_full_precision(tmp_path, monkeypatch):
    """--amp bf16 is a training switch: the metrics come from an fp32 evaluation, as its twin's do."""
    from lsnc.training import loop

    seen = []
    real = loop.evaluate_model

    def spy(*args, **kwargs):
        # the keyword, and an autocast region the call might sit in
        seen.append((kwargs.get("autocast_dtype"), torch.is_autocast_enabled("cpu")))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_model", spy)
    run = load_run(train(_smoke(amp="bf16"), tmp_path, progress=False))
    assert run.config["amp"] == "bf16" and len(seen) == len(run.metrics)
    assert all(d is None and not inside for d, inside in seen)


def test_a_window_records_the_commit_prepare_sh_sent_not_the_device_copys_git(monkeypatch):
    """The device's copy of the checkout had a .git at the session's base commit: its own git named the wrong
    commit (and "modified"). device/window.sh exports what device/prepare.sh recorded, and that wins."""
    from lsnc.runs import lifecycle
    monkeypatch.setenv("LSNC_SOURCE_COMMIT", "0123abc")
    monkeypatch.setenv("LSNC_SOURCE_LSNC_MODIFIED", "0")
    lifecycle.git_commit.cache_clear()
    try:
        got = lifecycle.git_commit()
        assert got["commit"] == "0123abc" and got["lsnc_modified"] is False and "prepare.sh" in got["commit_from"]
        monkeypatch.setenv("LSNC_SOURCE_LSNC_MODIFIED", "")  # an older source.txt without the line: unknown
        lifecycle.git_commit.cache_clear()
        assert lifecycle.git_commit()["lsnc_modified"] is None
    finally:
        lifecycle.git_commit.cache_clear()


def test_shorter_recipes_put_the_lr_decays_at_the_papers_fractions():
    from lsnc.config import recipe_milestones
    from lsnc.presets import PRESETS
    assert recipe_milestones(800) == [150, 350] and recipe_milestones(50) == [9, 22]
    assert recipe_milestones(150) == [28, 66]
    # the committed CPU groups were trained with these (their config.json)
    root = Path(__file__).resolve().parents[1] / "runs"
    for preset, group in (("cpu-cifar10", "cifar10-jpeg"), ("cpu-cifar10-150", "cifar10-jpeg-150ep"),
                          ("cpu-mnist1d", "mnist1d")):
        configs = sorted((root / group).glob("ce-*-s0/config.json"))
        assert configs, f"no committed run of {group}"
        for config in configs:
            assert json.loads(config.read_text())["milestones"] == PRESETS[preset]["milestones"], config

