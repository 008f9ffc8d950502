"""Which runs a reproduction needs: the run matrix of each reproduction preset (``paper``, ``cpu``, ``smoke``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, TrainConfig
from ..vocab import CE_VS_LS, MAIN_DELTA, PAPER_SWEEP, UFM_DELTAS

REPRODUCTIONS = ("paper", "cpu", "smoke")


@dataclass(frozen=True)
class RunSpec:
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self, data_root: str | None = None, download: bool = False) -> TrainConfig:
        from ..data import GENERATED_SOURCES
        from ..presets import PRESETS, preset_config
        extra: dict[str, Any] = {}
        if self.overrides.get("dataset", PRESETS[self.preset].get("dataset")) in GENERATED_SOURCES:
            data_root, download = None, False  # made on the spot: no files to read or fetch
        if data_root:
            extra["data_root"] = data_root
        if download:
            extra["download"] = True
        return preset_config(self.preset, **{**self.overrides, **extra}).resolved()


def _matrix(preset: str, main_seeds, sweep_seeds, ufm_seeds=(0,), sweep=PAPER_SWEEP) -> list[RunSpec]:
    specs = [RunSpec(preset, {"delta": d, "seed": s}) for s in main_seeds for d in CE_VS_LS]
    for seed in sweep_seeds:
        for delta in sweep:
            spec = RunSpec(preset, {"delta": delta, "seed": seed})
            if spec not in specs:
                specs.append(spec)
    specs += [RunSpec(preset, {"delta": d, "seed": s, "ufm": True}) for s in ufm_seeds for d in UFM_DELTAS]
    return specs


def reproduction_runs(name: str) -> list[RunSpec]:
    """The runs of a reproduction preset, in the order they are trained."""
    if name == "smoke":
        return [RunSpec("smoke", {"delta": 0.0}), RunSpec("smoke", {"delta": MAIN_DELTA}),
                RunSpec("smoke", {"delta": MAIN_DELTA, "ufm": True})]
    if name == "cpu":
        # bf16 autocast twins of three CE/LS seed pairs: how much the fast path's precision moves the results.
        bf16 = [RunSpec("cpu-mnist1d", {"delta": d, "seed": s, "amp": "bf16"}) for s in range(3) for d in CE_VS_LS]
        # the δ sweep on seeds 0-9 (MNIST-1D at 150 and 800 epochs, and on 1600 per class): seeds 5-9 log the NC3
        # decomposition at every δ
        return (_matrix("cpu-mnist1d", main_seeds=range(10), sweep_seeds=range(10))
                # CIFAR's δ sweep on seeds 0-8 (4-8: the CE / LS pairs of cifar10-jpeg that log the NC3 decomposition,
                # at every δ; 5-8 also A against M, nc3_means_whitened_sq)
                + _matrix("cpu-cifar10", main_seeds=range(9), sweep_seeds=range(9)) + bf16
                + _matrix("cpu-mnist1d-800", main_seeds=range(10), sweep_seeds=range(10))
                + _matrix("cpu-cifar10-150", main_seeds=range(7), sweep_seeds=(), ufm_seeds=())
                + _matrix("cpu-cifar10-w32", main_seeds=range(8), sweep_seeds=(), ufm_seeds=())
                + _matrix("cpu-cifar10-resnet50", main_seeds=range(3), sweep_seeds=(), ufm_seeds=())
                + _matrix("cpu-cifar10-resnet50-150", main_seeds=range(3), sweep_seeds=(), ufm_seeds=())
                # seed 5 of the 1000-per-class group: a second CE / LS pair that logs the NC3 decomposition (seeds
                # 0-3 were trained before lsnc logged it)
                + _matrix("cpu-cifar10-1000pc", main_seeds=range(6), sweep_seeds=(), ufm_seeds=())
                + _matrix("cpu-mnist1d-w1024", main_seeds=range(10), sweep_seeds=(), ufm_seeds=())
                + _matrix("cpu-mnist1d-400pc", main_seeds=range(10), sweep_seeds=(), ufm_seeds=())
                + _matrix("cpu-mnist1d-1600pc", main_seeds=range(10), sweep_seeds=range(10), ufm_seeds=())
                + _matrix("cpu-mnist1d-1600pc-800", main_seeds=range(10), sweep_seeds=(), ufm_seeds=()))
    if name == "paper":
        specs = _matrix("paper-cifar10", main_seeds=(0,), sweep_seeds=(0,))
        for preset in ("paper-cifar100", "paper-stl10", "paper-tinyimagenet"):
            specs += _matrix(preset, main_seeds=(0,), sweep_seeds=(), ufm_seeds=())
        return specs
    raise ConfigError(f"unknown reproduction preset {name!r}; choose one of: {', '.join(REPRODUCTIONS)}")
