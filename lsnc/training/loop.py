"""The training loop: set up, then per epoch train, evaluate on the evaluation epochs, checkpoint; stop at the
recipe's last epoch or, as a finished prefix, at an evaluated epoch (``stop_epoch``; ``time_budget_s``: the last
epoch that fits, evaluated there).

``train(cfg)`` trains one run; ``train_many(cfgs)`` trains runs that differ only in δ and seed together, as one
fused network (:mod:`.fused`) or as K networks on K CUDA streams (:mod:`.streams`, ``--together streams``), each
written to its own ordinary run folder. A prefix stopped at epoch E *is* the
recipe's run up to E: the milestones are never rescaled.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch

from ..config import ConfigError, TrainConfig
from ..runs.format import non_finite
from ..runs.lifecycle import claim_run, run_folder
from ..runs.record import CheckpointWriter, RunRecord
from ..snapshots import snapshot_epochs, snapshot_indices, take_snapshot
from ..vocab import UFM_THEORY_H_NORM, UFM_THEORY_W_NORM
from .engine import check_fusable, make_engine
from .evaluate import evaluate_model
from .prepare import configure_backends, load_data, pick_device
from .step import NonFiniteLoss, train_epoch

__all__ = ["NonFiniteLoss", "train", "train_many"]


def ufm_theory_norms(cfg: TrainConfig, data) -> dict[str, float]:
    """Closed-form ‖w_k‖ and ‖h_i‖ of the UFM minimizer for this run's penalties, δ, K and N."""
    from ..ufm import closed_form
    sol = closed_form(data.num_classes, len(data.train), cfg.lambda_w, cfg.lambda_h, cfg.delta, lambda_b=cfg.lambda_b)
    return {UFM_THEORY_W_NORM: float(sol.w_norm), UFM_THEORY_H_NORM: float(sol.h_norm)}


def train(cfg: TrainConfig, runs_dir: str | Path = "runs", *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, log=print) -> Path:
    """Train one run into ``<runs_dir>/<group>/<name>/`` and return that folder.

    Raises ConfigError / DataError / RunError before anything is written when the input is bad;
    NonFiniteLoss (after marking the run failed) when training diverges.
    """
    return train_many([cfg], runs_dir, resume=resume, overwrite=overwrite, progress=progress, log=log)[0]


def train_many(cfgs: list[TrainConfig], runs_dir: str | Path = "runs", *, resume: bool = False,
               overwrite: bool = False, progress: bool = True, log=print, started: float | None = None) -> list[Path]:
    """Train runs that differ only in δ and seed together (fused, or on streams: ``together``); return their
    folders. A time budget counts from ``started`` (a ``time.perf_counter()`` reading; default: now).

    Each run is claimed (an exclusive lock beside its folder) for the whole call, so a second writer of the
    same run is refused with RunClaimed instead of mixing two runs' rows in one folder.
    """
    wall_start = time.perf_counter() if started is None else started
    cfgs = [c.resolved() for c in cfgs]
    check_fusable(cfgs)
    folders = [run_folder(runs_dir, c) for c in cfgs]
    with contextlib.ExitStack() as claims:
        for folder in folders:
            claims.enter_context(claim_run(folder))
        modes = [RunRecord.check(c, runs_dir, resume=resume, overwrite=overwrite) for c in cfgs]
        for folder, mode in zip(folders, modes):
            if mode == "done":
                log(f"{folder}: already done, nothing to do")
            elif mode == "restart":
                log(f"{folder}: started before but has no checkpoint; training it again from epoch 0")
        todo = [(c, m) for c, m in zip(cfgs, modes) if m != "done"]
        if todo:
            _Training([c for c, _ in todo], runs_dir, [m for _, m in todo], wall_start, log).run(progress)
    return folders


class _Training:
    """One training session of K >= 1 runs (set up once, then the epoch loop)."""

    def __init__(self, cfgs: list[TrainConfig], runs_dir, modes: list[str], wall_start: float, log):
        self.cfgs, self.log, self.wall_start = cfgs, log, wall_start
        self.device = pick_device(cfgs[0].device, cfgs[0].cuda_graphs)
        self.write_behind = writes_behind(self.device)   # (a bad LSNC_CHECKPOINT_WRITES: before any folder is written)
        configure_backends(cfgs[0], self.device)
        cache: dict = {}
        self.data = [load_data(c, self.device, cache) for c in cfgs]
        self.engine = make_engine(cfgs, self.data, self.device)
        # Read the resumed runs back first: runs trained together must start from one epoch, refused before any
        # folder of a new run is written.
        order = sorted(range(len(cfgs)), key=lambda i: modes[i] != "resume")
        records: dict[int, RunRecord] = {}
        for i in order:
            if modes[i] != "resume":
                starts = {r.start_epoch for r in records.values()} | {0}
                if len(starts) > 1:
                    raise ConfigError(f"these runs stopped at different epochs {sorted(starts)}; train them one "
                                      "at a time (or with --fuse 1)")
            records[i] = RunRecord.open(cfgs[i], runs_dir, modes[i], self.device)
        self.records = [records[i] for i in range(len(cfgs))]
        starts = {r.start_epoch for r in self.records}
        if len(starts) > 1:
            raise ConfigError(f"these runs stopped at different epochs {sorted(starts)}; train them one at a time "
                              "(or with --fuse 1)")
        self.start_epoch = starts.pop()
        for k, r in enumerate(self.records):
            if r.resume_state is not None:
                self.engine.load_checkpoint_state(k, r.resume_state)
                log(f"{r.folder}: resuming after epoch {self.start_epoch}")
            r.start(self.data[k], self.device, self.engine.describe(k))
        self.snap_idx = [snapshot_indices(d.train.y) for d in self.data]
        self.theory = [ufm_theory_norms(c, d) if c.ufm else {} for c, d in zip(cfgs, self.data)]
        self.epoch_seconds: list[float] = []   # whole epochs (checkpoint included), less their evaluation
        self.eval_seconds: list[float] = []    # evaluations of all the runs, one after another
        self.checkpoint_seconds = 0.0          # the last checkpoint of all the runs
        # resumed: the evaluation the runs last logged (on this machine, in a window's second call), until one is
        # timed here
        last = [r.metrics_rows[-1].get("eval_seconds") for r in self.records if r.metrics_rows]
        self.eval_logged = (sum(float(s) for s in last) if len(last) == len(self.records)
                            and all(isinstance(s, (int, float)) and s == s for s in last) else None)

    # ------------------------------------------------------------------ the loop

    def run(self, progress: bool) -> None:
        cfg, epoch, stopped_by = self.cfgs[0], self.start_epoch, None
        self.checkpoints = CheckpointWriter(self.records, self.start_epoch, background=self.write_behind)
        try:
            if epoch == 0:
                self.evaluate(0)
                self.checkpoint(0)
            lr = None
            for epoch in _progress(range(self.start_epoch + 1, cfg.epochs + 1), progress, self.records[0].folder.name):
                t0 = time.perf_counter()
                if self.engine.lr != lr:   # a CUDA graph is captured in this epoch (its first, or a new lr): with no
                    self.checkpoints.wait()   # checkpoint being written meanwhile
                lr, captures = self.engine.lr, self.engine.graph_captures
                self.train_one_epoch(epoch)
                if self.engine.graph_captures != captures:   # the log says a new lr got its own graph (epoch 151)
                    self.log(f"epoch {epoch}: CUDA graph(s) captured at lr {lr:g} "
                             f"({self.engine.graph_captures} captures in this process)")
                stopped_by = self.stop_reason(epoch, time.perf_counter() - t0)
                evaluated = epoch in cfg.eval_epochs or stopped_by is not None
                if evaluated:  # a time budget's stop epoch is evaluated too (a prefix ends on a metrics row)
                    self.evaluate(epoch)
                self.checkpoint(epoch)
                # wall seconds of the whole epoch (training, tables, checkpoint), less its evaluation
                self.epoch_seconds.append(time.perf_counter() - t0 - (self.eval_seconds[-1] if evaluated else 0.0))
                if stopped_by:
                    break
            self.checkpoints.close()   # the last checkpoint on disk before the runs are marked done
        except BaseException as exc:
            try:
                self.checkpoints.close()
            except Exception:   # (the error being handled is the one to report)
                pass
            for r in self.records:
                r.failed(self.checkpoints.epoch, exc)
            raise
        for r in self.records:
            r.done(epoch, stopped_by)
        if stopped_by:
            self.log(f"stopped after epoch {epoch} of {cfg.epochs} ({stopped_by}): a finished prefix of the recipe")

    def train_one_epoch(self, epoch: int) -> None:
        lr = self.engine.lr
        t0 = time.perf_counter()
        stats = train_epoch(self.engine, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        for r, s in zip(self.records, stats):
            r.train_seconds += seconds
            r.add_epoch({"epoch": epoch, "lr": lr, **s, "seconds": seconds})

    def evaluate(self, epoch: int) -> None:
        t_all = time.perf_counter()
        for k, (cfg, data, rec) in enumerate(zip(self.cfgs, self.data, self.records)):
            t0 = time.perf_counter()
            net = self.engine.member(k)
            # full precision (fp32; TF32 where the run sets it), a bf16 run too: the metrics of a bf16 run and
            # its twin then differ by how they were trained only, and bf16's rounding puts no floor under NC1
            try:
                row = evaluate_model(
                    net, data.train.batches(cfg.eval_batch_size), data.test.batches(cfg.eval_batch_size),
                    data.num_classes, delta=cfg.delta, device=self.device,
                    holdout_batches=data.holdout.batches(cfg.eval_batch_size) if data.holdout is not None else None)
            except ValueError as exc:  # the accumulators refuse non-finite features; non-finite weights: diverged
                bad = non_finite_state(net)
                if bad:
                    raise NonFiniteLoss(f"{rec.folder.name}: {bad} after epoch {epoch} (diverged at the epoch's last "
                                        "steps); lower --lr / --weight-decay or check the data") from exc
                raise
            row.update(self.theory[k])
            problem = non_finite([{"epoch": epoch, **row}])
            if problem:
                raise NonFiniteLoss(f"{rec.folder.name}: {problem} (diverged, or the features collapsed to zero); "
                                    "lower --lr / --weight-decay or check the data")
            if epoch in snapshot_epochs(cfg.epochs, cfg.eval_epochs):
                idx = self.snap_idx[k]
                rec.add_snapshot(epoch, take_snapshot(net, data.train.x[idx], data.train.y[idx], data.num_classes,
                                                      batch_size=cfg.eval_batch_size))
            rec.add_metrics({"epoch": epoch, "lr": self.engine.lr, "train_seconds": rec.train_seconds,
                             "eval_seconds": time.perf_counter() - t0, **row})
        self.eval_seconds.append(time.perf_counter() - t_all)

    def checkpoint(self, epoch: int) -> None:
        """This epoch's checkpoints (on a GPU written while the next epoch trains: CheckpointWriter); the seconds
        they take here (in line, or the copies and the wait for the previous epoch's write) count in the epoch's
        time."""
        t0 = time.perf_counter()
        self.checkpoints.save([self.engine.checkpoint_state(k) for k in range(len(self.records))], epoch)
        self.checkpoint_seconds = time.perf_counter() - t0

    def stop_reason(self, epoch: int, trained_s: float) -> str | None:
        """Stop after this epoch (just trained, in ``trained_s`` seconds) if asked to (``stop_epoch``, an evaluated
        epoch), or if one more epoch and its evaluation would not fit the time budget: the loop then evaluates this
        epoch, on the evaluation schedule or not, so a budgeted prefix loses at most one epoch to its budget, not
        an evaluation interval (up to 25 epochs late in the recipe)."""
        cfg = self.cfgs[0]
        if epoch == cfg.epochs:
            return None
        if cfg.stop_epoch is not None and epoch >= cfg.stop_epoch and epoch in cfg.eval_epochs:
            return f"stop epoch {cfg.stop_epoch}"
        if cfg.time_budget_s is None:
            return None
        # the slowest recent epoch (checkpoint included), and the last evaluation (after a resume, the one the runs
        # logged last; else as long as an epoch), to stay inside the budget
        per_epoch = max([*self.epoch_seconds[-3:], trained_s + self.checkpoint_seconds])
        evaluation = (self.eval_seconds[-1] if self.eval_seconds
                      else self.eval_logged if self.eval_logged is not None else per_epoch)
        # if it goes on: this epoch's evaluation where scheduled and its checkpoint, the next epoch (checkpoint
        # included), and that one's evaluation
        needed = 1.1 * ((1 + (epoch in cfg.eval_epochs)) * evaluation + self.checkpoint_seconds + per_epoch)
        elapsed = time.perf_counter() - self.wall_start
        if elapsed + needed > cfg.time_budget_s:
            return f"time budget {cfg.time_budget_s:g} s"
        return None


def non_finite_state(net: torch.nn.Module) -> str:
    """The network's parameters and buffers (BatchNorm statistics) that hold a NaN or an infinity, as words ('' when
    none does)."""
    bad = [name for name, t in net.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if not bad:
        return ""
    return f"non-finite {', '.join(bad[:3])}" + (f" and {len(bad) - 3} more tensors" if len(bad) > 3 else "")


def writes_behind(device: torch.device) -> bool:
    """Checkpoints written while the next epoch trains (CheckpointWriter): on a GPU, whose host CPU waits while it
    trains; on a CPU, which trains on its cores, in line. ``LSNC_CHECKPOINT_WRITES=inline`` or ``behind`` decides
    instead (``auto``, the default: by the device)."""
    how = os.environ.get("LSNC_CHECKPOINT_WRITES", "auto")
    if how not in ("auto", "inline", "behind"):
        raise ConfigError(f"LSNC_CHECKPOINT_WRITES={how!r}: use auto, inline or behind")
    return how == "behind" or (how == "auto" and device.type == "cuda")


def _progress(it, enabled: bool, desc: str):
    if not enabled or os.environ.get("CI"):
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, unit="epoch", leave=False)
