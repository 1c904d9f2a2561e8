"""TAP benchmark: the service over HTTP against the Python API, on the same cluster.

    python bench/tap.py --objects 2000000 [--part cones|xmatch|all] [--clients 16]
                        [--cones 400] [--radius-arcmin 6] [--work DIR]

Set-up (as bench/query.py, whose helpers it uses): the release of ``bench/load.py`` if
it is there, else one generated into ``--work``; a fresh local cluster (a czar and two
workers, shared_buffers 1GB); ``qserv-py catalog create dp02`` and ``qserv-py load dp02
Object`` (default options); VACUUM and a quiet autovacuum. Then ``qserv-py serve
--http-port 0`` in a subprocess (uvicorn, one process) on that cluster.

Parts, one function each:

- ``cones``: ``--cones`` sync cone searches (``SELECT * FROM Object`` in a circle of
  ``--radius-arcmin`` around the position of a random object) from ``--clients``
  concurrent client threads, each taking the next cone from a shared list:

  - over HTTP: ``POST /tap/sync`` (REQUEST=doQuery, LANG=ADQL, the default VOTable
    BINARY2 answer), one ``httpx.Client`` (keep-alive) per thread;
  - through the Python API: ``qserv_py.connect(cluster).query(text)`` from the same
    number of threads sharing one client (as the service shares one).

  Two warm-up rounds of ``--clients`` cones per side, then the sides alternate: HTTP,
  Python, HTTP, Python, each round running half of the cones. Reported per side:
  throughput (cones per second of wall time) and p50 / p95 latency, and the ratios
  HTTP / Python (target ≤ 1.3×). The rows of 20 cones are compared between the sides
  (the VOTable parsed with astropy, after the timing).
- ``xmatch``: (to be written: cross-matches of uploaded target lists).
"""

from __future__ import annotations

import argparse
import io
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.query import ARCMIN, CONE, _ms, _p, release_dir, settle

TARGET = 1.3


@dataclass
class Setup:
    cluster_dir: Path
    release: Path
    objects: int


@dataclass
class Side:
    """One side's measurements: latency of each cone, and wall time of each round."""

    name: str
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    count: int = 0

    @property
    def throughput(self) -> float:
        return self.count / self.wall


# --- set-up ----------------------------------------------------------------------------


def setup(args: argparse.Namespace) -> Setup:
    """A fresh cluster with dp02.Object loaded and settled."""
    import json

    from qserv_py.cluster.local import LocalCluster
    from qserv_py.config import load_settings

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)  # the servers may run as another user
    release = release_dir(args.work, args.objects, args.forced_per_object)
    print(f"release {release}: {json.loads((release / 'done.json').read_text())}", flush=True)
    cluster_dir = args.work / "cluster"
    cluster = LocalCluster(cluster_dir)
    if cluster.exists():
        cluster.destroy()
    cluster.init(load_settings({"cluster": cluster_dir, "shared_buffers": "1GB"}))
    cli = [sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster_dir)]
    subprocess.run([*cli, "catalog", "create", "dp02"], check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    subprocess.run([*cli, "load", "dp02", "Object", str(release / "Object")], check=True)
    print(f"qserv-py load Object: {time.perf_counter() - started:.1f} s", flush=True)
    settle(cluster_dir)
    return Setup(cluster_dir, release, args.objects)


def start_server(cluster_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """``qserv-py serve`` on a free port; the process and its URL."""
    command = [
        sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster_dir), "serve",
        "--http-port", "0", "--log-level", "warning",
    ]  # fmt: skip
    env = dict(os.environ, QSERV_DEFAULT_CATALOG="dp02")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"at (http://\S+)", line)
        if found:
            threading.Thread(target=process.stdout.read, daemon=True).start()  # drain
            return process, found.group(1)
    raise RuntimeError(f"qserv-py serve exited ({process.wait()}) without serving")


# --- running concurrently --------------------------------------------------------------


def run_round(
    texts: list[str], clients: int, make_runner: Callable[[], Callable[[str], int]]
) -> tuple[float, list[float], dict[int, int]]:
    """Run ``texts`` from ``clients`` threads; (wall seconds, latencies, rows per text)."""
    todo: queue.Queue[tuple[int, str]] = queue.Queue()
    for item in enumerate(texts):
        todo.put(item)
    latencies: list[float] = []
    rows: dict[int, int] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        run = make_runner()
        while True:
            try:
                i, text = todo.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            try:
                n = run(text)
            except BaseException as exc:
                errors.append(exc)
                return
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                rows[i] = n

    threads = [threading.Thread(target=work) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return wall, latencies, rows


# --- part: cones -----------------------------------------------------------------------


def cone_texts(release: Path, n: int, radius_deg: float, seed: int = 20261124) -> list[str]:
    """``n`` cone searches centred on random objects (populated sky)."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    first = sorted((release / "Object").glob("*.parquet"))[0]
    pos = pq.read_table(first, columns=["coord_ra", "coord_dec"])
    pick = rng.choice(pos.num_rows, size=n, replace=n > pos.num_rows)
    ra = pos["coord_ra"].to_numpy()[pick]
    dec = pos["coord_dec"].to_numpy()[pick]
    return [CONE.format(ra=r, dec=d, radius=radius_deg) for r, d in zip(ra, dec, strict=True)]


def cones(args: argparse.Namespace, setup: Setup, url: str) -> None:
    import httpx
    from astropy.io.votable import parse_single_table

    import qserv_py

    client = qserv_py.connect(setup.cluster_dir, default_catalog="dp02")
    radius = args.radius_arcmin * ARCMIN
    texts = cone_texts(setup.release, args.cones + 4 * args.clients, radius)
    warm, timed = texts[: 4 * args.clients], texts[4 * args.clients :]

    def http_runner() -> Callable[[str], int]:
        session = httpx.Client(base_url=url, timeout=120)

        def run(text: str) -> int:
            response = session.post(
                "/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": text}
            )
            response.raise_for_status()
            return len(response.content)

        return run

    def api_runner() -> Callable[[str], int]:
        return lambda text: client.query(text).num_rows

    sides = {"HTTP /tap/sync": Side("HTTP /tap/sync"), "Python API": Side("Python API")}
    runners = {"HTTP /tap/sync": http_runner, "Python API": api_runner}
    for runner in runners.values():  # warm-up: pools, plans, caches
        run_round(warm[: 2 * args.clients], args.clients, runner)
        run_round(warm[2 * args.clients :], args.clients, runner)
    halves = [timed[: len(timed) // 2], timed[len(timed) // 2 :]]
    python_rows: dict[int, int] = {}
    for number, half in enumerate(halves):
        for name in ("HTTP /tap/sync", "Python API"):
            wall, latencies, rows = run_round(half, args.clients, runners[name])
            side = sides[name]
            side.wall += wall
            side.latencies += latencies
            side.count += len(half)
            if name == "Python API":
                offset = 0 if number == 0 else len(halves[0])
                python_rows.update({offset + i: n for i, n in rows.items()})
            print(f"  round {number + 1} {name}: {len(half)} cones in {wall:.2f} s", flush=True)

    # the same rows on both sides, for a sample of cones (outside the timing)
    mismatches = []
    with httpx.Client(base_url=url, timeout=120) as session:
        for i in range(0, len(timed), max(1, len(timed) // 20)):
            response = session.post(
                "/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": timed[i]}
            )
            n = len(parse_single_table(io.BytesIO(response.content)).array)
            if n != python_rows[i]:
                mismatches.append(f"cone {i}: HTTP {n} rows, Python {python_rows[i]}")

    http, api = sides["HTTP /tap/sync"], sides["Python API"]
    rows = list(python_rows.values())
    print(
        f"\n### Sync cone searches, r = {args.radius_arcmin:g}′, {args.clients} concurrent "
        f"clients, {len(timed)} cones ({min(rows):,}–{max(rows):,} rows, median "
        f"{statistics.median(rows):,.0f})\n"
    )
    print("| path | throughput | p50 | p95 |")
    print("|---|---:|---:|---:|")
    for side in (http, api):
        print(
            f"| {side.name} | {side.throughput:.1f} cones/s | {_ms(_p(side.latencies, 50))} | "
            f"{_ms(_p(side.latencies, 95))} |"
        )
    p50 = _p(http.latencies, 50) / _p(api.latencies, 50)
    p95 = _p(http.latencies, 95) / _p(api.latencies, 95)
    slower = api.throughput / http.throughput
    met = "yes" if max(p50, slower) <= TARGET else "**no**"
    print(
        f"\nHTTP / Python API: p50 {p50:.2f}×, p95 {p95:.2f}×, throughput {slower:.2f}× lower "
        f"(target ≤ {TARGET}×: {met})"
    )
    for line in mismatches:
        print(f"MISMATCH {line}")


# --- part: cross-matches ---------------------------------------------------------------


def xmatch(args: argparse.Namespace, setup: Setup, url: str) -> None:
    print("\n### Cross-matches: not written yet")


PARTS: dict[str, Callable[[argparse.Namespace, Setup, str], None]] = {
    "cones": cones,
    "xmatch": xmatch,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2_000_000)
    parser.add_argument("--forced-per-object", type=float, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-tap"))
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--cones", type=int, default=400, help="timed cone searches per side")
    parser.add_argument("--radius-arcmin", type=float, default=6)
    args = parser.parse_args()

    from qserv_py.cluster.local import LocalCluster

    started = time.perf_counter()
    prepared = setup(args)
    server, url = start_server(prepared.cluster_dir)
    print(f"serving at {url} (pid {server.pid})", flush=True)
    try:
        for name, part in PARTS.items():
            if args.part in (name, "all"):
                part(args, prepared, url)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
        from qserv_py.exec.dispatch import close_pools

        close_pools()
        LocalCluster(prepared.cluster_dir).destroy()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
