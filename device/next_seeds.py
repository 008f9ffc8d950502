"""The seeds a GPU window should train: the lowest s = 0, 1, 2, ... whose whole δ set is new at its precision.

    python device/next_seeds.py --group GROUP --deltas 0 0.05 --count 2 [--amp bf16] RUNS_DIR [RUNS_DIR ...]
    python device/next_seeds.py --group GROUP --deltas 0 --find SEED [--amp none] RUNS_DIR [RUNS_DIR ...]
    python device/next_seeds.py --group GROUP --deltas 0 --twin-pairs RUNS_DIR [RUNS_DIR ...]

The first prints the seeds on one line (e.g. ``1 2``). A seed is taken when any run folder, of any status, in
``RUNS_DIR/GROUP/`` has one of the δ values with that seed and the same autocast (``--amp``, default "none": fp32
or TF32): device/window.sh trains every δ of the plan with every chosen seed, and device/unpack.py never replaces
a run folder, so a window that reused a (δ, seed, precision) would bring back runs that cannot be kept. A bf16
run and a TF32 one of the same δ and seed are two folders (the default name of a bf16 run carries ``-bf16``),
precision twins. What was taken, and why, goes to stderr.

The second (``--find``) prints the run folders that hold ``SEED`` with one of the δ values at ``--amp``, one a
line, and exits 1 when there is none: device/window.sh asks it whether the TF32 twin of a bf16 set's CE run was
trained by an earlier window. ``--twin-pairs`` prints the seeds that have such a run in both precisions (how
many precision twins the group holds).

A folder's (δ, seed, autocast) comes from its config.json; where that cannot be read (a damaged or half-written
folder), from its name (``ce-...-s3``, ``ls0.05-bf16-...-s3``, the default run name), so the folder still
blocks the seed. Folders that are neither (``speed/``) are ignored. Only the standard library: runs with the
device's python3.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

#: A default run name (lsnc.config.default_run_name): loss slug, tags and model, then the seed.
NAME = re.compile(r"^(?:ce|ls(?P<delta>[0-9.]+(?:e-?[0-9]+)?))(?:-.*)?-s(?P<seed>[0-9]+)$")


def folder_key(folder: Path) -> tuple[float, int, str] | None:
    """(δ, seed, autocast) of a run folder, from config.json or else its name; None when it is no run folder."""
    try:
        cfg = json.loads((folder / "config.json").read_text())
        return float(cfg["delta"]), int(cfg["seed"]), str(cfg.get("amp") or "none")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    m = NAME.match(folder.name)
    if not m:
        return None
    if (folder / "config.json").exists():
        print(f"next_seeds: {folder}: config.json unreadable; (δ, seed) taken from the folder's name", file=sys.stderr)
    return float(m["delta"] or 0.0), int(m["seed"]), "bf16" if "-bf16-" in folder.name else "none"


def taken_seeds(runs_dirs: list[Path], groups: str | list[str], deltas: list[float],
                amp: str = "none") -> dict[int, list[str]]:
    """seed -> the run folders (in any of ``groups``) that have it with one of ``deltas`` and autocast ``amp``."""
    taken: dict[int, list[str]] = {}
    groups = [groups] if isinstance(groups, str) else groups
    for root in (Path(runs_dir) / group for runs_dir in runs_dirs for group in groups):
        try:
            folders = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError:  # no such group (yet)
            continue
        for folder in folders:
            key = folder_key(folder)
            if key and key[2] == amp and any(math.isclose(key[0], d, abs_tol=1e-9) for d in deltas):
                taken.setdefault(key[1], []).append(str(folder))
    return taken


def choose(taken: dict[int, list[str]], count: int) -> list[int]:
    """The ``count`` lowest seeds not in ``taken``."""
    seeds, s = [], 0
    while len(seeds) < count:
        if s not in taken:
            seeds.append(s)
        s += 1
    return seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs_dirs", nargs="+", type=Path, help="runs folders to look in (missing ones are empty)")
    p.add_argument("--group", required=True, nargs="+",
                   help="the runs group(s), e.g. cifar10-jpeg-full-resnet18-gpu cifar10-jpeg-full-resnet18-gpu-bf16")
    p.add_argument("--deltas", required=True, type=float, nargs="+", help="the δ values the window trains")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--count", type=int, help="how many seeds")
    how.add_argument("--find", type=int, metavar="SEED", help="list the runs of SEED (exit 1: none)")
    how.add_argument("--twin-pairs", action="store_true",
                     help="list the seeds that have runs of the δ values in both precisions (bf16 and fp32/TF32)")
    p.add_argument("--amp", default="none", choices=("none", "bf16"), help="the autocast of the runs (default none)")
    a = p.parse_args(argv)
    if a.twin_pairs:
        both = set(taken_seeds(a.runs_dirs, a.group, a.deltas, "none")) & set(
            taken_seeds(a.runs_dirs, a.group, a.deltas, "bf16"))
        print(" ".join(map(str, sorted(both))))
        return 0
    taken = taken_seeds(a.runs_dirs, a.group, a.deltas, a.amp)
    if a.find is not None:
        print("\n".join(taken.get(a.find, [])))
        return 0 if a.find in taken else 1
    seeds = choose(taken, a.count)
    for s in sorted(taken):
        names = ", ".join(Path(f).name for f in taken[s])
        print(f"next_seeds: seed {s} taken ({names})", file=sys.stderr)
    precision = "bf16" if a.amp == "bf16" else "fp32/TF32"
    print(f"next_seeds: δ {' '.join(f'{d:g}' for d in a.deltas)} ({precision}) in {' '.join(map(str, a.runs_dirs))} "
          f"(group {' '.join(a.group)}): seeds {' '.join(map(str, sorted(taken))) or 'none'} taken; "
          f"chose {' '.join(map(str, seeds))}", file=sys.stderr)
    print(" ".join(map(str, seeds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
