"""Which runs a page draws: :func:`select` returns a :class:`Selection` (empty, with a readable message, when a
known dataset has no matching runs) and raises :class:`UnknownDataset` for a dataset no run group holds.

**Dataset names.** A page's ``dataset`` parameter is what a reader types: ``cifar10``, ``CIFAR-10``,
``cifar10-jpeg``, ``mnist1d``, ``MNIST-1D``, or a run group's folder name. :func:`resolve_datasets` maps it to
the run groups (folders under runs/) whose runs are of that dataset, read from the runs themselves: the dataset
key in config.json (``cifar10-jpeg``), the label in provenance.json (``CIFAR-10 (JPEG copy)``) and the dataset
the label names before its parenthesis (``CIFAR-10``: the *family*, so ``cifar10`` selects every copy and scale
of CIFAR-10, e.g. ``runs/cifar10-jpeg/`` and a later ``runs/cifar10-jpeg-full-resnet18-gpu/``). Names compare
case-insensitively, ignoring every character that is not a letter or digit."""

from __future__ import annotations

from collections.abc import Sequence
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import portable_paths
from ..runs import Run, default_runs_dir, find_runs, runs_table
from ..vocab import CE_VS_LS
from .scale import fmt_list, seeds_text


class UnknownDataset(ValueError):
    """No run group holds the dataset asked for; the message (one line) names the datasets that have runs."""


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
    """Finished runs under ``runs_dir`` (None: the repository's runs/) for ``dataset`` (None: every run group
    present; a name a reader types, see the module, or a list of names), UFM-style or not (``ufm=None``: both),
    optionally only some deltas and seeds. Groups with fewer than ``min_deltas`` distinct deltas are left out
    (e.g. a sweep figure). Raises :class:`UnknownDataset` when no run group holds ``dataset``; otherwise an
    empty Selection carries a message naming what is available."""
    __tracebackhide__ = True  # noqa: F841 (IPython shows the notebook's line and the message, not these frames)
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    all_runs = find_runs(root)
    present = list(dict.fromkeys(r.dataset for r in all_runs))
    if not all_runs and dataset is None:
        return Selection([], root, f"No finished runs in `{shown_path(root)}`. Train them with `lsnc reproduce "
                                   f"--preset cpu` (or point `runs_dir` at a folder of runs).")
    wanted = resolve_datasets(root, dataset, present, runs=all_runs)
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
        message = (f"No finished {' '.join(what) or ''} runs for {fmt_list(wanted)} in `{shown_path(root)}`"
                   + (f" with at least {min_deltas} δ values" if min_deltas > 1 else "")
                   + f". Available: {_available(all_runs, wanted)}.")
    elif skipped:
        message = f"Left out (need at least {min_deltas} δ values): {', '.join(skipped)}."
    return Selection(runs, root, message, datasets)


def shown_path(path: str | Path) -> str:
    """``path`` as a reader should see it: relative to the repository (``runs``), never this machine's home."""
    return portable_paths(str(Path(path).resolve())) if Path(path).is_absolute() else str(path)


def _available(all_runs: list[Run], datasets: Sequence[str]) -> str:
    parts = []
    for ds in datasets:
        rs = [r for r in all_runs if r.dataset == ds]
        std = [r for r in rs if not r.config.get("ufm")]
        ufm = [r for r in rs if r.config.get("ufm")]
        parts.append(f"`{ds}`: {len(std)} standard runs (δ {fmt_list(sorted({r.config['delta'] for r in std}))}; "
                     f"seeds {seeds_text(r.config['seed'] for r in std)}), {len(ufm)} UFM-style runs")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------------
# dataset names a reader types -> run groups
# ------------------------------------------------------------------------------------------------
def _norm(name: object) -> str:
    """``CIFAR-10`` -> ``cifar10``: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def family(label: str) -> str:
    """The dataset a label names, without its copy note: ``CIFAR-10 (JPEG copy)`` -> ``CIFAR-10``."""
    return label.split("(")[0].strip() or label


def group_names(runs: Sequence[Run]) -> dict[str, set[str]]:
    """``{run group: the names that select it}`` (normalised): the folder name, each run's dataset key, its
    label and the label's family."""
    names: dict[str, set[str]] = {}
    for r in runs:
        label = str(r.label)
        names.setdefault(r.dataset, set()).update(
            _norm(n) for n in (r.dataset, r.config.get("dataset", r.dataset), label, family(label)) if _norm(n))
    return names


def available_datasets(runs: Sequence[Run]) -> str:
    """One line naming the datasets that have runs and their groups: ``cifar10 (CIFAR-10 (JPEG copy):
    runs/cifar10-jpeg), mnist1d (MNIST-1D: runs/mnist1d)``; "none" when there are no runs."""
    fams: dict[str, list[str]] = {}
    for r in runs:
        entry = f"{r.label}: {shown_path(r.path.parent)}"
        fams.setdefault(_norm(family(str(r.label))), [])
        if entry not in fams[_norm(family(str(r.label)))]:
            fams[_norm(family(str(r.label)))].append(entry)
    return ", ".join(f"{f} ({'; '.join(groups)})" for f, groups in fams.items()) or "none"


def resolve_datasets(runs_dir: str | Path, dataset, present: Sequence[str] | None = None,
                     runs: Sequence[Run] | None = None) -> list[str]:
    """The run groups (folders under ``runs_dir``) that ``dataset`` names (None: every group present; a name or
    a list of names, see the module), in folder order. Raises :class:`UnknownDataset`, a one-line message naming
    the datasets that have runs, when a name matches no group."""
    __tracebackhide__ = True  # noqa: F841
    if runs is None:
        runs = find_runs(runs_dir)
    if present is None:
        present = list(dict.fromkeys(r.dataset for r in runs))
    wanted = _as_list(dataset)
    if wanted is None:
        if not present:
            raise UnknownDataset(f"No finished runs in `{shown_path(runs_dir)}`.")
        return list(present)
    names = group_names([r for r in runs if r.dataset in present])
    groups: list[str] = []
    unknown = []
    for d in wanted:
        match = [g for g in present if _norm(d) in names.get(g, set())]
        if not match:
            unknown.append(d)
        groups += [g for g in match if g not in groups]
    if unknown:
        raise UnknownDataset(f"Unknown dataset {fmt_list(repr(d) for d in unknown)}: no finished runs for it in "
                             f"{shown_path(runs_dir)}/. Datasets with runs: {available_datasets(runs)}.")
    return [g for g in present if g in groups]
