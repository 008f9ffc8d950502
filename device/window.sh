#!/usr/bin/env bash
# One GPU window in one command (see device/README.md): device/window.py does it all; its docstring lists the
# stages, the settings (environment variables) and the exit statuses. Kept as the command a session runs:
#   run(command="bash device/window.sh", carry=[".device"], timeout_s=600)
exec "${PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/window.py" "$@"
