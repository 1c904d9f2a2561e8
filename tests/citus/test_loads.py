"""Load transactions on Citus: staged rows stay invisible until the publish, which makes
them visible with the director index in one coordinator transaction; an abort and a
refused publish (duplicate director keys) leave nothing behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from qserv_py.cli import main
from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.errors import LoadError
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.loaders.publish import abort, publish
from qserv_py.loaders.txn import list_txns
from qserv_py.schema import default_catalog_path, parse_catalog
from qserv_py.schema.ddl import dirindex_table
from tests.loaders.conftest import read_table
from tests.loaders.test_crash import _cli, _kill, _split, _wait_for

CAT = "cld"


def _count(spec: ClusterSpec, sql: str) -> int:
    with connect(spec.coordinator, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _staging(spec: ClusterSpec) -> int:
    return _count(spec, "SELECT count(*) FROM pg_tables WHERE schemaname = 'qserv_stage'")


def test_load_transactions_on_citus(
    citus_spec: ClusterSpec, citus_settings: Settings, query_release: Path
) -> None:
    spec = citus_spec
    text = default_catalog_path("dp02").read_text().replace("name: dp02", f"name: {CAT}", 1)
    create_catalog(spec, parse_catalog(text, CAT), text, citus_shard_count=4)
    try:
        options = LoadOptions(publish=False, max_rows_per_chunk=500)
        staged = load(spec, CAT, "Object", [query_release / "Object"], options)
        assert staged.state == "staged" and staged.rows == 3_000
        assert _count(spec, f"SELECT count(*) FROM {CAT}.object") == 0  # invisible
        assert _count(spec, f"SELECT count(*) FROM {dirindex_table(CAT, 'Object')}") == 0
        publish(spec, staged.txn)
        assert _count(spec, f"SELECT count(*) FROM {CAT}.object") == 3_000
        assert _count(spec, f"SELECT count(*) FROM {dirindex_table(CAT, 'Object')}") == 3_000
        assert _count(spec, f"SELECT count(*) FROM {CAT}.object_overlap") > 0
        assert _staging(spec) == 0
        # the same objects again: refused at publish, nothing of it visible
        again = load(spec, CAT, "Object", [query_release / "Object"], options)
        with pytest.raises(LoadError, match="already in the catalog"):
            publish(spec, again.txn)
        abort(spec, again.txn)
        assert _count(spec, f"SELECT count(*) FROM {CAT}.object") == 3_000
        # children staged, then aborted: nothing stays behind
        child = load(spec, CAT, "ForcedSource", [query_release / "ForcedSource"], options)
        abort(spec, child.txn)
        assert _count(spec, f"SELECT count(*) FROM {CAT}.forcedsource") == 0
        assert _staging(spec) == 0
        states = {t.id: t.state for t in list_txns(spec, CAT)}
        assert states == {staged.txn: "published", again.txn: "aborted", child.txn: "aborted"}
    finally:
        drop_catalog(spec, CAT)


def _backend_gone(spec: ClusterSpec, pid: int) -> bool:
    return _count(spec, f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") == 0


def _waiting_insert(spec: ClusterSpec, table: str) -> int:
    """The pid of a coordinator backend waiting for a lock in an INSERT into ``table``."""
    with connect(spec.coordinator, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE %s",
            (f"INSERT INTO {table} %",),
        ).fetchone()
    return int(row[0]) if row else 0


def test_killed_loads_on_citus_resume_or_abort_and_are_never_half_visible(
    citus_spec: ClusterSpec, query_release: Path, tmp_path: Path
) -> None:
    """A ``qserv-py load`` killed (SIGKILL) while staging, then resumed; one killed while
    staging, then aborted; a ``txn publish`` killed inside its coordinator transaction
    (held there by a lock), then published again. Before each end nothing of the load is
    visible; after it, every row once, with the director index; no staging left."""
    spec = citus_spec
    text = default_catalog_path("dp02").read_text().replace("name: dp02", f"name: {CAT}k", 1)
    cat = f"{CAT}k"
    create_catalog(spec, parse_catalog(text, cat), text, citus_shard_count=4)
    try:
        total = _split(query_release, tmp_path / "Object", 8)
        args = ["load", cat, "Object", str(tmp_path / "Object"), "--max-rows-per-chunk", "200"]
        done_files = (
            "SELECT count(*) >= 2 FROM qserv_meta.load_files f JOIN qserv_meta.load_txns t"
            f" ON t.id = f.txn WHERE t.catalog = '{cat}' AND f.done AND t.state = 'staging'"
        )
        # killed while staging, then resumed: every row once
        proc = _cli(spec, *args)
        _wait_for(spec, done_files, proc)
        _kill(proc)
        [first] = list_txns(spec, cat)
        assert first.state == "staging"
        assert _count(spec, f"SELECT count(*) FROM {cat}.object") == 0  # nothing visible
        assert main(["--cluster", str(spec.path), "txn", "resume", str(first.id)]) == 0
        assert _count(spec, f"SELECT count(*) FROM {cat}.object") == total
        assert _count(spec, f"SELECT count(DISTINCT objectid) FROM {cat}.object") == total
        assert _count(spec, f"SELECT count(*) FROM {dirindex_table(cat, 'Object')}") == total
        overlap = _count(spec, f"SELECT count(*) FROM {cat}.object_overlap")
        assert overlap > 0 and _staging(spec) == 0
        # children staged (not published)
        staged = load(
            spec, cat, "ForcedSource", [query_release / "ForcedSource"], LoadOptions(publish=False)
        )
        # a publish held inside its coordinator transaction, then killed: rolled back
        with connect(spec.coordinator) as holder:
            holder.execute(f"LOCK TABLE {cat}.forcedsource IN SHARE MODE")
            proc = _cli(spec, "txn", "publish", str(staged.txn))
            _wait_for(
                spec,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                f" AND query ILIKE 'INSERT INTO {cat}.forcedsource %'",
                proc,
            )
            pid = _waiting_insert(spec, f"{cat}.forcedsource")
            _kill(proc)
            holder.rollback()
        deadline = time.monotonic() + 300
        while not _backend_gone(spec, pid):  # its statement ends, then it sees no client
            assert time.monotonic() < deadline, "the killed publish's session never ended"
            time.sleep(0.05)
        assert [t.state for t in list_txns(spec, cat) if t.id == staged.txn] == ["publishing"]
        assert _count(spec, f"SELECT count(*) FROM {cat}.forcedsource") == 0
        assert _count(spec, f"SELECT count(*) FROM {cat}.object") == total  # untouched
        assert main(["--cluster", str(spec.path), "txn", "publish", str(staged.txn)]) == 0
        forced = _count(spec, f"SELECT count(*) FROM {cat}.forcedsource")
        assert forced == read_table(query_release / "ForcedSource").num_rows
        # the same objects loaded again, killed while staging, then aborted
        proc = _cli(spec, *args)
        _wait_for(spec, done_files, proc)
        _kill(proc)
        [again] = [t for t in list_txns(spec, cat) if t.state == "staging"]
        assert main(["--cluster", str(spec.path), "txn", "abort", str(again.id)]) == 0
        assert _count(spec, f"SELECT count(*) FROM {cat}.forcedsource") == forced
        assert _count(spec, f"SELECT count(*) FROM {cat}.object") == total
        assert _staging(spec) == 0
        states = {t.id: t.state for t in list_txns(spec, cat)}
        assert states == {first.id: "published", staged.txn: "published", again.id: "aborted"}
    finally:
        drop_catalog(spec, cat)
