"""Planning time of long OR chains and IN lists: linear in their length, or not.

    python bench/planning.py --cluster DIR [--catalog dp02] [--repeat 3]

Plans (no execution) ``SELECT objectId FROM Object WHERE objectId = 0 OR objectId = 1
OR ...`` with 500 … 4,000 terms and ``... WHERE objectId IN (0, 1, ...)`` with 5,000 …
75,000 values on the local cluster ``--cluster`` (any cluster with a dp02-shaped
catalog), the best of ``--repeat`` runs each. The baseline, in the same run, is sqlglot
tokenizing and parsing the same text (linear in its length): the ratio plan / parse
stays flat when planning is linear, and grows with n when a pass is quadratic. Also
reported: microseconds per term. Run it from an exported tree of an older commit
(``PYTHONPATH=that tree``) for the before figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import sqlglot

from qserv_py.client import connect
from qserv_py.query.planner import plan


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cluster", type=Path, required=True)
    parser.add_argument("--catalog", default="dp02")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ctx = connect(args.cluster, default_catalog=args.catalog).context
    cases = [("OR", n) for n in (500, 1_000, 2_000, 4_000)]
    cases += [("IN", n) for n in (5_000, 20_000, 75_000)]
    print(f"{'shape':6} {'n':>7} {'plan s':>8} {'parse s':>8} {'ratio':>6} {'µs/term':>8}")
    for shape, n in cases:
        if shape == "OR":
            text = "SELECT objectId FROM Object WHERE " + " OR ".join(
                f"objectId = {i}" for i in range(n)
            )
        else:
            text = (
                f"SELECT objectId FROM Object WHERE objectId IN ({', '.join(map(str, range(n)))})"
            )
        planned = best(lambda t=text: plan(t, "adql", ctx, oracle=False), args.repeat)
        parsed = best(lambda t=text: sqlglot.parse_one(t, read="postgres"), args.repeat)
        print(
            f"{shape:6} {n:>7,} {planned:>8.2f} {parsed:>8.2f} {planned / parsed:>6.1f} "
            f"{planned / n * 1e6:>8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
