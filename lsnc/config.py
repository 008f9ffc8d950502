"""The training configuration: one dataclass, validated before anything is written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration that makes no sense; the message names the option and the fix."""


def dense_then_sparse_epochs(epochs: int) -> list[int]:
    """Evaluation epochs: every epoch up to 10, then every 5 up to 50, every 10 up to 200, every 25 after,
    always including 0 (the initialisation) and the last epoch."""
    chosen = {0, epochs}
    for e in range(1, epochs + 1):
        if e <= 10 or (e <= 50 and e % 5 == 0) or (e <= 200 and e % 10 == 0) or e % 25 == 0:
            chosen.add(e)
    return sorted(chosen)


@dataclass
class TrainConfig:
    # data
    dataset: str = "synthetic"
    data_root: str | None = None
    download: bool = False
    train_per_class: int | None = None
    test_per_class: int | None = None
    holdout_per_class: int = 0
    data_options: dict[str, Any] = field(default_factory=dict)
    # model
    model: str = "resnet18"
    width: int | None = None
    # loss: F.cross_entropy(..., label_smoothing=delta); delta = 0 is plain cross-entropy
    delta: float = 0.0
    # optimisation (the paper's recipe by default)
    epochs: int = 800
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    milestones: list[int] = field(default_factory=lambda: [150, 350])
    gamma: float = 0.1
    seed: int = 0
    # evaluation: the epochs at which a metrics row is written (None = dense_then_sparse_epochs(epochs))
    eval_epochs: list[int] | None = None
    eval_batch_size: int = 1024
    # "UFM-style" training: no weight decay; explicit penalties on W, b and the batch features
    ufm: bool = False
    lambda_w: float = 1e-3
    lambda_h: float = 1e-6
    lambda_b: float = 1e-2
    # execution (these change speed, not the recipe; fp32 unless asked)
    device: str = "auto"
    amp: str = "none"  # "none" | "bf16"
    compile: bool = False
    channels_last: bool = False
    deterministic: bool = False
    threads: int | None = None
    # naming
    name: str | None = None
    preset: str | None = None

    def resolved(self) -> "TrainConfig":
        """A copy with derived fields filled in (eval epochs, run name), validated."""
        cfg = dataclasses.replace(self, milestones=list(self.milestones), data_options=dict(self.data_options))
        if cfg.eval_epochs is None:
            cfg.eval_epochs = dense_then_sparse_epochs(cfg.epochs)
        else:
            cfg.eval_epochs = sorted(set(int(e) for e in cfg.eval_epochs) | {0, cfg.epochs})
        if cfg.name is None:
            cfg.name = default_run_name(cfg)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        from .data import DATASETS
        from .models import MODELS
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        if self.width is not None and self.width < 1:
            raise ConfigError(f"--width must be a positive integer; got {self.width}")
        if not (0.0 <= self.delta < 1.0):
            raise ConfigError(f"--delta must be in [0, 1) (0 = cross-entropy); got {self.delta}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1; got {self.epochs}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive; got {self.lr}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1; got {self.batch_size}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise ConfigError("--weight-decay and --momentum must be non-negative")
        if not (0 < self.gamma <= 1):
            raise ConfigError(f"the lr decay factor gamma must be in (0, 1]; got {self.gamma}")
        ms = list(self.milestones)
        if ms != sorted(set(ms)) or any(m <= 0 or m >= self.epochs for m in ms):
            raise ConfigError(
                f"--milestones must be strictly increasing epochs inside (0, {self.epochs}); got {ms}. "
                "Scale them with --epochs, or pass --milestones with no value for a constant lr.")
        if self.eval_epochs is not None and any(e < 0 or e > self.epochs for e in self.eval_epochs):
            raise ConfigError(f"--eval-epochs must lie in [0, {self.epochs}]; got {self.eval_epochs}")
        for opt in ("train_per_class", "test_per_class"):
            v = getattr(self, opt)
            if v is not None and v < 1:
                raise ConfigError(f"--{opt.replace('_', '-')} must be at least 1; got {v}")
        if self.holdout_per_class < 0:
            raise ConfigError(f"--holdout-per-class must be >= 0; got {self.holdout_per_class}")
        if self.amp not in ("none", "bf16"):
            raise ConfigError(f"--amp must be 'none' or 'bf16'; got {self.amp!r}")
        if self.ufm and min(self.lambda_w, self.lambda_h, self.lambda_b) < 0:
            raise ConfigError("UFM penalties --lambda-w/--lambda-h/--lambda-b must be non-negative")
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise ConfigError(f"--name must be a plain folder name; got {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)


def default_run_name(cfg: TrainConfig) -> str:
    loss = "ce" if cfg.delta == 0 else f"ls{cfg.delta:g}"
    model = cfg.model + (f"w{cfg.width}" if cfg.width else "")
    tag = ("-ufm" if cfg.ufm else "") + ("-bf16" if cfg.amp == "bf16" else "")
    return f"{loss}{tag}-{model}-s{cfg.seed}"
