"""Open a self-contained HTML page in a real headless browser (Debian's chromium + chromedriver via Selenium).

Used by the tests, the same way as the helpers in conftest.py (``tests/`` is on ``sys.path``; conftest.py
imports the ``browser`` fixture from here, so any test can take it as an argument)::

    from browser import open_page, fits_phone_width, save_screenshot

    def test_report_page(browser, tmp_path):
        page = open_page(browser, tmp_path / "report.html")
        assert page.console_errors == [] and page.requests == [] and page.broken_images == []
        assert page.tables[0][0] == ["method", "top1_loc"]
        assert fits_phone_width(browser)
        save_screenshot(browser, tmp_path / "report.png")

The ``browser`` fixture (one Chromium for the whole session) skips the tests that use it when selenium is
not installed, no chromium/chromedriver binary is found, or the driver fails to start; everything else is
a real failure. ``.ci/run`` installs the Debian packages (chromium, chromium-driver) where it can.
The binaries are looked up on ``PATH`` (``chromium``/``chromium-browser``/``google-chrome``; ``chromedriver``);
``XAIBENCH_CHROMIUM`` and ``XAIBENCH_CHROMEDRIVER`` name them explicitly.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # selenium is a test extra, and may be missing: import it only where a browser starts
    from selenium.webdriver.remote.webdriver import WebDriver

WINDOW = (1280, 900)
PHONE = (390, 844)
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")
TIMEOUT_S = 15.0

_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# URLs a page can "load" without any network: inline data, in-memory blobs, about:blank.
_NOT_NETWORK = ("data:", "blob:", "about:")


class BrowserUnavailable(RuntimeError):
    """No headless browser can be started here (the reason is the message): the browser tests skip."""


def find_binaries() -> tuple[str, str]:
    """(chromium, chromedriver) executables, from $XAIBENCH_CHROMIUM / $XAIBENCH_CHROMEDRIVER or PATH."""
    chromium = os.environ.get("XAIBENCH_CHROMIUM") or next(filter(None, map(shutil.which, _CHROMIUM_NAMES)), None)
    driver = os.environ.get("XAIBENCH_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium:
        raise BrowserUnavailable(f"no chromium binary found on PATH (looked for {', '.join(_CHROMIUM_NAMES)})")
    if not driver:
        raise BrowserUnavailable("no chromedriver binary found on PATH (Debian: apt-get install chromium-driver)")
    return chromium, driver


def start_chromium(window: tuple[int, int] = WINDOW) -> WebDriver:
    """A headless Chromium driven by Debian's chromedriver, with the browser console and network logs on.

    Raises BrowserUnavailable (never anything else) when selenium, the binaries or the driver are missing."""
    chromium, driver = find_binaries()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise BrowserUnavailable(f"selenium is not importable ({e}); pip install -e '.[test]'") from e
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (*CHROMIUM_ARGS, f"--window-size={window[0]},{window[1]}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        # An explicit executable_path: Selenium's own driver manager would try (and fail) to download one.
        browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    except Exception as e:  # WebDriverException, OSError, ...: whatever keeps the driver from starting
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BrowserUnavailable(f"chromedriver {driver} with {chromium} failed to start: {first}") from e
    browser.set_page_load_timeout(TIMEOUT_S)
    browser.set_script_timeout(TIMEOUT_S)
    return browser


@pytest.fixture(scope="session")
def browser() -> WebDriver:
    """One headless Chromium for the session (window 1280 x 900); skips when none can be started."""
    try:
        driver = start_chromium()
    except BrowserUnavailable as e:
        pytest.skip(f"browser tests skipped: {e}")
    yield driver
    driver.quit()


@dataclass
class ImageInfo:
    src_kind: str  # the URL scheme of the image's source: "data", "file", "http", "https", ... ("" when none)
    mime: str | None  # for a data: URL, its media type ("image/png"), else None
    natural_width: int  # 0 when the image was not decoded (broken data, failed request)
    natural_height: int
    src: str  # the source, cut to 80 characters
    alt: str


@dataclass
class PageReport:
    url: str
    title: str
    console_errors: list[str]  # the SEVERE entries of the browser log (console.error, failed loads, JS errors)
    images: list[ImageInfo]
    requests: list[str]  # every URL requested except the page itself and data:/blob:/about: URLs
    tables: list[list[list[str]]]  # each <table>: its rows (table.rows), each a list of its cells' innerText
    console: list[dict[str, Any]] = field(default_factory=list)  # the whole browser log, all levels

    @property
    def broken_images(self) -> list[ImageInfo]:
        return [i for i in self.images if i.natural_width == 0 or i.natural_height == 0]


_IMAGES_JS = """
return Array.from(document.images).map(i => ({
    src: i.currentSrc || i.src || "", alt: i.alt || "", w: i.naturalWidth, h: i.naturalHeight}));
"""
_TABLES_JS = """
return Array.from(document.querySelectorAll("table")).map(
    t => Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.innerText.trim())));
"""


def _wait(browser: WebDriver, script: str, what: str, timeout: float = TIMEOUT_S) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(browser, timeout, poll_frequency=0.05).until(lambda b: b.execute_script(script))
    except TimeoutException:
        raise AssertionError(f"page not ready after {timeout:g} s: {what}") from None


def _image_info(raw: dict[str, Any]) -> ImageInfo:
    src = raw["src"]
    scheme = src.split(":", 1)[0].lower() if ":" in src else ""
    mime = (src[5:].split(";", 1)[0].split(",", 1)[0] or None) if scheme == "data" else None
    return ImageInfo(scheme, mime, int(raw["w"]), int(raw["h"]), src[:80], raw["alt"])


def _requests(performance_log: list[dict[str, Any]], own_url: str) -> list[str]:
    urls = []
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.requestWillBeSent":
            continue
        url = message["params"]["request"]["url"]
        if url.split("#", 1)[0] == own_url or url.startswith(_NOT_NETWORK):
            continue
        urls.append(url)
    return urls


def open_page(browser: WebDriver, path: str | os.PathLike, window: tuple[int, int] = WINDOW) -> PageReport:
    """Load the local HTML file ``path`` (file:// URL) at ``window`` size, wait until the document and all of
    its <img> are complete, and report what a reader's browser saw (console errors, images, requests, tables)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(path)
    url = path.as_uri()
    browser.set_window_size(*window)
    browser.get_log("browser")  # drop what earlier pages left in the (session-wide) logs
    browser.get_log("performance")
    browser.get(url)
    _wait(browser, "return document.readyState === 'complete'", "document.readyState != 'complete'")
    _wait(browser, "return Array.from(document.images).every(i => i.complete)", "some <img> still loading")
    console = browser.get_log("browser")
    return PageReport(
        url=url,
        title=browser.title,
        console_errors=[e["message"] for e in console if e.get("level") == "SEVERE"],
        images=[_image_info(raw) for raw in browser.execute_script(_IMAGES_JS)],
        requests=_requests(browser.get_log("performance"), url),
        tables=browser.execute_script(_TABLES_JS),
        console=console,
    )


def fits_phone_width(browser: WebDriver, path: str | os.PathLike | None = None, size: tuple[int, int] = PHONE) -> bool:
    """At a phone's window size (390 x 844), does the page fit without horizontal page scroll?

    (document.documentElement.scrollWidth <= window.innerWidth; a wide table scrolling inside its own
    ``overflow-x: auto`` container is fine.) Checks the current page, or loads ``path`` first. The window
    stays at the phone size; the next open_page() sets it back."""
    if path is not None:
        open_page(browser, path, window=size)
    else:
        browser.set_window_size(*size)
    _wait(browser, f"return window.innerWidth === {size[0]}", f"window.innerWidth != {size[0]} after resizing")
    return bool(browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"))


def save_screenshot(browser: WebDriver, path: str | os.PathLike, width: int = WINDOW[0], max_height: int = 6000) -> Path:
    """A PNG of the current page, ``width`` wide and as tall as the page (at most ``max_height`` px)."""
    browser.set_window_size(width, WINDOW[1])
    page_h, inner_h, outer_h = browser.execute_script(
        "return [Math.max(document.body ? document.body.scrollHeight : 0, document.documentElement.scrollHeight),"
        " window.innerHeight, window.outerHeight]"
    )
    # Headless Chromium still keeps room for (invisible) browser chrome: the viewport is shorter than the window.
    viewport_h = max(min(int(page_h), max_height), 1)
    browser.set_window_size(width, viewport_h + max(int(outer_h) - int(inner_h), 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not browser.save_screenshot(str(path)):
        raise AssertionError(f"the browser could not save a screenshot to {path}")
    return path


_OVERFLOWING_JS = """
const width = document.documentElement.clientWidth, found = [];
for (const e of document.querySelectorAll('body *')) {
  const r = e.getBoundingClientRect();
  if ((r.width === 0 && r.height === 0) || (r.right <= width + 0.5 && r.left >= -0.5)) continue;
  let p = e.parentElement, clipped = false;
  while (p && p !== document.body) {
    if (getComputedStyle(p).overflowX !== 'visible') { clipped = true; break; }
    p = p.parentElement;
  }
  if (!clipped) found.push(e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + ' ' +
                           Math.round(r.left) + '..' + Math.round(r.right) + ': ' + (e.textContent || '').slice(0, 40));
}
return found;
"""


def overflowing(browser: WebDriver) -> list[str]:
    """The elements of the current page that reach past the viewport's left or right edge, other than
    those inside a box that scrolls or clips them (a wide table in its ``overflow-x: auto`` box): each as
    ``tag.class left..right: text``. Empty when the page fits its window."""
    return list(browser.execute_script(_OVERFLOWING_JS))
