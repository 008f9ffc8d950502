#!/usr/bin/env bash
# Set up: a virtual environment in .venv with the pinned requirements and lsnc (editable), plus the Jupyter
# kernel the notebooks run on. Re-running it is cheap: pip runs only when requirements.txt or pyproject.toml
# changed since the last successful install (their hash is kept in .venv/.lsnc-installed).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
STAMP=.venv/.lsnc-installed
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
    echo "ready (already current): source .venv/bin/activate"
    exit 0
fi
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
rm -f "$STAMP"
# requirements.txt pins every package exactly; a machine-wide pip constraint file must not override them.
export PIP_CONSTRAINT=
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "$want" > "$STAMP"
echo "ready: source .venv/bin/activate"
