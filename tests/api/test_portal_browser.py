"""The portal in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright against a real served cluster (catalog qt). Nothing is mocked: the page calls
the service's TAP and REST APIs as it does for a person.

Without chromium or Playwright these tests skip and say why; with
``QSERV_PY_REQUIRE_BROWSER=1`` (CI, which installs chromium) that is a failure instead.
With ``QSERV_PY_PORTAL_SCREENSHOTS=<dir>`` they save screenshots of the main views there
(the ones in docs/portal.md).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io.votable import parse_single_table
from astropy.table import Table

from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.users import add_user, remove_user
from qserv_py.config import Settings
from tests.api.conftest import Served
from tests.api.test_rest import SLOW

POSITIONS = "SELECT objectId, coord_ra, coord_dec, g_psfFlux, r_psfFlux FROM Object"


def _unavailable(reason: str) -> None:
    if os.environ.get("QSERV_PY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests are required (QSERV_PY_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[test]')")
    path = os.environ.get("QSERV_PY_CHROMIUM") or shutil.which("chromium")
    if path is None:
        _unavailable("no chromium on PATH (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox does not start
        launched = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield launched
        launched.close()


@contextmanager
def portal(browser: Any, url: str) -> Iterator[Any]:
    """The portal of the service at ``url``, loaded and ready, in a fresh browser context
    that refuses (and the test then fails on) any request to another host."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(90_000)
    elsewhere: list[str] = []

    def only_the_service(route: Any) -> None:
        if route.request.url.startswith((url, "data:", "blob:")):
            route.continue_()
        else:  # no CDN, no fonts: a request elsewhere is recorded and refused
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_service)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(f"{url}/")
    opened.wait_for_selector("body[data-ready=true]")
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"
    assert not elsewhere, f"the page asked for something elsewhere: {elsewhere}"


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Any]:
    """The portal of the session's served cluster."""
    with portal(browser, served.url) as opened:
        yield opened


def shot(page: Any, name: str) -> None:
    """A screenshot for the docs, when asked for."""
    folder = os.environ.get("QSERV_PY_PORTAL_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"portal-{name}.png"))


def write(page: Any, text: str) -> None:
    """Replace the editor's text, as typed."""
    page.click(".cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text)
    page.keyboard.press("Escape")  # close a completion list


def run(page: Any) -> None:
    """Run the query in the editor (Ctrl-Enter) and wait until it has finished."""
    page.click(".cm-content")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("!document.querySelector('#run').disabled")


def shown_rows(page: Any) -> list[list[str]]:
    return page.eval_on_selector_all(
        "table.results tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )


def editor_text(page: Any) -> str:
    return str(page.evaluate("portal.editor.text"))


def canvas_point(page: Any, ra: float, dec: float) -> tuple[float, float]:
    """The page coordinates of a sky position on the sky plot."""
    x, y = page.evaluate(
        """([ra, dec]) => {
            const [x, y] = portal.sky.toScreen(ra, dec);
            const box = portal.sky.canvas.getBoundingClientRect();
            const scale = box.width / portal.sky.canvas.width;
            return [box.left + x * scale, box.top + y * scale];
        }""",
        [ra, dec],
    )
    return float(x), float(y)


def separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r = math.radians
    a = (
        math.sin(r(dec2 - dec1) / 2) ** 2
        + math.cos(r(dec1)) * math.cos(r(dec2)) * math.sin(r(ra2 - ra1) / 2) ** 2
    )
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(a))))


def test_run_a_query_see_rows_headers_and_sky_points(page: Any, client: Client) -> None:
    text = f"{POSITIONS}\nWHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(40, 5, 20)) = 1"
    expected = client.query(text + " ORDER BY objectId")
    ids = expected.column("objectId").to_pylist()
    write(page, text + "\nORDER BY objectId")
    run(page)
    assert page.inner_text("#rowcount").startswith(f"{len(ids)} rows")
    rows = shown_rows(page)
    assert [int(r[0]) for r in rows] == ids[:100]
    assert page.is_hidden("#overflow")
    header = page.inner_text("th[data-column=coord_ra]")
    assert "[deg]" in header and "pos.eq.ra;meta.main" in header
    page.click("th[data-column=objectId]")
    page.click("th[data-column=objectId]")  # descending
    assert int(shown_rows(page)[0][0]) == max(ids)
    shot(page, "table")

    page.click(".subtabs button[data-pane=sky]")
    assert page.evaluate("portal.sky.points.ra.length") == len(ids)
    assert page.evaluate("portal.sky.cells.length") > 0  # the catalog's density behind
    ra, dec = expected.column("coord_ra")[0].as_py(), expected.column("coord_dec")[0].as_py()
    pixel = page.evaluate(
        """([ra, dec]) => {
            const [x, y] = portal.sky.toScreen(ra, dec);
            return [...portal.sky.ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data];
        }""",
        [ra, dec],
    )
    assert pixel[0] > 200 and pixel[1] < 130, pixel  # a result point is drawn there
    page.mouse.move(*canvas_point(page, ra, dec))
    tip = page.inner_text("#sky-tip")
    assert int(re.search(r"objectId = (\d+)", tip).group(1)) in ids  # type: ignore[union-attr]
    shot(page, "sky")
    # the wheel zooms at the cursor: the point under it stays there; a drag pans
    at = canvas_point(page, ra, dec)
    page.mouse.wheel(0, -200)
    page.wait_for_function("portal.sky.zoom > 1")
    assert max(abs(a - b) for a, b in zip(canvas_point(page, ra, dec), at, strict=True)) < 2
    page.mouse.down()
    page.mouse.move(at[0] + 40, at[1] + 20, steps=4)
    page.mouse.up()
    moved = canvas_point(page, ra, dec)
    assert abs(moved[0] - at[0] - 40) < 3 and abs(moved[1] - at[1] - 20) < 3, (at, moved)
    page.click("#sky-reset")

    page.click(".subtabs button[data-pane=plot]")
    page.check("input[name=plotkind][value=scatter]")
    page.select_option("#plot-x", label="g_psfFlux")
    page.select_option("#plot-y", label="r_psfFlux")
    drawn = page.evaluate("portal.state.plotted")
    valid = [
        g is not None and r is not None and math.isfinite(g) and math.isfinite(r)
        for g, r in zip(
            expected["g_psfFlux"].to_pylist(), expected["r_psfFlux"].to_pylist(), strict=True
        )
    ]
    assert drawn == sum(valid)
    shot(page, "plot")


def test_download_the_result_in_two_formats(page: Any, client: Client) -> None:
    text = "SELECT TOP 25 objectId, coord_ra FROM Object ORDER BY objectId"
    ids = client.query(text).column("objectId").to_pylist()
    write(page, text)
    run(page)
    formats = page.eval_on_selector_all("#downloads a", "links => links.map(a => a.dataset.format)")
    assert {"csv", "votable", "parquet", "json"} <= set(formats)
    with page.expect_download() as csv_download:
        page.click("#downloads a[data-format=csv]")
    rows = list(csv.DictReader(io.StringIO(Path(csv_download.value.path()).read_text())))
    assert [int(r["objectId"]) for r in rows] == ids
    with page.expect_download() as votable_download:
        page.click("#downloads a[data-format=votable]")
    table = parse_single_table(votable_download.value.path()).to_table()
    assert table["objectId"].tolist() == ids
    # cut at MAXREC: the rows up to it, and the overflow said
    page.fill("#maxrec", "10")
    run(page)
    assert page.inner_text("#rowcount").startswith("10 rows")
    assert page.is_visible("#overflow")


def test_open_an_example_and_run_it(page: Any, served: Served, client: Client) -> None:
    document = httpx.get(f"{served.url}/tap/examples", timeout=120).text
    examples = re.findall(
        r'id="([^"]+)"[^>]*>\s*<h2 property="name">.*?<pre property="query">(.*?)</pre>',
        document,
        re.S,
    )
    example_id, query = next(
        (i, html.unescape(q).strip()) for i, q in examples if "TAP_UPLOAD" not in q
    )
    page.select_option("#examples", value=example_id)
    assert editor_text(page) == query
    run(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    expected = client.query(query)
    assert page.inner_text("#rowcount").startswith(f"{expected.num_rows} row")
    # the schema browser lists the example's tables with their columns, and each catalog's
    # sky coverage: its chunks' cells from the chunk statistics route
    page.click("#tabs button[data-view=schema]")
    page.click("#schema summary >> text=qt.Object")
    assert page.locator("#schema details[open] td", has_text="coord_ra").count() >= 1
    chunks = httpx.get(f"{served.url}/api/v1/catalogs/qt/chunks", timeout=120).json()["chunks"]
    caption = page.locator("#schema figure[data-catalog=qt] figcaption")
    caption.get_by_text(re.compile(r"^sky coverage: \d+ chunks")).wait_for()
    assert caption.inner_text().startswith(f"sky coverage: {len(chunks)} chunks")
    rows = sum(c["rows"] for c in chunks)
    assert f"{rows:,} rows of qt.Object" in caption.inner_text()
    assert page.evaluate("portal.coverage.get('qt').plot.cells.length") == len(chunks)
    shot(page, "schema")


def test_complete_a_column_from_tap_schema(page: Any) -> None:
    page.wait_for_selector("body[data-schema=ready]", state="attached")
    page.click(".cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.type("SELECT qt.Object.coord_r")
    page.wait_for_selector(".cm-tooltip-autocomplete")
    offered = page.eval_on_selector_all(
        ".cm-tooltip-autocomplete li",
        "items => items.map(i => [i.querySelector('.cm-completionLabel').textContent,"
        " (i.querySelector('.cm-completionDetail') || {}).textContent || ''])",
    )
    labels = dict(offered)
    assert "coord_ra" in labels, offered
    assert labels["coord_ra"].startswith("[deg]")  # the column's unit, from TAP_SCHEMA
    page.keyboard.press("Enter")  # take the first offer
    assert editor_text(page).strip() == "SELECT qt.Object.coord_ra"


def test_draw_a_circle_and_run_the_query_it_wrote(page: Any, client: Client) -> None:
    objects = client.query(POSITIONS)
    write(page, POSITIONS)
    run(page)
    page.click(".subtabs button[data-pane=sky]")
    page.check("input[name=skymode][value=circle]")
    ra, dec = objects.column("coord_ra")[0].as_py(), objects.column("coord_dec")[0].as_py()
    edge_dec = dec + 8 if dec < 70 else dec - 8
    page.mouse.move(*canvas_point(page, ra, dec))
    page.mouse.down()
    page.mouse.move(*canvas_point(page, ra, edge_dec), steps=5)
    page.mouse.up()
    page.wait_for_function("portal.editor.text.includes('CONTAINS')")  # written asynchronously
    text = editor_text(page)
    found = re.search(
        r"CONTAINS\(POINT\('ICRS', coord_ra, coord_dec\), "
        r"CIRCLE\('ICRS', ([-\d.]+), ([-\d.]+), ([\d.]+)\)\) = 1",
        text,
    )
    assert found, text
    ra0, dec0, radius = (float(v) for v in found.groups())
    assert separation(ra0, dec0, ra, dec) < 1.0 and abs(radius - 8) < 1.0  # a pixel or so
    shot(page, "circle")
    run(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    expected = client.query(text)
    got = page.evaluate("portal.state.result.rows.map(r => [r[0], r[1], r[2]])")
    assert sorted(r[0] for r in got) == sorted(expected.column("objectId").to_pylist())
    assert got and all(separation(ra0, dec0, r[1], r[2]) <= radius + 1e-9 for r in got)

    # a box drawn from corner to corner becomes a POLYGON
    write(page, POSITIONS)
    page.check("input[name=skymode][value=box]")
    top = dec + 6 if dec < 70 else dec - 6
    page.mouse.move(*canvas_point(page, ra - 6, dec))
    page.mouse.down()
    page.mouse.move(*canvas_point(page, ra + 6, top), steps=5)
    page.mouse.up()
    page.wait_for_function("portal.editor.text.includes('POLYGON')")
    text = editor_text(page)
    assert re.search(
        r"CONTAINS\(POINT\('ICRS', coord_ra, coord_dec\), POLYGON\('ICRS'(, [-\d.]+){8}\)\) = 1",
        text,
    ), text
    run(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    got = page.evaluate("portal.state.result.rows.map(r => r[0])")
    assert got and sorted(got) == sorted(client.query(text).column("objectId").to_pylist())


def test_upload_a_target_list_and_cross_match_it(page: Any, client: Client) -> None:
    objects = client.query(
        "SELECT TOP 5 objectId, coord_ra, coord_dec FROM Object ORDER BY objectId"
    ).to_pylist()
    lines = ["name,ra_deg,dec_deg"]
    for i, o in enumerate(objects):  # 0.3 arcsec north of each object
        lines.append(f"t{i},{o['coord_ra']!r},{o['coord_dec'] + 0.3 / 3600!r}")
    page.click("#tabs button[data-view=xmatch]")

    def choose(name: str, mime: str, data: bytes, ra: str, dec: str) -> None:
        """Choose a target list; the page reads its header (asynchronously) and picks
        the position columns."""
        page.set_input_files("#xm-file", files=[{"name": name, "mimeType": mime, "buffer": data}])
        page.wait_for_function(f"document.querySelector('#xm-dec').value === '{dec}'")
        assert page.input_value("#xm-ra") == ra

    # a Parquet list: its columns read from the file's footer
    parquet = io.BytesIO()
    columns = {"name": ["a"], "RAJ2000": [1.0], "DEJ2000": [2.0], "kind": [{"x": 1}]}
    pq.write_table(pa.table(columns), parquet)
    choose("t.parquet", "application/octet-stream", parquet.getvalue(), "RAJ2000", "DEJ2000")
    offered = page.eval_on_selector_all("#xm-columns option", "os => os.map(o => o.value)")
    assert offered == list(columns)
    choose("targets.csv", "text/csv", "\n".join(lines).encode(), "ra_deg", "dec_deg")
    # the same list as a VOTable (as TOPCAT writes one): the list that is cross-matched
    votable = io.BytesIO()
    rows = [line.split(",") for line in lines[1:]]
    Table(
        {
            "name": [r[0] for r in rows],
            "RA_ICRS": [float(r[1]) for r in rows],
            "DE_ICRS": [float(r[2]) for r in rows],
        }
    ).write(votable, format="votable")
    choose("targets.vot", "application/x-votable+xml", votable.getvalue(), "RA_ICRS", "DE_ICRS")
    page.select_option("#xm-table", "qt.Object")
    assert "60″" in page.inner_text("#xm-limit")
    page.fill("#xm-radius", "1")
    page.select_option("#xm-best", "true")
    page.click("#xmatch-form button[type=submit]")
    page.wait_for_function(  # matched, or refused (then the message is the failure)
        "/^\\d+ match/.test(document.querySelector('#xm-status').textContent)"
        " || !document.querySelector('#xm-error').hidden"
    )
    assert page.is_hidden("#xm-error"), page.inner_text("#xm-error")
    result = page.evaluate("portal.state.result")
    names = [c["name"] for c in result["columns"]]
    pairs = [dict(zip(names, row, strict=True)) for row in result["rows"]]
    assert sorted(p["objectId"] for p in pairs) == [o["objectId"] for o in objects]
    assert all(abs(p["distance"] - 0.3) < 0.01 for p in pairs)
    assert page.is_visible("#xm-separations")
    shot(page, "xmatch")


def test_start_a_long_async_query_and_kill_it(page: Any, served: Served) -> None:
    page.check("input[name=mode][value=async]")
    write(page, SLOW)
    page.click("#run")
    page.wait_for_function("/job \\S+: /.test(document.querySelector('#status').textContent)")
    job = re.search(r"job (\S+):", page.inner_text("#status")).group(1)  # type: ignore[union-attr]
    page.click("#tabs button[data-view=jobs]")
    running = page.locator(  # the list shows the first 120 characters of a query
        "#queries tr[data-status=running]", has_text="FROM ForcedSource f1 JOIN ForcedSource f2"
    )
    running.wait_for()
    query_id = running.get_attribute("data-query")
    shot(page, "jobs")
    running.locator("button", has_text="Kill").click()
    page.wait_for_function("!document.querySelector('#run').disabled")
    assert page.text_content("#status") == f"job {job}: ABORTED"  # a killed job is aborted
    record = httpx.get(f"{served.url}/api/v1/queries/{query_id}", timeout=120).json()
    assert record["status"] == "killed"
    phase = httpx.get(f"{served.url}/tap/async/{job}/phase", timeout=120).text
    assert phase == "ABORTED"


def test_an_error_is_shown_at_its_line_and_column(page: Any) -> None:
    write(page, "SELECT objectId\nFROM Object\nWHERE coord_ra > 3 AND AND 1=1")
    run(page)
    message = page.inner_text("#error")
    assert message.startswith("Line 3, column 24:"), message
    mark = page.locator(".cm-lintRange-error")
    assert mark.inner_text() == "AND"
    line = mark.evaluate(
        "m => [...m.closest('.cm-content').children].indexOf(m.closest('.cm-line')) + 1"
    )
    column = mark.evaluate(
        """m => {
            const line = m.closest('.cm-line');
            const range = document.createRange();
            range.setStart(line, 0);
            range.setEndBefore(m);
            return range.toString().length + 1;
        }"""
    )
    assert (line, column) == (3, 24)
    shot(page, "error")


def test_plot_an_objects_light_curve(page: Any, client: Client) -> None:
    """From a result row's objectId, one click: the catalog's light-curve query (ForcedSource
    with each visit's epoch, found by UCD and foreign key in TAP_SCHEMA) runs through TAP
    and its fluxes are drawn against time, with error bars, a colour per band."""
    found = client.query(
        "SELECT objectId, COUNT(*) AS n FROM ForcedSource GROUP BY objectId"
        " ORDER BY n DESC, objectId"
    ).to_pylist()
    first, second = found[0]["objectId"], found[1]["objectId"]
    write(page, f"SELECT objectId, coord_ra, coord_dec FROM Object WHERE objectId = {first}")
    run(page)
    page.click("table.results tbody tr >> nth=0 >> button.cell-action")
    page.wait_for_function("!document.querySelector('#run').disabled")
    assert page.is_hidden("#error"), page.inner_text("#error")
    text = editor_text(page)
    assert "FROM qt.ForcedSource AS f" in text and f"WHERE f.objectId = {first}" in text, text
    expected = client.query(text).to_pylist()
    assert len(expected) == found[0]["n"]
    result = page.evaluate("portal.state.result")
    names = [c["name"] for c in result["columns"]]
    assert [dict(zip(names, row, strict=True)) for row in result["rows"]] == expected
    # the time column is the visit's epoch (UCD time.epoch), the flux psfFlux ± psfFluxErr
    assert page.inner_text("#plot-about").startswith(
        "psfFlux ± psfFluxErr against expMidptMJD, one colour per band"
    )
    plotted = [r for r in expected if r["psfFlux"] is not None and r["expMidptMJD"] is not None]
    drawn = page.evaluate("portal.state.plotted")
    assert drawn["points"] == len(plotted) > 0
    assert drawn["bars"] == sum(1 for r in plotted if r["psfFluxErr"])
    assert drawn["bands"] == sorted({r["band"] for r in plotted})
    shot(page, "lightcurve")

    # the same from the light-curve field, for an id typed in
    page.fill("#lc-id", str(second))
    page.click("#lc-form button[type=submit]")
    page.wait_for_function("!document.querySelector('#run').disabled")
    assert f"WHERE f.objectId = {second}" in editor_text(page)
    assert page.evaluate("portal.state.result.rows.length") == found[1]["n"]


@pytest.fixture(scope="module")
def served_with_users(
    api_settings: Settings, spec: ClusterSpec, client: Client
) -> Iterator[tuple[Served, dict[str, str]]]:
    """The service with auth = token, and two users' tokens."""
    tokens = {name: add_user(spec, name) for name in ("t16alice", "t16bob")}
    server = Served(api_settings.model_copy(update={"auth": "token"}), spec)
    server.start()
    yield server, tokens
    server.stop()
    for name in tokens:
        remove_user(spec, name)


def test_sign_in_see_only_your_jobs_and_download_a_result(
    browser: Any, served_with_users: tuple[Served, dict[str, str]], client: Client
) -> None:
    served, tokens = served_with_users
    bob = {"Authorization": f"Bearer {tokens['t16bob']}"}
    made = httpx.post(  # bob's job: alice must not see it
        f"{served.url}/tap/async",
        data={"LANG": "ADQL", "QUERY": "SELECT TOP 2 objectId FROM Object", "PHASE": "RUN"},
        headers=bob,
        timeout=120,
    )
    bobs_job = made.headers["location"].rsplit("/", 1)[-1]
    # what the page asks before signing in, and with a token: whose it is
    about = httpx.get(f"{served.url}/api/v1/access", timeout=120).json()
    assert (about["auth"], about["user"], about["admin"]) == ("token", None, False)
    assert httpx.get(f"{served.url}/api/v1/access", headers=bob, timeout=120).json()["user"] == (
        "t16bob"
    )
    text = "SELECT TOP 7 objectId, coord_ra FROM Object ORDER BY objectId"
    ids = client.query(text).column("objectId").to_pylist()
    with portal(browser, served.url) as page:
        page.click("#tabs button[data-view=jobs]")  # not signed in: the lists say why
        page.get_by_text("sign in with your token").first.wait_for()
        page.click("#tabs button[data-view=query]")  # an async query needs a user too
        page.check("input[name=mode][value=async]")
        write(page, text)
        run(page)
        assert "for its users only: sign in" in page.inner_text("#error")
        page.fill("#token", "not-a-token")
        page.click("#signin")
        page.wait_for_function("document.querySelector('#status').textContent.includes('token')")
        assert page.is_visible("#token")  # refused: still signed out
        page.fill("#token", tokens["t16alice"])
        page.click("#signin")
        page.wait_for_function("document.querySelector('#signin').textContent === 'Sign out'")
        assert page.inner_text("#user") == "t16alice"

        run(page)
        assert page.is_hidden("#error"), page.inner_text("#error")
        job = re.search(r"job (\S+): COMPLETED", page.inner_text("#status")).group(1)  # type: ignore[union-attr]
        with page.expect_download() as csv_download:  # the result's downloads carry the token
            page.click("#downloads a[data-format=csv]")
        rows = list(csv.DictReader(io.StringIO(Path(csv_download.value.path()).read_text())))
        assert [int(r["objectId"]) for r in rows] == ids

        page.click("#tabs button[data-view=jobs]")
        mine = page.locator(f"#jobs tr[data-job='{job}']")
        mine.wait_for()
        assert mine.get_attribute("data-phase") == "COMPLETED"
        assert page.locator(f"#jobs tr[data-job='{bobs_job}']").count() == 0
        owners = page.eval_on_selector_all(
            "#jobs tr[data-job]", "rows => rows.map(r => r.cells[1].textContent)"
        )
        assert set(owners) == {"t16alice"}
        page.locator("#queries tr[data-query]").first.wait_for()  # loaded beside the jobs
        queries = page.eval_on_selector_all(
            "#queries tr[data-query]", "rows => rows.map(r => r.cells[2].textContent)"
        )
        # alice's sync query and her job's query; not bob's job's
        assert {"tap:t16alice", f"uws:{job}"} <= set(queries), queries
        assert f"uws:{bobs_job}" not in queries and not any("t16bob" in q for q in queries)
        with page.expect_download() as job_download:  # fetched with the token, then saved
            mine.locator("a.job-download").click()
        saved = json.loads(Path(job_download.value.path()).read_text())
        assert [row[0] for row in saved["data"]] == ids
