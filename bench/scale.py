"""How costs grow with the number of chunks (issue 12's scale runs), in one run:

    python -m bench.scale [--objects 2000000] [--orders 2,5,6] [--work DIR] [--reuse]

One local cluster (a czar and two workers, shared_buffers 1GB) and one synthetic release
(``generate_release``, seed 1; Object only). The same Object rows are loaded once per
layout, as catalogs ``sc<order>`` with ``fixed_order=<order>``: HEALPix order 2 is 192
chunks, 5 is 12,288, 6 is 49,152 and 7 is 196,608 (with 2M objects every pixel has
rows). For each layout it measures:

* the load (stage, overlap, director index, publish), and its rows/s;
* planning a 6′ cone COUNT: cold (the planner, every time) and from the plan cache (a
  client, other positions each time);
* running it (warm client), an id lookup (``objectId = …``), a whole-table COUNT(*) and
  a grouped scan (``GROUP BY detect_isPrimary`` with AVG): medians;

and each as a ratio to the first (smallest) layout. ``--reuse`` measures the catalogs
already loaded in WORK/cluster (and loads the missing ones).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.failover import create_catalog
from bench.load import fresh_cluster

CONE = (
    "SELECT COUNT(*) FROM {catalog}.Object WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
    "CIRCLE('ICRS', {ra!r}, {dec!r}, 0.1)) = 1"
)
LOOKUP = "SELECT objectId, coord_ra, coord_dec FROM {catalog}.Object WHERE objectId = {key}"
COUNT = "SELECT COUNT(*) FROM {catalog}.Object"
GROUPED = (
    "SELECT detect_isPrimary, COUNT(*), AVG(coord_dec) FROM {catalog}.Object "
    "GROUP BY detect_isPrimary"
)


def _median(fn: Any, repeat: int) -> float:
    fn(0)  # warm-up
    times = []
    for i in range(1, repeat + 1):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _release(work: Path, objects: int) -> Path:
    from loaders.generate import generate_release

    out = work / f"release-{objects}"
    if not (out / "Object").exists():
        generate_release(out, objects, seed=1, sources_per_object=0, forced_per_object=0)
    return out


def load_layout(spec: Any, release: Path, order: int) -> dict[str, float]:
    from qserv_py.loaders.load import LoadOptions, load

    name = f"sc{order}"
    create_catalog(spec, name)
    started = time.perf_counter()
    result = load(spec, name, "Object", [release / "Object"], LoadOptions(fixed_order=order))
    seconds = time.perf_counter() - started
    print(f"loaded {name}: {result.rows:,} rows in {seconds:.1f} s", flush=True)
    return {"load_s": seconds, "rows": float(result.rows)}


def measure(
    cluster: Path, order: int, positions: np.ndarray, keys: np.ndarray, repeat: int
) -> dict[str, float]:
    import qserv_py
    from qserv_py.query.planner import plan

    catalog = f"sc{order}"
    client = qserv_py.connect(cluster, default_catalog=catalog)
    ctx = client.context
    out: dict[str, float] = {"chunks": float(len(ctx.states[catalog].placement))}

    def cone(i: int) -> str:
        ra, dec = positions[i % len(positions)]
        return CONE.format(catalog=catalog, ra=float(ra), dec=float(dec))

    out["plan_cold_s"] = _median(lambda i: plan(cone(i), "adql", ctx, oracle=False), repeat)
    out["plan_cached_s"] = _median(lambda i: client.plan(cone(i), oracle=False), repeat)
    out["cone_s"] = _median(lambda i: client.query(cone(i)), repeat)
    out["lookup_s"] = _median(
        lambda i: client.query(LOOKUP.format(catalog=catalog, key=int(keys[i % len(keys)]))),
        repeat,
    )
    out["count_s"] = _median(lambda i: client.query(COUNT.format(catalog=catalog)), 3)
    out["grouped_s"] = _median(lambda i: client.query(GROUPED.format(catalog=catalog)), 3)
    return out


def report(objects: int, orders: list[int], results: dict[int, dict[str, float]]) -> str:
    first = results[orders[0]]
    rows = [
        ("load (s)", "load_s", 1.0, "{:.1f}"),
        ("cone plan, cold (ms)", "plan_cold_s", 1e3, "{:.2f}"),
        ("cone plan, cached (ms)", "plan_cached_s", 1e3, "{:.3f}"),
        ("cone (ms)", "cone_s", 1e3, "{:.1f}"),
        ("id lookup (ms)", "lookup_s", 1e3, "{:.1f}"),
        ("COUNT(*) (s)", "count_s", 1.0, "{:.2f}"),
        ("grouped AVG (s)", "grouped_s", 1.0, "{:.2f}"),
    ]
    head = " | ".join(f"order {o}: {int(results[o]['chunks']):,} chunks" for o in orders)
    lines = [
        f"### Scale: {objects:,} objects, fixed HEALPix orders (ratio to order {orders[0]})",
        "",
        f"| what | {head} |",
        "|---|" + "---:|" * len(orders),
    ]
    for label, key, factor, fmt in rows:
        cells = []
        for o in orders:
            value = results[o].get(key)
            if value is None:
                cells.append("–")
                continue
            ratio = value / first[key] if first.get(key) else float("nan")
            cells.append(fmt.format(value * factor) + f" ({ratio:.2f}×)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2_000_000)
    parser.add_argument("--orders", default="2,5,6")
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-scale"))
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    orders = [int(o) for o in args.orders.split(",")]
    import pyarrow.parquet as pq

    from qserv_py.cluster.local import LocalCluster
    from qserv_py.cluster.spec import read_cluster_file

    args.work.mkdir(parents=True, exist_ok=True)
    release = _release(args.work, args.objects)
    cluster_dir = args.work / "cluster"
    if args.reuse and LocalCluster(cluster_dir).exists():
        cluster = LocalCluster(cluster_dir)
        cluster.start()
    else:  # a publish attaches every chunk it adds to a worker in one transaction
        cluster = fresh_cluster(cluster_dir, {"max_locks_per_transaction": 1024})
    spec = read_cluster_file(cluster_dir)
    first = sorted((release / "Object").glob("*.parquet"))[0]
    sample = pq.read_table(first, columns=["objectId", "coord_ra", "coord_dec"]).slice(0, 400)
    positions = np.column_stack(
        [sample.column("coord_ra").to_numpy(), sample.column("coord_dec").to_numpy()]
    )
    keys = sample.column("objectId").to_numpy()
    results: dict[int, dict[str, float]] = {}
    try:
        import qserv_py

        loaded = set(qserv_py.connect(cluster_dir).context.states)
        for order in orders:
            results[order] = {}
            if f"sc{order}" not in loaded:
                results[order] |= load_layout(spec, release, order)
            results[order] |= measure(cluster_dir, order, positions, keys, args.repeat)
            print(results[order], flush=True)
    finally:
        cluster.stop()
    print(report(args.objects, orders, results), flush=True)


if __name__ == "__main__":
    sys.exit(main())
