"""Command line: ``lsnc train``, ``lsnc reproduce``, ``lsnc presets``.

Errors in the input (unknown dataset, missing data, bad options, an existing run) print one readable line
and exit with status 2; a run that fails while training exits with status 1 and is marked failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, TrainConfig


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help="cifar10 | cifar100 | stl10 | tinyimagenet | imagefolder | mnist1d | synthetic")
    g.add_argument("--data-root", help="folder holding (or receiving, with --download) the dataset")
    g.add_argument("--download", action="store_true", default=None,
                   help="fetch the dataset into --data-root if it is missing (never done implicitly)")
    g.add_argument("--train-per-class", type=int, help="balanced, seeded training subset: images per class")
    g.add_argument("--test-per-class", type=int, help="balanced, seeded test subset: images per class")
    g.add_argument("--holdout-per-class", type=int,
                   help="images per class held out of the training pool to fit the temperature (calibration)")
    g.add_argument("--group", help="folder under --runs-dir for these runs (default: the dataset name)")
    g = p.add_argument_group("model and loss")
    g.add_argument("--model", help="resnet18 | resnet50 | mlp")
    g.add_argument("--width", type=int, help="ResNet base width (64 = paper) or MLP hidden width")
    g.add_argument("--delta", type=float, help="label smoothing δ in [0, 1); 0 = cross-entropy")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--milestones", type=int, nargs="*", help="epochs at which lr is multiplied by 0.1")
    g.add_argument("--seed", type=int)
    g.add_argument("--eval-epochs", type=int, nargs="+", help="epochs with a metrics row (0 and the last always)")
    g.add_argument("--eval-batch-size", type=int)
    g.add_argument("--ufm", action="store_true", default=None,
                   help="UFM-style training: no weight decay, explicit penalties on W, b and the features")
    g.add_argument("--lambda-w", type=float)
    g.add_argument("--lambda-h", type=float)
    g.add_argument("--lambda-b", type=float)
    g = p.add_argument_group("execution (speed only; the recipe is unchanged)")
    g.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    g.add_argument("--amp", choices=["none", "bf16"], help="bf16 autocast (default none = fp32)")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the training step")
    g.add_argument("--channels-last", action="store_true", default=None)
    g.add_argument("--deterministic", action="store_true", default=None, help="bit-reproducible kernels")
    g.add_argument("--threads", type=int, help="CPU threads for torch")


_CONFIG_KEYS = ("dataset", "data_root", "download", "train_per_class", "test_per_class", "holdout_per_class",
                "model", "width", "delta", "epochs", "lr", "momentum", "weight_decay", "batch_size", "milestones",
                "seed", "eval_epochs", "eval_batch_size", "ufm", "lambda_w", "lambda_h", "lambda_b", "device",
                "amp", "compile", "channels_last", "deterministic", "threads", "name")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from .presets import preset_config
    overrides = {k: getattr(args, k, None) for k in _CONFIG_KEYS}
    if getattr(args, "group", None):
        overrides["data_options"] = {"group": args.group}
    if args.preset:
        return preset_config(args.preset, **overrides)
    if not args.dataset:
        raise ConfigError("give --preset NAME (see `lsnc presets`) or at least --dataset")
    values = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(**values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsnc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run into <runs-dir>/<dataset>/<name>/",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", help="start from a named setting (see `lsnc presets`)")
    p.add_argument("--name", help="run folder name (default: from loss, model and seed)")
    p.add_argument("--runs-dir", default="runs", help="where run folders are written")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run folder of that name first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_train_options(p)

    p = sub.add_parser("reproduce", help="train every run a reproduction preset needs (skips finished runs)")
    p.add_argument("--preset", required=True, help="paper | cpu | smoke")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--data-root", help="root folder of the downloaded datasets (paper preset)")
    p.add_argument("--download", action="store_true", help="fetch missing datasets (paper preset)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be trained")
    p.add_argument("--only", help="train only runs whose group/name contains this text")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--status", action="store_true", help="only report the state of every run")
    g = p.add_argument_group("cluster (submitit)")
    g.add_argument("--executor", choices=["inline", "local", "slurm"], default="inline",
                   help="inline: train here, one run after another; local: submitit local processes (one per GPU, "
                        "or one sequential job on CPU); slurm: one SLURM job per run, requeued on preemption")
    g.add_argument("--executor-config", help="JSON file with executor options (partition, gpus, cpus, time_min, "
                                             "mem_gb, account, qos, log_dir, extra)")
    g.add_argument("--partition")
    g.add_argument("--gpus", type=int, help="GPUs per job (slurm)")
    g.add_argument("--cpus", type=int, help="CPUs per job (slurm)")
    g.add_argument("--time-min", type=int, help="job time limit in minutes; longer runs are requeued and resume")
    g.add_argument("--mem-gb", type=int)
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--wait", action="store_true", help="slurm: wait for the jobs and report (local always waits)")

    p = sub.add_parser("book", help="the whole job: train what the default runs miss, then build the book")
    p.add_argument("--preset", default="cpu", help="reproduction preset whose runs the book shows")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--no-train", action="store_true", help="build from the runs present; train nothing")
    p.add_argument("--quiet", action="store_true")

    sub.add_parser("presets", help="list the training presets")
    return parser


def _executor_options(args: argparse.Namespace):
    if args.executor == "inline":
        return None
    from pathlib import Path

    from .cluster import ExecutorOptions
    given = {"kind": args.executor, "partition": args.partition, "gpus": args.gpus, "cpus": args.cpus,
             "time_min": args.time_min, "mem_gb": args.mem_gb, "account": args.account, "qos": args.qos,
             "log_dir": str(Path(args.runs_dir) / ".jobs" / "logs")}
    if args.executor_config:
        return ExecutorOptions.from_file(args.executor_config, **given)
    return ExecutorOptions(**{k: v for k, v in given.items() if v is not None})


def build_book(preset: str, runs_dir: str, *, train_missing: bool, progress: bool) -> int:
    """Train the preset's missing runs (finished ones are skipped), then `jupyter-book build book`."""
    import shutil
    import subprocess
    from pathlib import Path

    from .reproduce import reproduce
    root = Path(__file__).resolve().parent.parent
    if train_missing and reproduce(preset, runs_dir=runs_dir, progress=progress) != 0:
        print("lsnc: some runs failed (see above); building the book from the runs that finished", file=sys.stderr)
    exe = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    if subprocess.run([exe, "build", "--all", str(root / "book")]).returncode != 0:
        print("lsnc: error: jupyter-book build failed (see above)", file=sys.stderr)
        return 1
    print(root / "book" / "_build" / "html" / "index.html")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .data import DataError
    from .runs import RunError
    from .train import NonFiniteLoss, train

    args = build_parser().parse_args(argv)
    try:
        if args.command == "presets":
            from .presets import PRESETS
            for name, values in PRESETS.items():
                print(f"{name}: {json.dumps(values, sort_keys=True)}")
            return 0
        if args.command == "reproduce":
            from .reproduce import reproduce
            return reproduce(args.preset, runs_dir=args.runs_dir, data_root=args.data_root, download=args.download,
                             dry_run=args.dry_run, only=args.only, progress=not args.quiet,
                             executor=_executor_options(args), wait=args.wait, status_only=args.status)
        if args.command == "book":
            return build_book(args.preset, args.runs_dir, train_missing=not args.no_train, progress=not args.quiet)
        cfg = config_from_args(args)
        folder = train(cfg, args.runs_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
        print(folder)
        return 0
    except (ConfigError, DataError, RunError) as exc:
        print(f"lsnc: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLoss as exc:
        print(f"lsnc: run failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
