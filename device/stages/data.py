"""Stage 1: the machine (env.txt) and the data: the carried CIFAR-10 JPEG copy (.device/cifar10-jpeg.tar.gz,
checked against device/cifar10-jpeg.sha256, which device/prepare.sh checks too), or LSNC_WINDOW_DATA."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .call import Exit, Window, command_output
from .settings import REPO

TARBALL = ".device/cifar10-jpeg.tar.gz"
#: where the paper-cifar10-jpeg preset reads the images (lsnc.paths.CIFAR10_JPEG; a test checks the copy)
JPEG_ROOT = "../shared/data/cifar10-jpeg"
SHA256_FILE = REPO / "device" / "cifar10-jpeg.sha256"   # `sha256sum -c` format: the one home of the hash


def describe_machine(w: Window) -> None:
    """env.txt: date, host, CPUs, memory, the source commit prepare.sh recorded, python and package versions,
    nvidia-smi."""
    lines = [f"date: {w.now_utc}", f"window_id: {w.window_id}", "host: " + command_output(["uname", "-a"])[1].strip(),
             f"nproc: {len(os.sched_getaffinity(0))}"]
    try:
        kib = int(re.search(r"MemTotal: *([0-9]+)", Path("/proc/meminfo").read_text()).group(1))
        lines.append(f"memory_gib: {kib // 1024 ** 2}")
    except (OSError, AttributeError):
        pass
    source = Path(".device/source.txt")
    if source.is_file():
        lines.append(source.read_text().rstrip("\n"))
    _, version, err = w.python("-c", "import sys; print(sys.version.split()[0])")
    lines.append(f"python: {w.s.python} = {(version + err).strip()}")
    _, versions, err = w.python("-c", "from importlib.metadata import version\n"
                                      "for m in ('torch', 'torchvision', 'numpy', 'scipy', 'pandas', 'pillow', "
                                      "'triton'):\n"
                                      "    try:\n        print(f'{m}: {version(m)}')\n"
                                      "    except Exception:\n        print(f'{m}: not installed')\n")
    lines.append((versions + err).rstrip("\n"))
    if shutil.which("nvidia-smi"):
        _, out, err = command_output(["nvidia-smi"])
        lines.append("---- nvidia-smi\n" + (out + err).rstrip("\n"))
    text = "\n".join(lines) + "\n"
    (w.stage / "env.txt").write_text(text)
    print(text, end="", flush=True)


def unpack(w: Window, archive: str, into: str) -> bool:
    """Extract ``archive`` next to ``into``, then move its one top folder into place (never half-extracted)."""
    try:
        tmp = tempfile.mkdtemp(prefix=".unpack.", dir=os.path.dirname(into))
    except OSError:
        return False
    try:
        if subprocess.run(["tar", "-xzf", archive, "-C", tmp]).returncode != 0:
            return False
        tops = sorted(p for p in Path(tmp).iterdir() if p.is_dir())
        if not tops or not (tops[0] / "train").is_dir():
            w.log(f"error: {archive} holds no <folder>/train/")
            return False
        shutil.rmtree(into, ignore_errors=True)
        os.rename(tops[0], into)
        return True
    except OSError as e:
        w.log(f"error: could not unpack {archive}: {e}")
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_data(w: Window) -> None:
    """The image folder the set trains on, in w.data_root: LSNC_WINDOW_DATA (a folder, or a .tar.gz unpacked into
    the call's scratch folder), else the CIFAR-10 JPEG copy beside the checkout, unpacked there from the carried
    archive where it is not there yet."""
    data = w.s.data
    if data and os.path.isfile(data):
        os.makedirs(w.work / "data", exist_ok=True)
        if not unpack(w, data, str(w.work / "data" / "images")):
            raise Exit(2)
        root = str(w.work / "data" / "images")
    elif data:
        root = data
    elif os.path.isdir(f"{JPEG_ROOT}/train"):
        root = JPEG_ROOT   # the preset's own data_root: config.json as on any machine
    else:
        if not os.path.isfile(TARBALL):
            w.log(f"error: no {TARBALL} (run device/prepare.sh and carry .device)")
            raise Exit(2)
        try:
            expected = SHA256_FILE.read_text().split()[0]
        except (OSError, IndexError):
            w.log(f"error: cannot read the expected sha256 from {SHA256_FILE} (it comes with the checkout)")
            raise Exit(2)
        if hashlib.sha256(Path(TARBALL).read_bytes()).hexdigest() != expected:
            w.log(f"error: {TARBALL} has the wrong sha256 (expected {expected}, {SHA256_FILE.name})")
            raise Exit(2)
        # Beside the checkout as on the development machines, so the runs record the same relative data_root;
        # inside .device/ where that folder cannot be made.
        root = JPEG_ROOT
        try:
            os.makedirs(os.path.dirname(JPEG_ROOT), exist_ok=True)
            beside = unpack(w, TARBALL, root)
        except OSError:
            beside = False
        if not beside:
            root = ".device/data/cifar10-jpeg"
            os.makedirs(".device/data", exist_ok=True)
            if not unpack(w, TARBALL, root):
                raise Exit(2)
    files = sum(len(names) for _, _, names in os.walk(os.path.join(root, "train")))
    w.log(f"data: {root} ({files} train files)")
    w.summary(f"data_root: {root}")
    w.data_root = root
