"""Setting up a cluster's databases: czar metadata, SQL functions, the read-only role.

The czar metadata is versioned SQL (``sql/czar/NNN_*.sql``) applied in order, each file
once, recorded in ``qserv_meta.schema_version``. :func:`initialize_cluster` is what
``qserv-py init`` runs; running it again is safe.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg
from psycopg import sql

from qserv_py.cluster.db import connect, on_each
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.cluster.twophase import recover_in_doubt
from qserv_py.config import Settings
from qserv_py.errors import ClusterError, MetadataError

log = logging.getLogger(__name__)

_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK = 0x5153_5256  # advisory lock key serialising migrations ("QSRV")
MIN_SERVER_VERSION = 130000


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every czar migration, in order."""
    folder = resources.files("qserv_py.sql").joinpath("czar")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


def spatial_sql() -> str:
    return resources.files("qserv_py.sql").joinpath("spatial.sql").read_text()


def migrate(conn: psycopg.Connection) -> int:
    """Bring the czar metadata to the newest version; return it."""
    known = migrations()
    latest = known[-1][0] if known else 0
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS qserv_meta")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS qserv_meta.schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM qserv_meta.schema_version")}
        newer = sorted(v for v in applied if v > latest)
        if newer:
            raise MetadataError(
                f"the czar metadata is at version {newer[-1]}, newer than this qserv_py "
                f"knows ({latest}); upgrade qserv_py"
            )
        for version, name, text in known:
            if version not in applied:
                conn.execute(text)
                conn.execute(
                    "INSERT INTO qserv_meta.schema_version (version, name) VALUES (%s, %s)",
                    (version, name),
                )
    return latest


def metadata_version(conn: psycopg.Connection) -> int:
    """The czar metadata version; MetadataError if ``init`` never ran."""
    row = conn.execute("SELECT to_regclass('qserv_meta.schema_version')").fetchone()
    if row is None or row[0] is None:
        raise MetadataError("the czar has no qserv_py metadata; run `qserv-py init` first")
    version = conn.execute("SELECT max(version) FROM qserv_meta.schema_version").fetchone()
    return int(version[0]) if version and version[0] is not None else 0


def install_common(conn: psycopg.Connection, spec: ClusterSpec, settings: Settings) -> None:
    """The spatial SQL functions and the read-only role, on one database (idempotent)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute(spatial_sql())
        conn.execute(resources.files("qserv_py.sql").joinpath("worker.sql").read_text())
        conn.execute("CREATE SCHEMA IF NOT EXISTS qserv_stage")  # staging tables of loads
        role = sql.Identifier(spec.reader_user)
        exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (spec.reader_user,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
        if spec.reader_password is not None:
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                    role, sql.Literal(spec.reader_password)
                )
            )
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
        timeout = f"{int(settings.statement_timeout_s * 1000)}ms"
        conn.execute(
            sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(role, sql.Literal(timeout))
        )
        # what one query's sessions may spend: memory per sort or hash, temporary files
        # (temp_file_limit is a superuser's setting: ALTER ROLE needs a superuser)
        limits = [("work_mem", settings.reader_work_mem)]
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if (found := row.fetchone()) is not None and found[0]:
            limits.append(("temp_file_limit", settings.reader_temp_file_limit))
        else:
            log.warning(
                "%s: not a superuser, cannot set temp_file_limit of %s (ask an operator: "
                "ALTER ROLE %s SET temp_file_limit = '%s')",
                conn.info.dbname, spec.reader_user, spec.reader_user,
                settings.reader_temp_file_limit,
            )  # fmt: skip
        for name, value in limits:
            conn.execute(
                sql.SQL("ALTER ROLE {} SET {} = {}").format(
                    role, sql.Identifier(name), sql.Literal(value)
                )
            )
        dbname = conn.info.dbname
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), role)
        )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA qserv TO {}").format(role))
        # tables of the uploads of running queries (qserv_py.exec.uploads)
        conn.execute("CREATE SCHEMA IF NOT EXISTS qserv_upload")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA qserv_upload TO {}").format(role))


def check_server(conn: psycopg.Connection, instance: Instance, *, needs_2pc: bool) -> None:
    """Refuse servers too old, or unable to take part in two-phase commits."""
    if conn.info.server_version < MIN_SERVER_VERSION:
        raise ClusterError(
            f"{instance.name} runs PostgreSQL {conn.info.server_version // 10000}; qserv_py "
            f"needs {MIN_SERVER_VERSION // 10000} or newer"
        )
    if needs_2pc:
        row = conn.execute("SHOW max_prepared_transactions").fetchone()
        if row is None or int(row[0]) == 0:
            raise ClusterError(
                f"{instance.name} has max_prepared_transactions = 0; set it to at least "
                "max_connections (loads publish with two-phase commit) and restart it"
            )


def initialize_cluster(spec: ClusterSpec, settings: Settings) -> int:
    """Set up (or upgrade) every database of ``spec``; return the metadata version.

    Every instance is reached and checked before anything is changed.
    """

    def check(instance: Instance) -> None:
        with connect(instance) as conn:
            check_server(conn, instance, needs_2pc=instance is not spec.czar)

    def set_up_worker(worker: Instance) -> None:
        with connect(worker) as conn:
            install_common(conn, spec, settings)

    on_each(spec.instances, check)
    with connect(spec.czar) as czar:
        version = migrate(czar)
        install_common(czar, spec, settings)
        with czar.transaction():
            for worker in spec.workers:
                czar.execute(
                    "INSERT INTO qserv_meta.workers (name, dsn) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET dsn = excluded.dsn",
                    (worker.name, worker.public_dsn),
                )
    on_each(spec.workers, set_up_worker)
    recover_in_doubt(spec)
    return version
