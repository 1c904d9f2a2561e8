"""Workers coming and going, on a real local cluster: add (local and by DSN), list,
remove, the cluster file in its own format, clients that learn of a new worker."""

from __future__ import annotations

import json
import shutil
import socket
import tomllib
from pathlib import Path

import pytest
import yaml

import qserv_py
from qserv_py.cli import main
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec, read_cluster_file
from qserv_py.config import Settings
from qserv_py.errors import BadWorker, UnknownWorker, WorkerOpError
from qserv_py.ops.workers import add_worker, list_workers, remove_worker
from tests.conftest import record_pids
from tests.ops.conftest import OPS_CATALOG

QUERIES = (
    "SELECT COUNT(*) AS n, SUM(objectId) AS s FROM ops.Object",
    "SELECT band, COUNT(*) AS n FROM ops.CcdVisit GROUP BY band ORDER BY band",
    "SELECT o.objectId, COUNT(*) AS n FROM ops.Object o JOIN ops.Source s"
    " ON s.objectId = o.objectId WHERE o.objectId < 3000 GROUP BY o.objectId"
    " ORDER BY o.objectId",
)


def _czar_workers(spec: ClusterSpec) -> dict[str, str]:
    with connect(spec.czar, autocommit=True) as czar:
        return dict(czar.execute("SELECT name, state FROM qserv_meta.workers").fetchall())


def _answers(client: qserv_py.Client) -> list[list[dict]]:
    return [client.query(q).to_pylist() for q in QUERIES]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_add_a_local_worker_then_remove_it(
    ops_cluster: LocalCluster, ops_spec: ClusterSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    client = qserv_py.connect(ops_spec, default_catalog=OPS_CATALOG)  # long-running
    before = _answers(client)
    capsys.readouterr()
    root = str(ops_cluster.root)
    assert main(["--cluster", root, "worker", "add", "--local", "--json"]) == 0
    record_pids(ops_cluster)
    info = json.loads(capsys.readouterr().out)
    name = info["name"]
    assert (info["state"], info["chunks"], info["in_file"]) == ("active", 0, True)
    spec = ops_cluster.spec()
    assert name in {w.name for w in spec.workers}
    assert name in {i.name for i in ops_cluster.instances()}
    assert _czar_workers(spec)[name] == "active"
    # every catalog's tables, and every replicated table's rows
    new, old = spec.worker(name), spec.workers[0]
    with connect(new, autocommit=True) as conn, connect(old, autocommit=True) as first:
        tables = (
            "SELECT array_agg(relname ORDER BY relname) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE nspname = %s AND c.relkind IN ('r', 'p')"
            " AND NOT c.relispartition"
        )
        assert (
            conn.execute(tables, (OPS_CATALOG,)).fetchone()
            == first.execute(tables, (OPS_CATALOG,)).fetchone()
        )
        rows = "SELECT count(*), sum(hashtext(v::text)) FROM ops.ccdvisit v"
        copied = conn.execute(rows).fetchone()
        assert copied == first.execute(rows).fetchone() and copied and copied[0] > 0
    # the client that was running learns of the new worker; answers are the same
    assert _answers(client) == before
    assert name in {w.name for w in client.spec.workers}

    # it holds no chunk: it can go; its data directory is kept
    assert main(["--cluster", root, "worker", "remove", name]) == 0
    after = ops_cluster.spec()
    assert name not in {w.name for w in after.workers}
    assert name not in _czar_workers(after)
    assert name not in {i.name for i in ops_cluster.instances()}
    assert (ops_cluster.root / name / "data" / "PG_VERSION").exists()
    assert _answers(client) == before
    assert name not in {w.name for w in client.spec.workers}
    shutil.rmtree(ops_cluster.root / name)


def test_an_unreachable_server_is_not_added(ops_spec: ClusterSpec, ops_settings: Settings) -> None:
    file = ops_spec.path
    assert file is not None
    text, workers = file.read_text(), _czar_workers(ops_spec)
    dsn = f"postgresql://qserv:secret@127.0.0.1:{_free_port()}/qserv"
    with pytest.raises(BadWorker, match="cannot add worker w9: cannot connect"):
        add_worker(ops_spec, dsn, ops_settings, name="w9")
    with pytest.raises(BadWorker, match="must name a database"):
        add_worker(ops_spec, "host=127.0.0.1 port=1", ops_settings, name="w9")
    with pytest.raises(BadWorker, match="invalid DSN"):
        add_worker(ops_spec, "host=127.0.0.1 = =", ops_settings, name="w9")
    assert file.read_text() == text and _czar_workers(ops_spec) == workers


def test_a_database_in_use_is_not_added(ops_spec: ClusterSpec, ops_settings: Settings) -> None:
    """A DSN of a database that already is a worker (a typo of the operator)."""
    file = ops_spec.path
    assert file is not None
    text, workers = file.read_text(), _czar_workers(ops_spec)
    with pytest.raises(BadWorker, match=r"already holds catalogs .*ops"):
        add_worker(ops_spec, ops_spec.workers[1].dsn, ops_settings, name="again")
    with pytest.raises(WorkerOpError, match="has a worker 'worker2' already"):
        add_worker(ops_spec, ops_spec.workers[1].dsn, ops_settings, name="worker2")
    assert file.read_text() == text and _czar_workers(ops_spec) == workers
    with connect(ops_spec.workers[1], autocommit=True) as conn:  # nothing was dropped
        assert conn.execute("SELECT count(*) FROM ops.object").fetchone() != (0,)


def test_remove_refuses_a_worker_holding_chunks(ops_spec: ClusterSpec) -> None:
    with pytest.raises(WorkerOpError, match=r"holds .* chunks .* worker drain worker1"):
        remove_worker(ops_spec, "worker1")
    with pytest.raises(UnknownWorker, match="no worker 'nobody'"):
        remove_worker(ops_spec, "nobody")
    assert _czar_workers(ops_spec)["worker1"] == "active"


def test_a_yaml_cluster_file_stays_yaml(
    ops_cluster: LocalCluster, ops_spec: ClusterSpec, ops_settings: Settings, work_dir: Path
) -> None:
    """The same cluster through an operator's YAML file (a remote cluster's): a server
    added by DSN, then removed, through the CLI."""
    data = tomllib.loads((ops_cluster.root / "cluster.toml").read_text())
    data["settings"] = {"statement_timeout_s": 600}
    file = work_dir / "ops-remote.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    instance = ops_cluster.add_worker_instance(ops_settings)  # a server that is no worker yet
    record_pids(ops_cluster)
    try:
        assert main(["--cluster", str(file), "worker", "add", instance.dsn, "--name", "far"]) == 0
        written = yaml.safe_load(file.read_text())
        assert written["settings"] == {"statement_timeout_s": 600}
        assert [w["name"] for w in written["workers"]][-1] == "far"
        spec = read_cluster_file(file)
        assert _czar_workers(spec)["far"] == "active"
        assert main(["--cluster", str(file), "worker", "list", "--json"]) == 0
        assert main(["--cluster", str(file), "worker", "remove", "far"]) == 0
        assert "far" not in [w["name"] for w in yaml.safe_load(file.read_text())["workers"]]
        assert "far" not in _czar_workers(spec)
    finally:
        ops_cluster.remove_worker_instance(instance.name, purge=True)
    assert [w.name for w in list_workers(ops_cluster.spec())] == [
        "worker1",
        "worker2",
        "worker3",
    ]


def test_new_chunks_go_only_to_active_workers(
    ops_cluster: LocalCluster, ops_spec: ClusterSpec, release: Path
) -> None:
    from qserv_py.cluster.catalogs import drop_catalog
    from qserv_py.loaders.load import LoadOptions, load
    from tests.conftest import create_dp02_catalog

    with connect(ops_spec.czar, autocommit=True) as czar:
        czar.execute("UPDATE qserv_meta.workers SET state = 'draining' WHERE name = 'worker3'")
    create_dp02_catalog(ops_spec, "placed")
    try:
        load(ops_spec, "placed", "Object", [release / "Object"], LoadOptions(replication=2))
        with connect(ops_spec.czar, autocommit=True) as czar:
            holders = dict(
                czar.execute(
                    "SELECT worker, count(*) FROM qserv_meta.placement WHERE catalog = 'placed'"
                    " GROUP BY worker"
                ).fetchall()
            )
            level = czar.execute(
                "SELECT replication FROM qserv_meta.catalogs WHERE name = 'placed'"
            ).fetchone()
        assert set(holders) == {"worker1", "worker2"} and level == (2,)
    finally:
        cluster = str(ops_cluster.root)
        assert main(["--cluster", cluster, "worker", "activate", "worker3"]) == 0
        drop_catalog(ops_spec, "placed")
    assert _czar_workers(ops_spec)["worker3"] == "active"


def test_no_worker_is_added_while_a_load_is_unfinished(
    ops_spec: ClusterSpec, ops_settings: Settings, release: Path
) -> None:
    """A staged load holds its rows on the workers it knew: it could not publish to a new
    one, so the add waits for it to be published or aborted."""
    from qserv_py.loaders.load import LoadOptions, load
    from qserv_py.loaders.publish import abort

    staged = load(ops_spec, OPS_CATALOG, "CcdVisit", [release / "CcdVisit"],
                  LoadOptions(publish=False))  # fmt: skip
    try:
        dsn = f"postgresql://qserv:secret@127.0.0.1:{_free_port()}/qserv"
        with pytest.raises(WorkerOpError, match=rf"loads {staged.txn} are not finished"):
            add_worker(ops_spec, dsn, ops_settings, name="w9")
    finally:
        abort(ops_spec, staged.txn)
    assert "w9" not in _czar_workers(ops_spec)
