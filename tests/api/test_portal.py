"""The portal's pages over HTTP: the page, its assets (all local), /tap, /docs, /redoc, and
the chunk cells the sky plot draws (``/api/v1/catalogs/{name}/chunks``)."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path, PurePosixPath

from fastapi.testclient import TestClient

from qserv_py.api.routes.portal import PORTAL_DIR
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.stats import catalog_stats


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#]+)"', html)


def test_root_serves_the_portal_with_local_assets_only(api: TestClient) -> None:
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = _assets(page.text)
    assert "portal/js/app.js" in assets and "portal/vendor/codemirror.js" in assets
    for asset in assets:
        assert "://" not in asset, asset  # nothing from another host
        assert api.get(f"/{asset}").status_code == 200, asset
    # every module the page imports is served (relative imports between the modules)
    for module in sorted((PORTAL_DIR / "js").glob("*.js")):
        text = api.get(f"/portal/js/{module.name}").text
        for imported in re.findall(r'from "(\.[^"]+)"', text):
            target = (module.parent / imported).resolve().relative_to(PORTAL_DIR)
            assert api.get(f"/portal/{target}").status_code == 200, (module.name, imported)
    assert "://" not in "".join(re.findall(r'from "([^"]+)"', api.get("/portal/js/app.js").text))


def test_docs_and_redoc_load_their_scripts_from_the_service(api: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        page = api.get(path)
        assert page.status_code == 200
        scripts = re.findall(r'<script src="([^"]+)"', page.text)
        styles = re.findall(r'<link[^>]+href="([^"]+)"', page.text)
        assert scripts, page.text
        for url in scripts + styles:
            assert url.startswith("/portal/"), (path, url)
            assert api.get(url).status_code == 200, url
        assert "fonts.googleapis" not in page.text
    # Swagger UI would fetch a badge from the public validator for a non-local host
    assert '"validatorUrl": null' in api.get("/docs").text
    for bundle in PORTAL_DIR.glob("vendor/**/*.js"):  # e.g. ReDoc's logo from its CDN
        assert "https://cdn." not in bundle.read_text(), bundle
    assert api.get("/openapi.json").json()["paths"]["/api/v1/catalogs/{name}/chunks"]


def test_tap_base_url_is_a_landing_page(api: TestClient) -> None:
    page = api.get("/tap")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for resource in ("sync", "async", "capabilities", "tables", "examples"):
        assert f'href="/tap/{resource}"' in page.text
    assert 'href="/"' in page.text  # the portal


def test_chunk_cells_count_the_director_rows(api: TestClient, spec: ClusterSpec) -> None:
    found = api.get("/api/v1/catalogs/qt/chunks", params={"step": 1})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["directors"] == [{"table": "qt.Object", "ra": "coord_ra", "dec": "coord_dec"}]
    stats = catalog_stats(spec, "qt")
    objects = next(t for t in stats.tables if t.name == "Object")
    cells = body["chunks"]
    assert sum(c["rows"] for c in cells) == objects.rows
    assert len(cells) == objects.chunks
    coverage = api.get("/api/v1/catalogs/qt").json()["coverage"]
    sphere = 4 * math.pi * (180 / math.pi) ** 2
    assert math.isclose(sum(c["area_deg2"] for c in cells), coverage["sky_fraction"] * sphere)
    for cell in cells:
        assert cell["id"] == 4 * 4 ** cell["order"] + cell["ipix"]
        assert len(cell["vertices"]) == 4
        assert all(0 <= ra < 360 and -90 <= dec <= 90 for ra, dec in cell["vertices"])


def test_chunk_cells_of_an_unknown_catalog_is_a_404(api: TestClient) -> None:
    found = api.get("/api/v1/catalogs/nosuch/chunks")
    assert found.status_code == 404 and "nosuch" in found.json()["message"]


def test_access_says_the_service_has_no_users(api: TestClient) -> None:
    """auth = none: the portal then offers no sign-in, and every caller may see all."""
    about = api.get("/api/v1/access").json()
    assert about == {"auth": "none", "anonymous_routes": about["anonymous_routes"],
                     "user": None, "admin": True}  # fmt: skip
    assert "sync" in about["anonymous_routes"]


def test_every_file_of_the_page_is_package_data() -> None:
    """An installed package serves the portal: pyproject's package data lists its files."""
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["qserv_py.api"]
    files = [p for p in PORTAL_DIR.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        if path.name in ("build.sh", "package.json"):  # for rebuilding the vendored files
            continue
        relative = PurePosixPath(path.relative_to(PORTAL_DIR.parent).as_posix())
        assert any(relative.match(pattern) for pattern in patterns), relative
