"""What the routes share: the cluster, the settings, a query client, and one way to run a
query with the service's limits.

The engine is synchronous (threads and psycopg pools, see ``qserv_py.exec.dispatch``); the
routes that run queries are plain ``def`` endpoints, which FastAPI runs in its thread pool.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import psycopg
import pyarrow as pa

from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec, read_cluster_file
from qserv_py.config import Settings
from qserv_py.errors import InstanceUnreachable, QueryRefused, ResultTooLarge
from qserv_py.exec import memory
from qserv_py.exec import uploads as upload_tables
from qserv_py.exec.dispatch import close_pools
from qserv_py.exec.uploads import execute
from qserv_py.query.guard import PlanLimits

if TYPE_CHECKING:
    from qserv_py.api.uploads import Upload

log = logging.getLogger(__name__)

LANGS = {
    "adql": "adql",
    "adql-2.0": "adql",
    "adql-2.1": "adql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "qserv": "qserv",
    "mysql": "qserv",
}


@dataclass(frozen=True)
class Outcome:
    """A query's result as the service returns it."""

    #: the rows, with unit/ucd/description (and datatype) in each field's metadata
    table: pa.Table
    #: more rows existed than MAXREC allowed (TAP: QUERY_STATUS=OVERFLOW)
    truncated: bool
    query_id: int
    seconds: float
    #: (name, value) INFO elements a VOTable result carries besides QUERY_STATUS
    info: tuple[tuple[str, str], ...] = field(default=())
    #: chunks a partial query left out (no live replica): the result is incomplete
    missing_chunks: tuple[int, ...] = ()


def incomplete_info(missing: tuple[int, ...]) -> tuple[tuple[str, str], ...]:
    """The INFO of a partial result: which chunks (HEALPix NUNIQ ids) it lacks."""
    if not missing:
        return ()
    chunks = " ".join(map(str, missing))
    return (("QUERY_INCOMPLETE", f"no live replica of chunks (HEALPix NUNIQ) {chunks}"),)


def language(value: str | None) -> str:
    """The engine's name of a TAP ``LANG`` value (case-insensitive; ADQL by default)."""
    key = (value or "ADQL").strip().lower()
    if key not in LANGS:  # a versioned name from the capabilities: PostgreSQL-1.0, Qserv-1.0
        key = re.sub(r"-[0-9][0-9.]*$", "", key)
    if key not in LANGS:
        raise QueryRefused(
            f"LANG={value!r} is not supported; use ADQL (or ADQL-2.1), PostgreSQL or Qserv"
        )
    return LANGS[key]


class Service:
    """One per process (made in the app's lifespan)."""

    def __init__(self, settings: Settings, spec: ClusterSpec | None = None) -> None:
        self.settings = settings
        memory.configure(settings.service_max_memory_mb)
        spec = spec if spec is not None else read_cluster_file(Path(settings.cluster))
        self.client = Client(
            spec,
            settings.default_catalog,
            director_index_memory_keys=settings.director_index_memory_keys,
            limits=PlanLimits.from_settings(settings),
        )
        try:  # upload tables a crashed process left on the workers
            upload_tables.sweep(self.spec)
        except Exception as exc:  # never keep the service from starting
            log.warning("cannot sweep old upload tables: %s", exc)

    @property
    def spec(self) -> ClusterSpec:
        """The cluster as the query client knows it: the cluster file is read again when
        the czar's workers change (a worker added or removed, see :class:`Client`)."""
        return self.client.spec

    def maxrec(self, requested: int | None, mode: Literal["sync", "rest", "async"] = "sync") -> int:
        """The row cap of a query: MAXREC if given, never above the hard limit of the
        mode (``maxrec_limit``, or ``maxrec_limit_rest`` / ``maxrec_limit_async``)."""
        s = self.settings
        override = {"rest": s.maxrec_limit_rest, "async": s.maxrec_limit_async}.get(mode)
        limit = self.settings.maxrec_limit if override is None else override
        if requested is None:
            return min(self.settings.maxrec_default, limit)
        if requested < 0:
            raise QueryRefused(f"MAXREC={requested} is negative; give 0 or more rows")
        return min(requested, limit)

    def run(
        self,
        text: str,
        lang: str = "adql",
        *,
        maxrec: int | None = None,
        timeout_s: float | None = None,
        owner: str = "",
        uploads: Mapping[str, Upload] | None = None,
        partial: bool = False,
        mode: Literal["sync", "rest", "async"] = "sync",
        on_start: Callable[[int], None] | None = None,
    ) -> Outcome:
        """Plan and run a query with the service's limits (``maxrec`` already capped);
        ``uploads`` are the tables it reads as ``TAP_UPLOAD.<name>`` (``read_uploads``).
        ``mode`` chooses the result's byte limit (``result_max_bytes_<mode>``);
        ``on_start(query_id)``: see :func:`qserv_py.exec.dispatch.execute`."""
        max_bytes: int = getattr(self.settings, f"result_max_bytes_{mode}")
        tables = {name: u.table for name, u in (uploads or {}).items()}
        granted = max_bytes
        try:
            plan = self.client.plan(text, lang, uploads=tables or None, oracle=False)
            with memory.CEILING.result(max_bytes) as granted:
                result = execute(
                    self.spec,
                    plan,
                    text=text,
                    lang=lang,
                    owner=owner,
                    timeout_s=timeout_s if timeout_s is not None else self.settings.sync_timeout_s,
                    max_rows=self.maxrec(maxrec, mode),
                    max_bytes=granted,
                    partial=partial,
                    on_start=on_start,
                )
                memory.CEILING.check(f"the result of query {result.query_id}")
        except ResultTooLarge as exc:
            if granted < max_bytes:  # the memory ceiling lowered the limit: still a 400
                raise ResultTooLarge(
                    f"{exc.message}: the limit (setting result_max_bytes_{mode} = "
                    f"{max_bytes:,}) was lowered to {granted:,} bytes to fit under the "
                    f"service process's memory ceiling (setting {memory.SETTING}; a result "
                    f"may cost {memory.RESULT_FACTOR} times its size while it is rendered, "
                    "and running queries hold their share): ask for fewer rows or columns, "
                    "or try again when fewer queries run",
                    limit=granted,
                ) from exc
            raise ResultTooLarge(
                f"{exc.message} (setting result_max_bytes_{mode}"
                + ("; an async job may return more)" if mode != "async" else ")"),
                limit=exc.limit,
            ) from exc
        except psycopg.OperationalError as exc:  # (a worker's failures come as our errors)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InstanceUnreachable(
                f"the czar database ({self.spec.czar.name}) ended a session of the query "
                f"({reason}): it restarted or stopped; run the query again"
            ) from exc
        return Outcome(
            result.table,
            result.truncated,
            result.query_id,
            result.seconds,
            incomplete_info(result.missing_chunks),
            result.missing_chunks,
        )

    def close(self) -> None:
        close_pools()  # the query and the upload sessions
