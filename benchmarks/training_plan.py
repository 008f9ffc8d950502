"""The training set a GPU window trains, chosen from a speed matrix's cells (benchmarks/speed_matrix.py).

    python3 benchmarks/training_plan.py SPEED_JSON [--out-dir DIR] [--no-graphs] [--probe PROBE_JSON]

prints the plan and why, and writes ``DIR/plan.env`` (KEY="value" lines device/stages/files.py reads back). The matrix
writes the same plan.env itself; this script re-derives it from an earlier window's speed.json, so a window that
skips the matrix trains by the current rule, not by the one in force when the matrix ran. ``--probe`` takes the
few cells a window measured on its own machine (device/window.sh's check stage) to choose how the set trains
together there, and whether a second seed comes nearly free on streams (:func:`probe_streams`). Only the
standard library: it runs on the device's python3 and on any development machine.

The rule (:func:`training_plan`), in short: the precision whose CE/LS pair trains the most images per second per
model (bf16 only at >= BF16_FACTOR x TF32, graphs and streams counted where their check passed), then the largest
K whose members keep >= K_KEEP of the epochs they get at K = 2, then fused, on streams, or concurrent processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

KS = (1, 2, 4, 8)
K_KEEP = 0.8        # a larger K is taken while each member gets >= K_KEEP x the epochs it gets at K = 2
BF16_FACTOR = 1.3   # bf16 is used for training only when its per-model img/s is >= BF16_FACTOR x tf32's
GRAPHS_FACTOR = 1.15  # CUDA graphs are used only when they give >= GRAPHS_FACTOR x the eager per-model img/s
STREAMS_FACTOR = 1.1  # K networks on K streams replace one fused network at >= STREAMS_FACTOR x its per-model img/s
#: evaluations per epoch over the part of the recipe a window trains, epochs 1-200: every epoch to 10, every 5 to
#: 50, every 10 to 200, and 75, 125, 175 (36 of 200; lsnc.config.dense_then_sparse_epochs, the evaluation
#: schedule's one home: a test checks this against it, since this script runs without lsnc)
EVALS_PER_EPOCH = 36 / 200
#: K -> (δ values, seeds) of the set
PLAN_SETS = {2: ((0.0, 0.05), (0,)), 4: ((0.0, 0.05), (0, 1)), 8: ((0.0, 0.05, 0.1, 0.2), (0, 1))}

__all__ = ["training_plan", "probe_streams", "evaluation_seconds", "plan_env", "KS", "K_KEEP", "BF16_FACTOR",
           "GRAPHS_FACTOR", "STREAMS_FACTOR", "EVALS_PER_EPOCH", "PLAN_SETS"]


def training_plan(cells: list[dict], train_images: int | None = None) -> dict:
    """The fused training set the matrix suggests.

    Rates: a K's per-model img/s at a precision is the fused cell's (K >= 2; the single-model cell at K = 1), or
    the graphed cell's where the CUDA-graph check at that precision passed and the graphed step gives
    >= GRAPHS_FACTOR x the eager rate (the set then trains with ``--cuda-graphs``), or the streams cell's (K
    networks graphed on K CUDA streams, ``--together streams --cuda-graphs``) where the streams check at that
    precision passed and it gives >= STREAMS_FACTOR x that.
    Precision: bf16 if its rate at K = 2 (the single-model rate when no fused K = 2 cell ran at both precisions)
    is >= BF16_FACTOR x tf32's, else tf32; a bf16 plan adds one tf32 twin (CE, the first seed; device/window.sh
    skips it where an earlier window already trained that seed in tf32). Graphs count here: on an H200 (window
    20261127T2052Z) eager bf16 was no faster than TF32, graphed bf16 1.7x.
    K: a member's wall time per epoch with K fused models is ``train_images / rate + EVALS_PER_EPOCH x K x
    eval_s`` (the members are evaluated one after another, on the recipe's evaluated epochs; eval_s from the
    evaluation cell, 0 when it did not run or ``train_images`` is not given). K = the largest of 4, 8 whose epoch time is
    <= that of K = 2 / K_KEEP (each member loses at most 1 - K_KEEP of the epochs it would get at K = 2 in the
    same wall time), else 2. K picks the δ x seed set (:data:`PLAN_SETS`): 2: δ {0, 0.05} x seed {0}; 4: δ {0, 0.05}
    x seeds {0, 1}; 8: δ {0, 0.05, 0.1, 0.2} x seeds {0, 1}. Concurrent tf32 processes instead of fusion: when
    K = 2 fused models together run slower than one alone, or when the fused cells failed at the plan's precision.
    """
    ok = [c for c in cells if c.get("status") == "ok" and not c.get("compile")]
    eager = [c for c in ok if not c.get("cuda_graphs")]
    fused = {(c["precision"], c["k"]): c["img_s_per_model"] for c in eager if c["pipeline"] == "fused"}
    single = {c["precision"]: c["img_s_per_model"] for c in eager if c["pipeline"] == "lsnc"}
    checks = [c for c in ok if c["pipeline"] == "check"]  # the precisions whose graph checks passed
    checked = {c["precision"] for c in checks if c.get("together", "fused") == "fused"}
    streams_checked = {c["precision"] for c in checks if c.get("together") == "streams"}
    graphed = {(c["precision"], c["k"]): c["img_s_per_model"] for c in ok
               if c["precision"] in checked and c.get("cuda_graphs") and c["pipeline"] in ("lsnc", "fused")}
    streamed = {(c["precision"], c["k"]): c["img_s_per_model"] for c in ok
                if c["precision"] in streams_checked and c["pipeline"] == "streams"}
    why = []

    def eager_rate(p, k):
        return fused.get((p, k)) or (single.get(p) if k == 1 else None)

    def graphs_pay(p, k):
        return bool(eager_rate(p, k) and graphed.get((p, k), 0) >= GRAPHS_FACTOR * eager_rate(p, k))

    def fused_rate(p, k):  # per-model img/s of one (fused) network at K = k: the graphed one where graphs pay
        return graphed[(p, k)] if graphs_pay(p, k) else eager_rate(p, k)

    def streams_pay(p, k):
        return (p, k) in streamed and streamed[(p, k)] >= STREAMS_FACTOR * (fused_rate(p, k) or 0)

    def rate(p, k):  # per-model img/s at K = k, the faster way of training K together
        return streamed[(p, k)] if streams_pay(p, k) else fused_rate(p, k)

    k_cmp = 2 if ("bf16", 2) in fused and ("tf32", 2) in fused else 1
    bf, tf = rate("bf16", k_cmp), rate("tf32", k_cmp)
    amp = "bf16" if bf and tf and bf >= BF16_FACTOR * tf else "none"
    if bf and tf:
        how = lambda p: ("streams" if streams_pay(p, k_cmp)  # noqa: E731
                         else "graphed" if graphs_pay(p, k_cmp) else "eager")
        where = "fused K=2" if k_cmp == 2 else "single model"
        why.append(f"bf16/tf32 per-model img/s ({where}; bf16 {how('bf16')}, tf32 {how('tf32')}) = {bf / tf:.2f} "
                   f"({'>=' if amp == 'bf16' else '<'} {BF16_FACTOR}): {'bf16' if amp == 'bf16' else 'tf32'}")
    else:
        why.append("no bf16/tf32 comparison measured: tf32")
    prec = "bf16" if amp == "bf16" else "tf32"
    eval_s = evaluation_seconds(cells, train_images)
    n = train_images or 1

    def epoch_s(k):  # a member's wall seconds per epoch with k fused models
        return n / rate(prec, k) + EVALS_PER_EPOCH * k * eval_s

    if graphed:
        why.append("CUDA graphs vs eager per-model img/s: " + ", ".join(
            f"K={k} {graphed[(prec, k)] / eager_rate(prec, k):.2f}" for k in KS
            if (prec, k) in graphed and eager_rate(prec, k)) + f" (used where >= {GRAPHS_FACTOR})")
    elif any(c.get("cuda_graphs") for c in cells):
        why.append("CUDA graphs not used: " + ("no graphed cell ran" if prec in checked
                                               else f"the {prec} graph check did not run or did not pass"))
    ratios = [f"K={k} {streamed[(prec, k)] / fused_rate(prec, k):.2f}" for k in KS
              if (prec, k) in streamed and fused_rate(prec, k)]
    if ratios:
        why.append("streams vs one fused network, per-model img/s: " + ", ".join(ratios)
                   + f" (used where >= {STREAMS_FACTOR})")
    elif not streamed and any(c.get("pipeline") == "streams" for c in cells):
        why.append("streams not used: " + ("no streams cell ran" if prec in streams_checked
                                           else f"the {prec} streams check did not run or did not pass"))
    k = 2
    if (prec, 2) in fused:
        for cand in (4, 8):
            if rate(prec, cand) and epoch_s(cand) <= epoch_s(2) / K_KEEP:
                k = cand
        what = "epochs per member" + (f" (eval {eval_s:.1f} s a member)" if eval_s else " (img/s only)")
        why.append(f"{what} vs K=2: " + ", ".join(
            f"K={c} {epoch_s(2) / epoch_s(c):.2f}" for c in KS if c > 1 and rate(prec, c)) + f" -> K={k}")
    else:
        why.append(f"no fused {prec} K=2 measurement: K=2")
    # Fusion must beat time-slicing: if K = 2 fused models together run slower than one model alone, the set
    # trains as concurrent processes on the GPU instead (one model each).
    mode, graphs = ("streams", True) if streams_pay(prec, k) else ("fused", graphs_pay(prec, k))
    # (device/window.sh trains a bf16 set fused, with its tf32 twin after it: concurrent processes are tf32 only)
    if amp == "none" and (prec, 2) in fused and eager_rate(prec, 1) and 2 * rate(prec, 2) < rate(prec, 1):
        mode, k, graphs = "concurrent", 2, graphs_pay(prec, 1)
        why.append(f"fused K=2 all models {2 * rate(prec, 2):.0f} img/s < one model alone {rate(prec, 1):.0f}: "
                   "concurrent processes, K=2")
    # A fused network that failed here (not one that ran out of time) would fail the window's training too: the
    # set trains as concurrent tf32 processes, one model each.
    failed = next((c for c in cells if c.get("pipeline") == "fused" and c.get("precision") == prec
                   and c.get("status") == "error" and not c.get("cuda_graphs") and not c.get("compile")), None)
    if failed is not None and (prec, 2) not in fused and (prec, 2) not in streamed:
        amp, prec = "none", "tf32"
        mode, k, graphs = "concurrent", 2, graphs_pay(prec, 1)
        why.append(f"{failed['name']} failed ({str(failed.get('error', ''))[:100]}): concurrent tf32 processes, K=2")
    deltas, seeds = PLAN_SETS[k]
    return {"k": k, "amp": amp, "deltas": list(deltas), "seeds": list(seeds), "tf32_twin": amp == "bf16",
            "mode": mode, "cuda_graphs": graphs, "fused_measured": bool(fused), "reasons": why}


def probe_streams(plan: dict, cells: list[dict], train_images: int | None = None, eval_s: float = 0.0) -> dict:
    """The plan's way of training its set together, chosen again from cells measured on the machine that trains
    it: a graphed plan (fused or on streams) at precision P and K trains on K streams where that machine's
    ``streams check P K=2`` passed and its ``streams P K=K`` gives >= STREAMS_FACTOR x its ``cudagraph P K=K``
    (both rates from the same machine; the plan itself may come from another GPU's matrix), else as one fused
    network. The precision stays the plan's; so does K, but for a K = 2 set on streams where that machine also
    measured ``streams P K=4``: K = 4 (:data:`PLAN_SETS`: a second seed) where each member keeps >= K_KEEP of
    the epochs it gets at K = 2, by the rule of :func:`training_plan` (``train_images`` and the evaluation's
    ``eval_s`` a member: the command line takes the evaluation cell of ``cells`` where the check stage ran one,
    else the plan's matrix's). A plan without graphs, or of concurrent processes: unchanged. The reasons are
    appended either way, and ``plan["probe"]`` holds the numbers behind the choice (``mode``, ``k``,
    ``streams_over_fused``, ``k4_keep``; None where not measured), which ``--out-dir`` writes to probe.json."""
    plan = {**plan, "reasons": list(plan["reasons"])}
    p, k = ("bf16" if plan["amp"] == "bf16" else "tf32"), plan["k"]
    # what was measured, for the window's summary (its probe.* keys): None where not measured
    probe = plan["probe"] = {"mode": plan.get("mode", "fused"), "k": k, "streams_over_fused": None, "k4_keep": None}
    if plan.get("mode", "fused") not in ("fused", "streams") or not plan.get("cuda_graphs"):
        plan["reasons"].append("streams not probed: the plan is no graphed set of one process")
        return plan
    ok = {c["name"]: c for c in cells if c.get("status") == "ok"}
    check, fused, streams = (ok.get(n) for n in (f"streams check {p} K=2", f"cudagraph {p} K={k}",
                                                 f"streams {p} K={k}"))
    use = False
    if check is None:
        plan["reasons"].append(f"streams not used here: the {p} streams check did not run or did not pass")
    elif fused is None or streams is None:
        plan["reasons"].append(f"streams not used here: cudagraph/streams {p} K={k} not both measured")
    else:
        ratio = probe["streams_over_fused"] = streams["img_s_per_model"] / fused["img_s_per_model"]
        use = ratio >= STREAMS_FACTOR
        plan["reasons"].append(f"on this machine streams {p} K={k} / one graphed fused network = {ratio:.2f} "
                               f"({'>=' if use else '<'} {STREAMS_FACTOR}): {'streams' if use else 'fused'}")
    plan["mode"] = "streams" if use else "fused"
    four = ok.get(f"streams {p} K=4")
    if use and k == 2 and four is not None:
        n = train_images or 1
        eval_s = eval_s if train_images else 0.0

        def epoch_s(kk, rate):  # a member's wall seconds per epoch, as training_plan's
            return n / rate + EVALS_PER_EPOCH * kk * eval_s
        keep = probe["k4_keep"] = epoch_s(2, streams["img_s_per_model"]) / epoch_s(4, four["img_s_per_model"])
        if keep >= K_KEEP:
            plan["k"] = 4
            plan["deltas"], plan["seeds"] = (list(x) for x in PLAN_SETS[4])
        plan["reasons"].append(f"epochs per member on streams here, K=4 vs K=2: {keep:.2f} "
                               f"({'>=' if keep >= K_KEEP else '<'} {K_KEEP}) -> K={plan['k']}")
    probe.update(mode=plan["mode"], k=plan["k"])
    return plan


def evaluation_seconds(cells: list[dict], train_images: int | None) -> float:
    """A member's evaluation seconds from a matrix's evaluation cell (0 when it did not run or the number of
    training images is unknown): what training_plan's K rule adds to a member's epoch."""
    ev = next((c for c in cells if c.get("status") == "ok" and c.get("pipeline") == "evaluation"
               and not c.get("cuda_graphs") and not c.get("compile")), None)
    return float(ev["evaluate_s"]) if ev and train_images else 0.0


def plan_env(plan: dict) -> str:
    """KEY="value" lines for the GPU window (device/stages/files.py read_plan; numbers and plain words only: read
    back, never sourced)."""
    return "".join([f'PLAN_K="{plan["k"]}"\n', f'PLAN_AMP="{plan["amp"]}"\n',
                    f'PLAN_DELTAS="{" ".join(f"{d:g}" for d in plan["deltas"])}"\n',
                    f'PLAN_SEEDS="{" ".join(str(s) for s in plan["seeds"])}"\n',
                    f'PLAN_TWIN="{int(plan["tf32_twin"])}"\n', f'PLAN_MODE="{plan.get("mode", "fused")}"\n',
                    f'PLAN_GRAPHS="{int(plan.get("cuda_graphs", False))}"\n'])


def plan_text(plan: dict) -> str:
    """One line: the set and why."""
    how = {"fused": "fused models", "streams": "networks on CUDA streams"}.get(plan.get("mode", "fused"),
                                                                              "concurrent processes")
    return (f"Training plan: K = {plan['k']} {how}, "
            f"{'bf16' if plan['amp'] == 'bf16' else 'tf32'}{' + CUDA graphs' if plan.get('cuda_graphs') else ''}, "
            f"δ {plan['deltas']} x seeds {plan['seeds']}"
            f"{' + a tf32 twin' if plan.get('tf32_twin') else ''}. " + "; ".join(plan["reasons"]) + ".")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("speed_json", type=Path, help="a speed matrix's speed.json")
    p.add_argument("--out-dir", type=Path, help="write plan.env here")
    p.add_argument("--no-graphs", action="store_true",
                   help="leave the CUDA-graph cells out (their check failed on the machine that will train)")
    p.add_argument("--probe", type=Path, metavar="PROBE_JSON",
                   help="a speed.json of cells measured on the machine that will train: streams or fused there "
                        "(probe_streams)")
    a = p.parse_args(argv)
    try:
        result = json.loads(a.speed_json.read_text())
        cells = result["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"training_plan: cannot read the cells of {a.speed_json} ({exc}); pass a speed matrix's speed.json",
              file=sys.stderr)
        return 2
    if a.no_graphs:
        cells = [c for c in cells if not c.get("cuda_graphs") and c.get("pipeline") != "check"]
    plan = training_plan(cells, result.get("train_images"))
    if a.no_graphs:
        plan["reasons"].append("CUDA-graph cells left out (--no-graphs)")
    if a.probe is not None:
        try:
            probe = json.loads(a.probe.read_text())["cells"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"training_plan: cannot read the cells of {a.probe} ({exc}); pass the probe's speed.json",
                  file=sys.stderr)
            return 2
        # a member's evaluation: this machine's (the check stage runs the evaluation cell), else the matrix's
        eval_s = (evaluation_seconds(probe, result.get("train_images"))
                  or evaluation_seconds(cells, result.get("train_images")))
        plan = probe_streams(plan, probe, result.get("train_images"), eval_s)
    print(plan_text(plan))
    if a.out_dir is not None:
        a.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = a.out_dir / ".plan.env.tmp"
        tmp.write_text(plan_env(plan))
        os.replace(tmp, a.out_dir / "plan.env")
        if "probe" in plan:   # the numbers behind the probe's choice (device/stages/plan.py puts them in the summary)
            tmp = a.out_dir / ".probe.json.tmp"
            tmp.write_text(json.dumps(plan["probe"]) + "\n")
            os.replace(tmp, a.out_dir / "probe.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
