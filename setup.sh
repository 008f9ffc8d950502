#!/usr/bin/env bash
# One command to set up: a virtual environment in .venv with the pinned requirements and lsnc (editable).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv .venv
# requirements.txt pins every package exactly; a machine-wide pip constraint file must not override them.
export PIP_CONSTRAINT=
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "ready: source .venv/bin/activate"
