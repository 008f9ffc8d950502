#!/usr/bin/env bash
# After a GPU window: device/unpack.sh ARCHIVE [RUNS_DIR] (default: this checkout's runs/). device/unpack.py does
# it all (its docstring says what goes where); this runs it with the checkout's .venv, which has lsnc's
# dependencies (`lsnc compare` checks that a continued run extends the committed one), or $PYTHON.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then if [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python; else PY=python3; fi; fi
exec "$PY" "$REPO/device/unpack.py" "$@"
