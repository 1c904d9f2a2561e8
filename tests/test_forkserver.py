"""The command line's fork server (qserv_py.forkserver): ``query`` and ``load`` run in a
child of a warm server, with the same output, errors, exit status and files as in their
own process; Ctrl-C reaches the child and cancels its statements."""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qserv_py import forkserver
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.loaders.load import load

ROOT = Path(__file__).resolve().parents[1]
SERVED = "qserv-py: run by the fork server"
WAIT_S = 180  # a deadline for what must happen, on a busy machine


def test_the_doctests() -> None:
    assert doctest.testmod(forkserver).failed == 0


def test_a_module_changed_since_the_start_is_stale(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("")
    started = time.time()
    assert not forkserver._stale([str(module)], started)
    os.utime(module, (started + 10, started + 10))
    assert forkserver._stale([str(module)], started)
    assert forkserver._stale([str(tmp_path / "gone.py")], started)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Path]:
    """A runtime directory of the test's own; its server stopped afterwards."""
    place = tmp_path / "run"
    place.mkdir(mode=0o700)
    yield place
    for pid_file in place.glob("*.pid"):
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + WAIT_S
        while _alive(pid):
            assert time.monotonic() < deadline, f"fork server {pid} outlived SIGTERM"
            time.sleep(0.1)
        assert not list(place.glob("*.sock")), "the server left its socket"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"


@pytest.fixture
def served_catalog(spec: ClusterSpec, make_catalog, release: Path) -> str:  # type: ignore[no-untyped-def]
    name = make_catalog("fs_cat")
    load(spec, name, "Object", [release / "Object"])
    return name


def _cli(
    spec: ClusterSpec, runtime: Path, mode: str, *args: str, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "QSERV_PY_FORKSERVER": mode}
    return subprocess.run(
        [sys.executable, "-m", "qserv_py.cli", "--cluster", str(spec.path), *args],
        env=env, cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip


def _server_up(runtime: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not (list(runtime.glob("*.sock")) and list(runtime.glob("*.pid"))):
        assert time.monotonic() < deadline, "no fork server started"
        time.sleep(0.1)


def test_a_served_command_answers_as_its_own_process(
    spec: ClusterSpec, runtime: Path, served_catalog: str, tmp_path: Path
) -> None:
    query = f"SELECT objectId, coord_ra FROM {served_catalog}.Object WHERE objectId < 1000000000020"
    query += " ORDER BY objectId"
    alone = _cli(spec, runtime, "off", "query", query)
    assert alone.returncode == 0 and "(20 rows)" in alone.stdout
    assert not list(runtime.iterdir())  # off: no server

    first = _cli(spec, runtime, "verbose", "query", query)  # starts one, runs alone
    assert first.returncode == 0 and SERVED not in first.stderr
    _server_up(runtime)
    served = _cli(spec, runtime, "verbose", "query", query)
    assert served.returncode == 0 and SERVED in served.stderr
    assert served.stdout == alone.stdout == first.stdout

    bad = f"SELECT nosuch FROM {served_catalog}.Object"
    errors = [_cli(spec, runtime, mode, "query", bad) for mode in ("off", "verbose")]
    assert [e.returncode for e in errors] == [1, 1] and SERVED in errors[1].stderr
    assert errors[1].stderr.replace(errors[0].stderr, "").startswith(SERVED)
    usage = _cli(spec, runtime, "verbose", "query", "--no-such-option", query)
    assert usage.returncode == 2 and "unrecognized arguments" in usage.stderr

    # relative paths are the command line's, not the server's
    out = _cli(spec, runtime, "verbose", "query", "--format", "csv", "--out", "got.csv",
               query, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0 and SERVED in out.stderr
    assert (tmp_path / "got.csv").read_text().count("\n") == 21  # a header, 20 rows


def test_ctrl_c_reaches_the_served_query(
    spec: ClusterSpec, runtime: Path, served_catalog: str
) -> None:
    _cli(spec, runtime, "verbose", "query", f"SELECT COUNT(*) FROM {served_catalog}.Object")
    _server_up(runtime)
    worker = spec.workers[0]
    with connect(worker) as lock:  # every statement on the table waits for this one
        lock.execute(f"LOCK TABLE {served_catalog}.object IN ACCESS EXCLUSIVE MODE")
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "QSERV_PY_FORKSERVER": "verbose"}
        command = subprocess.Popen(
            [sys.executable, "-m", "qserv_py.cli", "--cluster", str(spec.path), "query",
             f"SELECT COUNT(*) AS n FROM {served_catalog}.Object"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert command.stderr is not None
            assert command.stderr.readline().startswith(SERVED)
            with connect(worker, autocommit=True) as watch:
                waiting = (
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query ILIKE %s"
                )
                pattern = f"%{served_catalog}.object%"
                deadline = time.monotonic() + WAIT_S
                while watch.execute(waiting, (pattern,)).fetchone() == (0,):
                    assert time.monotonic() < deadline, "the query never reached the worker"
                    time.sleep(0.1)
                command.send_signal(signal.SIGINT)
                assert command.wait(WAIT_S) == 130
                deadline = time.monotonic() + WAIT_S
                while watch.execute(waiting, (pattern,)).fetchone() != (0,):
                    assert time.monotonic() < deadline, "the query's statement was not cancelled"
                    time.sleep(0.1)
        finally:
            if command.poll() is None:
                command.kill()
                command.wait()
        lock.rollback()
