"""The portal's first page load on loopback, in headless Chromium (numbers for
docs/benchmarks.md; the target is < 1 s).

    python bench/portal.py URL [--runs 7]

``URL`` is a running service (``qserv-py up`` or ``qserv-py serve``). Each run opens the
page in a fresh browser context (empty cache, new connections) and reads the browser's
Navigation Timing: the HTML received, ``DOMContentLoaded`` (the page and its scripts, with
the vendored CodeMirror, parsed and run: the editor is usable), ``load``, and the time until
the page has its data (examples, output formats, catalogs: ``body[data-ready]``). The
baseline in the same run is the service's own ``/docs`` page (FastAPI's Swagger UI, from
the same service, to ``load``), a page of the kind users already know. Reported: the median
and the worst of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from playwright.sync_api import sync_playwright

TIMING = """() => {
    const n = performance.getEntriesByType("navigation")[0];
    return [n.responseEnd, n.domContentLoadedEventEnd, n.loadEventEnd];
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    url = args.url.rstrip("/")
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs chromium on PATH (Debian: apt-get install chromium)")
    rows: dict[str, list[float]] = {"html": [], "dom": [], "load": [], "data": [], "docs": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for run in range(args.runs + 1):  # the first run warms the service up, not counted
            context = browser.new_context()
            page = context.new_page()
            started = time.perf_counter()
            page.goto(f"{url}/", wait_until="load")
            page.wait_for_selector("body[data-ready=true]")
            data_ms = (time.perf_counter() - started) * 1000
            html_ms, dom_ms, load_ms = page.evaluate(TIMING)
            docs = context.new_page()
            docs.goto(f"{url}/docs", wait_until="load")
            docs.wait_for_selector(".swagger-ui .info")
            docs_ms = docs.evaluate(TIMING)[2]
            context.close()
            if run:
                for key, value in zip(
                    rows, (html_ms, dom_ms, load_ms, data_ms, docs_ms), strict=True
                ):
                    rows[key].append(value)
        browser.close()
    names = {
        "html": "page HTML received",
        "dom": "DOMContentLoaded (editor usable)",
        "load": "load (every asset)",
        "data": "examples, formats, catalogs loaded",
        "docs": "baseline: /docs (Swagger UI) load",
    }
    print(f"{args.runs} cold loads of {url}/ (median / worst, ms)")
    for key, label in names.items():
        print(f"  {label:<38} {statistics.median(rows[key]):7.0f} {max(rows[key]):7.0f}")
    ratio = statistics.median(rows["load"]) / statistics.median(rows["docs"])
    print(f"  portal load / Swagger UI load: {ratio:.2f}x")


if __name__ == "__main__":
    main()
