"""The multi-host topology itself: queries cross it, each instance is where it should be,
and each injected fault does what it says (and is undone)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import qserv_py
from qserv_py.client import Client
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.exec import pools
from tests.netns import (
    DelayProxy,
    Faults,
    Topology,
    existing,
    made_by,
    spec_through,
    state,
    sweep,
)
from tests.netns.proxy import target_of
from tests.network.conftest import HOSTS

CONNECT_TIMEOUT_S = 2  # libpq's minimum


def _connect(instance: Instance) -> psycopg.Connection:
    return psycopg.connect(instance.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)


def _answers(instance: Instance) -> bool:
    with _connect(instance) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def test_query_across_namespaces(net_client: Client, release: Path) -> None:
    objects = pq.read_table(release / "Object", columns=["objectId"]).num_rows
    forced = pq.read_table(release / "ForcedSource", columns=["band"])
    explain = net_client.explain("SELECT COUNT(*) FROM Object")
    assert set(explain.chunks_per_worker) == {"worker1", "worker2", "worker3"}
    assert all(n > 0 for n in explain.chunks_per_worker.values()), explain.chunks_per_worker

    assert net_client.query("SELECT COUNT(*) AS n FROM Object").column("n").to_pylist() == [objects]
    result = net_client.query(
        "SELECT band, COUNT(*) AS n FROM ForcedSource GROUP BY band ORDER BY band"
    )
    count_all = pc.CountOptions(mode="all")
    expected = forced.group_by("band").aggregate([("band", "count", count_all)]).sort_by("band")
    assert result.column("band").to_pylist() == expected.column("band").to_pylist()
    assert result.column("n").to_pylist() == expected.column("band_count").to_pylist()


def test_each_instance_only_at_its_own_address(
    net_cluster: LocalCluster, net_spec: ClusterSpec, topology: Topology
) -> None:
    for inst in net_cluster.instances():
        host = topology.hosts[inst.name]
        assert (inst.host, inst.netns) == (host.address, host.netns)
        target = net_spec.czar if inst.role == "czar" else net_spec.worker(inst.name)
        assert target_of(target) == (host.address, inst.port)
        assert _answers(target)
        # it listens on its own address only (not on its namespace's loopback) ...
        listening = topology.run(inst.name, ["ss", "-Hltn"]).stdout.split("\n")
        sockets = [line.split()[3] for line in listening if line.strip()]
        assert sockets == [f"{host.address}:{inst.port}"], sockets
        # ... not at another host's address, and the other hosts reach it at its own
        for other in HOSTS:
            if other == inst.name:
                continue
            assert not _tcp_open(topology.address(other), inst.port), (inst.name, other)
            seen = _tcp_from(topology, other, host.address, inst.port)
            assert seen == "open", f"{inst.name} from {other}: {seen}"


def _tcp_open(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(10)
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            return False
    return True


def _tcp_from(topology: Topology, name: str, address: str, port: int) -> str:
    """Whether a TCP connection from inside host ``name`` to address:port opens."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(10)\n"
        f"try: s.connect(({address!r},{port})); print('open')\n"
        "except OSError as e: print(type(e).__name__)\n"
    )
    result = topology.run(name, [sys.executable, "-c", code])
    return result.stdout.strip() or result.stderr.strip()


def test_a_cut_link(faults: Faults, net_spec: ClusterSpec, topology: Topology) -> None:
    worker = net_spec.worker("worker2")
    assert _answers(worker)
    faults.cut("worker2")
    assert not topology.link_up("worker2")
    with pytest.raises(psycopg.OperationalError):
        _connect(worker)
    assert faults.postmaster("worker2") > 0  # the host lives on behind its cut link
    assert _answers(net_spec.worker("worker1"))  # the others are still reachable
    faults.restore("worker2")
    assert topology.link_up("worker2")
    assert _answers(worker)


def test_a_hung_worker(faults: Faults, net_spec: ClusterSpec) -> None:
    worker = net_spec.worker("worker3")
    with _connect(worker) as before:
        backend = before.info.backend_pid
        with faults.hung("worker3") as pids:
            assert backend in pids  # the postmaster and all its children
            assert all(state(pid) in ("T", "t", "Z", "gone") for pid in pids)
            with pytest.raises(psycopg.OperationalError):
                _connect(worker)
        assert not any(state(pid) == "T" for pid in pids)
        assert before.execute("SELECT 2").fetchone() == (2,)  # its session goes on
    assert _answers(worker)


def test_a_killed_worker(faults: Faults, net_spec: ClusterSpec) -> None:
    worker = net_spec.worker("worker1")
    pid = faults.kill("worker1")
    assert state(pid) in ("gone", "Z")
    with pytest.raises(psycopg.OperationalError):
        _connect(worker)
    faults.heal()  # started again
    new = faults.postmaster("worker1")
    assert new != pid
    assert _answers(worker)
    # recorded for the end-of-session check (by the conftest module pytest loaded)
    assert new in sys.modules["tests.conftest"]._STARTED_PIDS


def test_a_narrow_link(faults: Faults, net_client: Client, topology: Topology) -> None:
    text = "SELECT objectId, ccdVisitId, psfFlux FROM ForcedSource ORDER BY forcedSourceId"
    healthy = net_client.query(text).to_pylist()
    faults.throttle("worker2", "4mbit")
    host = topology.hosts["worker2"]
    assert "tbf" in _tc_show(host.veth) and "tbf" in _tc_show(host.peer, host.netns)
    assert net_client.query(text).to_pylist() == healthy
    faults.unthrottle("worker2")
    assert "tbf" not in _tc_show(host.veth) + _tc_show(host.peer, host.netns)


def _tc_show(dev: str, netns: str | None = None) -> str:
    where = ["-n", netns] if netns else []
    return subprocess.run(
        ["tc", *where, "qdisc", "show", "dev", dev], capture_output=True, text=True, check=True
    ).stdout


def test_a_slow_link(net_client: Client, net_spec: ClusterSpec, topology: Topology) -> None:
    queries = (
        "SELECT objectId, coord_ra FROM Object ORDER BY objectId LIMIT 200",
        "SELECT COUNT(*) AS n FROM ForcedSource",
    )
    healthy = [net_client.query(text).to_pylist() for text in queries]
    slow = net_spec
    with ExitStack() as stack:
        proxies = []
        for worker in net_spec.workers:
            proxy = DelayProxy(target_of(worker), delay=0.02, listen=topology.gateway)
            proxies.append(stack.enter_context(proxy))
            slow = spec_through(slow, worker.name, proxy)
        for worker in slow.workers:  # (first out) else its pools go on reconnecting
            stack.callback(pools.discard, slow, worker.name)
        assert {target_of(w)[0] for w in slow.workers} == {topology.gateway}
        client = qserv_py.connect(slow, default_catalog="net")
        assert [client.query(text).to_pylist() for text in queries] == healthy
        assert all(p.connections > 0 for p in proxies), [p.connections for p in proxies]
    assert not [t for t in threading.enumerate() if t.name.startswith("delay-proxy")]


def test_the_proxy_delays_both_ways_in_order() -> None:
    """Bytes through the proxy arrive whole and in order, in both directions."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        echoed = threading.Thread(target=_echo_once, args=(server,), name="echo")
        echoed.start()
        with (
            DelayProxy(("127.0.0.1", port), delay=0.01) as proxy,
            socket.create_connection(proxy.address, timeout=30) as sock,
        ):
            payload = os.urandom(300_000)
            sender = threading.Thread(target=sock.sendall, args=(payload,), name="send")
            sender.start()
            received = bytearray()
            while len(received) < len(payload):
                chunk = sock.recv(65_536)
                assert chunk, "the proxy closed early"
                received += chunk
            sender.join()
            assert bytes(received) == payload
        echoed.join()


def _echo_once(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(65_536):
            conn.sendall(data)


def test_the_topology_removes_all_it_made(netns_ok: None) -> None:
    topo = Topology(("a",))
    with pytest.raises(RuntimeError, match="inside"), topo:  # removed after a failure too
        topo.add("b")
        spaces, links = made_by(topo.tag)
        assert sorted(spaces) == sorted(h.netns for h in topo.hosts.values())
        assert topo.bridge in links and all(h.veth in links for h in topo.hosts.values())
        assert topo.run("a", ["true"]).returncode == 0
        netns = topo.hosts["b"].netns
        process = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "600"])
        _until(lambda: str(process.pid) in _ip("netns", "pids", netns).split())
        raise RuntimeError("inside")
    # a process left in a namespace is killed with it
    assert process.wait() == -signal.SIGKILL
    assert made_by(topo.tag) == ([], [])
    assert topo.tag not in _ip("netns", "list") + _ip("-o", "link", "show")


def _until(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, "waited 60 s"
        time.sleep(0.02)


def test_leftovers_of_a_dead_session_are_swept(netns_ok: None) -> None:
    # a pid beyond pid_max never runs: a crashed session's leftovers, unique to this session
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    tag = f"qsv{pid_max + os.getpid():x}g0"
    subprocess.run(["ip", "netns", "add", f"{tag}-czar"], check=True)
    subprocess.run(["ip", "link", "add", f"{tag}br", "type", "bridge"], check=True)
    # a server of the crashed session, still running in its namespace
    process = subprocess.Popen(["ip", "netns", "exec", f"{tag}-czar", "sleep", "600"])
    _until(lambda: str(process.pid) in _ip("netns", "pids", f"{tag}-czar").split())
    assert tag in existing()
    sweep()
    assert process.wait() == -signal.SIGKILL
    assert tag not in existing()
    assert tag not in _ip("netns", "list") + _ip("-o", "link", "show")


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout
