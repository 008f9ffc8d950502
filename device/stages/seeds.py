"""Stage 2, a new set: its seeds. Every window adds runs: its seeds are the lowest whose whole δ set no earlier
window trained at the plan's precision (device/next_seeds.py over the committed runs, this call's and the kept
ones); and a bf16 set's tf32 twin trains only while the group has too few."""

from __future__ import annotations

import os
import re

from .call import Window, command_output
from .settings import REPO


def next_seeds(python: str, groups: list[str], *args: str) -> tuple[int, str, str]:
    """device/next_seeds.py over ``groups`` with ``args`` (its options, then the runs folders to look in): its exit
    status, stdout and stderr."""
    return command_output([python, str(REPO / "device" / "next_seeds.py"), "--group", *groups, *args])


def choose_seeds(w: Window) -> None:
    """w.seeds: the lowest whose whole δ set no earlier window trained at the plan's precision, as found in
    LSNC_WINDOW_KNOWN_RUNS (the committed runs, carried with the checkout): unpack.sh never replaces a run folder,
    and checkpoints never come back, so a repeated (δ, seed, precision) would be a lost window. A bf16 set's runs
    are named apart from TF32 ones (-bf16-): TF32 runs of the same seeds are its precision twins."""
    s, plan = w.s, w.plan
    keep_runs, plan_seeds = str(s.keep / "runs"), plan["PLAN_SEEDS"].split()
    amp = ["--amp", "bf16" if plan["PLAN_AMP"] == "bf16" else "none"]
    seeds = lambda *args: next_seeds(s.python, s.both_groups, *args)
    rc, found, err = seeds("--deltas", *w.deltas, "--count", str(len(plan_seeds)), *amp, keep_runs, s.known,
                           str(w.runs))
    found = found.rstrip("\n")
    for line in err.splitlines():
        w.log(line)
    if s.seeds:
        w.seeds = s.seeds.split()
        w.log(f"seeds: {' '.join(w.seeds)} (LSNC_WINDOW_SEEDS; the plan's {plan['PLAN_SEEDS']}; new ones would be "
              f"{found or 'unknown'})")
        for seed in w.seeds:
            if f"seed {seed} taken" in err:
                w.log(f"warning: seed {seed} was trained before: unpack.sh will not replace those runs")
    elif rc == 0 and re.fullmatch(r"[0-9]+( [0-9]+)*", found):
        w.seeds = found.split()
        w.log(f"seeds: {' '.join(w.seeds)} (as many as the plan's, the lowest not yet trained with δ "
              f"{' '.join(w.deltas)} at this precision)")
    else:
        w.seeds = plan_seeds
        w.log(f"warning: device/next_seeds.py failed (exit {rc}): the plan's seeds {' '.join(w.seeds)}")
    # The tf32 twin of a bf16 set (its CE run of the first seed) trains only where no earlier window trained it
    # (the TF32 runs of that seed are its twins then) and while the group holds fewer than LSNC_WINDOW_TWINS
    # seeds with CE runs in both precisions: past that, the bf16 set gets the whole budget.
    if plan["PLAN_AMP"] == "bf16" and plan["PLAN_TWIN"] == "1":
        rc, twins, _ = seeds("--deltas", "0", "--find", w.seeds[0], "--amp", "none", s.known, str(w.runs), keep_runs)
        if rc == 0:
            plan["PLAN_TWIN"] = "0"
            names = "".join(os.path.basename(x) + " " for x in twins.split())
            w.log(f"tf32 twin of seed {w.seeds[0]}: trained before ({names}): not again")
            w.summary(f"twin: trained before: {names}")
        else:
            have = seeds("--deltas", "0", "--twin-pairs", s.known, str(w.runs), keep_runs)[1].split()
            if len(have) >= s.twins_enough:
                plan["PLAN_TWIN"] = "0"
                w.log(f"tf32 twin: not trained, the group has CE runs in both precisions for seeds "
                      f"{' '.join(have)} (LSNC_WINDOW_TWINS={s.twins_enough} is enough)")
                w.summary(f"twin: enough twins already (seeds {' '.join(have)})")
    w.summary(f"seeds: {' '.join(w.seeds)}")
