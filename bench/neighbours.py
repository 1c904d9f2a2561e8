"""Near-neighbour join benchmark (issue 12): a whole-sky self-join COUNT on qserv_py
against the zones algorithm (and Q3C's ``q3c_join``, when installed) on one PostgreSQL.

    python bench/neighbours.py --objects 100000 1000000 [--radius-arcsec 10] [--repeat 3]
        [--work DIR] [--keep]

For each size: a synthetic release (``qserv-py generate``, seed 1, Object only), a fresh
local cluster (a czar and two workers, shared_buffers 1GB, as bench/load.py) with
``qserv-py load`` of Object (default layout and 1′ overlap), and on the czar instance the
oracle database ``oracle_nn`` holding the same rows in one plain table, with:

- **zones** (Gray, Szalay & Fekete 2006, "There goes the neighborhood"): a table
  ``zone_object(zone, ra, dec, objectid)``, zone = floor((dec + 90) / h) with h the join
  radius, clustered on a btree ``(zone, ra)``, padded with the copies of the objects near
  RA 0/360 at ra ± 360 (the polar zones whole); the join probes, for each o1 and each of
  the zones z-1, z, z+1, the RA band ± asin(sin r / cos(|dec| + r)) of the btree, then the
  exact distance;
- **q3c**: ``q3c_join(o1.ra, o1.dec, o2.ra, o2.dec, r)`` over the same table with a
  ``q3c_ang2ipix`` index, clustered on it (the usual Q3C set-up), if the extension can be
  created (Debian's postgresql-15-q3c).

Every side is VACUUM ANALYZEd. Then ``--repeat`` timed runs (after one warm-up) of

    SELECT COUNT(*) FROM Object o1, Object o2
    WHERE DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < r
    AND o1.objectId <> o2.objectId

by qserv_py's Python API (end to end: plan, dispatch to both workers, merge) and the
equivalent SQL on each baseline, alternating the order; all counts must agree. Prints a
Markdown table (medians, ratios, growth with N) for docs/benchmarks.md, and EXPLAIN
ANALYZE of one chunk's worker statement.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ORACLE_DB = "oracle_nn"
QUERY = (
    "SELECT COUNT(*) FROM Object o1, Object o2 WHERE DISTANCE(POINT(o1.coord_ra, "
    "o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < {r!r} AND o1.objectId <> o2.objectId"
)


def release(work: Path, objects: int) -> Path:
    """The generated release of ``objects`` objects (made if need be)."""
    out = work / f"release-{objects}"
    if not (out / "Object").exists():
        subprocess.run(
            [sys.executable, "-m", "qserv_py.cli", "generate", "--objects", str(objects),
             "--sources-per-object", "0", "--forced-per-object", "0", "--seed", "1",
             "--out", str(out), "--overwrite"],
            check=True,
        )  # fmt: skip
    return out


def load(cluster_dir: Path, data: Path) -> None:
    cli = [sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster_dir)]
    subprocess.run([*cli, "catalog", "create", "dp02"], check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    subprocess.run([*cli, "load", "dp02", "Object", str(data / "Object")], check=True)
    print(f"qserv-py load Object: {time.perf_counter() - started:.1f} s", flush=True)


def build_oracle(cluster_dir: Path, data: Path, radius: float) -> bool:
    """The oracle database (see the module's docstring); whether Q3C is there."""
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq
    from psycopg import sql

    from qserv_py.cluster.db import connect
    from qserv_py.cluster.metadata import spatial_sql
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.loaders.pgcopy import HEADER, TRAILER, encode_batch
    from qserv_py.schema import default_catalog

    spec = read_cluster_file(cluster_dir)
    table = default_catalog("dp02").table("Object")
    with connect(spec.czar, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {ORACLE_DB}")
        admin.execute(f"CREATE DATABASE {ORACLE_DB}")
    info = dict(spec.czar.conninfo, dbname=ORACLE_DB)
    with psycopg.connect(**info) as conn:
        conn.execute(spatial_sql())
        conn.execute("CREATE SCHEMA dp02")
        cols = [c.sql_name for c in table.columns]
        types = [c.pg_type for c in table.columns]
        conn.execute(
            sql.SQL("CREATE TABLE dp02.object ({})").format(
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                    for c, t in zip(cols, types, strict=True)
                )
            )
        )
        copy_sql = sql.SQL("COPY dp02.object ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.SQL(", ").join(map(sql.Identifier, cols))
        )
        with conn.cursor().copy(copy_sql) as copy:
            copy.write(HEADER)
            for path in sorted((data / "Object").glob("*.parquet")):
                for batch in pq.ParquetFile(path).iter_batches(batch_size=262_144):
                    copy.write(encode_batch(list(batch.columns), types))
            copy.write(TRAILER)
        conn.commit()
        h = radius
        # the zone table: every object, plus its copies at ra -/+ 360 where an RA band of
        # a neighbour can reach past 0/360 (alpha bound at |dec| + 2r: o1 within r of it)
        alpha = (
            f"CASE WHEN abs(coord_dec) + {2 * h!r} >= 90 THEN 360 "
            f"ELSE asind(sind({h!r}) / cosd(abs(coord_dec) + {2 * h!r})) END"
        )
        conn.execute(
            f"""
            CREATE TABLE dp02.zone_object AS
            SELECT floor((coord_dec + 90) / {h!r})::int AS zone, ra, coord_dec AS dec, objectid
            FROM (SELECT objectid, coord_dec, coord_ra AS ra FROM dp02.object
                  UNION ALL
                  SELECT objectid, coord_dec, coord_ra - 360 FROM dp02.object
                  WHERE coord_ra > 360 - ({alpha})
                  UNION ALL
                  SELECT objectid, coord_dec, coord_ra + 360 FROM dp02.object
                  WHERE coord_ra < {alpha}) z
            """
        )
        conn.execute("CREATE INDEX zone_object_idx ON dp02.zone_object (zone, ra)")
        conn.execute("CLUSTER dp02.zone_object USING zone_object_idx")
        conn.commit()
        q3c = True
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS q3c")
        except psycopg.Error as exc:
            print(f"no q3c baseline: {exc}".strip(), flush=True)
            conn.rollback()
            q3c = False
        if q3c:
            conn.execute(
                "CREATE INDEX object_q3c_idx ON dp02.object (q3c_ang2ipix(coord_ra, coord_dec))"
            )
            conn.execute("CLUSTER dp02.object USING object_q3c_idx")
        conn.commit()
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) dp02.object, dp02.zone_object")
    del pa
    return q3c


def zones_sql(radius: float) -> str:
    """The zones algorithm's self-join COUNT (see the module's docstring)."""
    h = radius
    return f"""
        SELECT count(*) FROM dp02.object o1
        CROSS JOIN LATERAL (SELECT floor((o1.coord_dec + 90) / {h!r})::int AS zone,
            CASE WHEN abs(o1.coord_dec) + {h!r} >= 90 THEN 180
                 ELSE asind(sind({h!r}) / cosd(abs(o1.coord_dec) + {h!r})) END AS alpha) b
        CROSS JOIN (VALUES (-1), (0), (1)) AS d(dz)
        JOIN dp02.zone_object o2 ON o2.zone = b.zone + d.dz
            AND o2.ra >= o1.coord_ra - b.alpha AND o2.ra < o1.coord_ra + b.alpha
        WHERE qserv.ang_sep(o1.coord_ra, o1.coord_dec, o2.ra, o2.dec) < {radius!r}
          AND o1.objectid <> o2.objectid"""


def q3c_sql(radius: float) -> str:
    return f"""
        SELECT count(*) FROM dp02.object o1 JOIN dp02.object o2
        ON q3c_join(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec, {radius!r})
        WHERE qserv.ang_sep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < {radius!r}
          AND o1.objectid <> o2.objectid"""


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    gc.disable()  # as timeit: no garbage collection during a timed run
    started = time.perf_counter()
    try:
        value = run()
    finally:
        elapsed = time.perf_counter() - started
        gc.enable()
    return elapsed, value


def measure(cluster_dir: Path, radius: float, repeat: int, q3c: bool) -> dict[str, Any]:
    import psycopg

    import qserv_py
    from qserv_py.cluster.spec import read_cluster_file

    client = qserv_py.connect(cluster_dir, default_catalog="dp02")
    spec = read_cluster_file(cluster_dir)
    info = dict(spec.czar.conninfo, dbname=ORACLE_DB)
    text = QUERY.format(r=radius)
    explain = client.explain(text)
    print(f"plan: {explain.chunks} chunks {explain.chunks_per_worker}")
    print(f"worker SQL: {explain.worker_sql}")
    times: dict[str, list[float]] = {"qserv_py": [], "zones": [], "q3c": []}
    counts: dict[str, set[int]] = {k: set() for k in times}
    with psycopg.connect(**info, autocommit=True) as oracle:
        # the zones algorithm and q3c_join are index nested loops; at 1M objects the
        # planner's estimates pick a hash join on the zone alone (each o1 against its
        # whole zone strip: quadratic in the strip), which is not the algorithm
        oracle.execute("SET enable_hashjoin = off")
        oracle.execute("SET enable_mergejoin = off")
        for (line,) in oracle.execute(f"EXPLAIN {zones_sql(radius)}").fetchall()[:8]:
            print(f"    zones plan: {line}")

        def on_oracle(sql: str) -> int:
            row = oracle.execute(sql).fetchone()
            assert row is not None
            return int(row[0])

        sides: list[tuple[str, Callable[[], int]]] = [
            ("qserv_py", lambda: int(client.query(text).column(0)[0].as_py())),
            ("zones", lambda: on_oracle(zones_sql(radius))),
        ]
        if q3c:
            sides.append(("q3c", lambda: on_oracle(q3c_sql(radius))))
        for i in range(1 + repeat):
            for name, run in sides if i % 2 == 0 else sides[::-1]:
                elapsed, value = timed(run)
                counts[name].add(value)
                if i:
                    times[name].append(elapsed)
                print(f"  run {i} {name}: {elapsed:.2f} s, {value:,} pairs", flush=True)
    values = set().union(*counts.values())
    if len(values) != 1:
        raise SystemExit(f"MISMATCH: the sides counted different pairs: {counts}")
    return {
        "pairs": values.pop(),
        "chunks": explain.chunks,
        **{k: statistics.median(v) for k, v in times.items() if v},
    }


def explain_chunk(cluster_dir: Path, radius: float) -> None:
    """EXPLAIN ANALYZE of the worker statement of the largest chunk."""
    import qserv_py
    from qserv_py.cluster.db import connect
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.exec.dispatch import worker_sql

    client = qserv_py.connect(cluster_dir, default_catalog="dp02")
    planned = client.plan(QUERY.format(r=radius))
    spec = read_cluster_file(cluster_dir)
    worker, chunks = max(planned.chunks.items(), key=lambda kv: len(kv[1]))
    instance = next(w for w in spec.workers if w.name == worker)
    with connect(instance, autocommit=True) as conn:
        sizes = {
            int(c): int(n)
            for c, n in conn.execute(
                "SELECT chunk_id, count(*) FROM dp02.object GROUP BY chunk_id"
            ).fetchall()
        }
        chunk = max(chunks, key=lambda c: sizes.get(c, 0))
        sql = worker_sql(planned, (chunk,))
        for name, value in planned.worker_settings:  # as the worker statements run
            conn.execute(f"SET {name} = {value}")
        rows = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}").fetchall()
    print(f"EXPLAIN ANALYZE, chunk {chunk} ({sizes.get(chunk, 0):,} objects):")
    for (line,) in rows:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, nargs="+", default=[100_000])
    parser.add_argument("--radius-arcsec", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-nn"))
    parser.add_argument(
        "--keep", action="store_true", help="keep the loaded clusters, and reuse kept ones"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.load import fresh_cluster
    from qserv_py.cluster.local import LocalCluster
    from qserv_py.exec.dispatch import close_pools

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)  # the servers may run as another user
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    print(f"code: {head}")
    radius = args.radius_arcsec / 3600
    results: list[tuple[int, dict[str, Any]]] = []
    for objects in args.objects:
        data = release(args.work, objects)
        cluster_dir = args.work / f"cluster-{objects}"
        marker = cluster_dir / "bench-loaded"
        if args.keep and marker.exists():
            cluster = LocalCluster(cluster_dir)
            cluster.start()
            q3c = marker.read_text() == "q3c"
        else:
            cluster = fresh_cluster(cluster_dir)
            load(cluster_dir, data)
            started = time.perf_counter()
            q3c = build_oracle(cluster_dir, data, radius)
            print(f"oracle built: {time.perf_counter() - started:.1f} s", flush=True)
            marker.write_text("q3c" if q3c else "")
        try:
            print(f"\n== {objects:,} objects, r = {args.radius_arcsec:g}″", flush=True)
            results.append((objects, measure(cluster_dir, radius, args.repeat, q3c)))
            explain_chunk(cluster_dir, radius)
        finally:
            close_pools()
            if args.keep:
                cluster.stop()
            else:
                cluster.destroy()
    report(results, args.radius_arcsec)


def report(results: list[tuple[int, dict[str, Any]]], radius_arcsec: float) -> None:
    print(f"\n| objects | pairs < {radius_arcsec:g}″ | chunks | qserv_py | zones (1 PostgreSQL) "
          "| ratio | q3c_join | ratio |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for objects, r in results:
        q3c = f"{r['q3c']:.2f} s | {r['qserv_py'] / r['q3c']:.2f}×" if "q3c" in r else "— | —"
        print(
            f"| {objects:,} | {r['pairs']:,} | {r['chunks']} | {r['qserv_py']:.2f} s "
            f"| {r['zones']:.2f} s | {r['qserv_py'] / r['zones']:.2f}× | {q3c} |"
        )
    if len(results) > 1:
        (n0, a), (n1, b) = results[0], results[-1]
        print(
            f"\ngrowth {n0:,} → {n1:,} objects ({n1 / n0:g}×): qserv_py "
            f"{b['qserv_py'] / a['qserv_py']:.1f}×, zones {b['zones'] / a['zones']:.1f}×"
        )


if __name__ == "__main__":
    main()
