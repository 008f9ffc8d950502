"""lsnc.book.describe: the one description of what runs are (data, model, loss, epochs or prefix, seeds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lsnc import book
from lsnc.book import caption, comparable, describe, scales_table
from lsnc.paths import REPO_ROOT
from lsnc.runs import Run, find_runs, load_run

from test_claims import fake_run, paper_like

PROVENANCE = {"dataset": {"label": "MNIST-1D", "num_classes": 10,
                          "sizes": {"train": 4000, "test": 1000, "holdout": 200}}}


def hand_run(delta=0.0, seed=0, *, epochs=800, reached=None, ufm=False, width=256, status="done") -> Run:
    """A Run built in memory: a prefix when ``reached`` < ``epochs``."""
    config = {"model": "mlp", "width": width, "delta": delta, "seed": seed, "epochs": epochs, "ufm": ufm,
              "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "milestones": [280, 660]}
    status = {"status": status, "epoch": epochs if reached is None else reached}
    return Run(Path("runs/mnist1d") / f"run-{delta:g}-{seed}", config, PROVENANCE, status, pd.DataFrame(),
               pd.DataFrame())


def test_at_paper_scale_names_the_groups_with_the_papers_network_on_a_whole_training_set():
    def resnet(width, per_class=None, group="g", ufm=False):
        run = hand_run(reached=20, width=width, ufm=ufm)
        run.config.update(model="resnet18", train_per_class=per_class)
        run.path = Path("runs") / group / run.name
        return run
    held_out = resnet(64, group="held-out")
    held_out.config["holdout_per_class"] = 100
    runs = [resnet(None), resnet(64, group="h"), resnet(16, group="narrow"), resnet(64, 500, group="subset"),
            resnet(64, group="ufm", ufm=True), held_out, hand_run()]
    assert sorted(describe.at_paper_scale(runs)) == ["g", "h"]
    text = describe.paper_scale_text(runs)
    assert "`g` (" in text and "resnet18 (width 64)" in text and "epochs 0–20 of the 800-epoch recipe" in text
    assert "narrow" not in text and "subset" not in text and "ufm" not in text and "held-out" not in text
    assert describe.paper_scale_text(runs[2:4]).startswith("No group here")


def test_describe_run_complete_and_prefix():
    full = hand_run(0.05, 3)
    assert not full.is_prefix
    assert describe.describe_run(full) == ("MNIST-1D [train 4000, test 1000, holdout 200], mlp (3 hidden layers, "
                                        "width 256), LS δ=0.05, 800 epochs, seed 3")
    prefix = hand_run(0.0, 1, reached=40)
    assert prefix.is_prefix and prefix.epochs_reached == 40
    text = describe.describe_run(prefix)
    assert "epochs 0–40 of the 800-epoch recipe" in text and "800 epochs" not in text and ", CE," in text
    assert "UFM-style" in describe.describe_run(hand_run(0.1, ufm=True))
    assert describe.model_text({"model": "resnet18", "width": None}) == "resnet18 (width 64)"  # the paper's default
    assert describe.model_text({"model": "resnet50"}) == "resnet50 (width 64)"
    assert describe.model_text({"model": "vgg11", "width": None}) == "vgg11"
    # with a run whose provenance recorded the classes and input shape: the parameter count of what was built
    cifar = type("R", (), {"provenance": {"dataset": {"num_classes": 10, "input_shape": [3, 32, 32]}}})()
    assert describe.model_text({"model": "resnet18", "width": 16}, cifar) == "resnet18 (width 16, 0.70M parameters)"
    assert describe.model_text({"model": "resnet18", "width": 16}, hand_run()) == "resnet18 (width 16)"
    cifar.provenance = {**cifar.provenance, "training": {"model": {"parameters": 1_234_567}}}   # as built, recorded
    assert describe.model_text({"model": "resnet18", "width": 16}, cifar) == "resnet18 (width 16, 1.23M parameters)"
    # a running run at epoch 40 is not a finished prefix
    assert comparable.reach(hand_run(reached=40, status="running")).text == "800 epochs"


def test_epochs_and_seeds_text():
    assert describe.epochs_text([hand_run(), hand_run(seed=1)]) == "800 epochs"
    assert describe.epochs_text([hand_run(epochs=50), hand_run(epochs=150)]) == "50, 150 epochs"
    mixed = describe.epochs_text([hand_run(), hand_run(reached=40), hand_run(seed=1, reached=40)])
    assert mixed == "800 epochs and epochs 0–40 of the 800-epoch recipe"
    assert describe.seeds_text([2, 0, 1, 3]) == "0–3"
    assert describe.seeds_text([0, 1]) == "0, 1" and describe.seeds_text([0, 2, 5]) == "0, 2, 5"
    assert describe.seeds_text([]) == "none"


def test_group_line_names_data_model_epochs_and_seeds():
    ce, ls = paper_like()
    line = describe.group_line(ce + ls + [fake_run(0.1, 0, 2.0), fake_run(0.05, 0, 2.0, ufm=True)])
    assert line.startswith("Fake data [train 100], mlp (3 hidden layers, width 8), 40 epochs")
    assert "CE seeds 0–2" in line and "LS δ=0.05 seeds 0–2" in line
    assert "δ sweep {0, 0.05, 0.1}, its other δ on seeds {0}" in line and "UFM-style δ {0.05}" in line
    assert "8 finished runs" in line
    # a sweep whose δ values have different seeds names each set
    line = describe.group_line(ce + ls + [fake_run(d, s, 2.0) for d, seeds in ((0.1, (0, 1)), (0.5, (0,)))
                                       for s in seeds])
    assert "δ sweep {0, 0.05, 0.1, 0.5}, its other δ on seeds {0, 1} (δ 0.1), {0} (δ 0.5)" in line
    prefix = describe.group_line([hand_run(0.0, s, reached=40) for s in (0, 1)] + [hand_run(0.05, 0, reached=40)])
    assert "epochs 0–40 of the 800-epoch recipe" in prefix and "CE seeds 0, 1, LS δ=0.05 seeds 0" in prefix


def test_caption_and_table_of_a_prefix_run():
    runs = [hand_run(0.0, 0, reached=40), hand_run(0.05, 0, reached=40)]
    text = caption(runs, "test")
    assert "mlp (3 hidden layers, width 256), epochs 0–40 of the 800-epoch recipe, SGD lr 0.05" in text
    assert "seeds {0}" in text and "δ ∈ {0, 0.05}" in text
    table = scales_table(runs)
    assert table["epochs"].tolist() == ["epochs 0–40 of the 800-epoch recipe"] and table["runs"].tolist() == [2]
    assert scales_table([hand_run()])["epochs"].tolist() == [800]


def test_scales_table_names_the_seeds_of_each_delta_where_they_differ():
    runs = [hand_run(d, s) for d in (0.0, 0.05) for s in range(4)] + [hand_run(0.1, s) for s in (0, 1, 3)]
    assert scales_table(runs)["seeds"].tolist() == ["{0–3} (δ 0, 0.05), {0, 1, 3} (δ 0.1)"]
    assert scales_table(runs[:8])["seeds"].tolist() == ["{0–3}"]


@pytest.mark.skipif(not (REPO_ROOT / "runs" / "mnist1d").is_dir(), reason="needs the committed MNIST-1D runs")
def test_prefix_from_an_edited_status_json(tmp_path):
    """A committed run whose status.json says it stopped at an evaluated epoch before the recipe's last."""
    src = REPO_ROOT / "runs" / "mnist1d" / "ce-mlpw256-s0"
    dst = tmp_path / "mnist1d" / src.name
    dst.mkdir(parents=True)
    for name in ("config.json", "provenance.json", "status.json", "metrics.csv", "epochs.csv"):
        shutil.copy(src / name, dst / name)
    status = json.loads((dst / "status.json").read_text())
    recipe = json.loads((dst / "config.json").read_text())["epochs"]
    status.update(epoch=recipe // 3, stopped_by="time_budget")
    (dst / "status.json").write_text(json.dumps(status))
    run = load_run(dst)
    assert run.is_prefix and find_runs(tmp_path) != []
    wording = f"epochs 0–{recipe // 3} of the {recipe}-epoch recipe"
    assert wording in describe.describe_run(run)
    assert wording in book.group_lines(find_runs(tmp_path))["mnist1d"]
    assert wording in caption(find_runs(tmp_path))
    assert f"{recipe} epochs" not in caption(find_runs(tmp_path))



def test_claims_compare_a_prefix_with_complete_runs_only_at_a_common_epoch():
    """A prefix without its CE partner would pull the comparison back to its epoch for no pair: skipped."""
    from lsnc.book import claims

    def with_metrics(run, delta, seed):
        return Run(run.path.parent / f"{'prefix-' if run.is_prefix else ''}{delta:g}-s{seed}", run.config,
                   run.provenance, run.status, fake_run(delta, seed, fast=2.0).metrics, run.epochs)

    complete = [with_metrics(hand_run(d, s), d, s) for d in (0.0, 0.05) for s in (0, 1)]
    prefix = with_metrics(hand_run(0.05, 2, reached=40), 0.05, 2)
    comp = claims.select_comparison(complete + [prefix])
    assert sorted(comp.ce) == [0, 1] and sorted(comp.ls) == [0, 1]
    epochs = complete[0].config["epochs"]
    assert comp.notes[0].startswith(f"all compared at epoch {epochs} of the {epochs}-epoch recipe")
    assert comp.notes[0].endswith(f"; skipped {prefix.name} (stopped at epoch 40)")
    assert all(r.epochs_reached == epochs for r in comp.runs)


def test_pool_text_tells_subsets_of_different_pools_apart():
    import copy

    run = hand_run()
    assert describe.pool_text(run) == ""  # no pool recorded
    whole, sub = copy.deepcopy(PROVENANCE), copy.deepcopy(PROVENANCE)
    whole["dataset"].update(sizes={"train": 3800, "test": 1000, "holdout": 200}, pool_sizes={"train": 4000, "test": 1000})
    sub["dataset"].update(sizes={"train": 4000, "test": 1000, "holdout": 200}, pool_sizes={"train": 20000, "test": 5000})
    run.provenance = whole
    assert describe.pool_text(run) == ""  # the whole pool: nothing to say
    run.provenance = sub
    assert describe.pool_text(run) == "drawn from 20000 train / 5000 test"
    assert ("holdout 200] drawn from 20000 train / 5000 test, mlp (3 hidden layers, width 256)"
            in describe.describe_setting([run]))
    assert "holdout 200 samples, drawn from 20000 train / 5000 test; " in describe.provenance_line([run])


def test_setting_key_leaves_out_only_what_varies():
    """Runs compare when everything but δ, seed, group and how far they got is equal; ``vary`` frees one axis."""
    base = hand_run(0.0, 0)
    assert comparable.setting_key(base) == comparable.setting_key(hand_run(0.05, 3, reached=100))  # δ, seed, prefix
    elsewhere = hand_run()
    elsewhere.path = Path("runs/another-group") / elsewhere.path.name
    assert elsewhere.dataset == "another-group" and comparable.setting_key(elsewhere) == comparable.setting_key(base)
    sparse = hand_run()
    sparse.config["eval_epochs"] = [0, 400, 800]  # evaluated at other epochs: compared only along the length
    assert comparable.setting_key(sparse) != comparable.setting_key(base)
    assert comparable.setting_key(sparse, vary="epochs") == comparable.setting_key(base, vary="epochs")
    longer = hand_run(epochs=1600)
    longer.config["milestones"] = [560, 1320]  # the decays at the same fractions of training
    assert comparable.setting_key(longer) != comparable.setting_key(base)
    assert comparable.setting_key(longer, vary="epochs") == comparable.setting_key(base, vary="epochs")
    wider = hand_run(width=1024)
    assert comparable.setting_key(wider) != comparable.setting_key(base)
    assert comparable.setting_key(wider, vary="width") == comparable.setting_key(base, vary="width")
    assert comparable.setting_key(wider, vary="epochs") != comparable.setting_key(base, vary="epochs")
    twin = hand_run()
    twin.config.update(amp="bf16")
    assert comparable.setting_key(twin) != comparable.setting_key(base)
    assert comparable.setting_key(twin, vary="precision") == comparable.setting_key(base, vary="precision")
    other_lr = hand_run()
    other_lr.config["lr"] = 0.1
    assert all(comparable.setting_key(other_lr, vary=a) != comparable.setting_key(base, vary=a)
               for a in comparable.SETTING_AXES)
    with pytest.raises(ValueError, match="vary must be"):
        comparable.setting_key(base, vary="delta")


def test_machines_table_groups_runs_by_the_machine_that_computed_them(tmp_path):
    from lsnc.book.describe import machines_table
    from lsnc.presets import preset_config
    from lsnc.runs import load_run
    from lsnc.training import train
    runs = [load_run(train(preset_config("smoke", threads=1, seed=s), tmp_path, progress=False)) for s in (0, 1)]
    runs[1].provenance["device"] = {"type": "cpu", "threads": 1}  # an older run: processor not recorded
    table = machines_table(runs)
    assert list(table["runs"]) == [1, 1] and list(table["seeds"]) == ["0", "1"]
    assert table["machine"].iloc[0].endswith(f"({runs[0].provenance['device']['cpu_capability']}), 1 thread")
    assert table["machine"].iloc[1] == "cpu (processor not recorded), 1 thread"
    assert machines_table([]).empty


def test_recipe_table_reads_the_built_recipe_and_checks_it_against_the_config(tmp_path):
    from lsnc.book.describe import NOT_RECORDED, built_recipe, recipe_table
    from lsnc.presets import preset_config
    from lsnc.runs import load_run
    from lsnc.training import train_many
    folders = train_many([preset_config("smoke", threads=1, delta=d, seed=3) for d in (0.0, 0.1)], tmp_path,
                         progress=False)
    runs = [load_run(p) for p in folders]
    table = recipe_table(runs)
    assert len(table) == 1 and table["runs"].iloc[0] == 2 and table["seeds"].iloc[0] == "3"
    row = table.iloc[0]
    assert row["trained"] == "fused (K=2)" and row["agrees with config.json"] == "yes"
    assert row["optimizer"] == "SGD lr 0.05, momentum 0.9, weight decay 0.0005 on 14 of 14 parameter tensors"
    assert row["lr schedule"].startswith("×0.1 at epochs 2, stepped once per epoch")
    assert row["batches"].startswith("16, the incomplete last one dropped")
    runs[0].config["lr"], runs[0].config["milestones"] = 0.1, [5]   # a config that says what was not built
    assert built_recipe(runs[0])["agrees with config.json"] == ("lr 0.05 built, 0.1 in config.json; "
                                                                 "milestones [2] built, [5] in config.json")
    assert len(recipe_table(runs)) == 2
    del runs[1].provenance["training"]            # a run trained before the block: no row, and it says so
    assert len(recipe_table(runs)) == 1 and set(built_recipe(runs[1]).values()) == {NOT_RECORDED}
    assert recipe_table([]).empty


def test_exactly_the_setting_fields_change_the_setting_key():
    """setting_key changes with every TrainConfig field of the role "setting" and with no other (δ and seed, how the
    run executed, where things live, when it stopped): a field added later is compared or not by its declared
    role. Leaving out an axis leaves out exactly that axis's fields."""
    import dataclasses

    from lsnc.config import TrainConfig, fields_with
    from lsnc.presets import preset_config

    base = preset_config("cpu-cifar10").to_dict()
    run = type("R", (), {"label": "CIFAR-10 (JPEG copy)", "dataset": "g"})

    def changed(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, (int, float)):
            return value * 2 + 1
        if isinstance(value, str):
            return value + "x"
        if isinstance(value, list):
            return [1, 2] if not value or value == sorted(value) else value[::-1]
        return {**value, "x": 1} if isinstance(value, dict) else [1, 2]   # None: e.g. eval_epochs given

    def key(config, vary=None):
        r = run()
        r.config = config
        return comparable.setting_key(r, vary)

    def changing(vary=None):
        return {f.name for f in dataclasses.fields(TrainConfig)
                if key({**base, f.name: changed(base.get(f.name))}, vary) != key(base, vary)}

    setting = set(fields_with("setting"))
    assert changing() == setting
    assert {"delta", "seed", "device", "name", "stop_epoch"}.isdisjoint(setting) and {"tf32", "amp"} <= setting
    axis_of = {f.name: f.metadata["axis"] for f in dataclasses.fields(TrainConfig)}
    for axis in comparable.SETTING_AXES:
        left_out = {n for n in setting if axis_of[n] == axis}
        # along the length axis the lr decays count as fractions of the epochs, so a new length with the same
        # decay epochs is still another schedule
        assert changing(axis) == setting - left_out | ({"epochs"} if axis == "epochs" else set()), axis
    assert {axis_of["epochs"], axis_of["eval_epochs"], axis_of["train_per_class"]} == {"epochs", "train images"}
    from lsnc.book.scale import SCALE_AXES
    assert all(axis_of[field] == axis for axis, (field, *_) in SCALE_AXES.items())   # each page axis: its field
