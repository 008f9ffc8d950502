"""What every page of the book does first, and its small display helpers.

A page's first code cell is its parameters (papermill), the second one call::

    sel = book.start(dataset, runs_dir, deltas=deltas)

(matplotlib settings, the runs the page draws, and a readable note when nothing matches), and each figure cell
calls a figure function and :func:`lsnc.book.captions.show`. Numbers quoted in the text go through
:func:`glue_values` / :func:`glue_markdown`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .select import Selection, UnknownDataset, select


def setup() -> None:
    """Matplotlib settings shared by the book's pages (resolution and font sizes for wide figures)."""
    import matplotlib.pyplot as plt
    plt.rcParams.update({"figure.dpi": 100, "font.size": 10.5, "axes.titlesize": 11, "legend.fontsize": 9})


def start(dataset=None, runs_dir: str | Path | None = None, **select_args: Any) -> Selection:
    """The preamble of a page: :func:`setup`, then :func:`lsnc.book.select.select` (same arguments), whose
    note is displayed when the selection is empty or left a dataset out. A dataset no run group holds raises
    :class:`UnknownDataset`, so ``papermill ... -p dataset nope`` fails with one line naming what exists."""
    setup()
    try:
        sel = select(dataset, runs_dir, **select_args)
    except UnknownDataset as exc:
        raise UnknownDataset(str(exc)) from None  # the page's line and the message, not the library's frames
    sel.note()
    return sel


def glue_values(values: dict[str, Any], prefix: str = "") -> None:
    """``myst_nb.glue`` each value (not displayed) under ``prefix + name``, for ``{glue:text}`` in the text."""
    from myst_nb import glue
    for name, value in values.items():
        glue(prefix + name, value, display=False)


def glue_markdown(name: str, text: str) -> None:
    """Glue Markdown ``text`` (not displayed) under ``name``, for a ``{glue:md}`` block."""
    from IPython.display import Markdown
    from myst_nb import glue
    glue(name, Markdown(text), display=False)


def or_note(table, note: str):
    """``table`` (a DataFrame, or a pandas Styler such as :func:`lsnc.book.summary.page_table`'s) when it has
    rows, else ``note`` as Markdown (the value a cell ends with)."""
    from IPython.display import Markdown
    return table if len(getattr(table, "data", table)) else Markdown(note)
