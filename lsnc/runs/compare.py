"""Do two run folders hold the same run? ``lsnc compare A B``.

For checking a reproduction against the committed runs: retrain into a scratch folder (``lsnc reproduce --preset
cpu --runs-dir /tmp/rerun --only mnist1d/``), then ``lsnc compare runs/mnist1d /tmp/rerun/mnist1d``.

Two runs are compared where both have something to say:

- config.json: every key but those that say where the data lives, what the folder is called and when a run stops
  (:data:`NOT_THE_RUN`; a prefix is the same run up to its last epoch); a key an older run's config lacks counts
  as the TrainConfig default, which is what that run did. Differing keys are listed (a GPU rerun of a CPU run
  differs in ``device``), and the tables are compared all the same;
- metrics.csv and epochs.csv: every numeric column both tables have, at every epoch both reached, except the wall
  clock (:data:`TIMING_COLUMNS`). Columns only one run logged (a metric added later) are listed, not compared.

The verdict is ``identical`` (every value equal to the last bit), ``close`` (within ``rtol``/``atol``, as
``numpy.isclose``) or ``differs`` (naming the column and epoch of the largest relative difference, one beyond the
tolerance first); ``incomplete`` where the values agree as far as both runs went but one of them is not finished
(running, killed, failed: not a finished prefix either) or no value could be compared.

Bit for bit is what to expect from the same code on the same kind of processor: lsnc seeds everything, and a CPU
run is deterministic. A different processor (another instruction set: AVX512 against AVX2; another CPU model, whose
math libraries take other code paths) or a GPU rounds differently from the first step; SGD amplifies that, and
after some epochs the rerun is another sample of the same recipe, as a new seed would be. So does training a run
fused with others (``--fuse``: grouped convolutions sum in another order). The line names both runs' processors
where they differ, with the epochs each trained fused (provenance.json's ``device`` and ``training``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import field_defaults, fields_with
from .format import CONFIG_FILE, TIMING_COLUMNS, Run, RunError, find_runs, load_run

#: config.json keys that do not change a run's numbers: where the data lives, the folder's name and group, the
#: preset it came from, and when it stops (a prefix's rows are the full run's rows): the roles ``where`` and
#: ``stop`` of lsnc.config.ROLES. How it executed is compared and listed (another device rounds differently).
NOT_THE_RUN = frozenset(fields_with("where", "stop"))
#: A config key an older run lacks took the default of the option added later.
_DEFAULTS = field_defaults()


@dataclass
class Comparison:
    """What :func:`compare_runs` found for one pair of runs."""

    name: str
    #: "identical" | "close" | "differs": the tables' values; "incomplete": they agree as far as both went, but a
    #: run is not finished (running, failed) and not a finished prefix either, or nothing could be compared
    verdict: str
    config_diff: dict[str, tuple] = field(default_factory=dict)
    values: int = 0  # numbers compared
    largest: tuple[str, int, float, float] | None = None  # (table:column, epoch, a, b): largest relative gap
    machines: tuple[str, str] | None = None  # the two runs' processors, where they differ
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    epochs: tuple[int, int] = (0, 0)  # epochs reached by a and b
    statuses: tuple[str, str] = ("done", "done")

    def line(self) -> str:
        text = f"{self.name}: {self.verdict} ({self.values} values"
        if self.statuses != ("done", "done"):
            text += f"; status {self.statuses[0]} against {self.statuses[1]}"
        if self.config_diff:
            text += "; config differs in " + ", ".join(f"{k} ({a!r} against {b!r})" for k, (a, b) in
                                                      self.config_diff.items())
        if self.epochs[0] != self.epochs[1]:
            text += f"; epochs reached {self.epochs[0]} against {self.epochs[1]}, compared up to {min(self.epochs)}"
        if self.largest and self.verdict != "identical":
            col, epoch, a, b = self.largest
            text += f"; largest relative difference {col} at epoch {epoch}: {a!r} against {b!r}"
        if self.machines:
            text += f"; trained on {self.machines[0]} against {self.machines[1]}"
        for side, cols in (("first", self.only_a), ("second", self.only_b)):
            if cols:
                text += f"; only the {side} logs {', '.join(cols)}"
        return text + ")"


def compare_runs(a: Run, b: Run, rtol: float = 0.0, atol: float = 0.0) -> Comparison:
    """Compare run ``a`` with run ``b`` (see the module docstring)."""
    name = f"{a.dataset}/{a.name}" + (f" against {b.dataset}/{b.name}" if (a.dataset, a.name) != (b.dataset, b.name)
                                      else "")
    ca, cb = {**_DEFAULTS, **a.config}, {**_DEFAULTS, **b.config}
    keys = (set(ca) | set(cb)) - NOT_THE_RUN
    config_diff = {k: (ca.get(k), cb.get(k)) for k in sorted(keys) if ca.get(k) != cb.get(k)}
    out = Comparison(name, "identical", config_diff, epochs=(a.epochs_reached, b.epochs_reached),
                     statuses=(str(a.status.get("status")), str(b.status.get("status"))))
    machine_a, machine_b = machine(a), machine(b)
    if machine_a != machine_b:
        out.machines = (machine_a, machine_b)
    worst = (False, -1.0)  # (beyond the tolerance, relative gap): a failing value is named before a closer one
    for table in ("metrics", "epochs"):
        ta, tb = getattr(a, table), getattr(b, table)
        cols_a, cols_b = set(_numeric(ta)) - TIMING_COLUMNS, set(_numeric(tb)) - TIMING_COLUMNS
        out.only_a += sorted(f"{table}:{c}" for c in cols_a - cols_b)
        out.only_b += sorted(f"{table}:{c}" for c in cols_b - cols_a)
        if ta.empty or tb.empty:
            continue
        for run, t in ((a, ta), (b, tb)):
            if t["epoch"].duplicated().any():
                raise RunError(f"{run.path / (table + '.csv')} is damaged (an epoch appears twice)")
        merged = ta.merge(tb, on="epoch", suffixes=("_a", "_b"))
        for col in sorted((cols_a & cols_b) - {"epoch"}):
            x, y = merged[f"{col}_a"].to_numpy(float), merged[f"{col}_b"].to_numpy(float)
            both_nan = np.isnan(x) & np.isnan(y)
            out.values += int((~both_nan).sum())
            with np.errstate(invalid="ignore", divide="ignore"):
                gap = np.where(both_nan | (x == y), 0.0, np.abs(x - y) / np.maximum(np.abs(x), np.abs(y)))
            gap = np.where(np.isnan(gap), math.inf, gap)  # one side NaN: as far apart as can be
            beyond = ~(both_nan | np.isclose(x, y, rtol=rtol, atol=atol))
            if gap.max(initial=0.0) > 0 and out.verdict == "identical":
                out.verdict = "close"
            if beyond.any():
                out.verdict = "differs"
            for i in range(len(gap)):
                if gap[i] > 0 and (bool(beyond[i]), gap[i]) > worst:
                    worst = (bool(beyond[i]), gap[i])
                    out.largest = (f"{table}:{col}", int(merged["epoch"].iloc[i]), float(x[i]), float(y[i]))
    if out.verdict != "differs" and (out.values == 0 or not (_finished(a) and _finished(b))):
        out.verdict = "incomplete"
    return out


def _finished(run: Run) -> bool:
    """Done: the whole recipe, or a finished prefix of it (stopped by a time budget or --stop-epoch)."""
    return run.status.get("status") == "done"


def machine(run: Run) -> str:
    """What a run was computed on, as provenance.json recorded it: ``cpu AMD EPYC (AVX512), 1 thread``, ``cuda
    NVIDIA H100 80GB HBM3``; runs trained before lsnc recorded the processor say ``cpu (processor not recorded),
    1 thread``. The thread count matters too: it changes the order of a CPU's floating-point sums."""
    dev = run.provenance.get("device", {})
    kind = dev.get("type", "unknown device")
    if kind == "cuda":
        return f"cuda {dev.get('name', '(GPU not recorded)')}"
    text = f"{kind} {dev['cpu']} ({dev.get('cpu_capability', '?')})" if "cpu" in dev else \
        f"{kind} (processor not recorded)"
    threads = dev.get("threads")
    text += f", {threads} thread{'s' if threads != 1 else ''}" if threads is not None else ""
    earlier = dev.get("earlier_cpus")
    if earlier:  # resumed on another processor (lsnc.runs.record)
        text += " (earlier epochs on " + ", ".join(f"{c['cpu']} ({c.get('cpu_capability')})" for c in earlier) + ")"
    return text + _fused(run)


def _fused(run: Run) -> str:
    """``, fused K=3 from epoch 0`` where the run was trained as one of a fused set (its grouped convolutions sum in
    another order than a plain network's), from provenance.json's ``training``; nothing for a run trained alone or
    on streams (a separate run's arithmetic), or one trained before lsnc recorded it."""
    training = run.provenance.get("training") or {}
    spells = [*training.get("earlier", []), training] if training else []
    fused = [f"fused K={len(t['together']['runs'])} from epoch {t.get('since_epoch', 0)}" for t in spells
             if t.get("together", {}).get("how") == "fused"]
    return "".join(", " + f for f in fused)


def _numeric(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]


def _runs_at(path: Path) -> tuple[dict[str, Run], bool]:
    """The runs at ``path`` (a run folder, a group folder, or a runs folder) keyed by group/name, and whether
    ``path`` is one group's folder."""
    path = Path(path)
    if (path / CONFIG_FILE).exists():
        run = load_run(path)
        return {f"{run.dataset}/{run.name}": run}, False
    runs = find_runs(path, status=None)
    group = not runs
    if group:
        runs = find_runs(path.parent, path.name, status=None)
    return {f"{r.dataset}/{r.name}": r for r in runs}, group


def compare_folders(a: str | Path, b: str | Path, rtol: float = 0.0, atol: float = 0.0
                    ) -> tuple[list[Comparison], list[str], list[str]]:
    """Compare every run at ``a`` with its namesake at ``b`` (each a run folder, a group folder or a runs folder;
    runs pair by group and name, or by name alone between two group folders). Returns the comparisons and the runs
    only ``a`` and only ``b`` hold. Two single run folders are compared whatever their names."""
    (runs_a, group_a), (runs_b, group_b) = _runs_at(Path(a)), _runs_at(Path(b))
    if len(runs_a) == len(runs_b) == 1 and (Path(a) / CONFIG_FILE).exists() and (Path(b) / CONFIG_FILE).exists():
        return [compare_runs(*runs_a.values(), *runs_b.values(), rtol=rtol, atol=atol)], [], []
    if group_a and group_b:  # runs/mnist1d against /tmp/rerun/mnist1d-again: the group's name may differ
        runs_a = {r.name: r for r in runs_a.values()}
        runs_b = {r.name: r for r in runs_b.values()}
    shared = [k for k in runs_a if k in runs_b]
    return ([compare_runs(runs_a[k], runs_b[k], rtol=rtol, atol=atol) for k in shared],
            [k for k in runs_a if k not in runs_b], [k for k in runs_b if k not in runs_a])
