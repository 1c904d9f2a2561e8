"""Query shapes on a Citus cluster against native workers, in the same run.

    python bench/citus.py --native DIR --citus DIR [--catalog qt] [--repeat 5]

Both clusters must hold the same catalog, loaded with the same options (``qserv-py
cluster init [--citus]``, ``catalog create``, ``load``). For each query shape the best of
``--repeat`` runs (after one warm-up) of qserv_py's Python API on each cluster, and their
ratio (Citus / native). The cone is also run as a plain Citus query written by hand (no
qserv_py: an angular-distance test over the distributed table, which Citus sends to every
shard), against qserv_py on Citus. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from qserv_py.client import connect
from qserv_py.cluster.spec import read_cluster_file

SHAPES = {
    "whole-sky COUNT(*)": "SELECT COUNT(*) FROM Object",
    "grouped AVG of ForcedSource": (
        "SELECT band, AVG(psfFlux), COUNT(*) FROM ForcedSource GROUP BY band"
    ),
    "cone rows (r = 10°)": (
        "SELECT objectId, coord_ra, coord_dec FROM Object WHERE "
        "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, 10.0)) = 1"
    ),
    "objectId lookup": "SELECT * FROM Object WHERE objectId = {id}",
    "light curve": (
        "SELECT f.band, f.psfFlux FROM Object o JOIN ForcedSource f ON f.objectId = o.objectId "
        "WHERE o.objectId = {id}"
    ),
    "near-neighbour pairs (1′) in a 5° cone": (
        "SELECT COUNT(*) FROM Object o1, Object o2 WHERE "
        "CONTAINS(POINT(o1.coord_ra, o1.coord_dec), CIRCLE({ra}, {dec}, 5.0)) = 1 AND "
        "DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 0.0166 "
        "AND o1.objectId <> o2.objectId"
    ),
}
HAND_CONE = (
    "SELECT objectid, coord_ra, coord_dec FROM {cat}.object "
    "WHERE qserv.ang_sep(coord_ra, coord_dec, {ra}, {dec}) <= 10.0"
)


def best(run: Callable[[], object], repeat: int) -> float:
    """The best of ``repeat`` timed runs after one warm-up, with the collector off."""
    run()
    times = []
    for _ in range(repeat):
        gc.disable()
        start = time.perf_counter()
        try:
            run()
        finally:
            gc.enable()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--native", type=Path, required=True)
    parser.add_argument("--citus", type=Path, required=True)
    parser.add_argument("--catalog", default="qt")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    native_spec, citus_spec = read_cluster_file(args.native), read_cluster_file(args.citus)
    if citus_spec.backend != "citus":
        parser.error(f"{args.citus} is not a Citus cluster")
    native = connect(native_spec, default_catalog=args.catalog)
    citus = connect(citus_spec, default_catalog=args.catalog)
    row = native.query(
        "SELECT TOP 1 objectId, coord_ra, coord_dec FROM Object ORDER BY objectId"
    ).to_pylist()[0]
    values = {"id": row["objectId"], "ra": row["coord_ra"], "dec": row["coord_dec"]}
    print("| query | native s | Citus s | Citus / native | rows |\n|---|---|---|---|---|")
    for name, template in SHAPES.items():
        text = template.format(**values)
        rows = citus.query(text).num_rows
        assert rows == native.query(text).num_rows, name
        t_native = best(lambda t=text: native.query(t), args.repeat)
        t_citus = best(lambda t=text: citus.query(t), args.repeat)
        print(f"| {name} | {t_native:.4f} | {t_citus:.4f} | {t_citus / t_native:.2f} | {rows} |")
    with psycopg.connect(citus_spec.coordinator.dsn, autocommit=True) as conn:
        hand = HAND_CONE.format(cat=args.catalog, **values)
        t_hand = best(lambda: conn.execute(hand).fetchall(), args.repeat)
    text = SHAPES["cone rows (r = 10°)"].format(**values)
    t_ours = best(lambda: citus.query(text), args.repeat)
    print(
        f"\ncone on Citus: qserv_py {t_ours:.4f} s, plain Citus query by hand {t_hand:.4f} s "
        f"(hand / qserv_py = {t_hand / t_ours:.2f})"
    )


if __name__ == "__main__":
    main()
