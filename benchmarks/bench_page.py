"""The report page of a large run: its size, its parts, and how long Chromium takes to open it.

``xaibench report`` of a run folder (timed), then the page opened in headless Chromium (Debian's
chromium and chromium-driver, Selenium; the tests' ``browser.py``) ``--loads`` times, each in a fresh
tab, reading the Navigation Timing of each load: until the load event (the page parsed, its images
decoded and its scripts run, the image browser's table drawn included), and until the first paint.
Goal (the reports-for-papers issue): the page of a 50,000-image built-in run opens in under 5 s.

    xaibench run --methods cam,gradcam,gradcampp,layercam,saliency,random --n 50000 --no-report --out /tmp/run50k
    python3 benchmarks/bench_page.py /tmp/run50k
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

_TIMING_JS = """
const t = performance.getEntriesByType('navigation')[0];
const paint = performance.getEntriesByName('first-contentful-paint')[0];
return {load: t.loadEventEnd, dom: t.domContentLoadedEventEnd, paint: paint ? paint.startTime : null,
        rows: document.querySelectorAll('section.browser tbody tr').length};
"""


#: Seconds the first image browser takes to sort every image again and draw its table.
_SORT_JS = """
const select = document.querySelector('section.browser [data-role=sort]');
const start = performance.now();
select.value = arguments[0];
select.dispatchEvent(new Event('change'));
return Math.round(performance.now() - start) / 1000;
"""


def parts(page: str) -> dict[str, float]:
    """MB of the page's parts: the browsers' data, the figures (data: URIs in <img>), the rest."""
    blocks = re.findall(r"<script type=application/json data-role=data>.*?</script>", page, re.DOTALL)
    data = sum(len(b) for b in blocks)
    pictures = sum(len(m) for b in blocks for m in re.findall(r'"data:image/jpeg;base64,[^"]*"', b))
    figures = sum(len(m) for m in re.findall(r'<img src="data:[^"]*"', page))
    mb = 2**20
    return {"page_mb": len(page.encode()) / mb, "browser_data_mb": (data - pictures) / mb,
            "browser_pictures_mb": pictures / mb, "figures_mb": figures / mb,
            "rest_mb": (len(page) - data - figures) / mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder (or, with --page, a report folder)")
    parser.add_argument("--page", action="store_true", help="open the report folder's page without reporting again")
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--out", type=Path, help="the report folder (default: a temporary one)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from browser import start_chromium
    from xaibench import cli

    with tempfile.TemporaryDirectory() as tmp:
        out = args.run if args.page else args.out or Path(tmp) / "report"
        start = time.perf_counter()
        if not args.page:
            assert cli.main(["report", str(args.run), "--out", str(out)]) == 0
        report_s = time.perf_counter() - start
        page = (out / "report.html").read_text()
        result = {"report_s": round(report_s, 1), **{k: round(v, 2) for k, v in parts(page).items()}}
        browser = start_chromium((1400, 900))
        browser.set_page_load_timeout(120)
        try:
            loads = []
            for _ in range(args.loads):
                browser.get("about:blank")
                browser.get((out / "report.html").resolve().as_uri())
                loads.append(browser.execute_script(_TIMING_JS))
            sorts = {choice: browser.execute_script(_SORT_JS, choice) for choice in ("spread", "best:0", "worst:1", "index")}
            errors = [e["message"] for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        finally:
            browser.quit()
    result.update(load_s=[round(t["load"] / 1000, 2) for t in loads],
                  load_s_median=round(statistics.median(t["load"] / 1000 for t in loads), 2),
                  first_paint_s=[round(t["paint"] / 1000, 2) if t["paint"] else None for t in loads],
                  browser_rows=loads[-1]["rows"], sort_s=sorts, console_errors=errors)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
