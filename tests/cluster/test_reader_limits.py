"""The read-only role's resource limits on the workers (work_mem, temp_file_limit), set by
cluster set-up (``install_common``, which ``init`` and ``start`` run on existing clusters
too)."""

from __future__ import annotations

import psycopg
import pytest

from qserv_py.cluster.db import connect
from qserv_py.cluster.metadata import install_common
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.config import Settings
from qserv_py.errors import QueryRefused
from qserv_py.exec.sqlstate import database_error

# a sort of ~40 MB of rows: spills to temporary files under a small work_mem
BIG_SORT = "SELECT g, md5(g::text) FROM generate_series(1, 600000) g ORDER BY 2 DESC LIMIT 1"


def reader(spec: ClusterSpec, worker: Instance) -> psycopg.Connection:
    return connect(worker.with_user(spec.reader_user, spec.reader_password), autocommit=True)


def test_reader_role_limits_on_every_worker(spec: ClusterSpec, settings: Settings) -> None:
    for worker in spec.workers:
        with reader(spec, worker) as conn:
            assert conn.execute("SHOW work_mem").fetchone() == (settings.reader_work_mem,)
            assert conn.execute("SHOW temp_file_limit").fetchone() == (
                settings.reader_temp_file_limit,
            )


def test_temp_file_limit_stops_a_reader(spec: ClusterSpec, settings: Settings) -> None:
    worker = spec.workers[0]
    tight = settings.model_copy(update={"reader_work_mem": "1MB", "reader_temp_file_limit": "1MB"})
    with connect(worker) as admin:
        install_common(admin, spec, tight)
    try:
        limit = pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="temp_file_limit")
        with reader(spec, worker) as conn, limit as caught:
            conn.execute(BIG_SORT)
        seen = database_error(worker.name, caught.value)  # what a query's user is told
        assert isinstance(seen, QueryRefused) and seen.http_status == 400
        assert "reader_temp_file_limit" in seen.message
    finally:
        with connect(worker) as admin:
            install_common(admin, spec, settings)
    with reader(spec, worker) as conn:  # back to the cluster's settings
        assert conn.execute(BIG_SORT).fetchone() is not None
