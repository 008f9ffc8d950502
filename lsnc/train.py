"""The training loop: the paper's recipe, evaluation epochs, run folder, checkpoint and exact resume.

Resume is exact because nothing random happens after initialisation except the batch order, and the batch
order of epoch e is a permutation drawn from a generator seeded by (seed, e): a run killed at any point and
resumed from its last checkpoint replays the same epochs and writes the same metrics table.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import __version__
from .atomic import write_atomic, write_json_atomic
from .config import ConfigError, TrainConfig
from .data import Dataset, load_dataset
from .evaluate import evaluate_model
from .models import build_model
from .presets import resolve_data_root
from .runs import RunError, read_json, read_rows_csv, run_dir, write_rows_csv, write_status
from .snapshots import save_snapshots, snapshot_indices, take_snapshot, load_snapshots

SNAPSHOT_PER_CLASS = 20


class NonFiniteLoss(RuntimeError):
    pass


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s batch order: distinct per (seed, epoch), fixed so a resumed run replays it."""
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def run_group(cfg: TrainConfig) -> str:
    """The folder under runs/ that groups comparable runs: the dataset key (e.g. "cifar10-jpeg")."""
    return cfg.data_options.get("group") or cfg.dataset


def snapshot_epochs(cfg: TrainConfig) -> set[int]:
    """A few epochs for the geometry snapshots: start, early, middle and the end."""
    ev = cfg.eval_epochs or []
    wanted = [0, cfg.epochs // 20, cfg.epochs // 5, cfg.epochs // 2, cfg.epochs]
    return {min(ev, key=lambda e: abs(e - w)) for w in wanted} if ev else set()


def git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "lsnc"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": commit or None, "lsnc_modified": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "lsnc_modified": None}


def portable_paths(text: str) -> str:
    """Paths inside this checkout (or beside it) written relative to the repository root, so committed run
    folders carry no machine-specific absolute paths."""
    root = Path(__file__).resolve().parent.parent
    text = text.replace(f"{root}/../", "../").replace(f"{root}/", "").replace(str(root), ".")
    return text.replace(f"{root.parent}/", "../")


def provenance(cfg: TrainConfig, data: Dataset, device: torch.device) -> dict[str, Any]:
    import numpy
    import torchvision
    dev = {"type": device.type, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        dev["name"] = torch.cuda.get_device_name(device)
    return {
        "lsnc": {"version": __version__, **git_commit()},
        "packages": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": numpy.__version__},
        "platform": platform.platform(),
        "device": dev,
        "seed": cfg.seed,
        "dataset": {"label": data.label, **data.description,
                    "source": portable_paths(str(data.description.get("source", "")))},
        "command": portable_paths(" ".join(sys.argv)),
    }


def _make_optimizer(net: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.SGD:
    # UFM-style training replaces weight decay by the explicit penalties of the UFM objective.
    wd = 0.0 if cfg.ufm else cfg.weight_decay
    kwargs: dict[str, Any] = {"lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": wd}
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.SGD(net.parameters(), **kwargs)


def ufm_theory_norms(cfg: TrainConfig, data: Dataset) -> dict[str, float]:
    """Closed-form ‖w_k‖ and ‖h_i‖ of the UFM minimizer for this run's penalties, δ, K and N."""
    from .ufm import closed_form
    sol = closed_form(data.num_classes, len(data.train), cfg.lambda_w, cfg.lambda_h, cfg.delta, lambda_b=cfg.lambda_b)
    return {"ufm_theory_w_norm": float(sol.w_norm), "ufm_theory_h_norm": float(sol.h_norm)}


def _check_resumable(folder: Path, cfg: TrainConfig) -> None:
    stored = read_json(folder / "config.json")
    mine = cfg.to_dict()
    # Execution-only options may change on resume; the recipe may not.
    free = {"device", "threads", "compile", "eval_batch_size", "download", "data_root"}
    diff = sorted(k for k in set(stored) | set(mine) if k not in free and stored.get(k) != mine.get(k))
    if diff:
        raise RunError(f"{folder} was started with a different configuration ({', '.join(diff)} differ); "
                       "resume it with the same options, or choose another --name / --runs-dir.")


def train(cfg: TrainConfig, runs_dir: str | Path = "runs", *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, log=print) -> Path:
    """Train one run into ``<runs_dir>/<group>/<name>/`` and return that folder.

    Raises ConfigError / DataError / RunError before anything is written when the input is bad;
    NonFiniteLoss (after marking the run failed) when training diverges.
    """
    cfg = cfg.resolved()
    folder = run_dir(runs_dir, run_group(cfg), cfg.name)
    ckpt_path = folder / "checkpoint.pt"
    if folder.exists() and not overwrite:
        if not resume:
            raise RunError(f"run folder {folder} already exists; pass --resume to continue it or "
                           "--overwrite to replace it")
        if (folder / "config.json").exists():
            _check_resumable(folder, cfg)
            status = read_json(folder / "status.json").get("status") if (folder / "status.json").exists() else None
            if status == "done":
                log(f"{folder}: already done, nothing to do")
                return folder

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    data = load_dataset(cfg.dataset, root=resolve_data_root(cfg.data_root), download=cfg.download,
                        train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class,
                        holdout_per_class=cfg.holdout_per_class, seed=cfg.seed, device=device,
                        **{k: v for k, v in cfg.data_options.items() if k != "group"})
    if len(data.train) < cfg.batch_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} exceeds the {len(data.train)} training samples; with the "
                          "incomplete last batch dropped no step would be taken. Lower --batch-size.")

    torch.manual_seed(cfg.seed)
    net = build_model(cfg.model, data.num_classes, data.input_shape, width=cfg.width).to(device)
    if cfg.channels_last and len(data.input_shape) == 3:
        net = net.to(memory_format=torch.channels_last)
        for split in (data.train, data.test, data.holdout):
            if split is not None:
                split.x = split.x.contiguous(memory_format=torch.channels_last)
    optimizer = _make_optimizer(net, cfg, device)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    step_fn = torch.compile(net) if cfg.compile else net
    theory = ufm_theory_norms(cfg, data) if cfg.ufm else {}

    start_epoch, train_seconds = 0, 0.0
    metrics_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    snapshots: dict = {}
    if resume and ckpt_path.exists() and not overwrite:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, train_seconds = state["epoch"], state["train_seconds"]
        # Rows written after the checkpoint (a kill between the table write and the checkpoint) are redone.
        metrics_rows = [r for r in read_rows_csv(folder / "metrics.csv") if r["epoch"] <= start_epoch]
        epoch_rows = [r for r in read_rows_csv(folder / "epochs.csv") if r["epoch"] <= start_epoch]
        snapshots = {e: s for e, s in load_snapshots(folder / "snapshots.npz").items() if e <= start_epoch}
        log(f"{folder}: resuming after epoch {start_epoch}")
    else:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        write_json_atomic(folder / "config.json", cfg.to_dict())
    write_json_atomic(folder / "provenance.json", provenance(cfg, data, device))
    write_status(folder, "running", start_epoch)

    snap_idx = snapshot_indices(data.train.y, SNAPSHOT_PER_CLASS)
    snap_epochs = snapshot_epochs(cfg)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.amp == "bf16" \
        else contextlib.nullcontext
    n_train = len(data.train)

    def evaluate(epoch: int, lr: float) -> None:
        t0 = time.perf_counter()
        row = evaluate_model(
            net, data.train.batches(cfg.eval_batch_size), data.test.batches(cfg.eval_batch_size),
            data.num_classes, delta=cfg.delta, device=device,
            autocast_dtype=torch.bfloat16 if cfg.amp == "bf16" else None,
            holdout_batches=data.holdout.batches(cfg.eval_batch_size) if data.holdout is not None else None)
        if cfg.ufm:
            row.update(theory)
        if epoch in snap_epochs:
            snapshots[epoch] = take_snapshot(net, data.train.x[snap_idx], data.train.y[snap_idx], data.num_classes)
            save_snapshots(folder / "snapshots.npz", snapshots)
        metrics_rows.append({"epoch": epoch, "lr": lr, "train_seconds": train_seconds,
                             "eval_seconds": time.perf_counter() - t0, **row})
        write_rows_csv(folder / "metrics.csv", metrics_rows)

    def save_checkpoint(epoch: int) -> None:
        state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "epoch": epoch, "train_seconds": train_seconds}
        write_atomic(ckpt_path, lambda p: torch.save(state, p))

    epoch = start_epoch
    try:
        if start_epoch == 0:
            evaluate(0, optimizer.param_groups[0]["lr"])
            save_checkpoint(0)
        bar = _progress(range(start_epoch + 1, cfg.epochs + 1), progress, folder.name)
        for epoch in bar:
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            seen = 0
            net.train()
            for x, y in data.train.batches(cfg.batch_size, shuffle=True, seed=epoch_seed(cfg.seed, epoch),
                                           drop_last=True):
                with autocast():
                    logits, feats = step_fn(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.delta)
                    if cfg.ufm:
                        loss = loss + _ufm_penalty(net.classifier, feats, cfg, n_train)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach().double() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
            scheduler.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            mean_loss = loss_sum.item() / seen
            if not math.isfinite(mean_loss):
                raise NonFiniteLoss(f"training loss became {mean_loss} in epoch {epoch}; lower --lr or check the data")
            epoch_rows.append({"epoch": epoch, "lr": lr, "train_loss_running": mean_loss,
                               "train_acc_running": correct.item() / seen, "seconds": seconds})
            write_rows_csv(folder / "epochs.csv", epoch_rows)
            if epoch in cfg.eval_epochs:
                evaluate(epoch, optimizer.param_groups[0]["lr"])
            save_checkpoint(epoch)
            write_status(folder, "running", epoch)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{correct.item() / seen:.4f}")
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        write_status(folder, "failed", epoch, error=reason)
        raise
    write_status(folder, "done", cfg.epochs, train_seconds=train_seconds)
    return folder


def _ufm_penalty(classifier: torch.nn.Linear, feats: torch.Tensor, cfg: TrainConfig, n_train: int) -> torch.Tensor:
    """λ_W‖W‖²/2 + λ_b‖b‖²/2 + λ_H (N/B) Σ_batch ‖h_i‖²/2: an unbiased batch estimate of the UFM penalties."""
    w, b = classifier.weight, classifier.bias
    feats = feats.float()
    return (cfg.lambda_w / 2 * w.pow(2).sum() + cfg.lambda_b / 2 * b.pow(2).sum()
            + cfg.lambda_h / 2 * (n_train / len(feats)) * feats.pow(2).sum())


def _progress(it, enabled: bool, desc: str):
    if not enabled or os.environ.get("CI"):
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, unit="epoch", leave=False)
