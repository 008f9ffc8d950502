"""What a window started now would train (`device/window.py --preview`, which device/prepare.sh prints): the plan
it takes from the earlier windows in LSNC_WINDOW_KNOWN_RUNS (this checkout's runs/), the same choice as a window's
before its machine's checks, its seeds and its tf32 twin. Nothing is written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .files import DEFAULT_PLAN, read_plan
from .plan import derive_plan, newest_earlier
from .seeds import next_seeds
from .settings import Settings, relative_to_repo


def preview(s: Settings) -> int:
    say = lambda message: print(f"prepare: {message}", flush=True)
    speed_json, _, plan_env, _ = newest_earlier(s.known, s.both_groups, lambda message: None)
    plan, from_json = None, False
    with tempfile.TemporaryDirectory() as tmp:
        if speed_json is not None:
            plan = derive_plan(s.python, speed_json, Path(tmp), Path(tmp, "why.txt"))
            if plan is not None:
                from_json = True
                say(f"the window re-derives its plan from {relative_to_repo(speed_json)}: "
                    f"{Path(tmp, 'why.txt').read_text().rstrip()}")
    if plan is None and plan_env is not None:
        plan = read_plan(plan_env)
        say(f"the window reuses the plan {relative_to_repo(plan_env)}: {' '.join(plan_env.read_text().split())}")
    if plan is None:
        say(f"no earlier plan in {relative_to_repo(s.known)}/{s.group}[-bf16]/speed/: the window runs the speed "
            "matrix")
        plan, which = {**DEFAULT_PLAN, "PLAN_SEEDS": "0 1"}, "the first 1 or 2 (its plan says) of seeds"
    else:
        plan, which = {**DEFAULT_PLAN, **plan}, "seeds"
    if (from_json and plan["PLAN_MODE"] in ("fused", "streams") and plan["PLAN_GRAPHS"] == "1"
            and plan["PLAN_K"] in ("2", "4")):
        say("before training, the window checks the graphed step on its machine and probes the set on CUDA streams "
            "there (training_plan.py --probe): streams where they pass and are >= 1.1x one graphed fused network, "
            "else fused; on streams, K=4 (a second seed) where each member keeps >= 0.8 of its epochs")
    bf16 = plan["PLAN_AMP"] == "bf16"
    seeds = lambda *args: next_seeds(s.python, s.both_groups, *args, s.known)
    rc, found, err = seeds("--deltas", *plan["PLAN_DELTAS"].split(), "--count", str(len(plan["PLAN_SEEDS"].split())),
                           "--amp", "bf16" if bf16 else "none")
    if rc != 0:
        say(f"device/next_seeds.py failed: {err.strip()}")
        return 1
    group = f"bf16, group {s.group}-bf16" if bf16 else f"TF32, group {s.group}"
    say(f"the window trains δ {{{plan['PLAN_DELTAS']}}} ({group}) with {which} {found.strip()} "
        "(device/next_seeds.py)")
    if bf16 and plan["PLAN_TWIN"] == "1":
        first = found.split()[0]
        twins_rc, twins, _ = seeds("--deltas", "0", "--find", first, "--amp", "none")
        have = seeds("--deltas", "0", "--twin-pairs")[1].split()
        if twins_rc == 0:
            say(f"its tf32 twin (CE, seed {first}) was trained before: "
                f"{' '.join(os.path.basename(x) for x in twins.split())}")
        elif len(have) >= s.twins_enough:
            say(f"no tf32 twin: seeds {' '.join(have)} already have CE runs in both precisions")
        else:
            say(f"it also trains the tf32 twin (CE, seed {first}) for the last quarter of its budget")
    return 0
