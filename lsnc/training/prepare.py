"""Before the first step: the device and its numeric settings, the data on it, and the networks.

Data are loaded once per distinct data setting (runs that differ only in δ, or in a seed that selects no
subset, share one copy on the device).
"""

from __future__ import annotations

import os

import torch

from ..config import ConfigError, TrainConfig
from ..data import READ_OPTIONS, Dataset, load_dataset, seed_changes_data
from ..models import build_model
from ..paths import resolve_data_root


def pick_device(name: str, cuda_graphs: bool = False) -> torch.device:
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    elif name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from "
                          "0; choose one of them, or --device cuda")
    elif name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for but this torch build or machine has no MPS (Apple GPU); "
                          "use --device cpu or auto")
    else:
        device = torch.device(name)
    if cuda_graphs and device.type != "cuda":
        raise ConfigError(f"--cuda-graphs needs a CUDA GPU, and this run would train on {device.type}; "
                          "drop --cuda-graphs")
    return device


def configure_backends(cfg: TrainConfig, device: torch.device) -> None:
    """CPU threads (execution), deterministic kernels (kept for a run's life) and TF32 (a setting: it changes the
    arithmetic), as lsnc.config.ROLES places them."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    else:  # process-wide: an earlier deterministic run in this process must not carry over
        torch.use_deterministic_algorithms(False)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        if device.index is not None:  # streams and graphs act on the current device: make it the run's
            torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32


def data_request(cfg: TrainConfig) -> dict:
    """The arguments of :func:`lsnc.data.load_dataset` for this run (all but the device): the one place that maps a
    config to its data."""
    return dict(name=cfg.dataset, root=resolve_data_root(cfg.data_root), download=cfg.download,
                train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class,
                holdout_per_class=cfg.holdout_per_class, seed=cfg.seed, **cfg.data_options, **cfg.read_options)


def data_key(cfg: TrainConfig) -> str:
    """What determines a run's data: its :func:`data_request` less what only says how to read them (``download``,
    :data:`lsnc.data.READ_OPTIONS`), and less the seed where it changes nothing
    (:func:`lsnc.data.seed_changes_data`)."""
    request = {k: v for k, v in data_request(cfg).items() if k not in ("download", *READ_OPTIONS)}
    if not seed_changes_data(cfg.dataset, cfg.train_per_class, cfg.test_per_class, cfg.holdout_per_class):
        request["seed"] = None
    return repr(sorted(request.items()))


def load_data(cfg: TrainConfig, device: torch.device, cache: dict | None = None) -> Dataset:
    key = data_key(cfg)
    if cache is not None and key in cache:
        return cache[key]
    data = load_dataset(**data_request(cfg), device=device)
    if len(data.train) < cfg.batch_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} exceeds the {len(data.train)} training samples; with the "
                          "incomplete last batch dropped no step would be taken. Lower --batch-size.")
    if cfg.channels_last and len(data.input_shape) == 3:
        for split in (data.train, data.test, data.holdout):
            if split is not None:
                split.x = split.x.contiguous(memory_format=torch.channels_last)
    if cache is not None:
        cache[key] = data
    return data


def build_net(cfg: TrainConfig, data: Dataset, device: torch.device) -> torch.nn.Module:
    """The run's network, initialised from its seed exactly as a separate run would be."""
    torch.manual_seed(cfg.seed)
    net = build_model(cfg.model, data.num_classes, data.input_shape, width=cfg.width).to(device)
    if cfg.channels_last and len(data.input_shape) == 3:
        net = net.to(memory_format=torch.channels_last)
    return net
