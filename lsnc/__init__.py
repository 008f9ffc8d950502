"""lsnc: cross-entropy vs label smoothing through the lens of neural collapse (a reproduction).

Where each concept lives (data flow one way: train -> run folder -> book):

- :mod:`.config` one run's options and each option's role; :mod:`.presets` named settings (the paper's recipe,
  the CPU scale); :mod:`.vocab` the paper's words (losses, δ, NC names);
- :mod:`.data` datasets on the device; :mod:`.models` networks returning ``(logits, features)``;
- :mod:`.training` the objective, the step, the loop, one evaluation pass (fused, graphed, on streams);
- :mod:`.metrics` neural-collapse metrics (accumulate, then measure); :mod:`.calibration` ECE and temperature
  scaling; :mod:`.snapshots` low-dimensional views of the features; :mod:`.ufm` the unconstrained feature model;
- :mod:`.runs` the run folder (its format, life cycle, comparison); :mod:`.orchestrate` which runs a reproduction
  needs and where they train;
- :mod:`.book` what the book's pages draw, measure and claim from the run folders;
- :mod:`.cli` the ``lsnc`` command; :mod:`.paths` where things live; :mod:`.atomic` atomic writes.
"""

__version__ = "0.1.0"

import time as _time

#: when lsnc was first imported: ``lsnc train --time-budget-s`` (and ``python -m lsnc train``) counts its budget
#: from here, so the seconds it takes to import torch are inside it (lsnc.cli.command)
IMPORTED_AT = _time.perf_counter()
