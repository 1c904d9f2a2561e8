"""Admin routes (``/api/v1/admin``): bulk loads over HTTP, behind a bearer token.

Every route needs ``Authorization: Bearer <admin_token>``; without a configured token
they answer 401 to everybody.

The loader (:func:`qserv_py.loaders.load.load`) reads every file of a load in one call:
it surveys them all (checks, and the sky layout of a first director load) before it
creates the load transaction and stages rows. So a load over HTTP is a *spooled* load:

1. ``POST /loads`` opens it (catalog, table, options) — an id, no transaction yet;
2. ``POST /loads/{id}/files`` stores uploaded Parquet files in the spool, checked at
   once against the table's columns (call it as often as needed);
3. ``POST /loads/{id}/publish`` runs the load on the spooled files: check, stage,
   publish — the load transaction (``txn``) is made here. It runs within the request.
   If it fails after the transaction was made, publishing again resumes it (when it can
   be resumed), or it must be aborted;
4. ``POST /loads/{id}/abort`` drops what it staged (the transaction's staging, if any)
   and the spooled files.

``GET /loads`` lists them; ``GET /txns`` lists every load transaction the czar records
(those of ``qserv-py load`` too).
"""

from __future__ import annotations

import fcntl
import hmac
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, UploadFile
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from qserv_py.api.deps import ServiceDep
from qserv_py.cluster.catalogs import get_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings, default_cluster_dir
from qserv_py.errors import LoadBusy, LoadError, LoadInputError, QservError, UnknownLoad
from qserv_py.loaders import txn as txns
from qserv_py.loaders.inputs import plan_inputs
from qserv_py.loaders.load import LoadOptions, load, resume
from qserv_py.loaders.publish import abort
from qserv_py.schema.model import Table
from qserv_py.sky.layout import DEFAULT_MAX_ORDER, DEFAULT_MAX_ROWS_PER_CHUNK, DEFAULT_MIN_ORDER

# --- the token ---------------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="admin token",
    description="The service's admin_token setting (QSERV_ADMIN_TOKEN).",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def require_admin(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse (401) unless the request carries the configured admin token."""
    token = service.settings.admin_token
    if not token:
        raise HTTPException(
            401, "the admin routes are disabled: no admin_token is configured", _CHALLENGE
        )
    if credentials is None:
        raise HTTPException(401, "give the admin token: Authorization: Bearer <token>", _CHALLENGE)
    if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise HTTPException(401, "wrong admin token", _INVALID)


router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={401: {"description": "No admin token, or a wrong one."}},
)


# --- models ------------------------------------------------------------------------------------


class Options(BaseModel):
    """How the rows are laid out and placed (as ``qserv-py load``'s options)."""

    replication: int | None = Field(
        default=None, ge=1, description="Workers per chunk (default: the catalog's level)."
    )
    max_rows_per_chunk: int = Field(
        default=DEFAULT_MAX_ROWS_PER_CHUNK,
        ge=1,
        description="Adaptive layout: a pixel with more rows is split (first director load).",
    )
    min_order: int = Field(default=DEFAULT_MIN_ORDER, ge=0, le=29, description="Coarsest order.")
    max_order: int = Field(default=DEFAULT_MAX_ORDER, ge=0, le=29, description="Finest order.")
    order: int | None = Field(
        default=None, ge=0, le=29, description="One fixed chunk order instead of adaptive."
    )
    ignore_extra: bool = Field(default=False, description="Skip columns not in the table.")

    def loader_options(self) -> LoadOptions:
        return LoadOptions(
            publish=True,
            ignore_extra=self.ignore_extra,
            replication=self.replication,
            max_rows_per_chunk=self.max_rows_per_chunk,
            min_order=self.min_order,
            max_order=self.max_order,
            fixed_order=self.order,
        )


class LoadStart(BaseModel):
    catalog: str = Field(description="An existing catalog.")
    table: str = Field(description="One of its tables.")
    options: Options = Field(default_factory=Options)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"catalog": "dp02", "table": "Object", "options": {"max_rows_per_chunk": 500000}}
            ]
        }
    }


class SpooledFile(BaseModel):
    name: str = Field(description="The uploaded file's name.")
    size: int
    rows: int


LoadState = Literal["open", "loading", "published", "failed", "aborted"]


class Load(BaseModel):
    """A spooled load."""

    id: str
    catalog: str
    table: str
    options: Options
    state: LoadState = Field(
        description="open (files may be added), loading (publish is running), published, "
        "failed (see error; publish again to resume, or abort), aborted"
    )
    files: list[SpooledFile] = Field(default_factory=list)
    txn: int | None = Field(default=None, description="The load transaction, once made.")
    txn_state: str | None = Field(default=None, description="The transaction's state.")
    rows: int | None = None
    overlap_rows: int | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class Txn(BaseModel):
    """A load transaction as the czar records it."""

    id: int
    catalog: str
    table: str
    state: str
    rows: int
    overlap_rows: int
    files: int
    files_done: int
    error: str | None
    created_at: datetime
    updated_at: datetime


# --- the spool ---------------------------------------------------------------------------------

LoadId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{12}$", description="The load's id.")]


def spool_root(settings: Settings) -> Path:
    """Where uploaded files wait for their load: ``load-spool`` beside the results
    directory (see the ``results_dir`` setting)."""
    if settings.results_dir is not None:
        return settings.results_dir.parent / "load-spool"
    if settings.cluster.is_dir():
        return settings.cluster.parent / "load-spool"
    return default_cluster_dir().parent / "load-spool"


class Spool:
    """Spooled loads: a directory each, with ``load.json`` (its :class:`Load`) and
    ``files/`` (the uploaded Parquet files)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dir(self, load_id: str) -> Path:
        return self.root / load_id

    def files_dir(self, load_id: str) -> Path:
        return self.dir(load_id) / "files"

    def create(self, catalog: str, table: str, options: Options) -> Load:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        load_id = secrets.token_hex(6)
        self.files_dir(load_id).mkdir(parents=True)
        now = datetime.now(UTC)
        record = Load(
            id=load_id,
            catalog=catalog,
            table=table,
            options=options,
            state="open",
            created_at=now,
            updated_at=now,
        )
        self.save(record)
        return record

    def get(self, load_id: str) -> Load:
        path = self.dir(load_id) / "load.json"
        if not path.exists():
            raise UnknownLoad(f"no load {load_id}; GET /api/v1/admin/loads lists them")
        return Load.model_validate_json(path.read_text())

    def save(self, record: Load) -> None:
        record.updated_at = datetime.now(UTC)
        path = self.dir(record.id) / "load.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(record.model_dump_json(indent=1))
        os.replace(temporary, path)

    def all(self) -> list[Load]:
        if not self.root.is_dir():
            return []
        found = [Load.model_validate_json(p.read_text()) for p in self.root.glob("*/load.json")]
        return sorted(found, key=lambda r: r.created_at)

    def paths(self, record: Load) -> list[Path]:
        """The spooled files, in the order they were added."""
        return sorted(p.resolve() for p in self.files_dir(record.id).glob("*.parquet"))

    def drop_files(self, record: Load) -> None:
        shutil.rmtree(self.files_dir(record.id), ignore_errors=True)

    @contextmanager
    def locked(self, load_id: str) -> Iterator[Load]:
        """The load, held by this request until the block ends (LoadBusy if another
        request holds it)."""
        self.get(load_id)  # UnknownLoad if there is none
        with (self.dir(load_id) / "lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LoadBusy(
                    f"load {load_id} is busy: another request works on it; wait for it"
                ) from None
            yield self.get(load_id)  # as the last holder left it


def _spool(service: ServiceDep) -> Spool:
    return Spool(spool_root(service.settings))


SpoolDep = Annotated[Spool, Depends(_spool)]


def _table(spec: ClusterSpec, catalog_name: str, table_name: str) -> tuple[str, Table]:
    """The catalog's spelling and the table (UnknownCatalog, or LoadError if no table)."""
    with connect(spec.czar, autocommit=True) as czar:
        catalog = get_catalog(czar, catalog_name)
    try:
        return catalog.name, catalog.table(table_name)
    except KeyError:
        known = ", ".join(t.name for t in catalog.tables)
        raise LoadError(
            f"catalog {catalog.name} has no table {table_name}; its tables: {known}"
        ) from None


def _find_txn(spec: ClusterSpec, spool: Spool, record: Load) -> int | None:
    """The load transaction made from the load's spooled files, if one was made."""
    folder = spool.files_dir(record.id).resolve()
    for found in reversed(txns.list_txns(spec, record.catalog)):
        if found.files and all(Path(f.path).parent == folder for f in found.files):
            return found.id
    return None


def _with_txn_state(spec: ClusterSpec, records: list[Load]) -> list[Load]:
    with_txn = [r for r in records if r.txn is not None]
    if with_txn:
        with connect(spec.czar, autocommit=True) as czar:
            for r in with_txn:
                assert r.txn is not None
                try:
                    r.txn_state = txns.get_txn(czar, r.txn).state
                except UnknownLoad:
                    r.txn_state = None
    return records


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


# --- routes ------------------------------------------------------------------------------------


@router.post("/loads", status_code=201, summary="Open a load of Parquet files into a table")
def start_load(body: LoadStart, service: ServiceDep, spool: SpoolDep) -> Load:
    catalog, table = _table(service.spec, body.catalog, body.table)
    workers = len(service.spec.workers)
    if body.options.replication is not None and body.options.replication > workers:
        raise LoadError(
            f"replication {body.options.replication} needs that many workers; the cluster "
            f"has {workers}"
        )
    if body.options.min_order > body.options.max_order:
        raise LoadError("min_order must not be above max_order")
    return spool.create(catalog, table.name, body.options)


@router.get("/loads", summary="Spooled loads, oldest first")
def loads(service: ServiceDep, spool: SpoolDep) -> list[Load]:
    return _with_txn_state(service.spec, spool.all())


@router.get("/loads/{load_id}", summary="One spooled load")
def get_load(load_id: LoadId, service: ServiceDep, spool: SpoolDep) -> Load:
    return _with_txn_state(service.spec, [spool.get(load_id)])[0]


@router.post(
    "/loads/{load_id}/files",
    summary="Add Parquet files to an open load (multipart, field `files`)",
    responses={400: {"description": "A file is not Parquet, or does not fit the table."}},
)
def add_files(
    load_id: LoadId,
    files: Annotated[list[UploadFile], File(description="One or more Parquet files.")],
    service: ServiceDep,
    spool: SpoolDep,
) -> Load:
    """Each file is stored, then checked against the table's columns (names, types,
    non-nullable columns). If one is refused, none of this request's files is kept."""
    with spool.locked(load_id) as record:
        if record.state != "open":
            raise LoadError(f"load {load_id} is {record.state}; files can only be added while open")
        _, table = _table(service.spec, record.catalog, record.table)
        folder = spool.files_dir(load_id)
        stored: list[Path] = []
        added: list[SpooledFile] = []
        try:
            for upload in files:
                name = upload.filename or f"part-{len(record.files) + len(added)}.parquet"
                number = len(record.files) + len(added)
                safe = _SAFE.sub("_", Path(name).name).removesuffix(".parquet")
                target = folder / f"{number:05d}-{safe}.parquet"
                with target.open("wb") as out:
                    shutil.copyfileobj(upload.file, out, 1 << 20)
                stored.append(target)
                try:
                    (planned,) = plan_inputs(
                        table, [target], ignore_extra=record.options.ignore_extra
                    )
                except LoadInputError as exc:
                    raise LoadInputError(exc.message.replace(str(target), name)) from None
                added.append(SpooledFile(name=name, size=planned.size, rows=planned.rows))
        except BaseException:
            for path in stored:
                path.unlink(missing_ok=True)
            raise
        record.files.extend(added)
        record.error = None
        spool.save(record)
        return record


@router.post(
    "/loads/{load_id}/publish",
    summary="Run the load on its files and publish it (within the request)",
    responses={
        400: {"description": "The files' values are wrong (file, column, row named)."},
        409: {"description": "The load cannot be published (see the message)."},
    },
)
def publish_load(load_id: LoadId, service: ServiceDep, spool: SpoolDep) -> Load:
    """Check, stage and publish the spooled files in one load transaction; answer the
    load, published. Publishing a published load answers it again."""
    spec = service.spec
    with spool.locked(load_id) as record:
        if record.state == "published":
            return _with_txn_state(spec, [record])[0]
        if record.state == "aborted":
            raise LoadError(f"load {load_id} was aborted; open a new load")
        paths = spool.paths(record)
        if not paths:
            raise LoadInputError(
                f"load {load_id} has no files: add Parquet files first (POST .../files)"
            )
        if record.txn is None:  # a publish whose process died may have made one
            record.txn = _find_txn(spec, spool, record)
        record.state = "loading"
        spool.save(record)
        try:
            if record.txn is None:
                result = load(
                    spec, record.catalog, record.table, paths, record.options.loader_options()
                )
            else:
                result = resume(spec, record.txn, force_publish=True)
        except BaseException as exc:
            record.txn = record.txn if record.txn is not None else _find_txn(spec, spool, record)
            record.state = "failed" if record.txn is not None else "open"
            record.error = exc.message if isinstance(exc, QservError) else repr(exc)
            spool.save(record)
            raise
        record.txn, record.rows, record.overlap_rows = result.txn, result.rows, result.overlap_rows
        record.state = "published" if result.state == "published" else "failed"
        record.error = None
        if record.state == "published":
            spool.drop_files(record)
        spool.save(record)
        return _with_txn_state(spec, [record])[0]


@router.post(
    "/loads/{load_id}/abort",
    summary="Drop what the load staged and its spooled files",
    responses={409: {"description": "The load was published."}},
)
def abort_load(load_id: LoadId, service: ServiceDep, spool: SpoolDep) -> Load:
    spec = service.spec
    with spool.locked(load_id) as record:
        if record.state == "published":
            raise LoadError(
                f"load {load_id} was published (txn {record.txn}); it cannot be aborted"
            )
        if record.state != "aborted":
            if record.txn is None:
                record.txn = _find_txn(spec, spool, record)
            if record.txn is not None:
                abort(spec, record.txn)
            spool.drop_files(record)
            record.state = "aborted"
            spool.save(record)
        return _with_txn_state(spec, [record])[0]


@router.get("/txns", summary="Every load transaction the czar records (CLI loads too)")
def load_transactions(service: ServiceDep, catalog: str | None = None) -> list[Txn]:
    return [
        Txn(
            id=t.id,
            catalog=t.catalog,
            table=t.table,
            state=t.state,
            rows=t.rows,
            overlap_rows=t.overlap_rows,
            files=len(t.files),
            files_done=sum(f.done for f in t.files),
            error=t.error,
            created_at=t.created_at,
            updated_at=t.updated_at,
        )
        for t in txns.list_txns(service.spec, catalog)
    ]
