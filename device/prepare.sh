#!/usr/bin/env bash
# Before a GPU window: put what device/window.sh (window.py) needs into .device/ (git-ignored, carried with the run):
# the CIFAR-10 JPEG copy's archive, checked by sha256, and which commit of lsnc goes along. Then says what the
# window will find in runs/<group>/ (device/window.py --preview): the plan it takes and the seeds it trains.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=${1:-../shared/data/cifar10-jpeg.tar.gz}
SHA256=$(cut -d' ' -f1 device/cifar10-jpeg.sha256)   # the archive's, also checked by device/stages/data.py
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
    # lsnc/ itself (device/stages/keep.py's code_digest): the window checks it, so a commit made after this is noticed
    echo "source_lsnc_digest: $(python3 -c 'import sys; sys.path.insert(0, "device")
from stages.keep import code_digest; print(code_digest())' 2>/dev/null || true)"
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

# What the window will train: its plan, seeds and twin, chosen as a window chooses them (device/stages/preview.py)
python3 device/window.py --preview || echo "prepare: could not preview the window's plan (above)" >&2
echo "prepare: then run(command=\"bash device/window.sh\", carry=[\".device\"], timeout_s=600); at once after it (the machine" \
     "goes back after 30 s idle), with budget_left_s from its reply: run(command=\"LSNC_WINDOW_BUDGET_S=<budget_left_s - 110>" \
     "bash device/window.sh\", carry=[\".device\"], timeout_s=<budget_left_s - 30>), which continues the same runs" \
     "(more than ~20 s after the first returned: status first; not warm: <budget_left_s - 240> and timeout_s=" \
     "<budget_left_s - 150>, only where budget_left_s >= 360, after unpacking the first archive);" \
     "then device/unpack.sh each archive, the first first (device/README.md)"
