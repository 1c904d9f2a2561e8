"""VOSI capabilities, availability and tables, and the DALI examples: documents that parse
(also by pyvo, pedantically), declare only what answers, and examples that run."""

from __future__ import annotations

import dataclasses
import io
import re
import socket
import xml.etree.ElementTree as ET

import pytest
import pyvo
from astropy.table import Table as AstropyTable
from fastapi.testclient import TestClient
from pyvo.io import vosi as pyvo_vosi

from qserv_py.api import formats
from qserv_py.api.routes.vosi import (
    FEATURES,
    GEO,
    UDFS,
    availability_document,
)
from qserv_py.api.service import Service
from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.config import Settings

NS = {
    "cap": "http://www.ivoa.net/xml/VOSICapabilities/v1.0",
    "av": "http://www.ivoa.net/xml/VOSIAvailability/v1.0",
    "tab": "http://www.ivoa.net/xml/VOSITables/v1.0",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "h": "http://www.w3.org/1999/xhtml",
}
XSI_TYPE = f"{{{NS['xsi']}}}type"
TAPREGEXT = "ivo://ivoa.net/std/TAPRegExt"


def _xml(api: TestClient, path: str, **params: str) -> ET.Element:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(("text/xml", "application/xml"))
    return ET.fromstring(response.content)


# --- capabilities ---------------------------------------------------------------------------


def test_capabilities_document(api: TestClient) -> None:
    root = _xml(api, "/tap/capabilities")
    assert root.tag == f"{{{NS['cap']}}}capabilities"
    by_standard = {c.get("standardID"): c for c in root.findall("capability")}
    assert set(by_standard) == {
        "ivo://ivoa.net/std/TAP",
        "ivo://ivoa.net/std/VOSI#capabilities",
        "ivo://ivoa.net/std/VOSI#availability",
        "ivo://ivoa.net/std/VOSI#tables-1.1",
        "ivo://ivoa.net/std/DALI#examples",
    }
    tap = by_standard["ivo://ivoa.net/std/TAP"]
    assert tap.get(XSI_TYPE) == "tr:TableAccess"
    interface = tap.find("interface")
    assert interface is not None and interface.get(XSI_TYPE) == "vs:ParamHTTP"
    assert interface.findtext("accessURL") == "http://testserver/tap"
    tables_url = by_standard["ivo://ivoa.net/std/VOSI#tables-1.1"].findtext("interface/accessURL")
    assert tables_url == "http://testserver/tap/tables"
    # every prefix used in an xsi:type is declared on the root
    text = api.get("/tap/capabilities").text
    for prefix in {t.split(":")[0] for t in re.findall(r'xsi:type="([^"]+)"', text)}:
        assert f"xmlns:{prefix}=" in text
    pyvo_vosi.parse_capabilities(io.BytesIO(text.encode()), pedantic=True)


def test_capabilities_use_the_public_url(
    api_settings: Settings, spec: ClusterSpec, client: Client
) -> None:
    from qserv_py.api.app import create_app

    settings = api_settings.model_copy(update={"public_url": "https://data.example.org/qserv/"})
    with TestClient(create_app(settings, spec)) as other:
        root = _xml(other, "/tap/capabilities")
    urls = [e.text for e in root.iter("accessURL")]
    assert "https://data.example.org/qserv/tap" in urls
    assert "https://data.example.org/qserv/tap/examples" in urls


def test_pyvo_reads_languages_formats_and_limits(tap_url: str, api_settings: Settings) -> None:
    service = pyvo.dal.TAPService(tap_url)
    tap = service.get_tap_capability()
    languages = {str(lang.name): lang for lang in tap.languages}
    assert set(languages) == {"ADQL", "PostgreSQL", "Qserv"}
    adql = languages["ADQL"]
    assert {(str(v.content), v.ivo_id) for v in adql.versions} == {
        ("2.1", "ivo://ivoa.net/std/ADQL#v2.1"),
        ("2.0", "ivo://ivoa.net/std/ADQL#v2.0"),
    }
    assert adql.get_feature(GEO, "CONTAINS") is not None
    assert adql.get_feature(f"{TAPREGEXT}#features-adql-offset", "OFFSET") is not None
    assert adql.get_udf("scisql_angSep") is not None
    mimes = {str(f.mime) for f in tap.outputformats}
    assert mimes == {f.media_type for f in formats.FORMATS}
    assert service.maxrec == api_settings.maxrec_default
    assert service.hardlimit == api_settings.maxrec_limit
    assert [m.ivo_id for m in service.upload_methods] == [
        f"{TAPREGEXT}#upload-inline",
        f"{TAPREGEXT}#upload-http",
    ]
    assert tap.retentionperiod.default == int(api_settings.job_retention_s)
    assert tap.executionduration.hard == int(api_settings.async_timeout_limit_s)
    assert tap.uploadlimit.hard.content == api_settings.upload_max_file_bytes
    assert tap.uploadlimit.hard.unit == "byte"


def test_output_formats_are_the_ones_the_service_renders(api: TestClient) -> None:
    root = _xml(api, "/tap/capabilities")
    for output in root.iter("outputFormat"):
        mime = output.findtext("mime")
        assert mime is not None
        assert formats.parse_format(mime).media_type == mime
        for alias in output.findall("alias"):
            assert formats.parse_format(alias.text).media_type == mime


def _feature_queries(ra: float, dec: float) -> dict[str, str]:
    """A query needing each declared form and nothing else optional (on qt)."""
    cone = f"CIRCLE('ICRS', {ra}, {dec}, 0.1)"
    point = "POINT('ICRS', coord_ra, coord_dec)"
    inside = "SELECT TOP 1 coord_ra FROM qt.Object WHERE 1=CONTAINS(" + point + ", {shape})"
    computed = "SELECT TOP 1 {value} AS computed FROM qt.Object"
    sets = "SELECT coord_ra FROM qt.Object WHERE 1=0 {op} SELECT coord_ra FROM qt.Object WHERE 1=0"
    return {
        "POINT": inside.format(shape=cone),
        "CIRCLE": inside.format(shape=cone),
        "CONTAINS": inside.format(shape=cone),
        "INTERSECTS": f"SELECT TOP 1 coord_ra FROM qt.Object WHERE 1=INTERSECTS({point}, {cone})",
        "DISTANCE": computed.format(value=f"DISTANCE({point}, POINT('ICRS', {ra}, {dec}))"),
        "BOX": inside.format(shape=f"BOX('ICRS', {ra}, {dec}, 0.2, 0.2)"),
        "POLYGON": inside.format(
            shape=f"POLYGON('ICRS', {ra - 0.1}, {dec - 0.1}, {ra + 0.1}, {dec - 0.1}, "
            f"{ra}, {dec + 0.1})"
        ),
        "COORD1": computed.format(value=f"COORD1(POINT('ICRS', {ra}, {dec}))"),
        "COORD2": computed.format(value=f"COORD2(POINT('ICRS', {ra}, {dec}))"),
        "COORDSYS": computed.format(value=f"COORDSYS(POINT('ICRS', {ra}, {dec}))"),
        "AREA": computed.format(value=f"AREA({cone})"),
        "CENTROID": computed.format(value=f"COORD2(CENTROID({cone}))"),
        "LOWER": computed.format(value="LOWER('Ab')"),
        "UPPER": computed.format(value="UPPER('Ab')"),
        "ILIKE": "SELECT TOP 1 coord_ra FROM qt.Object WHERE 'Ab' ILIKE 'a%'",
        "OFFSET": "SELECT TOP 1 table_name FROM TAP_SCHEMA.tables ORDER BY table_name OFFSET 1",
        "CAST": computed.format(value="CAST(coord_ra AS INTEGER)"),
        "COALESCE": computed.format(value="COALESCE(coord_ra, 0.0)"),
        "IN_UNIT": computed.format(value="IN_UNIT(coord_ra, 'rad')"),
        "WITH": "WITH s AS (SELECT coord_ra FROM qt.Object WHERE coord_dec > -90) "
        "SELECT TOP 1 coord_ra FROM s",
        "UNION": sets.format(op="UNION"),
        "EXCEPT": sets.format(op="EXCEPT"),
        "INTERSECT": sets.format(op="INTERSECT"),
        "scisql_angSep": computed.format(value=f"scisql_angSep(coord_ra, coord_dec, {ra}, {dec})"),
        "scisql_s2PtInBox": "SELECT TOP 1 coord_ra FROM qt.Object WHERE scisql_s2PtInBox("
        f"coord_ra, coord_dec, {ra - 0.1}, {dec - 0.1}, {ra + 0.1}, {dec + 0.1}) = 1",
        "scisql_s2PtInCircle": "SELECT TOP 1 coord_ra FROM qt.Object WHERE "
        f"scisql_s2PtInCircle(coord_ra, coord_dec, {ra}, {dec}, 0.1) = 1",
        "scisql_s2PtInEllipse": "SELECT TOP 1 coord_ra FROM qt.Object WHERE "
        f"scisql_s2PtInEllipse(coord_ra, coord_dec, {ra}, {dec}, 200, 100, 30) = 1",
        "scisql_s2PtInCPoly": "SELECT TOP 1 coord_ra FROM qt.Object WHERE scisql_s2PtInCPoly("
        f"coord_ra, coord_dec, {ra - 0.1}, {dec - 0.1}, {ra + 0.1}, {dec - 0.1}, "
        f"{ra}, {dec + 0.1}) = 1",
        "scisql_nanojanskyToAbMag": computed.format(value="scisql_nanojanskyToAbMag(3631.0)"),
        "scisql_nanojanskyToAbMagSigma": computed.format(
            value="scisql_nanojanskyToAbMagSigma(3631.0, 10.0)"
        ),
        "scisql_fluxToAbMag": computed.format(value="scisql_fluxToAbMag(1e-26)"),
        "scisql_abMagToNanojansky": computed.format(value="scisql_abMagToNanojansky(20.0)"),
    }


def _forms() -> list[object]:
    """Every declared form."""
    params: list[object] = []
    for kind, features in {**FEATURES, "udf": UDFS}.items():
        params += [
            pytest.param(f.form, id=f"{kind.rsplit('#')[-1]}:{f.form[:24]}") for f in features
        ]
    return params


@pytest.fixture(scope="module")
def centre(client: Client) -> tuple[float, float]:
    """The position of an object of qt (cone queries there return it)."""
    row = client.query("SELECT TOP 1 coord_ra, coord_dec FROM qt.Object", max_rows=1).to_pylist()
    return float(row[0]["coord_ra"]), float(row[0]["coord_dec"])


@pytest.mark.parametrize("form", _forms())
def test_declared_forms_answer(
    api: TestClient, client: Client, centre: tuple[float, float], form: str
) -> None:
    """TAPRegExt: a feature declared is one a client may use. Each answers with rows."""
    name = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", form)
    assert name is not None
    query = _feature_queries(*centre).get(name.group(1))
    assert query is not None, f"no query in this test for the declared form {form}"
    result = client.query(query, max_rows=10)
    assert result.num_rows > 0 or name.group(1) in ("UNION", "EXCEPT", "INTERSECT")


# --- availability ------------------------------------------------------------------------


def test_availability(api: TestClient) -> None:
    root = _xml(api, "/tap/availability")
    assert root.tag == f"{{{NS['av']}}}availability"
    assert root.findtext("av:available", namespaces=NS) == "true"
    assert "worker1" in (root.findtext("av:note", namespaces=NS) or "")
    parsed = pyvo_vosi.parse_availability(
        io.BytesIO(api.get("/tap/availability").content), pedantic=True
    )
    assert parsed.available is True


def test_availability_names_a_worker_that_is_down(
    api_settings: Settings, spec: ClusterSpec
) -> None:
    gone = Instance("worker9", f"host=127.0.0.1 port={_closed_port()} dbname=qserv user=qserv")
    broken = dataclasses.replace(spec, workers=(*spec.workers, gone))
    root = ET.fromstring(availability_document(Service(api_settings, broken)))
    assert root.findtext("av:available", namespaces=NS) == "false"
    note = root.findtext("av:note", namespaces=NS) or ""
    assert "worker9" in note and "worker1" not in note


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- tables ----------------------------------------------------------------------------------


def test_tableset_document(api: TestClient) -> None:
    root = _xml(api, "/tap/tables")
    assert root.tag == f"{{{NS['tab']}}}tableset"
    schemas = {s.findtext("name"): s for s in root.findall("schema")}
    assert {"qt", "TAP_UPLOAD", "TAP_SCHEMA"} <= set(schemas)
    obj = next(t for t in schemas["qt"].findall("table") if t.findtext("name") == "qt.Object")
    assert obj.findtext("nrows") == "3000"
    columns = {c.findtext("name"): c for c in obj.findall("column")}
    assert "spatial_index" not in columns and "chunk_id" not in columns
    ra = columns["coord_ra"]
    assert (ra.findtext("unit"), ra.findtext("ucd")) == ("deg", "pos.eq.ra;meta.main")
    datatype = ra.find("dataType")
    assert datatype is not None and datatype.get(XSI_TYPE) == "vs:VOTableType"
    assert datatype.text == "double" and datatype.get("arraysize") is None
    assert [f.text for f in columns["objectId"].findall("flag")] == ["indexed", "primary"]
    assert [f.text for f in columns["u_psfFlux"].findall("flag")] == ["nullable"]
    fs = next(t for t in schemas["qt"].findall("table") if t.findtext("name") == "qt.ForcedSource")
    targets = {k.findtext("targetTable"): k for k in fs.findall("foreignKey")}
    assert targets["qt.Object"].findtext("fkColumn/fromColumn") == "objectId"
    pyvo_vosi.parse_tables(io.BytesIO(api.get("/tap/tables").content), pedantic=True)


def test_tables_detail_min_and_one_table(api: TestClient) -> None:
    brief = _xml(api, "/tap/tables", detail="min")
    assert brief.find(".//column") is None
    assert "qt.CcdVisit" in [t.findtext("name") for t in brief.iter("table")]
    one = _xml(api, "/tap/tables/qt.ccdvisit")  # names are case-insensitive
    assert one.tag == f"{{{NS['tab']}}}table"
    assert one.findtext("name") == "qt.CcdVisit"
    band = next(c for c in one.findall("column") if c.findtext("name") == "band")
    assert band.find("dataType").get("arraysize") == "1"  # type: ignore[union-attr]
    missing = api.get("/tap/tables/qt.Nope")
    assert missing.status_code == 404
    assert "no table qt.Nope" in missing.text and "qt.Object" in missing.text


def test_pyvo_tables(tap_url: str) -> None:
    tables = pyvo.dal.TAPService(tap_url).tables  # asks detail=min, then each table
    names = list(tables.keys())
    assert "qt.Object" in names and "TAP_SCHEMA.columns" in names
    columns = {c.name: c for c in tables["qt.Object"].columns}
    assert columns["g_psfFlux"].unit == "nJy"
    assert columns["g_psfFlux"].ucd.startswith("phot.flux")
    assert columns["coord_dec"].datatype.content == "double"
    assert columns["refBand"].datatype.arraysize == "1"
    keys = tables["qt.Source"].foreignkeys
    assert {k.targettable for k in keys} == {"qt.Object", "qt.CcdVisit"}


# --- examples ------------------------------------------------------------------------------


def _examples(api: TestClient) -> list[ET.Element]:
    response = api.get("/tap/examples")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xhtml+xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{{{NS['h']}}}html"
    return [e for e in root.iter() if e.get("typeof") == "example"]


def test_examples_document(api: TestClient) -> None:
    examples = _examples(api)
    ids = [e.get("id") for e in examples]
    assert ids == [
        "cone", "lookup", "light_curve", "aggregate", "neighbours", "crossmatch", "tap_schema",
    ]  # fmt: skip
    for example in examples:
        assert example.get("resource") == f"#{example.get('id')}"
        name = example.find("h:h2[@property='name']", NS)
        query = example.find("h:pre[@property='query']", NS)
        assert name is not None and name.text and query is not None and query.text
        assert "qt." in query.text or "TAP_SCHEMA." in query.text
    upload = [e.get("id") for e in examples if "needs-upload" in (e.get("class") or "")]
    assert upload == ["crossmatch"]


def test_every_example_returns_rows(api: TestClient, client: Client) -> None:
    for example in _examples(api):
        if "needs-upload" in (example.get("class") or ""):
            continue  # test_upload_example
        query = example.find("h:pre[@property='query']", NS)
        assert query is not None and query.text
        result = client.query(query.text, max_rows=1000)
        assert result.num_rows > 0, f"example {example.get('id')} returned no rows"


def test_pyvo_reads_the_examples(tap_url: str, api: TestClient) -> None:
    found = pyvo.dal.TAPService(tap_url).examples
    assert len(found) == len(_examples(api))
    assert all(q["QUERY"].lstrip().upper().startswith("SELECT") for q in found)


def test_upload_example(tap_url: str, api: TestClient, client: Client) -> None:
    """The cross-match example with a real upload finds the uploaded objects."""
    [example] = [e for e in _examples(api) if e.get("id") == "crossmatch"]
    query = example.find("h:pre[@property='query']", NS)
    assert query is not None and query.text
    row = client.query("SELECT TOP 3 objectId, coord_ra, coord_dec FROM qt.Object", max_rows=3)
    targets = AstropyTable(
        {
            "id": list(range(row.num_rows)),
            "ra": row.column("coord_ra").to_pylist(),
            "dec": row.column("coord_dec").to_pylist(),
        }
    )
    found = pyvo.dal.TAPService(tap_url).search(query.text, uploads={"targets": targets})
    matched = set(found.to_table()["objectId"])
    assert set(row.column("objectId").to_pylist()) <= matched
