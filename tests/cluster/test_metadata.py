"""Czar metadata migrations on a real czar."""

from __future__ import annotations

from pathlib import Path

from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.metadata import initialize_cluster, migrations
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.schema import default_catalog_path, parse_catalog


def test_migrations_are_numbered_and_applied(spec: ClusterSpec) -> None:
    versions = [v for v, _, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))
    with connect(spec.czar) as czar:
        applied = [
            r[0] for r in czar.execute("SELECT version FROM qserv_meta.schema_version ORDER BY 1")
        ]
    assert applied == versions


def test_director_indexes_of_old_catalogs_are_made(
    spec: ClusterSpec, settings: Settings, tmp_path: Path
) -> None:
    """A catalog from before version 2 has no director index; init (004) makes it."""
    text = default_catalog_path("dp02").read_text().replace("name: dp02", "name: oldcat", 1)
    create_catalog(spec, parse_catalog(text, "oldcat"), text)
    try:
        with connect(spec.czar, autocommit=True) as czar:
            czar.execute("DROP TABLE qserv_dirindex.oldcat__object")
            czar.execute("DELETE FROM qserv_meta.schema_version WHERE version = 4")
        initialize_cluster(spec, settings)
        with connect(spec.czar) as czar:
            row = czar.execute("SELECT to_regclass('qserv_dirindex.oldcat__object')").fetchone()
            assert row is not None and row[0] is not None
    finally:
        drop_catalog(spec, "oldcat")
