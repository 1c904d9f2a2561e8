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
and the worst of each, in milliseconds. Then the time of one redraw of the sky plot (as
on each step of a zoom or pan) with ``--points`` random positions (default 10⁵) over the
first catalog's density map.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from typing import Any

from playwright.sync_api import sync_playwright

TIMING = """() => {
    const n = performance.getEntriesByType("navigation")[0];
    return [n.responseEnd, n.domContentLoadedEventEnd, n.loadEventEnd];
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--points", type=int, default=100_000)
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
        redraw_ms = sky_redraw(browser, url, args.points)
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
    print(f"sky plot of {args.points:,} points over the density map: {redraw_ms:.0f} ms a redraw")


def sky_redraw(browser: Any, url: str, points: int) -> float:
    """The median time of a redraw of the sky plot (as on each zoom or pan step) with
    ``points`` random positions over the first catalog's density cells."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/")
    page.wait_for_selector("body[data-ready=true]")
    return float(
        page.evaluate(
            """async (n) => {
                const sky = portal.sky;
                const catalog = portal.state.catalogs[0].name;
                sky.setCells(await (await fetch(`api/v1/catalogs/${catalog}/chunks`)).json());
                const ra = Float64Array.from({length: n}, () => 360 * Math.random());
                const dec = Float64Array.from(
                    {length: n}, () => Math.asin(2 * Math.random() - 1) * 180 / Math.PI);
                sky.setPoints(ra, dec, {columns: [], rows: []});
                const times = [];
                for (let i = 0; i < 15; i++) {
                    const t = performance.now();
                    sky.zoom = 1 + i / 10;
                    sky.draw();
                    sky.ctx.getImageData(0, 0, 1, 1);  // wait for the drawing to finish
                    times.push(performance.now() - t);
                }
                times.sort((a, b) => a - b);
                return times[7];
            }""",
            points,
        )
    )


if __name__ == "__main__":
    main()
