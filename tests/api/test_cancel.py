"""A synchronous query whose client goes away is killed, its worker statements cancelled
(TAP sync and REST, through a real HTTP server and a real socket that is closed); an
async job is stopped at its execution duration."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.exec.tracking import WORKS_FOR, QueryInfo, list_queries, tag
from tests.api.conftest import Served

HANG_GUARD_S = 120.0  # only against a hang: the conditions are waited for, not timed


def slow_query(label: str) -> str:
    """A query of a replicated table joined with itself five times: minutes of work."""
    return (
        f"SELECT COUNT(*) AS n_{label} FROM CcdVisit a, CcdVisit b, CcdVisit c, CcdVisit d,"
        " CcdVisit e"
    )


def wait_for(what: str, check: Callable[[], object]) -> object:
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def worker_statements(spec: ClusterSpec, query_id: int) -> int:
    """Statements of the query running on the workers now."""
    running = 0
    for worker in spec.workers:
        with connect(worker, autocommit=True) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM pg_stat_activity WHERE {WORKS_FOR}", (tag(query_id),)
            ).fetchone()
            running += int(row[0]) if row else 0
    return running


def the_query(spec: ClusterSpec, label: str) -> QueryInfo | None:
    found = [q for q in list_queries(spec, active_only=False, limit=50) if label in q.text]
    return found[0] if found else None


def tap_request(served: Served, text: str) -> bytes:
    body = urlencode({"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": text}).encode()
    return (
        f"POST /tap/sync HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def rest_request(served: Served, text: str) -> bytes:
    body = json.dumps({"query": text, "lang": "adql"}).encode()
    return (
        f"POST /api/v1/query HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize("request_of", [tap_request, rest_request], ids=["tap-sync", "rest"])
def test_client_gone_kills_the_query(
    served: Served, spec: ClusterSpec, request_of: Callable[[Served, str], bytes]
) -> None:
    label = uuid.uuid4().hex[:12]
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=HANG_GUARD_S)
    try:
        sock.sendall(request_of(served, slow_query(label)))

        def running() -> QueryInfo | None:
            info = the_query(spec, label)
            if info is not None and worker_statements(spec, info.id) > 0:
                return info
            return None

        info = wait_for("the query runs on a worker", running)
        assert isinstance(info, QueryInfo) and info.status == "running"
    finally:
        sock.close()
    gone_at = time.monotonic()

    def stopped() -> bool:
        found = the_query(spec, label)
        return (
            found is not None and found.status == "killed" and not worker_statements(spec, found.id)
        )

    wait_for("the query is killed and its worker statements are gone", stopped)
    print(f"killed {time.monotonic() - gone_at:.2f} s after the client went away")
    final = the_query(spec, label)
    assert final is not None and "client closed the connection" in (final.error or "")


def endless_query(label: str) -> str:
    """A recursive query that never ends (issue 13: 764 MB of temporary files in two
    minutes before the limits)."""
    return (
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) "
        f"SELECT COUNT(*) AS n_{label} FROM t"
    )


@pytest.mark.parametrize(
    ("query_of", "lang"),
    [(slow_query, "ADQL"), (endless_query, "PostgreSQL")],
    ids=["cartesian", "recursive"],
)
def test_async_job_obeys_its_execution_duration(
    api: TestClient, spec: ClusterSpec, query_of: Callable[[str], str], lang: str
) -> None:
    """A job past its EXECUTIONDURATION ends in ERROR saying so; its worker statements
    are gone."""
    label = uuid.uuid4().hex[:12]
    created = api.post(
        "/tap/async",
        data={"QUERY": query_of(label), "LANG": lang, "PHASE": "RUN", "EXECUTIONDURATION": "1"},
        follow_redirects=False,
    )
    assert created.status_code == 303
    job_id = created.headers["location"].rsplit("/", 1)[-1]
    wait_for(
        "the job ends",
        lambda: api.get(f"/tap/async/{job_id}/phase").text in ("ERROR", "COMPLETED"),
    )
    assert api.get(f"/tap/async/{job_id}/phase").text == "ERROR"
    assert "execution duration of 1 s" in api.get(f"/tap/async/{job_id}/error").text
    info = the_query(spec, label)
    assert info is not None and info.owner == f"uws:{job_id}" and info.status == "failed"
    wait_for("its worker statements are gone", lambda: worker_statements(spec, info.id) == 0)
