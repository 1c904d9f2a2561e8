"""Load transactions on Citus: staged rows stay invisible until the publish, which makes
them visible with the director index in one coordinator transaction; an abort and a
refused publish (duplicate director keys) leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

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
