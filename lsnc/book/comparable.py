"""Which runs can be compared, and at which epoch: the one home of that choice for every page.

* :func:`reach` / :class:`Reach`: how far a run went in its recipe (a finished *prefix* stopped before the end);
* :class:`UpTo`: a run seen as it was at an earlier evaluated epoch, and :func:`align_prefixes` /
  :func:`common_epoch`: prefixes of one recipe that stopped at different epochs, cut to one epoch they all reached;
* :func:`setting_key`: what two runs must share, besides δ and seed, to be compared (``vary`` leaves out one scale
  axis, or the precision);
* :func:`main_precision`, :func:`in_main_precision`, :func:`standard_runs`: the runs the figures and the claims
  compare (the paper's kind of training in each group's main precision; UFM-style runs and precision twins are
  compared elsewhere).

Describing the runs in words is :mod:`.describe`'s job; the claims' CE / LS pairs are :mod:`.claims`'
(``select_comparison``), built on these.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..config import TrainConfig, field_defaults, fields_with
from ..models import model_width


@dataclass(frozen=True)
class Reach:
    """How far a run went in its recipe: ``reached`` of ``epochs`` (equal for a complete run)."""

    reached: int
    epochs: int
    prefix: bool

    @property
    def text(self) -> str:
        if self.prefix:
            return f"epochs 0–{self.reached} of the {self.epochs}-epoch recipe"
        return f"{self.epochs} epochs"


def reach(run) -> Reach:
    """The run's :class:`Reach`, from ``Run.epochs_reached`` / ``Run.is_prefix`` (complete when absent)."""
    epochs = int(run.config["epochs"])
    return Reach(int(getattr(run, "epochs_reached", epochs)), epochs, bool(getattr(run, "is_prefix", False)))


class UpTo:
    """A run seen as it was at an earlier evaluated ``epoch`` of its recipe: its tables cut there. A prefix of a
    recipe *is* the recipe's run up to its last epoch, so this is exactly the state a shorter run of the same
    recipe, seed and δ records at that epoch. Everything else reads through to the run."""

    def __init__(self, run, epoch: int):
        self.run, self.epochs_reached = run, int(epoch)
        self.is_prefix = self.epochs_reached < int(run.config["epochs"])
        self.metrics = _cut(run.metrics, epoch)
        self.epochs = _cut(getattr(run, "epochs", None), epoch)

    def __getattr__(self, name):
        if name == "run":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.run, name)


def _cut(table: pd.DataFrame | None, epoch: int) -> pd.DataFrame | None:
    if table is None or table.empty or "epoch" not in table.columns:
        return table
    return table[pd.to_numeric(table["epoch"], errors="coerce") <= epoch].reset_index(drop=True)


@dataclass
class Aligned:
    """Runs of one recipe cut to one epoch (:func:`align_prefixes`)."""

    runs: list            # the kept runs, each seen up to ``epoch`` (:class:`UpTo` where it went further)
    skipped: list         # the runs that stopped before ``epoch``
    epoch: int | None     # None when every run reached the same epoch (nothing was cut)
    reached: tuple[int, int] = (0, 0)   # the earliest and latest epochs the runs reached

    @property
    def note(self) -> str:
        """What was done, for a caption or a claims note ("" when nothing was cut)."""
        if self.epoch is None:
            return ""
        epochs = int(self.runs[0].config["epochs"]) if self.runs else 0
        skipped = "".join(f"; skipped {r.name} (stopped at epoch {reach(r).reached})" for r in self.skipped)
        return (f"all compared at epoch {self.epoch} of the {epochs}-epoch recipe, the last evaluated epoch every "
                f"compared run reached (the runs reached epochs {self.reached[0]}-{self.reached[1]}){skipped}")


def align_prefixes(runs: Sequence[Any], per_seed: int | None = None) -> Aligned:
    """Runs that are prefixes of one recipe and stopped at different epochs (GPU windows of different lengths), made
    comparable: each is cut at one epoch they reached (a prefix *is* the recipe's run up to its end, so the cut is what
    a shorter run records there). A seed is complete at an epoch when ``per_seed`` of its runs reached it (default: one
    run per δ among ``runs``, 2 for CE-LS pairs; every page uses the default). The epoch is the latest one that keeps
    at least half of the complete seeds the best epoch keeps, and at least two where any epoch has two: the paper's
    claims are about the end of training, so a short pair (a GPU window's last minutes) does not hold two longer ones
    back, while many seeds are not given up for a single long one. A run without its partners does not hold the others
    back. Runs that stopped earlier are skipped."""
    reached = {id(r): reach(r).reached for r in runs}
    if per_seed is None:
        per_seed = len({float(r.config["delta"]) for r in runs})
    if len(set(reached.values())) <= 1:
        return Aligned(list(runs), [], None, (min(reached.values(), default=0), max(reached.values(), default=0)))
    by_seed: dict[Any, list] = {}
    for r in runs:
        by_seed.setdefault(r.config.get("seed"), []).append(r)

    def complete(h):
        return sum(1 for rs in by_seed.values() if sum(reached[id(r)] >= h for r in rs) >= per_seed)
    best = max(complete(h) for h in reached.values())
    need = max(min(2, best), math.ceil(best / 2))
    h = max(h for h in set(reached.values()) if complete(h) >= need)
    # where a time budget stopped a run off the evaluation schedule, h may be an epoch the longer runs have no row
    # for: cut at the latest epoch every run that reaches it evaluated (which may take in runs that stopped
    # between the two, so again until it holds)
    cut = h
    while True:
        longer = [r for r in runs if reached[id(r)] >= cut]
        again = common_epoch(longer, cut)
        if again == cut:
            break
        cut = again
    kept = [UpTo(r, cut) if reached[id(r)] > cut else r for r in longer]
    return Aligned(kept, [r for r in runs if reached[id(r)] < cut], cut,
                   (min(reached.values()), max(reached.values())))


def common_epoch(runs: Sequence[Any], upto: int) -> int:
    """Where to cut ``runs`` at epoch ``upto`` so that all end on the same metrics row: ``upto`` where their last
    rows up to it agree (or a run has no table), else the latest epoch before it at which every run has a row.
    The rows are the evaluated epochs (config.json's ``eval_epochs``) and, for a prefix a time budget stopped, its
    last epoch, on the schedule or not (lsnc.runs.format)."""
    rows = []
    for r in runs:
        table = getattr(r, "metrics", None)
        if table is None or table.empty or "epoch" not in table.columns:
            return int(upto)
        rows.append({int(e) for e in pd.to_numeric(table["epoch"], errors="coerce").dropna() if e <= upto})
    if len({max(e, default=-1) for e in rows}) <= 1:
        return int(upto)
    common = set.intersection(*rows)
    return max(common) if common else int(upto)


#: the axes :func:`setting_key` can leave out: a scale axis of the claims page, or the precision (bf16 twins). Each
#: is the ``axis`` of some setting fields in lsnc.config.TrainConfig.
_AXIS = {f.name: f.metadata["axis"] for f in dataclasses.fields(TrainConfig)}
SETTING_AXES = tuple(dict.fromkeys(axis for axis in _AXIS.values() if axis))
_DEFAULTS = field_defaults()
_SETTING = [(name, _AXIS[name], _DEFAULTS[name]) for name in fields_with("setting")]


def setting_key(run, vary: str | None = None) -> tuple:
    """What two runs must share, besides δ and seed, to be compared (in any run group: the group's name is not
    part of it): the run's data label (which names an image folder's or copy's source) and every field of the role
    ``setting`` (lsnc.config.ROLES): the data and its subsets, the model and its width, the recipe (epochs, lr
    schedule, evaluated epochs, optimizer, weight decay, batch), UFM-style or not (and its penalties), and the
    precision (autocast, TF32). A field an older run's config.json lacks counts as its default, which is what that
    run did. How far a run got in its recipe is not part of it (a prefix is compared at an epoch all reached,
    :func:`align_prefixes`); neither is how it executed (fused, CUDA graphs, channels-last).

    ``vary`` leaves out the fields of one axis (:data:`SETTING_AXES`): ``"epochs"`` (the length and the evaluated
    epochs; the lr decays then count as fractions of training, to one decimal), ``"width"``, ``"train images"``
    (training images per class), ``"depth"`` (the network: ResNet-18 against ResNet-50) or ``"precision"``
    (autocast and TF32: a bf16-autocast run and its fp32 or TF32 twin). The claims compare CE and LS on one key; the
    scale comparisons and the precision table vary one thing."""
    if vary not in (None, *SETTING_AXES):
        raise ValueError(f"vary must be None or one of {SETTING_AXES}; got {vary!r}")
    c = run.config
    return (run.label, *(_setting_value(c, name, default, vary) for name, axis, default in _SETTING if axis != vary))


def _setting_value(config: dict, name: str, default, vary: str | None):
    """One setting field of ``config`` as :func:`setting_key` compares it."""
    value = config.get(name, default)
    if name == "epochs":
        return int(value)
    if name == "milestones":
        # along the length axis the decays sit at about the same fractions of training (the CPU presets round them
        # to whole epochs: 9/50 and 28/150 are both 0.2)
        epochs = config.get("epochs", _DEFAULTS["epochs"])
        return tuple(round(m / epochs, 1) for m in value or ()) if vary == "epochs" else tuple(value or ())
    if name == "width":
        return model_width(config.get("model", _DEFAULTS["model"]), value)  # None is the model's default width
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, list):
        return tuple(value)
    return bool(value) if isinstance(default, bool) else value


def main_precision(runs: Iterable) -> dict[str, str]:
    """Per run group, the autocast (``config["amp"]``: "none" or "bf16") that trained the most epochs over its
    standard (not UFM-style) runs (each run counts the epochs it reached, :func:`reach`); on a tie, and for a group
    without standard runs, "none". A CPU group's bf16 runs are a few twins of its fp32 runs (complete runs of one
    length, so fewer epochs). (The GPU windows put a bf16 set in a group of its own, ``…-gpu-bf16``, so both
    precisions are shown there; its twins are in the TF32 group, device/README.md.)"""
    epochs: dict[str, Counter] = {}
    for r in runs:
        if not r.config.get("ufm"):
            epochs.setdefault(r.dataset, Counter())[r.config.get("amp", "none")] += reach(r).reached
    return {group: max(c, key=lambda amp: (c[amp], amp == "none")) for group, c in epochs.items()}


def in_main_precision(runs: Iterable) -> list:
    """The runs in their group's :func:`main_precision` (UFM-style runs: fp32, as they are trained); the other
    precision's runs are twins, compared with them (``vary="precision"`` of :func:`setting_key`) on the runs page."""
    runs = list(runs)
    main = main_precision(runs)
    return [r for r in runs if r.config.get("amp", "none") ==
            ("none" if r.config.get("ufm") else main.get(r.dataset, "none"))]


def standard_runs(runs: Iterable) -> list:
    """The paper's kind of training, which the figures, the claims and the scale comparisons compare: not UFM-style
    (no explicit feature penalty; those have their own figure), in its group's main precision
    (:func:`in_main_precision`)."""
    return [r for r in in_main_precision(runs) if not r.config.get("ufm")]
