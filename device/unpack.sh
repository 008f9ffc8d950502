#!/usr/bin/env bash
# After a GPU window: device/unpack.sh ARCHIVE [RUNS_DIR]
# Copies the finished run folders of window.tar.gz into RUNS_DIR/<group>/<name>/ (default: this checkout's runs/)
# and the speed table, plan, environment and summary into RUNS_DIR/<group>/speed/<window-id>/, the window's UTC
# start as YYYYMMDDTHHMMZ (from the date: line of its env.txt, else the archive's mtime; WINDOW_ID=... names it
# otherwise). Unfinished runs are listed, not copied; an existing run or window folder is not replaced unless
# FORCE=1. Then review and commit RUNS_DIR/<group>/.
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
    if [ -e "$dest" ] && [ "${FORCE:-0}" != 1 ]; then
        echo "unpack: $dest exists, not replaced (FORCE=1 replaces it)"
        continue
    fi
    mkdir -p "$RUNS_DIR/$group"
    rm -rf "$dest"
    cp -r "$run" "$dest"
    rm -f "$dest/checkpoint.pt"
    echo "unpack: $dest"
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
    echo "unpack: $dest/"
done
echo "unpack: $copied run folder(s) copied; logs stay in $ARCHIVE (window/logs/)"
