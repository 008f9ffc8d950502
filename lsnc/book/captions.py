"""Captions: below every figure, what it was computed from (one :func:`lsnc.book.describe.provenance_line` per
dataset), and the display helpers the notebooks call."""

from __future__ import annotations

from .describe import as_runs, by_dataset, provenance_line


def caption(runs, what: str = "") -> str:
    """Markdown saying what a figure was computed from (``runs``: a Selection or a list of runs), one line per
    dataset (counting only the runs drawn), and, for a Selection, the damaged runs it left out; empty when
    there are no runs."""
    left_out = getattr(runs, "left_out_text", None)  # a Selection names the damaged runs it left out
    runs = as_runs(runs)
    if not runs:
        return ""
    lines = [f"*Computed from:* {what}" if what else "*Computed from:*"]
    lines += [f"- {provenance_line(rs)}" for rs in by_dataset(runs).values()]
    if left_out is not None and left_out(runs):
        lines.append(f"- *{left_out(runs)[0].upper() + left_out(runs)[1:]}.*")
    return "\n".join(lines)


def show(fig, runs, what: str = "") -> None:
    """Display ``fig`` (then close it) followed by its caption; nothing when ``fig`` is None."""
    if fig is None:
        return
    import matplotlib.pyplot as plt
    from IPython.display import display
    display(fig)
    plt.close(fig)
    show_caption(runs, what)


def show_caption(runs, what: str = "") -> None:
    """Display the caption of ``runs`` (nothing when there are none)."""
    from IPython.display import Markdown, display
    text = caption(runs, what)
    if text:
        display(Markdown(text))
