"""The library behind the book (book/*.ipynb): which runs a page draws, what they are, their numbers, figures.

One module per concept:

- :mod:`.select`: :func:`select` the runs of a page (a :class:`Selection`; never raises for unknown data);
- :mod:`.describe`: the one home for describing runs: data, copy and subset, model and width, loss, epochs
  (or "epochs 0–E of the N-epoch recipe" for a prefix), seeds, recipe, provenance;
- :mod:`.comparable`: which runs can be compared, and at which epoch (prefixes cut to one epoch, the setting two
  runs must share, each group's main precision);
- :mod:`.captions`: the caption under every figure, and :func:`show`;
- :mod:`.summary`: numbers the pages print or glue (means per loss, end-of-training tables, bf16 vs fp32);
- :mod:`.scale`: one setting at several scales (longer, wider, more images, deeper), CE against LS at each;
- :mod:`.measures`: what the claims measure on each run (final values, epochs to a level, NC2 at matched NC1);
- :mod:`.claims`: the paper's claims C1-C6 as tests with verdicts;
- :mod:`.windows`: the GPU windows that trained a group (what each brought back, from ``speed/<window-id>/``);
- :mod:`.nc3`: where NC3 comes from (the disagreement with C2 taken apart), CE against LS;
- :mod:`.theory`: the theory page's numbers and its plain-language verdict (the claims page's C6 rows reuse its
  settings, :data:`.theory.THEORY_PAGE`);
- :mod:`.plots`: figure functions (:mod:`.plots.training`, :mod:`.plots.theory`, :mod:`.plots.scale` across run
  groups, :mod:`.plots.nc3`, shared :mod:`.plots.style`);
- :mod:`.widgets`: the explorers (ipywidgets, live in Jupyter);
- :mod:`.interactive`: the kernel-free explorers of the static pages (plotly, values precomputed on a grid);
- :mod:`.notebook`: a page's preamble (:func:`start`, :func:`check_params`) and glue helpers.

``from lsnc import book`` gives the names a notebook calls (below); the modules are ``book.describe`` etc.
"""

from ..runs import default_runs_dir
from . import describe, interactive, scale
from .captions import caption, show, show_caption
from .notebook import ParameterError, check_params, glue_markdown, glue_values, or_note, setup, start
from .describe import machines_table, recipe_table, scales_table
from .select import Selection, UnknownDataset, group_lines, resolve_datasets, select
from .summary import (calibration_gain, calibration_gain_lines, calibration_gain_runs, calibration_lines,
                      compare_sentence, final_calibration_table, final_collapse_table, final_epoch_text, page_table,
                      precision_comparison, precision_page_table, summary_by_loss, ufm_error_maxima, ufm_error_table,
                      ufm_ratio_table)
from .widgets import closed_form_explorer, run_browser, ufm_dynamics_explorer
from .windows import windows_table

__all__ = ["calibration_gain", "calibration_gain_lines", "calibration_gain_runs", "calibration_lines", "caption",
           "check_params", "closed_form_explorer", "compare_sentence", "default_runs_dir", "describe",
           "final_calibration_table", "final_collapse_table", "final_epoch_text", "glue_markdown", "glue_values",
           "group_lines", "interactive", "machines_table", "or_note", "page_table", "ParameterError",
           "precision_comparison", "precision_page_table", "recipe_table", "resolve_datasets", "run_browser", "scale",
           "scales_table", "select", "Selection", "setup", "show", "show_caption", "start", "summary_by_loss",
           "ufm_dynamics_explorer", "ufm_error_maxima", "ufm_error_table", "ufm_ratio_table", "UnknownDataset",
           "windows_table"]
