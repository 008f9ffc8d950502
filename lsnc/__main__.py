"""``python -m lsnc``: the command line, for machines where lsnc is on PYTHONPATH but not installed."""

import sys

from .cli import command

sys.exit(command())
