#!/usr/bin/env bash
# Before a GPU window: put what device/window.sh needs into .device/ (git-ignored, carried with the run):
# the CIFAR-10 JPEG copy's archive, checked by sha256, and which commit of lsnc goes along. Then says what the
# window will find in runs/<group>/ (device/window.sh's defaults): the plan it reuses and the seeds it trains.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=${1:-../shared/data/cifar10-jpeg.tar.gz}
SHA256=01373fb925a97e9c13f8df5ff9307dfc9bf58c509d575ff73ec5478d71a9bed8
mkdir -p .device
rm -rf .device/data .device/runs  # only the archive travels (64 MiB carry limit)
rm -f .device/cifar10-jpeg.tar.gz
cp "$SRC" .device/cifar10-jpeg.tar.gz
if [ "$(sha256sum .device/cifar10-jpeg.tar.gz | cut -d' ' -f1)" != "$SHA256" ]; then
    echo "prepare: $SRC has the wrong sha256 (expected $SHA256)" >&2
    rm -f .device/cifar10-jpeg.tar.gz
    exit 1
fi
{
    echo "source_commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "source_uncommitted_files: $(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)"
    # lsnc/ as sent: tracked changes and untracked files both travel (empty when git cannot say)
    if lsnc_status=$(git status --porcelain --untracked-files=normal -- lsnc 2>/dev/null); then
        echo "source_lsnc_modified: $([ -n "$lsnc_status" ] && echo 1 || echo 0)"
    else
        echo "source_lsnc_modified: "
    fi
} >.device/source.txt
# What travels to the device: tracked and untracked-not-ignored files plus the carried .device/, 64 MiB at most.
LIMIT_MIB=64
# (a tracked file deleted from the work tree makes stat fail: it travels as nothing, and must not stop the script)
tree=$( { git ls-files -z -co --exclude-standard 2>/dev/null | xargs -0 -r stat -c %s -- 2>/dev/null || true; } |
        awk '{s += $1} END {print s + 0}')
carried=$(du -sb .device | cut -f1)
travel_mib=$(( (tree + carried + 1048575) / 1048576 ))
if (( travel_mib > LIMIT_MIB )); then
    echo "prepare: ${travel_mib} MiB would travel (working tree $(( tree / 1048576 )) MiB + .device/ $(( carried / 1048576 )) MiB)," \
         "over the device's ${LIMIT_MIB} MiB: git-ignore or move the largest untracked files" \
         "(git ls-files -co --exclude-standard | xargs du -b | sort -n | tail)" >&2
    exit 1
fi
echo "prepare: .device/ ready ($(du -sh .device | cut -f1)): carry [\".device\"]; ${travel_mib} of ${LIMIT_MIB} MiB travel"

GROUP=cifar10-jpeg-full-resnet18-gpu
# As window.sh picks it: the newest earlier matrix (speed.json), its plan re-derived by today's rule; else the
# newest valid plan.env.
PLAN="" JSON="" PLAN_ID="" JSON_ID=""
for f in runs/"$GROUP"/speed/*/speed.json runs/"$GROUP"/speed/*/plan.env \
         runs/"$GROUP"-bf16/speed/*/speed.json runs/"$GROUP"-bf16/speed/*/plan.env; do
    id=$(basename "$(dirname "$f")")
    [[ $id =~ ^[0-9]{8}T[0-9]{4}Z$ ]] || continue
    case $f in
        */speed.json) if [[ ! $id < $JSON_ID ]]; then JSON=$f JSON_ID=$id; fi ;;
        *) if grep -q '^PLAN_K=' "$f" && ! grep -qvE '^PLAN_[A-Z]+="[0-9a-z. ]*"$' "$f" && [[ ! $id < $PLAN_ID ]]; then
               PLAN=$f PLAN_ID=$id
           fi ;;
    esac
done
TMP_PLAN=$(mktemp -d)
trap 'rm -rf "$TMP_PLAN"' EXIT
if [ -n "$JSON" ] && python3 benchmarks/training_plan.py "$JSON" --out-dir "$TMP_PLAN" >"$TMP_PLAN/why.txt" 2>&1; then
    echo "prepare: the window re-derives its plan from $JSON: $(cat "$TMP_PLAN/why.txt")"
    PLAN=$TMP_PLAN/plan.env FROM_JSON=1
elif [ -n "$PLAN" ]; then
    echo "prepare: the window reuses the plan $PLAN: $(tr '\n' ' ' <"$PLAN")"
fi
if [ -n "$PLAN" ]; then
    DELTAS=$(sed -n 's/^PLAN_DELTAS="\(.*\)"$/\1/p' "$PLAN")
    N=$(sed -n 's/^PLAN_SEEDS="\(.*\)"$/\1/p' "$PLAN" | wc -w)
    AMP=$(sed -n 's/^PLAN_AMP="\(.*\)"$/\1/p' "$PLAN")
    TWIN=$(sed -n 's/^PLAN_TWIN="\(.*\)"$/\1/p' "$PLAN")
    WHICH="seeds"
    if [ "${FROM_JSON:-0}" = 1 ] && grep -qE '^PLAN_MODE="(fused|streams)"' "$PLAN" &&
            grep -q '^PLAN_GRAPHS="1"' "$PLAN" && grep -qE '^PLAN_K="[24]"' "$PLAN"; then
        echo "prepare: before training, the window checks the graphed step on its machine and probes the set on CUDA" \
             "streams there (training_plan.py --probe): streams where they pass and are >= 1.1x one graphed fused" \
             "network, else fused; on streams, K=4 (a second seed) where each member keeps >= 0.8 of its epochs"
    fi
else
    echo "prepare: no earlier plan in runs/$GROUP[-bf16]/speed/: the window runs the speed matrix"
    DELTAS="0 0.05" N=2 AMP=none TWIN=0 WHICH="the first 1 or 2 (its plan says) of seeds"
fi
# shellcheck disable=SC2086  # DELTAS is a list
if SEEDS=$(python3 device/next_seeds.py --group "$GROUP" "$GROUP-bf16" --deltas $DELTAS --count "$N" \
           --amp "${AMP:-none}" runs 2>/dev/null); then
    echo "prepare: the window trains δ {$DELTAS} ($([ "$AMP" = bf16 ] && echo "bf16, group $GROUP-bf16" ||
         echo "TF32, group $GROUP")) with $WHICH $SEEDS (device/next_seeds.py)"
    first=${SEEDS%% *}
    if [ "$AMP" != bf16 ] || [ "${TWIN:-0}" != 1 ]; then
        :
    elif twins=$(python3 device/next_seeds.py --group "$GROUP" "$GROUP-bf16" --deltas 0 --find "$first" runs \
                 2>/dev/null); then
        echo "prepare: its tf32 twin (CE, seed $first) was trained before: $(xargs -n 1 basename <<<"$twins" | tr '\n' ' ')"
    else
        have=$(python3 device/next_seeds.py --group "$GROUP" "$GROUP-bf16" --deltas 0 --twin-pairs runs 2>/dev/null ||
               true)
        if [ "$(wc -w <<<"$have")" -ge "${LSNC_WINDOW_TWINS:-2}" ]; then
            echo "prepare: no tf32 twin: seeds $have already have CE runs in both precisions"
        else
            echo "prepare: it also trains the tf32 twin (CE, seed $first) for the last quarter of its budget"
        fi
    fi
fi
echo "prepare: then run(command=\"bash device/window.sh\", carry=[\".device\"], timeout_s=600); at once after it (the machine" \
     "goes back after 30 s idle), with budget_left_s from its reply: run(command=\"LSNC_WINDOW_BUDGET_S=<budget_left_s - 110>" \
     "bash device/window.sh\", carry=[\".device\"], timeout_s=<budget_left_s - 30>), which continues the same runs;" \
     "then device/unpack.sh each archive, the first first (device/README.md)"
