"""``--backend citus`` of bench/query.py and bench/load.py: a Citus cluster against native
workers and the baseline (the oracle, or plain COPY), in the same run, as ratios.

    python bench/query.py --backend citus --objects 100000 --forced-per-object 5 \\
        --small-repeat 11 --repeat 5 --nn-repeat 3
    python bench/load.py --backend citus --objects 100000 --forced-per-object 5

Queries. The native cluster, its load and the oracle are bench/query.py's (same release,
same cases, same oracle SQL). Beside it a local Citus cluster (a coordinator and two worker
nodes, the same shared_buffers) gets ``qserv-py catalog create dp02`` and ``qserv-py
load`` of the same files, then ``VACUUM (ANALYZE)``. Each run of each case is timed in
rotating order on native, on Citus as qserv_py runs it (its route for the case printed:
straight to the shards, or through the coordinator), on Citus with every query routed
by the coordinator (``citus_direct.ENABLED`` off) and on the oracle; every result is
compared with the oracle's. For the cones and the near-neighbour join, a plain Citus
query written by hand (no qserv_py planner: an angular-distance test over the
distributed table; for the join, the region's objects as a materialised CTE joined
with the whole table, the form Citus accepts for a join off its distribution column)
runs on the same coordinator; its row count is checked against the oracle's. Then, for a
cone and a whole-table scan, the worker SQL sent three ways: as one statement routed by
the coordinator, per shard straight to the worker nodes (the shard tables named), and per chunk
straight to the nodes, each concurrently over the shards (see docs/decisions.md).

Loads. The same release loaded with ``qserv-py load`` into a fresh native cluster and a
fresh Citus cluster, and bench/load.py's baseline (binary COPY into plain tables on one
instance, then btrees), each a subprocess with its peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

BENCH = Path(__file__).resolve().parent
SHARED_BUFFERS = "1GB"
#: the hand-written plain Citus cone: the distance test alone, over every shard
HAND_CONE = (
    "SELECT {columns} FROM dp02.object "
    "WHERE qserv.ang_sep(coord_ra, coord_dec, {ra:.6f}, {dec:.6f}) <= {radius:.10g}"
)
#: the hand-written plain Citus near-neighbour join (a join off the distribution column
#: needs one side materialised: Citus sends it to every shard of the other)
HAND_NN = (
    "WITH o1 AS MATERIALIZED (SELECT objectid, coord_ra, coord_dec FROM dp02.object "
    "WHERE qserv.ang_sep(coord_ra, coord_dec, {ra}, {dec}) <= {region}) "
    "SELECT count(*) FROM o1 JOIN dp02.object o2 "
    "ON o2.coord_dec BETWEEN o1.coord_dec - {radius} AND o1.coord_dec + {radius} "
    "AND qserv.ang_sep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < {radius} "
    "AND o1.objectid <> o2.objectid"
)
_CONE = re.compile(r"CIRCLE\(([-\d.e]+), ([-\d.e]+), ([-\d.e]+)\)")
_TABLE = re.compile(r"FROM (dp02\.\w+) WHERE chunk_id")


def fresh_citus_cluster(cluster_dir: Path, shared_buffers: str = SHARED_BUFFERS) -> Any:
    """A new local Citus cluster (a coordinator and two nodes) in ``cluster_dir``."""
    from qserv_py.cluster.local import LocalCluster
    from qserv_py.config import load_settings

    cluster = LocalCluster(cluster_dir)
    if cluster.exists():
        cluster.destroy()
    settings = {"cluster": cluster_dir, "backend": "citus", "shared_buffers": shared_buffers}
    cluster.init(load_settings(settings))
    return cluster


def _timed(run: Callable[[], Any]) -> tuple[float, Any]:
    gc.disable()  # as timeit
    started = time.perf_counter()
    try:
        out = run()
    finally:
        elapsed = time.perf_counter() - started
        gc.enable()
    return elapsed, out


# --- queries ---------------------------------------------------------------------------


@dataclass
class Row:
    """One case on the four sides (and by hand on Citus, for cones and the join)."""

    name: str
    native: list[float] = field(default_factory=list)
    citus: list[float] = field(default_factory=list)
    oracle: list[float] = field(default_factory=list)
    hand: list[float] = field(default_factory=list)
    #: Citus with every query routed by the coordinator (citus_direct.ENABLED off)
    routed: list[float] = field(default_factory=list)
    #: whether the Citus side read the shards straight from the nodes
    direct: bool = False
    rows: list[int] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def p50(self, side: str) -> float:
        return statistics.median(getattr(self, side))


def _hand_sql(case_name: str, text: str, columns: str) -> str | None:
    from bench import query as q

    if case_name.startswith("cone search"):
        ra, dec, radius = (float(v) for v in _CONE.search(text).groups())  # type: ignore[union-attr]
        return HAND_CONE.format(columns=columns, ra=ra, dec=dec, radius=radius)
    if case_name.startswith("near-neighbour"):
        ra, dec = q.NN_CENTRE
        return HAND_NN.format(ra=ra, dec=dec, region=q.NN_REGION, radius=q.NN_RADIUS)
    return None


def measure(case: Any, native: Any, citus: Any, oracle: Any, coordinator: Any) -> Row:
    from bench.query import difference
    from qserv_py.exec import citus_direct
    from qserv_py.exec.arrow import fetch_table
    from qserv_py.schema import default_catalog

    row = Row(case.name)
    columns = ", ".join(c.sql_name for c in default_catalog("dp02").table("Object").columns)
    print(f"{case.name}: ", end="", flush=True)
    for i, (text, sql) in enumerate(case.runs):
        sides: list[tuple[str, Callable[[], pa.Table]]] = [
            ("native", lambda t=text: native.query(t)),
            ("citus", lambda t=text: citus.query(t)),
            ("routed", lambda t=text: _routed(citus, t)),
            ("oracle", lambda s=sql: fetch_table(oracle, s)),
        ]
        if i == 0:
            planned = citus.plan(text, oracle=False)
            row.direct = citus_direct.route(citus.spec, planned) is not None
        hand = _hand_sql(case.name, text, columns)
        if hand is not None:
            sides.append(("hand", lambda h=hand: fetch_table(coordinator, h)))
        k = i % len(sides)
        results = {side: _timed(run) for side, run in sides[k:] + sides[:k]}
        want = results["oracle"][1]
        for side in ("native", "citus", "routed"):
            why = difference(results[side][1], want)
            if why is not None:
                row.mismatches.append(f"{side} run {i}: {why}: {text}")
        if hand is not None:
            got = results["hand"][1]
            n = got.column(0)[0].as_py() if got.shape == (1, 1) else got.num_rows
            expect = want.column(0)[0].as_py() if want.shape == (1, 1) else want.num_rows
            if n != expect:
                row.mismatches.append(f"hand run {i}: {n} vs the oracle's {expect}")
        if i >= case.warmup:
            for side, (seconds, _) in results.items():
                getattr(row, side).append(seconds)
            row.rows.append(want.num_rows)
        print(".", end="", flush=True)
    print(
        f" native {row.p50('native') * 1000:.1f} ms, Citus {row.p50('citus') * 1000:.1f} ms"
        f" ({'direct' if row.direct else 'routed'}), routed {row.p50('routed') * 1000:.1f} ms, "
        f"oracle {row.p50('oracle') * 1000:.1f} ms"
        + (f", hand {row.p50('hand') * 1000:.1f} ms" if row.hand else "")
        + (f", {len(row.mismatches)} MISMATCHES" if row.mismatches else ""),
        flush=True,
    )
    return row


def _routed(citus: Any, text: str) -> pa.Table:
    """``text`` on Citus with the worker SQL routed by the coordinator."""
    from qserv_py.exec import citus_direct

    citus_direct.ENABLED = False
    try:
        return citus.query(text)
    finally:
        citus_direct.ENABLED = True


def routes(citus: Any, spec: Any, text: str, repeat: int) -> dict[str, float]:
    """Median seconds of the worker SQL of ``text`` over all its chunks: one statement
    routed by the coordinator; per shard to the nodes; per chunk to the nodes."""
    from qserv_py.cluster.db import connect
    from qserv_py.exec.plan import worker_sql

    planned = citus.plan(text, oracle=False)
    chunks = tuple(sorted(c for cs in planned.chunks.values() for c in cs))
    routed = worker_sql(planned, chunks, citus=True)
    tables = sorted(set(_TABLE.findall(routed)))
    nodes = {(str(w.conninfo["host"]), int(w.conninfo["port"])): w for w in spec.citus_workers}
    with connect(spec.coordinator, autocommit=True) as conn:
        shard_of: dict[tuple[str, int], int] = {}
        for table in tables:
            for chunk in chunks:
                got = conn.execute(
                    "SELECT get_shard_id_for_distribution_column(%s, %s)", (table, chunk)
                ).fetchone()
                assert got is not None
                shard_of[(table, chunk)] = int(got[0])
        where = {}
        for shard in set(shard_of.values()):
            node = conn.execute(
                "SELECT nodename, nodeport FROM pg_dist_shard_placement WHERE shardid = %s",
                (shard,),
            ).fetchone()
            assert node is not None
            where[shard] = nodes[(str(node[0]), int(node[1]))]

    def on_shards(group: tuple[int, ...]) -> tuple[Any, str]:
        sql = worker_sql(planned, group, citus=True)
        for table in tables:
            shard = shard_of[(table, group[0])]
            sql = sql.replace(f"FROM {table} WHERE", f"FROM {table}_{shard} WHERE")
        return where[shard_of[(tables[0], group[0])]], sql

    by_shard: dict[int, list[int]] = {}
    for chunk in chunks:
        by_shard.setdefault(shard_of[(tables[0], chunk)], []).append(chunk)
    ways = {
        "one statement routed by the coordinator": [(spec.coordinator, routed)],
        "per shard, straight to the nodes": [on_shards(tuple(g)) for g in by_shard.values()],
        "per chunk, straight to the nodes": [on_shards((c,)) for c in chunks],
    }
    out = {}
    for name, statements in ways.items():
        out[name] = _concurrently(statements, repeat)
        print(f"  {name}: {len(statements)} statements, {out[name] * 1000:.1f} ms", flush=True)
    return out


def _concurrently(statements: list[tuple[Any, str]], repeat: int) -> float:
    """Median seconds of running ``statements`` ((instance, sql)) over up to 8 lanes at
    once, each lane with its own open sessions (connecting is not timed)."""
    from qserv_py.cluster.db import connect

    lanes = max(1, min(8, len(statements)))
    work = [statements[lane::lanes] for lane in range(lanes)]
    sessions = [[connect(inst, autocommit=True) for inst, _ in part] for part in work]

    def lane_run(lane: int) -> int:
        n = 0
        for conn, (_, sql) in zip(sessions[lane], work[lane], strict=True):
            n += len(conn.execute(sql).fetchall())
        return n

    times = []
    try:
        with ThreadPoolExecutor(lanes) as pool:
            for _ in range(1 + repeat):
                seconds, _ = _timed(lambda: sum(pool.map(lane_run, range(lanes))))
                times.append(seconds)
    finally:
        for part in sessions:
            for conn in part:
                conn.close()
    return statistics.median(times[1:])


def query_main(args: argparse.Namespace) -> None:
    import psycopg

    import qserv_py
    from bench import query as q
    from bench.load import fresh_cluster
    from qserv_py.cluster.db import connect
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.exec.dispatch import close_pools

    started = time.perf_counter()
    release = q.release_dir(args.work, args.objects, args.forced_per_object)
    native_dir, citus_dir = args.work / "cluster", args.work / "citus"
    clusters = [fresh_cluster(native_dir)]
    try:
        q.load(native_dir, release)
        clusters.append(fresh_citus_cluster(citus_dir))
        cli = [sys.executable, "-m", "qserv_py.cli", "--cluster", str(citus_dir)]
        subprocess.run([*cli, "catalog", "create", "dp02"], check=True, stdout=subprocess.DEVNULL)
        for table in ("Object", "ForcedSource"):
            t0 = time.perf_counter()
            subprocess.run([*cli, "load", "dp02", table, str(release / table)], check=True)
            print(f"Citus: qserv-py load {table}: {time.perf_counter() - t0:.1f} s", flush=True)
        citus_spec = read_cluster_file(citus_dir)
        with connect(citus_spec.coordinator, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) dp02.object, dp02.object_overlap, dp02.forcedsource")
        native = qserv_py.connect(native_dir, default_catalog="dp02")
        citus = qserv_py.connect(citus_dir, default_catalog="dp02")
        spec = read_cluster_file(native_dir)
        info = dict(spec.czar.conninfo, dbname=q.ORACLE_DB)
        with (
            psycopg.connect(**info, autocommit=True) as oracle,
            psycopg.connect(citus_spec.coordinator.dsn, autocommit=True) as coordinator,
        ):
            cases = q.make_cases(
                native, release, args.objects, args.repeat, args.small_repeat, args.nn_repeat
            )
            q.director_index_in_memory(native)
            q.director_index_in_memory(citus)
            rows = [measure(case, native, citus, oracle, coordinator) for case in cases]
            print("\nworker SQL of a cone (r = 30′) and of a whole-table scan, three ways:")
            cone = cases[2].runs[-1][0]
            ways = {
                "cone r = 30′": routes(citus, citus_spec, cone, args.repeat),
                q.COUNT: routes(citus, citus_spec, q.COUNT, args.repeat),
            }
        report(rows, ways)
    finally:
        close_pools()
        for cluster in clusters:
            cluster.destroy()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def report(rows: list[Row], ways: dict[str, dict[str, float]]) -> None:
    def ms(s: float) -> str:
        return f"{s * 1000:.3g} ms" if s < 1 else f"{s:.2f} s"

    print(
        "\n| query | native p50 | Citus p50 (route) | Citus routed p50 | oracle p50 |"
        " Citus / native | routed / native | native / oracle | Citus / oracle |"
        " Citus ≤ 1.2× native? | plain Citus by hand | hand / Citus |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---:|")
    for r in rows:
        ratio = r.p50("citus") / r.p50("native")
        met = "yes" if ratio <= 1.2 else "**no**"
        if r.mismatches:
            met += " (results differ!)"
        hand = f"{ms(r.p50('hand'))} | {r.p50('hand') / r.p50('citus'):.2f}×" if r.hand else "– | –"
        route = "direct" if r.direct else "coordinator"
        print(
            f"| {r.name} | {ms(r.p50('native'))} | {ms(r.p50('citus'))} ({route}) | "
            f"{ms(r.p50('routed'))} | {ms(r.p50('oracle'))} | {ratio:.2f}× | "
            f"{r.p50('routed') / r.p50('native'):.2f}× | "
            f"{r.p50('native') / r.p50('oracle'):.2f}× | "
            f"{r.p50('citus') / r.p50('oracle'):.2f}× | {met} | {hand} |"
        )
    print("\n| worker SQL | " + " | ".join(next(iter(ways.values()))) + " |")
    print("|---|" + "---:|" * len(next(iter(ways.values()))))
    for name, times in ways.items():
        print(f"| {name} | " + " | ".join(ms(t) for t in times.values()) + " |")
    for r in rows:
        for line in r.mismatches[:5]:
            print(f"MISMATCH {r.name}: {line}")


# --- loads -----------------------------------------------------------------------------


def load_main(args: argparse.Namespace) -> None:
    import json

    from bench import load as b

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)
    release = args.work / f"release-{args.objects}-{args.forced_per_object:g}"
    b._generate(release, args.objects, args.forced_per_object)
    counts = json.loads((release / "done.json").read_text())
    cli = [sys.executable, "-m", "qserv_py.cli"]
    times: dict[str, tuple[float, float]] = {}
    for side, make in (("native", b.fresh_cluster), ("Citus", fresh_citus_cluster)):
        cluster_dir = args.work / ("cluster" if side == "native" else "citus")
        cluster = make(cluster_dir)
        try:
            q = [*cli, "--cluster", str(cluster_dir)]
            subprocess.run([*q, "catalog", "create", "dp02"], check=True, stdout=subprocess.DEVNULL)
            obj = b._run([*q, "load", "dp02", "Object", str(release / "Object")])
            fs = b._run([*q, "load", "dp02", "ForcedSource", str(release / "ForcedSource")])
            times[side] = (obj[0] + fs[0], max(obj[1], fs[1]))
            print(f"{side}: Object {obj[0]:.1f} s, ForcedSource {fs[0]:.1f} s", flush=True)
            if side == "native":
                phase = [sys.executable, str(BENCH / "load.py"), "--phase", "baseline"]
                times["baseline"] = b._run(
                    [*phase, "--cluster", str(cluster_dir), "--release", str(release)]
                )
        finally:
            cluster.destroy()
    native, citus, base = times["native"][0], times["Citus"][0], times["baseline"][0]
    rss = times["Citus"][1]
    print(
        "\n| objects | forced sources | native load | Citus load | baseline COPY + btrees |"
        " Citus / native | native / baseline | Citus / baseline | Citus loader peak RSS |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.objects:,} | {counts['ForcedSource']:,} | {native:.1f} s | {citus:.1f} s | "
        f"{base:.1f} s | {citus / native:.2f}× | {native / base:.2f}× | {citus / base:.2f}× | "
        f"{rss:.0f} MB |"
    )
