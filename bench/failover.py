"""Fault-tolerance benchmark (issue 11), in one run on one fresh local cluster:

    python -m bench.failover [--objects 100000] [--chunk-rows 1000000] [--cones 600]
        [--scans 120] [--cone-radius 1.0] [--cycles 5] [--work DIR] [--parts 123]

A czar and three workers (shared_buffers 512MB), PostgreSQL's own binaries. Synthetic
dp02 Objects (``generate_release``, seed 1, Object only). Catalogs:

* ``fo``: ``--objects`` objects over the sky, every chunk on two workers (chunks of at
  most objects/48 rows); ``fo1``: the same rows, one copy of each chunk;
* ``big``: ``--chunk-rows`` objects moved into a disk of radius 1° inside one HEALPix
  order-3 pixel, loaded with ``fixed_order=3`` and one copy: a single chunk holds every
  row (its overlap partition is empty);
* ``reb``: the same rows in chunks of at most chunk-rows/12 (HEALPix order 7 here, ~65k
  rows and their overlap), every chunk on two workers.

After the loads every worker is VACUUMed and CHECKPOINTed. Then it measures:

1. **Queries while a worker dies.** A client thread runs a fixed stream of cones (r =
   ``--cone-radius`` degrees, centred on random objects, ``SELECT`` of five columns) and
   whole-catalog scans (``GROUP BY refBand`` with COUNT, AVG, SUM; one every
   cones/scans queries) on ``fo``: first on the healthy cluster (its answers are the
   reference), then the same stream again, during which the postmaster of worker2 is
   SIGKILLed while a scan runs (a quarter of the way through), and restarted with
   ``LocalCluster.start()`` once half of it is done (crash recovery); the stream goes on
   throughout, until a quarter more has run after the restart. Then the same stream on
   the healthy cluster once more (the machine's drift). p50/p99 of each kind, in all and
   in each window (worker down, during start(), after), errors, and answers that differ
   from the healthy one's (rows in any order, floats to a relative 1e-9).
   *Steady state*: ``--cycles`` times, 100 of the cones on the healthy cluster, then
   the same with worker2 killed (once this process's health view has seen it down).
   *Fail fast*: worker2 killed again, a scan and a cone of ``fo1`` whose chunks it holds
   must raise ChunksUnavailable: the time each took; ``partial=True``; after the restart
   the first scan must answer in full.
2. **Restoring replication of the 1M-row chunk** of ``big``: ``replicate(level=2)``
   (the controller: find the under-replicated chunk, copy, verify, publish; the source
   has no checksum recorded, as after a load: the copy takes it, beside the stream), then
   ``copy_chunk`` to the third worker (the first copy recorded the source's checksum, as
   ``replicate --verify`` or the loop's verification would have: the copy reads it),
   against a plain binary COPY of the same partition
   between the same two instances, into a table created in the same transaction (so,
   under ``wal_level = minimal``, without WAL, as the engine's copy): through psycopg
   (the same 256 KB relaying as the engine's copy) and through ``psql | psql`` of the
   cluster's bindir. Baselines and copies alternate. The workers log every statement of
   the copies (``log_min_duration_statement = 0`` on their database), from which the
   time of each step is summed.
3. **Rebalance** of ``reb`` after ``add_local_worker``: rows moved per second, against
   the psycopg COPY's rows per second of part 2.

Prints the numbers as Markdown for docs/benchmarks.md. The cluster is destroyed at the
end, also on failure; the releases stay in ``--work`` for the next run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

VICTIM = "worker2"
CONE = (
    "SELECT objectId, coord_ra, coord_dec, r_psfFlux, refBand FROM Object WHERE "
    "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra:.6f}, {dec:.6f}, {r})) = 1"
)
SCAN = (
    "SELECT refBand, COUNT(*) AS n, AVG(r_psfFlux) AS mean_r, SUM(coord_dec) AS s "
    "FROM Object GROUP BY refBand"
)
PATCH_ORDER = 3
PATCH_RADIUS = 1.0  # degrees
COPY_BUFFER = 1 << 18  # as qserv_py.ops.copy


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


# --- data --------------------------------------------------------------------------------


def _unit(ra: Any, dec: Any) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)


def _cap(rng: np.random.Generator, n: int, centre: np.ndarray, radius: float) -> np.ndarray:
    """``n`` points uniform in the spherical cap of ``radius`` degrees around ``centre``."""
    z = rng.uniform(math.cos(math.radians(radius)), 1.0, n)
    phi = rng.uniform(0, 2 * math.pi, n)
    s = np.sqrt(1 - z * z)
    east = np.cross([0.0, 0.0, 1.0], centre)
    east /= np.linalg.norm(east)
    north = np.cross(centre, east)
    return (
        z[:, None] * centre + (s * np.cos(phi))[:, None] * east + (s * np.sin(phi))[:, None] * north
    )


def _radec(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.degrees(np.arctan2(vec[:, 1], vec[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(vec[:, 2], -1, 1)))
    return ra, dec


def patch_centre() -> tuple[np.ndarray, int]:
    """The centroid of the order-3 pixel holding (45°, +20°), and that pixel."""
    from qserv_py.sky.healpix import pixel_of

    pixel = int(np.asarray(pixel_of(45.0, 20.0, PATCH_ORDER)).ravel()[0])
    ra, dec = _radec(_cap(np.random.default_rng(0), 400_000, _unit(45.0, 20.0), 10.0))
    inside = pixel_of(ra, dec, PATCH_ORDER) == pixel
    mean = _unit(ra[inside], dec[inside]).mean(axis=0)
    return mean / np.linalg.norm(mean), pixel


def release(work: Path, name: str, objects: int, *, patch: bool = False) -> Path:
    """A dp02 release of ``objects`` Objects (no sources), generated once into ``work``;
    with ``patch`` every object is moved into a 1° disk inside one order-3 pixel."""
    from qserv_py.loaders.generate import generate_release
    from qserv_py.sky.healpix import pixel_of

    out = work / f"release-{name}-{objects}"
    if (out / "done.json").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    counts = generate_release(out, objects, sources_per_object=0, forced_per_object=0, seed=1)
    if patch:
        centre, pixel = patch_centre()
        rng = np.random.default_rng(7)
        for path in sorted((out / "Object").glob("*.parquet")):
            table = pq.read_table(path)
            ra, dec = _radec(_cap(rng, table.num_rows, centre, PATCH_RADIUS))
            assert (pixel_of(ra, dec, PATCH_ORDER) == pixel).all()
            for column, values in (("coord_ra", ra), ("coord_dec", dec)):
                i = table.schema.get_field_index(column)
                f = table.schema.field(i)
                table = table.set_column(i, f, pa.array(values, f.type))
            pq.write_table(table, path, compression="zstd")
    (out / "done.json").write_text(json.dumps(counts))
    return out


def create_catalog(spec: Any, name: str) -> None:
    from qserv_py.cluster.catalogs import create_catalog as create
    from qserv_py.schema import default_catalog_path, parse_catalog

    text = default_catalog_path("dp02").read_text().replace("name: dp02", f"name: {name}", 1)
    create(spec, parse_catalog(text, name), text)


def load_catalog(spec: Any, name: str, rel: Path, **options: Any) -> None:
    from qserv_py.loaders.load import LoadOptions, load

    create_catalog(spec, name)
    started = time.perf_counter()
    result = load(spec, name, "Object", [rel / "Object"], LoadOptions(**options))
    print(
        f"loaded {name}: {result.rows:,} rows, {result.overlap_rows:,} overlap rows "
        f"({options}) in {time.perf_counter() - started:.1f} s",
        flush=True,
    )


# --- killing and restarting a worker -------------------------------------------------------


def kill(cluster: Any, name: str) -> float:
    """SIGKILL the postmaster of worker ``name``; when (time.perf_counter()), once it is dead."""
    from qserv_py.cluster.recovery import state

    inst = next(i for i in cluster.instances() if i.name == name)
    pid = cluster.pid(inst)
    if pid is None:
        raise SystemExit(f"{name} is not running")
    os.kill(pid, signal.SIGKILL)
    killed = time.perf_counter()
    while state(pid) not in (None, "Z", "X"):
        time.sleep(0.005)
    return killed


def restart(cluster: Any) -> float:
    """``LocalCluster.start()`` (clears the dead server's leftovers, starts it); seconds."""
    started = time.perf_counter()
    cluster.start()
    return time.perf_counter() - started


# --- part 1: queries while a worker dies ----------------------------------------------------


@dataclass
class Sample:
    kind: str
    started: float
    seconds: float
    error: str | None = None
    wrong: str | None = None


def rows_of(table: pa.Table) -> list[tuple]:
    return sorted(
        (tuple(r.values()) for r in table.to_pylist()),
        key=lambda r: tuple((v is None, v if v is not None else 0) for v in r),
    )


def difference(got: pa.Table, want: pa.Table) -> str | None:
    """Why ``got`` differs from ``want`` (rows in any order, floats to 1e-9), or None."""
    if got.column_names != want.column_names:
        return f"columns {got.column_names} vs {want.column_names}"
    a, b = rows_of(got), rows_of(want)
    if len(a) != len(b):
        return f"{len(a)} rows vs {len(b)}"
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float) and isinstance(v, float):
                if not (math.isclose(u, v, rel_tol=1e-9) or (math.isnan(u) and math.isnan(v))):
                    return f"{x} vs {y}"
            elif u != v:
                return f"{x} vs {y}"
    return None


def make_stream(client: Any, cones: int, scans: int, radius: float) -> list[tuple[str, str]]:
    """``cones`` cones on random objects with a scan after every cones/scans of them."""
    objects = client.query("SELECT coord_ra, coord_dec FROM Object")
    rng = np.random.default_rng(5)
    pick = rng.choice(objects.num_rows, cones, replace=False)
    ra = objects.column("coord_ra").to_numpy()[pick]
    dec = objects.column("coord_dec").to_numpy()[pick]
    every = max(1, cones // max(scans, 1))
    stream: list[tuple[str, str]] = []
    for i in range(cones):
        stream.append(("cone", CONE.format(ra=ra[i], dec=dec[i], r=radius)))
        if (i + 1) % every == 0 and sum(k == "scan" for k, _ in stream) < scans:
            stream.append(("scan", SCAN))
    return stream


def run_stream(
    client: Any,
    stream: list[tuple[str, str]],
    healthy: list[pa.Table] | None,
    on_start: Callable[[int], bool] | None = None,
) -> tuple[list[Sample], list[pa.Table | None]]:
    """Run ``stream`` in order (round and round while ``on_start(i)`` says go on); each
    answer is checked against ``healthy``'s."""
    go_on = on_start or (lambda i: i < len(stream))
    samples, answers = [], []
    i = 0
    while go_on(i):
        kind, text = stream[i % len(stream)]
        started = time.perf_counter()
        table, error, wrong = None, None, None
        try:
            table = client.query(text)
        except Exception as exc:  # counted, and the stream goes on
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        seconds = time.perf_counter() - started
        if table is not None and healthy is not None:
            wrong = difference(table, healthy[i % len(stream)])
        samples.append(Sample(kind, started, seconds, error, wrong))
        answers.append(table)
        i += 1
    return samples, answers


@dataclass
class FaultRun:
    samples: list[Sample]
    killed_at: float  # perf_counter
    restarting_at: float  # LocalCluster.start() called
    restarted_at: float  # LocalCluster.start() returned
    in_flight: Sample | None  # the scan running when the postmaster died

    @property
    def restart_s(self) -> float:
        return self.restarted_at - self.restarting_at

    def window(self, name: str) -> list[Sample]:
        edges = {
            "before": (-math.inf, self.killed_at),
            "down": (self.killed_at, self.restarting_at),
            "restarting": (self.restarting_at, self.restarted_at),
            "after": (self.restarted_at, math.inf),
        }
        low, high = edges[name]
        return [s for s in self.samples if low <= s.started < high]


def stream_with_kill(
    cluster: Any, client: Any, stream: list[tuple[str, str]], healthy: list[pa.Table], delay: float
) -> FaultRun:
    """The stream in a thread; the victim killed ``delay`` s into the first scan after a
    quarter of the stream, restarted once half is done; the stream goes on until a
    quarter more has run after the restart."""
    kill_at = next(i for i, (k, _) in enumerate(stream) if k == "scan" and i >= len(stream) // 4)
    restart_at = len(stream) // 2
    marks = {kill_at: threading.Event(), restart_at: threading.Event()}
    restarted = threading.Event()
    result: dict[str, Any] = {}
    after: list[int] = []

    def on_start(i: int) -> bool:
        if i in marks:
            marks[i].set()
        if restarted.is_set() and not after:
            after.append(i)
        return i < len(stream) or not after or i < after[0] + len(stream) // 4

    def body() -> None:
        try:
            result["samples"] = run_stream(client, stream, healthy, on_start)[0]
        except BaseException as exc:
            result["error"] = exc
            for event in marks.values():
                event.set()

    thread = threading.Thread(target=body, name="stream")
    thread.start()
    try:
        marks[kill_at].wait()
        time.sleep(delay)
        killed = kill(cluster, VICTIM)
        print(f"  killed {VICTIM} at query {kill_at} (+{_ms(delay)} into a scan)", flush=True)
        marks[restart_at].wait()
        restarting = time.perf_counter()
        restart(cluster)
        done = time.perf_counter()
        print(f"  restarted {VICTIM} at query {restart_at}: start() {_ms(done - restarting)}")
    finally:
        restarted.set()
        thread.join()
    if "error" in result:
        raise result["error"]
    samples: list[Sample] = result["samples"]
    flying = samples[kill_at]
    in_flight = flying if flying.started <= killed <= flying.started + flying.seconds else None
    return FaultRun(samples, killed, restarting, done, in_flight)


def _stats(samples: list[Sample], kind: str) -> tuple[float, float, float, int]:
    times = [s.seconds for s in samples if s.kind == kind]
    return _p(times, 50), _p(times, 99), max(times) if times else math.nan, len(times)


def latency_report(healthy: list[Sample], fault: FaultRun, again: list[Sample]) -> list[str]:
    windows = [
        ("before", "before the kill"),
        ("down", "worker down"),
        ("restarting", "during start()"),
        ("after", "after"),
    ]
    lines = [
        "| query | healthy p50 / p99 | with the kill: p50 / p99 (max) | ratio p50 / p99 |"
        + "".join(f" {title}: n, p50 / p99 |" for _, title in windows)
        + " healthy again p50 / p99 |",
        "|---|---:|---:|---:|" + "---:|" * len(windows) + "---:|",
    ]
    for kind in ("cone", "scan"):
        h50, h99, _, n = _stats(healthy, kind)
        f50, f99, fmax, fn = _stats(fault.samples, kind)
        g50, g99, _, _ = _stats(again, kind)
        cells = []
        for name, _ in windows:
            w50, w99, _, wn = _stats(fault.window(name), kind)
            cells.append(f" {wn}, {_ms(w50)} / {_ms(w99)} ({w50 / h50:.2f}×) |")
        lines.append(
            f"| {kind} (×{n}; ×{fn}) | {_ms(h50)} / {_ms(h99)} | {_ms(f50)} / {_ms(f99)} "
            f"({_ms(fmax)}) | **{f50 / h50:.2f}× / {f99 / h99:.2f}×** |"
            + "".join(cells)
            + f" {_ms(g50)} / {_ms(g99)} |"
        )
    errors = [s for s in fault.samples + again if s.error]
    wrong = [s for s in fault.samples + again if s.wrong]
    lines.append("")
    for kind in ("cone", "scan"):
        worst = max((s for s in fault.samples if s.kind == kind), key=lambda s: s.seconds)
        where = next(
            (n for n in ("before", "down", "restarting", "after") if worst in fault.window(n)),
            "?",
        )
        lines.append(
            f"slowest {kind} with the kill: {_ms(worst.seconds)}, started "
            f"{worst.started - fault.killed_at:+.2f} s from the kill (window: {where})"
        )
    lines.append(
        f"errors: {len(errors)}; wrong answers: {len(wrong)} (of {len(fault.samples)} queries "
        f"with the kill and {len(again)} after); {VICTIM} was down "
        f"{_ms(fault.restarting_at - fault.killed_at)} before start() was called, and "
        f"start() took {_ms(fault.restart_s)}"
    )
    if fault.in_flight is not None:
        lines.append(
            f"the scan in flight at the kill took {_ms(fault.in_flight.seconds)} "
            f"(killed {_ms(fault.killed_at - fault.in_flight.started)} after it started)"
        )
    else:
        lines.append("(the scan meant to be hit had finished before the kill)")
    for s in (errors + wrong)[:10]:
        lines.append(f"  {s.kind}: {s.error or s.wrong}")
    return lines


def fail_fast(cluster: Any, spec: Any, radius: float) -> list[str]:
    """Replication 1 (catalog fo1): queries whose chunks are on the killed worker."""
    from qserv_py.client import Client
    from qserv_py.errors import ChunksUnavailable
    from qserv_py.ops.health import health

    client = Client(spec, "fo1")
    full = client.query(SCAN)
    objects = client.query("SELECT coord_ra, coord_dec FROM Object")
    cone = None
    ras = objects.column("coord_ra").to_numpy()[::97]
    decs = objects.column("coord_dec").to_numpy()[::97]
    for ra, dec in zip(ras, decs, strict=True):
        text = CONE.format(ra=ra, dec=dec, r=radius)
        if list(client.plan(text, oracle=False).chunks) == [VICTIM]:
            cone = text
            break
    assert cone is not None, f"no cone of fo1 on {VICTIM} alone"
    cone_rows = client.query(cone).num_rows
    health(spec).check()
    lines = []
    kill(cluster, VICTIM)
    try:
        for name, text, partial in (
            ("scan, first query after the kill", SCAN, False),
            (f"cone on {VICTIM}'s chunk", cone, False),
            ("scan again", SCAN, False),
            ("scan, partial=True", SCAN, True),
        ):
            started = time.perf_counter()
            try:
                table = client.query(text, partial=partial)
                meta = table.schema.metadata or {}
                what = (
                    f"answered: {table.num_rows} rows, incomplete="
                    f"{meta.get(b'incomplete', b'?').decode()}, missing chunks "
                    f"{len(meta.get(b'missing_chunks', b'').split(b',')) if partial else '-'}"
                )
            except ChunksUnavailable as exc:
                what = f"ChunksUnavailable ({len(exc.chunks)} chunks, workers {exc.workers})"
            except Exception as exc:
                what = f"**{type(exc).__name__}**: {exc}"
            seconds = time.perf_counter() - started
            lines.append(f"| {name} | {_ms(seconds)} | {what} |")
    finally:
        restart_s = restart(cluster)
    started = time.perf_counter()
    try:
        got = client.query(SCAN)
        why = difference(got, full)
        what = "the full answer" if why is None else f"**wrong**: {why}"
    except Exception as exc:
        what = f"**{type(exc).__name__}**: {exc}"
    lines.append(
        f"| scan, first query after the restart (start() {_ms(restart_s)}) |"
        f" {_ms(time.perf_counter() - started)} | {what} |"
    )
    got = client.query(cone)
    lines.append(f"| cone after the restart | – | {got.num_rows} rows (healthy: {cone_rows}) |")
    return ["| fo1 (replication 1), worker2 killed | time | outcome |", "|---|---:|---|", *lines]


def part1(cluster: Any, spec: Any, args: argparse.Namespace) -> list[str]:
    from qserv_py.client import Client

    client = Client(spec, "fo")
    stream = make_stream(client, args.cones, args.scans, args.cone_radius)
    for _kind, text in stream[:8]:  # warm-up: plan cache, pools
        client.query(text)
    print(f"part 1: a stream of {len(stream)} queries", flush=True)
    healthy, maybe = run_stream(client, stream, None)
    answers = [a for a in maybe if a is not None]
    assert len(answers) == len(stream), [s.error for s in healthy if s.error]
    rows = [a.num_rows for a, (k, _) in zip(answers, stream, strict=True) if k == "cone"]
    print(
        f"  healthy: cones p50 {_ms(_stats(healthy, 'cone')[0])} (rows {min(rows)}–"
        f"{max(rows)}, median {statistics.median(rows):g}), scans p50 "
        f"{_ms(_stats(healthy, 'scan')[0])}",
        flush=True,
    )
    delay = 0.5 * _stats(healthy, "scan")[0]
    fault = stream_with_kill(cluster, client, stream, answers, delay)
    again, _ = run_stream(client, stream, answers)
    lines = latency_report(healthy, fault, again)
    lines += ["", *down_against_up(cluster, client, stream, answers, args.cycles)]
    lines += ["", *fail_fast(cluster, spec, args.cone_radius)]
    return lines


def down_against_up(
    cluster: Any,
    client: Any,
    stream: list[tuple[str, str]],
    answers: list[pa.Table],
    cycles: int,
    block: int = 100,
) -> list[str]:
    """The same ``block`` cones, alternately on the healthy cluster and with the victim
    killed (after the process's view has seen it down: the steady state of a lost
    worker), ``cycles`` times: p50/p99 of each side and their ratio."""
    from qserv_py.ops.health import WorkerState, health

    cones = [(i, text) for i, (kind, text) in enumerate(stream) if kind == "cone"][:block]
    victims = {i for i, text in cones if VICTIM in client.plan(text, oracle=False).chunks}
    times: dict[str, list[float]] = {"up": [], "down": []}
    by_group: dict[tuple[str, bool], list[float]] = {}
    wrong = errors = 0
    for _ in range(cycles):
        for side in ("up", "down"):
            if side == "down":
                kill(cluster, VICTIM)
                seen = health(client.spec).check([VICTIM])
            else:
                seen = health(client.spec).check([VICTIM])
            want = WorkerState.DOWN if side == "down" else WorkerState.UP
            assert seen[VICTIM] is want, (side, seen)
            for i, text in cones:
                started = time.perf_counter()
                try:
                    table = client.query(text)
                except Exception:
                    errors += 1
                    continue
                seconds = time.perf_counter() - started
                times[side].append(seconds)
                by_group.setdefault((side, i in victims), []).append(seconds)
                wrong += difference(table, answers[i]) is not None
        restart(cluster)
    up50, up99 = _p(times["up"], 50), _p(times["up"], 99)
    dn50, dn99 = _p(times["down"], 50), _p(times["down"], 99)
    return [
        f"steady state, {cycles} alternations of {len(cones)} cones healthy / with {VICTIM} "
        f"killed (seen down): p50 {_ms(up50)} / {_ms(dn50)} (**{dn50 / up50:.2f}×**), p99 "
        f"{_ms(up99)} / {_ms(dn99)} ({dn99 / up99:.2f}×); errors {errors}, wrong answers {wrong}",
        f"- the {len(victims)} cones planned on {VICTIM} (rerouted when it is down): p50 "
        f"{_ms(_p(by_group.get(('up', True), []), 50))} / "
        f"{_ms(_p(by_group.get(('down', True), []), 50))}; the {len(cones) - len(victims)} "
        f"others: {_ms(_p(by_group.get(('up', False), []), 50))} / "
        f"{_ms(_p(by_group.get(('down', False), []), 50))}",
    ]


# --- part 2: restoring replication of a 1M-row chunk ----------------------------------------


@dataclass
class BigChunk:
    chunk: int
    rows: int
    source: str
    schema: str
    parent: str
    partition: str
    bytes: int
    others: list[str] = field(default_factory=list)


def big_chunk(spec: Any) -> BigChunk:
    from qserv_py.cluster.db import connect
    from qserv_py.ops.chunks import catalog_model
    from qserv_py.ops.copy import chunk_parts

    with connect(spec.czar, autocommit=True) as czar:
        catalog = catalog_model(czar, "big")
        stats = czar.execute(
            "SELECT chunk_id, rows, overlap_rows FROM qserv_meta.chunk_stats"
            " WHERE catalog = 'big' AND rows + overlap_rows > 0 ORDER BY rows DESC"
        ).fetchall()
        chunk, rows = int(stats[0][0]), int(stats[0][1])
        print(f"  big: chunks with rows {[(int(c), int(r), int(o)) for c, r, o in stats]}")
        (holder,) = [
            r[0]
            for r in czar.execute(
                "SELECT worker FROM qserv_meta.placement WHERE catalog = 'big' AND chunk_id = %s",
                (chunk,),
            )
        ]
    part = next(p for p in chunk_parts(catalog, chunk) if not p.overlap)
    with connect(spec.worker(holder), autocommit=True) as conn:
        size = conn.execute(
            "SELECT pg_table_size(%s)", (f"{catalog.sql_name}.{part.partition}",)
        ).fetchone()[0]  # type: ignore[index]
    others = [w.name for w in spec.workers if w.name != holder]
    return BigChunk(
        chunk, rows, holder, catalog.sql_name, part.parent, part.partition, int(size), others
    )


def cluster_cpu(cluster: Any) -> float:
    """CPU seconds used so far by the cluster's servers (each postmaster, its live
    processes, and those that have ended: the postmaster reaped them) and by this process
    and its children (the relay, psql): the difference across a copy is its CPU, which
    the machine's swings in speed do not change as they change its wall time."""
    postmasters = {cluster.pid(i) for i in cluster.instances()} - {None}
    deadline = time.monotonic() + 5
    while True:
        ticks, exiting = 0, False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(entry.name) in postmasters:
                ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            elif int(fields[1]) in postmasters:
                ticks += int(fields[11]) + int(fields[12])
                exiting |= fields[0] in ("Z", "X")  # its time moves to the postmaster's
        if not exiting or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    own = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return ticks / os.sysconf("SC_CLK_TCK") + sum(r.ru_utime + r.ru_stime for r in own)


def copy_psycopg(spec: Any, big: BigChunk, target: str) -> float:
    """Plain binary COPY of the partition into a new table of ``target`` (psycopg)."""
    from qserv_py.cluster.db import connect

    name = f"public.bench_{big.partition}"
    with (
        connect(spec.worker(big.source), autocommit=True) as src,
        connect(spec.worker(target), autocommit=True) as tgt,
    ):
        started = time.perf_counter()
        with tgt.transaction():
            tgt.execute(f"CREATE TABLE {name} (LIKE {big.schema}.{big.parent})")
            with tgt.cursor().copy(f"COPY {name} FROM STDIN (FORMAT BINARY)") as into:
                buffer = bytearray()
                out_sql = (
                    f"COPY (SELECT * FROM {big.schema}.{big.partition}) TO STDOUT (FORMAT BINARY)"
                )
                with src.cursor() as cur, cur.copy(out_sql) as out:
                    for data in out:
                        buffer += data
                        if len(buffer) >= COPY_BUFFER:
                            into.write(buffer)
                            buffer.clear()
                into.write(buffer)
        seconds = time.perf_counter() - started
        got = tgt.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
        tgt.execute(f"DROP TABLE {name}")
    assert got == big.rows, (got, big.rows)
    return seconds


def read_source(spec: Any, big: BigChunk, *, ordered: bool) -> tuple[float, str]:
    """The source's executor time for the rows of the partition (EXPLAIN ANALYZE, no
    transfer): the engine's copy reads them ``ORDER BY spatial_index``, the baseline as
    stored; (seconds, the plan's top node)."""
    from qserv_py.cluster.db import connect

    order = " ORDER BY spatial_index" if ordered else ""
    with connect(spec.worker(big.source), autocommit=True) as src:
        plan = src.execute(
            "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) "
            f"SELECT * FROM {big.schema}.{big.partition}{order}"
        ).fetchone()[0][0]  # type: ignore[index]
    return float(plan["Execution Time"]) / 1e3, str(plan["Plan"]["Node Type"])


def copy_psql(spec: Any, bindir: Path, big: BigChunk, target: str) -> float:
    """The same through ``psql -c 'COPY … TO STDOUT' | psql -1 -c 'CREATE …' -c 'COPY …'``."""
    from qserv_py.cluster.db import connect

    psql = shlex.quote(str(bindir / "psql"))
    name = f"public.bench_{big.partition}"
    out = f"COPY (SELECT * FROM {big.schema}.{big.partition}) TO STDOUT (FORMAT BINARY)"
    create = f"CREATE TABLE {name} (LIKE {big.schema}.{big.parent})"
    into = f"COPY {name} FROM STDIN (FORMAT BINARY)"
    cmd = (
        f"{psql} -X -q {shlex.quote(spec.worker(big.source).dsn)} -c {shlex.quote(out)} | "
        f"{psql} -X -q -v ON_ERROR_STOP=1 -1 {shlex.quote(spec.worker(target).dsn)}"
        f" -c {shlex.quote(create)} -c {shlex.quote(into)}"
    )
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    with connect(spec.worker(target), autocommit=True) as tgt:
        got = tgt.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
        tgt.execute(f"DROP TABLE {name}")
    assert got == big.rows, (got, big.rows)
    return seconds


_DURATION = re.compile(
    r"^(\S+ \S+) UTC \[(\d+)\] \S+ LOG:  duration: ([\d.]+) ms  "
    r"(?:statement|execute [^:]*): (.*)"
)


def _step(statement: str) -> str | None:
    s = statement.strip()
    rules = (
        (r"^COPY \(SELECT .* ORDER BY", "source: COPY … ORDER BY spatial_index TO STDOUT"),
        (r"^COPY .* FROM STDIN", "target: COPY … FROM STDIN (FREEZE)"),
        (r"^COMMIT$", "COMMIT"),
        (r"^CREATE TABLE", "target: CREATE TABLE"),
        (r"^CREATE (UNIQUE )?INDEX", "target: CREATE INDEX"),
        (r"^ANALYZE", "target: ANALYZE"),
        (r"hash_record_extended", "checksum (count + hash of every row)"),
        (r"^(PREPARE TRANSACTION|COMMIT PREPARED)", "publish: 2PC prepare/commit"),
        (r"^ALTER TABLE .* DETACH PARTITION", "drop: DETACH PARTITION (CONCURRENTLY)"),
        (r"^DROP TABLE", "drop: DROP TABLE"),
        (r"^ALTER (TABLE|INDEX)", "publish: rename, ATTACH PARTITION"),
    )
    for pattern, name in rules:
        if re.search(pattern, s, re.S):
            return name
    return None


@dataclass
class Step:
    seconds: float = 0.0  # summed over its statements (sessions may overlap)
    first: float = math.inf  # its first statement's start, epoch seconds
    last: float = -math.inf  # its last statement's end


def log_steps(cluster: Any, offsets: dict[str, int]) -> dict[tuple[str, str], Step]:
    """Per (worker, step), the statements logged since ``offsets``: their summed time and
    the span from the first one's start to the last one's end."""
    from datetime import UTC, datetime

    found: dict[tuple[str, str], Step] = {}
    for inst in cluster.instances():
        if inst.name not in offsets:
            continue
        with cluster.logfile(inst).open("rb") as f:
            f.seek(offsets[inst.name])
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            m = _DURATION.search(line)
            if m is None:
                continue
            step = _step(m.group(4))
            if step is None:
                continue
            end = datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC).timestamp()
            seconds = float(m.group(3)) / 1e3
            got = found.setdefault((inst.name, step), Step())
            got.seconds += seconds
            got.first = min(got.first, end - seconds)
            got.last = max(got.last, end)
    return found


def step_lines(steps: dict[tuple[str, str], Step]) -> list[str]:
    if not steps:
        return ["- (nothing logged)"]
    zero = min(s.first for s in steps.values())
    lines = []
    for (worker, step), got in sorted(steps.items(), key=lambda kv: kv[1].first):
        lines.append(
            f"- {worker} {step}: {got.seconds:.2f} s (from {got.first - zero:.2f} s to "
            f"{got.last - zero:.2f} s)"
        )
    return lines


def _offsets(cluster: Any) -> dict[str, int]:
    return {
        i.name: cluster.logfile(i).stat().st_size for i in cluster.instances() if i.role == "worker"
    }


def _log_statements(spec: Any, on: bool) -> None:
    from qserv_py.cluster.db import connect

    for worker in spec.workers:
        with connect(worker, autocommit=True) as conn:
            dbname = conn.info.dbname
            value = (
                "SET log_min_duration_statement = 0" if on else "RESET log_min_duration_statement"
            )
            conn.execute(f'ALTER DATABASE "{dbname}" {value}')


def drop_replica(spec: Any, big: BigChunk, worker: str) -> None:
    """Forget ``worker``'s copy of the big chunk (czar placement first, then its tables):
    the chunk is under-replicated again, for the next restore."""
    from qserv_py.cluster.db import connect
    from qserv_py.ops.chunks import catalog_model
    from qserv_py.ops.journal import drop_partitions

    with connect(spec.czar, autocommit=True) as czar:
        czar.execute(
            "DELETE FROM qserv_meta.placement WHERE catalog = 'big' AND chunk_id = %s"
            " AND worker = %s",
            (big.chunk, worker),
        )
        catalog = catalog_model(czar, "big")
    drop_partitions(spec.worker(worker), catalog, big.chunk)


def forget_checksums(spec: Any, worker: str) -> None:
    from qserv_py.cluster.db import connect

    with connect(spec.worker(worker), autocommit=True) as conn:
        conn.execute("DELETE FROM qserv.checksums")


def rounds(
    cluster: Any, spec: Any, big: BigChunk, target: str, n: int
) -> list[tuple[str, float, float, float]]:
    """``n`` rounds, each: a psycopg COPY to ``target``, the restore of ``target``'s copy
    with the source's checksum not recorded (as after a load), a COPY again, the restore
    with it recorded (as after ``replicate --verify``); each restore against the mean of
    the two COPYs beside it: (kind, seconds to the publish, wall ratio, CPU ratio)."""
    from qserv_py.ops.replicate import replicate

    def timed(fn: Callable[[], float]) -> tuple[float, float]:
        cpu = cluster_cpu(cluster)
        seconds = fn()
        return seconds, cluster_cpu(cluster) - cpu

    found: list[tuple[str, float, float, float]] = []
    drop_replica(spec, big, target)
    before = timed(lambda: copy_psycopg(spec, big, target))
    for i in range(n):
        for kind in ("not recorded", "recorded"):
            if kind == "not recorded":
                for worker in spec.workers:
                    forget_checksums(spec, worker.name)

            def restore() -> float:
                started = time.perf_counter()
                report = replicate(spec, catalog="big", level=3)  # the third copy, on target
                (done,) = report.copies
                assert done.target == target, done
                # replication is restored at the publish; the statistics follow
                return time.perf_counter() - started - (done.seconds - done.published_s)

            restored, cpu = timed(restore)  # (the CPU includes the statistics: ANALYZE)
            after = timed(lambda: copy_psycopg(spec, big, target))
            ratio = restored / ((before[0] + after[0]) / 2)
            cpu_ratio = cpu / ((before[1] + after[1]) / 2)
            found.append((kind, restored, ratio, cpu_ratio))
            print(
                f"  round {i + 1}, source checksum {kind}: {_ms(restored)},"
                f" {ratio:.2f}x the COPYs beside it ({_ms(before[0])}, {_ms(after[0])});"
                f" CPU {cpu:.1f} s, {cpu_ratio:.2f}x theirs",
                flush=True,
            )
            before = after
            drop_replica(spec, big, target)
    return found


def part2(cluster: Any, spec: Any, rounds_n: int = 0) -> tuple[list[str], float]:
    from qserv_py.ops.chunks import copy_chunk
    from qserv_py.ops.replicate import replicate

    big = big_chunk(spec)
    first = big.others[0]  # the baselines' first target
    print(
        f"part 2: chunk {big.chunk} of big, {big.rows:,} rows, {big.bytes / 2**20:.0f} MiB, "
        f"on {big.source}",
        flush=True,
    )
    base: list[float] = []
    pipe: list[float] = []
    ours: list[tuple[str, float, Any, dict]] = []

    reads: dict[bool, list[float]] = {False: [], True: []}
    nodes: dict[bool, str] = {}

    cpu: dict[str, list[float]] = {"base": [], "pipe": []}

    def cpu_of(kind: str, fn: Callable[[], float]) -> float:
        before = cluster_cpu(cluster)
        seconds = fn()
        cpu[kind].append(cluster_cpu(cluster) - before)
        return seconds

    def baselines(target: str) -> None:
        base.append(cpu_of("base", lambda: copy_psycopg(spec, big, target)))
        pipe.append(cpu_of("pipe", lambda: copy_psql(spec, cluster.bindir, big, target)))
        for ordered in (False, True):
            seconds, nodes[ordered] = read_source(spec, big, ordered=ordered)
            reads[ordered].append(seconds)
        print(
            f"  baseline to {target}: psycopg {_ms(base[-1])}, psql|psql {_ms(pipe[-1])};"
            f" the source's executor: {_ms(reads[False][-1])}, ORDER BY spatial_index"
            f" {_ms(reads[True][-1])} ({nodes[True]})",
            flush=True,
        )

    _log_statements(spec, True)
    try:
        baselines(first)
        offsets = _offsets(cluster)
        cpu_started = cluster_cpu(cluster)
        started = time.perf_counter()
        report = replicate(spec, catalog="big", level=2)
        seconds = time.perf_counter() - started
        cpu["replicate(level=2)"] = [cluster_cpu(cluster) - cpu_started]
        assert report.healthy and len(report.copies) == 1, report
        ours.append(("replicate(level=2)", seconds, report.copies[0], log_steps(cluster, offsets)))
        first = report.copies[0].target  # the controller's choice (the fewest rows)
        (second,) = [w for w in big.others if w != first]
        print(
            f"  replicate: {_ms(seconds)} ({report.copies[0].rows:,} rows to {first})", flush=True
        )
        baselines(second)
        offsets = _offsets(cluster)
        cpu_started = cluster_cpu(cluster)
        started = time.perf_counter()
        copied = copy_chunk(spec, "big", big.chunk, big.source, second)
        seconds = time.perf_counter() - started
        cpu["copy_chunk"] = [cluster_cpu(cluster) - cpu_started]
        assert copied.copied
        ours.append(("copy_chunk", seconds, copied, log_steps(cluster, offsets)))
        print(f"  copy_chunk to {second}: {_ms(seconds)}", flush=True)
        baselines(first)
    finally:
        _log_statements(spec, False)
    paired = rounds(cluster, spec, big, second, rounds_n)
    b = statistics.mean(base)
    lines = [
        f"chunk {big.chunk} of catalog big: {big.rows:,} director rows (no overlap rows), "
        f"{big.bytes / 2**20:.0f} MiB, from {big.source}",
        "",
        "| copy | seconds | rows/s | ratio to psycopg COPY | ratio to psql pipe |",
        "|---|---:|---:|---:|---:|",
        f"| baseline: binary COPY via psycopg (×{len(base)}) | "
        f"{' / '.join(f'{x:.2f}' for x in base)} | {big.rows / b:,.0f} | 1.00× | – |",
        f"| baseline: psql \\| psql (×{len(pipe)}) | {' / '.join(f'{x:.2f}' for x in pipe)} |"
        f" {big.rows / statistics.mean(pipe):,.0f} | {statistics.mean(pipe) / b:.2f}× | 1.00× |",
    ]
    for name, seconds, rep, _ in ours:
        # replication is restored at the publish; the statistics follow (rep.seconds)
        restored = seconds - (rep.seconds - rep.published_s)
        lines.append(
            f"| {name}: replication restored (published) | {restored:.2f} |"
            f" {big.rows / restored:,.0f} | **{restored / b:.2f}×** |"
            f" {restored / statistics.mean(pipe):.2f}× |"
        )
        lines.append(
            f"| {name}: and analysed (returned) | {seconds:.2f} | {big.rows / seconds:,.0f} |"
            f" {seconds / b:.2f}× | {seconds / statistics.mean(pipe):.2f}× |"
        )
    base_cpu = statistics.mean(cpu["base"])
    lines += [
        "",
        "CPU seconds of each (the servers' processes, the relay and psql; "
        "`bench.failover.cluster_cpu`), and the ratio to the psycopg COPY's mean:",
        "",
        *(
            f"- {kind}: {' / '.join(f'{x:.2f}' for x in values)} CPU-s"
            f" ({statistics.mean(values) / base_cpu:.2f}×)"
            for kind, values in cpu.items()
        ),
        "",
        f"the source's executor reading the partition (EXPLAIN ANALYZE): as stored "
        f"({nodes[False]}) {' / '.join(f'{x:.2f}' for x in reads[False])} s, ORDER BY "
        f"spatial_index ({nodes[True]}) {' / '.join(f'{x:.2f}' for x in reads[True])} s",
    ]
    if paired:
        lines += [
            "",
            f"{rounds_n} rounds, each: a psycopg COPY, a restore (`replicate`) of the chunk's copy"
            f" on {second} with the source's checksum not recorded, a COPY, a restore with it"
            " recorded; each restore to its publish against the mean of the two COPYs beside it:",
            "",
            "| source's checksum | restores (s) | ratios | median ratio | CPU ratios |"
            " median CPU ratio |",
            "|---|---|---|---:|---|---:|",
        ]
        for kind in ("not recorded", "recorded"):
            mine = [(sec, r, c) for k, sec, r, c in paired if k == kind]
            lines.append(
                f"| {kind} | {' / '.join(f'{sec:.2f}' for sec, _, _ in mine)} |"
                f" {' / '.join(f'{r:.2f}×' for _, r, _ in mine)} |"
                f" **{statistics.median(r for _, r, _ in mine):.2f}×** |"
                f" {' / '.join(f'{c:.2f}×' for _, _, c in mine)} |"
                f" {statistics.median(c for _, _, c in mine):.2f}× |"
            )
    for name, _seconds, _rep, steps in ours:
        lines += [
            "",
            f"where the time of {name} goes (statements in the workers' logs: summed time, "
            "and span from the first statement's start):",
            *step_lines(steps),
        ]
    return lines, big.rows / b


# --- part 3: rebalance ----------------------------------------------------------------------


def part3(cluster: Any, settings: Any, baseline_rows_s: float) -> list[str]:
    from qserv_py.cluster.db import connect
    from qserv_py.ops.rebalance import rebalance
    from qserv_py.ops.replicate import worker_rows
    from qserv_py.ops.workers import add_local_worker

    started = time.perf_counter()
    info = add_local_worker(cluster, settings)
    added = time.perf_counter() - started
    spec = cluster.spec()
    print(f"part 3: added {info.name} in {_ms(added)}; rebalancing reb", flush=True)
    _log_statements(spec, True)
    offsets = _offsets(cluster)
    try:
        started = time.perf_counter()
        report = rebalance(spec, catalog="reb")
        seconds = time.perf_counter() - started
    finally:
        _log_statements(spec, False)
    steps: dict[str, float] = {}
    for (_worker, step), got in log_steps(cluster, offsets).items():
        steps[step] = steps.get(step, 0.0) + got.seconds
    with connect(spec.czar, autocommit=True) as czar:
        after = worker_rows(czar, "reb")
    moving = sum(m.seconds for m in report.moves)
    rows = report.rows
    mean = statistics.mean(after.values())
    spread = max(abs(v - mean) / mean for v in after.values())
    lines = [
        f"add_local_worker ({info.name}): {_ms(added)}",
        "",
        f"rebalance of reb: {len(report.moves)} moves, {rows:,} rows copied (director and "
        f"overlap partitions), {seconds:.1f} s: **{rows / seconds:,.0f} rows/s**, "
        f"{rows / seconds / baseline_rows_s:.2f}× the psycopg COPY's {baseline_rows_s:,.0f} "
        f"rows/s (its time ratio {baseline_rows_s / (rows / seconds):.2f}×)",
        f"- copy + verify + publish of the moves: {moving:.1f} s ({rows / moving:,.0f} rows/s); "
        f"the rest ({seconds - moving:.1f} s): planning, waiting for queries planned before "
        f"(grace), dropping the old copies",
        f"- failed moves {len(report.failed)}, old copies not yet dropped "
        f"{report.pending_drops}; rows per worker after: {dict(sorted(after.items()))} "
        f"(max {spread:.1%} from the mean)",
    ]
    lines.append(
        "- the workers' statements, summed over all moves and workers (sessions overlap): "
        + "; ".join(f"{k} {v:.2f} s" for k, v in sorted(steps.items(), key=lambda kv: -kv[1]))
    )
    if report.moves:
        each = sorted(m.seconds for m in report.moves)
        sizes = [m.rows for m in report.moves]
        lines.append(
            f"- each move (copy + verify + publish) of {min(sizes):,}–{max(sizes):,} rows took "
            f"{each[0]:.2f}–{each[-1]:.2f} s (median {statistics.median(each):.2f} s); the "
            f"baseline COPY would take {statistics.median(sizes) / baseline_rows_s:.2f} s for "
            "the median move's rows"
        )
    return lines


def settle(spec: Any) -> None:
    """VACUUM (ANALYZE) and CHECKPOINT every worker after the loads: autovacuum does not
    then run during the measurements, and a killed worker's crash recovery replays only
    what happened since (not the loads)."""
    from qserv_py.cluster.db import connect, on_each

    def one(worker: Any) -> None:
        with connect(worker, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")
            conn.execute("CHECKPOINT")

    started = time.perf_counter()
    on_each(list(spec.workers), one)
    print(f"VACUUM (ANALYZE), CHECKPOINT: {time.perf_counter() - started:.1f} s", flush=True)


# --- main ------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=100_000, help="objects of fo and fo1")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows of big's chunk")
    parser.add_argument("--cones", type=int, default=600, help="cones in each stream")
    parser.add_argument("--scans", type=int, default=120, help="scans in each stream")
    parser.add_argument("--cone-radius", type=float, default=1.0, help="degrees")
    parser.add_argument(
        "--cycles", type=int, default=5, help="healthy / worker-down alternations of cones"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-failover"))
    parser.add_argument(
        "--parts", default="123", help="which parts to run (part 3 needs part 2's baseline)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="paired COPY / restore rounds of part 2"
    )
    args = parser.parse_args()

    import qserv_py.client
    import qserv_py.ops.chunks
    import qserv_py.ops.copy
    import qserv_py.ops.health
    import qserv_py.ops.rebalance
    import qserv_py.ops.replicate
    import qserv_py.ops.workers  # noqa: F401  (all now: the code measured is the code at start)
    from qserv_py.cluster.local import LocalCluster
    from qserv_py.config import load_settings
    from qserv_py.exec.dispatch import close_pools
    from qserv_py.loaders import generate, load, publish  # noqa: F401

    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)  # the servers run as another user
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip() or os.environ.get("QSERV_BENCH_CODE", f"{repo} (not a git checkout)")
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--short", "--", "qserv_py", "loaders", "sql"],
        capture_output=True,
        text=True,
    ).stdout.split()
    print(f"code: {head[:100]}; uncommitted changes in: {', '.join(dirty[1::2]) or 'none'}")
    print(f"machine: {machine()}")
    total = time.perf_counter()
    sky = release(args.work, "sky", args.objects)
    patch = release(args.work, "patch", args.chunk_rows, patch=True)
    cluster_dir = args.work / "cluster"
    cluster = LocalCluster(cluster_dir)
    if cluster.exists():
        cluster.destroy()
    settings = load_settings({"cluster": cluster_dir, "shared_buffers": "512MB", "workers": 3})
    out: list[str] = [f"machine: {machine()}", f"code: {head[:100]}"]
    try:
        started = time.perf_counter()
        cluster.init(settings)
        spec = cluster.spec()
        print(f"cluster init: {time.perf_counter() - started:.1f} s", flush=True)
        per_chunk = max(1000, args.objects // 48)
        if "1" in args.parts:
            load_catalog(spec, "fo", sky, replication=2, max_rows_per_chunk=per_chunk)
            load_catalog(spec, "fo1", sky, replication=1, max_rows_per_chunk=per_chunk)
        if "2" in args.parts:
            load_catalog(spec, "big", patch, replication=1, fixed_order=PATCH_ORDER)
        if "3" in args.parts:
            load_catalog(
                spec, "reb", patch, replication=2, max_rows_per_chunk=args.chunk_rows // 12
            )
        settle(spec)
        if "1" in args.parts:
            out += ["", "## 1. queries while a worker is killed", ""]
            out += part1(cluster, spec, args)
            print("\n".join(out[-30:]), flush=True)
        baseline = None
        if "2" in args.parts:
            lines, baseline = part2(cluster, spec, args.rounds)
            out += ["", "## 2. restoring replication of a 1M-row chunk", "", *lines]
            print("\n".join(lines), flush=True)
        if "3" in args.parts and baseline is not None:
            lines = part3(cluster, settings, baseline)
            out += ["", "## 3. rebalance after adding a worker", "", *lines]
    finally:
        close_pools()
        cluster.destroy()
    print("\n" + "\n".join(out))
    print(f"\ntotal {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
