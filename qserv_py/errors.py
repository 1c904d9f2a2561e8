"""The one error hierarchy of qserv_py.

Every error a user or operator can see derives from :class:`QservError`. Each class
declares once the HTTP status the API answers with; the message says what was wrong,
where, and what to do about it. Domain code raises these, never ``HTTPException``.
"""

from __future__ import annotations

from pathlib import Path


class QservError(Exception):
    """Base of every qserv_py error."""

    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- configuration and set-up -------------------------------------------------------


class ConfigError(QservError):
    """A setting, a cluster file or a command-line option is wrong."""

    http_status = 400


class ClusterFileError(ConfigError):
    """A cluster file cannot be read or does not describe a cluster."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"cluster file {path}: {problem}")
        self.path = Path(path)


# --- the local cluster ---------------------------------------------------------------


class ClusterError(QservError):
    """The cluster (local or remote) cannot do what was asked."""

    http_status = 503


class NoPostgresBinaries(ClusterError):
    """No PostgreSQL server binaries were found."""


class ClusterDirInUse(ClusterError):
    """``cluster init`` on a directory that already holds a cluster."""


class HalfInitialisedCluster(ClusterError):
    """A cluster directory whose ``init`` did not finish."""


class NotACluster(ClusterError):
    """A directory that holds no cluster."""


class PortInUse(ClusterError):
    """A port recorded for an instance is taken by another process."""


class InstanceUnreachable(ClusterError):
    """A czar or worker database cannot be reached."""


# --- catalogs and schemas -------------------------------------------------------------


class SchemaError(QservError):
    """A schema file is invalid; the message names the file, table and column."""

    http_status = 400

    def __init__(
        self,
        path: Path | str,
        problem: str,
        *,
        table: str | None = None,
        column: str | None = None,
    ) -> None:
        where = str(path)
        if table is not None:
            where += f", table {table}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.table = table
        self.column = column


class CatalogError(QservError):
    """A catalog operation cannot be done (exists already, does not exist, ...)."""

    http_status = 409


class UnknownCatalog(CatalogError):
    http_status = 404


class CatalogExists(CatalogError):
    pass


class UnknownTable(CatalogError):
    """A ``catalog.table`` name that no catalog has (VOSI ``/tap/tables/{table}``)."""

    http_status = 404


class MetadataError(QservError):
    """The czar metadata is missing or of a version this code cannot use."""

    http_status = 503


# --- loading ------------------------------------------------------------------------------


class LoadError(QservError):
    """A load cannot proceed."""

    http_status = 409


class LoadInputError(LoadError):
    """The input files are wrong; the message names file, column and row."""

    http_status = 400


class UnknownLoad(LoadError):
    http_status = 404


class LoadBusy(LoadError):
    """Another process is running this load."""


# --- sky regions ----------------------------------------------------------------------


class RegionError(QservError):
    """A sky region (cone, box, polygon, ellipse, ranges) is invalid or unsupported."""

    http_status = 400


# --- queries ------------------------------------------------------------------------------


class QueryError(QservError):
    """A query is wrong or cannot be answered; the message says why and what to change."""

    http_status = 400


class QueryParseError(QueryError):
    """The query text does not parse; carries the position and a caret line."""

    def __init__(self, message: str, *, text: str, line: int, column: int) -> None:
        lines = text.splitlines() or [""]
        source = lines[line - 1] if 0 < line <= len(lines) else ""
        caret = " " * max(column - 1, 0) + "^"
        super().__init__(f"{message} (line {line}, column {column})\n  {source}\n  {caret}")
        self.line = line
        self.column = column


class UnknownName(QueryError):
    """A table, column or function name that the catalog does not have."""


class QueryRefused(QueryError):
    """A query that chunk-local data cannot answer correctly (say why and how to rewrite)."""


class UploadError(QueryError):
    """A TAP upload (``UPLOAD=name,param:part``) cannot be used: the message names the
    upload, says what is wrong and what to send instead."""

    http_status = 400


class QueryLimitExceeded(QueryRefused):
    """A query beyond a planning limit (text length, expression depth, number of terms):
    the message names the limit, its value and the setting that sets it."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class QuerySqlError(QueryError):
    """PostgreSQL refused the SQL of the user's query (a data exception such as a division
    by zero, an operator that does not exist, a program limit): the user's mistake, not a
    worker's failure. Carries PostgreSQL's SQLSTATE; see :mod:`qserv_py.exec.sqlstate`."""

    def __init__(self, message: str, *, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class QueryTimeout(QueryError):
    http_status = 408


class QueryKilled(QueryError):
    http_status = 409


class ResultTooLarge(QueryError):
    """A result over a byte limit (settings ``result_max_bytes_*``): the query was
    stopped where its rows were produced; the message names the limit."""

    http_status = 400

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class ServiceMemoryFull(QservError):
    """A service process has no memory to spare under its ceiling (setting
    ``service_max_memory_mb``) for a query's result or an upload; try again later."""

    http_status = 503


class LimitExceeded(QservError):
    """A per-user limit (concurrent queries or jobs, result bytes a day) is reached; the
    message names the limit and its setting."""

    http_status = 429


class NotAuthenticated(QservError):
    """A route that needs a user was called without a valid bearer token."""

    http_status = 401


class Forbidden(QservError):
    """The user may not do this (another user's job or query, an admin route)."""

    http_status = 403


class UnknownQuery(QueryError):
    """A query id that the czar has no record of."""

    http_status = 404


class QueryFinished(QueryError):
    """A kill of a query that has already finished."""

    http_status = 409


class WorkerError(QservError):
    """A worker failed while running its part of a query."""

    http_status = 502


class WorkerBusy(WorkerError):
    """A worker is short of a resource (out of memory, disk or connections: SQLSTATE class
    53); trying again later may work."""

    http_status = 503


class ChunksUnavailable(QservError):
    """Some chunks a query reads have no live worker: the message names the chunks and
    the workers that are down; ``partial=true`` answers from the other chunks instead."""

    http_status = 503

    def __init__(self, message: str, *, chunks: tuple[int, ...], workers: tuple[str, ...]):
        super().__init__(message)
        self.chunks, self.workers = chunks, workers


# --- async jobs (UWS) -----------------------------------------------------------------


class JobError(QservError):
    """A UWS job request with a wrong value (PHASE=FOO, an EXECUTIONDURATION that is no
    number, a DESTRUCTION that is no ISO 8601 time)."""

    http_status = 400


class UnknownJob(JobError):
    """A job (or a resource of it, like the result of a job that has none) that does not
    exist."""

    http_status = 404


class JobStateError(JobError):
    """A request the job's phase does not allow (changing the parameters of a job that
    has run, running a finished job)."""

    http_status = 409


# --- cluster operations: workers coming and going (qserv_py.ops.workers) -------------------


class WorkerOpError(QservError):
    """A worker operation that the worker's state, or the cluster's, does not allow (remove
    a worker that still holds chunks, drain the last worker, ...)."""

    http_status = 409


class UnknownWorker(WorkerOpError):
    """A worker name that neither the czar nor the cluster file knows."""

    http_status = 404


class BadWorker(ConfigError):
    """A server that cannot become a worker: an invalid DSN, a server that cannot be
    reached or is unfit (old version, no prepared transactions, a database in use)."""
