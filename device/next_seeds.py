"""The seeds a GPU window should train: the lowest s = 0, 1, 2, ... whose whole δ set is new.

    python device/next_seeds.py --group GROUP --deltas 0 0.05 --count 2 RUNS_DIR [RUNS_DIR ...]

prints the seeds on one line (e.g. ``1 2``). A seed is taken when any run folder, of any status, in
``RUNS_DIR/GROUP/`` has one of the δ values with that seed: device/window.sh trains every δ of the plan with
every chosen seed, and device/unpack.sh never replaces a run folder, so a window that reused a (δ, seed) would
bring back runs that cannot be kept. What was taken, and why, goes to stderr.

A folder's (δ, seed) comes from its config.json; where that cannot be read (a damaged or half-written folder),
from its name (``ce-...-s3``, ``ls0.05-...-s3``, the default run name), so the folder still blocks the seed.
Folders that are neither (``speed/``) are ignored. Only the standard library: runs with the device's python3.
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


def folder_key(folder: Path) -> tuple[float, int] | None:
    """(δ, seed) of a run folder, from config.json or else its name; None when it is no run folder."""
    try:
        cfg = json.loads((folder / "config.json").read_text())
        return float(cfg["delta"]), int(cfg["seed"])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    m = NAME.match(folder.name)
    if not m:
        return None
    if (folder / "config.json").exists():
        print(f"next_seeds: {folder}: config.json unreadable; (δ, seed) taken from the folder's name", file=sys.stderr)
    return float(m["delta"] or 0.0), int(m["seed"])


def taken_seeds(runs_dirs: list[Path], group: str, deltas: list[float]) -> dict[int, list[str]]:
    """seed -> the run folders that have it with one of ``deltas``."""
    taken: dict[int, list[str]] = {}
    for runs_dir in runs_dirs:
        root = Path(runs_dir) / group
        try:
            folders = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError:  # no such group (yet)
            continue
        for folder in folders:
            key = folder_key(folder)
            if key and any(math.isclose(key[0], d, abs_tol=1e-9) for d in deltas):
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
    p.add_argument("--group", required=True, help="the runs group, e.g. cifar10-jpeg-full-resnet18-gpu")
    p.add_argument("--deltas", required=True, type=float, nargs="+", help="the δ values the window trains")
    p.add_argument("--count", required=True, type=int, help="how many seeds")
    a = p.parse_args(argv)
    taken = taken_seeds(a.runs_dirs, a.group, a.deltas)
    seeds = choose(taken, a.count)
    for s in sorted(taken):
        names = ", ".join(Path(f).name for f in taken[s])
        print(f"next_seeds: seed {s} taken ({names})", file=sys.stderr)
    print(f"next_seeds: δ {' '.join(f'{d:g}' for d in a.deltas)} in {' '.join(map(str, a.runs_dirs))} "
          f"(group {a.group}): seeds {' '.join(map(str, sorted(taken))) or 'none'} taken; "
          f"chose {' '.join(map(str, seeds))}", file=sys.stderr)
    print(" ".join(map(str, seeds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
