"""TAP benchmark: the service over HTTP against the Python API, on the same cluster.

    python bench/tap.py --objects 2000000 [--part cones|xmatch|all] [--clients 16]
                        [--cones 400] [--radius-arcmin 6] [--work DIR]

Set-up (as bench/query.py, whose helpers it uses): the release of ``bench/load.py`` if
it is there, else one generated into ``--work``; a fresh local cluster (a czar and two
workers, shared_buffers 1GB); ``qserv-py catalog create dp02`` and ``qserv-py load dp02
Object`` (default options); VACUUM and a quiet autovacuum. Then ``qserv-py serve
--http-port 0 --processes N`` in a subprocess on that cluster (``--server-processes``,
default one per core, as the service would be deployed: a Python process runs Python code
on one core at a time, and so does the Python API's single process).

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
- ``xmatch``: an upload cross-match of ``--targets`` targets (70 % within 0.9 r of a
  random object, 30 % anywhere) with Object at ``--xmatch-arcsec``, end to end: through
  the Python API (``client.query(text, uploads={"t": table})``: planning, partitioning
  the targets, shipping them, the join on the workers, the merge) and through ``POST
  /tap/sync`` (a Parquet UPLOAD, a Parquet answer); against the oracle, database
  ``oracle_xmatch`` on the czar instance holding the same Object rows with
  ``spatial_index`` and its btree (as each worker partition has), running the same join
  with the targets in a plain analyzed table carrying the very spatial_index ranges the
  workers get (so it probes its btree as the workers do; the oracle's time is the join
  alone, its targets loaded beforehand). One warm-up run, then ``--xmatch-repeat`` runs
  alternating the sides; the pairs of every side are compared with the oracle's.
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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import fresh_cluster
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

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)  # the servers may run as another user
    release = release_dir(args.work, args.objects, args.forced_per_object)
    print(f"release {release}: {json.loads((release / 'done.json').read_text())}", flush=True)
    cluster_dir = args.work / "cluster"
    fresh_cluster(cluster_dir)
    cli = [sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster_dir)]
    subprocess.run([*cli, "catalog", "create", "dp02"], check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    subprocess.run([*cli, "load", "dp02", "Object", str(release / "Object")], check=True)
    print(f"qserv-py load Object: {time.perf_counter() - started:.1f} s", flush=True)
    settle(cluster_dir)
    return Setup(cluster_dir, release, args.objects)


def start_server(cluster_dir: Path, processes: int = 1) -> tuple[subprocess.Popen[str], str]:
    """``qserv-py serve --processes N`` on a free port; the process and its URL."""
    command = [
        sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster_dir), "serve",
        "--http-port", "0", "--log-level", "warning", "--processes", str(processes),
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
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
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


XMATCH_ORACLE_DB = "oracle_xmatch"
XMATCH = (
    "SELECT t.id, o.objectId, DISTANCE(POINT(t.ra, t.dec), POINT(o.coord_ra, o.coord_dec)) "
    "AS d FROM TAP_UPLOAD.t AS t JOIN Object AS o "
    "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, {radius!r})) = 1"
)


def xmatch_targets(release: Path, n: int, radius_deg: float, seed: int = 7) -> Any:
    """``n`` targets (id, ra, dec): 70 % within 0.9 r of a random object (most match
    once), 30 % anywhere on the sky (most match nothing)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    pos = pa.concat_tables(
        pq.read_table(p, columns=["coord_ra", "coord_dec"])
        for p in sorted((release / "Object").glob("*.parquet"))
    )
    near = int(0.7 * n)
    pick = rng.integers(0, pos.num_rows, near)
    ra0 = np.radians(pos["coord_ra"].to_numpy()[pick])
    dec0 = np.radians(pos["coord_dec"].to_numpy()[pick])
    d = np.radians(radius_deg) * 0.9 * np.sqrt(rng.uniform(0, 1, near))
    b = rng.uniform(0, 2 * np.pi, near)
    dec1 = np.arcsin(np.sin(dec0) * np.cos(d) + np.cos(dec0) * np.sin(d) * np.cos(b))
    east = np.arctan2(np.sin(b) * np.sin(d) * np.cos(dec0), np.cos(d) - np.sin(dec0) * np.sin(dec1))
    ra1 = ra0 + east
    far = n - near
    ra = np.concatenate([np.degrees(ra1) % 360, rng.uniform(0, 360, far)])
    dec = np.concatenate([np.degrees(dec1), np.degrees(np.arcsin(rng.uniform(-1, 1, far)))])
    return pa.table({"id": np.arange(n, dtype=np.int64), "ra": ra, "dec": dec})


def build_xmatch_oracle(cluster: Path, release: Path) -> None:
    """Database ``oracle_xmatch`` on the czar instance: dp02.object with the same rows,
    a ``spatial_index`` column and its btree (as each worker partition has), analyzed."""
    import psycopg

    from bench.load import copy_parquet
    from qserv_py.cluster.db import connect
    from qserv_py.cluster.metadata import spatial_sql
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.schema import default_catalog

    spec = read_cluster_file(cluster)
    table = default_catalog("dp02").table("Object")
    with connect(spec.czar, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {XMATCH_ORACLE_DB}")
        admin.execute(f"CREATE DATABASE {XMATCH_ORACLE_DB}")
    info = dict(spec.czar.conninfo, dbname=XMATCH_ORACLE_DB)
    cols = [c.sql_name for c in table.columns] + ["spatial_index"]
    types = [c.pg_type for c in table.columns] + ["bigint"]
    with psycopg.connect(**info) as conn:
        conn.execute(spatial_sql())
        conn.execute("CREATE SCHEMA dp02")
        defs = ", ".join(f"{c} {t}" for c, t in zip(cols, types, strict=True))
        conn.execute(f"CREATE TABLE dp02.object ({defs})")
        with conn.cursor().copy(
            f"COPY dp02.object ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy_parquet(copy, release / "Object", types)
        conn.commit()
        conn.execute("CREATE INDEX ON dp02.object (spatial_index)")
        conn.commit()
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) dp02.object")


def load_oracle_targets(conn: Any, shipped: Any) -> None:
    """The targets in a plain table of the oracle, with the very spatial_index ranges
    the workers get (one row per target and range: a target's rows in different chunks
    have disjoint ranges, so the join still finds each pair once), analyzed."""
    from qserv_py.loaders.pgcopy import HEADER, TRAILER, encode_batch

    conn.execute("DROP TABLE IF EXISTS xmatch_targets")
    conn.execute(
        "CREATE TABLE xmatch_targets (id bigint, ra double precision, dec double precision, "
        "lo bigint, hi bigint)"
    )
    columns = [shipped.column(n) for n in ("id", "ra", "dec", "qserv_lo", "qserv_hi")]
    with conn.cursor().copy("COPY xmatch_targets FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(HEADER)
        types = ["bigint", "double precision", "double precision", "bigint", "bigint"]
        copy.write(encode_batch(columns, types))
        copy.write(TRAILER)
    conn.execute("ANALYZE xmatch_targets")


def literal_join_seconds(oracle: Any, radius: float, sample: int) -> float:
    """Seconds of the cross-match as one database runs the query's SQL as written (no
    spatial_index ranges: PostgreSQL can use no index for it) for ``sample`` targets."""
    started = time.perf_counter()
    oracle.execute(
        "SELECT t.id, o.objectid, qserv.ang_sep(t.ra, t.dec, o.coord_ra, o.coord_dec) "
        "FROM (SELECT DISTINCT id, ra, dec FROM xmatch_targets ORDER BY id LIMIT %s) t "
        "JOIN dp02.object o "
        "ON qserv.pt_in_circle(o.coord_ra, o.coord_dec, t.ra, t.dec, %s)",
        (sample, radius),
    ).fetchall()
    return time.perf_counter() - started


def xmatch(args: argparse.Namespace, setup: Setup, url: str) -> None:
    """Upload cross-match: ``--targets`` targets against the catalog at ``--xmatch-arcsec``,
    end to end through the Python API and ``POST /tap/sync`` (an UPLOAD of Parquet, a
    Parquet answer), against the oracle running the same join on one database."""
    import httpx
    import psycopg
    import pyarrow.parquet as pq

    import qserv_py
    from qserv_py.cluster.spec import read_cluster_file

    radius = args.xmatch_arcsec / 3600
    targets = xmatch_targets(setup.release, args.targets, radius)
    text = XMATCH.format(radius=radius)
    started = time.perf_counter()
    build_xmatch_oracle(setup.cluster_dir, setup.release)
    print(f"oracle built in {time.perf_counter() - started:.1f} s", flush=True)
    spec = read_cluster_file(setup.cluster_dir)
    oracle = psycopg.connect(**dict(spec.czar.conninfo, dbname=XMATCH_ORACLE_DB), autocommit=True)
    client = qserv_py.connect(setup.cluster_dir, default_catalog="dp02")
    started = time.perf_counter()
    planned = client.plan(text, uploads={"t": targets})
    plan_s = time.perf_counter() - started
    (use,) = planned.uploads  # type: ignore[attr-defined]
    shipped = planned.shipments[use.token]  # type: ignore[attr-defined]
    load_oracle_targets(oracle, shipped)
    oracle_sql = (
        "SELECT t.id, o.objectid, qserv.ang_sep(t.ra, t.dec, o.coord_ra, o.coord_dec) AS d "
        "FROM xmatch_targets t JOIN dp02.object o "
        "ON o.spatial_index >= t.lo AND o.spatial_index < t.hi "
        f"AND qserv.pt_in_circle(o.coord_ra, o.coord_dec, t.ra, t.dec, {radius!r})"
    )
    sink = io.BytesIO()
    pq.write_table(targets, sink)
    parquet = sink.getvalue()
    http = httpx.Client(base_url=url, timeout=600)

    def python_api() -> Any:
        return client.query(text, uploads={"t": targets})

    def over_http() -> Any:
        response = http.post(
            "/tap/sync",
            data={"QUERY": text, "UPLOAD": "t,param:t", "RESPONSEFORMAT": "parquet",
                  "MAXREC": str(10 * args.targets)},
            files={"t": ("targets.parquet", parquet)},
        )  # fmt: skip
        response.raise_for_status()
        return pq.read_table(io.BytesIO(response.content))

    def the_oracle() -> Any:
        from qserv_py.exec.arrow import fetch_table

        return fetch_table(oracle, oracle_sql)

    sides: dict[str, Callable[[], Any]] = {
        "qserv_py, Python API": python_api,
        "qserv_py, HTTP /tap/sync": over_http,
        "oracle (one database, the same ranges)": the_oracle,
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    results: dict[str, Any] = {}
    for run in range(1 + args.xmatch_repeat):  # the first run warms up
        names = list(sides) if run % 2 == 0 else list(reversed(sides))
        for name in names:
            started = time.perf_counter()
            results[name] = sides[name]()
            if run:
                times[name].append(time.perf_counter() - started)
    http.close()

    def pairs(table: Any) -> list[tuple[int, int]]:
        cols = table.column_names
        first, second = (table.column(c).to_pylist() for c in cols[:2])
        return sorted(zip(first, second, strict=True))

    reference = pairs(results["oracle (one database, the same ranges)"])
    print(
        f"\n### Upload cross-match: {args.targets:,} targets, {setup.objects:,} objects, "
        f"r = {args.xmatch_arcsec:g}″ ({len(reference):,} pairs; {shipped.num_rows:,} "
        f"target rows shipped, {shipped.num_rows / args.targets:.2f} per target; planning "
        f"with the partitioning {_ms(plan_s)})\n"
    )
    print("| path | median | best |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {_ms(statistics.median(values))} | {_ms(min(values))} |")
    ours = statistics.median(times["qserv_py, Python API"])
    theirs = statistics.median(times["oracle (one database, the same ranges)"])
    met = "yes" if ours < theirs else "**no**"
    print(
        f"\noracle with the ranges / qserv_py (Python API): {theirs / ours:.2f}× "
        f"(faster than that oracle: {met})"
    )
    literal = literal_join_seconds(oracle, radius, args.naive_sample)
    print(
        f"the oracle running the join as written (the plan's oracle_sql, no ranges: a nested "
        f"loop over every object per target), timed on {args.naive_sample} targets: "
        f"{literal:.2f} s, so about {literal / args.naive_sample * args.targets:,.0f} s for "
        f"{args.targets:,} targets ({literal / args.naive_sample * args.targets / ours:,.0f}× "
        "qserv_py's time)"
    )
    for name, table in results.items():
        if pairs(table) != reference:
            print(f"MISMATCH {name}: {table.num_rows} pairs, the oracle {len(reference)}")
    oracle.close()


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
    parser.add_argument("--targets", type=int, default=100_000, help="targets to cross-match")
    parser.add_argument("--xmatch-arcsec", type=float, default=1.0, help="cross-match radius")
    parser.add_argument("--xmatch-repeat", type=int, default=3, help="timed cross-match runs")
    parser.add_argument(
        "--naive-sample",
        type=int,
        default=10,
        help="targets on which the oracle runs the join as written (a nested loop)",
    )
    parser.add_argument(
        "--server-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="`qserv-py serve --processes` (default: one per core, as deployed)",
    )
    args = parser.parse_args()

    from qserv_py.cluster.local import LocalCluster

    started = time.perf_counter()
    prepared = setup(args)
    server, url = start_server(prepared.cluster_dir, args.server_processes)
    print(f"service: {args.server_processes} process(es)", flush=True)
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
