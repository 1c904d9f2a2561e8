"""The client's metadata: read again after the czar notifies a change, and only then."""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

import qserv_py
from qserv_py.client import Client
from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import QservError
from qserv_py.schema import default_catalog_path

ROOT = Path(__file__).resolve().parents[1]


def last_statement(spec: ClusterSpec, session: psycopg.Connection | None) -> tuple[object, ...]:
    """When a czar session last ran a statement, and which."""
    assert session is not None
    with connect(spec.czar, autocommit=True) as czar:
        row = czar.execute(
            "SELECT query_start, query FROM pg_stat_activity WHERE pid = %s",
            (session.info.backend_pid,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def _wait_for_notification(client: Client) -> None:
    assert client._czar is not None
    readable, _, _ = select.select([client._czar.fileno()], [], [], 10)
    assert readable, "no notification came"


def test_the_version_is_read_only_after_a_notification(spec: ClusterSpec) -> None:
    client = qserv_py.connect(spec)
    first = client.context
    before = last_statement(spec, client._czar)
    assert "qserv_meta." in str(before[1])  # the version, then the metadata, read on it
    for _ in range(3):
        assert client.context is first
    assert last_statement(spec, client._czar) == before  # no round trip since
    # any statement on a table the planner reads notifies, even one changing no row
    with connect(spec.czar, autocommit=True) as other:
        other.execute("UPDATE qserv_meta.chunk_stats SET rows = rows WHERE false")
    _wait_for_notification(client)
    assert client.context is first  # the same version: the same metadata
    after = last_statement(spec, client._czar)
    assert after[0] > before[0] and "qserv_meta.load_txns" in str(after[1])
    assert last_statement(spec, client._czar) == after


def test_the_version_is_read_again_after_the_connection_broke(spec: ClusterSpec) -> None:
    client = qserv_py.connect(spec)
    assert client.context.catalogs is not None
    assert client._czar is not None
    pid = client._czar.info.backend_pid
    with connect(spec.czar, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _wait_for_notification(client)  # the server hung up
    assert client.context.catalogs is not None
    assert client._czar is not None and client._czar.info.backend_pid != pid
    assert "qserv_meta.load_txns" in str(last_statement(spec, client._czar)[1])


def _cli(spec: ClusterSpec, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "qserv_py.cli", "--cluster", str(spec.path), *args],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )


def test_changes_by_another_process_are_seen_by_the_next_query(
    spec: ClusterSpec, release: Path, tmp_path: Path
) -> None:
    client = qserv_py.connect(spec)
    count = "SELECT COUNT(*) AS n FROM cl_proc.Object"
    with pytest.raises(QservError, match="cl_proc"):
        client.query(count)
    schema = tmp_path / "cl_proc.yaml"
    schema.write_text(
        default_catalog_path("dp02").read_text().replace("name: dp02", "name: cl_proc", 1)
    )
    try:
        _cli(spec, "catalog", "create", str(schema))
        assert client.query(count).column("n").to_pylist() == [0]
        _cli(spec, "load", "cl_proc", "Object", str(release / "Object"))
        with connect(spec.czar) as czar:
            row = czar.execute(
                "SELECT sum(rows) FROM qserv_meta.chunk_stats WHERE catalog = 'cl_proc'"
            ).fetchone()
        assert row is not None and row[0] > 0
        assert client.query(count).column("n").to_pylist() == [row[0]]
    finally:
        drop_catalog(spec, "cl_proc")
    with pytest.raises(QservError, match="cl_proc"):
        client.query(count)
