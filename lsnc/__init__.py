"""lsnc: cross-entropy vs label smoothing through the lens of neural collapse (a reproduction)."""

__version__ = "0.1.0"

import time as _time

#: when lsnc was first imported: ``lsnc train --time-budget-s`` (and ``python -m lsnc train``) counts its budget
#: from here, so the seconds it takes to import torch are inside it (lsnc.cli.command)
IMPORTED_AT = _time.perf_counter()
