"""Fuzzing a served cluster over HTTP: N mutated ADQL / PostgreSQL / Qserv inputs.

    python bench/fuzz.py [--inputs 100000] [--clients 8] [--processes 2]
                         [--cluster DIR | --work DIR] [--objects 5000] [--max-seconds S]
                         [--hang-s 120] [--rss-ceiling-mb 2048] [--seed 13]

Set-up: the local cluster ``--cluster`` (one made by ``qserv-py up --no-serve``, with
catalog dp02), or a new one made that way in ``--work`` with ``--objects`` objects. Then
``qserv-py serve --http-port 0`` in a subprocess (``--processes`` service processes on
one port, sync time limit 30 s, MAXREC 1000 by default, result byte limits 50 MB, the
memory ceiling ``service_max_memory_mb`` = ``--rss-ceiling-mb``, worker connections
given 20 s, no access log) — the service is what is under test.

Inputs: the corpus queries (tests/queries/), the TAP examples (api/examples.py) and a
list of hand-written attacks, each mutated 1-4 times by a seeded random generator (a
span cut, duplicated, replaced by or spliced with a fragment: keywords, operators,
quotes, backticks, NUL, odd numbers, deep parentheses, long OR chains, functions that
must be refused, text of another query), in a random language. Every 20th input is sent
unmutated (queries that run). They go to ``POST /tap/sync`` (a random FORMAT) and
``POST /api/v1/query`` (JSON), and every 50th input as a job id to ``GET /tap/async/…``,
from ``--clients`` threads, each one keep-alive ``httpx.Client``.

Counted: answers by status; HTTP 5xx (each kept in ``fuzz-5xx.jsonl`` beside the
report, with its input); dropped connections (the server closed or reset a keep-alive
connection, or a request could not be sent); hangs (no answer in ``--hang-s``); the
service's RSS (each process, and all together, sampled every 0.5 s), each process's
against ``--rss-ceiling-mb``. Exits 1 if any 5xx, drop or hang happened, or the RSS passed the
ceiling. ``--max-seconds`` stops sending after that long (the report says how many
inputs were sent).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ROOT / "tests" / "queries"
CLI = [sys.executable, "-m", "qserv_py.cli"]

#: hand-written attacks and mistakes (issue 13's findings and their relatives)
ATTACKS = [
    "SELECT " + "(" * 60 + "1" + ")" * 60 + " FROM Object",
    "SELECT 'a\x00b' FROM Object",
    "SELECT TOP 10 FROM Object",
    "SELECT TOP 3 1e FROM Object",
    "SELECT (coord_ra, coord_dec) FROM dp02.Object LIMIT 3",
    'SELECT TOP 3 coord_ra AS "order" FROM Object ORDER BY 1',
    "WITH t(a, a) AS (SELECT coord_ra, coord_dec FROM Object) SELECT TOP 2 a FROM t",
    'WITH "order" AS (SELECT coord_ra AS "group" FROM Object) SELECT TOP 2 "group" FROM "order"',
    "SELECT 1/0 FROM dp02.Object",
    "SELECT coord_ra - 'x'::text FROM dp02.Object LIMIT 1",
    "SELECT repeat('x', 100000) FROM dp02.Object LIMIT 1",
    "SELECT pg_sleep(100)",
    "SELECT pg_read_file('/etc/passwd')",
    "DELETE FROM Object",
    "SELECT * FROM pg_catalog.pg_authid",
    "SELECT objectId FROM Object WHERE " + " OR ".join(f"objectId = {i}" for i in range(300)),
    "SELECT objectId FROM Object WHERE objectId IN (" + ",".join(map(str, range(3000))) + ")",
    "SELECT TOP 1 * FROM TAP_UPLOAD.nothing",
    "SELECT `coord_ra` FROM dp02.Object LIMIT 1",
    "SELECT COUNT(*) FROM Object o1, Object o2 WHERE DISTANCE(o1.coord_ra, o1.coord_dec, "
    "o2.coord_ra, o2.coord_dec) < 0.1",
]
FRAGMENTS = [
    *[
        " SELECT ",
        " FROM ",
        " WHERE ",
        " AND ",
        " OR ",
        " NOT ",
        " IN (",
        " JOIN ",
        " ON ",
        " GROUP BY ",
        " ORDER BY ",
        " HAVING ",
        " LIMIT 5",
        " TOP 3 ",
        " UNION ",
        " WITH t AS (",
        " AS ",
        " DISTINCT ",
        " BETWEEN ",
    ],
    *[
        "(",
        ")",
        ",",
        "*",
        "/",
        "+",
        "-",
        "||",
        "=",
        "<>",
        "::",
        ";",
        ".",
        "'",
        '"',
        "`",
        "\\",
        "$$",
        "--",
        "/*",
        "*/",
        "%",
        "@",
        "#",
        "[",
        "]",
        "{",
        "}",
    ],
    "\x00",
    "\x01",
    "\u202e",
    "é€😀",
    "\ud7ff",
    "1e",
    "0x1F",
    "1_000",
    "1e999",
    "-0",
    "9" * 40,
    "NULL",
    "TRUE",
    "E'\\x00'",
    "'",
    "''",
    "pg_sleep(1)",
    "current_setting('x')",
    "pg_read_file('/etc/passwd')",
    "lo_import('/etc/passwd')",
    "dblink('x', 'y')",
    "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 1, 2, 3)) = 1",
    "DISTANCE(1, 2, 3, 4)",
    "POLYGON('ICRS', 0, 0, 1, 0, 1, 1)",
    "BOX(0, 0, 1, 1)",
    "qserv_areaspec_box(0, 0, 1, 1)",
    "scisql_s2PtInCircle(coord_ra, coord_dec, 1, 1, 1)",
    "ROW(1, 2)",
    "(1, 2)",
    "ARRAY[1]",
    "CASE WHEN 1 THEN 2 END",
    "COUNT(*)",
    "objectId",
    "Object",
    "dp02.Object",
    "ForcedSource",
    "CcdVisit",
    "TAP_SCHEMA.columns",
    "TAP_UPLOAD.t",
    "information_schema.tables",
    "pg_class",
    '"order"',
    "order",
    "select",
    "(" * 45,
    ")" * 45,
    " OR objectId = 1" * 200,
    " + coord_ra" * 400,
    "'" + "x" * 5000,
]
LANGS = ["ADQL", "PostgreSQL", "Qserv"]
FORMATS = ["votable", "csv", "json", "tsv", "parquet", None]


def seeds() -> list[str]:
    texts = [
        re.sub(r"^--.*$", "", p.read_text(), flags=re.M).strip()
        for p in sorted(QUERIES.glob("*.sql"))
    ]
    from qserv_py.api.examples import Sample, make_examples
    from qserv_py.schema import default_catalog_path, parse_catalog

    catalog = parse_catalog(default_catalog_path("dp02").read_text(), "dp02")
    texts += [e.query for e in make_examples(catalog, Sample(1, 10.0, -5.0))]
    return [t for t in texts if t] + ATTACKS


def mutate(rng: random.Random, pool: list[str]) -> str:
    text = rng.choice(pool)
    for _ in range(rng.randint(1, 4)):
        i = rng.randint(0, len(text))
        j = rng.randint(i, min(len(text), i + 40))
        action = rng.choice(("insert", "delete", "replace", "splice", "duplicate", "case"))
        if action == "insert":
            text = text[:i] + rng.choice(FRAGMENTS) + text[i:]
        elif action == "delete":
            text = text[:i] + text[j:]
        elif action == "replace":
            text = text[:i] + rng.choice(FRAGMENTS) + text[j:]
        elif action == "splice":
            other = rng.choice(pool)
            k = rng.randint(0, len(other))
            text = text[:i] + other[k : k + rng.randint(1, 60)] + text[j:]
        elif action == "duplicate":
            text = text[:i] + text[i:j] * rng.randint(2, 5) + text[j:]
        else:
            text = text[:i] + text[i:j].swapcase() + text[j:]
    return text


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory of ``pid`` and its children (MB, from /proc): the total, and the
    largest one process has (the service's memory ceiling is per process)."""
    total, largest = 0, 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb = int(line.split()[1])
                    total += kb
                    largest = max(largest, kb)
        except OSError:
            pass
    return total / 1024, largest / 1024


@dataclass
class Tally:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    hangs: list[dict[str, Any]] = field(default_factory=list)
    reconnects: list[dict[str, Any]] = field(default_factory=list)
    rss_max: float = 0.0
    rss_process_max: float = 0.0
    rss_samples: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def request(
    http: httpx.Client, rng: random.Random, n: int, text: str, record: dict[str, Any]
) -> httpx.Response:
    """Send input ``n``; its language and format go into ``record``."""
    lang = record["lang"] = rng.choice(LANGS)
    if n % 50 == 0:
        return http.get("/tap/async/" + quote(text[:80], safe=""))
    if n % 3 == 0:
        body = {"query": text, "lang": lang.lower(), "maxrec": 1000}
        return http.post("/api/v1/query", json=body)
    data = {"REQUEST": "doQuery", "LANG": lang, "QUERY": text, "MAXREC": "1000"}
    fmt = record["format"] = rng.choice(FORMATS)
    if fmt:
        data["FORMAT"] = fmt
    return http.post("/tap/sync", data=data)


def client_loop(
    url: str,
    inputs: list[str],
    start: int,
    step: int,
    tally: Tally,
    args: argparse.Namespace,
    stop_at: float,
) -> None:
    rng = random.Random(args.seed * 1000 + start)
    timeout = httpx.Timeout(args.hang_s, connect=10)
    http = httpx.Client(base_url=url, timeout=timeout)
    stream = None
    closing = False
    for n in range(start, len(inputs), step):
        if time.monotonic() > stop_at:
            break
        text = inputs[n]
        route = "async-id" if n % 50 == 0 else "rest" if n % 3 == 0 else "tap"
        record = {"n": n, "route": route, "text": text[:2000]}
        try:
            response = request(http, rng, n, text, record)
        except httpx.TimeoutException as exc:
            with tally.lock:
                tally.hangs.append({**record, "error": repr(exc)})
            http.close()
            http = httpx.Client(base_url=url, timeout=timeout)
            stream = None
            continue
        except httpx.TransportError as exc:
            with tally.lock:
                tally.dropped.append({**record, "error": repr(exc)})
            http.close()
            http = httpx.Client(base_url=url, timeout=timeout)
            stream = None
            continue
        finally:
            with tally.lock:
                tally.sent += 1
        current = response.extensions.get("network_stream")
        with tally.lock:
            tally.statuses[response.status_code] += 1
            tally.by_route[f"{route} {response.status_code // 100}xx"] += 1
            if response.status_code >= 500:
                tally.server_errors.append(
                    {**record, "status": response.status_code, "body": response.text[:500]}
                )
            if stream is not None and current is not stream and not closing:
                # the previous answer kept the connection open, yet this one needed a new
                # one: the server closed it (a silently dropped keep-alive connection)
                tally.reconnects.append(record)
        stream = current
        closing = response.headers.get("connection", "").lower() == "close"
    http.close()


def watch_rss(pid: int, tally: Tally, done: threading.Event) -> None:
    while not done.wait(0.5):
        mb, largest = rss_mb(pid)
        with tally.lock:
            tally.rss_max = max(tally.rss_max, mb)
            tally.rss_process_max = max(tally.rss_process_max, largest)
            tally.rss_samples.append(mb)


def make_cluster(work: Path, objects: int) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    cluster = work / "cluster"
    if not (cluster / "cluster.toml").exists():
        subprocess.run(
            [*CLI, "up", "--dir", str(cluster), "--objects", str(objects), "--no-serve"],
            check=True,
        )
    return cluster


def serve(
    cluster: Path, work: Path, processes: int, ceiling_mb: int
) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(
        os.environ,
        QSERV_CLUSTER=str(cluster),
        QSERV_SYNC_TIMEOUT_S="30",
        QSERV_MAXREC_DEFAULT="1000",
        QSERV_RESULTS_DIR=str(work / "results"),
        QSERV_HTTP_PROCESSES=str(processes),
        QSERV_SERVICE_MAX_MEMORY_MB=str(ceiling_mb),
        QSERV_RESULT_MAX_BYTES_SYNC=str(50_000_000),
        QSERV_RESULT_MAX_BYTES_REST=str(50_000_000),
        QSERV_ACCESS_LOG="false",
        # a busy shared machine (load 20+) can take more than libpq's default 2 s to
        # accept a connection: the run is about hostile input, not about that
        QSERV_WORKER_CONNECT_TIMEOUT_S="20",
    )
    log = open(work / "serve.log", "wb")  # noqa: SIM115 (open while the server runs)
    proc = subprocess.Popen(
        [*CLI, "serve", "--http-port", "0", "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = (work / "serve.log").read_text(errors="replace")
        found = re.search(r"serves .* at (http://\S+)", text)
        if found:
            url = found.group(1).rstrip("/")
            try:
                if httpx.get(f"{url}/healthz", timeout=30).status_code < 500:
                    return proc, url
            except httpx.TransportError:
                pass
        if proc.poll() is not None:
            raise SystemExit(f"qserv-py serve exited; see {work / 'serve.log'}")
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    raise SystemExit("the service did not start in 120 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2, help="service processes")
    parser.add_argument("--cluster", type=Path, help="an existing local cluster directory")
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-fuzz"))
    parser.add_argument("--objects", type=int, default=5_000)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--hang-s", type=float, default=120.0)
    parser.add_argument(
        "--rss-ceiling-mb",
        type=int,
        default=2048,
        help="the service's memory ceiling (service_max_memory_mb), checked per process",
    )
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    cluster = args.cluster or make_cluster(args.work, args.objects)
    pool = seeds()
    rng = random.Random(args.seed)
    inputs = [rng.choice(pool) if n % 20 == 0 else mutate(rng, pool) for n in range(args.inputs)]
    proc, url = serve(cluster, args.work, args.processes, args.rss_ceiling_mb)
    tally = Tally()
    done = threading.Event()
    watcher = threading.Thread(target=watch_rss, args=(proc.pid, tally, done), daemon=True)
    watcher.start()
    began = time.monotonic()
    stop_at = began + (args.max_seconds or float("inf"))
    try:
        threads = [
            threading.Thread(
                target=client_loop, args=(url, inputs, i, args.clients, tally, args, stop_at)
            )
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        last = began
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            if time.monotonic() - last > 60:
                last = time.monotonic()
                print(
                    f"  {tally.sent:,} sent, 5xx {len(tally.server_errors)}, dropped "
                    f"{len(tally.dropped)}, hangs {len(tally.hangs)}, RSS max "
                    f"{tally.rss_max:.0f} MB (one process {tally.rss_process_max:.0f} MB)",
                    flush=True,
                )
        elapsed = time.monotonic() - began
        alive = proc.poll() is None
    finally:
        done.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    with open(args.work / "fuzz-5xx.jsonl", "w") as out:
        for item in tally.server_errors + tally.dropped + tally.hangs + tally.reconnects:
            out.write(json.dumps(item) + "\n")
    report = {
        "inputs_sent": tally.sent,
        "inputs_planned": args.inputs,
        "seconds": round(elapsed, 1),
        "per_second": round(tally.sent / elapsed, 1) if elapsed else None,
        "clients": args.clients,
        "statuses": dict(sorted(tally.statuses.items())),
        "by_route": dict(sorted(tally.by_route.items())),
        "http_5xx": len(tally.server_errors),
        "dropped_connections": len(tally.dropped),
        "hangs": len(tally.hangs),
        "keep_alive_connections_closed_by_server": len(tally.reconnects),
        "service_alive_at_end": alive,
        "rss_start_mb": round(tally.rss_samples[0], 1) if tally.rss_samples else None,
        "rss_max_mb": round(tally.rss_max, 1),
        "rss_end_mb": round(tally.rss_samples[-1], 1) if tally.rss_samples else None,
        "rss_one_process_max_mb": round(tally.rss_process_max, 1),
        "rss_ceiling_mb": args.rss_ceiling_mb,
        "service_processes": args.processes,
    }
    print(json.dumps(report, indent=2))
    (args.work / "fuzz-report.json").write_text(json.dumps(report, indent=2))
    bad = tally.server_errors or tally.dropped or tally.hangs or tally.reconnects or not alive
    return 1 if bad or tally.rss_process_max > args.rss_ceiling_mb else 0


if __name__ == "__main__":
    sys.exit(main())
