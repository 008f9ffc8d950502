"""Which runs a page draws: :func:`select` returns a :class:`Selection`, empty with a readable message (never a
traceback) when a dataset is unknown or nothing matches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..runs import Run, default_runs_dir, find_runs, runs_table
from ..vocab import CE_VS_LS
from .scale import fmt_list, seeds_text


class UnknownDataset(ValueError):
    """The dataset asked for has no finished runs; the message names those that have."""


@dataclass
class Selection:
    """The runs a page draws; empty with a ``message`` when nothing matches."""

    runs: list[Run]
    runs_dir: Path
    message: str | None = None
    datasets: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.runs)

    def note(self) -> None:
        """Display the message (Markdown) when the selection is empty or left a dataset out; nothing otherwise."""
        if self.message:
            from IPython.display import Markdown, display
            display(Markdown(f"> **{'Note.' if self.runs else 'Nothing to draw.'}** {self.message}"))

    def of(self, dataset: str) -> list[Run]:
        return [r for r in self.runs if r.dataset == dataset]

    def table(self, table: str = "metrics") -> pd.DataFrame:
        return runs_table(self.runs, table)

    def pick(self, dataset: str, deltas: Sequence[float] = CE_VS_LS, seed: int | None = None) -> list[Run]:
        """One run per delta (in the order of ``deltas``) for ``dataset``: the given seed, else the smallest
        seed that every delta has, else each delta's smallest seed."""
        runs = self.of(dataset)
        by_delta = {d: sorted((r for r in runs if np.isclose(r.config["delta"], d)), key=lambda r: r.config["seed"])
                    for d in deltas}
        by_delta = {d: rs for d, rs in by_delta.items() if rs}
        if seed is None:
            common = set.intersection(*[{r.config["seed"] for r in rs} for rs in by_delta.values()] or [set()])
            seed = min(common) if common else None
        out = []
        for rs in by_delta.values():
            match = [r for r in rs if r.config["seed"] == seed]
            out.append(match[0] if match else rs[0])
        return out


def _as_list(x) -> list | None:
    if x is None:
        return None
    if isinstance(x, (str, int, float)):
        return [x]
    return list(x)


def _filter(runs: list[Run], ufm: bool | None, deltas, seeds, amp: str | None) -> tuple[list[Run], list[str]]:
    """The runs that match, and words for the filters applied (for the message when none do)."""
    what = []
    if amp is not None:  # the figures use the paper's fp32 runs; bf16 runs are compared on the runs page
        runs = [r for r in runs if r.config.get("amp", "none") == amp]
    if ufm is not None:
        runs = [r for r in runs if bool(r.config.get("ufm")) == ufm]
        what.append("UFM-style" if ufm else "standard (not UFM-style)")
    if deltas is not None:
        runs = [r for r in runs if any(np.isclose(r.config["delta"], d) for d in deltas)]
        what.append(f"δ in {{{fmt_list(float(d) for d in deltas)}}}")
    if seeds is not None:
        runs = [r for r in runs if r.config["seed"] in set(seeds)]
        what.append(f"seed in {{{fmt_list(seeds)}}}")
    return runs, what


def select(dataset: str | Sequence[str] | None = None, runs_dir: str | Path | None = None, *, ufm: bool | None = False,
           deltas: Sequence[float] | None = None, seeds: Sequence[int] | None = None,
           min_deltas: int = 1, amp: str | None = "none") -> Selection:
    """Finished runs under ``runs_dir`` (None: the repository's runs/) for ``dataset`` (None: every dataset
    present; a name or a list of names), UFM-style or not (``ufm=None``: both), optionally only some deltas
    and seeds. Datasets with fewer than ``min_deltas`` distinct deltas are left out (e.g. a sweep figure).
    Never raises for an unknown dataset or an empty folder: the Selection is then empty and carries a
    message naming what is available."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    all_runs = find_runs(root)
    present = list(dict.fromkeys(r.dataset for r in all_runs))
    if not all_runs:
        return Selection([], root, f"No finished runs in `{root}`. Train them with `lsnc reproduce --preset cpu` "
                                   f"(or point `runs_dir` at a folder of runs).")
    try:
        wanted = resolve_datasets(root, dataset, present)
    except UnknownDataset as exc:
        return Selection([], root, str(exc))
    runs, what = _filter([r for r in all_runs if r.dataset in wanted], ufm, deltas, seeds, amp)
    skipped = {}
    if min_deltas > 1:
        for ds in wanted:
            n = len({r.config["delta"] for r in runs if r.dataset == ds})
            if n < min_deltas:
                skipped[ds] = f"`{ds}` ({n} δ value{'s' if n != 1 else ''} finished)"
        runs = [r for r in runs if r.dataset not in skipped]
    datasets = [d for d in present if any(r.dataset == d for r in runs)]
    message = None
    if not runs:
        message = (f"No finished {' '.join(what) or ''} runs for {fmt_list(wanted)} in `{root}`"
                   + (f" with at least {min_deltas} δ values" if min_deltas > 1 else "")
                   + f". Available: {_available(all_runs, wanted)}.")
    elif skipped:
        message = f"Left out (need at least {min_deltas} δ values): {', '.join(skipped)}."
    return Selection(runs, root, message, datasets)


def _available(all_runs: list[Run], datasets: Sequence[str]) -> str:
    parts = []
    for ds in datasets:
        rs = [r for r in all_runs if r.dataset == ds]
        std = [r for r in rs if not r.config.get("ufm")]
        ufm = [r for r in rs if r.config.get("ufm")]
        parts.append(f"`{ds}`: {len(std)} standard runs (δ {fmt_list(sorted({r.config['delta'] for r in std}))}; "
                     f"seeds {seeds_text(r.config['seed'] for r in std)}), {len(ufm)} UFM-style runs")
    return "; ".join(parts)


def resolve_datasets(runs_dir: str | Path, dataset, present: Sequence[str] | None = None) -> list[str]:
    """The dataset names asked for, checked against those with finished runs; raises UnknownDataset with a
    message listing the available names."""
    if present is None:
        present = list(dict.fromkeys(r.dataset for r in find_runs(runs_dir)))
    wanted = _as_list(dataset)
    if wanted is None:
        if not present:
            raise UnknownDataset(f"No finished runs in `{runs_dir}`.")
        return list(present)
    unknown = [d for d in wanted if d not in present]
    if unknown:
        raise UnknownDataset(f"Unknown dataset {fmt_list(repr(d) for d in unknown)}: no finished runs for it in "
                             f"`{runs_dir}`. Datasets available: {fmt_list(present) if present else 'none'}.")
    return [d for d in present if d in wanted]
