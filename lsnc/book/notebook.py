"""What every page of the book does first, and its small display helpers.

A page's first code cell is its parameters (papermill), the second checks them and calls::

    deltas, bins = book.check_params(deltas=deltas, bins=bins)   # only the parameters the page has
    sel = book.start(dataset, runs_dir, deltas=deltas)

(matplotlib settings, the runs the page draws, and a readable note when nothing matches or damaged runs were
left out), and each figure cell calls a figure function and :func:`lsnc.book.captions.show`. Numbers quoted in
the text go through :func:`glue_values` / :func:`glue_markdown`.

**Parameters.** :func:`check_params` is the one place that says what each page parameter accepts
(:data:`PARAMETERS`); a wrong type or value raises :class:`ParameterError`, one line naming the parameter, the
value and what it accepts, so ``papermill book/fig7.ipynb out.ipynb -p bins 17`` exits non-zero with that line.
:func:`start` checks the parameters that need the runs: a ``seed`` or ``deltas`` no finished run has.
"""

from __future__ import annotations

import ast
import math
import numbers
from pathlib import Path
from typing import Any

from ..calibration import ECE_BINS
from .describe import fmt_list, seeds_text
from .select import Selection, UnknownDataset, select, shown_path


class ParameterError(ValueError):
    """A page parameter of the wrong type or value; the message (one line) names it and what it accepts."""


#: what each page parameter accepts, in words (the error message's second half)
PARAMETERS = {
    "dataset": "a dataset name such as cifar10 or mnist1d, a list of names, or None for every dataset",
    "runs_dir": "an existing folder of run groups (<runs_dir>/<dataset>/<run>/), or None for the repository's runs/",
    "deltas": "a list of label-smoothing values δ with 0 ≤ δ < 1, e.g. [0.0, 0.05] (or '0, 0.05'), or None",
    "seeds": "a list of seeds (integers ≥ 0), or None for every seed",
    "seed": "a seed (an integer ≥ 0) that finished runs have, or None for the smallest seed both losses have",
    "bins": f"one of {fmt_list(ECE_BINS)} (the ECE bin counts the runs log)",
    "first_epochs": "a number of epochs (an integer ≥ 1), or None for the epochs up to the first learning-rate decay",
    "eps": "a positive number",
}


def _fail(name: str, value: Any, why: str = "") -> ParameterError:
    return ParameterError(f"parameter {name} = {value!r}{': ' + why if why else ''} — {name} takes "
                          f"{PARAMETERS[name]}.")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _number(v: Any) -> float | None:
    """``v`` as a finite float, or None when it is not a finite number (strings and booleans are not)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _as_value_list(name: str, value: Any) -> list | None:
    """A list parameter as a list: a list or tuple, one number, or text such as ``[0, 0.05]`` / ``0, 0.05``
    (papermill's ``-p`` passes text)."""
    if value is None or isinstance(value, (list, tuple)):
        return None if value is None else list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("none", "null", ""):
            return None
        try:
            parsed = ast.literal_eval(text if text.startswith(("[", "(")) else f"[{text}]")
        except (ValueError, SyntaxError):
            raise _fail(name, value, "not a list of numbers") from None
        return list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
    return [value]


def _check_one(name: str, value: Any) -> Any:
    if name not in PARAMETERS:
        raise KeyError(f"check_params: no rule for the parameter {name!r} (known: {', '.join(PARAMETERS)})")
    if name == "dataset":
        names = value if isinstance(value, (list, tuple)) else [value]
        if value is not None and not all(isinstance(n, str) and n.strip() for n in names):
            raise _fail(name, value)
        return value
    if name == "runs_dir":
        if value is None:
            return None
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise _fail(name, value)
        if not Path(value).expanduser().is_dir():
            raise _fail(name, value, f"no such folder ({shown_path(Path(value).expanduser())})")
        return Path(value).expanduser()
    if name in ("deltas", "seeds"):
        items = _as_value_list(name, value)
        if items is None:
            return None
        if not items:
            raise _fail(name, value, "empty")
        if name == "seeds":
            if not all(_is_int(x) and x >= 0 for x in items):
                raise _fail(name, value)
            return [int(x) for x in items]
        nums = [_number(x) for x in items]
        if any(x is None or not 0 <= x < 1 for x in nums):
            raise _fail(name, value)
        return nums
    if name == "seed":
        if value is None:
            return None
        if not (_is_int(value) and value >= 0):
            raise _fail(name, value)
        return int(value)
    if name == "bins":
        if not (_is_int(value) and value in ECE_BINS):
            raise _fail(name, value, "no ECE with this many bins is logged" if _is_int(value) else "")
        return int(value)
    if name == "first_epochs":
        if value is None:
            return None
        if not (_is_int(value) and value >= 1):
            raise _fail(name, value)
        return int(value)
    if name == "eps":
        v = _number(value)
        if v is None or v <= 0:
            raise _fail(name, value)
        return v
    raise AssertionError(name)  # pragma: no cover


def check_params(**params: Any):
    """Check page parameters by name (see :data:`PARAMETERS`) and return them in usable form (``deltas`` as a
    list of floats, ``runs_dir`` as a Path, ...): the value itself for one parameter, a tuple in the order
    given for several. Raises :class:`ParameterError`, one line naming the parameter and what it accepts."""
    __tracebackhide__ = True  # noqa: F841
    try:
        values = tuple(_check_one(name, value) for name, value in params.items())
    except ParameterError as exc:
        raise ParameterError(str(exc)) from None  # the page's line and the message, not the library's frames
    return values[0] if len(values) == 1 else values


def setup() -> None:
    """Matplotlib settings shared by the book's pages (resolution and font sizes for wide figures)."""
    import matplotlib.pyplot as plt
    plt.rcParams.update({"figure.dpi": 100, "font.size": 10.5, "axes.titlesize": 11, "legend.fontsize": 9})


def _check_against_runs(sel: Selection, seeds: list[int] | None, seed_name: str, deltas: list[float] | None) -> None:
    """A ``seed`` / ``deltas`` that no finished run of the page's datasets has is a wrong value (a page must not
    fall back to another seed); some of several δ missing is only noted (the selection's message)."""
    from ..vocab import in_deltas
    if not sel.seeds_present:  # no runs at all: the page's note says so
        return
    if seeds is not None and not set(seeds) & set(sel.seeds_present):
        value = seeds[0] if seed_name == "seed" else seeds
        raise _fail(seed_name, value, f"no finished run has {'this seed' if seed_name == 'seed' else 'these seeds'} "
                                      f"(seeds with runs: {seeds_text(sel.seeds_present)})")
    if deltas is not None and not any(in_deltas(d, sel.deltas_present) for d in deltas):
        raise _fail("deltas", deltas, f"no finished run has these δ (δ with runs: {fmt_list(sel.deltas_present)})")


def start(dataset=None, runs_dir: str | Path | None = None, *, seed: int | None = None, **select_args: Any) -> Selection:
    """The preamble of a page: :func:`setup`, the parameters checked (:func:`check_params`: ``dataset``,
    ``runs_dir``, ``deltas``, ``seeds``, ``seed``), then :func:`lsnc.book.select.select` (same arguments;
    ``seed`` selects that one seed), whose note is displayed when the selection is empty, left a dataset out or
    left damaged runs out. A dataset no run group holds raises :class:`UnknownDataset`, and a seed or δ values
    no finished run has raise :class:`ParameterError`, so ``papermill ... -p dataset nope`` fails with one line
    naming what exists."""
    __tracebackhide__ = True  # noqa: F841
    setup()
    try:
        dataset, runs_dir, seed = check_params(dataset=dataset, runs_dir=runs_dir, seed=seed)
        for key in ("deltas", "seeds"):
            if key in select_args:
                select_args[key] = check_params(**{key: select_args[key]})
        if seed is not None:
            select_args["seeds"] = [seed]
        sel = select(dataset, runs_dir, **select_args)
        _check_against_runs(sel, select_args.get("seeds"), "seed" if seed is not None else "seeds",
                            select_args.get("deltas"))
    except UnknownDataset as exc:
        raise UnknownDataset(str(exc)) from None  # the page's line and the message, not the library's frames
    except ParameterError as exc:
        raise ParameterError(str(exc)) from None
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
