#!/usr/bin/env bash
# Before a GPU window: put what device/window.sh needs into .device/ (git-ignored, carried with the run):
# the CIFAR-10 JPEG copy's archive, checked by sha256, and which commit of lsnc goes along.
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
} >.device/source.txt
echo "prepare: .device/ ready ($(du -sh .device | cut -f1)): carry [\".device\"]"
