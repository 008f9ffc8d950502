"""The README's code runs as written: a reader copies it."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks under the README's ``## section`` heading (up to the next ``## `` heading)."""
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end >= 0 else None], flags=re.S)


def test_using_the_metrics_snippet_runs_and_measures_in_eval_mode(capsys):
    (code,) = python_blocks("Using the metrics in your own work")
    namespace = {}
    exec(compile(code, f"{README}:Using the metrics", "exec"), namespace)
    metrics, model = namespace["metrics"], namespace["model"]
    assert not model.training  # BatchNorm read with its running statistics, not each batch's
    assert metrics["num_samples"] == 256 and metrics["ncc_samples_used"] == 256
    assert "tr(Sigma_W Sigma_B^+)" in capsys.readouterr().out
