"""The headless-browser helpers of tests/browser.py, on small pages: each check can pass, and can fail."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import browser as browser_support
from browser import BrowserUnavailable, fits_phone_width, open_page, save_screenshot

TESTS = Path(__file__).resolve().parent


def png_data_uri(size: tuple[int, int] = (12, 7)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_page(tmp_path: Path, body: str, name: str = "page.html") -> Path:
    path = tmp_path / name
    path.write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>{body}</body></html>')
    return path


CLEAN_TABLE = """
<table>
  <thead><tr><th>method</th><th>top1_loc</th></tr></thead>
  <tbody><tr><td>cam</td><td> 0.512 </td></tr><tr><td>grad&#8209;cam</td><td>0.48</td></tr></tbody>
</table>"""


def test_clean_page(browser, tmp_path):
    page = open_page(browser, write_page(tmp_path, f'<img src="{png_data_uri()}" alt="map">{CLEAN_TABLE}'))
    assert page.console_errors == []
    assert page.requests == []
    assert [(i.src_kind, i.mime, i.natural_width, i.natural_height, i.alt) for i in page.images] == [
        ("data", "image/png", 12, 7, "map")
    ]
    assert page.broken_images == []
    assert page.tables == [[["method", "top1_loc"], ["cam", "0.512"], ["grad\u2011cam", "0.48"]]]
    assert page.title == "t" and page.url.startswith("file://")


def test_broken_image(browser, tmp_path):
    page = open_page(browser, write_page(tmp_path, f'<img src="data:image/png;base64,AAAA"><img src="{png_data_uri()}">'))
    assert [(i.src_kind, i.natural_width) for i in page.images] == [("data", 0), ("data", 12)]
    assert [i.src for i in page.broken_images] == ["data:image/png;base64,AAAA"]
    assert page.requests == []


def test_console_error(browser, tmp_path):
    page = open_page(browser, write_page(tmp_path, '<p>x</p><script>console.error("boom")</script>'))
    assert len(page.console_errors) == 1 and '"boom"' in page.console_errors[0]


def test_network_request(browser, tmp_path):
    page = open_page(browser, write_page(tmp_path, '<img src="http://127.0.0.1:9/x.png">'))
    assert page.requests == ["http://127.0.0.1:9/x.png"]
    assert [(i.src_kind, i.natural_width) for i in page.images] == [("http", 0)]
    assert any("127.0.0.1:9/x.png" in e for e in page.console_errors)  # the failed load is logged too


def test_logs_do_not_leak_between_pages(browser, tmp_path):
    open_page(browser, write_page(tmp_path, '<script>console.error("old")</script><img src="http://127.0.0.1:9/y.png">'))
    page = open_page(browser, write_page(tmp_path, "<p>fine</p>", "fine.html"))
    assert page.console_errors == [] and page.requests == [] and page.images == [] and page.tables == []


def test_phone_width_and_screenshot(browser, tmp_path):
    wide_inside = '<div style="overflow-x:auto"><table><tr><td style="min-width:2000px">wide</td></tr></table></div>'
    assert fits_phone_width(browser, write_page(tmp_path, wide_inside, "ok.html"))
    assert not fits_phone_width(browser, write_page(tmp_path, '<div style="width:2000px">too wide</div>', "wide.html"))

    open_page(browser, write_page(tmp_path, '<div style="height:2500px">tall</div>', "tall.html"))
    shot = save_screenshot(browser, tmp_path / "shots" / "tall.png", width=800)
    with Image.open(shot) as im:
        assert im.width == 800 and 2500 <= im.height <= 2600
    open_page(browser, write_page(tmp_path, '<div style="height:9000px">very tall</div>', "huge.html"))
    with Image.open(save_screenshot(browser, tmp_path / "huge.png")) as im:
        assert im.width == 1280 and im.height == 6000


# Without selenium or the binaries, the browser tests skip (they never error).


@pytest.fixture
def no_overrides(monkeypatch):
    monkeypatch.delenv("XAIBENCH_CHROMIUM", raising=False)
    monkeypatch.delenv("XAIBENCH_CHROMEDRIVER", raising=False)
    return monkeypatch


def test_unavailable_without_chromedriver(no_overrides, tmp_path):
    (tmp_path / "chromium").symlink_to("/bin/true")
    no_overrides.setenv("PATH", str(tmp_path))
    with pytest.raises(BrowserUnavailable, match="no chromedriver"):
        browser_support.start_chromium()


def test_unavailable_without_selenium(no_overrides):
    no_overrides.setenv("XAIBENCH_CHROMIUM", "/bin/true")
    no_overrides.setenv("XAIBENCH_CHROMEDRIVER", "/bin/true")
    no_overrides.setitem(sys.modules, "selenium", None)
    with pytest.raises(BrowserUnavailable, match="selenium is not importable"):
        browser_support.start_chromium()


def test_unavailable_when_the_driver_fails(no_overrides):
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed")
    no_overrides.setenv("XAIBENCH_CHROMIUM", "/bin/true")
    no_overrides.setenv("XAIBENCH_CHROMEDRIVER", "/bin/false")
    with pytest.raises(BrowserUnavailable, match="failed to start"):
        browser_support.start_chromium()


def test_fixture_skips_without_binaries(tmp_path):
    (tmp_path / "conftest.py").write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom browser import browser\n")
    (tmp_path / "test_uses_browser.py").write_text("def test_page(browser):\n    raise AssertionError('ran')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XAIBENCH_CHROM", "PYTEST_"))}
    env["PATH"] = str(tmp_path)  # neither chromium nor chromedriver
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout and "browser tests skipped: no chromium" in run.stdout, run.stdout
