"""VOSI 1.1 and DALI examples: ``/tap/capabilities``, ``/tap/availability``,
``/tap/tables`` (and ``/tap/tables/{table}``), ``/tap/examples``.

- capabilities: the TAP capability in TAPRegExt 1.0 terms (languages and their optional
  features, output formats, upload method, limits from the settings), and those of VOSI
  and of the examples. Only features that answer are declared.
- availability: whether the czar and every worker answer now.
- tables: the VODataService 1.2 tableset, rendered from the same description as
  TAP_SCHEMA (:mod:`qserv_py.api.tap_schema`).
- examples: DALI 1.1 examples (XHTML with RDFa), real queries on the default catalog
  around an object it holds, so that each returns rows (made in
  :mod:`qserv_py.api.examples`, cached here until the catalog's data changes).
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import Response

from qserv_py.api import formats
from qserv_py.api.deps import ServiceDep
from qserv_py.api.esatapplus import wants_esa
from qserv_py.api.examples import Example, examples_document, find_sample, make_examples
from qserv_py.api.service import Service
from qserv_py.api.tap_schema import (
    ColumnMeta,
    KeyMeta,
    SchemaMeta,
    TableMeta,
    describe,
    find_table,
)
from qserv_py.cluster.db import connect, on_each
from qserv_py.cluster.spec import Instance
from qserv_py.config import Settings
from qserv_py.errors import QservError, UnknownTable
from qserv_py.schema.model import TableKind

router = APIRouter(prefix="/tap", tags=["VOSI"])
log = logging.getLogger(__name__)

XML_MEDIA = "text/xml"
XHTML_MEDIA = "application/xhtml+xml"

VOSI_CAPABILITIES = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
VOSI_AVAILABILITY = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
VOSI_TABLES = "http://www.ivoa.net/xml/VOSITables/v1.0"
VR = "http://www.ivoa.net/xml/VOResource/v1.0"
VS = "http://www.ivoa.net/xml/VODataService/v1.1"  # VODataService 1.2 keeps the 1.1 namespace
TR = "http://www.ivoa.net/xml/TAPRegExt/v1.0"
#: ESA's TAP+ attributes, which astroquery's TapPlus (astroquery.gaia, astroquery.esa)
#: requires on every column of /tables (``esatapplus:flags``); only at /esa/tap
#: (:mod:`qserv_py.api.esatapplus`): VODataService does not allow them
ESATAPPLUS = "http://esa.int/xml/EsaTapPlus"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
TABLES_NAMESPACES = {"xmlns:vosi": VOSI_TABLES, "xmlns:vs": VS, "xmlns:xsi": XSI}

TAPREGEXT = "ivo://ivoa.net/std/TAPRegExt"
GEO = f"{TAPREGEXT}#features-adqlgeo"
UDF = f"{TAPREGEXT}#features-udf"


# --- what the service declares --------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    form: str
    description: str = ""


#: ADQL's optional features (ADQL 2.1 §4, TAPRegExt §2.3) that the engine answers,
#: by TAPRegExt feature type. Each form is run by tests/api/test_vosi.py. COALESCE
#: answers too but is not declared: its feature type (``#features-adql-conditional``)
#: is unknown to the taplint of Debian's stilts (3.4.7), which counts it as an error.
FEATURES: dict[str, tuple[Feature, ...]] = {
    GEO: (
        Feature(
            "POINT",
            "A position: POINT('ICRS', ra, dec), degrees. Constant positions may be given "
            "in GALACTIC, FK5, FK4 or SUPER_GALACTIC: they are converted to ICRS.",
        ),
        Feature("CIRCLE", "CIRCLE('ICRS', ra, dec, radius), degrees."),
        Feature("BOX", "BOX('ICRS', ra, dec, width, height), degrees."),
        Feature("POLYGON", "A convex polygon: POLYGON('ICRS', ra1, dec1, ra2, dec2, ...)."),
        Feature(
            "CONTAINS",
            "CONTAINS(POINT(...), region) = 1, or of a region (of columns) in a region.",
        ),
        Feature(
            "INTERSECTS",
            "INTERSECTS(POINT(...), region) = 1, or of two regions (CIRCLE, BOX, POLYGON).",
        ),
        Feature("DISTANCE", "Angular distance between two POINTs, in degrees."),
        Feature("COORD1", "The right ascension of a POINT."),
        Feature("COORD2", "The declination of a POINT."),
        Feature("COORDSYS", "The coordinate system of a geometry: always ICRS."),
        Feature("AREA", "Square degrees, of a POINT, CIRCLE, BOX or POLYGON."),
        Feature("CENTROID", "Of a POINT, CIRCLE, BOX or POLYGON."),
    ),
    f"{TAPREGEXT}#features-adql-string": (
        Feature("LOWER"),
        Feature("UPPER"),
        Feature("ILIKE", "Case-insensitive LIKE."),
    ),
    f"{TAPREGEXT}#features-adql-offset": (Feature("OFFSET"),),
    f"{TAPREGEXT}#features-adql-type": (Feature("CAST"),),
    f"{TAPREGEXT}#features-adql-unit": (
        Feature("IN_UNIT", "IN_UNIT(column, 'unit'): the column's values in another unit."),
    ),
    f"{TAPREGEXT}#features-adql-common-table": (
        Feature("WITH", "Over partitioned tables when each chunk holds what it needs."),
    ),
    f"{TAPREGEXT}#features-adql-sets": (
        Feature("UNION"),
        Feature("EXCEPT"),
        Feature("INTERSECT"),
    ),
}

#: Qserv's scisql functions, answered in every query language (TAPRegExt user-defined
#: functions: the form is the signature).
UDFS: tuple[Feature, ...] = (
    Feature(
        "scisql_angSep(ra1 DOUBLE, dec1 DOUBLE, ra2 DOUBLE, dec2 DOUBLE) -> DOUBLE",
        "Angular separation of two positions, degrees (as DISTANCE).",
    ),
    Feature(
        "scisql_s2PtInBox(ra DOUBLE, dec DOUBLE, ra_min DOUBLE, dec_min DOUBLE, "
        "ra_max DOUBLE, dec_max DOUBLE) -> INTEGER",
        "1 if the position lies between two meridians and two parallels, else 0.",
    ),
    Feature(
        "scisql_s2PtInCircle(ra DOUBLE, dec DOUBLE, ra_cen DOUBLE, dec_cen DOUBLE, "
        "radius DOUBLE) -> INTEGER",
        "1 if the position lies within radius degrees of the centre, else 0.",
    ),
    Feature(
        "scisql_s2PtInEllipse(ra DOUBLE, dec DOUBLE, ra_cen DOUBLE, dec_cen DOUBLE, "
        "semi_major_arcsec DOUBLE, semi_minor_arcsec DOUBLE, pos_angle DOUBLE) -> INTEGER",
        "1 if the position lies in the ellipse (axes in arcsec, angle in degrees), else 0.",
    ),
    Feature(
        "scisql_s2PtInCPoly(ra DOUBLE, dec DOUBLE, ra1 DOUBLE, dec1 DOUBLE, ra2 DOUBLE, "
        "dec2 DOUBLE, ra3 DOUBLE, dec3 DOUBLE, ...) -> INTEGER",
        "1 if the position lies in the convex polygon of the vertices, else 0.",
    ),
    Feature(
        "scisql_nanojanskyToAbMag(flux DOUBLE) -> DOUBLE",
        "AB magnitude of a flux in nJy (NULL for a flux of 0 or less).",
    ),
    Feature(
        "scisql_nanojanskyToAbMagSigma(flux DOUBLE, flux_sigma DOUBLE) -> DOUBLE",
        "Uncertainty of the AB magnitude of a flux in nJy.",
    ),
    Feature(
        "scisql_fluxToAbMag(flux DOUBLE) -> DOUBLE",
        "AB magnitude of a flux in erg/s/cm2/Hz.",
    ),
    Feature(
        "scisql_abMagToNanojansky(mag DOUBLE) -> DOUBLE",
        "Flux in nJy of an AB magnitude.",
    ),
)

#: the result formats (api/formats.py) and their TAPRegExt ids
OUTPUT_FORMATS: tuple[tuple[formats.Format, str | None], ...] = (
    (formats.VOTABLE, f"{TAPREGEXT}#output-votable-binary2"),
    (formats.VOTABLE_TD, f"{TAPREGEXT}#output-votable-td"),
    (formats.CSV, None),
    (formats.TSV, None),
    (formats.JSON, None),
    (formats.PARQUET, None),
    (formats.FITS, None),
    (formats.ECSV, None),
)
UPLOAD_METHODS = (f"{TAPREGEXT}#upload-inline", f"{TAPREGEXT}#upload-http")


@dataclass(frozen=True)
class Language:
    name: str
    versions: tuple[tuple[str, str | None], ...]  # (version, ivo-id)
    description: str
    features: dict[str, tuple[Feature, ...]] = field(default_factory=dict)


LANGUAGES = (
    Language(
        "ADQL",
        (("2.1", "ivo://ivoa.net/std/ADQL#v2.1"), ("2.0", "ivo://ivoa.net/std/ADQL#v2.0")),
        "ADQL 2.1 (IVOA), and 2.0. Tables are named catalog.table (the catalog may be left "
        "out for the default one); geometry is ICRS; a spatial join between two tables "
        "(DISTANCE < r, or CONTAINS(POINT, CIRCLE)) is limited to the catalog's overlap "
        "radius. The scisql_* functions of Qserv are available too.",
        {**FEATURES, UDF: UDFS},
    ),
    Language(
        "PostgreSQL",
        (("1.0", None),),
        "PostgreSQL's SELECT syntax over the same tables (LANG=PostgreSQL), with the ADQL "
        "geometry functions and scisql_* functions; only catalog tables and safe "
        "functions are allowed.",
    ),
    Language(
        "Qserv",
        (("1.0", None),),
        "The SQL of LSST's Qserv (LANG=Qserv): MySQL syntax with scisql_* functions and "
        "the qserv_areaspec_box/circle/ellipse/poly restrictors.",
    ),
)


# --- XML -------------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: object = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = str(text)
    return element


def _document(root: ET.Element) -> bytes:
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def _xml(body: bytes) -> Response:
    return Response(body, media_type=XML_MEDIA)


def tap_base(request: Request, settings: Settings) -> str:
    """The URL of the TAP service (``.../tap``) as clients reach it."""
    root = settings.public_url or str(request.base_url)
    return f"{root.rstrip('/')}/tap"


# --- capabilities ------------------------------------------------------------------------


def capabilities_document(base: str, settings: Settings) -> bytes:
    """The VOSI capabilities of the TAP service at ``base``."""
    root = ET.Element(
        "vosi:capabilities",
        {"xmlns:vosi": VOSI_CAPABILITIES, "xmlns:vr": VR, "xmlns:vs": VS, "xmlns:tr": TR,
         "xmlns:xsi": XSI},
    )  # fmt: skip
    tap = _sub(root, "capability", standardID="ivo://ivoa.net/std/TAP")
    tap.set("xsi:type", "tr:TableAccess")
    interface = _sub(tap, "interface", role="std", version="1.1")
    interface.set("xsi:type", "vs:ParamHTTP")
    _sub(interface, "accessURL", base, use="base")
    for language in LANGUAGES:
        _language(_sub(tap, "language"), language)
    for fmt, ivo_id in OUTPUT_FORMATS:
        output = _sub(tap, "outputFormat", **({"ivo-id": ivo_id} if ivo_id else {}))
        _sub(output, "mime", fmt.media_type)
        for alias, other in formats.SHORT_FORMS.items():
            if other is fmt:
                _sub(output, "alias", alias)
    for method in UPLOAD_METHODS:
        _sub(tap, "uploadMethod", **{"ivo-id": method})
    _limits(tap, "retentionPeriod", settings.job_retention_s, settings.job_retention_s)
    _limits(tap, "executionDuration", settings.async_timeout_s, settings.async_timeout_limit_s)
    _limits(tap, "outputLimit", settings.maxrec_default, settings.maxrec_limit, unit="row")
    # (the files' limit: the one a client can check before sending)
    _limits(tap, "uploadLimit", None, settings.upload_max_file_bytes, unit="byte")
    vosi = (
        ("ivo://ivoa.net/std/VOSI#capabilities", "capabilities"),
        ("ivo://ivoa.net/std/VOSI#availability", "availability"),
        ("ivo://ivoa.net/std/VOSI#tables-1.1", "tables"),
    )
    for standard, endpoint in vosi:
        capability = _sub(root, "capability", standardID=standard)
        interface = _sub(capability, "interface")
        interface.set("xsi:type", "vs:ParamHTTP")
        _sub(interface, "accessURL", f"{base}/{endpoint}", use="full")
    examples = _sub(root, "capability", standardID="ivo://ivoa.net/std/DALI#examples")
    interface = _sub(examples, "interface")
    interface.set("xsi:type", "vr:WebBrowser")
    _sub(interface, "accessURL", f"{base}/examples", use="full")
    return _document(root)


def _language(element: ET.Element, language: Language) -> None:
    _sub(element, "name", language.name)
    for version, ivo_id in language.versions:
        _sub(element, "version", version, **({"ivo-id": ivo_id} if ivo_id else {}))
    _sub(element, "description", language.description)
    for kind, features in language.features.items():
        group = _sub(element, "languageFeatures", type=kind)
        for feature in features:
            item = _sub(group, "feature")
            _sub(item, "form", feature.form)
            if feature.description:
                _sub(item, "description", feature.description)


def _limits(
    parent: ET.Element, tag: str, default: float | None, hard: float, unit: str | None = None
) -> None:
    element = _sub(parent, tag)
    attrs = {"unit": unit} if unit else {}
    if default is not None:
        _sub(element, "default", int(default), **attrs)
    _sub(element, "hard", int(hard), **attrs)


@router.get("/capabilities", summary="VOSI capabilities (TAPRegExt)")
def capabilities(request: Request, service: ServiceDep) -> Response:
    return _xml(capabilities_document(tap_base(request, service.settings), service.settings))


# --- availability ------------------------------------------------------------------------


def _down(instance: Instance) -> str | None:
    """Why ``instance`` does not answer now, or None if it does."""
    try:
        with connect(instance, autocommit=True, timeout=3) as conn:
            conn.execute("SELECT 1")
    except QservError:
        return f"{instance.name} cannot be reached"
    except Exception as exc:  # a server that accepts connections but fails: down too
        return f"{instance.name} does not answer ({type(exc).__name__})"
    return None


def availability_document(service: Service) -> bytes:
    """VOSI availability: available when the czar and every worker answer."""
    instances = [service.spec.czar, *service.spec.workers]
    started = time.monotonic()
    problems = [p for p in on_each(instances, _down) if p is not None]
    root = ET.Element("vosi:availability", {"xmlns:vosi": VOSI_AVAILABILITY})
    _sub(root, "vosi:available", "false" if problems else "true")
    if problems:
        _sub(root, "vosi:note", "; ".join(problems) + ": queries cannot run until it answers")
    else:
        names = ", ".join(i.name for i in instances)
        seconds = time.monotonic() - started
        _sub(root, "vosi:note", f"all databases answer ({names}; checked in {seconds:.2f} s)")
    return _document(root)


@router.get("/availability", summary="VOSI availability")
def availability(service: ServiceDep) -> Response:
    return _xml(availability_document(service))


# --- tables ------------------------------------------------------------------------------


def tableset(service: Service) -> tuple[SchemaMeta, ...]:
    """The description of every catalog the service answers on (and TAP_SCHEMA)."""
    ctx = service.client.context
    nrows = {
        (catalog, table): rows
        for catalog, state in ctx.states.items()
        for table, rows in state.rows.items()
    }
    return describe(ctx.catalogs.catalogs.values(), nrows)


def _namespaces(esa: bool) -> dict[str, str]:
    return {**TABLES_NAMESPACES, "xmlns:esatapplus": ESATAPPLUS} if esa else TABLES_NAMESPACES


def tableset_document(
    schemas: Iterable[SchemaMeta], *, detail: bool = True, esa: bool = False
) -> bytes:
    """The VOSI tables document; without ``detail``, tables without their columns; with
    ``esa``, each column with ESA TAP+'s ``esatapplus:flags``."""
    root = ET.Element("vosi:tableset", _namespaces(esa))
    for schema in schemas:
        element = _sub(root, "schema")
        _sub(element, "name", schema.name)
        if schema.description:
            _sub(element, "description", schema.description)
        for table in schema.tables:
            _table(_sub(element, "table"), table, detail=detail, esa=esa)
    return _document(root)


def table_document(table: TableMeta, *, esa: bool = False) -> bytes:
    """The VOSI 1.1 document of one table."""
    root = ET.Element("vosi:table", _namespaces(esa))
    _table(root, table, detail=True, esa=esa)
    return _document(root)


def _table(element: ET.Element, table: TableMeta, *, detail: bool, esa: bool) -> None:
    element.set("type", "base_table")
    _sub(element, "name", table.name)
    if table.description:
        _sub(element, "description", table.description)
    if table.nrows is not None:
        _sub(element, "nrows", table.nrows)
    if not detail:
        return
    for column in table.columns:
        _column(_sub(element, "column"), column, esa=esa)
    for key in table.keys:
        _foreign_key(_sub(element, "foreignKey"), key)


def _column(element: ET.Element, column: ColumnMeta, *, esa: bool) -> None:
    if column.std:
        element.set("std", "true")
    if esa:
        element.set("esatapplus:flags", str(esa_flags(column)))
    _sub(element, "name", column.name)
    for tag in ("description", "unit", "ucd"):
        value = getattr(column, tag)
        if value:
            _sub(element, tag, value)
    datatype = _sub(element, "dataType", column.datatype)
    datatype.set("xsi:type", "vs:VOTableType")
    if column.arraysize:
        datatype.set("arraysize", column.arraysize)
    if column.xtype:
        datatype.set("extendedType", column.xtype)
    for flag, on in (
        ("indexed", column.indexed),
        ("primary", column.primary),
        ("nullable", column.nullable),
    ):
        if on:
            _sub(element, "flag", flag)


#: ESA TAP+ column flags (as astroquery's TapPlus reads them) by the UCD's first word
_ESA_UCD_FLAGS = {"pos.eq.ra": 1, "pos.eq.dec": 2, "phot.flux": 4, "phot.mag": 8}


def esa_flags(column: ColumnMeta) -> int:
    """ESA TAP+'s bit flags of a column: 1 right ascension, 2 declination (the main
    position: UCD ``pos.eq.ra;meta.main``), 4 a flux, 8 a magnitude, 16 the primary key,
    32 indexed.

    >>> from dataclasses import replace
    >>> ra = ColumnMeta("coord_ra", "", "deg", "pos.eq.ra;meta.main", "double", None, None,
    ...                 None, True, False, False, False, False, 2)
    >>> esa_flags(ra), esa_flags(replace(ra, ucd="pos.eq.ra", indexed=True, primary=True))
    (1, 48)
    """
    words = column.ucd.split(";")
    flags = _ESA_UCD_FLAGS.get(words[0], 0)
    if flags in (1, 2) and "meta.main" not in words:
        flags = 0
    if column.primary:
        flags |= 16
    if column.indexed:
        flags |= 32
    return flags


def _foreign_key(element: ET.Element, key: KeyMeta) -> None:
    _sub(element, "targetTable", key.target_table)
    for source, target in key.columns:
        pair = _sub(element, "fkColumn")
        _sub(pair, "fromColumn", source)
        _sub(pair, "targetColumn", target)
    if key.description:
        _sub(element, "description", key.description)


@router.get("/tables", summary="VOSI tables: the catalogs, tables and columns")
def tables(request: Request, service: ServiceDep, detail: str | None = None) -> Response:
    """``detail=min`` leaves the columns out (VOSI 1.1); they are then at
    ``/tap/tables/{table}``."""
    brief = (detail or "").strip().lower() == "min"
    esa = wants_esa(request.state)
    return _xml(tableset_document(tableset(service), detail=not brief, esa=esa))


@router.get("/tables/{table_name}", summary="VOSI tables: one table with its columns")
def table(request: Request, table_name: str, service: ServiceDep) -> Response:
    schemas = tableset(service)
    found = find_table(schemas, table_name)
    if found is None:
        known = ", ".join(t.name for s in schemas for t in s.tables)
        raise UnknownTable(f"no table {table_name}; name one as schema.table: {known}")
    return _xml(table_document(found, esa=wants_esa(request.state)))


# --- examples ------------------------------------------------------------------------------


def current_examples(request: Request, service: Service) -> tuple[list[Example], str | None]:
    """The examples of the default catalog, made again when its data changed."""
    ctx = service.client.context
    name = (service.settings.default_catalog or "").lower()
    catalog = ctx.catalogs.catalogs.get(name)
    state = ctx.states.get(name)
    version = (name, tuple(sorted(state.rows.items())) if state else ())
    cached = getattr(request.app.state, "vosi_examples", None)
    if cached is not None and cached[0] == version:
        return cached[1], cached[2]
    sample, keep = None, True
    directors = catalog.tables_of_kind(TableKind.DIRECTOR) if catalog is not None else ()
    if catalog is not None and directors:
        try:
            sample = find_sample(service, catalog, directors[0])
        except QservError as exc:  # a worker down: examples without data, made again later
            log.warning("examples: no sample object of %s: %s", catalog.name, exc)
            keep = False
    examples = make_examples(catalog, sample)
    spelled = catalog.name if catalog is not None else None
    if keep:
        request.app.state.vosi_examples = (version, examples, spelled)
    return examples, spelled


@router.get("/examples", summary="DALI examples: queries to start from")
def examples(request: Request, service: ServiceDep) -> Response:
    found, catalog = current_examples(request, service)
    return Response(examples_document(found, catalog), media_type=XHTML_MEDIA)
