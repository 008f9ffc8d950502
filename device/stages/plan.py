"""Stage 2, a new set: its plan (how many models, which precision, fused / streams / concurrent, CUDA graphs, δ
values and how many seeds), from this window's speed matrix or an earlier window's, and checked on this machine.

Windows are rare, so each one trains instead of measuring again where it can: an earlier window's matrix
(runs/<group>[-bf16]/speed/<window-id>/speed.json, committed beside the runs it brought back) gives the plan,
derived again by today's rule (benchmarks/training_plan.py); only what the plan leans on that may differ between
machines is timed here first (the graph checks, the streams probe, the evaluation cell: check_graphs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from .call import Exit, Window
from .files import MODES, WINDOW_ID_RE, cell_status, last_line, read_plan
from .settings import REPO, relative_to_repo

#: the check stage's hard limit: its cells stop at 90 s (--wall-s), after 20-30 s of imports and data
CHECK_LIMIT_S = 150


def newest_earlier(known: str, groups: list[str], log) -> tuple[Path | None, str, Path | None, str]:
    """The newest earlier window's matrix (speed.json) and newest valid plan.env in ``known``/<group>/speed/ of
    ``groups`` (window ids sort by time; unpack.sh puts a window's folder beside the runs it brought back), with
    their window ids; what is ignored, and why, goes to ``log``."""
    speed_json, json_id, plan_env, env_id = None, "", None, ""
    for group in groups:
        for name in ("speed.json", "plan.env"):
            for f in sorted(Path(known, group, "speed").glob(f"*/{name}")):
                wid = f.parent.name
                if not WINDOW_ID_RE.match(wid):
                    log(f"not a window folder, ignored: {f}")
                elif name == "speed.json":
                    if wid >= json_id:
                        speed_json, json_id = f, wid
                elif read_plan(f) is None:
                    log(f"invalid plan, ignored: {f}")
                elif wid >= env_id:
                    plan_env, env_id = f, wid
    return speed_json, json_id, plan_env, env_id


def derive_plan(python: str, speed_json: Path, out_dir: Path, why: Path, *options: str) -> dict[str, str] | None:
    """benchmarks/training_plan.py on ``speed_json`` (and ``options``): its plan.env in ``out_dir`` read back, or
    None where it failed; what it printed (the plan and why) in ``why``."""
    with open(why, "w") as f:
        rc = subprocess.run([python, str(REPO / "benchmarks" / "training_plan.py"), str(speed_json), *options,
                             "--out-dir", str(out_dir)], stdout=f, stderr=subprocess.STDOUT).returncode
    return read_plan(out_dir / "plan.env") if rc == 0 else None


def earlier_plan(w: Window) -> tuple[Path | None, str, str, Path | None]:
    """The plan of the newest earlier window (window ids sort by time): its matrix's plan re-derived by today's
    rule (benchmarks/training_plan.py), so a rule changed since that window applies; only where no earlier window
    left a speed.json that still gives a plan, the newest valid plan.env as it was written. Both groups' speed
    folders (unpack.sh puts a window's beside the runs it brought back). Returns (plan.env, window id, how,
    speed.json the plan was derived from)."""
    s = w.s
    speed_json, json_id, plan_env, env_id = newest_earlier(s.known, s.both_groups, w.log)
    if speed_json is not None:
        replan = w.work / "replan.txt"
        if derive_plan(s.python, speed_json, w.work / "replan", replan) is not None:
            for line in replan.read_text().splitlines():
                w.log(line)
            return (w.work / "replan" / "plan.env", json_id, "plan derived by today's rule from the matrix "
                    f"of window {json_id} ({relative_to_repo(speed_json)})", speed_json)
        if plan_env is not None:
            w.log(f"could not re-derive a plan from {speed_json}: {last_line(replan)}")
    if plan_env is not None:
        return plan_env, env_id, f"plan reused from window {env_id} ({relative_to_repo(plan_env)})", speed_json
    return None, "", "", speed_json


def plan_new_set(w: Window) -> None:
    """The plan (a reused one, checked here, or this window's matrix's) into w.plan, w.graphs, w.deltas and
    w.run_group; its seeds are seeds.choose_seeds'."""
    s, speed = w.s, w.stage / "speed"
    reuse, reuse_json = None, None
    if s.matrix != "full":
        reuse, reuse_id, how, reuse_json = earlier_plan(w)
    if reuse is not None:
        shutil.copy(reuse, speed / "plan.env")
        msg = f"speed matrix skipped: {how}"
        text = f"# Speed matrix skipped\n\n{msg} (LSNC_WINDOW_MATRIX={s.matrix}; full measures again).\n\n"
        if (w.work / "replan.txt").is_file():
            text += (w.work / "replan.txt").read_text() + "\n"
        text += "".join(f"    {line}\n" for line in reuse.read_text().splitlines())
        (speed / "speed.md").write_text(text)
        w.log(msg)
        w.summary(f"matrix: reused {reuse_id}")
    elif s.matrix == "skip":
        msg = (f"speed matrix skipped (LSNC_WINDOW_MATRIX=skip): no earlier plan in "
               f"{relative_to_repo(s.known)}/{s.group}[-bf16]/speed/; the default plan")
        (speed / "speed.md").write_text(f"# Speed matrix skipped\n\n{msg}.\n")
        w.log(msg)
        w.summary("matrix: skipped, default plan")
    else:
        # The cells stop at the cap (SIGALRM inside); the outer limit adds time for decoding the images once.
        w.run_stage("matrix", s.matrix_s + 120, [
            s.python, "benchmarks/speed_matrix.py", "--dataset", "cifar10-jpeg", "--data-root", w.data_root,
            "--width", s.width, "--wall-s", str(s.matrix_s), "--out-dir", str(speed), *s.matrix_args])

    # The plan: K fused models, precision, δ x seeds (benchmarks/training_plan.py); a failed matrix leaves the
    # minimum set.
    plan = read_plan(speed / "plan.env")
    if plan is not None:
        w.plan.update(plan)
    elif (speed / "plan.env").exists():
        w.log(f"invalid {speed / 'plan.env'}: the default plan")
    w.plan["PLAN_MODE"] = s.mode or w.plan["PLAN_MODE"]   # an override, e.g. to test each path
    if w.plan["PLAN_MODE"] not in MODES:
        w.log("error: LSNC_WINDOW_MODE (or the plan's PLAN_MODE) must be fused, streams or concurrent")
        raise Exit(2)
    w.graphs = s.graphs or w.plan["PLAN_GRAPHS"]
    if w.graphs == "1" and (reuse is not None or s.matrix != "skip"):
        check_graphs(w, reuse, reuse_json)
    w.deltas = w.plan["PLAN_DELTAS"].split()
    if w.plan["PLAN_AMP"] == "bf16":
        w.run_group = f"{s.group}-bf16"


def check_graphs(w: Window, reuse: Path | None, reuse_json: Path | None) -> None:
    """Train with CUDA graphs only where a graph check passed on this machine.

    A reused plan's graphs were checked on another machine, and LSNC_WINDOW_GRAPHS=1 forces them unchecked: check
    the graphed step against the eager one here (the matrix's graph-check cell alone, a few seconds after the data
    are decoded) before training with it. (Window 20261127T2102Z forced graphs past this check, in TF32, whose
    check had failed in the matrix of the window before it.) Graphs forced past this window's own matrix go only
    where its check at the plan's precision passed.
    A graphed plan (fused or streams) re-derived from an earlier speed.json, at K = 2 or 4, also probes streams on
    this machine: the same set graphed as one fused network and as K networks on K CUDA streams, both timed here,
    the streams step checked against the eager one (benchmarks/training_plan.py --probe): streams where they pass
    and are >= 1.1x, else fused. A K = 2 set on streams may take K = 4 (a second seed) where its members keep
    enough of their epochs (that cell after the others the plan needs). (A streams plan reused from a plan.env
    gets the streams check only.) The cells' names fix --ks and no --skip applies (LSNC_WINDOW_MATRIX_ARGS may
    carry both, for the matrix). The check stage also runs the evaluation cell, last (the cells run in the order
    given; the wall cap cuts the last first): a window that reuses a plan runs no matrix, and so would never time
    an evaluation (and its parts) against a bare forward pass on the GPU; the probe takes that cell's seconds for
    a member's evaluation."""
    s, plan, speed = w.s, w.plan, w.stage / "speed"
    prec = "bf16" if plan["PLAN_AMP"] == "bf16" else "tf32"
    fused_cell = f"cudagraph check {prec} K=2"
    if reuse is not None:
        cells = [fused_cell]
        probe = (plan["PLAN_MODE"] != "concurrent" and plan["PLAN_GRAPHS"] == "1" and not s.mode
                 and reuse == w.work / "replan" / "plan.env" and plan["PLAN_K"] in ("2", "4"))
        k = plan["PLAN_K"]
        if probe:
            cells += [f"cudagraph {prec} K={k}", f"streams check {prec} K=2", f"streams {prec} K={k}"]
            if k == "2":
                cells.append(f"streams {prec} K=4")
        elif plan["PLAN_MODE"] == "streams":
            cells.append(f"streams check {prec} K=2")
        cells.append("evaluation")   # last (the cap cuts it first): this machine's evaluation, against forwards
        rc = w.run_stage("graphcheck", CHECK_LIMIT_S, [
            s.python, "benchmarks/speed_matrix.py", "--dataset", "cifar10-jpeg", "--data-root", w.data_root,
            "--width", s.width, "--wall-s", "90", "--out-dir", str(speed / "check"), *s.matrix_args,
            "--skip", "--ks", "1", "2", "4", "--cells", *cells])
        check_json, where, note = speed / "check" / "speed.json", "on this machine", ""
        if probe and rc in (124, 137):   # killed at its limit: a cell may hang the GPU (one on streams, say)
            w.log(f"stage graphcheck ran past its {CHECK_LIMIT_S} s: no streams probe, the plan stays "
                  f"{plan['PLAN_MODE']}")
        elif probe:
            probe_streams(w, reuse_json, check_json)
    else:
        check_json, where, note = speed / "speed.json", "in this window's matrix", " (this window's matrix)"
    w.fused_check = cell_status(check_json, fused_cell)
    check_cell, check = fused_cell, w.fused_check
    if plan["PLAN_MODE"] == "streams":
        check_cell = f"streams check {prec} K=2"
        check = cell_status(check_json, check_cell)
        if check != "ok" and w.fused_check == "ok" and not s.mode:
            w.log(f"{check_cell} {where}: {check}; the fused one passed: the set trains as one fused network, "
                  "graphed")
            plan["PLAN_MODE"], check_cell, check = "fused", fused_cell, "ok"
    if check == "ok":
        w.log(f"{check_cell} {where}: ok")
    else:
        w.log(f"{check_cell} {where}: {check}: training without CUDA graphs")
        w.graphs = "0"
        # streams pay only graphed (an explicit LSNC_WINDOW_MODE=streams stays)
        if plan["PLAN_MODE"] == "streams" and not s.mode:
            plan["PLAN_MODE"] = "fused"
        # A plan derived here from an earlier matrix may have chosen bf16 for its graphs alone (on the H200 eager
        # bf16 was no faster than TF32): derive it again from that matrix without graphs.
        if plan["PLAN_AMP"] == "bf16" and reuse == w.work / "replan" / "plan.env":
            txt = w.work / "replan-nographs.txt"
            again = derive_plan(s.python, reuse_json, w.work / "replan-nographs", txt, "--no-graphs")
            if again is not None:
                plan.update(again)
                shutil.copy(w.work / "replan-nographs" / "plan.env", speed / "plan.env")
                plan["PLAN_MODE"] = s.mode or plan["PLAN_MODE"]
                if plan["PLAN_MODE"] == "streams" and not s.mode:
                    plan["PLAN_MODE"] = "fused"
                w.log(f"the plan again, without CUDA graphs: {txt.read_text().rstrip(chr(10))}")
                w.summary(f"plan: derived again without CUDA graphs (amp={plan['PLAN_AMP']} K={plan['PLAN_K']})")
    w.summary(f"graph_check: {check}{note}")
    if check_cell != fused_cell:
        w.summary(f"fused_check: {w.fused_check}")


def probe_streams(w: Window, reuse_json: Path, check_json: Path) -> None:
    """The plan again with this machine's probe cells (streams or one fused network, K = 2 or 4)."""
    txt = w.work / "probe.txt"
    probed = derive_plan(w.s.python, reuse_json, w.work / "probe", txt, "--probe", str(check_json))
    text = txt.read_text()
    if probed is None:
        w.log(f"the streams probe gave no plan (the plan stays {w.plan['PLAN_MODE']}): {last_line(txt)}")
        return
    w.k_before_probe = w.plan["PLAN_K"]
    w.plan.update(probed)
    shutil.copy(w.work / "probe" / "plan.env", w.stage / "speed" / "plan.env")
    w.log(f"the plan with this machine's streams probe: {text.rstrip(chr(10))}")
    reasons = re.compile(r"on this machine [^;]*|streams not used here[^;]*|epochs per member on streams here[^;]*")
    why = [m.group(0).removesuffix(".") for line in text.splitlines() for m in reasons.finditer(line)]
    w.summary(f"probe: {w.plan['PLAN_MODE']} ({'; '.join(why)})")   # for a reader
    # for lsnc.book.windows: the numbers behind the choice (training_plan.py's probe.json), one key each
    try:
        numbers = json.loads((w.work / "probe" / "probe.json").read_text())
    except (OSError, ValueError):
        numbers = {}
    if not isinstance(numbers, dict):
        numbers = {}
    w.summary(f"probe.mode: {w.plan['PLAN_MODE']}")
    w.summary(f"probe.k: {w.plan['PLAN_K']}")
    for key in ("streams_over_fused", "k4_keep"):
        if isinstance(numbers.get(key), (int, float)):
            w.summary(f"probe.{key}: {numbers[key]:.2f}")
