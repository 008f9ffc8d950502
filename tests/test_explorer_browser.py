"""The explorer page in a real browser (headless Chromium driven by Playwright, no network): dragging the δ slider
changes the plotted data and the printed numbers, with no kernel.

The page is book/_build/html/explorer.html when that build is newer than the explorer's notebook and
lsnc/book/interactive.py; otherwise the notebook is executed (nbclient) and its HTML outputs are written into a
page that, like the book's pages, loads a copy of the shipped book/_static/plotly.min.js in its head. The browser is Debian's ``chromium-headless-shell``
or ``chromium`` (``.ci/run`` installs the first); the test is skipped, saying why, only where neither exists.
Set ``LSNC_SCREENSHOTS=/some/dir`` to keep a screenshot of the page at each of two δ."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lsnc.paths import REPO_ROOT, book_dir

BROWSERS = ("chromium-headless-shell", "chromium")
NOTEBOOK = book_dir() / "explorer.ipynb"
BUILT = book_dir() / "_build" / "html" / "explorer.html"


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    return None


def _built_page_is_current() -> bool:
    if not BUILT.exists():
        return False
    text = BUILT.read_text(encoding="utf-8")
    if "Plotly.newPlot" not in text or "_static/plotly.min.js" not in text:  # built before the plotly figures
        return False
    sources = (NOTEBOOK, REPO_ROOT / "lsnc" / "book" / "interactive.py")
    return BUILT.stat().st_mtime > max(p.stat().st_mtime for p in sources)


def _page_from_notebook(folder: Path) -> Path:
    """Execute the explorer notebook and write its HTML and Markdown outputs into ``folder/explorer.html``."""
    import html

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(book_dir())}}).execute()
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data:
                parts.append(f"<div class='output'>{data['text/html']}</div>")
            elif "text/markdown" in data:
                parts.append(f"<p>{html.escape(data['text/markdown'])}</p>")
    (folder / "_static").mkdir(parents=True, exist_ok=True)
    shutil.copy(book_dir() / "_static" / "plotly.min.js", folder / "_static" / "plotly.min.js")
    page = folder / "explorer.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>explorer</title>"
                    "<script src='_static/plotly.min.js'></script></head><body>"
                    + "\n".join(parts) + "</body></html>", encoding="utf-8")
    return page


@pytest.fixture(scope="module")
def explorer_page(tmp_path_factory) -> Path:
    if _built_page_is_current():
        return BUILT
    return _page_from_notebook(tmp_path_factory.mktemp("explorer"))


@pytest.fixture(scope="module")
def page(explorer_page):
    executable = _browser()
    if executable is None:
        pytest.skip(f"no headless browser: none of {', '.join(BROWSERS)} is installed (apt-get install "
                    "chromium-headless-shell; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        blocked = []

        def offline(route):  # no network: only the page's own files
            if route.request.url.startswith(("file://", "data:", "blob:")):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", offline)
        pg = context.new_page()
        errors = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(explorer_page.as_uri())
        pg.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2 && "
                             "[...document.querySelectorAll('.js-plotly-plot')].every(g => g._fullLayout)",
                             timeout=30000)
        pg.errors, pg.blocked = errors, blocked
        yield pg
        browser.close()


#: an error of the book theme (sphinx-thebe's script defines the name twice), on every page, not the explorer's
KNOWN_THEME_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


def _errors(page) -> list[str]:
    return [e for e in page.errors if not any(k in e for k in KNOWN_THEME_ERRORS)]


STATE = """(gd) => ({
  data: gd.data.filter(t => t.visible !== false).map(t => ({x: Array.from(t.x || []), y: Array.from(t.y || []),
                                                            text: t.text, name: t.name})),
  printed: [...gd.querySelectorAll('.textpoint text')].map(e => e.textContent).join(' | '),
  current: (gd.querySelector('.slider-group > text.slider-label') || {}).textContent,  // the current value
})"""


def _state(page, k: int) -> dict:
    return page.locator(".js-plotly-plot").nth(k).evaluate(STATE)


def _drag_slider(page, k: int, fraction: float) -> None:
    """Drag the grip of figure ``k``'s slider to ``fraction`` of its rail, as a reader does with the mouse."""
    gd = page.locator(".js-plotly-plot").nth(k)
    gd.scroll_into_view_if_needed()
    rail = gd.locator(".slider-rail-rect").bounding_box()
    grip = gd.locator(".slider-grip-rect").bounding_box()
    page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
    page.mouse.down()
    page.mouse.move(rail["x"] + fraction * rail["width"], grip["y"] + grip["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_timeout(300)


def _shot(page, name: str) -> None:
    folder = os.environ.get("LSNC_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_page_renders_offline_without_errors(page):
    assert not _errors(page), _errors(page)
    assert page.evaluate("typeof window.Plotly") == "object"
    # plotly.js came from the page's own _static, once
    srcs = page.evaluate("[...document.scripts].map(s => s.src).filter(s => s.includes('plotly'))")
    assert len(srcs) == 1 and srcs[0].startswith("file://") and "/_static/plotly.min.js" in srcs[0], srcs


def test_closed_form_slider_changes_data_and_numbers(page):
    before = _state(page, 0)
    assert before["current"].strip() == "δ = 0.05" and "‖w_k‖" in before["printed"]
    _shot(page, "explorer-delta-0.05")
    _drag_slider(page, 0, 0.7)
    after = _state(page, 0)
    _shot(page, "explorer-delta-0.7")
    assert after["current"] != before["current"]
    delta = float(after["current"].split("=")[1])
    assert 0.6 < delta < 0.8
    markers = [t for t in after["data"] if t["name"] == "chosen δ"]
    assert markers and markers[0]["x"] == [delta, delta]  # the marker moved to the chosen grid point
    assert after["data"] != before["data"]
    assert after["printed"] != before["printed"] and f"δ = {delta:g}:" in after["printed"]
    assert not _errors(page), _errors(page)


def test_dynamics_slider_changes_ls_curve_and_numbers(page):
    before = _state(page, 1)
    ls_before = [t for t in before["data"] if str(t["name"]).startswith("LS")]
    _drag_slider(page, 1, 0.9)
    after = _state(page, 1)
    ls_after = [t for t in after["data"] if str(t["name"]).startswith("LS")]
    assert ls_before and ls_after and ls_after[0]["y"] != ls_before[0]["y"]  # GD curve of the chosen δ
    assert ls_after[0]["name"] != ls_before[0]["name"]
    assert after["printed"] != before["printed"] and "κ(full Hessian" in after["printed"]
    assert not _errors(page), _errors(page)


def test_setting_menu_shows_the_invalid_combination_as_a_message(page):
    gd = page.locator(".js-plotly-plot").nth(0)
    gd.scroll_into_view_if_needed()
    gd.locator(".updatemenu-header").click()
    gd.locator(".updatemenu-dropdown-button", has_text="K=100, n=100, λ_W=λ_H=0.005").click()
    page.wait_for_timeout(300)
    state = _state(page, 0)
    assert "no nonzero minimizer" in state["printed"] and "for no δ (s ≥ 1)" in state["printed"]
    assert not _errors(page), _errors(page)
