"""Bulk-load benchmark: qserv_py's load against plain COPY on one PostgreSQL instance.

    python bench/load.py --objects 2000000 --forced-per-object 10 [--work DIR]

Generates a synthetic release (Object + ForcedSource), starts a local cluster (a czar
and two workers), then in one run measures:

* the baseline: the same rows COPY'd (binary, the same Parquet reading and encoding)
  into plain tables on one instance, in the transaction that creates them, then a btree
  on spatial_index and one on objectId of each table;
* qserv_py: ``qserv-py load`` of Object then ForcedSource (check, lay out, place, stage,
  overlap, director index, publish: sorted partitions, indexes, ANALYZE).

Each side runs as a subprocess; its peak RSS is measured. ``--memory-sizes`` repeats
the qserv_py load at other sizes to show the loader's memory does not grow with the input.
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve()


def _run(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (seconds, peak RSS of the child in MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
    return seconds, usage.ru_maxrss / 1024


def _generate(out: Path, objects: int, forced: float) -> None:
    if (out / "done.json").exists():
        return
    from qserv_py.loaders.generate import generate_release

    shutil.rmtree(out, ignore_errors=True)
    counts = generate_release(out, objects, sources_per_object=0, forced_per_object=forced, seed=1)
    (out / "done.json").write_text(json.dumps(counts))


def fresh_cluster(cluster_dir: Path, settings: dict[str, Any] | None = None) -> Any:
    """A new local cluster in ``cluster_dir`` (a czar and two workers, shared_buffers 1GB,
    and ``settings``), replacing one left there; the benchmarks' set-up."""
    from qserv_py.cluster.local import LocalCluster
    from qserv_py.config import load_settings

    cluster = LocalCluster(cluster_dir)
    if cluster.exists():
        cluster.destroy()
    cluster.init(
        load_settings({"cluster": cluster_dir, "shared_buffers": "1GB", **(settings or {})})
    )
    return cluster


def copy_parquet(
    copy: Any, folder: Path, types: list[str], ra: str = "coord_ra", dec: str = "coord_dec"
) -> None:
    """Write every Parquet file of ``folder`` into a binary ``COPY ... FROM STDIN``: each
    batch's columns then its spatial_index (from columns ``ra`` and ``dec``), encoded as
    the loader encodes them (``types``: the PostgreSQL types, spatial_index's last)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qserv_py.loaders.pgcopy import HEADER, TRAILER, encode_batch
    from qserv_py.sky.healpix import spatial_index

    copy.write(HEADER)
    for path in sorted(folder.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=262_144):
            index = spatial_index(batch.column(ra), batch.column(dec))
            copy.write(encode_batch([*batch.columns, pa.array(index)], types))
    copy.write(TRAILER)


def baseline(cluster: Path, release: Path) -> None:
    """COPY into plain tables on the czar instance, then btrees (the subprocess side)."""
    from psycopg import sql

    from qserv_py.cluster.db import connect
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.schema import default_catalog

    spec = read_cluster_file(cluster)
    catalog = default_catalog("dp02")
    with connect(spec.czar, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS baseline")
        admin.execute("CREATE DATABASE baseline")
    info = dict(spec.czar.conninfo, dbname="baseline")
    import psycopg

    with psycopg.connect(**info) as conn:
        for name in ("Object", "ForcedSource"):
            table = catalog.table(name)
            cols = [c.sql_name for c in table.columns] + ["spatial_index"]
            types = [c.pg_type for c in table.columns] + ["bigint"]
            conn.execute(
                f"CREATE TABLE {table.sql_name} ("
                + ", ".join(f"{c} {t}" for c, t in zip(cols, types, strict=True))
                + ")"
            )
            with conn.cursor().copy(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                    sql.Identifier(table.sql_name), sql.SQL(", ").join(map(sql.Identifier, cols))
                )
            ) as copy:
                copy_parquet(copy, release / name, types)
            conn.commit()
            conn.execute(f"CREATE INDEX ON {table.sql_name} (spatial_index)")
            conn.execute(f"CREATE INDEX ON {table.sql_name} (objectid)")
            conn.commit()
        conn.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2_000_000)
    parser.add_argument("--forced-per-object", type=float, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-load"))
    parser.add_argument(
        "--memory-sizes", type=int, nargs="*", default=[], help="more object counts"
    )
    parser.add_argument("--phase", choices=["baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--cluster", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--release", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--backend",
        choices=["native", "citus"],
        default="native",
        help="citus: a Citus cluster too, beside native workers and the baseline, in the "
        "same run (bench/citus_backend.py)",
    )
    args = parser.parse_args()
    if args.phase == "baseline":
        baseline(args.cluster, args.release)
        return
    if args.backend == "citus":
        sys.path.insert(0, str(BENCH.parent.parent))
        from bench.citus_backend import load_main

        load_main(args)
        return

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)
    cli = [sys.executable, "-m", "qserv_py.cli"]
    rows = []
    sizes = [args.objects, *args.memory_sizes]
    for n in sizes:
        release = args.work / f"release-{n}-{args.forced_per_object:g}"
        t0 = time.perf_counter()
        _generate(release, n, args.forced_per_object)
        counts = json.loads((release / "done.json").read_text())
        print(f"release {release}: {counts} ({time.perf_counter() - t0:.0f} s)", flush=True)
        cluster_dir = args.work / "cluster"
        cluster = fresh_cluster(cluster_dir)
        try:
            q = [*cli, "--cluster", str(cluster_dir)]
            subprocess.run([*q, "catalog", "create", "dp02"], check=True, stdout=subprocess.DEVNULL)
            ours_obj, rss_obj = _run([*q, "load", "dp02", "Object", str(release / "Object")])
            ours_fs, rss_fs = _run(
                [*q, "load", "dp02", "ForcedSource", str(release / "ForcedSource")]
            )
            base = None
            if n == args.objects:
                base = _run(
                    [
                        sys.executable,
                        str(BENCH),
                        "--phase",
                        "baseline",
                        "--cluster",
                        str(cluster_dir),
                        "--release",
                        str(release),
                    ]
                )
        finally:
            cluster.destroy()
        ours = ours_obj + ours_fs
        rows.append((n, counts, ours, max(rss_obj, rss_fs), base))
        print(f"  peak RSS: Object {rss_obj:.0f} MB, ForcedSource {rss_fs:.0f} MB")
        print(
            f"objects {n:,}: qserv_py {ours:.1f} s (Object {ours_obj:.1f} s, ForcedSource "
            f"{ours_fs:.1f} s), peak RSS {max(rss_obj, rss_fs):.0f} MB"
            + (f"; baseline {base[0]:.1f} s, RSS {base[1]:.0f} MB" if base else ""),
            flush=True,
        )

    print("\n| objects | forced sources | qserv_py load | baseline COPY + btrees | ratio |", end="")
    print(" loader peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, counts, ours, rss, base in rows:
        ratio = f"{ours / base[0]:.2f}×" if base else "–"
        b = f"{base[0]:.1f} s" if base else "–"
        print(
            f"| {n:,} | {counts['ForcedSource']:,} | {ours:.1f} s | {b} | {ratio} | {rss:.0f} MB |"
        )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(this process: peak RSS {own:.0f} MB)")


if __name__ == "__main__":
    main()
