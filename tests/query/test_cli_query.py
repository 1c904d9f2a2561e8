"""`qserv-py query / ps / kill` and the Python API's entry point, on the real cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import qserv_py
from qserv_py.cli import main
from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec


def _cli(spec: ClusterSpec, *args: str) -> list[str]:
    return ["--cluster", str(spec.path), *args]


def test_query_formats(
    client: Client, spec: ClusterSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "SELECT refBand, COUNT(*) AS n FROM Object GROUP BY refBand ORDER BY refBand"
    want = client.query(text).to_pylist()
    assert main(_cli(spec, "query", text, "--catalog", "qt", "--format", "json")) == 0
    assert json.loads(capsys.readouterr().out) == want
    assert main(_cli(spec, "query", text, "--catalog", "qt", "--format", "csv")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == '"refBand","n"' and len(lines) == len(want) + 1
    out = tmp_path / "r.parquet"
    assert (
        main(_cli(spec, "query", text, "--catalog", "qt", "--format", "parquet", "--out", str(out)))
        == 0
    )
    assert pq.read_table(out).to_pylist() == want
    assert main(_cli(spec, "query", text, "--catalog", "qt")) == 0
    assert "refBand" in capsys.readouterr().out


def test_explain_and_errors(
    spec: ClusterSpec, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            _cli(
                spec,
                "query",
                "SELECT * FROM Object WHERE objectId = 1000000000042",
                "--catalog",
                "qt",
                "--explain",
            )
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("chunks: 1 (") and "worker SQL:" in out and "qt.qserv_part__object" in out
    assert main(_cli(spec, "query", "SELECT coord_ra FROM Objct", "--catalog", "qt")) == 1
    assert "no table objct; did you mean object?" in capsys.readouterr().err.lower()
    assert main(_cli(spec, "query", "SELECT FROM WHERE", "--catalog", "qt")) == 1
    err = capsys.readouterr().err
    assert "line 1, column" in err and "^" in err


def test_max_rows_and_metadata(client: Client) -> None:
    table = client.query("SELECT objectId, coord_ra FROM Object ORDER BY objectId", max_rows=5)
    assert table.num_rows == 5
    assert table.schema.metadata[b"truncated"] == b"true"
    field = table.schema.field("coord_ra")
    assert field.metadata[b"unit"] == b"deg" and field.metadata[b"ucd"].startswith(b"pos.eq.ra")
    full = client.query("SELECT COUNT(*) AS n FROM Object")
    assert full.schema.metadata[b"truncated"] == b"false"


def test_ps_and_kill(spec: ClusterSpec, client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    client.query("SELECT COUNT(*) FROM ForcedSource")
    assert main(_cli(spec, "ps", "--all")) == 0
    assert "SELECT COUNT(*) FROM ForcedSource" in capsys.readouterr().out
    assert main(_cli(spec, "kill", "999999999")) == 1
    assert "999999999" in capsys.readouterr().err


def test_package_connect(spec: ClusterSpec, client: Client) -> None:
    other = qserv_py.connect(spec.path, default_catalog="qt")
    assert (
        other.query("SELECT COUNT(*) AS n FROM Object").to_pylist()
        == client.query("SELECT COUNT(*) AS n FROM Object").to_pylist()
    )
