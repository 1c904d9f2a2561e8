"""`qserv-py serve --processes N`: several service processes share the port, answer
queries (sync TAP and REST), and all stop on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec

# httpx's default 5 s read timeout is a timing margin: 16 scans, 8 at a time, on two
# freshly started processes of a busy 2-core machine took longer than that. This bound
# only stops a hung service from hanging the suite.
PATIENCE_S = 300.0


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_several_processes_serve_and_stop(spec: ClusterSpec, client: Client) -> None:
    assert spec.path is not None
    command = [
        sys.executable, "-m", "qserv_py.cli", "--cluster", str(spec.path), "serve",
        "--http-port", "0", "--processes", "2", "--log-level", "warning",
    ]  # fmt: skip
    env = dict(os.environ, QSERV_DEFAULT_CATALOG="qt")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            if found := re.search(r"at (http://\S+)", line):
                url = found.group(1)
                break
        assert url is not None, "serve printed no URL"
        servers = {c for c in _children(process.pid) if "spawn_main" in _cmdline(c)}
        assert len(servers) == 2, servers
        expected = client.query("SELECT COUNT(*) AS n FROM Object").column("n")[0].as_py()

        def count(_: int) -> int:
            response = httpx.post(
                f"{url}/api/v1/query",
                json={"query": "SELECT COUNT(*) AS n FROM Object"},
                timeout=PATIENCE_S,
            )
            response.raise_for_status()
            return int(response.json()["rows"][0][0])

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(count, range(16))) == [expected] * 16
        tap = httpx.get(
            f"{url}/tap/sync",
            params={
                "REQUEST": "doQuery",
                "LANG": "ADQL",
                "QUERY": "SELECT TOP 1 objectId FROM Object",
            },
            timeout=PATIENCE_S,
        )
        assert tap.status_code == 200 and b"QUERY_STATUS" in tap.content
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in servers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in servers)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
