#!/usr/bin/env bash
# After a GPU window: device/unpack.sh ARCHIVE [RUNS_DIR]
# Copies the finished run folders of window.tar.gz into RUNS_DIR/<group>/<name>/ (default: this checkout's runs/)
# and the speed table, plan, environment and summary (and check.md/check.json, the cells measured before training)
# into RUNS_DIR/<group>/speed/<window-id>/, the window's UTC
# start as YYYYMMDDTHHMMZ (from the date: line of its env.txt, else the archive's mtime; WINDOW_ID=... names it
# otherwise). Unfinished runs are listed, not copied; an existing run or window folder is not replaced unless
# FORCE=1, or unless the archive's run continues it (a second call of the session trained it on: it reached a later
# epoch and `lsnc compare` finds it identical up to the existing one's last epoch). Then review and commit
# RUNS_DIR/<group>/.
set -euo pipefail
ARCHIVE=${1:?usage: device/unpack.sh ARCHIVE [RUNS_DIR]}
RUNS_DIR=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/runs}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
tar -xzf "$ARCHIVE" -C "$TMP"
W=$TMP/window
[ -d "$W" ] || { echo "unpack: $ARCHIVE holds no window/ folder" >&2; exit 1; }
ID_RE='^[0-9]{8}T[0-9]{4}Z$'
if [ -n "${WINDOW_ID:-}" ]; then
    ID=$WINDOW_ID
else
    ID=$(sed -n 's/^date: \([0-9]\{4\}\)-\([0-9]\{2\}\)-\([0-9]\{2\}\)T\([0-9]\{2\}\):\([0-9]\{2\}\).*/\1\2\3T\4\5Z/p' \
        "$W/env.txt" 2>/dev/null | head -n 1)
    if ! [[ $ID =~ $ID_RE ]]; then
        ID=$(date -u -r "$ARCHIVE" +%Y%m%dT%H%MZ)
        echo "unpack: no date: line in window/env.txt; window id $ID from the archive's mtime"
    fi
fi
[[ $ID =~ $ID_RE ]] || { echo "unpack: window id $ID is not YYYYMMDDTHHMMZ" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then if [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python; else PY=python3; fi; fi
epoch_of() {  # epoch_of RUN_FOLDER: the epoch its status.json says it stopped after
    sed -n 's/.*"epoch": *\([0-9][0-9]*\).*/\1/p' "$1/status.json" 2>/dev/null | head -n 1
}

copied=0
groups=()
for run in "$W"/runs/*/*/; do
    [ -f "$run/config.json" ] || continue
    run=${run%/}
    name=$(basename "$run")
    group=$(basename "$(dirname "$run")")
    if ! grep -Eq '"status": *"done"' "$run/status.json" 2>/dev/null; then
        echo "unpack: not finished, not copied: $group/$name ($(tr -d '\n' <"$run/status.json" 2>/dev/null))"
        continue
    fi
    dest=$RUNS_DIR/$group/$name
    how=""
    if [ -e "$dest" ] && [ "${FORCE:-0}" != 1 ]; then
        # A later call of the same session continued this run (device/window.sh, section 2): its folder replaces
        # the shorter one when it reached further and agrees with it, bit for bit, up to where that one stopped.
        old_epoch=$(epoch_of "$dest") new_epoch=$(epoch_of "$run")
        if [ -n "$old_epoch" ] && [ -n "$new_epoch" ] && [ "$new_epoch" -gt "$old_epoch" ] &&
                (cd "$REPO" && PYTHONPATH="$REPO" "$PY" -m lsnc compare "$dest" "$run") >"$TMP/compare.txt" 2>&1; then
            how=" (extended: epochs 0-$old_epoch -> 0-$new_epoch; identical up to $old_epoch"
            # A budget stop evaluates its last epoch even off the evaluation schedule; the continued run, like an
            # uninterrupted one, has no row there, so that evaluation was not compared and goes with the old folder.
            if [ "$(tail -n 1 "$dest/metrics.csv" 2>/dev/null | cut -d, -f1)" = "$old_epoch" ] &&
                    ! cut -d, -f1 "$run/metrics.csv" 2>/dev/null | grep -qx "$old_epoch"; then
                how+=", but for the evaluation at $old_epoch, off the schedule, which the continued run does not have"
            fi
            how+=")"
        else
            echo "unpack: $dest exists, not replaced (FORCE=1 replaces it)"
            [ -n "$old_epoch" ] && [ -n "$new_epoch" ] && [ "$new_epoch" -gt "$old_epoch" ] &&
                echo "unpack:   it reached epoch $new_epoch, but does not continue the run there: $(tail -n 2 "$TMP/compare.txt" | head -n 1)"
            continue
        fi
    fi
    mkdir -p "$RUNS_DIR/$group"
    rm -rf "$dest"
    cp -r "$run" "$dest"
    rm -f "$dest/checkpoint.pt"
    echo "unpack: $dest$how"
    copied=$((copied + 1))
    [[ " ${groups[*]-} " == *" $group "* ]] || groups+=("$group")
done

# The speed table goes beside the runs of each group it produced (else the groups the window made folders for,
# else the window's group), one folder per window: device/window.sh reuses the newest plan.env among them.
if [ ${#groups[@]} -eq 0 ]; then
    for g in "$W"/runs/*/; do
        if [ -d "$g" ]; then groups+=("$(basename "$g")"); fi
    done
fi
if [ ${#groups[@]} -eq 0 ]; then
    g=$(sed -n 's/^group: //p' "$W/summary.txt" 2>/dev/null | head -n 1)
    if [[ $g =~ ^[A-Za-z0-9._-]+$ ]]; then groups+=("$g"); fi
fi
for group in "${groups[@]-}"; do
    [ -n "$group" ] || continue
    dest=$RUNS_DIR/$group/speed/$ID
    if [ -e "$dest" ] && [ "${FORCE:-0}" != 1 ]; then
        echo "unpack: $dest exists, not replaced (FORCE=1 replaces it)"
        continue
    fi
    rm -rf "$dest"
    mkdir -p "$dest"
    for f in speed/speed.md speed/speed.json speed/plan.env env.txt summary.txt; do
        if [ -f "$W/$f" ]; then cp "$W/$f" "$dest/"; fi
    done
    # the cells the window measured on its own machine before training (graph check, streams probe): check.*, so
    # that no later window takes them for a whole matrix (speed.json)
    for f in speed.md speed.json; do
        if [ -f "$W/speed/check/$f" ]; then cp "$W/speed/check/$f" "$dest/check.${f#speed.}"; fi
    done
    echo "unpack: $dest/"
done
echo "unpack: $copied run folder(s) copied; logs stay in $ARCHIVE (window/logs/)"
