"""lsnc compare: a rerun against the runs it should reproduce (lsnc.runs.compare)."""

import json

import pandas as pd

from lsnc.cli import main
from lsnc.presets import preset_config
from lsnc.runs import load_run
from lsnc.runs.compare import compare_folders, compare_runs, machine
from lsnc.runs.format import METRICS_FILE
from lsnc.training import train


def _train(root, **kw):
    return train(preset_config("smoke", threads=1, **kw), root, progress=False)


def test_the_same_seed_is_identical_and_a_prefix_is_its_run_up_to_where_it_stopped(tmp_path, capsys):
    full = _train(tmp_path / "a")
    again = _train(tmp_path / "b")
    prefix = _train(tmp_path / "c", stop_epoch=1)
    same = compare_runs(load_run(full), load_run(again))
    assert same.verdict == "identical" and same.values > 100 and not same.config_diff
    cut = compare_runs(load_run(full), load_run(prefix))
    assert cut.verdict == "identical" and cut.epochs == (3, 1) and not cut.config_diff  # stop_epoch is not the run
    assert "epochs reached 3 against 1, compared up to 1" in cut.line()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "1 pair: 1 identical, 0 close, 0 differs, 0 incomplete" in capsys.readouterr().out


def test_another_seed_differs_and_the_command_fails(tmp_path, capsys):
    a, b = _train(tmp_path / "a"), _train(tmp_path / "b", seed=1)
    result = compare_runs(load_run(a), load_run(b))
    assert result.verdict == "differs" and result.config_diff["seed"] == (0, 1)
    assert "config differs in seed (0 against 1)" in result.line() and "largest relative difference" in result.line()
    assert main(["compare", str(a), str(b)]) == 1  # two run folders: compared whatever their names


def test_a_key_an_older_config_lacks_is_its_default_and_a_column_only_one_logs_is_named(tmp_path):
    a, b = _train(tmp_path / "a"), _train(tmp_path / "b")
    config = json.loads((b / "config.json").read_text())
    del config["tf32"], config["cuda_graphs"]  # options added after the run was trained; it ran with their default
    (b / "config.json").write_text(json.dumps(config))
    metrics = pd.read_csv(b / METRICS_FILE, float_precision="round_trip").drop(columns=["train_nc3_duality"])
    metrics.to_csv(b / METRICS_FILE, index=False)
    result = compare_runs(load_run(a), load_run(b))
    assert result.verdict == "identical" and not result.config_diff
    assert result.only_a == ["metrics:train_nc3_duality"] and "only the first logs metrics:train_nc3_duality" in \
        result.line()


def test_tolerances_tell_close_from_differs(tmp_path):
    a, b = _train(tmp_path / "a"), _train(tmp_path / "b")
    metrics = pd.read_csv(b / METRICS_FILE, float_precision="round_trip")
    metrics.loc[2, "test_ece20"] *= 1 + 1e-9
    metrics.to_csv(b / METRICS_FILE, index=False, float_format="%.17g")
    exact = compare_runs(load_run(a), load_run(b))
    assert exact.verdict == "differs" and exact.largest[:2] == ("metrics:test_ece20", int(metrics.loc[2, "epoch"]))
    assert compare_runs(load_run(a), load_run(b), rtol=1e-6).verdict == "close"


def test_groups_are_paired_by_name_and_the_unpaired_listed(tmp_path, capsys):
    _train(tmp_path / "a"), _train(tmp_path / "a", seed=1), _train(tmp_path / "b", group="rerun")
    pairs, only_a, only_b = compare_folders(tmp_path / "a" / "synthetic", tmp_path / "b" / "rerun")
    assert [c.name for c in pairs] == ["synthetic/ce-mlpw32-s0 against rerun/ce-mlpw32-s0"]
    assert only_a == ["ce-mlpw32-s1"] and not only_b and pairs[0].verdict == "identical"
    _train(tmp_path / "b")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0  # runs folders pair the same way
    assert "only in" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2
    assert "no run in" in capsys.readouterr().err


def test_provenance_names_the_processor_that_rounds_a_cpu_run(tmp_path):
    run = load_run(_train(tmp_path))
    device = run.provenance["device"]
    assert device["cpu"] and device["cpu_capability"]
    assert machine(run) == f"cpu {device['cpu']} ({device['cpu_capability']}), 1 thread"
    del run.provenance["device"]["cpu"]
    assert machine(run) == "cpu (processor not recorded), 1 thread"


def test_an_unfinished_or_empty_rerun_is_incomplete_not_identical(tmp_path, capsys):
    from lsnc.runs.format import write_status
    full, killed = _train(tmp_path / "a"), _train(tmp_path / "b")
    write_status(killed, "running", 1)  # killed after epoch 1: it agrees so far, but it is not a finished run
    (killed / "metrics.csv").write_text(",".join(pd.read_csv(full / METRICS_FILE).columns) + "\n"
                                        + (full / METRICS_FILE).read_text().splitlines()[1] + "\n")
    result = compare_runs(load_run(full), load_run(killed))
    assert result.verdict == "incomplete" and "status done against running" in result.line()
    assert result.largest is None and "largest" not in result.line()  # equal as far as both went: no difference
    assert main(["compare", str(full), str(killed)]) == 1
    write_status(killed, "failed", 0)
    (killed / "metrics.csv").write_text("")
    empty = compare_runs(load_run(full), load_run(killed))
    assert empty.verdict == "incomplete" and empty.values > 0  # the epochs table still compares
    (killed / "epochs.csv").write_text("")
    assert compare_runs(load_run(full), load_run(killed)).values == 0


def test_a_table_with_a_repeated_epoch_is_named_as_damaged(tmp_path):
    import pytest
    from lsnc.runs import RunError
    a, b = _train(tmp_path / "a"), _train(tmp_path / "b")
    rows = (b / METRICS_FILE).read_text().splitlines()
    (b / METRICS_FILE).write_text("\n".join(rows + rows[-1:]) + "\n")
    with pytest.raises(RunError, match="metrics.csv is damaged .an epoch appears twice"):
        compare_runs(load_run(a), load_run(b))


def test_a_resume_on_another_processor_warns_and_is_recorded(tmp_path):
    import warnings
    from lsnc.training import train as train_run
    cfg = preset_config("smoke", threads=1, stop_epoch=1)
    folder = train_run(cfg, tmp_path, progress=False)
    prov = json.loads((folder / "provenance.json").read_text())
    prov["device"].update(cpu="Another CPU", cpu_capability="AVX2")
    (folder / "provenance.json").write_text(json.dumps(prov))
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "status": "running"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_run(preset_config("smoke", threads=1), tmp_path, resume=True, progress=False)
    assert any("first epochs were trained on Another CPU (AVX2)" in str(w.message) for w in caught)
    run = load_run(folder)
    assert run.provenance["device"]["earlier_cpus"] == [{"cpu": "Another CPU", "cpu_capability": "AVX2"}]
    assert "(earlier epochs on Another CPU (AVX2))" in machine(run) and run.epochs_reached == 3


def test_page_tables_keep_their_ece_headers():
    from lsnc.book.summary import _page_header
    assert _page_header("test_ece20") == "ECE (20 bins)" and _page_header("test_ece15") == "ECE (15 bins)"
    assert _page_header("nc1_within_between") == "NC1" and _page_header("train_error") == "train error"
