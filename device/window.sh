#!/usr/bin/env bash
# One GPU window in one command (see device/README.md): device/window.py runs the stages of device/stages/ in
# order; its docstring lists them and the exit statuses, device/stages/settings.py the settings (environment
# variables). Kept as the command a session runs:
#   run(command="bash device/window.sh", carry=[".device"], timeout_s=600)
exec "${PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/window.py" "$@"
