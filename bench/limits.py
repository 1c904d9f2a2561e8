"""Result limits (issue 13), on one fresh local cluster (a czar, two workers):

    python -m bench.limits [--value-bytes 1000000000] [--rows 200000] [--repeats 5]
        [--work DIR]

1. **A huge value against a service process.** ``qserv-py``'s service runs in its own
   process (uvicorn, the app factory ``serve`` uses, default settings but
   ``result_max_bytes_sync`` = 100 MB); ``SELECT repeat('x', --value-bytes)`` is sent
   as TAP sync with ``LANG=PostgreSQL``. Reported: the answer, its time, and the
   service's peak resident memory (VmHWM) before and after.
2. **The cost of the byte limit.** A hand-written plan whose workers return ``--rows``
   rows (an int, a float and a 20-character text each) is run with no byte limit and
   with one (the running size sum on the server), alternating, ``--repeats`` times on
   the fast path (one worker, one statement) and on the merge path (two workers, COPY
   into the czar's merge table, then the merge). Reported: the median time of each and
   their ratio.

Prints Markdown for docs/benchmarks.md. The cluster is destroyed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROWS_SQL = (
    "SELECT c AS chunk, g AS n, g * 0.5 AS x, lpad(g::text, 20, 'x') AS label"
    " FROM unnest({{chunks}}) AS c, generate_series(1, {per_chunk}) AS g"
)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def huge_value(settings: object, value_bytes: int) -> list[str]:
    from qserv_py.api.app import SETTINGS_ENV

    settings = settings.model_copy(update={"result_max_bytes_sync": 100_000_000})  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as scratch:
        port = 18000 + os.getpid() % 1000
        env = dict(os.environ, **{SETTINGS_ENV: settings.model_dump_json()})  # type: ignore[attr-defined]
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory",
             "qserv_py.api.app:create_app_from_environment", "--port", str(port),
             "--log-level", "warning"],
            env=env, cwd=scratch,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3600) as http:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if http.get("/tap/availability").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the service did not start")
                    time.sleep(0.2)
                query = {"LANG": "PostgreSQL", "QUERY": "SELECT 1 AS one"}
                http.get("/tap/sync", params=query).raise_for_status()
                before = peak_rss(server.pid)
                query["QUERY"] = f"SELECT repeat('x', {value_bytes}) AS big"
                started = time.perf_counter()
                answer = http.get("/tap/sync", params=query)
                seconds = time.perf_counter() - started
                after = peak_rss(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    message = answer.text.split("QUERY_STATUS", 1)[-1][:160].replace("\n", " ")
    return [
        f"| `SELECT repeat('x', {value_bytes})`, result_max_bytes_sync = 100 MB | "
        f"HTTP {answer.status_code} in {seconds:.1f} s | service peak RSS {before / 1e6:.0f} MB "
        f"before, {after / 1e6:.0f} MB after (+{(after - before) / 1e6:.1f} MB) |",
        f"| (answer) | {message} | |",
    ]


def guard_cost(spec: object, rows: int, repeats: int) -> list[str]:
    from qserv_py.exec.dispatch import execute
    from qserv_py.exec.plan import ExecPlan

    names = [w.name for w in spec.workers]  # type: ignore[attr-defined]
    out = []
    for path, chunks in (
        ("fast path (1 worker, 1 statement)", {names[0]: (1,)}),
        ("merge path (2 workers, 4 batches)", {names[0]: (1, 2), names[1]: (3, 4)}),
    ):
        per_chunk = rows // sum(len(c) for c in chunks.values())
        plan = ExecPlan(
            ROWS_SQL.format(per_chunk=per_chunk),
            "SELECT chunk, n, x, label FROM {partials}",
            chunks,
        )
        times: dict[str, list[float]] = {"none": [], "limit": []}
        for _ in range(repeats):
            for kind, limit in (("none", None), ("limit", 10**12)):
                started = time.perf_counter()
                result = execute(spec, plan, max_bytes=limit, batch_chunks=1)  # type: ignore[arg-type]
                times[kind].append(time.perf_counter() - started)
                assert result.table.num_rows == per_chunk * sum(len(c) for c in chunks.values())
        plain, capped = statistics.median(times["none"]), statistics.median(times["limit"])
        out.append(
            f"| {rows:,} rows, {path} | {plain:.3f} s without a limit | {capped:.3f} s with "
            f"the running size sum ({capped / plain:.2f}×) |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--value-bytes", type=int, default=1_000_000_000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-limits"))
    args = parser.parse_args()

    from qserv_py.cluster.local import LocalCluster
    from qserv_py.config import load_settings
    from qserv_py.exec.dispatch import close_pools

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h"], capture_output=True, text=True
    ).stdout.strip()
    cluster_dir = args.work / "cluster"
    cluster = LocalCluster(cluster_dir)
    if cluster.exists():
        cluster.destroy()
    settings = load_settings({"cluster": cluster_dir, "shared_buffers": "128MB"})
    lines = [f"code {head}, {os.cpu_count()} cores", "", "| case | measured | |", "|---|---|---|"]
    try:
        cluster.init(settings)
        spec = cluster.spec()
        lines += guard_cost(spec, args.rows, args.repeats)
        close_pools()
        lines += huge_value(settings, args.value_bytes)
    finally:
        close_pools()
        cluster.destroy()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
