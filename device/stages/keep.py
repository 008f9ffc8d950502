"""A second call of the session continues the first call's runs.

A session may make a second call on the same warm machine with the device time its first call left. The first
call's pack moves its set's run folders, checkpoints included, to KEEP (LSNC_WINDOW_KEEP, default .window-keep/ in
the checkout: git-ignored, so the device tool keeps it between calls; never under .device/, which each call's carry
replaces) with keep.env, what the set was. A later call of the same source
commit, lsnc/ code, group and width trains those runs on (--resume) for its own budget, with the same plan and the
graphs that call trained with, instead of new seeds: a longer prefix of the same runs beats a short extra seed,
which would pull the group's compared epoch back (lsnc.book.comparable.align_prefixes). LSNC_WINDOW_CONTINUE=0, or
LSNC_WINDOW_SEEDS, starts new seeds instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil

from .call import Window
from .files import CHECKPOINT_FILE, KEEP_LINE, read_assignments, stopped_after
from .settings import REPO


def code_digest() -> str:
    """sha256 over the checkout's lsnc/*.py files, named relative to the checkout (a continuation trains on only
    with the code that trained the runs so far)."""
    files = sorted(os.path.relpath(os.path.join(d, f), REPO) for d, _, names in os.walk(REPO / "lsnc")
                   for f in names if f.endswith(".py"))
    listing = "".join(f"{hashlib.sha256((REPO / f).read_bytes()).hexdigest()}  {f}\n" for f in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def sent_source(path) -> tuple[dict[str, str], str]:
    """prepare.sh's record of the checkout it sent (``path``: .device/source.txt) as the environment lsnc's
    provenance reads (LSNC_SOURCE_COMMIT, LSNC_SOURCE_LSNC_MODIFIED; {} without the file), and a warning ("" when
    none): where lsnc/ is not what prepare.sh recorded (a commit made after it), the runs record lsnc/ as modified."""
    if not os.path.isfile(path):
        return {}, ""
    with open(path) as f:
        fields = dict(x.split(": ", 1) for x in f.read().splitlines() if ": " in x)
    env = {"LSNC_SOURCE_COMMIT": fields.get("source_commit", ""),
           "LSNC_SOURCE_LSNC_MODIFIED": fields.get("source_lsnc_modified", "")}
    sent, here = fields.get("source_lsnc_digest", ""), code_digest()
    if not sent or sent == here:
        return env, ""
    env["LSNC_SOURCE_LSNC_MODIFIED"] = "1"
    return env, (f"lsnc/ is not what prepare.sh recorded with commit {env['LSNC_SOURCE_COMMIT']} (sha256 {sent}, here "
                 f"{here}; run prepare.sh right before a window): the runs record lsnc/ as modified")


def continue_kept(w: Window) -> bool:
    """Take over the runs an earlier call kept; False (and why, in the log) where they do not fit this call."""
    s, keep = w.s, w.s.keep
    if not s.continue_ or s.seeds or not (keep / "keep.env").is_file():
        return False
    kept = read_assignments(keep / "keep.env", KEEP_LINE)
    get = (lambda k: kept.get(f"CONT_{k}", "")) if kept is not None else None
    code = code_digest()
    why = ""
    if kept is None:
        why = f"invalid {keep}/keep.env"
    elif get("SOURCE") != w.source_commit:
        why = f"trained from source {get('SOURCE')}, this call's is {w.source_commit}"
    elif get("CODE") != code:
        why = f"lsnc/ differs from the code that trained them (sha256 {get('CODE')}, here {code})"
    elif get("GROUP") != s.group or get("WIDTH") != s.width or get("RUN_GROUP") not in s.both_groups:
        why = f"group {get('GROUP')} ({get('RUN_GROUP')}) width {get('WIDTH')}, not {s.group} width {s.width}"
    elif not list((keep / "runs" / get("RUN_GROUP")).glob(f"*/{CHECKPOINT_FILE}")):
        why = "no checkpoints"
    elif not (get("DELTAS").strip() and get("SEEDS").strip()):
        why = "no δ or no seed in keep.env"
    else:
        # (renamed; a KEEP elsewhere may be another filesystem than the checkout: copied then, and KEEP removed
        # below only once the copy is whole)
        src, dst = keep / "runs" / get("RUN_GROUP"), w.runs / get("RUN_GROUP")
        try:
            w.runs.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(src, dst)
            except OSError:
                shutil.copytree(src, dst, symlinks=True)
        except (OSError, shutil.Error) as e:
            why = f"could not move them into {w.runs}: {e}"
            shutil.rmtree(dst, ignore_errors=True)   # a partial copy; KEEP still has them all
    if why:
        w.log(f"runs kept by an earlier call in {keep} not continued ({why}): a new set")
        return False
    shutil.rmtree(keep, ignore_errors=True)
    w.train_started = True   # they are in the runs folder now: pack keeps them again, whatever happens next
    w.plan.update(PLAN_K=get("K"), PLAN_AMP=get("AMP"), PLAN_DELTAS=get("DELTAS"), PLAN_SEEDS=get("SEEDS"),
                  PLAN_TWIN="0", PLAN_MODE=get("MODE"))
    w.graphs, w.run_group, w.fused_check = get("GRAPHS"), get("RUN_GROUP"), get("FUSED_CHECK")
    w.deltas, w.seeds = get("DELTAS").split(), get("SEEDS").split()
    w.cont_from = get("FROM")
    w.log(f"continuing the runs of window {get('FROM')} (stopped after epoch {get('EPOCH')}) with --resume: "
          "no matrix, no new seeds")
    (w.stage / "speed" / "speed.md").write_text(
        f"# Speed matrix skipped\n\nA continuation of window {get('FROM')}'s runs (after epoch {get('EPOCH')}), "
        "same plan.\n")
    w.summary(f"continued: window {get('FROM')} after epoch {get('EPOCH')}")
    w.summary(f"continued.after_epoch: {get('EPOCH')}")   # (the number alone, for lsnc.book.windows)
    w.summary(f"seeds: {' '.join(w.seeds)}")
    return True


def keep_runs(w: Window) -> None:
    """The set's run folders, checkpoints included, into KEEP with keep.env, for a later call of this session (at
    pack, once training started)."""
    if not (w.train_started and w.s.continue_):
        return
    keep, n, epoch = w.s.keep, 0, ""
    shutil.rmtree(keep, ignore_errors=True)
    try:
        (keep / "runs" / w.run_group).mkdir(parents=True)
    except OSError:
        return
    for r in sorted(p for p in (w.runs / w.run_group).glob("*") if p.is_dir()):
        if not (r / CHECKPOINT_FILE).is_file():
            continue
        # a bf16 set's tf32 twin (no -bf16 in its name) is not part of the set
        if w.plan["PLAN_AMP"] == "bf16" and "-bf16-" not in r.name:
            continue
        dest = keep / "runs" / w.run_group / r.name
        try:
            if w.scratch_runs:
                shutil.move(str(r), str(dest))
            else:
                shutil.copytree(r, dest, symlinks=True)
        except OSError:
            continue
        epoch = epoch or stopped_after(dest / "status.json")
        n += 1
    if n == 0:
        shutil.rmtree(keep, ignore_errors=True)
        return
    values = {"FROM": w.cont_from or w.window_id, "EPOCH": epoch or "0", "SOURCE": w.source_commit,
              "CODE": code_digest(), "GROUP": w.s.group, "RUN_GROUP": w.run_group, "WIDTH": w.s.width,
              "K": w.plan["PLAN_K"], "AMP": w.plan["PLAN_AMP"], "DELTAS": " ".join(w.deltas),
              "SEEDS": " ".join(w.seeds), "MODE": w.plan["PLAN_MODE"],
              "GRAPHS": w.set_graphs or w.graphs, "FUSED_CHECK": w.fused_check}
    (keep / "keep.env").write_text("".join(f'CONT_{k}="{v}"\n' for k, v in values.items()))
    w.log(f"kept {n} run folder(s) with their checkpoints in {keep}: a second call of this session continues them")
    w.summary(f"kept: {n} run folder(s) for a second call (after epoch {epoch or 0})")
