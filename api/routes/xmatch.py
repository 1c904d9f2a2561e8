"""Cross-match a table of targets with a catalog: ``POST /api/v1/xmatch``.

The targets come as a file part ``targets`` of a multipart/form-data POST (VOTable, CSV
with a header row, or Parquet, as TAP uploads) with the other parameters as form fields,
or as JSON: ``{"targets": {"ra": [...], "dec": [...], "id": [...]}, "radius": 1.0, ...}``
(columns as lists, or a list of row objects). Parameters:

- ``radius``: arcsec (required), at most the catalog's overlap;
- ``ra``, ``dec``: the targets' position columns (degrees; default ``ra`` and ``dec``);
- ``table``: the catalog's director table (default ``<default catalog>.Object``);
- ``columns``: the table's columns to return (comma-separated in a form; default its key
  and position); its key is always returned;
- ``best``: ``true`` for the nearest object of each target (ties: the smaller key), else
  every pair;
- ``format``: ``json`` (default), ``votable``, ``votable-td``, ``csv``, ``tsv``, ``parquet``
  (or a media type, as TAP's RESPONSEFORMAT); ``maxrec``: most rows.

The answer holds the targets' columns, ``target_row`` (the target's row number in the
upload, from 0), the table's columns and ``distance`` (arcsec), ordered by target and
distance. It runs as the ADQL cross-match

    SELECT t.*, o.<columns>, DISTANCE(POINT(t.ra, t.dec), POINT(o.ra, o.dec)) * 3600
    FROM TAP_UPLOAD.targets t JOIN <table> o
      ON CONTAINS(POINT(o.ra, o.dec), CIRCLE(t.ra, t.dec, radius / 3600.0)) = 1

(every pair is found on the worker holding the object's chunk, exactly once), with a
merge on the czar that keeps, for ``best=true``, the first row of each target by
distance and key (``DISTINCT ON``) over the pairs of all chunks: the global nearest.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, replace
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from qserv_py.api import formats
from qserv_py.api.deps import ServiceDep
from qserv_py.api.forms import read_body, read_form
from qserv_py.api.service import Service
from qserv_py.api.uploads import read_table
from qserv_py.errors import QueryRefused, UnknownName, UploadError
from qserv_py.exec.plan import ExecPlan, ResultColumn
from qserv_py.exec.uploads import execute
from qserv_py.schema.model import TableKind

router = APIRouter(prefix="/api/v1", tags=["REST"])

ROW = "target_row"
DISTANCE = "distance"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


@dataclass(frozen=True)
class XmatchRequest:
    targets: pa.Table
    radius_arcsec: float
    ra: str = "ra"
    dec: str = "dec"
    table: str | None = None
    columns: tuple[str, ...] | None = None
    best: bool = False
    format: str | None = None
    maxrec: int | None = None


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise QueryRefused(f"{name}={value!r} is not a boolean; use true or false")


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise QueryRefused(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise QueryRefused(f"{name}={value!r} is not a finite number")
    return number


def _request(values: dict[str, Any], targets: pa.Table) -> XmatchRequest:
    unknown = set(values) - {
        "radius",
        "ra",
        "dec",
        "table",
        "columns",
        "best",
        "format",
        "maxrec",
        "targets",
    }
    if unknown:
        raise QueryRefused(
            f"unknown parameters {sorted(unknown)}; known: targets, radius, ra, dec, table, "
            "columns, best, format, maxrec"
        )
    if values.get("radius") in (None, ""):
        raise QueryRefused("radius is missing: give the match radius in arcsec")
    radius = _number(values["radius"], "radius")
    if radius <= 0:
        raise QueryRefused(f"radius={radius:g} must be positive (arcsec)")
    columns = values.get("columns")
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    maxrec = values.get("maxrec")
    return XmatchRequest(
        targets,
        radius,
        str(values.get("ra") or "ra"),
        str(values.get("dec") or "dec"),
        str(values["table"]) if values.get("table") else None,
        tuple(str(c) for c in columns) if columns else None,
        _flag(values.get("best", False), "best"),
        str(values["format"]) if values.get("format") else None,
        int(_number(maxrec, "maxrec")) if maxrec not in (None, "") else None,
    )


def _json_targets(value: Any) -> pa.Table:
    """A JSON table (columns as lists, or a list of rows) as the uploads reader reads it."""
    try:
        if isinstance(value, dict):
            table = pa.table(value)
        elif isinstance(value, list) and all(isinstance(r, dict) for r in value):
            table = pa.Table.from_pylist(value)
        else:
            raise UploadError(
                "targets must be a table: an object of columns "
                '({"ra": [...], "dec": [...]}) or a list of row objects'
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise UploadError(f"targets: not a table of values: {exc}") from None
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return read_table(sink.getvalue(), "targets")


async def xmatch_request(request: Request) -> XmatchRequest:
    """The parameters and targets of a request: multipart form, or JSON."""
    kind = request.headers.get("content-type", "")
    limit = request.app.state.service.settings.upload_max_file_bytes
    if kind.startswith("application/json"):
        try:
            body = json.loads(await read_body(request, limit))
        except ValueError as exc:
            raise QueryRefused(f"the JSON body does not parse: {exc}") from None
        if not isinstance(body, dict) or "targets" not in body:
            raise QueryRefused('the JSON body must be an object with "targets" and "radius"')
        return _request(body, _json_targets(body["targets"]))
    if not kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise QueryRefused(
            "send the targets as multipart/form-data (a file part named targets) or as JSON"
        )
    form = await read_form(request, limit, max_files=10, max_fields=100)
    values: dict[str, Any] = {}
    data: bytes | None = None
    for name, item in form.multi_items():
        if isinstance(item, UploadFile):
            if name != "targets":
                raise QueryRefused(f"unexpected file part {name!r}; send the targets as targets")
            data = await item.read()
        else:
            values[name.lower()] = item
    if data is None:
        if isinstance(values.get("targets"), str):
            data = values["targets"].encode()
        else:
            raise QueryRefused("targets are missing: send them as a file part named targets")
    values.pop("targets", None)
    return _request(values, read_table(data, "targets"))


XmatchDep = Annotated[XmatchRequest, Depends(xmatch_request)]


def _identifier(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise QueryRefused(f"{what} {value!r} is not a name (letters, digits and _)")
    return value


def cross_match_plan(service: Service, req: XmatchRequest) -> tuple[ExecPlan, str]:
    """The plan of a cross-match request, and its ADQL."""
    settings = service.settings
    targets = req.targets
    if targets.num_rows > settings.upload_max_rows:
        raise UploadError(
            f"targets: {targets.num_rows:,} rows; the limit is {settings.upload_max_rows:,} "
            "rows (setting upload_max_rows): send fewer targets"
        )
    if targets.nbytes > settings.upload_max_bytes:
        raise UploadError(
            f"targets: {targets.nbytes:,} bytes as decoded; the limit is "
            f"{settings.upload_max_bytes:,} bytes (setting upload_max_bytes): send fewer "
            "targets or columns"
        )
    names = [f.name for f in targets.schema]
    ra, dec = (_identifier(c, "column").lower() for c in (req.ra, req.dec))
    for column, what in ((ra, "ra"), (dec, "dec")):
        if column not in names:
            raise UnknownName(
                f"the targets have no column {column} (for {what}); their columns: "
                f"{', '.join(names)}; name the position columns with ra= and dec="
            )
    if ROW in names:
        raise UploadError(f"targets: the column name {ROW} is reserved; rename that column")
    table_name = req.table or f"{settings.default_catalog}.Object"
    catalog_name, _, bare = table_name.rpartition(".")
    catalog, model = service.client.context.catalogs.resolve(
        _identifier(bare, "table"), _identifier(catalog_name, "catalog") if catalog_name else None
    )
    if model.kind is not TableKind.DIRECTOR:
        raise QueryRefused(
            f"table {catalog.name}.{model.name} is a {model.kind.value} table; cross-match "
            "with a director table (one with positions, such as Object)"
        )
    key, o_ra, o_dec = model.key_column, model.ra_column, model.dec_column
    wanted = list(req.columns) if req.columns else [c for c in (key, o_ra, o_dec) if c]
    wanted = [_identifier(c, "column") for c in wanted]
    if key and key.lower() not in {c.lower() for c in wanted}:
        wanted.insert(0, key)
    upload = targets.append_column(ROW, pa.array(range(targets.num_rows), pa.int64()))
    radius = req.radius_arcsec / 3600
    select = ", ".join(
        [f"t.{c}" for c in names]
        + [f"t.{ROW}"]
        + [f"o.{c}" for c in wanted]
        + [f'DISTANCE(POINT(t.{ra}, t.{dec}), POINT(o.{o_ra}, o.{o_dec})) * 3600 AS "{DISTANCE}"']
    )
    text = (
        f"SELECT {select} FROM TAP_UPLOAD.targets AS t JOIN {catalog.name}.{model.name} AS o "
        f"ON CONTAINS(POINT(o.{o_ra}, o.{o_dec}), CIRCLE(t.{ra}, t.{dec}, {radius!r})) = 1"
    )
    plan = service.client.plan(text, "adql", uploads={"targets": upload}, oracle=False)
    row, dist = len(names), len(plan.columns) - 1
    separation = ResultColumn(
        DISTANCE, "arcsec", "pos.angDistance", "angular separation of the target and the object"
    )
    plan = replace(plan, columns=(*plan.columns[:dist], separation))
    lowered = [c.lower() for c in wanted]
    order = [row, dist] + ([row + 1 + lowered.index(key.lower())] if key else [])
    out = [plan.columns[i].name for i in order]
    quoted = ", ".join('"' + n.replace('"', '""') + '"' for n in out)
    merge = plan.merge_sql.strip().rstrip(";")
    if req.best:
        worker = plan.worker_sql.strip().rstrip(";")
        worker_order = ", ".join(f"c{i}" for i in order)
        plan = replace(
            plan,
            worker_sql=f"SELECT DISTINCT ON (c{row}) * FROM ({worker}) AS qserv_pairs "
            f"ORDER BY {worker_order}",
            merge_sql=f'SELECT DISTINCT ON ("{out[0]}") * FROM ({merge}) AS qserv_pairs '
            f"ORDER BY {quoted}",
            concatenate=False,
            limit=None,
        )
    else:
        plan = replace(
            plan,
            merge_sql=f"SELECT * FROM ({merge}) AS qserv_pairs ORDER BY {quoted}",
            concatenate=False,
            limit=None,
        )
    return plan, text


@router.post(
    "/xmatch",
    summary="Cross-match targets with a catalog table: all pairs, or the nearest object",
    responses={
        200: {"description": "The pairs (or best matches), in the requested format."},
        400: {"description": "Bad targets or parameters, or a radius over the overlap."},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["targets", "radius"],
                        "properties": {
                            "targets": {
                                "type": "string",
                                "format": "binary",
                                "description": "VOTable, CSV (header row) or Parquet",
                            },
                            "radius": {"type": "number", "description": "arcsec"},
                            "ra": {"type": "string", "default": "ra"},
                            "dec": {"type": "string", "default": "dec"},
                            "table": {"type": "string", "example": "dp02.Object"},
                            "columns": {"type": "string", "example": "objectId,coord_ra"},
                            "best": {"type": "boolean", "default": False},
                            "format": {"type": "string", "default": "json"},
                            "maxrec": {"type": "integer"},
                        },
                    }
                },
                "application/json": {
                    "schema": {"type": "object", "required": ["targets", "radius"]},
                    "example": {
                        "targets": {"id": [1, 2], "ra": [10.0, 10.1], "dec": [-5.0, -5.2]},
                        "radius": 1.0,
                        "best": True,
                    },
                },
            },
            "required": True,
        }
    },
)
def xmatch(req: XmatchDep, service: ServiceDep) -> Response:
    fmt = formats.parse_format(req.format or "json")
    plan, text = cross_match_plan(service, req)
    result = execute(
        service.spec,
        plan,
        text=text,
        lang="adql",
        owner="xmatch",
        timeout_s=service.settings.sync_timeout_s,
        max_rows=service.maxrec(req.maxrec, "rest"),
    )
    body = formats.render(result.table, fmt, truncated=result.truncated)
    return Response(body, media_type=fmt.media_type, headers={"X-Query-Id": str(result.query_id)})
