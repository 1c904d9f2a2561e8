"""Speed and memory of the synthetic release generator (loaders/generate.py).

Each run happens in a fresh subprocess, so its peak RSS is its own. Prints wall and CPU
seconds (the machine is shared: CPU time is the steadier number), rows/s, objects/s, the
Parquet bytes and the peak RSS; the ``forced=1`` runs at 200k, 2M and 6M objects show
that memory does not grow with the number of objects.

Run: ``.venv/bin/python bench/generate.py`` (or ``... bench/generate.py OBJECTS SRC FORCED``
for one run).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = (
    # (objects, sources_per_object, forced_per_object)
    (1_000_000, 0, 0),
    (1_000_000, 5, 10),
    # memory: flat in the number of objects
    (200_000, 1, 1),
    (2_000_000, 1, 1),
    (6_000_000, 1, 1),
)


def run_one(objects: int, sources: float, forced: float) -> dict[str, object]:
    """Generate into a temporary directory; timing, counts, sizes and peak RSS."""
    from qserv_py.loaders.generate import generate_release

    with tempfile.TemporaryDirectory(prefix="qserv-gen-") as tmp:
        out = Path(tmp) / "release"
        t0, c0 = time.perf_counter(), time.process_time()
        counts = generate_release(
            out, objects, sources_per_object=sources, forced_per_object=forced, seed=1
        )
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "counts": counts,
        "seconds": seconds,
        "cpu_seconds": cpu,  # all threads
        "bytes": size,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: KiB
    }


def main() -> None:
    if len(sys.argv) == 4:
        objects, sources, forced = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
        print(json.dumps(run_one(objects, sources, forced)))
        return
    print(f"{'objects':>9} {'src':>4} {'fs':>4} {'rows':>11} {'wall s':>7} {'cpu s':>6} "
          f"{'rows/s':>11} {'objects/s':>10} {'MB':>6} {'peak RSS':>9}")  # fmt: skip
    for objects, sources, forced in RUNS:
        proc = subprocess.run(
            [sys.executable, __file__, str(objects), str(sources), str(forced)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(proc.stdout)
        counts: dict[str, int] = r["counts"]
        rows = sum(counts.values())
        s = r["seconds"]
        print(
            f"{objects:>9} {sources:>4} {forced:>4} {rows:>11,} {s:>7.2f} "
            f"{r['cpu_seconds']:>6.1f} {rows / s:>11,.0f} {objects / s:>10,.0f} "
            f"{r['bytes'] / 1e6:>6.0f} {r['peak_rss_mb']:>7.0f}MB",
            flush=True,
        )


if __name__ == "__main__":
    main()
