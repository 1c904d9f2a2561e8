"""The README's main job: `qserv-py up` creates, starts and loads a local cluster, then
serves TAP on it until interrupted; the cluster keeps running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import pyvo

from qserv_py.cli import main
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.stats import catalog_stats
from tests.conftest import alive, record_pids


class Up:
    """``qserv-py up`` in a subprocess, its output (stdout and stderr) collected."""

    def __init__(self, root: Path, *extra: str) -> None:
        command = [sys.executable, "-m", "qserv_py.cli", "up", "--dir", str(root), *extra]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.process.poll() is not None:
                self.reader.join(5)
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the output of qserv-py up:\n{self.output}")

    def stop(self, signum: int) -> int:
        os.kill(self.process.pid, signum)
        code = self.process.wait(60)
        self.reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


def test_up_serves_tap_then_stops_leaving_the_cluster(
    work_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = work_dir / "main-job"
    cluster = LocalCluster(root)
    ups: list[Up] = []
    try:
        up = Up(root, "--objects", "1500", "--http-port", "0")
        ups.append(up)
        tap = up.wait_for(r"TAP service: (http://127\.0\.0\.1:\d+/tap)\n").group(1)
        snippet = up.wait_for(r"\n  (import pyvo; .*)\n").group(1)
        record_pids(cluster)
        assert "loaded dp02.Object: 1,500 rows" in up.output and "loaded dp02.CcdVisit" in up.output
        assert f'TAPService("{tap}")' in snippet

        service = pyvo.dal.TAPService(tap)
        count = service.search("SELECT COUNT(*) AS n FROM dp02.Object").to_table()
        assert int(count["n"][0]) == 1500
        cone = service.search(
            "SELECT objectId FROM dp02.Object WHERE "
            "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(180, 0, 30)) = 1"
        ).to_table()
        rest = httpx.post(
            tap.removesuffix("/tap") + "/api/v1/query",
            json={
                "query": "SELECT COUNT(*) FROM dp02.Object WHERE "
                "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(180, 0, 30)) = 1"
            },
            timeout=120,  # a hang guard, not a margin: httpx's default 5 s is one
        )
        assert rest.json()["rows"] == [[len(cone)]] and len(cone) > 0
        capsys.readouterr()
        exec(snippet, {})  # the printed snippet, as a user would paste it
        printed = capsys.readouterr().out
        assert "objectId" in printed and "coord_ra" in printed
        assert len(re.findall(r"^\s*1000000\d{6}\s", printed, re.MULTILINE)) == 5

        assert up.stop(signal.SIGINT) == 0
        assert "the service stopped; the cluster still runs" in up.output
        assert f"qserv-py --cluster {root} cluster stop" in up.output
        with pytest.raises(httpx.TransportError):
            httpx.get(tap.removesuffix("/tap") + "/healthz")
        assert all(s.up for s in cluster.status())

        # again, without serving: starts what is stopped, loads nothing twice
        stats = {t.name: t.rows for t in catalog_stats(cluster.spec(), "dp02").tables}
        assert stats["Object"] == 1500 and stats["ForcedSource"] > 1500 * 5
        assert main(["up", "--dir", str(root), "--no-serve"]) == 0
        assert "loaded dp02" not in capsys.readouterr().out
        assert {t.name: t.rows for t in catalog_stats(cluster.spec(), "dp02").tables} == stats

        # served again; SIGTERM stops it as Ctrl-C does; a taken port is a clear error
        up = Up(root, "--http-port", "0")
        ups.append(up)
        url = up.wait_for(r"TAP service: (http://127\.0\.0\.1:(\d+))/tap\n")
        assert httpx.get(url.group(1) + "/healthz", timeout=120).status_code == 200
        assert "loaded dp02" not in up.output
        assert main(["up", "--dir", str(root), "--http-port", url.group(2)]) == 1
        assert "is in use by another process" in capsys.readouterr().err
        assert up.stop(signal.SIGTERM) == 0
        assert "the service stopped" in up.output
        assert all(s.up for s in cluster.status())
    finally:
        for up in ups:
            up.kill()
        pids = [cluster.pid(i) for i in cluster.instances()] if cluster.exists() else []
        stopped = main(["cluster", "stop", "--dir", str(root)]) if cluster.exists() else 0
        cluster.destroy()
    assert stopped == 0
    assert pids and not any(alive(p) for p in pids if p)
