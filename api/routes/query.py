"""The REST API (``/api/v1``): run a query, read the catalogs, watch and kill queries.

``POST /api/v1/query`` answers JSON (columns with their metadata, rows as arrays), or the
Arrow IPC stream or Parquet file of the result with each field's metadata (unit, UCD,
description, datatype) kept. The catalogs, with their tables, row and chunk counts and
sky coverage (a MOC), come from ``GET /api/v1/catalogs``. Queries are listed, shown and
killed under ``/api/v1/queries``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from qserv_py.api.auth import ANONYMOUS_OPEN, Caller, caller_of
from qserv_py.api.cancel import Cancel, run_cancellable
from qserv_py.api.deps import ServiceDep
from qserv_py.api.routes.tap import engine_owner
from qserv_py.api.service import Outcome, Service
from qserv_py.cluster.catalogs import get_catalog, list_catalogs
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.stats import catalog_stats
from qserv_py.errors import Forbidden, QueryError, QueryFinished, UnknownQuery
from qserv_py.exec.tracking import (
    ACTIVE,
    FINAL,
    QueryInfo,
    get_query,
    kill_query,
    list_queries,
    query_user,
)
from qserv_py.sky.healpix import order_ipix
from qserv_py.tables import astropy_parquet_metadata

router = APIRouter(prefix="/api/v1", tags=["REST"])

JSON_MEDIA = "application/json"
ARROW_MEDIA = "application/vnd.apache.arrow.stream"
PARQUET_MEDIA = "application/vnd.apache.parquet"
MEDIA_OF = {"json": JSON_MEDIA, "arrow": ARROW_MEDIA, "parquet": PARQUET_MEDIA}
FORMAT_OF = {media: name for name, media in MEDIA_OF.items()}

Lang = Literal["adql", "postgresql", "qserv"]
Fmt = Literal["json", "arrow", "parquet"]


# --- POST /api/v1/query --------------------------------------------------------------------


class QueryRequest(BaseModel):
    """A query to run."""

    query: str = Field(min_length=1, description="The query text.")
    lang: Lang = Field(default="adql", description="Its language.")
    maxrec: int | None = Field(
        default=None,
        ge=0,
        description="Most rows to return (default: the service's maxrec_default; never "
        "above maxrec_limit). A result cut short says `truncated`.",
    )
    format: Fmt | None = Field(
        default=None,
        description="Format of the answer; when left out, the Accept header chooses "
        f"({JSON_MEDIA}, {ARROW_MEDIA}, {PARQUET_MEDIA}), else JSON.",
    )
    partial: bool = Field(
        default=False,
        description="When some chunks have no live replica (workers down), answer from the "
        "others (`incomplete`, `missing_chunks`) instead of failing with 503.",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "query": "SELECT TOP 5 objectId, coord_ra, coord_dec FROM dp02.Object",
                    "lang": "adql",
                    "maxrec": 1000,
                    "format": "json",
                }
            ]
        }
    }


class ColumnInfo(BaseModel):
    name: str
    datatype: str = Field(description="Felis datatype of a catalog column, else the Arrow type.")
    unit: str = ""
    ucd: str = ""
    description: str = ""


class QueryResult(BaseModel):
    """A result as JSON (NaN and NULL are both ``null``)."""

    columns: list[ColumnInfo]
    rows: list[list[Any]]
    truncated: bool = Field(description="More rows existed than maxrec allowed.")
    query_id: int
    seconds: float
    incomplete: bool = Field(
        default=False, description="A partial result: some chunks had no live replica."
    )
    missing_chunks: list[int] = Field(
        default_factory=list, description="Those chunks (HEALPix NUNIQ ids)."
    )


def choose_format(requested: str | None, accept: str | None) -> str:
    """The answer's format: the body's ``format``, else the first supported type of the
    Accept header (by its q values), else JSON."""
    if requested:
        return requested
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept or "").split(",")):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media.lower() in FORMAT_OF and quality > 0:
            ranked.append((-quality, position, FORMAT_OF[media.lower()]))
    return min(ranked)[2] if ranked else "json"


@router.post(
    "/query",
    summary="Run a query; answer its rows as JSON, Arrow or Parquet",
    response_model=QueryResult,
    responses={
        200: {
            "content": {
                ARROW_MEDIA: {"schema": {"type": "string", "format": "binary"}},
                PARQUET_MEDIA: {"schema": {"type": "string", "format": "binary"}},
            },
            "description": "The result. Arrow and Parquet answers carry X-Query-Id, "
            "X-Truncated and X-Seconds headers, and the same in the schema metadata.",
        },
        400: {"description": "The query is wrong or cannot be answered (the reason)."},
    },
)
async def run_query(
    request: Request,
    body: QueryRequest,
    service: ServiceDep,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """Run the query (killed if the client goes away) and answer its result."""
    return await run_cancellable(
        request, service.spec, lambda cancel: answer(body, service, accept, cancel)
    )


def answer(body: QueryRequest, service: Service, accept: str | None, cancel: Cancel) -> Response:
    outcome = service.run(
        body.query,
        body.lang,
        maxrec=body.maxrec,
        owner=engine_owner("rest", cancel.caller),
        partial=body.partial,
        mode="rest",
        on_start=cancel.on_start,
    )
    cancel.rows = outcome.table.num_rows
    fmt = choose_format(body.format, accept)
    if fmt == "json":
        return Response(json_result(outcome), media_type=JSON_MEDIA)
    table = with_outcome_metadata(outcome)
    body_bytes = arrow_stream(table) if fmt == "arrow" else parquet_file(table)
    headers = {
        "X-Query-Id": str(outcome.query_id),
        "X-Truncated": "true" if outcome.truncated else "false",
        "X-Seconds": f"{outcome.seconds:.6f}",
        "X-Incomplete": "true" if outcome.missing_chunks else "false",
    }
    return Response(body_bytes, media_type=MEDIA_OF[fmt], headers=headers)


def with_outcome_metadata(outcome: Outcome) -> pa.Table:
    """The result table with ``truncated`` and ``query_id`` in its schema metadata (as
    :meth:`qserv_py.client.Client.query` gives them)."""
    metadata = dict(outcome.table.schema.metadata or {})
    metadata[b"truncated"] = b"true" if outcome.truncated else b"false"
    metadata[b"query_id"] = str(outcome.query_id).encode()
    metadata[b"incomplete"] = b"true" if outcome.missing_chunks else b"false"
    if outcome.missing_chunks:
        metadata[b"missing_chunks"] = ",".join(map(str, outcome.missing_chunks)).encode()
    return outcome.table.replace_schema_metadata(metadata)


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def parquet_file(table: pa.Table) -> bytes:
    """Parquet: the Arrow schema goes along (field metadata included), and the header
    astropy's ``Table.read`` takes units, descriptions and UCDs from."""
    metadata = dict(table.schema.metadata or {})
    metadata.update(astropy_parquet_metadata(table))
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink)
    return bytes(sink.getvalue())


def column_info(field: pa.Field) -> ColumnInfo:
    meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    return ColumnInfo(
        name=field.name,
        datatype=meta.get("datatype") or str(field.type),
        unit=meta.get("unit", ""),
        ucd=meta.get("ucd", ""),
        description=meta.get("description", ""),
    )


def json_values(column: pa.ChunkedArray) -> list[Any]:
    """A column's values for JSON: NaN and ±inf become None (JSON has neither)."""
    if pa.types.is_floating(column.type):
        bad = pc.invert(pc.is_finite(column))
        column = pc.if_else(bad, pa.scalar(None, column.type), column)
    return column.to_pylist()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def json_result(outcome: Outcome) -> bytes:
    table = outcome.table
    columns = [json_values(c) for c in table.columns]
    document = {
        "columns": [column_info(f).model_dump() for f in table.schema],
        "rows": [list(row) for row in zip(*columns, strict=True)] if columns else [],
        "truncated": outcome.truncated,
        "query_id": outcome.query_id,
        "seconds": round(outcome.seconds, 6),
        "incomplete": bool(outcome.missing_chunks),
        "missing_chunks": list(outcome.missing_chunks),
    }
    return json.dumps(document, default=_json_default, allow_nan=False).encode()


# --- catalogs ----------------------------------------------------------------------------------


class CatalogColumn(BaseModel):
    name: str
    datatype: str
    unit: str
    ucd: str
    description: str
    nullable: bool


class CatalogTable(BaseModel):
    name: str
    kind: str = Field(description="director, child or replicated")
    description: str
    rows: int = Field(description="Published rows (overlap copies not counted).")
    overlap_rows: int
    chunks: int = Field(description="Chunks holding rows of the table.")
    columns: list[CatalogColumn]


class Coverage(BaseModel):
    """The sky the catalog's chunks with rows cover."""

    moc: str = Field(
        description='A MOC in the ASCII serialisation ("order/ipix,ipix-ipix order/...")'
    )
    sky_fraction: float = Field(description="The fraction of the sphere it covers.")
    chunks: int = Field(description="Chunks with rows.")
    max_order: int | None = Field(description="The finest chunk order (None: no rows).")


class CatalogInfo(BaseModel):
    name: str
    description: str
    overlap_arcsec: float
    tables: list[CatalogTable]
    coverage: Coverage


def moc_ascii(chunks: Sequence[int]) -> tuple[str, float, int | None]:
    """The MOC of HEALPix cells given by NUNIQ ids (``4·4^order + ipix``): its ASCII
    serialisation (four sibling cells merged into their parent, runs as ``a-b``), the sky
    fraction it covers, and its finest order.

    >>> moc_ascii([16, 17, 18, 19, 4 * 4**2 + 40])[0]
    '0/0 2/40'
    >>> moc_ascii([4 * 4 + 5, 4 * 4 + 6, 4 * 4 + 7, 4 * 4 + 9])[0]
    '1/5-7,9'
    >>> moc_ascii([])
    ('', 0.0, None)
    """
    if not len(chunks):
        return "", 0.0, None
    orders, pixels = order_ipix(np.asarray(sorted(set(chunks)), dtype=np.int64))
    cells: dict[int, set[int]] = {}
    for order, ipix in zip(orders.tolist(), pixels.tolist(), strict=True):
        cells.setdefault(order, set()).add(ipix)
    finest = max(cells)
    for order in range(finest, 0, -1):  # merge complete groups of four siblings
        level = cells.get(order, set())
        parents = {p >> 2 for p in level}
        full = {p for p in parents if all((p << 2) + i in level for i in range(4))}
        if full:
            cells[order] = {p for p in level if p >> 2 not in full}
            cells.setdefault(order - 1, set()).update(full)
    parts, fraction = [], 0.0
    for order in sorted(cells):
        row = sorted(cells[order])
        if not row:
            continue
        fraction += len(row) / (12 * 4**order)
        runs, start = [], 0
        for i, ipix in enumerate(row):
            if i == 0 or ipix != row[i - 1] + 1:
                start = ipix
            if i + 1 == len(row) or row[i + 1] != ipix + 1:
                runs.append(f"{start}-{ipix}" if ipix > start else str(ipix))
        parts.append(f"{order}/{','.join(runs)}")
    return " ".join(parts), fraction, finest


def catalog_info(spec: ClusterSpec, name: str) -> CatalogInfo:
    stats = catalog_stats(spec, name)
    with connect(spec.czar, autocommit=True) as czar:
        catalog = get_catalog(czar, name)
    per_table = {t.name: t for t in stats.tables}
    partitioned = {t.sql_name for t in catalog.tables if t.partitioned}
    covered = {c.chunk_id for c in stats.chunks if c.rows > 0 and c.table in partitioned}
    moc, fraction, finest = moc_ascii(sorted(covered))
    tables = []
    for table in catalog.tables:
        counted = per_table[table.name]
        tables.append(
            CatalogTable(
                name=table.name,
                kind=table.kind.value,
                description=table.description,
                rows=counted.rows,
                overlap_rows=counted.overlap_rows,
                chunks=counted.chunks,
                columns=[
                    CatalogColumn(
                        name=c.name,
                        datatype=c.datatype,
                        unit=c.unit,
                        ucd=c.ucd,
                        description=c.description,
                        nullable=c.nullable,
                    )
                    for c in table.columns
                ],
            )
        )
    return CatalogInfo(
        name=catalog.name,
        description=catalog.description,
        overlap_arcsec=catalog.overlap_arcsec,
        tables=tables,
        coverage=Coverage(moc=moc, sky_fraction=fraction, chunks=len(covered), max_order=finest),
    )


@router.get("/catalogs", summary="Every catalog: tables, columns, counts, sky coverage")
def catalogs(service: ServiceDep) -> list[CatalogInfo]:
    return [catalog_info(service.spec, c.name) for c in list_catalogs(service.spec)]


@router.get(
    "/catalogs/{name}",
    summary="One catalog: tables, columns, counts, sky coverage",
    responses={404: {"description": "There is no such catalog."}},
)
def catalog(name: str, service: ServiceDep) -> CatalogInfo:
    return catalog_info(service.spec, name)


# --- queries -----------------------------------------------------------------------------------


class QueryStatus(BaseModel):
    id: int
    owner: str
    lang: str
    text: str
    status: Literal["queued", "running", "completed", "failed", "killed"]
    chunks_done: int
    chunks_total: int
    elapsed: float = Field(description="Seconds from start to finish, or to now while it runs.")
    rows: int | None
    truncated: bool
    error: str | None


def _status(info: QueryInfo) -> QueryStatus:
    return QueryStatus.model_validate(asdict(info))


@router.get("/queries", summary="Running and recent queries, newest first (yours, or all: admin)")
def queries(
    request: Request,
    service: ServiceDep,
    status: Annotated[
        Literal["queued", "running", "completed", "failed", "killed"] | None,
        Query(description="Only queries in this state (running: queued ones too)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
) -> list[QueryStatus]:
    caller = caller_of(request)
    mine = None if caller.admin else (caller.name,)
    if status in ACTIVE:
        found = list_queries(service.spec, active_only=True, limit=limit, of_user=mine)
        if status == "queued":
            found = [q for q in found if q.status == "queued"]
    elif status is not None:  # among the newest 1000
        newest = list_queries(service.spec, active_only=False, limit=1000, of_user=mine)
        found = [q for q in newest if q.status == status][:limit]
    else:
        found = list_queries(service.spec, active_only=False, limit=limit, of_user=mine)
    return [_status(q) for q in found]


def _query(service: ServiceDep, query_id: int, caller: Caller = ANONYMOUS_OPEN) -> QueryInfo:
    """The query's record, if ``caller`` may see it (its own, or any for an admin)."""
    try:
        info = get_query(service.spec, query_id)
    except QueryError as exc:  # get_query's only error: no such record
        raise UnknownQuery(f"there is no query {query_id}; GET /api/v1/queries lists them") from exc
    if not caller.admin:
        served, user = query_user(service.spec, info.owner)
        if not served or user != caller.name:
            raise Forbidden(f"query {query_id} belongs to another user")
    return info


@router.get(
    "/queries/{query_id}",
    summary="One query's state and progress",
    responses={404: {"description": "There is no such query."}},
)
def query(request: Request, query_id: int, service: ServiceDep) -> QueryStatus:
    return _status(_query(service, query_id, caller_of(request)))


@router.delete(
    "/queries/{query_id}",
    summary="Kill a running query and its worker statements",
    responses={
        404: {"description": "There is no such query."},
        409: {"description": "The query has already finished (completed, failed or killed)."},
    },
)
def kill(request: Request, query_id: int, service: ServiceDep) -> QueryStatus:
    """Kill the query: its statements on the workers and the czar are cancelled at once,
    and its client gets an error (QueryKilled). Answers the query's record, now killed.
    A user kills only their own queries; an admin any."""
    info = _query(service, query_id, caller_of(request))
    if info.status not in FINAL:
        try:
            kill_query(service.spec, query_id, reason="killed on request (REST)")
            return _status(get_query(service.spec, query_id))
        except QueryError:  # it finished meanwhile
            info = _query(service, query_id)
    raise QueryFinished(f"query {query_id} has already finished ({info.status}); nothing to kill")
