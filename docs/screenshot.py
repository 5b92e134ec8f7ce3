"""Screenshot of a report page in headless Chromium (Debian's chromium and chromium-driver, Selenium):
``python docs/screenshot.py PAGE.html OUT.png [--width 1100] [--height 1800]``."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("page")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=1800, help="height of the shot: the top of the page")
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(Path(args.page).resolve().as_uri())
        driver.set_window_size(args.width, args.height)
        chrome = args.height - driver.execute_script("return window.innerHeight")
        driver.set_window_size(args.width, args.height + chrome)  # the page area is exactly the shot
        driver.save_screenshot(args.out)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
