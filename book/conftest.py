"""What `pytest --nbval-lax` checks of the pages beyond "no cell raised": a page that runs but draws nothing fails.

nbval-lax compares no outputs, so a page whose selection came out empty (a renamed run group, runs damaged) would
pass while showing only its "Nothing to draw." note. Here, once a page's last cell has run (with its default
parameters, as the book builds it; every code cell run): no output says "Nothing to draw.", and the pages in
:data:`DRAWING_PAGES` showed at least one figure.
"""

from __future__ import annotations

import pytest

#: The pages that must show at least one figure (image/png) with their default parameters.
DRAWING_PAGES = {f"fig{i}" for i in range(1, 10)} | {"claims", "theory", "explorer"}

_seen: dict[str, dict[str, int]] = {}


def _page(item) -> str | None:
    """The notebook's name for an nbval cell item, None for any other test."""
    if type(item).__name__ != "IPyNbCell":
        return None
    return item.parent.path.stem


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    page = _page(item)
    if page is None:
        return
    seen = _seen.setdefault(page, {"cells": 0, "images": 0, "nothing": 0})
    seen["cells"] += 1
    for out in item.test_outputs or []:
        data = out.get("data", {}) if hasattr(out, "get") else {}
        seen["images"] += "image/png" in data
        text = str(data.get("text/markdown", "")) + str(data.get("text/plain", "")) + str(out.get("text", ""))
        seen["nothing"] += "Nothing to draw." in text


def pytest_runtest_teardown(item, nextitem):
    page = _page(item)
    if page is None or (nextitem is not None and getattr(nextitem, "parent", None) is item.parent):
        return  # not a page, or not its last cell
    seen = _seen.pop(page, {"cells": 0, "images": 0, "nothing": 0})
    if seen["cells"] < sum(c.cell_type == "code" for c in item.parent.nb.cells):
        return  # some cells were deselected (-k): the page was not run whole
    if seen["nothing"]:
        raise AssertionError(f"book/{page}.ipynb showed 'Nothing to draw.' with its default parameters: its "
                             "selection of runs came out empty (see the page's note)")
    if page in DRAWING_PAGES and not seen["images"]:
        raise AssertionError(f"book/{page}.ipynb ran without error but showed no figure")
