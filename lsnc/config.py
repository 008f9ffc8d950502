"""The training configuration: one dataclass, validated before anything is written."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration that makes no sense; the message names the option and the fix."""


def dense_then_sparse_epochs(epochs: int) -> list[int]:
    """Evaluation epochs: every epoch up to 10, then every 5 up to 50, every 10 up to 200 (and 75, 125, 175: every
    multiple of 25 is one), every 25 after, always including 0 (the initialisation) and the last epoch."""
    chosen = {0, epochs}
    for e in range(1, epochs + 1):
        if e <= 10 or (e <= 50 and e % 5 == 0) or (e <= 200 and e % 10 == 0) or e % 25 == 0:
            chosen.add(e)
    return sorted(chosen)


#: What each TrainConfig field is to a run: the ``role`` in its metadata. Which fields may differ where (resuming a
#: run, comparing two, training several together, the claims' setting key) is derived from it (:func:`fields_with`),
#: so a field added later is placed by declaring its role once.
ROLES = {
    "setting": "what the run computes: the data, the model, the recipe, the evaluated epochs, UFM-style training and "
               "the precision. Runs compared with each other share it (lsnc.book.comparable.setting_key), runs "
               "trained together too, and a run resumes only with the same",
    "identity": "δ and seed: what tells compared runs apart, and (with the run's name) what runs trained together "
                "differ in",
    "execution": "how the run executes (device, threads, compiled, graphed, fused or on streams, evaluation batch): "
                 "compared runs may differ in it, and it may change when a run resumes (CPU threads excepted: an "
                 "exact CPU resume needs the same number, and lsnc refuses another). config.json keeps what the run "
                 "started with; provenance.json records the device and, for a resumed run, what changed "
                 "(execution_changes)",
    "kernels": "which kernels compute it (channels-last memory layout, deterministic algorithms): compared runs may "
               "differ in it, but a run keeps it for life (a checkpoint's momentum has the memory layout it was "
               "saved in)",
    "where": "where the data and the run folder live and what they are called (the preset names where the options "
             "came from); a run's name and group pick its folder",
    "stop": "when training stops: a run stopped early is a finished prefix, the full run up to its last epoch",
}


def _opt(default: Any = None, section: str = "", help: str = "", *, role: str, axis: str = "", factory=None) -> Any:
    """A config field with its role (:data:`ROLES`), its command-line section and help (``lsnc train`` is generated
    from these) and, for a setting field on one of the scale axes the book varies (lsnc.book.comparable), that
    axis."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    meta = {"section": section, "help": help, "role": role, "axis": axis}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


#: The paper's training recipe (its experimental setup, arXiv 2402.03979): SGD with momentum and weight decay,
#: batch 128, 800 epochs, the learning rate x0.1 at epochs 150 and 350. Its one home: TrainConfig's defaults and
#: the presets (lsnc.presets) take it from here.
PAPER_RECIPE: dict[str, Any] = dict(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=800,
                                    milestones=[150, 350], gamma=0.1)


def recipe_milestones(epochs: int) -> list[int]:
    """The paper's lr decays (epochs 150 and 350 of 800) moved to the same fractions of a shorter recipe, each
    rounded to the nearest epoch: [9, 22] for 50 epochs, [28, 66] for 150 (the CPU presets). A recipe of the paper's
    own 800 epochs keeps 150 and 350."""
    return [round(m * epochs / PAPER_RECIPE["epochs"]) for m in PAPER_RECIPE["milestones"]]


#: How several runs train together in one process (``--together``): one fused network, or a network each on its own
#: CUDA stream (lsnc.training.streams).
TOGETHER = ("fused", "streams")
#: Seeds are below this (numpy's seed sequences and torch.manual_seed both take them).
SEED_LIMIT = 2**32

DATA, MODEL, OPTIM, EVAL, UFM, PRECISION, EXEC, STOP, NAMING = (
    "data", "model and loss", "optimisation (the paper's recipe)", "evaluation", "UFM-style training",
    "precision (it changes the arithmetic: runs are compared and resumed in the precision they started in)",
    "execution (the numbers are the recipe's, up to rounding)",
    "stopping early (a finished prefix of the recipe)", "naming")


@dataclass
class TrainConfig:
    """One run's options. Each field's metadata gives its role (:data:`ROLES`), its ``lsnc train`` section and help,
    and for a setting field on a scale axis, the axis."""

    dataset: str = _opt("synthetic", DATA, "dataset key (see the list of choices)", role="setting")
    data_root: str | None = _opt(None, DATA, "folder holding (or receiving, with --download) the dataset",
                                 role="where")
    download: bool = _opt(False, DATA, "fetch the dataset into --data-root if it is missing (never done implicitly)",
                          role="where")
    train_per_class: int | None = _opt(None, DATA, "balanced, seeded training subset: images per class (default "
                                                   "all)", role="setting", axis="train images")
    test_per_class: int | None = _opt(None, DATA, "balanced, seeded test subset: images per class (default all)",
                                      role="setting")
    holdout_per_class: int = _opt(0, DATA, "images per class held out of the training pool to fit the temperature",
                                  role="setting")
    # load_dataset's options (Python API only): which data (image_size, mean/std, generator arguments) in
    # data_options; how they are read (lsnc.data.READ_OPTIONS: decoding workers, the decode cache) in read_options
    data_options: dict[str, Any] = _opt(section="", factory=dict, role="setting")
    read_options: dict[str, Any] = _opt(section="", factory=dict, role="execution")
    group: str | None = _opt(None, DATA, "folder under the runs folder for these runs (default: the dataset key)",
                             role="where")
    model: str = _opt("resnet18", MODEL, "network", role="setting", axis="depth")
    width: int | None = _opt(None, MODEL, "ResNet base width (64 = the paper's) or MLP hidden width",
                             role="setting", axis="width")
    delta: float = _opt(0.0, MODEL, "label smoothing δ in [0, 1); 0 = cross-entropy (several values: trained "
                                    "together as one fused network)", role="identity")
    epochs: int = _opt(PAPER_RECIPE["epochs"], OPTIM, "epochs of the recipe", role="setting", axis="epochs")
    lr: float = _opt(PAPER_RECIPE["lr"], OPTIM, "SGD learning rate", role="setting")
    momentum: float = _opt(PAPER_RECIPE["momentum"], OPTIM, "SGD momentum", role="setting")
    weight_decay: float = _opt(PAPER_RECIPE["weight_decay"], OPTIM, "SGD weight decay", role="setting")
    batch_size: int = _opt(PAPER_RECIPE["batch_size"], OPTIM, "training batch size (the incomplete last batch is "
                                                              "dropped)", role="setting")
    milestones: list[int] = _opt(section=OPTIM, help="epochs at which the lr is multiplied by --gamma",
                                 factory=lambda: list(PAPER_RECIPE["milestones"]), role="setting")
    gamma: float = _opt(PAPER_RECIPE["gamma"], OPTIM, "lr decay factor at each milestone", role="setting")
    seed: int = _opt(0, OPTIM, "initialisation and batch-order seed (several values: trained together)",
                     role="identity")
    eval_epochs: list[int] | None = _opt(None, EVAL, "epochs with a metrics row (0 and the last always; default "
                                                     "every epoch to 10, every 5 to 50, 10 to 200, every multiple of "
                                                     "25)", role="setting", axis="epochs")
    eval_batch_size: int = _opt(1024, EVAL, "batch size of the evaluation passes", role="execution")
    ufm: bool = _opt(False, UFM, "no weight decay; explicit penalties on W, b and the features instead",
                     role="setting")
    lambda_w: float = _opt(1e-3, UFM, "penalty λ_W on the classifier weights", role="setting")
    lambda_h: float = _opt(1e-6, UFM, "penalty λ_H on the features", role="setting")
    lambda_b: float = _opt(1e-2, UFM, "penalty λ_b on the classifier bias", role="setting")
    device: str = _opt("auto", EXEC, "auto | cpu | cuda | cuda:N", role="execution")
    amp: str = _opt("none", PRECISION, "none (fp32, the paper's) | bf16 (autocast in training; evaluation stays "
                                       "fp32)",
                    role="setting", axis="precision")
    compile: bool = _opt(False, EXEC, "torch.compile the training step", role="execution")
    cuda_graphs: bool = _opt(False, EXEC, "CUDA: capture the whole training step as one CUDA graph and replay it "
                                          "(same arithmetic, fewer kernel launches)", role="execution")
    together: str = _opt("fused", EXEC, "how several runs (several --delta/--seed) train together: fused (one "
                                        "network of grouped layers) | streams (a network each, each run's step on its "
                                        "own CUDA stream, overlapping on the GPU; the same arithmetic as separate "
                                        "runs)", role="execution")
    channels_last: bool = _opt(False, EXEC, "channels-last memory layout for images (kept for the run's life: a "
                                            "resume refuses a change)", role="kernels")
    deterministic: bool = _opt(False, EXEC, "bit-reproducible kernels (kept for the run's life)", role="kernels")
    tf32: bool = _opt(False, PRECISION, "CUDA: TF32 matmuls and convolutions (what an Ampere GPU's fp32 code ran)",
                      role="setting", axis="precision")
    threads: int | None = _opt(None, EXEC, "CPU threads for torch", role="execution")
    time_budget_s: float | None = _opt(None, STOP, ("stop at the last epoch that fits in this many seconds "
                                                        "(from the start of the lsnc command), evaluated there (on "
                                                        "the schedule or not)"), role="stop")
    stop_epoch: int | None = _opt(None, STOP, "stop after this evaluated epoch", role="stop")
    name: str | None = _opt(None, NAMING, "run folder name (default: from loss, model and seed)", role="where")
    preset: str | None = _opt(None, "", "", role="where")  # set by lsnc.presets

    def resolved(self) -> "TrainConfig":
        """A copy with derived fields filled in (eval epochs, run name), validated."""
        cfg = dataclasses.replace(self, milestones=list(self.milestones), data_options=dict(self.data_options),
                                  read_options=dict(self.read_options))
        if cfg.eval_epochs is None:
            cfg.eval_epochs = dense_then_sparse_epochs(cfg.epochs)
        else:
            cfg.eval_epochs = sorted(set(int(e) for e in cfg.eval_epochs) | {0, cfg.epochs})
        if cfg.name is None:
            cfg.name = default_run_name(cfg)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Refuse a configuration that makes no sense, naming the option and the fix (nothing is written yet)."""
        self._validate_data_and_model()
        self._validate_recipe()
        self._validate_execution()

    def _validate_data_and_model(self) -> None:
        from .data import DATASETS, GENERATED_SOURCES, READ_OPTIONS, VECTOR_SOURCES
        from .models import IMAGE_MODELS, MODELS
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        misplaced = sorted(set(self.data_options) & set(READ_OPTIONS))
        if misplaced:
            raise ConfigError(f"data_options {misplaced} choose how the data are read, not which data: pass them in "
                              "read_options (an execution option: runs reading the data otherwise are the same runs)")
        unknown = sorted(set(self.read_options) - set(READ_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown read_options {unknown}; read_options takes {', '.join(READ_OPTIONS)} (what "
                              "the data are goes in data_options)")
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        if self.model in IMAGE_MODELS and self.dataset in VECTOR_SOURCES:
            raise ConfigError(f"--model {self.model} needs images, and --dataset {self.dataset} gives vectors; "
                              "use --model mlp")
        if self.dataset in GENERATED_SOURCES and (self.data_root is not None or self.download):
            raise ConfigError(f"--dataset {self.dataset} is generated on the spot and reads no files, so --data-root "
                              "and --download would be recorded but not used; drop them")
        _at_least(self.width, "--width", 1)
        _at_least(self.train_per_class, "--train-per-class", 1)
        _at_least(self.test_per_class, "--test-per-class", 1)
        _at_least(self.holdout_per_class, "--holdout-per-class", 0)
        for opt, value in (("--group", self.group), ("--name", self.name)):
            if value is not None and (not value or "/" in value or "\\" in value or value.startswith(".")):
                raise ConfigError(f"{opt} must be a plain folder name (no '/', not starting with '.'); got {value!r}")

    def _validate_recipe(self) -> None:
        for opt, value in (("--delta", self.delta), ("--lr", self.lr), ("--momentum", self.momentum),
                           ("--weight-decay", self.weight_decay), ("--gamma", self.gamma),
                           ("--lambda-w", self.lambda_w), ("--lambda-h", self.lambda_h), ("--lambda-b", self.lambda_b)):
            if not math.isfinite(value):
                raise ConfigError(f"{opt} must be a finite number; got {value}")
        if not (0.0 <= self.delta < 1.0):
            raise ConfigError(f"--delta must be in [0, 1) (0 = cross-entropy); got {self.delta}")
        _at_least(self.epochs, "--epochs", 1)
        _at_least(self.batch_size, "--batch-size", 1)
        if not (0 <= self.seed < SEED_LIMIT):  # numpy's generators take no negative seed
            raise ConfigError(f"--seed must be an integer in [0, 2**32); got {self.seed}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive; got {self.lr}")
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
        if self.ufm and min(self.lambda_w, self.lambda_h, self.lambda_b) < 0:
            raise ConfigError("UFM penalties --lambda-w/--lambda-h/--lambda-b must be non-negative")
        if self.ufm and self.weight_decay != 0:
            raise ConfigError(f"--ufm replaces weight decay by the UFM penalties, so --weight-decay "
                              f"{self.weight_decay:g} would be recorded but not applied; pass --weight-decay 0")

    def _validate_execution(self) -> None:
        _at_least(self.eval_batch_size, "--eval-batch-size", 1)
        _at_least(self.threads, "--threads", 1)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ConfigError(f"--device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}")
        if self.amp not in ("none", "bf16"):
            raise ConfigError(f"--amp must be 'none' or 'bf16'; got {self.amp!r}")
        if self.together not in TOGETHER:
            raise ConfigError(f"--together must be one of {', '.join(TOGETHER)}; got {self.together!r}")
        if self.cuda_graphs and self.compile:
            raise ConfigError("--cuda-graphs and --compile cannot be combined; choose one")
        for flag, on in (("--cuda-graphs", self.cuda_graphs), ("--tf32", self.tf32)):
            if on and self.device in ("cpu", "mps"):
                raise ConfigError(f"{flag} needs a CUDA device; got --device {self.device}. Drop {flag}")
        if self.time_budget_s is not None and not (self.time_budget_s > 0 and math.isfinite(self.time_budget_s)):
            raise ConfigError(f"--time-budget-s must be a positive number of seconds; got {self.time_budget_s}")
        _at_least(self.stop_epoch, "--stop-epoch", 1)  # epoch 0 is the initial evaluation: nothing is trained
        if self.stop_epoch is not None and self.eval_epochs is not None and self.stop_epoch not in self.eval_epochs:
            raise ConfigError(f"--stop-epoch {self.stop_epoch} is not an evaluated epoch; choose one of "
                              f"{self.eval_epochs} (a prefix run ends on a metrics row)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)


def fields_with(*roles: str) -> tuple[str, ...]:
    """The TrainConfig fields with one of ``roles`` (:data:`ROLES`), in declaration order."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {', '.join(ROLES)}")
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["role"] in roles)


def field_defaults() -> dict[str, Any]:
    """Every TrainConfig field's default (a fresh list or dict where a factory makes it): what a run whose
    config.json lacks the field, written before the field existed, did."""
    return {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
            for f in dataclasses.fields(TrainConfig)}


def _at_least(value: int | None, option: str, minimum: int) -> None:
    if value is not None and value < minimum:
        raise ConfigError(f"{option} must be at least {minimum}; got {value}")


def default_run_name(cfg: TrainConfig) -> str:
    from .vocab import loss_slug
    loss = loss_slug(cfg.delta)
    model = cfg.model + (f"w{cfg.width}" if cfg.width else "")
    tag = ("-ufm" if cfg.ufm else "") + ("-bf16" if cfg.amp == "bf16" else "")
    return f"{loss}{tag}-{model}-s{cfg.seed}"
