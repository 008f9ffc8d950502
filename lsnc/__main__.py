"""``python -m lsnc``: the command line, for machines where lsnc is on PYTHONPATH but not installed."""

import sys

from . import IMPORTED_AT
from .cli import main

sys.exit(main(started=IMPORTED_AT))
