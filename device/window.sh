#!/usr/bin/env bash
# One GPU window in one command (see device/README.md):
#   1. data: unpack the carried CIFAR-10 JPEG copy (.device/cifar10-jpeg.tar.gz), describe the machine;
#   2. a second call of the session continues the first call's runs (kept with their checkpoints outside the
#      checkout); else the plan: the speed matrix (benchmarks/speed_matrix.py) under a hard wall cap, or the plan
#      re-derived from an earlier window's matrix (benchmarks/training_plan.py), and seeds no earlier window
#      trained at the plan's precision (device/next_seeds.py);
#   3. train the δ x seed set the plan suggests (fused, or on CUDA streams) with the paper's recipe, as a prefix of
#      its 800 epochs, for the rest of the wall budget (python -m lsnc train --time-budget-s ...); a failed set
#      trains again as concurrent processes (--resume);
#   4. pack run folders (no checkpoints), speed table, logs and env into $OUT/window.tar.gz (+ $OUT/speed.md),
#      also when a stage fails or the script is interrupted; keep the set's runs, checkpoints included, for a
#      later call on the same machine.
#
# Settings (environment; defaults are the GPU window's):
#   OUT                      where the archive goes (default /tmp/lsnc-window-out)
#   PYTHON                   the python to run (default python3); lsnc runs from this checkout via PYTHONPATH
#   LSNC_WINDOW_BUDGET_S     wall seconds from start to the end of training (default 520)
#   LSNC_WINDOW_MATRIX       auto | full | skip (default auto): auto skips the matrix where an earlier window ran one
#                            (LSNC_WINDOW_KNOWN_RUNS/<group>[-bf16]/speed/<window-id>/speed.json: its plan re-derived by
#                            today's rule; else the newest plan.env), else runs it; full always runs it; skip never
#                            does (no earlier plan: the default one)
#   LSNC_WINDOW_MATRIX_S     wall cap of the speed matrix's cells (default 90)
#   LSNC_WINDOW_KNOWN_RUNS   runs folder of the earlier windows' runs and plans (default this checkout's runs/)
#   LSNC_WINDOW_SEEDS        seeds to train, e.g. "3 4" (default: as many as the plan has, the lowest whose whole
#                            δ set at the plan's precision is in none of LSNC_WINDOW_KNOWN_RUNS/<group>[-bf16]/, the
#                            scratch runs folder and the runs kept by an earlier call)
#   LSNC_WINDOW_GRAPHS       0 | 1: train with `lsnc train --cuda-graphs` (default: the plan's PLAN_GRAPHS, else 0);
#                            graphs, forced ones too, train only where a graph check passed: the reused plan's are
#                            checked on this machine first, forced ones after this window's matrix take its check;
#                            only LSNC_WINDOW_MATRIX=skip with no earlier plan checks nothing (the CPU tests);
#                            a stage that fails with it trains again without it (--resume) for its time left
#   LSNC_WINDOW_WIDTH        ResNet-18 base width (default 64, the paper's)
#   LSNC_WINDOW_DATA         an image folder (train/<class>/, test/<class>/) or a .tar.gz of one, instead of
#                            the CIFAR-10 JPEG copy
#   LSNC_WINDOW_GROUP        runs group (default cifar10-jpeg-full-resnet18-gpu); a bf16 set trains into <group>-bf16
#   LSNC_WINDOW_RUNS_DIR     scratch runs folder, emptied first (default .device/runs: repo-relative, so the runs'
#                            provenance records a portable command)
#   LSNC_WINDOW_MATRIX_ARGS  extra speed_matrix.py options (e.g. "--steps 2 --skip compile")
#   LSNC_WINDOW_TRAIN_ARGS   extra `lsnc train` options
#   LSNC_WINDOW_MODE         fused | streams | concurrent: override the plan's way of training the set together
#                            (streams: `lsnc train --together streams`, K networks on K CUDA streams)
#   LSNC_WINDOW_TWINS        a bf16 set trains its tf32 twin (CE, first seed) only while the group holds fewer seeds
#                            than this with CE runs in both precisions (default 2), and not where that seed has one
#   LSNC_WINDOW_CONTINUE     1 | 0 (default 1): continue the runs an earlier call of this session kept (same source
#                            commit, group and width) instead of training new seeds; LSNC_WINDOW_SEEDS also turns it off
#   LSNC_WINDOW_KEEP         where a call keeps its set's runs for the next one (default $TMPDIR/lsnc-window-keep,
#                            outside the checkout: the next call's carried .device/ replaces that folder)
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
OUT=$(abs "${OUT:-${TMPDIR:-/tmp}/lsnc-window-out}")
[ -n "${LSNC_WINDOW_DATA:-}" ] && LSNC_WINDOW_DATA=$(abs "$LSNC_WINDOW_DATA")
[ -n "${LSNC_WINDOW_RUNS_DIR:-}" ] && LSNC_WINDOW_RUNS_DIR=$(abs "$LSNC_WINDOW_RUNS_DIR")
[ -n "${LSNC_WINDOW_KNOWN_RUNS:-}" ] && LSNC_WINDOW_KNOWN_RUNS=$(abs "$LSNC_WINDOW_KNOWN_RUNS")
[ -n "${LSNC_WINDOW_KEEP:-}" ] && LSNC_WINDOW_KEEP=$(abs "$LSNC_WINDOW_KEEP")
cd "$REPO" || exit 2
PYTHON=${PYTHON:-python3}
BUDGET_S=${LSNC_WINDOW_BUDGET_S:-520}
MATRIX_S=${LSNC_WINDOW_MATRIX_S:-90}
WIDTH=${LSNC_WINDOW_WIDTH:-64}
GROUP=${LSNC_WINDOW_GROUP:-cifar10-jpeg-full-resnet18-gpu}
# The runs' group: GROUP for TF32 sets (and bf16 sets' tf32 twins), GROUP-bf16 for bf16 sets, so that the book shows
# each precision as its own group (figures, claims) and compares twins across the two (lsnc.book.summary).
RUN_GROUP=$GROUP
BOTH_GROUPS=("$GROUP" "$GROUP-bf16")
DATA=${LSNC_WINDOW_DATA:-}
KNOWN=${LSNC_WINDOW_KNOWN_RUNS:-$REPO/runs}
MATRIX=${LSNC_WINDOW_MATRIX:-auto}
case $MATRIX in
    auto | full | skip) ;;
    *) echo "window: LSNC_WINDOW_MATRIX must be auto, full or skip" >&2; exit 2 ;;
esac
case ${LSNC_WINDOW_GRAPHS:-0} in 0 | 1) ;; *) echo "window: LSNC_WINDOW_GRAPHS must be 0 or 1" >&2; exit 2 ;; esac
if [ -n "${LSNC_WINDOW_SEEDS:-}" ] && ! [[ $LSNC_WINDOW_SEEDS =~ ^\ *[0-9]+(\ +[0-9]+)*\ *$ ]]; then
    echo "window: LSNC_WINDOW_SEEDS must be seeds separated by spaces (e.g. \"3 4\")" >&2; exit 2
fi
SHA256=01373fb925a97e9c13f8df5ff9307dfc9bf58c509d575ff73ec5478d71a9bed8
TARBALL=.device/cifar10-jpeg.tar.gz
PACK_RESERVE_S=10   # kept at the end of the budget for packing
KEEP=${LSNC_WINDOW_KEEP:-${TMPDIR:-/tmp}/lsnc-window-keep}   # the set's runs for a later call (section 2)
case $KEEP/ in
    "$REPO"/*) echo "window: LSNC_WINDOW_KEEP must lie outside the checkout (each call's copy replaces it)" >&2; exit 2 ;;
esac
# lsnc's code as it is here (a continuation trains on only with the code that trained the runs so far)
CODE=$(find lsnc -type f -name '*.py' -print0 2>/dev/null | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -c1-16)
TWINS_ENOUGH=${LSNC_WINDOW_TWINS:-2}   # a bf16 set trains a tf32 twin while the group has fewer precision twins
[[ $TWINS_ENOUGH =~ ^[0-9]+$ ]] || { echo "window: LSNC_WINDOW_TWINS must be a whole number (e.g. 2)" >&2; exit 2; }
START=$SECONDS
NOW=$(date -u +%FT%TZ)
WINDOW_ID=$(date -u -d "$NOW" +%Y%m%dT%H%MZ 2>/dev/null || date -u +%Y%m%dT%H%MZ)  # device/unpack.sh's speed folder

if [ -n "${LSNC_WINDOW_RUNS_DIR:-}" ]; then   # the caller's folder: must be new or empty, and is kept
    RUNS=$LSNC_WINDOW_RUNS_DIR SCRATCH_RUNS=0
    if [ -n "$(ls -A "$RUNS" 2>/dev/null)" ]; then echo "window: $RUNS is not empty" >&2; exit 2; fi
else
    RUNS=.device/runs SCRATCH_RUNS=1
    rm -rf "$RUNS"
fi
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lsnc-window.XXXXXX")
STAGE=$WORK/window            # everything under it goes into the archive
mkdir -p "$STAGE/logs" "$STAGE/speed" "$RUNS"
echo "group: $GROUP" >"$STAGE/summary.txt"
# decoded images, kept for a second call on the same machine (outside the checkout, as KEEP; keyed by the files)
export LSNC_CACHE=${LSNC_CACHE:-${TMPDIR:-/tmp}/lsnc-window-cache}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# The device's copy has no .git, or one at the session's base commit (not what was sent): the runs' provenance
# takes the commit that prepare.sh recorded, and whether lsnc/ had uncommitted changes then.
if [ -f .device/source.txt ]; then
    LSNC_SOURCE_COMMIT=$(sed -n 's/^source_commit: //p' .device/source.txt)
    LSNC_SOURCE_LSNC_MODIFIED=$(sed -n 's/^source_lsnc_modified: //p' .device/source.txt)
    export LSNC_SOURCE_COMMIT LSNC_SOURCE_LSNC_MODIFIED
fi
CHILD=""
declare -A RC=()
TRAIN_RC=""   # the main set's training (its last attempt): the script's exit status

log() { echo "[window +$((SECONDS - START))s] $*" | tee -a "$STAGE/logs/window.log"; }
left() { echo $((BUDGET_S - (SECONDS - START))); }

# run_stage NAME SECONDS CMD...: the command under a hard timeout, output to logs/NAME.log, rc in RC[NAME].
# Run in the background and waited for, so a signal reaches the trap at once.
run_stage() {
    local name=$1 limit=$2
    shift 2
    log "stage $name (hard limit ${limit}s): $*"
    timeout -k 10 "$limit" "$@" >"$STAGE/logs/$name.log" 2>&1 &
    CHILD=$!
    wait "$CHILD"
    RC[$name]=$?
    CHILD=""
    log "stage $name: exit ${RC[$name]}"
    if [ "${RC[$name]}" != 0 ]; then tail -n 20 "$STAGE/logs/$name.log" | sed "s/^/  [$name] /"; fi
    return "${RC[$name]}"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
pack() {
    local rc=$?
    trap - EXIT INT TERM
    # shellcheck disable=SC2086  # CHILD may hold several pids (concurrent training)
    if [ -n "$CHILD" ]; then kill -TERM $CHILD 2>/dev/null; wait $CHILD 2>/dev/null; fi
    {
        echo "window_id: $WINDOW_ID"
        echo "elapsed_s: $((SECONDS - START))"
        echo "budget_s: $BUDGET_S"
        echo "matrix_cap_s: $MATRIX_S"
        echo "exit: $rc"
        for k in "${!RC[@]}"; do echo "stage_rc.$k: ${RC[$k]}"; done
        for r in "$RUNS"/*/*/; do
            [ -f "$r/status.json" ] || continue
            echo "run.$(basename "$r"): $(tr -d '\n ' <"$r/status.json")"
        done
    } >>"$STAGE/summary.txt"
    [ -f "$STAGE/speed/speed.md" ] && cp "$STAGE/speed/speed.md" "$OUT/speed.md"
    # run folders without checkpoints (and without lock or temporary files)
    mkdir -p "$STAGE/runs"
    tar -cf - -C "$RUNS" --exclude='checkpoint.pt' --exclude='.*.lock' --exclude='.*.tmp' . \
        | tar -xf - -C "$STAGE/runs"
    keep_runs   # (after the copy above: it may move the scratch folders away)
    tar -czf "$OUT/window.tar.gz" -C "$WORK" window \
        && log "packed $OUT/window.tar.gz ($(du -h "$OUT/window.tar.gz" | cut -f1))"
    echo "---- summary"; cat "$STAGE/summary.txt"
    echo "---- speed"; cat "$STAGE/speed/speed.md" 2>/dev/null
    rm -rf "$WORK"
    if [ "$SCRATCH_RUNS" = 1 ]; then rm -rf "$RUNS"; fi
    exit "$rc"
}

# shellcheck disable=SC2317  # invoked by pack
keep_runs() {  # the set's run folders, checkpoints included, into KEEP for a later call of this session (section 2)
    [ -n "${TRAIN_STARTED:-}" ] && [ "${LSNC_WINDOW_CONTINUE:-1}" != 0 ] || return 0
    local r name n=0 epoch=""
    rm -rf "$KEEP"
    mkdir -p "$KEEP/runs/$RUN_GROUP" || return 0
    for r in "$RUNS/$RUN_GROUP"/*/; do
        r=${r%/} name=$(basename "$r")
        [ -f "$r/checkpoint.pt" ] || continue
        # a bf16 set's tf32 twin (no -bf16 in its name) is not part of the set
        if [ "$PLAN_AMP" = bf16 ] && [[ $name != *-bf16-* ]]; then continue; fi
        if [ "$SCRATCH_RUNS" = 1 ]; then mv "$r" "$KEEP/runs/$RUN_GROUP/"; else cp -a "$r" "$KEEP/runs/$RUN_GROUP/"; fi ||
            continue
        [ -n "$epoch" ] ||
            epoch=$(sed -n 's/.*"epoch": *\([0-9]*\).*/\1/p' "$KEEP/runs/$RUN_GROUP/$name/status.json" | head -n 1)
        n=$((n + 1))
    done
    if [ "$n" = 0 ]; then rm -rf "$KEEP"; return 0; fi
    {
        echo "CONT_FROM=\"${CONT_FROM:-$WINDOW_ID}\""
        echo "CONT_EPOCH=\"${epoch:-0}\""
        echo "CONT_SOURCE=\"${LSNC_SOURCE_COMMIT:-unknown}\""
        echo "CONT_CODE=\"$CODE\""
        echo "CONT_GROUP=\"$GROUP\""
        echo "CONT_RUN_GROUP=\"$RUN_GROUP\""
        echo "CONT_WIDTH=\"$WIDTH\""
        echo "CONT_K=\"$PLAN_K\""
        echo "CONT_AMP=\"$PLAN_AMP\""
        echo "CONT_DELTAS=\"${DELTAS[*]}\""
        echo "CONT_SEEDS=\"${SEEDS[*]}\""
        echo "CONT_MODE=\"$PLAN_MODE\""
        echo "CONT_GRAPHS=\"${SET_GRAPHS:-$GRAPHS}\""
        echo "CONT_FUSED_CHECK=\"$FUSED_CHECK\""
    } >"$KEEP/keep.env"
    log "kept $n run folder(s) with their checkpoints in $KEEP: a second call of this session continues them"
    echo "kept: $n run folder(s) for a second call (after epoch ${epoch:-0})" >>"$STAGE/summary.txt"
}
trap pack EXIT
trap 'log "signal: stopping"; exit 143' INT TERM

# ---------------------------------------------------------------- 1. data and machine
{
    echo "date: $NOW"
    echo "window_id: $WINDOW_ID"
    echo "host: $(uname -a)"
    echo "nproc: $(nproc 2>/dev/null)"
    free -g 2>/dev/null | sed -n 2p | awk '{print "memory_gib: " $2}'
    [ -f .device/source.txt ] && cat .device/source.txt
    echo "python: $PYTHON = $($PYTHON -c 'import sys; print(sys.version.split()[0])' 2>&1)"
    $PYTHON - <<'EOF' 2>&1
from importlib.metadata import version
for m in ("torch", "torchvision", "numpy", "scipy", "pandas", "pillow", "triton"):
    try:
        print(f"{m}: {version(m)}")
    except Exception:  # noqa: BLE001
        print(f"{m}: not installed")
EOF
    if command -v nvidia-smi >/dev/null; then echo "---- nvidia-smi"; nvidia-smi; fi
} >"$STAGE/env.txt" 2>&1
cat "$STAGE/env.txt"

unpack() {  # unpack TARBALL INTO: extract next to INTO, then move into place (no half-extracted folder)
    local tmp
    tmp=$(mktemp -d "$(dirname "$2")/.unpack.XXXXXX") || return 1
    tar -xzf "$1" -C "$tmp" || { rm -rf "$tmp"; return 1; }
    local top
    top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    [ -d "$top/train" ] || { log "error: $1 holds no <folder>/train/"; rm -rf "$tmp"; return 1; }
    rm -rf "$2" && mv "$top" "$2" && rm -rf "$tmp"
}

if [ -n "$DATA" ] && [ -f "$DATA" ]; then
    mkdir -p "$WORK/data"
    unpack "$DATA" "$WORK/data/images" || exit 2
    DATA_ROOT=$WORK/data/images
elif [ -n "$DATA" ]; then
    DATA_ROOT=$DATA
elif [ -d ../shared/data/cifar10-jpeg/train ]; then
    DATA_ROOT=../shared/data/cifar10-jpeg   # the preset's own data_root: config.json as on any machine
else
    [ -f "$TARBALL" ] || { log "error: no $TARBALL (run device/prepare.sh and carry .device)"; exit 2; }
    if [ "$(sha256sum "$TARBALL" | cut -d' ' -f1)" != "$SHA256" ]; then
        log "error: $TARBALL has the wrong sha256 (expected $SHA256)"; exit 2
    fi
    # Beside the checkout as on the development machines, so the runs record the same relative data_root;
    # inside .device/ where that folder cannot be made.
    if mkdir -p ../shared/data 2>/dev/null && unpack "$TARBALL" ../shared/data/cifar10-jpeg; then
        DATA_ROOT=../shared/data/cifar10-jpeg
    else
        mkdir -p .device/data && unpack "$TARBALL" .device/data/cifar10-jpeg || exit 2
        DATA_ROOT=.device/data/cifar10-jpeg
    fi
fi
log "data: $DATA_ROOT ($(find "$DATA_ROOT/train" -type f | wc -l) train files)"
echo "data_root: $DATA_ROOT" >>"$STAGE/summary.txt"

# ---------------------------------------------------------------- helpers of the plan
check_status() {  # check_status SPEED_JSON CELL: the status of the matrix's cell named CELL (a graph check)
    "$PYTHON" -c 'import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
print(next((c["status"] for c in cells if c["name"] == sys.argv[2]), "missing"))' \
        "$1" "$2" 2>/dev/null || echo "not run"
}
plan_ok() {  # plan_ok FILE: shell assignments of numbers and plain words only, PLAN_K among them
    [ -f "$1" ] && grep -q '^PLAN_K=' "$1" && ! grep -qvE '^PLAN_[A-Z]+="[0-9a-z. ]*"$' "$1"
}
# ---------------------------------------------------------------- 2. continue this session's earlier call, or
#                                                                     a new set: plan (matrix) and seeds
# A session may make a second call on the same warm machine with the device time its first call left. The first
# call's pack() moved its set's run folders, checkpoints included, to KEEP (outside the checkout: each call's
# carried .device/ replaces that folder). A later call of the same source commit, group and width trains those
# runs on (--resume) for its own budget, with the same plan and the graphs that call trained with, instead of new
# seeds: a longer prefix of the same runs beats a short extra seed, which would pull the group's compared epoch back
# (lsnc.book.scale.align_prefixes). LSNC_WINDOW_CONTINUE=0, or LSNC_WINDOW_SEEDS, starts new seeds instead.
keep_ok() {  # keep_ok FILE: shell assignments of numbers and plain words only
    [ -f "$1" ] && ! grep -qvE '^CONT_[A-Z_]+="[0-9A-Za-z. _-]*"$' "$1"
}
CONT=0
FUSED_CHECK=""   # the fused graph check's status on this machine ("ok": a failed streams stage may retry fused graphed)
if [ "${LSNC_WINDOW_CONTINUE:-1}" != 0 ] && [ -z "${LSNC_WINDOW_SEEDS:-}" ] && [ -f "$KEEP/keep.env" ]; then
    CONT_SOURCE="" CONT_CODE="" CONT_GROUP="" CONT_RUN_GROUP="" CONT_WIDTH="" why=""
    if ! keep_ok "$KEEP/keep.env"; then
        why="invalid $KEEP/keep.env"
    else
        # shellcheck disable=SC1091
        . "$KEEP/keep.env"
        if [ "$CONT_SOURCE" != "${LSNC_SOURCE_COMMIT:-unknown}" ]; then
            why="trained from source $CONT_SOURCE, this call's is ${LSNC_SOURCE_COMMIT:-unknown}"
        elif [ "$CONT_CODE" != "$CODE" ]; then
            why="lsnc/ differs from the code that trained them (sha256 $CONT_CODE, here $CODE)"
        elif [ "$CONT_GROUP" != "$GROUP" ] || [ "$CONT_WIDTH" != "$WIDTH" ] ||
                [[ " ${BOTH_GROUPS[*]} " != *" $CONT_RUN_GROUP "* ]]; then
            why="group $CONT_GROUP ($CONT_RUN_GROUP) width $CONT_WIDTH, not $GROUP width $WIDTH"
        elif ! compgen -G "$KEEP/runs/$CONT_RUN_GROUP/*/checkpoint.pt" >/dev/null; then
            why="no checkpoints"
        elif mkdir -p "$RUNS" && mv "$KEEP/runs/$CONT_RUN_GROUP" "$RUNS/$CONT_RUN_GROUP"; then
            CONT=1
        else
            why="could not move them into $RUNS"
        fi
    fi
    if [ "$CONT" = 1 ]; then
        rm -rf "$KEEP"
        TRAIN_STARTED=1   # they are in RUNS now: pack() keeps them again, whatever happens next
        PLAN_K=$CONT_K PLAN_AMP=$CONT_AMP PLAN_DELTAS=$CONT_DELTAS PLAN_SEEDS=$CONT_SEEDS PLAN_TWIN=0
        PLAN_MODE=$CONT_MODE GRAPHS=$CONT_GRAPHS RUN_GROUP=$CONT_RUN_GROUP FUSED_CHECK=${CONT_FUSED_CHECK:-}
        read -r -a DELTAS <<<"$PLAN_DELTAS"
        read -r -a SEEDS <<<"$PLAN_SEEDS"
        log "continuing the runs of window $CONT_FROM (stopped after epoch $CONT_EPOCH) with --resume: no matrix," \
            "no new seeds"
        printf '# Speed matrix skipped\n\nA continuation of window %s'"'"'s runs (after epoch %s), same plan.\n' \
            "$CONT_FROM" "$CONT_EPOCH" >"$STAGE/speed/speed.md"
        echo "continued: window $CONT_FROM after epoch $CONT_EPOCH" >>"$STAGE/summary.txt"
        echo "seeds: ${SEEDS[*]}" >>"$STAGE/summary.txt"
    else
        log "runs kept by an earlier call in $KEEP not continued ($why): a new set"
    fi
fi

if [ "$CONT" != 1 ]; then
    REUSE="" REUSE_ID="" REUSE_HOW="" REUSE_JSON="" REUSE_ENV="" REUSE_ENV_ID=""
    if [ "$MATRIX" != full ]; then
        # The newest earlier matrix (window ids sort by time): its plan re-derived by today's rule
        # (benchmarks/training_plan.py), so a rule changed since that window applies; only where no earlier window
        # left a speed.json, the newest valid plan.env as it was written.
        # (both groups' speed folders: unpack.sh puts a window's beside the runs it brought back)
        JSON_ID=""
        for f in "$KNOWN/$GROUP"/speed/*/speed.json "$KNOWN/$GROUP"/speed/*/plan.env \
                 "$KNOWN/$GROUP-bf16"/speed/*/speed.json "$KNOWN/$GROUP-bf16"/speed/*/plan.env; do
            [ -f "$f" ] || continue
            id=$(basename "$(dirname "$f")")
            [[ $id =~ ^[0-9]{8}T[0-9]{4}Z$ ]] || { log "not a window folder, ignored: $f"; continue; }
            case $f in
                */speed.json) if [[ ! $id < $JSON_ID ]]; then REUSE_JSON=$f JSON_ID=$id; fi ;;
                *) if ! plan_ok "$f"; then log "invalid plan, ignored: $f"
                   elif [[ ! $id < $REUSE_ENV_ID ]]; then REUSE_ENV=$f REUSE_ENV_ID=$id; fi ;;
            esac
        done
        if [ -n "${REUSE_JSON:-}" ] && "$PYTHON" benchmarks/training_plan.py "$REUSE_JSON" --out-dir "$WORK/replan" \
                >"$WORK/replan.txt" 2>&1 && plan_ok "$WORK/replan/plan.env"; then
            REUSE=$WORK/replan/plan.env REUSE_ID=$(basename "$(dirname "$REUSE_JSON")")
            REUSE_HOW="plan derived by today's rule from the matrix of window $REUSE_ID (${REUSE_JSON#"$REPO"/})"
            while IFS= read -r line; do log "$line"; done <"$WORK/replan.txt"
        elif [ -n "${REUSE_ENV:-}" ]; then
            [ -n "${REUSE_JSON:-}" ] && log "could not re-derive a plan from $REUSE_JSON: $(tail -n 1 "$WORK/replan.txt")"
            REUSE=$REUSE_ENV REUSE_ID=$REUSE_ENV_ID
            REUSE_HOW="plan reused from window $REUSE_ID (${REUSE#"$REPO"/})"
        fi
    fi
    if [ -n "$REUSE" ]; then
        cp "$REUSE" "$STAGE/speed/plan.env"
        msg="speed matrix skipped: $REUSE_HOW"
        printf '# Speed matrix skipped\n\n%s (LSNC_WINDOW_MATRIX=%s; full measures again).\n\n' "$msg" "$MATRIX" \
            >"$STAGE/speed/speed.md"
        [ -f "$WORK/replan.txt" ] && { cat "$WORK/replan.txt"; echo; } >>"$STAGE/speed/speed.md"
        sed 's/^/    /' "$REUSE" >>"$STAGE/speed/speed.md"
        log "$msg"
        echo "matrix: reused $REUSE_ID" >>"$STAGE/summary.txt"
    elif [ "$MATRIX" = skip ]; then
        msg="speed matrix skipped (LSNC_WINDOW_MATRIX=skip): no earlier plan in ${KNOWN#"$REPO"/}/$GROUP[-bf16]/speed/"
        msg+="; the default plan"
        printf '# Speed matrix skipped\n\n%s.\n' "$msg" >"$STAGE/speed/speed.md"
        log "$msg"
        echo "matrix: skipped, default plan" >>"$STAGE/summary.txt"
    else
        # The cells stop at MATRIX_S (SIGALRM inside); the outer limit adds time for decoding the images once.
        # shellcheck disable=SC2086  # LSNC_WINDOW_MATRIX_ARGS is a list of options
        run_stage matrix $((MATRIX_S + 120)) "$PYTHON" benchmarks/speed_matrix.py --dataset cifar10-jpeg \
            --data-root "$DATA_ROOT" --width "$WIDTH" --wall-s "$MATRIX_S" --out-dir "$STAGE/speed" \
            ${LSNC_WINDOW_MATRIX_ARGS:-}
    fi

    # The plan: K fused models, precision, δ x seeds (benchmarks/training_plan.py); a failed matrix
    # leaves the minimum set.
    PLAN_K=2 PLAN_AMP=none PLAN_DELTAS="0 0.05" PLAN_SEEDS=0 PLAN_TWIN=0 PLAN_MODE=fused PLAN_GRAPHS=0
    if plan_ok "$STAGE/speed/plan.env"; then
        # shellcheck disable=SC1091
        . "$STAGE/speed/plan.env"
    elif [ -f "$STAGE/speed/plan.env" ]; then
        log "invalid $STAGE/speed/plan.env: the default plan"
    fi
    PLAN_MODE=${LSNC_WINDOW_MODE:-$PLAN_MODE}   # fused | streams | concurrent (override, e.g. to test each path)
    case $PLAN_MODE in
        fused | streams | concurrent) ;;
        *) log "error: LSNC_WINDOW_MODE (or the plan's PLAN_MODE) must be fused, streams or concurrent"; exit 2 ;;
    esac
    GRAPHS=${LSNC_WINDOW_GRAPHS:-$PLAN_GRAPHS}
    # A reused plan's graphs were checked on another machine, and LSNC_WINDOW_GRAPHS=1 forces them unchecked: check the
    # graphed step against the eager one here (the matrix's graph-check cell alone, a few seconds after the data are
    # decoded) before training with it. (Window 20261127T2102Z forced graphs past this check, in TF32, whose check had
    # failed in the matrix of the window before it.)
    # Graphs forced past this window's own matrix go only where its check at the plan's precision passed.
    # A graphed plan (fused or streams) re-derived from an earlier speed.json, at K = 2 or 4, also probes streams on
    # this machine: the same set graphed as one fused network and as K networks on K CUDA streams, both timed here, the
    # streams step checked against the eager one (benchmarks/training_plan.py --probe): streams where they pass and
    # are >= 1.1x, else fused. (A streams plan reused from a plan.env gets the streams check only.) The cells' names
    # fix --ks and no --skip applies (LSNC_WINDOW_MATRIX_ARGS may carry both, for the matrix).
    if [ "$GRAPHS" = 1 ] && { [ -n "$REUSE" ] || [ "$MATRIX" != skip ]; }; then
        CHECK_PREC=tf32
        [ "$PLAN_AMP" = bf16 ] && CHECK_PREC=bf16
        PROBE=0
        if [ -n "$REUSE" ]; then
            CELLS=("cudagraph check $CHECK_PREC K=2")
            if [ "$PLAN_MODE" != concurrent ] && [ "$PLAN_GRAPHS" = 1 ] && [ -z "${LSNC_WINDOW_MODE:-}" ] &&
                    [ "$REUSE" = "$WORK/replan/plan.env" ] && { [ "$PLAN_K" = 2 ] || [ "$PLAN_K" = 4 ]; }; then
                CELLS+=("cudagraph $CHECK_PREC K=$PLAN_K" "streams check $CHECK_PREC K=2" "streams $CHECK_PREC K=$PLAN_K")
                # a K = 2 set on streams may take K = 4 (a second seed) where its members keep enough of their epochs
                # (last: the cells' cap cuts it first)
                [ "$PLAN_K" = 2 ] && CELLS+=("streams $CHECK_PREC K=4")
                PROBE=1
            elif [ "$PLAN_MODE" = streams ]; then
                CELLS+=("streams check $CHECK_PREC K=2")
            fi
            # shellcheck disable=SC2086  # LSNC_WINDOW_MATRIX_ARGS is a list of options; those after it win
            run_stage graphcheck 180 "$PYTHON" benchmarks/speed_matrix.py --dataset cifar10-jpeg --data-root "$DATA_ROOT" \
                --width "$WIDTH" --wall-s 90 --out-dir "$STAGE/speed/check" ${LSNC_WINDOW_MATRIX_ARGS:-} \
                --skip --ks 1 2 4 --cells "${CELLS[@]}"
            CHECK_JSON="$STAGE/speed/check/speed.json" WHERE="on this machine" NOTE=""
            if [ "$PROBE" = 1 ]; then
                if "$PYTHON" benchmarks/training_plan.py "$REUSE_JSON" --probe "$CHECK_JSON" --out-dir "$WORK/probe" \
                        >"$WORK/probe.txt" 2>&1 && plan_ok "$WORK/probe/plan.env"; then
                    # shellcheck disable=SC1091
                    . "$WORK/probe/plan.env"
                    cp "$WORK/probe/plan.env" "$STAGE/speed/plan.env"
                    log "the plan with this machine's streams probe: $(cat "$WORK/probe.txt")"
                    WHY=$(grep -o -e 'on this machine [^;]*' -e 'streams not used here[^;]*' \
                          -e 'epochs per member on streams here[^;]*' "$WORK/probe.txt" | sed 's/\.$//' | paste -sd ';' -)
                    echo "probe: $PLAN_MODE (${WHY//;/; })" >>"$STAGE/summary.txt"
                else
                    log "the streams probe gave no plan (the plan stays $PLAN_MODE): $(tail -n 1 "$WORK/probe.txt")"
                fi
            fi
        else
            CHECK_JSON="$STAGE/speed/speed.json" WHERE="in this window's matrix" NOTE=" (this window's matrix)"
        fi
        FUSED_CHECK=$(check_status "$CHECK_JSON" "cudagraph check $CHECK_PREC K=2")
        CHECK_CELL="cudagraph check $CHECK_PREC K=2" CHECK=$FUSED_CHECK
        if [ "$PLAN_MODE" = streams ]; then
            CHECK_CELL="streams check $CHECK_PREC K=2"
            CHECK=$(check_status "$CHECK_JSON" "$CHECK_CELL")
            if [ "$CHECK" != ok ] && [ "$FUSED_CHECK" = ok ] && [ -z "${LSNC_WINDOW_MODE:-}" ]; then
                log "$CHECK_CELL $WHERE: $CHECK; the fused one passed: the set trains as one fused network, graphed"
                PLAN_MODE=fused CHECK_CELL="cudagraph check $CHECK_PREC K=2" CHECK=ok
            fi
        fi
        if [ "$CHECK" = ok ]; then
            log "$CHECK_CELL $WHERE: ok"
        else
            log "$CHECK_CELL $WHERE: $CHECK: training without CUDA graphs"
            GRAPHS=0
            # streams pay only graphed (an explicit LSNC_WINDOW_MODE=streams stays)
            [ "$PLAN_MODE" = streams ] && [ -z "${LSNC_WINDOW_MODE:-}" ] && PLAN_MODE=fused
            # A plan derived here from an earlier matrix may have chosen bf16 for its graphs alone (on the H200 eager
            # bf16 was no faster than TF32): derive it again from that matrix without graphs.
            if [ "$PLAN_AMP" = bf16 ] && [ "$REUSE" = "$WORK/replan/plan.env" ] &&
                    "$PYTHON" benchmarks/training_plan.py "$REUSE_JSON" --no-graphs --out-dir "$WORK/replan-nographs" \
                    >"$WORK/replan-nographs.txt" 2>&1 && plan_ok "$WORK/replan-nographs/plan.env"; then
                # shellcheck disable=SC1091
                . "$WORK/replan-nographs/plan.env"
                cp "$WORK/replan-nographs/plan.env" "$STAGE/speed/plan.env"
                PLAN_MODE=${LSNC_WINDOW_MODE:-$PLAN_MODE}
                [ "$PLAN_MODE" = streams ] && [ -z "${LSNC_WINDOW_MODE:-}" ] && PLAN_MODE=fused
                log "the plan again, without CUDA graphs: $(cat "$WORK/replan-nographs.txt")"
                echo "plan: derived again without CUDA graphs (amp=$PLAN_AMP K=$PLAN_K)" >>"$STAGE/summary.txt"
            fi
        fi
        echo "graph_check: $CHECK$NOTE" >>"$STAGE/summary.txt"
        [ "$CHECK_CELL" != "cudagraph check $CHECK_PREC K=2" ] && echo "fused_check: $FUSED_CHECK" >>"$STAGE/summary.txt"
    fi
    read -r -a DELTAS <<<"$PLAN_DELTAS"
    read -r -a PLAN_SEED_LIST <<<"$PLAN_SEEDS"
    [ "$PLAN_AMP" = bf16 ] && RUN_GROUP=$GROUP-bf16

    # Seeds: every window adds runs. Its seeds are the lowest whose whole δ set no earlier window trained at the plan's
    # precision, as found in LSNC_WINDOW_KNOWN_RUNS (the committed runs, carried with the checkout): unpack.sh never
    # replaces a run folder, and checkpoints never come back, so a repeated (δ, seed, precision) would be a lost window.
    # A bf16 set's runs are named apart from TF32 ones (-bf16-): TF32 runs of the same seeds are its precision twins.
    AMP_ARGS=(--amp none)
    [ "$PLAN_AMP" = bf16 ] && AMP_ARGS=(--amp bf16)
    NEXT=$("$PYTHON" device/next_seeds.py --group "${BOTH_GROUPS[@]}" --deltas "${DELTAS[@]}" \
           --count "${#PLAN_SEED_LIST[@]}" "${AMP_ARGS[@]}" "$KEEP/runs" "$KNOWN" "$RUNS" 2>"$WORK/next_seeds.err")
    NEXT_RC=$?
    while IFS= read -r line; do log "$line"; done <"$WORK/next_seeds.err"
    if [ -n "${LSNC_WINDOW_SEEDS:-}" ]; then
        read -r -a SEEDS <<<"$LSNC_WINDOW_SEEDS"
        log "seeds: ${SEEDS[*]} (LSNC_WINDOW_SEEDS; the plan's ${PLAN_SEEDS}; new ones would be ${NEXT:-unknown})"
        for s in "${SEEDS[@]}"; do
            if grep -q "seed $s taken" "$WORK/next_seeds.err"; then
                log "warning: seed $s was trained before: unpack.sh will not replace those runs"
            fi
        done
    elif [ "$NEXT_RC" = 0 ] && [[ $NEXT =~ ^[0-9]+(\ [0-9]+)*$ ]]; then
        read -r -a SEEDS <<<"$NEXT"
        log "seeds: ${SEEDS[*]} (as many as the plan's, the lowest not yet trained with δ ${DELTAS[*]} at this precision)"
    else
        SEEDS=("${PLAN_SEED_LIST[@]}")
        log "warning: device/next_seeds.py failed (exit $NEXT_RC): the plan's seeds ${SEEDS[*]}"
    fi
    # The tf32 twin of a bf16 set (its CE run of the first seed) trains only where no earlier window trained it (the
    # TF32 runs of that seed are its twins then) and while the group holds fewer than TWINS_ENOUGH seeds with CE
    # runs in both precisions: past that, the bf16 set gets the whole budget.
    if [ "$PLAN_AMP" = bf16 ] && [ "$PLAN_TWIN" = 1 ]; then
        if TWINS=$("$PYTHON" device/next_seeds.py --group "${BOTH_GROUPS[@]}" --deltas 0 --find "${SEEDS[0]}" \
                   --amp none "$KNOWN" "$RUNS" "$KEEP/runs" 2>/dev/null); then
            PLAN_TWIN=0
            TWINS=$(xargs -n 1 basename <<<"$TWINS" | tr '\n' ' ')
            log "tf32 twin of seed ${SEEDS[0]}: trained before ($TWINS): not again"
            echo "twin: trained before: $TWINS" >>"$STAGE/summary.txt"
        else
            read -r -a HAVE <<<"$("$PYTHON" device/next_seeds.py --group "${BOTH_GROUPS[@]}" --deltas 0 --twin-pairs \
                                  "$KNOWN" "$RUNS" "$KEEP/runs" 2>/dev/null)"
            if [ "${#HAVE[@]}" -ge "$TWINS_ENOUGH" ]; then
                PLAN_TWIN=0
                log "tf32 twin: not trained, the group has CE runs in both precisions for seeds ${HAVE[*]}" \
                    "(LSNC_WINDOW_TWINS=$TWINS_ENOUGH is enough)"
                echo "twin: enough twins already (seeds ${HAVE[*]})" >>"$STAGE/summary.txt"
            fi
        fi
    fi
    echo "seeds: ${SEEDS[*]}" >>"$STAGE/summary.txt"
fi
echo "run_group: $RUN_GROUP" >>"$STAGE/summary.txt"
log "plan: K=$PLAN_K amp=$PLAN_AMP δ=($PLAN_DELTAS) seeds=(${SEEDS[*]}) tf32 twin=$PLAN_TWIN mode=$PLAN_MODE" \
    "graphs=$GRAPHS group=$RUN_GROUP"

# ---------------------------------------------------------------- 3. training
T=$(( $(left) - PACK_RESERVE_S ))
if [ "$T" -lt 10 ]; then log "error: only ${T}s left for training; none"; exit 4; fi
if [ "$GRAPHS" != 1 ] && [ "$PLAN_MODE" = streams ] && [ -z "${LSNC_WINDOW_MODE:-}" ]; then
    log "no CUDA graphs: the set trains as one fused network (streams pay only graphed)"
    PLAN_MODE=fused
fi
TRAIN=(-m lsnc train --preset paper-cifar10-jpeg --data-root "$DATA_ROOT" --tf32 --channels-last
       --group "$RUN_GROUP" --runs-dir "$RUNS" --quiet)
[ "$WIDTH" != 64 ] && TRAIN+=(--width "$WIDTH")
read -r -a EXTRA <<<"${LSNC_WINDOW_TRAIN_ARGS:-}"
TRAIN+=("${EXTRA[@]}")
[ "$CONT" = 1 ] && TRAIN+=(--resume)   # the earlier call's runs, from their checkpoints

# train_for NAME SECONDS OPTIONS...: lsnc stops itself within SECONDS (after the last epoch that fits, evaluated)
train_for() {
    local name=$1 secs=$2
    shift 2
    echo "train.$name: $PYTHON ${TRAIN[*]} --time-budget-s $secs $*" >>"$STAGE/summary.txt"
    run_stage "$name" $((secs + 60)) "$PYTHON" "${TRAIN[@]}" --time-budget-s "$secs" "$@"
}

# train_stage NAME SECONDS OPTIONS...: train_for, with --cuda-graphs when GRAPHS=1; if that fails, again without
# CUDA graphs for the stage's time left, with --resume (runs stopped after an epoch continue from their checkpoint,
# runs never started start fresh, finished ones stay as they are); later stages then train without them.
train_stage() {
    local name=$1 secs=$2 end
    shift 2
    end=$((SECONDS + secs))
    if [ "$GRAPHS" != 1 ]; then train_for "$name" "$secs" "$@"; return; fi
    train_for "$name" "$secs" --cuda-graphs "$@" && return 0
    secs=$((end - SECONDS)) GRAPHS=0   # and no CUDA graphs for the stages after it
    log "stage $name with --cuda-graphs failed (exit ${RC[$name]}): again without CUDA graphs (--resume), ${secs}s left"
    if [ "$secs" -lt 10 ]; then log "no time left for $name without CUDA graphs"; return "${RC[$name]}"; fi
    train_for "$name-nographs" "$secs" --resume "$@"
}

# pair_job D S SECONDS GRAPHS [OPTIONS...] (in the background): one (δ, seed) for SECONDS, with OPTIONS, logged to
# logs/train-dD-sS.log; with GRAPHS=1 first with --cuda-graphs and, if that fails, again without CUDA graphs for
# its own time left, with --resume (each pair falls back by itself: the others keep their graphs and their time).
pair_job() {
    local d=$1 s=$2 secs=$3 graphs=$4 end=$((SECONDS + $3)) out=$STAGE/logs/train-d$1-s$2.log job=""
    shift 4
    local extra=("$@")
    trap '[ -n "$job" ] && kill -TERM "$job" 2>/dev/null; wait "$job" 2>/dev/null; exit 143' TERM
    try() {  # try SECONDS OPTIONS...: under a hard timeout, interruptible by the trap above
        local t=$1
        shift
        timeout -k 10 $((t + 60)) "$PYTHON" "${TRAIN[@]}" --time-budget-s "$t" --delta "$d" --seed "$s" \
            "${extra[@]}" "$@" >>"$out" 2>&1 &
        job=$!
        wait "$job"
    }
    : >"$out"
    if [ "$graphs" != 1 ]; then try "$secs"; return; fi
    try "$secs" --cuda-graphs && return 0
    secs=$((end - SECONDS))
    echo "window: d$d-s$s with --cuda-graphs failed: again without CUDA graphs (--resume), ${secs}s left" >>"$out"
    [ "$secs" -ge 10 ] || return 1
    try "$secs" --resume
}

# train_concurrent NAME SECONDS [OPTIONS...]: one process per (δ, seed) of PAIRS ("δ:seed"), all at once on the one
# GPU; its exit status in RC[NAME].
train_concurrent() {
    local name=$1 secs=$2 pids=() p d s i rc=0 failed=()
    shift 2
    for p in "${PAIRS[@]}"; do
        d=${p%:*} s=${p#*:}
        echo "train.d$d-s$s: $PYTHON ${TRAIN[*]} --time-budget-s $secs --delta $d --seed $s $*" \
            "$([ "$GRAPHS" = 1 ] && echo '--cuda-graphs (if it fails: again without, --resume)')" >>"$STAGE/summary.txt"
        pair_job "$d" "$s" "$secs" "$GRAPHS" "$@" &
        pids+=("$!")
    done
    CHILD="${pids[*]}"
    log "stage $name (concurrent, ${#pids[@]} processes, budget ${secs}s, graphs=$GRAPHS)"
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then rc=1; failed+=("${PAIRS[$i]}"); fi
    done
    CHILD=""
    RC[$name]=$rc
    log "stage $name: exit $rc${failed[*]:+ (failed: ${failed[*]})}"
    grep -h "^window: " "$STAGE"/logs/train-d*.log 2>/dev/null | while IFS= read -r line; do log "$line"; done
    return "$rc"
}

# unfuse RC: the fused (or streams) stage failed (exit RC; such a set never trained on this machine before): the same
# (δ, seed) set again as concurrent processes at the set's precision (AMP), for the time left, with --resume (members
# that stopped after an epoch continue from their checkpoints, the others start fresh). No fallback with less than
# a minute left.
unfuse() {
    local rc=$1 secs
    secs=$(( $(left) - PACK_RESERVE_S ))
    if [ "$secs" -lt 60 ]; then log "$PLAN_MODE training failed (exit $rc) with ${secs}s left: no fallback"; return "$rc"; fi
    log "$PLAN_MODE training failed (exit $rc): the set again as concurrent $PREC processes (--resume), ${secs}s left"
    echo "fallback: concurrent after $PLAN_MODE exit $rc" >>"$STAGE/summary.txt"
    PLAN_MODE=concurrent   # what a continuation of these runs must do too (their members may stop apart)
    PAIRS=()
    for s in "${SEEDS[@]}"; do for d in "${DELTAS[@]}"; do PAIRS+=("$d:$s"); done; done
    train_concurrent train-concurrent "$secs" "${AMP[@]}" --resume
}

TRAIN_STARTED=1   # from here pack() keeps the set's runs for a later call (keep_runs)
# The set's precision: TF32 (--tf32 in TRAIN), or bf16 autocast on top of it (the runs' names then carry -bf16).
AMP=() PREC=tf32
[ "$PLAN_AMP" = bf16 ] && AMP=(--amp bf16) PREC=bf16
TOGETHER=(--together streams)   # a streams set (PLAN_MODE=streams): K networks on K CUDA streams in one process
T=$(( $(left) - PACK_RESERVE_S ))
if [ "$T" -lt 10 ]; then log "error: only ${T}s left for training; none"; exit 4; fi
# (a bf16 plan is a set of one process; concurrent bf16 processes only continue a set that fell back to them)
if [ "$PLAN_MODE" = concurrent ] && { [ "$PLAN_AMP" != bf16 ] || [ "$CONT" = 1 ]; }; then
    PAIRS=()
    for s in "${SEEDS[@]}"; do for d in "${DELTAS[@]}"; do PAIRS+=("$d:$s"); done; done
    train_concurrent train "$T" "${AMP[@]}"
    TRAIN_RC=$?
else
    # A bf16 set with its tf32 twin: 3/4 of the time for the set, the rest for the twin.
    [ "$PLAN_AMP" = bf16 ] && [ "$PLAN_TWIN" = 1 ] && T=$((T * 3 / 4))
    if [ "$PLAN_MODE" = streams ]; then
        # On streams: one try (with graphs where GRAPHS=1); if it fails, the set again as one fused network with
        # --resume for the time left (graphed where this machine's fused graph check passed), then as processes.
        END=$((SECONDS + T))
        GRAPH_ARGS=()
        [ "$GRAPHS" = 1 ] && GRAPH_ARGS=(--cuda-graphs)
        train_for train "$T" "${AMP[@]}" "${TOGETHER[@]}" "${GRAPH_ARGS[@]}" --delta "${DELTAS[@]}" --seed "${SEEDS[@]}"
        TRAIN_RC=$?
        if [ "$TRAIN_RC" != 0 ] && [ $((END - SECONDS)) -ge 10 ]; then
            [ "$FUSED_CHECK" = ok ] || GRAPHS=0
            log "streams training failed (exit $TRAIN_RC): the set again as one fused network (--resume," \
                "graphs=$GRAPHS), $((END - SECONDS))s left"
            echo "fallback: fused after streams exit $TRAIN_RC" >>"$STAGE/summary.txt"
            PLAN_MODE=fused   # what a continuation of these runs does too
            train_stage train-fused $((END - SECONDS)) "${AMP[@]}" --resume --delta "${DELTAS[@]}" --seed "${SEEDS[@]}"
            TRAIN_RC=$?
        fi
    else
        train_stage train "$T" "${AMP[@]}" --delta "${DELTAS[@]}" --seed "${SEEDS[@]}"
        TRAIN_RC=$?
    fi
    SET_GRAPHS=$GRAPHS   # the set's own, for a continuation (the tf32 twin below trains without graphs)
    if [ "$TRAIN_RC" != 0 ] && [ $(( ${#DELTAS[@]} * ${#SEEDS[@]} )) -gt 1 ]; then   # a fused/streams set failed
        unfuse "$TRAIN_RC"
        TRAIN_RC=$?
    elif [ "$TRAIN_RC" = 0 ] && [ "$PLAN_AMP" = bf16 ] && [ "$PLAN_TWIN" = 1 ]; then
        T=$(( $(left) - PACK_RESERVE_S ))
        # The tf32 twin of the bf16 CE run of the first seed: its default name has no "-bf16", so it is its own
        # folder.
        if [ "$T" -ge 10 ]; then
            # the graph check ran at the set's precision (bf16) only: the TF32 twin trains eagerly
            [ "$GRAPHS" = 1 ] && log "tf32 twin: without CUDA graphs (no TF32 graph check passed here)"
            GRAPHS=0
            train_stage twin "$T" --group "$GROUP" --delta 0 --seed "${SEEDS[0]}"
        else
            log "no time left for the tf32 twin"
        fi
    fi
fi
exit "${TRAIN_RC:-1}"
