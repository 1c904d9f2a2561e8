"""Cluster files of Citus clusters: the coordinator holds the czar metadata and is
qserv_py's one worker; the Citus worker nodes are optional."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qserv_py.cluster.spec import COORDINATOR, read_cluster_file, write_cluster_file
from qserv_py.errors import ClusterFileError

COORD = "postgresql://qserv:pw@coord.example.org:5432/qserv"


def test_citus_cluster_file_round_trips(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(
        f'backend = "citus"\n[coordinator]\ndsn = "{COORD}"\n'
        '[[workers]]\nname = "n1"\ndsn = "postgresql://qserv@n1.example.org/qserv"\n'
    )
    spec = read_cluster_file(file)
    assert spec.backend == "citus"
    assert spec.coordinator.dsn == spec.czar.dsn == COORD
    assert [(w.name, w.dsn) for w in spec.workers] == [(COORDINATOR, COORD)]
    assert [w.name for w in spec.citus_workers] == ["n1"]
    assert [i.dsn for i in spec.instances] == [COORD, COORD]  # czar and worker: one database
    write_cluster_file(spec, tmp_path / "again.toml")
    again = read_cluster_file(tmp_path / "again.toml")
    assert (again.backend, again.czar, again.workers, again.citus_workers) == (
        spec.backend, spec.czar, spec.workers, spec.citus_workers,
    )  # fmt: skip


def test_citus_nodes_are_optional(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(f"backend: citus\ncoordinator:\n  dsn: {COORD}\n")
    spec = read_cluster_file(file)
    assert spec.citus_workers == ()
    assert spec.worker(COORDINATOR).dsn == COORD


def test_a_native_spec_has_no_coordinator(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[czar]\ndsn = "dbname=a"\n[[workers]]\ndsn = "dbname=b"\n')
    spec = read_cluster_file(file)
    assert spec.backend == "native"
    with pytest.raises(ValueError, match="not a Citus cluster"):
        spec.coordinator  # noqa: B018


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('backend = "mongo"\n[czar]\ndsn = "dbname=a"\n', "backend 'mongo' is not known"),
        ('backend = "citus"\n', 'backend "citus" needs `[coordinator]`'),
        (
            'backend = "citus"\n[czar]\ndsn = "dbname=a"\n[coordinator]\ndsn = "dbname=a"\n',
            "keeps the czar metadata on its coordinator",
        ),
        (
            '[coordinator]\ndsn = "dbname=a"\n[[workers]]\ndsn = "dbname=b"\n',
            'add `backend = "citus"`',
        ),
        ('backend = "citus"\n[coordinator]\ndsn = "host=x"\n', "czar: the dsn must name"),
        (
            'backend = "citus"\n[coordinator]\ndsn = "dbname=a"\n'
            '[[workers]]\nname = "coordinator"\ndsn = "dbname=b"\n',
            "bad name 'coordinator'",
        ),
    ],
)
def test_bad_citus_cluster_files(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ClusterFileError, match=re.escape(message)):
        read_cluster_file(file)
