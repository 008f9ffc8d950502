"""Command line: ``lsnc train``, ``lsnc reproduce``, ``lsnc book``, ``lsnc claims``, ``lsnc compare``,
``lsnc presets``.

Errors in the input (unknown dataset, missing data, bad options, an existing run) print one readable line
and exit with status 2; a run that fails while training exits with status 1 and is marked failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .config import TOGETHER, ConfigError, TrainConfig, fields_with


#: Fields that take several values on the command line: δ and seed (the role ``identity``), trained together.
MULTI = fields_with("identity")
_CHOICES = {"amp": ("none", "bf16")}


def _choices(name: str):
    if name == "dataset":
        from .data import DATASETS
        return sorted(DATASETS)
    if name == "model":
        from .models import MODELS
        return list(MODELS)
    return _CHOICES.get(name)


def _cli_fields():
    """The TrainConfig fields that are command-line options (those with a section), in declaration order."""
    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("section")]


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, typed from its annotation, documented by its metadata."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in _cli_fields():
        g = groups.setdefault(f.metadata["section"], p.add_argument_group(f.metadata["section"]))
        flag, kind, kw = "--" + f.name.replace("_", "-"), str(f.type), {"help": f.metadata["help"]}
        if kind == "bool":
            g.add_argument(flag, action="store_true", default=None, **kw)
            continue
        kw["type"] = int if "int" in kind else float if "float" in kind else str
        if kind.startswith("list"):
            kw["nargs"] = "+" if "None" in kind else "*"
        elif f.name in MULTI:
            kw["nargs"] = "+"
        if _choices(f.name):
            kw["choices"] = _choices(f.name)
        g.add_argument(flag, **kw)


def _at_least_one(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (1 = each run alone), got {value}")
    return value


def configs_from_args(args: argparse.Namespace) -> list[TrainConfig]:
    """The configs of ``lsnc train``: the preset (if any) with the options given, one per (δ, seed) pair."""
    from .presets import preset_config
    overrides = {f.name: getattr(args, f.name, None) for f in _cli_fields()}
    if not args.preset and not args.dataset:
        raise ConfigError("give --preset NAME (see `lsnc presets`) or at least --dataset")
    deltas, seeds = overrides.pop("delta") or [None], overrides.pop("seed") or [None]
    if args.name and len(deltas) * len(seeds) > 1:
        raise ConfigError("--name names one run; leave it out when several --delta/--seed values are given")
    configs = []
    for seed in seeds:
        for delta in deltas:
            configs.append(preset_config(args.preset, **overrides, delta=delta, seed=seed))
    return configs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsnc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    runs_dir_help = ("where run folders are written (default: runs/ in the working directory; the book reads the "
                     "repository's runs/, or the notebooks' runs_dir parameter)")
    p = sub.add_parser("train", help="train runs into <runs-dir>/<group>/<name>/ (several --delta/--seed: fused)")
    p.add_argument("--preset", help="start from a named setting (see `lsnc presets`)")
    p.add_argument("--runs-dir", default="runs", help=runs_dir_help)
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run folder of that name first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_train_options(p)

    p = sub.add_parser("reproduce", help="train every run a reproduction preset needs (skips finished runs)")
    p.add_argument("--preset", required=True, help="paper | cpu | smoke")
    p.add_argument("--runs-dir", default="runs", help=runs_dir_help)
    p.add_argument("--data-root", help="root folder of the downloaded datasets (paper preset)")
    p.add_argument("--download", action="store_true", help="fetch missing datasets (paper preset)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be trained")
    p.add_argument("--only", help="train only runs whose group/name contains this text")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--status", action="store_true", help="only report the state of every run")
    p.add_argument("--fuse", type=_at_least_one, default=1,
                   help="train up to this many runs that differ only in δ and seed as one fused network (faster on a "
                        "GPU)")
    p.add_argument("--together", choices=list(TOGETHER), default="fused",
                   help="how --fuse trains its runs together: one fused network, or a network each on its own CUDA "
                        "stream (the same arithmetic as separate runs)")
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

    # no --runs-dir: the book's pages read the repository's runs/ (lsnc.paths.default_runs_dir), so it trains there
    p = sub.add_parser("book", help="the whole job: train what the repository's runs/ miss, then build the book")
    p.add_argument("--preset", default="cpu", help="reproduction preset whose runs the book shows")
    p.add_argument("--no-train", action="store_true", help="build from the runs present; train nothing")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("claims", help="test the paper's claims C1-C5 on finished runs: the verdicts per group and "
                                      "claim, then each measured part at a glance (the book's claims page, as text)")
    p.add_argument("--runs-dir", default="runs", help="the runs folder to read (default: runs/ in the working "
                                                      "directory)")
    p.add_argument("--group", help="a run group (a folder under the runs folder, e.g. cifar10-jpeg-w32) or a dataset "
                                   "(mnist1d: every group of its runs), as the book's pages take it (default: all)")
    p.add_argument("--csv", help="also write the whole claims table (one row per group and test, with its "
                                 "test_id, values per seed and note) to this CSV file")

    p = sub.add_parser("compare", help="compare runs with their namesakes elsewhere (a rerun against runs/); exit 1 "
                                       "when a pair differs beyond the tolerance or a run is unfinished")
    p.add_argument("first", help="a run folder, a group folder (runs/mnist1d) or a runs folder")
    p.add_argument("second", help="the same kind of folder holding the runs to compare with")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: equal to the last bit)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")

    sub.add_parser("presets", help="list the training presets")
    return parser


def compare(first: str, second: str, rtol: float, atol: float) -> int:
    """``lsnc compare``: one line per pair of runs, then a count; 1 when a pair differs or is incomplete, 2 when
    none matched."""
    from .runs.compare import compare_folders
    from .runs.format import RunError
    pairs, only_first, only_second = compare_folders(first, second, rtol=rtol, atol=atol)
    if not pairs:
        raise RunError(f"no run in {first} has a namesake in {second}: give two run folders, two group folders "
                       f"(runs/mnist1d) or two runs folders")
    for c in pairs:
        print(c.line())
    for where, names in ((first, only_first), (second, only_second)):
        if names:
            print(f"only in {where} ({len(names)}): {', '.join(names)}")
    counts = {v: sum(c.verdict == v for c in pairs) for v in ("identical", "close", "differs", "incomplete")}
    print(f"{len(pairs)} pair{'s' if len(pairs) != 1 else ''}: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return 1 if counts["differs"] or counts["incomplete"] else 0


def claims(runs_dir: str, group: str | None, csv: str | None) -> int:
    """``lsnc claims``: the verdict counts per group and claim (+ supported, − not supported, ? inconclusive, (+) / (−)
    a prefix's direction) and what each group compares (data, model, epochs, seed pairs), then one line per measured
    part of C1-C5 (``lsnc.book.claims.glance_lines``), then the
    runs it could not read (still running, damaged); with ``csv``, the whole table too. The theory's C6 is on the
    book's claims page (it computes, it reads no runs)."""
    import warnings

    from .atomic import write_text_atomic
    from .book import claims as tested
    from .book.select import UnknownDataset
    from .runs.format import RunDamaged, RunError, find_runs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunDamaged)
        every = find_runs(runs_dir, status=None)
    damaged = [str(w.message) for w in caught if issubclass(w.category, RunDamaged)]
    unfinished = [f"{r.dataset}/{r.name} ({r.status.get('status')})" for r in every
                  if r.status.get("status") != "done"]
    done = [r for r in every if r.status.get("status") == "done"]
    try:
        table = tested.claims_table(runs_dir, group, runs=done)
    except (tested.ClaimsError, UnknownDataset) as exc:   # nothing to read, or a group no run holds
        raise RunError(str(exc) + (f" Not finished: {', '.join(unfinished)}." if unfinished else "")) from exc
    if csv:
        try:
            write_text_atomic(csv, table.to_csv(index=False))
        except OSError as exc:
            raise RunError(f"cannot write {csv} ({exc.strerror}); give a --csv path in a writable folder") from exc
    print("Tests per group and claim by verdict: + supported, − not supported, ? inconclusive, (+) / (−) which way "
          "runs stopped early in their recipe go so far.")
    print(tested.verdict_matrix(table).to_string())
    print("\nWhat each group compares:")
    print(tested.compared_lines(table, done))
    print("\nEach measured part at a glance (×r: LS / CE, the ratio of the means over the seed pairs):")
    print(tested.glance_lines(table).replace("**", "").replace("`", ""))
    for what, items in (("not finished, not read", unfinished), ("damaged, not read", damaged)):
        if items:
            print(f"\n{len(items)} run{'s' if len(items) != 1 else ''} {what}: " + "; ".join(items))
    return 0


def _nothing_to_resume(cfgs: list[TrainConfig], runs_dir: str) -> None:
    """Say so when ``--resume`` names a run that has no folder yet (a mistyped --runs-dir, --group or --name would
    otherwise start a new run from epoch 0 without a word)."""
    from .runs.lifecycle import run_folder
    for cfg in cfgs:
        folder = run_folder(runs_dir, cfg.resolved())
        if not folder.exists():
            print(f"lsnc: {folder} does not exist, so there is nothing to resume: training it from epoch 0 "
                  "(check --runs-dir, --group and --name if you meant an existing run)", file=sys.stderr)


def _executor_options(args: argparse.Namespace):
    if args.executor == "inline":
        return None
    from pathlib import Path

    from .orchestrate.cluster import ExecutorOptions
    given = {"kind": args.executor, "partition": args.partition, "gpus": args.gpus, "cpus": args.cpus,
             "time_min": args.time_min, "mem_gb": args.mem_gb, "account": args.account, "qos": args.qos}
    default_log_dir = str(Path(args.runs_dir) / ".jobs" / "logs")  # unless the config file names its own
    if args.executor_config:
        return ExecutorOptions.from_file(args.executor_config, defaults={"log_dir": default_log_dir}, **given)
    return ExecutorOptions(log_dir=default_log_dir, **{k: v for k, v in given.items() if v is not None})


def build_book(preset: str, *, train_missing: bool, progress: bool) -> int:
    """Train the preset's runs missing from the repository's runs/ (the folder the pages read; finished runs are
    skipped), then `jupyter-book build book`."""
    import shutil
    import subprocess
    from pathlib import Path

    from .orchestrate.reproduce import reproduce
    from .paths import book_dir, default_runs_dir
    if train_missing and reproduce(preset, runs_dir=default_runs_dir(), progress=progress) != 0:
        print("lsnc: some runs failed (see above); building the book from the runs that finished", file=sys.stderr)
    exe = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    reports = book_dir() / "_build" / "html" / "reports"
    shutil.rmtree(reports, ignore_errors=True)  # jupyter-book writes one log per page that failed to execute
    if subprocess.run([exe, "build", "--all", str(book_dir())]).returncode != 0:
        print("lsnc: error: jupyter-book build failed (see above)", file=sys.stderr)
        return 1
    failed = sorted(p.name.split(".")[0] for p in reports.glob("*.err.log")) if reports.is_dir() else []
    if failed:
        print(f"lsnc: error: {len(failed)} page(s) failed to execute: {', '.join(failed)} "
              f"(logs in {reports.relative_to(book_dir().parent)})", file=sys.stderr)
        return 1
    print(book_dir() / "_build" / "html" / "index.html")
    return 0


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    """The command line; ``started`` (a ``time.perf_counter()`` reading): when the process started, for
    ``train --time-budget-s`` (default: when training is called)."""
    from .data import DataError
    from .runs import RunError
    from .training import NonFiniteLoss, train_many

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors (exit 2) and --help (exit 0), as a return code
        return int(exc.code or 0)
    try:
        if args.command == "presets":
            from .presets import PRESETS
            for name, values in PRESETS.items():
                print(f"{name}: {json.dumps(values, sort_keys=True)}")
            return 0
        if args.command == "reproduce":
            from .orchestrate.reproduce import reproduce
            return reproduce(args.preset, runs_dir=args.runs_dir, data_root=args.data_root, download=args.download,
                             dry_run=args.dry_run, only=args.only, progress=not args.quiet,
                             executor=_executor_options(args), wait=args.wait, status_only=args.status,
                             fuse=args.fuse, together=args.together)
        if args.command == "compare":
            return compare(args.first, args.second, args.rtol, args.atol)
        if args.command == "claims":
            return claims(args.runs_dir, args.group, args.csv)
        if args.command == "book":
            return build_book(args.preset, train_missing=not args.no_train, progress=not args.quiet)
        if args.resume and args.overwrite:
            raise ConfigError("--resume continues a run and --overwrite deletes it first; give one of them")
        cfgs = configs_from_args(args)
        if args.resume:
            _nothing_to_resume(cfgs, args.runs_dir)
        folders = train_many(cfgs, args.runs_dir, resume=args.resume, overwrite=args.overwrite,
                             progress=not args.quiet, started=started)
        print("\n".join(map(str, folders)))
        return 0
    except (ConfigError, DataError, RunError) as exc:
        print(f"lsnc: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLoss as exc:
        print(f"lsnc: run failed: {exc}", file=sys.stderr)
        return 1


def command() -> int:
    """The ``lsnc`` command and ``python -m lsnc``: :func:`main`, its time budgets counted from when the process
    imported lsnc (``lsnc.IMPORTED_AT``)."""
    from . import IMPORTED_AT
    return main(started=IMPORTED_AT)


if __name__ == "__main__":
    sys.exit(command())
