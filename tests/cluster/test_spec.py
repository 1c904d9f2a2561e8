"""Cluster files, and remote mode: a cluster file naming the local instances by DSN."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qserv_py.cli import main
from qserv_py.cluster.db import connect
from qserv_py.cluster.metadata import initialize_cluster
from qserv_py.cluster.spec import ClusterSpec, read_cluster_file, write_cluster_file
from qserv_py.config import load_settings
from qserv_py.errors import ClusterFileError, ConfigError, InstanceUnreachable


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.toml", "czar = [", "is not valid toml"),
        ("c.toml", 'name = "x"\n', "needs `[czar]` with `dsn"),
        ("c.toml", '[czar]\ndsn = "dbname=a"\n', "at least one `[[workers]]`"),
        (
            "c.toml",
            '[czar]\ndsn = "dbname=a"\n[[workers]]\nname = "w"\n',
            "worker #1 needs a `dsn`",
        ),
        (
            "c.toml",
            '[czar]\ndsn = "host=x"\n[[workers]]\ndsn = "dbname=b"\n',
            "czar: the dsn must name",
        ),
        ("c.toml", '[czar]\ndsn = "dbname=a"\n[[workers]]\ndsn = "not a dsn ="\n', "invalid dsn"),
        (
            "c.toml",
            '[czar]\ndsn = "dbname=a"\n[[workers]]\ndsn = "dbname=b"\n[[workers]]\n'
            'dsn = "dbname=c"\nname = "worker1"\n',
            "worker names repeat",
        ),
        ("c.toml", 'colour = 1\n[czar]\ndsn = "dbname=a"\n', "unknown keys ['colour']"),
        ("c.yaml", "czar: [unclosed", "is not valid yaml"),
        ("c.yaml", "- a list", "must be a mapping"),
    ],
)
def test_bad_cluster_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(ClusterFileError) as err:
        read_cluster_file(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_cluster_file(tmp_path: Path) -> None:
    with pytest.raises(ClusterFileError, match="does not exist"):
        read_cluster_file(tmp_path / "nope.toml")
    with pytest.raises(ClusterFileError, match="holds no cluster: create one"):
        read_cluster_file(tmp_path)


def test_round_trip(tmp_path: Path, spec: ClusterSpec) -> None:
    write_cluster_file(spec, tmp_path / "copy.toml")
    assert (tmp_path / "copy.toml").stat().st_mode & 0o077 == 0, "holds passwords"
    again = read_cluster_file(tmp_path / "copy.toml")
    assert (again.czar, again.workers, again.reader_password) == (
        spec.czar,
        spec.workers,
        spec.reader_password,
    )
    assert "password" not in spec.czar.public_dsn


def _remote_file(tmp_path: Path, spec: ClusterSpec, suffix: str) -> Path:
    """A cluster file for a 'remote' cluster: the session's instances, by DSN only."""
    data = spec.to_dict()
    data["name"] = "remote"
    data["settings"] = {"statement_timeout_s": 120}
    path = tmp_path / f"remote{suffix}"
    if suffix == ".yaml":
        path.write_text(yaml.safe_dump(data))
    else:
        write_cluster_file(ClusterSpec(**{**vars(spec), "name": "remote",
                                          "settings": data["settings"]}), path)  # fmt: skip
    return path


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_remote_mode(
    tmp_path: Path, spec: ClusterSpec, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _remote_file(tmp_path, spec, suffix)
    assert main(["--cluster", str(path), "init"]) == 0  # again: safe
    assert "czar metadata at version" in capsys.readouterr().out
    catalog = f"remote{suffix[1:]}"
    schema = tmp_path / "schema.yaml"
    schema.write_text(
        f"name: {catalog}\ntables:\n- name: Star\n  qserv:kind: director\n"
        "  qserv:ra_column: ra\n  qserv:dec_column: dec\n  primaryKey: '#Star.id'\n"
        "  columns:\n  - {name: id, datatype: long, nullable: false}\n"
        "  - {name: ra, datatype: double, nullable: false}\n"
        "  - {name: dec, datatype: double, nullable: false}\n"
    )
    assert main(["--cluster", str(path), "catalog", "create", str(schema)]) == 0
    for worker in read_cluster_file(path).workers:
        with connect(worker) as conn:
            kinds = conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
                (catalog,),
            ).fetchall()
            assert sorted(kinds) == [("star", "p"), ("star_overlap", "p")]
    assert main(["--cluster", str(path), "catalog", "list"]) == 0
    assert f"{catalog}: Star (director)" in capsys.readouterr().out
    assert main(["--cluster", str(path), "catalog", "drop", catalog]) == 0
    # the settings section of the file is read
    settings = load_settings({"cluster": path}, read_cluster_file(path).settings)
    assert settings.statement_timeout_s == 120


def test_unreachable_worker(tmp_path: Path, spec: ClusterSpec) -> None:
    data = spec.to_dict()
    data["workers"].append({"name": "ghost", "dsn": "host=127.0.0.1 port=1 dbname=x user=x"})
    path = tmp_path / "ghost.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InstanceUnreachable, match=r"cannot connect to ghost \(.*port=1"):
        initialize_cluster(read_cluster_file(path), load_settings())
    with connect(spec.czar) as czar:  # nothing was changed
        assert (
            czar.execute("SELECT 1 FROM qserv_meta.workers WHERE name = 'ghost'").fetchone() is None
        )


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QSERV_WORKERS", "5")
    monkeypatch.setenv("QSERV_WORK_MEM", "16MB")
    settings = load_settings({"workers": 3}, {"work_mem": "1GB", "shared_buffers": "1GB"})
    assert settings.workers == 3  # flag over environment
    assert settings.work_mem == "16MB"  # environment over file
    assert settings.shared_buffers == "1GB"  # file over default
    monkeypatch.setenv("QSERV_WORKERS", "many")
    with pytest.raises(ConfigError, match="workers: Input should be a valid integer"):
        load_settings()


def test_shipped_docker_cluster_file_parses() -> None:
    spec = read_cluster_file(Path(__file__).resolve().parents[2] / "docker" / "cluster.native.toml")
    assert [w.name for w in spec.workers] == ["worker1", "worker2"]
    assert spec.czar.conninfo["dbname"] == "qserv_czar"
