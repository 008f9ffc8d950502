from lsnc.orchestrate.reproduce import reproduce, reproduction_runs


def test_smoke_reproduction_trains_then_skips_everything(tmp_path):
    lines: list[str] = []
    assert reproduce("smoke", tmp_path, progress=False, log=lines.append) == 0
    assert "trained: 3" in lines
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("metrics.csv")}
    assert len(before) == 3
    lines.clear()
    assert reproduce("smoke", tmp_path, progress=False, log=lines.append) == 0
    assert "skipped (done): 3" in lines and "trained: 0" in lines
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("metrics.csv")} == before  # nothing rewritten


def test_cpu_reproduction_matrix():
    names = [s.config().name for s in reproduction_runs("cpu")]
    assert len(names) == len(set(names))  # no two runs share a folder
    assert sum(n.startswith("ce-resnet18w16") for n in names) == 4  # CE seeds 0-3 on CIFAR
    assert sum("-ufm-" in n for n in names) == 6
    assert sum("bf16" in n for n in names) == 6
