"""DALI 1.1 examples: the example queries and their XHTML (RDFa) document.

The examples are real queries on the default catalog, around an object it holds so that
each returns rows, written in the ADQL 2.0 subset that validators check (ORDER BY names
an output column, not ``t.column``), and list as their tables only tables the service
has (taplint checks both): a cone search, a lookup, a light curve (when the catalog has
ForcedSource and CcdVisit), an aggregate (when the director table has refBand and
r_psfFlux), a near-neighbour join, a cross-match of an uploaded target list, and a
TAP_SCHEMA query. Served at ``/tap/examples`` by :mod:`qserv_py.api.routes.vosi`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from qserv_py.api.service import Service
from qserv_py.api.tap_schema import TAP_SCHEMA, TAP_UPLOAD
from qserv_py.schema.model import Catalog, Table, TableKind

XHTML = "http://www.w3.org/1999/xhtml"


@dataclass(frozen=True)
class Example:
    """A DALI example: an id (its URL fragment), a name, what it shows, the query."""

    id: str
    name: str
    description: str
    query: str
    tables: tuple[str, ...]
    #: it reads TAP_UPLOAD.targets: run it with an upload of that name
    needs_upload: bool = False


@dataclass(frozen=True)
class Sample:
    """An object of the catalog the examples are centred on."""

    key: int
    ra: float
    dec: float


def find_sample(service: Service, catalog: Catalog, director: Table) -> Sample | None:
    """An object of ``director`` to centre the examples on: preferably a deblended child
    (its parent is a close neighbour), else any; None if the table is empty."""
    key, ra, dec = director.key_column, director.ra_column, director.dec_column
    assert key and ra and dec  # a director table has them all
    name = f"{catalog.name}.{director.name}"
    queries = [f"SELECT TOP 1 {key}, {ra}, {dec} FROM {name}"]
    if director.has_column("parentObjectId"):
        queries.insert(0, f"{queries[0]} WHERE parentObjectId > 0")
    for text in queries:
        found = service.client.query(text, max_rows=1, timeout_s=60, owner="vosi")
        if found.num_rows:
            row = [found.column(i)[0].as_py() for i in range(3)]
            return Sample(int(row[0]), float(row[1]), float(row[2]))
    return None


def make_examples(catalog: Catalog | None, sample: Sample | None) -> list[Example]:
    """The examples for ``catalog`` (the default one) around ``sample``."""
    examples: list[Example] = []
    directors = catalog.tables_of_kind(TableKind.DIRECTOR) if catalog is not None else ()
    if catalog is not None and directors:
        examples += _catalog_examples(catalog, directors[0], sample or Sample(0, 0.0, 0.0))
    table = f"{catalog.name}.{catalog.tables[0].name}" if catalog else f"{TAP_SCHEMA}.tables"
    examples.append(
        Example(
            "tap_schema",
            "The columns of a table, from TAP_SCHEMA",
            "TAP_SCHEMA describes every table; query it like any other table, e.g. for "
            "the columns of one table with their units and UCDs.",
            "SELECT column_name, datatype, arraysize, unit, ucd, description\n"
            f"FROM {TAP_SCHEMA}.columns\nWHERE table_name = '{table}'\nORDER BY column_index",
            (f"{TAP_SCHEMA}.columns",),
        )
    )
    return examples


def _catalog_examples(catalog: Catalog, director: Table, at: Sample) -> list[Example]:
    c = catalog.name
    obj = f"{c}.{director.name}"
    key, ra, dec = director.key_column, director.ra_column, director.dec_column
    assert key and ra and dec  # a director table has them all
    radius = min(10.0, catalog.overlap_arcsec)
    examples = [
        Example(
            "cone",
            "Cone search",
            f"The objects of {obj} within 3 arcminutes of a position.",
            f"SELECT {key}, {ra}, {dec}\nFROM {obj}\n"
            f"WHERE CONTAINS(POINT('ICRS', {ra}, {dec}),\n"
            f"               CIRCLE('ICRS', {at.ra!r}, {at.dec!r}, 0.05)) = 1",
            (obj,),
        ),
        Example(
            "lookup",
            f"One object by its {key}",
            f"A lookup by {key} reads one chunk only (the director index says which).",
            f"SELECT *\nFROM {obj}\nWHERE {key} = {at.key}",
            (obj,),
        ),
    ]
    forced = catalog.table("ForcedSource") if catalog.has_table("ForcedSource") else None
    visits = catalog.table("CcdVisit") if catalog.has_table("CcdVisit") else None
    if forced is not None and visits is not None and forced.director == director.name:
        fs, cv = f"{c}.{forced.name}", f"{c}.{visits.name}"
        examples.append(
            Example(
                "light_curve",
                "Light curve of an object",
                "The forced photometry of one object on every visit, with each visit's "
                f"epoch: {director.name} joined to {forced.name} (on the same chunk) and to "
                f"the replicated {visits.name}.",
                f"SELECT o.{key}, f.band AS fs_band, v.expMidptMJD AS epoch, f.psfFlux, "
                "f.psfFluxErr\n"
                f"FROM {obj} AS o\n"
                f"JOIN {fs} AS f ON f.{forced.director_key} = o.{key}\n"
                f"JOIN {cv} AS v ON v.ccdVisitId = f.ccdVisitId\n"
                f"WHERE o.{key} = {at.key}\nORDER BY fs_band, epoch",
                (obj, fs, cv),
            )
        )
    if director.has_column("refBand") and director.has_column("r_psfFlux"):
        examples.append(
            Example(
                "aggregate",
                "Counts and means over the whole sky",
                "An aggregate over every chunk: each worker computes partial counts and "
                "sums, the czar merges them.",
                "SELECT refBand, COUNT(*) AS n,\n"
                "       AVG(scisql_nanojanskyToAbMag(r_psfFlux)) AS mean_r_mag\n"
                f"FROM {obj}\nGROUP BY refBand\nORDER BY n DESC",
                (obj,),
            )
        )
    p1, p2 = f"POINT('ICRS', o1.{ra}, o1.{dec})", f"POINT('ICRS', o2.{ra}, o2.{dec})"
    examples.append(
        Example(
            "neighbours",
            "Close pairs (near-neighbour self-join)",
            f"Pairs of objects less than {radius:g} arcsec apart around a position. A "
            f"spatial join radius may be at most the catalog's overlap "
            f"({catalog.overlap_arcsec:g} arcsec): each chunk keeps copies of its "
            "neighbours' objects that close to its edge.",
            f"SELECT o1.{key} AS id1, o2.{key} AS id2,\n"
            f"       DISTANCE({p1}, {p2}) * 3600 AS sep_arcsec\n"
            f"FROM {obj} AS o1\n"
            f"JOIN {obj} AS o2 ON DISTANCE({p1}, {p2}) < {radius:g} / 3600.0\n"
            f"WHERE CONTAINS({p1}, CIRCLE('ICRS', {at.ra!r}, {at.dec!r}, 0.05)) = 1\n"
            f"  AND o1.{key} <> o2.{key}\nORDER BY sep_arcsec",
            (obj,),
        )
    )
    examples.append(
        Example(
            "crossmatch",
            "Cross-match your own target list (TAP upload)",
            "Upload a table named targets with columns id, ra and dec (degrees, ICRS), "
            "e.g. with pyvo: service.search(query, uploads={'targets': table}); each "
            f"target gets the objects within {min(5.0, catalog.overlap_arcsec):g} arcsec.",
            f"SELECT t.id, o.{key}, o.{ra}, o.{dec},\n"
            f"       DISTANCE(POINT('ICRS', t.ra, t.dec), POINT('ICRS', o.{ra}, o.{dec}))"
            " * 3600 AS sep_arcsec\n"
            f"FROM {TAP_UPLOAD}.targets AS t\n"
            f"JOIN {obj} AS o\n"
            f"  ON CONTAINS(POINT('ICRS', o.{ra}, o.{dec}),\n"
            f"              CIRCLE('ICRS', t.ra, t.dec, "
            f"{min(5.0, catalog.overlap_arcsec):g} / 3600.0)) = 1",
            (obj,),  # TAP_UPLOAD.targets exists only with the upload: not listed
            needs_upload=True,
        )
    )
    return examples


def examples_document(examples: Iterable[Example], catalog: str | None) -> bytes:
    """DALI 1.1 examples: XHTML, each example a ``typeof="example"`` element with RDFa
    properties ``name``, ``query`` and ``table``."""
    esc = escape
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!DOCTYPE html>",
        f'<html xmlns="{XHTML}" xml:lang="en" lang="en">',
        "<head>",
        '<meta http-equiv="Content-Type" content="application/xhtml+xml; charset=UTF-8"/>',
        "<title>Example queries</title>",
        "</head>",
        '<body vocab="ivo://ivoa.net/std/DALI-examples">',
        "<h1>Example queries</h1>",
        "<p>ADQL queries to run on this TAP service"
        + (f", on catalog {esc(catalog)}" if catalog else "")
        + ". Tables named without their catalog are looked up in the default catalog.</p>",
    ]
    for example in examples:
        upload = ' class="needs-upload"' if example.needs_upload else ""
        parts += [
            f'<div typeof="example" id={quoteattr(example.id)} '
            f"resource={quoteattr('#' + example.id)}{upload}>",
            f'<h2 property="name">{esc(example.name)}</h2>',
            f"<p>{esc(example.description)}</p>",
            f'<pre property="query">{esc(example.query)}</pre>',
            "<p>Tables: "
            + ", ".join(f'<span property="table">{esc(t)}</span>' for t in example.tables)
            + "</p>",
            "</div>",
        ]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts).encode()
