"""Loads of a narrow table (issue 12): ``qserv-py load`` of ~2M rows of a few columns
against COPY + spatial index + CLUSTER + primary key on one PostgreSQL, in one run.

    python bench/narrow_load.py [--rows 2000000] [--rounds 2] [--work DIR]

The table is ``gaia_bright.Source`` (the shipped schema of the bright Gaia catalog: a
director of six columns, ``source_id``, ``ra``, ``dec`` and three magnitudes; the shape
of Tycho-2 or of a survey's narrow object list), filled with ``--rows`` synthetic rows
(positions uniform on the sphere, magnitudes 4–12, seed 3) written as Parquet files of
200,000 rows. Each round, alternating which side goes first, each side in a process of
its own (as a user would run it; process start included):

- **qserv_py**: a fresh catalog on a local cluster (a czar and two workers,
  shared_buffers 1GB, as bench/load.py's), then ``qserv-py load gaia_bright Source
  <files>`` (default options: layout, overlap, director index, sorted and indexed
  chunks, one two-phase publish);
- **baseline**: on the czar instance, a new database with a plain table of the same
  columns and a ``spatial_index`` column, binary COPY of the same rows (read and encoded
  as the loader does, ``spatial_index`` computed the same way, the table created in the
  COPY's transaction: no WAL, as the loader's staging), then ``CREATE INDEX`` on
  ``spatial_index``, ``CLUSTER`` on it, ``ADD PRIMARY KEY (source_id)`` and ``ANALYZE``.

Prints the table for docs/benchmarks.md (target ≤ 1.5×).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve()
sys.path.insert(0, str(BENCH.parents[1]))

CATALOG, TABLE = "gaia_bright", "Source"


def write_rows(out: Path, rows: int) -> Path:
    """``rows`` synthetic rows of gaia_bright.Source as Parquet files in ``out/Source``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qserv_py.loaders.realdata import _arrow_schema

    folder = out / TABLE
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    schema = _arrow_schema(CATALOG, TABLE)
    rng = np.random.default_rng(3)
    step = 200_000
    for i, start in enumerate(range(0, rows, step)):
        n = min(step, rows - start)
        values = {
            "source_id": np.arange(start, start + n, dtype=np.int64) + 1,
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        }
        for field in schema:
            if field.name not in values:
                values[field.name] = rng.uniform(4, 12, n).astype(field.type.to_pandas_dtype())
        table = pa.table({f.name: pa.array(values[f.name], f.type) for f in schema})
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
    (folder / "done").write_text(str(rows))
    return folder


def baseline(cluster: Path, folder: Path) -> None:
    """The baseline side (its own process): COPY, spatial index, CLUSTER, key, ANALYZE."""
    import psycopg

    from bench.load import copy_parquet
    from qserv_py.cluster.db import connect
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.schema import default_catalog

    spec = read_cluster_file(cluster)
    table = default_catalog(CATALOG).table(TABLE)
    with connect(spec.czar, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS narrow_baseline")
        admin.execute("CREATE DATABASE narrow_baseline")
    cols = [c.sql_name for c in table.columns] + ["spatial_index"]
    types = [c.pg_type for c in table.columns] + ["bigint"]
    with psycopg.connect(**dict(spec.czar.conninfo, dbname="narrow_baseline")) as conn:
        conn.execute(
            "CREATE TABLE source ("
            + ", ".join(f"{c} {t}" for c, t in zip(cols, types, strict=True))
            + ")"
        )
        with conn.cursor().copy(
            f"COPY source ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy_parquet(copy, folder, types, "ra", "dec")
        conn.commit()
        conn.execute("CREATE INDEX source_spatial ON source (spatial_index)")
        conn.execute("CLUSTER source USING source_spatial")
        conn.execute("ALTER TABLE source ADD PRIMARY KEY (source_id)")
        conn.execute("ANALYZE source")
        conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-narrow"))
    parser.add_argument("--phase", choices=["baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--cluster", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.work / f"rows-{args.rows}" / TABLE
    if args.phase == "baseline":
        baseline(args.cluster, folder)
        return

    from bench.load import _run, fresh_cluster

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)
    write_rows(folder.parent, args.rows)
    cluster_dir = args.work / "cluster"
    cluster = fresh_cluster(cluster_dir)
    cli = [sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster_dir)]
    times: dict[str, list[float]] = {"qserv_py": [], "baseline": []}
    try:
        for r in range(args.rounds):
            for side in ("qserv_py", "baseline") if r % 2 == 0 else ("baseline", "qserv_py"):
                if side == "qserv_py":
                    subprocess.run([*cli, "catalog", "drop", CATALOG], capture_output=True)
                    subprocess.run(
                        [*cli, "catalog", "create", CATALOG], check=True, stdout=subprocess.DEVNULL
                    )
                    seconds, _ = _run([*cli, "load", CATALOG, TABLE, str(folder)])
                else:
                    seconds, _ = _run(
                        [sys.executable, str(BENCH), "--phase", "baseline", "--rows",
                         str(args.rows), "--work", str(args.work), "--cluster", str(cluster_dir)]
                    )  # fmt: skip
                times[side].append(seconds)
                print(f"round {r + 1}, {side}: {seconds:.1f} s", flush=True)
    finally:
        cluster.destroy()
    ours, base = (statistics.median(times[s]) for s in ("qserv_py", "baseline"))
    print(
        "\n| rows | columns | qserv_py `load` | COPY + spatial index + CLUSTER + key | ratio |"
        " target |\n|---:|---:|---:|---:|---:|---|\n"
        f"| {args.rows:,} | 6 | {ours:.1f} s | {base:.1f} s | **{ours / base:.2f}×** | ≤ 1.5× |"
    )


if __name__ == "__main__":
    main()
