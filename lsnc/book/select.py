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
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace
from pathlib import Path

import pandas as pd

from ..paths import portable_paths
from ..runs import Run, RunDamaged, RunError, damaged_runs, default_runs_dir, find_runs, read_json, runs_table
from ..runs.format import CONFIG_FILE, read_status
from ..vocab import CE_VS_LS, in_deltas, is_delta
from .comparable import in_main_precision
from .describe import as_runs, by_dataset, fmt_list, group_line, seeds_text


class UnknownDataset(ValueError):
    """No run group holds the dataset asked for; the message (one line) names the datasets that have runs."""


@dataclass
class Selection:
    """The runs a page draws; empty with a ``message`` when nothing matches. ``left_out``: the damaged runs
    the page would have drawn, as ``(folder as shown, what is wrong)`` (see :func:`damage_text`); every caption
    of a Selection and the page's note name them."""

    runs: list[Run]
    runs_dir: Path
    message: str | None = None
    datasets: list[str] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)
    #: the seeds and δ values the page's groups have (UFM / precision filters applied), for checking parameters
    seeds_present: list[int] = field(default_factory=list)
    deltas_present: list[float] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.runs)

    def left_out_text(self, runs=None) -> str:
        """``left out (damaged): runs/mnist1d/ls0.05-mlpw256-s3 (metrics.csv: ...)``; only the groups of
        ``runs`` when given; empty when nothing was left out."""
        groups = None if runs is None else {r.dataset for r in runs}
        items = [f"{folder} ({why})" for folder, why in self.left_out
                 if groups is None or Path(folder).parent.name in groups]
        if not items:
            return ""
        return f"left out ({'a damaged run' if len(items) == 1 else f'{len(items)} damaged runs'}): " + "; ".join(items)

    def note(self) -> None:
        """Display the message (Markdown) when the selection is empty or left a dataset out, and the damaged
        runs left out; nothing otherwise."""
        lines = []
        if self.message:
            lines.append(f"> **{'Note.' if self.runs else 'Nothing to draw.'}** {self.message}")
        if self.left_out:
            text = self.left_out_text()
            lines.append(f"> **Note.** {text[0].upper() + text[1:]}.")
        if lines:
            from IPython.display import Markdown, display
            display(Markdown("\n>\n".join(lines)))

    def of(self, dataset: str) -> list[Run]:
        return [r for r in self.runs if r.dataset == dataset]

    def table(self, table: str = "metrics") -> pd.DataFrame:
        return runs_table(self.runs, table)

    def pick(self, dataset: str, deltas: Sequence[float] = CE_VS_LS, seed: int | None = None) -> list[Run]:
        """One run per delta (in the order of ``deltas``) for ``dataset``: the given seed, else the smallest
        seed that every delta has, else each delta's smallest seed."""
        runs = self.of(dataset)
        by_delta = {d: sorted((r for r in runs if is_delta(r.config["delta"], d)), key=lambda r: r.config["seed"])
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
    if amp == "main":  # each group's main precision (fp32; bf16 where a GPU window trained in it)
        runs = in_main_precision(runs)
    elif amp is not None:
        runs = [r for r in runs if r.config.get("amp", "none") == amp]
    if ufm is not None:
        runs = [r for r in runs if bool(r.config.get("ufm")) == ufm]
        what.append("UFM-style" if ufm else "standard (not UFM-style)")
    if deltas is not None:
        runs = [r for r in runs if in_deltas(r.config["delta"], deltas)]
        what.append(f"δ in {{{fmt_list(float(d) for d in deltas)}}}")
    if seeds is not None:
        runs = [r for r in runs if r.config["seed"] in set(seeds)]
        what.append(f"seed in {{{fmt_list(seeds)}}}")
    return runs, what


def select(dataset: str | Sequence[str] | None = None, runs_dir: str | Path | None = None, *, ufm: bool | None = False,
           deltas: Sequence[float] | None = None, seeds: Sequence[int] | None = None,
           min_deltas: int = 1, amp: str | None = "main") -> Selection:
    """Finished runs under ``runs_dir`` (None: the repository's runs/) for ``dataset`` (None: every run group
    present; a name a reader types, see the module, or a list of names), UFM-style or not (``ufm=None``: both),
    optionally only some deltas and seeds. Groups with fewer than ``min_deltas`` distinct deltas are left out
    (e.g. a sweep figure). ``amp``: "main" keeps each group's main precision (:func:`.comparable.main_precision`: fp32,
    or bf16 where a GPU window trained in it), None every precision (the runs page, the claims), or one autocast
    value ("none", "bf16"). Raises :class:`UnknownDataset` when no run group holds ``dataset``; otherwise an
    empty Selection carries a message naming what is available."""
    __tracebackhide__ = True  # noqa: F841 (IPython shows the notebook's line and the message, not these frames)
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    all_runs = finished_runs(root)
    present = list(dict.fromkeys(r.dataset for r in all_runs))
    if not all_runs and dataset is None:
        return Selection([], root, f"No finished runs in `{shown_path(root)}`. Train them with `lsnc reproduce "
                                   f"--preset cpu` (or point `runs_dir` at a folder of runs).",
                         left_out=_left_out(root, None, ufm, deltas, seeds, amp))
    wanted = resolve_datasets(root, dataset, present, runs=all_runs)
    base, _ = _filter([r for r in all_runs if r.dataset in wanted], ufm, None, None, amp)
    runs, what = _filter(base, ufm, deltas, seeds, amp)
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
    else:
        parts = []
        if skipped:
            parts.append(f"Left out (need at least {min_deltas} δ values): {', '.join(skipped)}.")
        missing = [ds for ds in wanted if ds not in skipped and ds not in datasets]
        if missing and (deltas is not None or seeds is not None):
            parts.append(f"Left out (no finished {' '.join(what)} runs): "
                         + ", ".join(f"`{ds}` ({_available(all_runs, [ds])})" for ds in missing) + ".")
        present_deltas = sorted({float(r.config["delta"]) for r in base})
        absent = [float(d) for d in (deltas or []) if not in_deltas(d, present_deltas)]
        if absent:
            parts.append(f"No finished runs with δ {fmt_list(absent)} (δ with runs: {fmt_list(present_deltas)}).")
        message = " ".join(parts) or None
    groups = [ds for ds in wanted if ds not in skipped]
    return Selection(runs, root, message, datasets, left_out=_left_out(root, groups, ufm, deltas, seeds, amp),
                     seeds_present=sorted({int(r.config["seed"]) for r in base}),
                     deltas_present=sorted({float(r.config["delta"]) for r in base}))


def finished_runs(runs_dir: str | Path, status: str | None = "done") -> list[Run]:
    """:func:`lsnc.runs.find_runs` for a page: damaged runs are left out without a warning, because the page
    names them (:attr:`Selection.left_out`, shown in its note and captions)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunDamaged)
        return find_runs(runs_dir, status=status)


def damage_text(folder: Path, error: str) -> str:
    """What is wrong with a damaged run, said from inside its folder: ``metrics.csv: line 12 has the wrong
    number of fields: truncated?`` (``error``: the RunError message, which starts with the damaged file)."""
    prefix = f"{folder}/"
    if error.startswith(prefix):
        error = error[len(prefix):]
    name, sep, why = error.partition(" is damaged")
    if not sep:
        return error
    why = why.strip()
    if why.startswith(":"):
        why = why[1:].strip()
    elif why.startswith("(") and why.endswith(")"):
        why = why[1:-1]
    return f"{name}: {why}" if why else f"{name} damaged"


def _left_out(root: Path, groups: Sequence[str] | None, ufm, deltas, seeds, amp) -> list[tuple[str, str]]:
    """The damaged runs of ``groups`` (None: every group) that the page's filters would have kept, as (folder
    as shown, what is wrong); a run whose config.json cannot be read is always listed (it could match)."""
    out = []
    for folder, error in damaged_runs(root):
        if groups is not None and folder.parent.name not in groups:
            continue
        try:
            config = read_json(folder / CONFIG_FILE)
            status = read_status(folder) or {}
            if status.get("status") not in (None, "done"):  # not finished: no page would draw it anyway
                continue
            # a damaged run's group precision is not known here: "main" lists it whatever its precision
            if not _filter([SimpleNamespace(config=config)], ufm, deltas, seeds, None if amp == "main" else amp)[0]:
                continue
        except (RunError, KeyError, TypeError):
            pass
        out.append((shown_path(folder), damage_text(folder, error)))
    return out


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
    typed: dict[str, str] = {}  # the shortest name that selects the family's runs: its own, or a dataset key
    for r in runs:
        fam = _norm(family(str(r.label)))
        key = str(r.config.get("dataset", fam))
        typed[fam] = min(typed.get(fam, fam), key, key=len)
        entry = f"{r.label}: {shown_path(r.path.parent)}"
        if entry not in fams.setdefault(fam, []):
            fams[fam].append(entry)
    return ", ".join(f"{typed[f]} ({'; '.join(groups)})" for f, groups in fams.items()) or "none"


def resolve_datasets(runs_dir: str | Path, dataset, present: Sequence[str] | None = None,
                     runs: Sequence[Run] | None = None) -> list[str]:
    """The run groups (folders under ``runs_dir``) that ``dataset`` names (None: every group present; a name or
    a list of names, see the module), in folder order. Raises :class:`UnknownDataset`, a one-line message naming
    the datasets that have runs, when a name matches no group."""
    __tracebackhide__ = True  # noqa: F841
    if runs is None:
        runs = finished_runs(runs_dir)
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


def group_lines(runs) -> dict[str, str]:
    """``{dataset group: group_line}`` for ``runs`` (a Selection or a list; the claims page passes every finished
    run of its groups, UFM-style and bf16 ones included, which the lines count)."""
    return {g: group_line(rs) for g, rs in sorted(by_dataset(as_runs(runs)).items())}
