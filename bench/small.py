"""Small work and appends (issue 12): the fixed costs of everyday things, in one run.

    python bench/small.py [--objects 2000000] [--append 400000] [--targets 2000]
        [--repeat 5] [--work DIR]

A synthetic release (``qserv-py generate``, seed 1, Object and CcdVisit), a second set of
``--append`` new objects (seed 2, objectIds moved past the first set's), a fresh local
cluster (a czar and two workers, shared_buffers 1GB, as bench/load.py), then:

1. **First load and append**: the Python API's ``load`` (no process start) of the
   release's Object (rows/s), then of the append set into it (rows/s); the ratio is the
   target (≥ 1: an append runs at the rate of the first load). Then 1,000 new objects
   appended (issue: tens of seconds).
2. **Replicated load of 10 rows** into CcdVisit (after a first load of the release's
   CcdVisit), with the Python API (``qserv_py.loaders.load.load``) and with the CLI
   (a new process each time); baseline, for scale: one PostgreSQL (database
   ``plain_small`` on the czar instance), a new connection, COPY of the same 10 rows
   into a plain table, commit.
3. **The CLI**: ``qserv-py --help`` (baseline: ``python -c pass``, the interpreter's own
   start) and ``qserv-py query`` of a 6′ cone COUNT (baseline: the same query through a
   warm Python client in this process, i.e. the server time): the difference is the
   CLI's fixed cost (target ≤ 0.5 s). Each process's CPU time (user + system) is shown
   beside its wall time: on a busy machine the wall time mostly waits for a core.
4. **Cross-match of ``--targets`` targets** at 1″ (bench/tap.py's target list: 70 % near
   an object): ``client.query`` with the targets as an upload, against Q3C on one
   PostgreSQL (database ``q3c_small`` on the czar instance: every loaded object in one
   table with a ``q3c_ang2ipix`` index, CLUSTERed, ANALYZEd; Debian's
   postgresql-15-q3c): ``q3c_join`` from a targets table already there, and the same
   with the targets COPYed into a new temporary table first (what an upload does).
   The pairs must agree.

Medians of ``--repeat`` runs (after a warm-up) where a thing is repeated; loads once each.
Prints the Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve()
sys.path.insert(0, str(BENCH.parents[1]))

Q3C_DB = "q3c_small"
PLAIN_DB = "plain_small"
CONE = (
    "SELECT COUNT(*) FROM dp02.Object WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
    "CIRCLE('ICRS', {ra!r}, {dec!r}, 0.1)) = 1"
)
ID_SHIFT = 10**11  # objectIds of the append set: past any release's (10^12 + n)


def _cli(cluster: Path, *args: str) -> float:
    """Seconds of ``qserv-py --cluster cluster args`` in a new process (output dropped)."""
    return _process([sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster), *args])[0]


def _installed(cluster: Path) -> dict[str, str]:
    """The environment of a new process as installed (pip compiles the modules):
    bytecode cached, outside the checkout."""
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(cluster.parent / "pycache")
    return cached


def _process(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of ``command`` in a new process. On a busy
    machine the CPU time is what the start costs; the wall time also waits for a core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _median(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` runs of ``fn`` after one warm-up, gc off; last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        gc.disable()
        try:
            started = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - started)
        finally:
            gc.enable()
    return statistics.median(times), result


def _release(work: Path, name: str, objects: int, seed: int) -> Path:
    out = work / f"{name}-{objects}"
    if not (out / "Object").exists():
        from qserv_py.loaders.generate import generate_release

        generate_release(
            out, objects, sources_per_object=0, forced_per_object=0, seed=seed, overwrite=True
        )
    return out


def _append_set(work: Path, objects: int) -> Path:
    """``objects`` new objects (seed 2) with objectIds moved by ID_SHIFT."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = work / f"append-{objects}" / "Object"
    if out.exists():
        return out
    source = _release(work, "source", objects, seed=2) / "Object"
    out.mkdir(parents=True)
    for path in sorted(source.glob("*.parquet")):
        table = pq.read_table(path)
        i = table.schema.get_field_index("objectId")
        shifted = pc.add(table.column(i), pa.scalar(ID_SHIFT, pa.int64()))
        pq.write_table(table.set_column(i, table.schema.field(i), shifted), out / path.name)
    return out


def _slice(source: Path, out: Path, rows: int, key: str, shift: int) -> Path:
    """The first ``rows`` rows of the table in ``source``, ``key`` moved by ``shift``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(source.glob("*.parquet"))[0]).slice(0, rows)
    i = table.schema.get_field_index(key)
    moved = pc.add(table.column(i), pa.scalar(shift, table.schema.field(i).type))
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.set_column(i, table.schema.field(i), moved), out / "part.parquet")
    return out


def loads(cluster: Path, release: Path, append: Path, work: Path, repeat: int) -> dict[str, Any]:
    """First load, append, 1,000-object append (``work/append-1000``), 10-row replicated
    loads."""
    import pyarrow.parquet as pq

    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.loaders.load import load

    spec = read_cluster_file(cluster)
    first_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (release / "Object").glob("*"))
    append_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in append.glob("*.parquet"))
    out: dict[str, Any] = {"first_rows": first_rows, "append_rows": append_rows}

    def timed(table: str, folder: Path) -> float:  # the Python API: no process start
        started = time.perf_counter()
        load(spec, "dp02", table, [folder])
        return time.perf_counter() - started

    print(f"first load of {first_rows:,} objects ...", flush=True)
    out["first_s"] = timed("Object", release / "Object")
    print(f"  {out['first_s']:.1f} s; append of {append_rows:,} ...", flush=True)
    out["append_s"] = timed("Object", append)
    print(f"  {out['append_s']:.1f} s; 1,000 objects ...", flush=True)
    small = _slice(append, work / "append-1000", 1000, "objectId", ID_SHIFT)
    out["append_1000_s"] = timed("Object", small)
    out["ccd_first_s"] = timed("CcdVisit", release / "CcdVisit")
    out.update(replicated(cluster, release, work, repeat))
    return out


def replicated(cluster: Path, release: Path, work: Path, repeat: int) -> dict[str, Any]:
    """10-row loads into the replicated CcdVisit (loaded before): the Python API, the CLI,
    and a bare COPY on one PostgreSQL."""
    import psycopg
    import pyarrow.parquet as pq

    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.loaders.load import load

    spec = read_cluster_file(cluster)
    out: dict[str, Any] = {}
    shift = [10**14 + time.time_ns() // 10**9 % 10**4 * 10**12]  # new ids in every run

    def ten_rows() -> Path:
        shift[0] += 10**10
        return _slice(release / "CcdVisit", work / f"ccd-{shift[0]}", 10, "ccdVisitId", shift[0])

    api = []
    for _ in range(repeat):
        folder = ten_rows()
        started = time.perf_counter()
        load(spec, "dp02", "CcdVisit", [folder])
        api.append(time.perf_counter() - started)
    out["ccd10_api_s"] = statistics.median(api)
    command = [sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster), "load", "dp02"]
    runs = [_process([*command, "CcdVisit", str(ten_rows())]) for _ in range(repeat)]
    out["ccd10_cli_s"] = statistics.median(w for w, _ in runs)
    out["ccd10_cli_cpu"] = statistics.median(c for _, c in runs)
    cached = _installed(cluster)
    _process([*command, "CcdVisit", str(ten_rows())], cached)  # compiles
    runs = [_process([*command, "CcdVisit", str(ten_rows())], cached) for _ in range(repeat)]
    out["ccd10_cli_pyc_s"] = statistics.median(w for w, _ in runs)
    out["ccd10_cli_pyc_cpu"] = statistics.median(c for _, c in runs)
    rows = pq.read_table(ten_rows() / "part.parquet")
    with psycopg.connect(**spec.czar.conninfo, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PLAIN_DB}")
        admin.execute(f"CREATE DATABASE {PLAIN_DB}")
    info = dict(spec.czar.conninfo, dbname=PLAIN_DB)

    def plain_copy() -> None:
        with psycopg.connect(**info) as conn:
            with conn.cursor().copy("COPY ccd10 (ccdvisitid, band) FROM STDIN") as copy:
                for row in _rows(rows, "ccdVisitId", "band"):
                    copy.write_row(row)
            conn.commit()

    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute("CREATE TABLE ccd10 (ccdvisitid bigint, band text)")
    out["ccd10_plain_s"], _ = _median(plain_copy, repeat)
    return out


def _rows(table: Any, *columns: str) -> list[tuple[Any, ...]]:
    return list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def build_q3c(cluster: Path, folders: list[Path]) -> None:
    """Database Q3C_DB on the czar instance: every loaded object (objectid, coord_ra,
    coord_dec) with a q3c index, CLUSTERed and ANALYZEd."""
    import psycopg
    import pyarrow.parquet as pq

    from qserv_py.cluster.db import connect
    from qserv_py.cluster.spec import read_cluster_file

    spec = read_cluster_file(cluster)
    with connect(spec.czar, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {Q3C_DB}")
        admin.execute(f"CREATE DATABASE {Q3C_DB}")
    info = dict(spec.czar.conninfo, dbname=Q3C_DB)
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION q3c")  # superuser or trusted: fails clearly otherwise
        conn.execute("CREATE TABLE object (objectid bigint, coord_ra float8, coord_dec float8)")
        with conn.cursor().copy("COPY object FROM STDIN") as copy:
            for folder in folders:
                for path in sorted(folder.glob("*.parquet")):
                    cols = ["objectId", "coord_ra", "coord_dec"]
                    for batch in pq.ParquetFile(path).iter_batches(262_144, columns=cols):
                        for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                            copy.write_row(row)
        conn.execute("CREATE INDEX object_q3c ON object (q3c_ang2ipix(coord_ra, coord_dec))")
        conn.execute("CLUSTER object USING object_q3c")
        conn.execute("VACUUM (ANALYZE) object")


def q3c_sides(
    conn: Any, rows: list[tuple[Any, ...]], join: str
) -> tuple[Callable[[], list[Any]], Callable[[], list[Any]]]:
    """The Q3C baseline of a cross-match of ``rows`` (id, ra, dec): a table ``targets``
    of them made now (ANALYZEd), and two runs of ``join`` (its ``{t}`` the targets'
    table): from that table, and after COPYing the rows into a new temporary table
    first, in one transaction (what an upload costs there)."""
    conn.execute("DROP TABLE IF EXISTS targets")
    conn.execute("CREATE TABLE targets (id bigint, ra float8, dec float8)")
    with conn.cursor().copy("COPY targets FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.execute("ANALYZE targets")

    def q3c() -> list[Any]:
        return conn.execute(join.format(t="targets")).fetchall()

    def q3c_upload() -> list[Any]:
        with conn.transaction():
            conn.execute("CREATE TEMP TABLE up (id bigint, ra float8, dec float8) ON COMMIT DROP")
            with conn.cursor().copy("COPY up FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute("ANALYZE up")
            return conn.execute(join.format(t="up")).fetchall()

    return q3c, q3c_upload


def xmatch(cluster: Path, release: Path, n: int, repeat: int) -> dict[str, Any]:
    """qserv_py's upload cross-match of ``n`` targets against q3c_join on one database."""
    import psycopg

    import qserv_py
    from bench.tap import XMATCH, xmatch_targets
    from qserv_py.cluster.spec import read_cluster_file

    radius = 1 / 3600
    targets = xmatch_targets(release, n, radius)
    text = XMATCH.format(radius=radius)
    client = qserv_py.connect(cluster, default_catalog="dp02")
    spec = read_cluster_file(cluster)
    conn = psycopg.connect(**dict(spec.czar.conninfo, dbname=Q3C_DB), autocommit=True)
    join = (
        "SELECT t.id, o.objectid FROM {t} t JOIN object o"
        f" ON q3c_join(t.ra, t.dec, o.coord_ra, o.coord_dec, {radius!r})"
    )
    q3c, q3c_upload = q3c_sides(conn, _rows(targets, "id", "ra", "dec"), join)

    def ours() -> Any:
        return client.query(text, uploads={"t": targets})

    out: dict[str, Any] = {}
    for name, fn in (("qserv_py", ours), ("q3c", q3c), ("q3c_upload", q3c_upload)):
        out[name], out[f"{name}_result"] = _median(fn, repeat)
    got = sorted(_rows(out["qserv_py_result"], "id", "objectId"))
    want = sorted(out["q3c_result"])
    if got != want:
        raise SystemExit(f"cross-match differs: qserv_py {len(got)} pairs, q3c {len(want)}")
    out["pairs"] = len(got)
    conn.close()
    return out


def cli(cluster: Path, release: Path, repeat: int) -> dict[str, Any]:
    """``--help`` against the bare interpreter; ``query`` against a warm client."""
    import pyarrow.parquet as pq

    import qserv_py

    first = sorted((release / "Object").glob("*.parquet"))[0]
    positions = pq.read_table(first, columns=["coord_ra", "coord_dec"]).slice(7, 1)
    ((ra, dec),) = _rows(positions, "coord_ra", "coord_dec")
    text = CONE.format(ra=ra, dec=dec)
    out: dict[str, Any] = {}

    def run(name: str, *args: str) -> None:
        _process([sys.executable, *args])  # warm-up
        runs = [_process([sys.executable, *args]) for _ in range(repeat)]
        out[name] = statistics.median(w for w, _ in runs)
        out[f"{name}_cpu"] = statistics.median(c for _, c in runs)

    run("python", "-c", "pass")
    run("help", "-m", "qserv_py.cli", "--help")
    run("query_cli", "-m", "qserv_py.cli", "--cluster", str(cluster), "query", text)
    cached = _installed(cluster)
    command = [sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster), "query", text]
    _process(command, cached)  # compiles
    runs = [_process(command, cached) for _ in range(repeat)]
    out["query_cli_pyc"] = statistics.median(w for w, _ in runs)
    out["query_cli_pyc_cpu"] = statistics.median(c for _, c in runs)
    out["query_cli_served"], out["query_cli_served_cpu"] = served(cluster, command, repeat)
    client = qserv_py.connect(cluster, default_catalog="dp02")
    out["query_api"], _ = _median(lambda: client.query(text), repeat)
    return out


def served(cluster: Path, command: list[str], repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``command`` run by the fork server
    (``qserv_py.forkserver``) as a user's later commands are: the first starts the server
    (and runs in its own process), then ``repeat`` are timed. The server is stopped."""
    run_dir = cluster.parent / "forkserver"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    env = {**_installed(cluster), "QSERV_PY_FORKSERVER": "on", "XDG_RUNTIME_DIR": str(run_dir)}
    _process(command, env)
    deadline = time.monotonic() + 120
    while not list(run_dir.glob("*.sock")) or not list(run_dir.glob("*.pid")):
        if time.monotonic() > deadline:
            raise SystemExit("the fork server did not start")
        time.sleep(0.1)
    try:
        _process(command, env)  # its first child
        runs = [_process(command, env) for _ in range(repeat)]
    finally:
        for pid_file in run_dir.glob("*.pid"):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2_000_000)
    parser.add_argument("--append", type=int, default=400_000)
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-small"))
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure only the small things (10-row replicated loads, the CLI, the "
        "cross-match) on the cluster in WORK/cluster, loaded by an earlier run with the "
        "release of --objects objects (Object and CcdVisit); q3c database built if missing",
    )
    parser.add_argument(
        "--loads-only",
        action="store_true",
        help="only the first load, the appends and the replicated loads (part 1), on a "
        "fresh cluster: the append's rate again without the rest",
    )
    args = parser.parse_args()
    # the command lines timed run in processes of their own (the fork server is timed
    # apart: `served`)
    os.environ["QSERV_PY_FORKSERVER"] = "off"
    if args.reuse:
        reuse(args)
        return
    from bench.load import fresh_cluster

    args.work.mkdir(parents=True, exist_ok=True)
    release = _release(args.work, "release", args.objects, seed=1)
    append = _append_set(args.work, args.append)
    cluster_dir = args.work / "cluster"
    cluster = fresh_cluster(cluster_dir)
    try:
        subprocess.run(
            [sys.executable, "-m", "qserv_py.cli", "--cluster", str(cluster_dir), "catalog",
             "create", "dp02"], check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        ld = loads(cluster_dir, release, append, args.work, args.repeat)
        if args.loads_only:
            rate = (ld["append_rows"] / ld["append_s"]) / (ld["first_rows"] / ld["first_s"])
            print(
                f"first load {ld['first_rows']:,} rows in {ld['first_s']:.1f} s; append "
                f"{ld['append_rows']:,} in {ld['append_s']:.1f} s: {rate:.2f}x the rate"
            )
            return
        started = time.perf_counter()
        build_q3c(cluster_dir, [release / "Object", append, args.work / "append-1000"])
        print(f"q3c baseline built in {time.perf_counter() - started:.0f} s", flush=True)
        cl = cli(cluster_dir, release, args.repeat)
        xm = xmatch(cluster_dir, release, args.targets, args.repeat)
    finally:
        cluster.stop()
    first_rate = ld["first_rows"] / ld["first_s"]
    append_rate = ld["append_rows"] / ld["append_s"]
    print(
        f"\n### Small work and appends: {args.objects:,} objects + {args.append:,} appended, "
        f"medians of {args.repeat}\n\n"
        "| what | qserv_py | baseline | ratio / difference | target |\n|---|---|---|---|---|\n"
        f"| `qserv-py --help`, wall (CPU) | {cl['help']:.3f} s ({cl['help_cpu']:.3f} s) "
        f"| {cl['python']:.3f} s ({cl['python_cpu']:.3f} s) `python -c pass` "
        f"| +{cl['help'] - cl['python']:.3f} s (+{cl['help_cpu'] - cl['python_cpu']:.3f} s) "
        "| < 0.3 s |\n"
        f"| `qserv-py query` (6′ cone COUNT), wall (CPU) | {cl['query_cli']:.3f} s "
        f"({cl['query_cli_cpu']:.3f} s) | {cl['query_api']:.3f} s (warm Python client) "
        f"| +{cl['query_cli'] - cl['query_api']:.3f} s | ≤ +0.5 s |\n"
        f"| the same, run by the fork server (a user's later commands), wall (CPU of the "
        f"command line) | {cl['query_cli_served']:.3f} s ({cl['query_cli_served_cpu']:.3f} s) "
        f"| {cl['query_api']:.3f} s | +{cl['query_cli_served'] - cl['query_api']:.3f} s "
        "| ≤ +0.5 s |\n"
        f"| first load, Object | {ld['first_rows']:,} rows in {ld['first_s']:.1f} s "
        f"({first_rate:,.0f} rows/s) | | | |\n"
        f"| append {ld['append_rows']:,} objects | {ld['append_s']:.1f} s "
        f"({append_rate:,.0f} rows/s) | first load {first_rate:,.0f} rows/s "
        f"| {append_rate / first_rate:.2f}× the rate | ≥ 1× |\n"
        f"| append 1,000 objects | {ld['append_1000_s']:.2f} s | | | |\n"
        f"| 10-row replicated load, Python API | {ld['ccd10_api_s']:.3f} s "
        f"| {ld['ccd10_plain_s']:.3f} s (connect, COPY, commit on one PostgreSQL) "
        f"| {ld['ccd10_api_s'] / ld['ccd10_plain_s']:.0f}× | < 1 s |\n"
        f"| 10-row replicated load, CLI, wall (CPU) | {ld['ccd10_cli_s']:.3f} s "
        f"({ld['ccd10_cli_cpu']:.3f} s) | | | < 1 s |\n"
        f"| the same, bytecode cached (as installed), wall (CPU) "
        f"| {ld['ccd10_cli_pyc_s']:.3f} s ({ld['ccd10_cli_pyc_cpu']:.3f} s) | | | < 1 s |\n"
        f"| cross-match {args.targets:,} targets at 1″ ({xm['pairs']:,} pairs) "
        f"| {xm['qserv_py']:.3f} s | {xm['q3c']:.3f} s (q3c_join) "
        f"| {xm['qserv_py'] / xm['q3c']:.1f}× | ≤ 2× |\n"
        f"| the same, Q3C with the targets COPYed first | | {xm['q3c_upload']:.3f} s "
        f"| {xm['qserv_py'] / xm['q3c_upload']:.1f}× | |\n",
        flush=True,
    )


def reuse(args: argparse.Namespace) -> None:
    """``--reuse``: the small things only, on a loaded cluster (see ``--reuse``)."""
    import psycopg

    from qserv_py.cluster.local import LocalCluster
    from qserv_py.cluster.spec import read_cluster_file

    cluster_dir = args.work / "cluster"
    release = args.work / f"release-{args.objects}"
    LocalCluster(cluster_dir).start()
    spec = read_cluster_file(cluster_dir)
    with psycopg.connect(**spec.czar.conninfo, autocommit=True) as admin:
        have_q3c = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (Q3C_DB,)
        ).fetchone()
    if not have_q3c:
        build_q3c(cluster_dir, [release / "Object"])
    ld = replicated(cluster_dir, release, args.work, args.repeat)
    cl = cli(cluster_dir, release, args.repeat)
    xm = xmatch(cluster_dir, release, args.targets, args.repeat)
    print(
        f"\n### Small work on a loaded cluster ({args.objects:,} objects), medians of "
        f"{args.repeat}\n\n"
        "| what | qserv_py | baseline | ratio / difference | target |\n|---|---|---|---|---|\n"
        f"| `qserv-py --help`, wall (CPU) | {cl['help']:.3f} s ({cl['help_cpu']:.3f} s) "
        f"| {cl['python']:.3f} s ({cl['python_cpu']:.3f} s) `python -c pass` "
        f"| +{cl['help'] - cl['python']:.3f} s (+{cl['help_cpu'] - cl['python_cpu']:.3f} s) "
        "| < 0.3 s |\n"
        f"| `qserv-py query` (6′ cone COUNT), wall (CPU) | {cl['query_cli']:.3f} s "
        f"({cl['query_cli_cpu']:.3f} s) | {cl['query_api']:.3f} s (warm Python client) "
        f"| +{cl['query_cli'] - cl['query_api']:.3f} s | ≤ +0.5 s |\n"
        f"| the same, bytecode cached (as installed), wall (CPU) | {cl['query_cli_pyc']:.3f} s "
        f"({cl['query_cli_pyc_cpu']:.3f} s) | {cl['query_api']:.3f} s "
        f"| +{cl['query_cli_pyc'] - cl['query_api']:.3f} s | ≤ +0.5 s |\n"
        f"| the same, run by the fork server (a user's later commands), wall (CPU of the "
        f"command line) | {cl['query_cli_served']:.3f} s ({cl['query_cli_served_cpu']:.3f} s) "
        f"| {cl['query_api']:.3f} s | +{cl['query_cli_served'] - cl['query_api']:.3f} s "
        "| ≤ +0.5 s |\n"
        f"| 10-row replicated load, Python API | {ld['ccd10_api_s']:.3f} s "
        f"| {ld['ccd10_plain_s']:.3f} s (connect, COPY, commit on one PostgreSQL) "
        f"| {ld['ccd10_api_s'] / ld['ccd10_plain_s']:.0f}× | < 1 s |\n"
        f"| 10-row replicated load, CLI, wall (CPU) | {ld['ccd10_cli_s']:.3f} s "
        f"({ld['ccd10_cli_cpu']:.3f} s) | | | < 1 s |\n"
        f"| the same, bytecode cached (as installed), wall (CPU) "
        f"| {ld['ccd10_cli_pyc_s']:.3f} s ({ld['ccd10_cli_pyc_cpu']:.3f} s) | | | < 1 s |\n"
        f"| cross-match {args.targets:,} targets at 1″ ({xm['pairs']:,} pairs) "
        f"| {xm['qserv_py']:.3f} s | {xm['q3c']:.3f} s (q3c_join) "
        f"| {xm['qserv_py'] / xm['q3c']:.1f}× | ≤ 2× |\n"
        f"| the same, Q3C with the targets COPYed first | | {xm['q3c_upload']:.3f} s "
        f"| {xm['qserv_py'] / xm['q3c_upload']:.1f}× | |\n",
        flush=True,
    )


if __name__ == "__main__":
    main()
