#!/usr/bin/env bash
# After a GPU window: device/unpack.sh ARCHIVE [RUNS_DIR]
# Copies the finished run folders of window.tar.gz into RUNS_DIR/<group>/<name>/ (default: this checkout's runs/)
# and the speed table, environment and summary into RUNS_DIR/<group>/speed/. Unfinished runs are listed, not
# copied; an existing run folder is not replaced unless FORCE=1. Then review and commit RUNS_DIR/<group>/.
set -euo pipefail
ARCHIVE=${1:?usage: device/unpack.sh ARCHIVE [RUNS_DIR]}
RUNS_DIR=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/runs}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
tar -xzf "$ARCHIVE" -C "$TMP"
W=$TMP/window
[ -d "$W" ] || { echo "unpack: $ARCHIVE holds no window/ folder" >&2; exit 1; }

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

# The speed table goes beside the runs of each group it produced (or the window's group from summary.txt).
if [ ${#groups[@]} -eq 0 ] && [ -d "$W/runs" ]; then
    for g in "$W"/runs/*/; do [ -d "$g" ] && groups+=("$(basename "$g")"); done
fi
for group in "${groups[@]-}"; do
    [ -n "$group" ] || continue
    mkdir -p "$RUNS_DIR/$group/speed"
    for f in speed/speed.md speed/speed.json env.txt summary.txt; do
        [ -f "$W/$f" ] && cp "$W/$f" "$RUNS_DIR/$group/speed/"
    done
    echo "unpack: $RUNS_DIR/$group/speed/"
done
echo "unpack: $copied run folder(s) copied; logs stay in $ARCHIVE (window/logs/)"
