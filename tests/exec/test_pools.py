"""The process's connection pools, on the test cluster's czar."""

from __future__ import annotations

import os
import uuid

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.exec import pools


def test_a_new_pool_starts_with_the_session_that_checked_its_instance(spec: ClusterSpec) -> None:
    """Making a pool sets up one session, not two: the session made to check that the
    instance answers is the pool's first (a short process pays one connection per pool)."""
    sequence = f"public.qserv_test_setups_{uuid.uuid4().hex[:8]}"
    setup = f"SELECT nextval('{sequence}')"  # counts the sessions set up
    with connect(spec.czar, autocommit=True) as admin:
        admin.execute(f"CREATE SEQUENCE {sequence}")
        try:
            pool = pools._pool(spec.czar, setup, 2)
            try:
                with pools.borrow(pool) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                with pools.borrow(pool) as again:  # the same idle session again
                    assert again.info.backend_pid == conn.info.backend_pid
            finally:
                with pools._pools_lock:
                    pools._pools.pop((os.getpid(), spec.czar.dsn, setup), None)
                pool.close()
            made = admin.execute(f"SELECT last_value, is_called FROM {sequence}").fetchone()
            assert made == (1, True)
        finally:
            admin.execute(f"DROP SEQUENCE {sequence}")
