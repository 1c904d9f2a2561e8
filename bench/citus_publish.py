"""Loads on Citus (issue 15): the publish through the coordinator against COPY straight to
the shards, on the same staged rows, in one run.

    python bench/citus_publish.py [--objects 200000] [--forced-per-object 10] [--rounds 3]
        [--work DIR]

A fresh local Citus cluster (a coordinator and two worker nodes, 32 shards per table, as
bench/citus_backend.py's), ``catalog create dp02``, Object loaded, then ForcedSource
*staged* once (``load(..., LoadOptions(publish=False))``: its rows in UNLOGGED tables on the
coordinator, one per chunk, as a load leaves them before its publish). Then, alternating,
``--rounds`` times each, the distributed table emptied (``TRUNCATE``) before each:

- **coordinator** (what ``qserv-py load`` does): the publish's statement, ``INSERT INTO
  dp02.forcedsource (...) SELECT ... FROM qserv_stage.s<txn> WHERE chunk_id = ANY(...)
  ORDER BY spatial_index``, in one coordinator transaction: Citus sends the rows to the
  shards through the coordinator and commits on its nodes with its own two-phase commit;
- **shards**: the same rows sent straight to the shard tables, each worker node
  concurrently on its own session: for each of its shards, ``COPY (SELECT ... WHERE
  chunk_id = ANY(<the shard's chunks>) ORDER BY spatial_index) TO STDOUT (FORMAT BINARY)``
  on the coordinator piped into ``COPY <shard table> FROM STDIN (FORMAT BINARY)`` on the
  node; then ``PREPARE TRANSACTION`` on every node and ``COMMIT PREPARED`` (atomic across
  the nodes, as qserv_py's native publish is).

Both sides' rows in the distributed table are counted against the staged rows. What a
publish also does (the child-key check, the czar metadata) is the same either way and is
left out. Prints the table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

TABLE = "dp02.forcedsource"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--forced-per-object", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-citus-publish"))
    args = parser.parse_args()

    from bench import load as b
    from bench.citus_backend import fresh_citus_cluster
    from qserv_py.cluster.catalogs import create_catalog
    from qserv_py.cluster.db import connect
    from qserv_py.loaders.load import LoadOptions, load
    from qserv_py.schema import default_catalog, default_catalog_path

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)
    release = args.work / f"release-{args.objects}-{args.forced_per_object:g}"
    b._generate(release, args.objects, args.forced_per_object)
    cluster = fresh_citus_cluster(args.work / "citus")
    try:
        spec = cluster.spec()
        catalog = default_catalog("dp02")
        create_catalog(spec, catalog, default_catalog_path("dp02").read_text())
        load(spec, "dp02", "Object", [release / "Object"])
        staged = load(
            spec, "dp02", "ForcedSource", [release / "ForcedSource"], LoadOptions(publish=False)
        )
        table = catalog.table("ForcedSource")
        columns = ", ".join([c.sql_ident for c in table.columns] + list(table.stored_extra))
        stage = f"qserv_stage.s{staged.txn}"
        with connect(spec.coordinator, autocommit=True) as conn:
            chunks = sorted(
                int(r[0].rsplit("_", 1)[1])
                for r in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = %s::regclass",
                    (stage,),
                )
            )
        print(f"staged {staged.rows:,} rows of {len(chunks)} chunks (load {staged.txn})")

        def coordinator() -> None:
            with connect(spec.coordinator) as conn:
                conn.execute("SET LOCAL work_mem = '256MB'")
                conn.execute(
                    f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM {stage}"
                    " WHERE chunk_id = ANY(%s) ORDER BY spatial_index",
                    (chunks,),
                )

        def shards() -> None:
            from qserv_py.exec.citus_direct import shard_map

            current = shard_map(spec, fresh=True)
            per_node: dict[str, dict[str, list[int]]] = {}
            for chunk in chunks:
                found = current.tables[TABLE].find(chunk)
                assert found is not None
                name, node = found
                per_node.setdefault(current.names[node], {}).setdefault(name, []).append(chunk)
            gid = f"bench_{uuid.uuid4().hex[:12]}"

            def node_copy(worker: str) -> object:
                conn = connect(current.spec.worker(worker))
                conn.tpc_begin(conn.xid(1, f"{gid}_{worker}", ""))
                with connect(spec.coordinator) as source:
                    for shard, cs in per_node[worker].items():
                        out = (
                            f"COPY (SELECT {columns} FROM {stage} WHERE chunk_id = ANY(ARRAY"
                            f"{cs}::bigint[]) ORDER BY spatial_index) TO STDOUT (FORMAT BINARY)"
                        )
                        with (
                            source.cursor().copy(out) as reader,
                            conn.cursor().copy(
                                f"COPY {shard} ({columns}) FROM STDIN (FORMAT BINARY)"
                            ) as writer,
                        ):
                            for block in reader:
                                writer.write(block)
                conn.tpc_prepare()
                return conn

            with ThreadPoolExecutor(len(per_node)) as pool:
                prepared = list(pool.map(node_copy, per_node))
            for conn in prepared:
                conn.tpc_commit()  # type: ignore[attr-defined]
                conn.close()  # type: ignore[attr-defined]

        def empty() -> None:
            with connect(spec.coordinator, autocommit=True) as conn:
                conn.execute(f"TRUNCATE {TABLE}")
                conn.execute("CHECKPOINT")

        def count() -> int:
            with connect(spec.coordinator, autocommit=True) as conn:
                row = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            return int(row[0]) if row else 0

        times: dict[str, list[float]] = {"coordinator": [], "shards": []}
        for r in range(args.rounds):
            for side in ("coordinator", "shards") if r % 2 == 0 else ("shards", "coordinator"):
                empty()
                started = time.perf_counter()
                (coordinator if side == "coordinator" else shards)()
                times[side].append(time.perf_counter() - started)
                assert count() == staged.rows, f"{side}: {count()} rows, {staged.rows} staged"
                print(f"round {r + 1}, {side}: {times[side][-1]:.2f} s", flush=True)
        via, direct = (statistics.median(times[s]) for s in ("coordinator", "shards"))
        print(
            "\n| forced sources | shards | through the coordinator | straight to the shards"
            " | shards / coordinator |\n|---:|---:|---:|---:|---:|\n"
            f"| {staged.rows:,} | {len(current_shards(spec))} | {via:.2f} s | {direct:.2f} s "
            f"| {direct / via:.2f}× |"
        )
    finally:
        cluster.destroy()


def current_shards(spec: object) -> list[str]:
    from qserv_py.exec.citus_direct import shard_map

    return list(shard_map(spec, fresh=True).tables[TABLE].names)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
