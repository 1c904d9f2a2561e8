"""Query benchmark: qserv_py's Python API against an unpartitioned oracle database.

    python bench/query.py --objects 2000000 --forced-per-object 10 [--work DIR] [--repeat N]
        [--small-repeat N]

Uses the release of ``bench/load.py`` (``/tmp/qserv-bench-load/release-<n>-<forced>``)
if it is there, else ``qserv-py generate`` (seed 1, no Sources) into ``--work``. Then:

1. a fresh local cluster (a czar and two workers, shared_buffers 1GB, as bench/load.py),
   ``qserv-py catalog create dp02`` and ``qserv-py load`` of Object and ForcedSource
   (default options);
2. the oracle: database ``oracle`` on the czar instance, with plain tables
   ``dp02.object`` and ``dp02.forcedsource`` holding the same rows in file order (binary
   COPY as bench/load.py's baseline), a ``spatial_index`` column, the ``qserv.*`` SQL
   functions, and the indexes each worker partition has: a btree on ``spatial_index`` and
   one on ``objectid``. Then ``VACUUM (ANALYZE)``; the workers' tables are VACUUMed too
   (autovacuum does it within a minute of a load anyway: done here so that it cannot
   happen while we measure, and so that both sides have visibility maps);
3. the measurements, alternating sides (qserv_py first on even runs, the oracle first on
   odd ones), warm-up runs (8 for cones and lookups, so that qserv_py's plan cache knows
   their shapes, as a running service would; 2 for the whole-table queries; 1 for the
   near-neighbour join) then ``--small-repeat`` timed runs of the cones and lookups
   (their medians move less with more runs, and they are short) and ``--repeat`` of the
   others (``--nn-repeat`` of the near-neighbour join), each run with
   its own cone centre (the position of a random object, so in populated sky) or
   objectId, the same for both sides. Each run is timed as timeit does: the garbage
   collector is off during it. The plan cache's hits and misses in the
   timed runs are printed. Before them, qserv_py's client has looked up three other ids,
   and has its copy of the director index in memory, as a service that answers lookups
   has (``qserv_py.query.dirindex``):

   - qserv_py: ``qserv_py.connect(cluster, default_catalog="dp02").query(text)``, end to
     end (metadata check, planning, dispatch, merge, Arrow);
   - the oracle: one open psycopg session on the oracle database running the plan's
     ``oracle_sql`` (the query as one database would run it), fetched into Arrow by the
     same ``fetch_table`` as qserv_py's merge. For a cone search the planner's
     ``spatial_index`` ranges (``Cone(...).index_sql()``, the very ranges the workers get)
     are ANDed to it, so that the oracle can use its spatial_index btree as the workers
     do. For the near-neighbour join, o1 gets the region's ranges and o2 the ranges of
     the region grown by the join radius (without that, the oracle compares each o1 with
     every object: hours at 2M objects). qserv_py's worker SQL has no range on o2: it
     compares each o1 with its whole chunk and the chunk's overlap.

   Every qserv_py result is compared with the oracle's (rows sorted, floats to 1e-9).

Prints the Markdown table for docs/benchmarks.md (with parse-to-plan: ``client.plan``
of the r = 6′ cones), then where the time goes: for the sub-second query with the worst
ratio (client.plan share, a cProfile, EXPLAIN ANALYZE of worker and oracle SQL), and for
COUNT(*) and the near-neighbour join (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LOAD_CACHE = Path("/tmp/qserv-bench-load")
ORACLE_DB = "oracle"
WARMUP = 2
#: warm-up runs of the small queries (other centres and ids): a service has seen their
#: shapes before, so their plans come from the plan cache (a cone's shape differs with
#: the sign of its declination: two shapes, each planned in full twice)
SMALL_WARMUP = 8
ARCMIN = 1 / 60
#: the near-neighbour join: pairs closer than NN_RADIUS in a cone of NN_REGION (~10 deg²)
NN_RADIUS = 0.005
NN_REGION = 1.78
#: an extragalactic field (COSMOS): ~20 objects/deg² at 2M objects
NN_CENTRE = (150.1, 2.2)
OBJECT_ID_BASE = 1_000_000_000_000
CONE = (
    "SELECT * FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), "
    "CIRCLE({ra:.6f}, {dec:.6f}, {radius:.10g})) = 1"
)
LOOKUP = "SELECT * FROM Object WHERE objectId = {id}"
LIGHT_CURVE = (
    "SELECT f.* FROM Object o JOIN ForcedSource f ON o.objectId = f.objectId "
    "WHERE o.objectId = {id}"
)
COUNT = "SELECT COUNT(*) FROM ForcedSource"
GROUP_BY = "SELECT band, COUNT(*), AVG(psfFlux) FROM ForcedSource GROUP BY band"
NEAR_NEIGHBOUR = (
    "SELECT COUNT(*) FROM Object o1, Object o2 WHERE "
    "CONTAINS(POINT(o1.coord_ra, o1.coord_dec), CIRCLE({ra}, {dec}, {region})) = 1 AND "
    "DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < {radius} "
    "AND o1.objectId <> o2.objectId"
)


@dataclass
class Case:
    """One row of the table: a query, run once per (qserv_py text, oracle SQL) pair."""

    name: str
    target: float | None  # qserv_py p50 / oracle p50 at most this; None: reported only
    runs: list[tuple[str, str]]
    warmup: int = WARMUP
    ours: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)
    plan_s: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    #: plan cache (hits, misses) during the timed runs
    cache: tuple[int, int] = (0, 0)
    #: the last result, when it is one value (a COUNT)
    value: object = None

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.theirs)


def _p(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q))


def _cut(line: str, width: int = 240) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3g} ms" if ms < 1000 else f"{seconds:.2f} s"


# --- data, cluster, oracle -------------------------------------------------------------


def release_dir(work: Path, objects: int, forced: float) -> Path:
    """bench/load.py's release if there is one, else ours (generated if need be)."""
    name = f"release-{objects}-{forced:g}"
    if (LOAD_CACHE / name / "done.json").exists():
        return LOAD_CACHE / name
    out = work / name
    if not (out / "done.json").exists():
        subprocess.run(
            [sys.executable, "-m", "qserv_py.cli", "generate", "--objects", str(objects),
             "--sources-per-object", "0", "--forced-per-object", f"{forced:g}", "--seed", "1",
             "--out", str(out), "--overwrite"],
            check=True,
        )  # fmt: skip
        import pyarrow.parquet as pq

        counts = {
            t: sum(pq.ParquetFile(p).metadata.num_rows for p in (out / t).glob("*.parquet"))
            for t in ("Object", "ForcedSource")
        }
        (out / "done.json").write_text(json.dumps(counts))
    return out


def build_oracle(cluster: Path, release: Path) -> None:
    """The oracle database on the czar instance (see the module's docstring)."""
    import psycopg
    from psycopg import sql

    from bench.load import copy_parquet
    from qserv_py.cluster.db import connect
    from qserv_py.cluster.metadata import spatial_sql
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.schema import default_catalog

    spec = read_cluster_file(cluster)
    catalog = default_catalog("dp02")
    with connect(spec.czar, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {ORACLE_DB}")
        admin.execute(f"CREATE DATABASE {ORACLE_DB}")
    info = dict(spec.czar.conninfo, dbname=ORACLE_DB)
    with psycopg.connect(**info) as conn:
        conn.execute(spatial_sql())
        conn.execute("CREATE SCHEMA dp02")
        conn.commit()
        for name in ("Object", "ForcedSource"):
            table = catalog.table(name)
            target = sql.Identifier("dp02", table.sql_name)
            cols = [c.sql_name for c in table.columns] + ["spatial_index"]
            types = [c.pg_type for c in table.columns] + ["bigint"]
            conn.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    target,
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                        for c, t in zip(cols, types, strict=True)
                    ),
                )
            )
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                target, sql.SQL(", ").join(map(sql.Identifier, cols))
            )
            with conn.cursor().copy(copy_sql) as copy:
                copy_parquet(copy, release / name, types)
            conn.commit()  # created and filled in one transaction: no WAL, as the loader
            conn.execute(sql.SQL("CREATE INDEX ON {} (spatial_index)").format(target))
            conn.execute(sql.SQL("CREATE INDEX ON {} (objectid)").format(target))
            conn.commit()
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) dp02.object, dp02.forcedsource")


def settle(cluster: Path, timeout_s: float = 180) -> None:
    """VACUUM the workers' tables (as autovacuum soon would), then wait until no
    autovacuum runs anywhere (twice in a row, 3 s apart)."""
    from qserv_py.cluster.db import connect
    from qserv_py.cluster.spec import read_cluster_file

    spec = read_cluster_file(cluster)
    for worker in spec.workers:
        with connect(worker, autocommit=True) as conn:
            conn.execute("VACUUM dp02.object, dp02.object_overlap, dp02.forcedsource")
    quiet, deadline = 0, time.monotonic() + timeout_s
    while quiet < 2 and time.monotonic() < deadline:
        busy = 0
        for instance in spec.instances:
            with connect(instance, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
                ).fetchone()
                busy += int(row[0]) if row else 0
        quiet = quiet + 1 if busy == 0 else 0
        time.sleep(3)


# --- the cases -------------------------------------------------------------------------


def oracle_sql(client: Any, text: str, ranges: dict[str, Any]) -> str:
    """The plan's oracle SQL, with spatial_index ranges ANDed for each alias → region."""
    import sqlglot

    tree = sqlglot.parse_one(client.plan(text).oracle_sql, read="postgres")
    for alias, region in ranges.items():
        tree = tree.where(region.index_sql(f"{alias}.spatial_index"), dialect="postgres")
    return tree.sql(dialect="postgres")


def make_cases(
    client: Any, release: Path, objects: int, repeat: int, small_repeat: int, nn_repeat: int
) -> list:
    import pyarrow.parquet as pq

    from qserv_py.sky.regions import Cone

    rng = np.random.default_rng(20261123)
    n = SMALL_WARMUP + small_repeat
    # cone centres: positions of random objects, so in populated sky (objects follow the
    # density); the objects are in random sky order, so the first file is a fair sample
    first = sorted((release / "Object").glob("*.parquet"))[0]
    pos = pq.read_table(first, columns=["coord_ra", "coord_dec"])
    pick = rng.choice(pos.num_rows, size=n, replace=False)
    centres = list(
        zip(
            pos["coord_ra"].to_numpy()[pick].tolist(),
            pos["coord_dec"].to_numpy()[pick].tolist(),
            strict=True,
        )
    )
    cases = []
    for label, radius in (("1′", ARCMIN), ("6′", 6 * ARCMIN), ("30′", 30 * ARCMIN)):
        runs = []
        for ra, dec in centres:
            text = CONE.format(ra=ra, dec=dec, radius=radius)
            # the cone as the planner builds it: from the constants of the text
            cone = Cone(float(f"{ra:.6f}"), float(f"{dec:.6f}"), float(f"{radius:.10g}"))
            runs.append((text, oracle_sql(client, text, {"object": cone})))
        cases.append(Case(f"cone search r = {label}", 1.5, runs, SMALL_WARMUP))
    ids = (OBJECT_ID_BASE + rng.choice(objects, size=2 * n, replace=False)).tolist()
    for name, template, chosen in (
        ("objectId lookup", LOOKUP, ids[:n]),
        ("light curve (Object ⋈ ForcedSource, one objectId)", LIGHT_CURVE, ids[n:]),
    ):
        runs = []
        for object_id in chosen:
            text = template.format(id=object_id)
            runs.append((text, oracle_sql(client, text, {})))
        cases.append(Case(name, 2.0, runs, SMALL_WARMUP))
    for name, text in (("COUNT(*) FROM ForcedSource", COUNT), ("AVG … GROUP BY band", GROUP_BY)):
        runs = [(text, oracle_sql(client, text, {}))] * (WARMUP + repeat)
        cases.append(Case(name, 1.25, runs))
    ra, dec = NN_CENTRE
    text = NEAR_NEIGHBOUR.format(ra=ra, dec=dec, region=NN_REGION, radius=NN_RADIUS)
    explain = client.explain(text)  # raises QueryRefused if it cannot be planned
    print(f"near-neighbour join plans: {explain.chunks} chunks {explain.chunks_per_worker}")
    print(f"  worker SQL: {explain.worker_sql[:400]}…", flush=True)
    ranges = {"o1": Cone(ra, dec, NN_REGION), "o2": Cone(ra, dec, NN_REGION + NN_RADIUS)}
    nn = Case(
        f"near-neighbour self-join COUNT, < {NN_RADIUS * 3600:g}″ in "
        f"{Cone(ra, dec, NN_REGION).area():.1f} deg²",
        None,
        [(text, oracle_sql(client, text, ranges))] * (1 + nn_repeat),
        warmup=1,
    )
    cases.append(nn)
    return cases


# --- measuring -------------------------------------------------------------------------


def _sorted(table: pa.Table) -> pa.Table:
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    keys = [f.name for f in table.schema if f.name not in floats] + floats
    return table.sort_by([(k, "ascending") for k in keys]) if table.num_rows else table


def difference(ours: pa.Table, theirs: pa.Table) -> str | None:
    """Why two results differ (rows in any order; floats to a relative 1e-9), or None."""
    if ours.column_names != theirs.column_names:
        return f"columns {ours.column_names} vs {theirs.column_names}"
    if ours.num_rows != theirs.num_rows:
        return f"{ours.num_rows} rows vs {theirs.num_rows}"
    a, b = _sorted(ours), _sorted(theirs)
    for name in a.column_names:
        x, y = a[name], b[name]
        if x.type != y.type:
            return f"column {name}: {x.type} vs {y.type}"
        if pa.types.is_floating(x.type):
            xv = x.to_numpy(zero_copy_only=False).astype(float)
            yv = y.to_numpy(zero_copy_only=False).astype(float)
            if not np.allclose(xv, yv, rtol=1e-9, atol=0, equal_nan=True):
                return f"column {name} differs"
        elif not pc.all(pc.equal(x, y).fill_null(True)).as_py() or x.null_count != y.null_count:
            return f"column {name} differs"
    return None


def director_index_in_memory(client: Any) -> None:
    """Look three ids up (not the measured ones), as a service answering lookups has, and
    wait for the client's copy of the director index (unless the index has more keys
    than ``director_index_memory_keys``: then lookups ask the czar, as a service's do)."""
    from qserv_py.query.dirindex import MEMORY_AFTER

    for i in range(MEMORY_AFTER):
        client.query(LOOKUP.format(id=OBJECT_ID_BASE - 1 - i))
    indexes = client.context.director_indexes
    size = indexes.sizes.get(("dp02", "object"), 0)
    if not 0 < size <= indexes.memory_keys:  # (as a service does: ask the czar's index)
        print(
            f"director index of {size:,} keys, above director_index_memory_keys "
            f"({indexes.memory_keys:,}): lookups ask the czar's director index",
            flush=True,
        )
        return
    started = time.perf_counter()
    while not client.context.director_indexes.in_memory("dp02", "Object"):
        if time.perf_counter() - started > 120:
            raise SystemExit("the director index was not copied into memory in 2 minutes")
        time.sleep(0.05)
    print(f"director index in memory after {time.perf_counter() - started:.1f} s", flush=True)


def measure(case: Case, client: Any, oracle: Any) -> None:
    from qserv_py.exec.arrow import fetch_table

    print(f"{case.name}: ", end="", flush=True)
    for i, (text, sql) in enumerate(case.runs):
        results: dict[str, tuple[float, pa.Table]] = {}
        sides: list[tuple[str, Callable[[], pa.Table]]] = [
            ("ours", lambda text=text: client.query(text)),
            ("theirs", lambda sql=sql: fetch_table(oracle, sql)),
        ]
        for side, run in sides if i % 2 == 0 else sides[::-1]:
            before = (client.plans.hits, client.plans.misses)
            gc.disable()  # as timeit: no garbage collection during a timed run
            started = time.perf_counter()
            try:
                table = run()
            finally:
                elapsed = time.perf_counter() - started
                gc.enable()
            results[side] = (elapsed, table)
            if side == "ours" and i >= case.warmup:
                hits, misses = client.plans.hits - before[0], client.plans.misses - before[1]
                case.cache = (case.cache[0] + hits, case.cache[1] + misses)
        started = time.perf_counter()
        client.plan(text, oracle=False)  # as client.query plans (from the plan cache)
        plan_s = time.perf_counter() - started
        ours, theirs = results["ours"][1], results["theirs"][1]
        why = difference(ours, theirs)
        if why is not None:
            case.mismatches.append(f"run {i}: {why}: {text}")
        if theirs.shape == (1, 1):
            case.value = theirs.column(0)[0].as_py()
        if i >= case.warmup:
            case.ours.append(results["ours"][0])
            case.theirs.append(results["theirs"][0])
            case.plan_s.append(plan_s)
            case.rows.append(theirs.num_rows)
        print(".", end="", flush=True)
    print(
        f" qserv_py {_ms(statistics.median(case.ours))}, oracle "
        f"{_ms(statistics.median(case.theirs))} ({case.ratio:.2f}×), rows "
        f"{min(case.rows)}–{max(case.rows)}"
        + f", plan cache {case.cache[0]} hits / {case.cache[1]} misses"
        + (f", {len(case.mismatches)} MISMATCHES" if case.mismatches else ""),
        flush=True,
    )


def plan_times(client: Any, texts: list[str]) -> tuple[list[float], list[float], list[float]]:
    """Seconds of client.plan(text, oracle=False) (the planning a query does: no oracle
    SQL; the shape was seen before, so from the plan cache), of the planner alone
    (a new shape: parse to plan, metadata already read), and of the client's metadata
    check, for each text."""
    from qserv_py.query.planner import plan

    whole, planner, check = [], [], []
    context = client.context
    for text in texts:
        started = time.perf_counter()
        client.plan(text, oracle=False)
        whole.append(time.perf_counter() - started)
        started = time.perf_counter()
        plan(text, "adql", context, oracle=False)
        planner.append(time.perf_counter() - started)
        started = time.perf_counter()
        client._metadata_version()
        check.append(time.perf_counter() - started)
    return whole[WARMUP:], planner[WARMUP:], check[WARMUP:]


def _explain(conn: Any, sql: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of ``sql``, without the long runs of index-range scans."""
    lines, ranges, skipping = [], 0, False
    for (line,) in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql):
        text = line.strip()
        if text.startswith("->  Bitmap Index Scan"):
            ranges += 1
            skipping = ranges > 2
        elif not (skipping and text.startswith(("Index Cond:", "Buffers:"))):
            skipping = False
        if skipping:
            continue
        lines.append(_cut(line))
    if ranges > 2:
        lines.append(f"({ranges - 2} more Bitmap Index Scans of spatial_index ranges left out)")
    return "\n".join(lines)


def where_the_time_goes(case: Case, client: Any, oracle: Any, *, profile: bool) -> None:
    """The planning share, a profile of qserv_py's side (if ``profile``), and EXPLAIN
    ANALYZE of the worker SQL (its first batch on the busiest worker) and the oracle's."""
    from qserv_py.cluster.db import connect
    from qserv_py.exec.dispatch import worker_sql

    text, sql = case.runs[-1]
    print(f"\n### Where the time goes: {case.name} ({case.ratio:.2f}×)\n")
    print(
        f"client.plan(oracle=False) p50 {_ms(statistics.median(case.plan_s))} of qserv_py's "
        f"{_ms(statistics.median(case.ours))} (the oracle: {_ms(statistics.median(case.theirs))})"
    )
    if profile:
        runs = 10
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(runs):
            client.query(text)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        stats.print_stats(r"qserv_py/|psycopg/connection", 30)
        print(f"\ncProfile of {runs} runs, cumulative, qserv_py functions:\n```")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))
        print("```")
    planned = client.plan(text)
    worker, chunks = max(planned.chunks.items(), key=lambda kv: len(kv[1]))
    batch = tuple(chunks[:16])  # dispatch's batch_chunks
    with connect(client.spec.worker(worker), autocommit=True) as conn:
        explained = _explain(conn, worker_sql(planned, batch))
    print(
        f"\nEXPLAIN ANALYZE of the worker SQL on {worker}, {len(batch)} of its "
        f"{len(chunks)} chunks (of {planned.total_chunks}):\n```\n{explained}\n```"
    )
    print(f"EXPLAIN ANALYZE on the oracle:\n```\n{_explain(oracle, sql)}\n```")


def report(cases: list[Case], plan_rows: list[tuple[str, list[float]]]) -> None:
    print("\n| query | qserv_py p50 / p95 | oracle p50 / p95 | ratio | target | met? | rows |")
    print("|---|---:|---:|---:|---:|:-:|---:|")
    for c in cases:
        rows = (
            f"{min(c.rows):,}–{max(c.rows):,}" if min(c.rows) != max(c.rows) else f"{c.rows[0]:,}"
        )
        met = "–" if c.target is None else ("yes" if c.ratio <= c.target else "**no**")
        if c.mismatches:
            met += " (results differ!)"
        print(
            f"| {c.name} | {_ms(_p(c.ours, 50))} / {_ms(_p(c.ours, 95))} | "
            f"{_ms(_p(c.theirs, 50))} / {_ms(_p(c.theirs, 95))} | {c.ratio:.2f}× | "
            f"{'–' if c.target is None else f'≤ {c.target:g}×'} | {met} | {rows} |"
        )
    for name, values in plan_rows:
        p50 = statistics.median(values)
        met = "yes" if p50 < 0.005 else "**no**"
        print(f"| {name} | {_ms(p50)} / {_ms(_p(values, 95))} | – | – | < 5 ms | {met} | – |")
    for c in cases:
        if c.value is not None:
            print(f"{c.name}: {c.value:,} (both sides)")
    for c in cases:
        for line in c.mismatches[:5]:
            print(f"MISMATCH {c.name}: {line}")


def load(cluster_dir: Path, release: Path) -> None:
    """Catalog dp02 with Object and ForcedSource on the cluster, the oracle, VACUUM."""
    cli = [sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster_dir)]
    subprocess.run([*cli, "catalog", "create", "dp02"], check=True, stdout=subprocess.DEVNULL)
    for table in ("Object", "ForcedSource"):
        started = time.perf_counter()
        subprocess.run([*cli, "load", "dp02", table, str(release / table)], check=True)
        print(f"qserv-py load {table}: {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    build_oracle(cluster_dir, release)
    print(f"oracle built: {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    settle(cluster_dir)
    print(f"VACUUM and autovacuum quiet: {time.perf_counter() - started:.1f} s", flush=True)
    (cluster_dir / "bench-loaded").write_text(str(release))


def run(args: argparse.Namespace, cluster_dir: Path, release: Path) -> None:
    import psycopg

    import qserv_py
    from qserv_py.cluster.spec import read_cluster_file

    client = qserv_py.connect(cluster_dir, default_catalog="dp02")
    spec = read_cluster_file(cluster_dir)
    info = dict(spec.czar.conninfo, dbname=ORACLE_DB)
    with psycopg.connect(**info, autocommit=True) as oracle:
        cases = make_cases(
            client, release, args.objects, args.repeat, args.small_repeat, args.nn_repeat
        )
        director_index_in_memory(client)
        for case in cases:
            print(f"  oracle SQL ({case.name}): {case.runs[-1][1][:300]}…")
        started = time.perf_counter()
        for case in cases:
            measure(case, client, oracle)
        print(f"measured in {time.perf_counter() - started:.0f} s", flush=True)
        cone_texts = [text for text, _ in cases[1].runs]  # r = 6′
        whole, planner, check = plan_times(client, cone_texts)
        plan_rows = [
            ("parse-to-plan, cone r = 6′: `client.plan(text, oracle=False)` (plan cache)", whole),
            ("… a shape not seen before: the planner in full (metadata already read)", planner),
            ("… and the client's metadata check (a new czar session)", check),
        ]
        report(cases, plan_rows)
        small = [c for c in cases if c.target is not None and statistics.median(c.ours) < 1]
        worst = max(small, key=lambda c: c.ratio)
        where_the_time_goes(worst, client, oracle, profile=True)
        for case in cases:
            if case.name.startswith("COUNT") or case.target is None:
                where_the_time_goes(case, client, oracle, profile=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2_000_000)
    parser.add_argument("--forced-per-object", type=float, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-query"))
    parser.add_argument(
        "--repeat", type=int, default=15, help="timed runs of each whole-table query"
    )
    parser.add_argument(
        "--small-repeat", type=int, default=51, help="timed runs of each cone and lookup"
    )
    parser.add_argument(
        "--nn-repeat", type=int, default=3, help="timed runs of the near-neighbour join"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the loaded cluster (in --work) running afterwards, and reuse one kept "
        "by an earlier run of the same release (for profiling; a published run uses a "
        "fresh cluster)",
    )
    parser.add_argument(
        "--backend",
        choices=["native", "citus"],
        default="native",
        help="citus: a Citus cluster too, beside native workers and the oracle, in the same "
        "run (bench/citus_backend.py)",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.load import fresh_cluster

    if args.backend == "citus":
        from bench.citus_backend import query_main

        query_main(args)
        return

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)  # the servers may run as another user
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--short", "--", "qserv_py", "loaders", "sql"],
        capture_output=True,
        text=True,
    ).stdout.split()
    print(f"code: {head}; uncommitted changes in: {', '.join(dirty[1::2]) or 'none'}")
    started = time.perf_counter()
    release = release_dir(args.work, args.objects, args.forced_per_object)
    counts = json.loads((release / "done.json").read_text())
    print(f"release {release}: {counts} ({time.perf_counter() - started:.0f} s)", flush=True)
    cluster_dir = args.work / "cluster"
    marker = cluster_dir / "bench-loaded"
    if args.keep and marker.exists() and marker.read_text() == str(release):
        from qserv_py.cluster.local import LocalCluster

        cluster = LocalCluster(cluster_dir)
        cluster.start()
        print(f"reusing the loaded cluster in {cluster_dir}", flush=True)
    else:
        cluster = fresh_cluster(cluster_dir)
        load(cluster_dir, release)
    try:
        run(args, cluster_dir, release)
    finally:
        from qserv_py.exec.dispatch import close_pools

        close_pools()
        if not args.keep:
            cluster.destroy()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
