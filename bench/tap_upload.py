"""TAP upload benchmark: a cross-match through pyvo with a VOTable upload against the same
cross-match through the Python API, on one cluster in one run.

    python bench/tap_upload.py [--objects 500000] [--targets 100000] [--big-targets 1000000]
                               [--repeat 3] [--work DIR]

Set-up (``bench/tap.py``'s): the release of ``bench/load.py`` if it is there, else one
generated into ``--work`` (Object only); a fresh local cluster (a czar, two workers);
``qserv-py load dp02 Object``; ``qserv-py serve --processes 2`` in a subprocess.

Measured, for ``--targets`` targets (70 % within 0.9 r of an object, 30 % anywhere;
``bench.tap.xmatch_targets``) at r = ``--xmatch-arcsec``, alternating the sides after a
warm-up run, medians of ``--repeat`` runs:

- **Python API**: ``client.query(text, uploads={"t": table})`` (Arrow in, Arrow out);
- **pyvo**: ``TAPService.run_sync(text, uploads={"t": astropy_table})`` end to end: pyvo
  writes the table as VOTable TABLEDATA (astropy), posts it, and parses the VOTable
  answer (astropy) into a table;
- its parts: pyvo's writing of the upload (client side), the request alone (``POST
  /tap/sync`` of that VOTable, the answer received, not parsed: the service's share),
  and the parsing of the answer (client side);
- the service's reading of the upload in this process: ``read_table`` (TABLEDATA
  decoded in C, api/upload_votable.py) against astropy's parse of the same XML (what
  the service did before).

Then ``--big-targets`` targets through pyvo (a VOTable of ~110 MB of XML for 1M): whether
the service accepts it (the decoded table is within ``upload_max_bytes``) and its time,
with the Python API's time for the same targets. Printed as markdown (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import io
import signal
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.tap import XMATCH, setup, start_server, xmatch_targets

TARGET = 1.5


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def timed(
    sides: dict[str, Callable[[], Any]], repeat: int, warm_up: bool = True
) -> tuple[dict[str, float], dict]:
    """Median seconds of each side over ``repeat`` runs (after one warm-up run), the
    sides alternating in order; and each side's last result."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    results: dict[str, Any] = {}
    for run in range(repeat + warm_up):
        for name in list(sides) if run % 2 == 0 else list(reversed(sides)):
            started = time.perf_counter()
            results[name] = sides[name]()
            if run or not warm_up:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(v) for name, v in times.items()}, results


def pairs(table: Any) -> list[tuple[int, int]]:
    """The (target id, object id) pairs of an Arrow or astropy table."""
    if hasattr(table, "column_names"):  # Arrow
        first, second = (table.column(c).to_pylist() for c in table.column_names[:2])
    else:  # astropy
        first, second = (list(map(int, table[c])) for c in table.colnames[:2])
    return sorted(zip(first, second, strict=True))


def votable_xml(table: Any) -> bytes:
    """The VOTable pyvo posts for an astropy table (``Table.write(format="votable")``)."""
    out = io.BytesIO()
    table.write(output=out, format="votable")
    return out.getvalue()


def run(args: argparse.Namespace) -> None:
    import httpx
    import pyvo
    from astropy.io.votable import parse_single_table
    from astropy.table import Table

    import qserv_py
    from qserv_py.api.uploads import read_table

    prepared = setup(args)
    server, url = start_server(prepared.cluster_dir, args.server_processes)
    print(f"serving at {url} ({args.server_processes} processes)", flush=True)
    client = qserv_py.connect(prepared.cluster_dir, default_catalog="dp02")
    service = pyvo.dal.TAPService(f"{url}/tap")
    http = httpx.Client(base_url=url, timeout=1800)
    radius = args.xmatch_arcsec / 3600
    text = XMATCH.format(radius=radius)
    try:
        for n in (args.targets, args.big_targets):
            if not n:
                continue
            targets = xmatch_targets(prepared.release, n, radius)
            astropy_targets = Table(targets.to_pydict())
            started = time.perf_counter()
            xml = votable_xml(astropy_targets)
            write_s = time.perf_counter() - started

            def python_api(targets: Any = targets) -> Any:
                return client.query(text, uploads={"t": targets})

            def through_pyvo(astropy_targets: Any = astropy_targets, n: int = n) -> Any:
                return service.run_sync(
                    text, uploads={"t": astropy_targets}, maxrec=10 * n
                ).to_table()

            def request_only(xml: bytes = xml, n: int = n) -> bytes:
                response = http.post(
                    "/tap/sync",
                    data={"QUERY": text, "UPLOAD": "t,param:t", "REQUEST": "doQuery",
                          "LANG": "ADQL", "MAXREC": str(10 * n)},
                    files={"t": ("t.xml", xml, "application/x-votable+xml")},
                )  # fmt: skip
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
                return response.content

            small = n == args.targets  # (the big one: one run, its pyvo side ~minutes)
            times, results = timed(
                {"python": python_api, "pyvo": through_pyvo, "request": request_only},
                args.repeat if small else 1,
                warm_up=small,
            )
            answer = results["request"]
            runs = 2 if small else 1
            parse_answer_s = _best(
                lambda a=answer: parse_single_table(io.BytesIO(a)).to_table(), runs
            )
            read_s = _best(lambda x=xml: read_table(x, "bench"), runs)
            astropy_s = _best(lambda x=xml: _astropy_parse(x), runs)
            same = pairs(results["python"]) == pairs(results["pyvo"])
            decoded = read_table(xml, "bench").nbytes
            print(
                f"\n### {n:,} targets against {prepared.objects:,} objects, r = "
                f"{args.xmatch_arcsec:g}″: {results['python'].num_rows:,} pairs "
                f"(pyvo's equal the Python API's: {same}); the VOTable upload "
                f"{len(xml) / 1e6:.1f} MB of XML, {decoded / 1e6:.1f} MB decoded\n"
            )
            print("| path | median | / Python API |")
            print("|---|---:|---:|")
            api = times["python"]
            rows = [
                ("Python API (`client.query(text, uploads=...)`)", api),
                ("pyvo `run_sync` with the table (end to end)", times["pyvo"]),
                ("… pyvo writing the VOTable upload (client, astropy)", write_s),
                ("… `POST /tap/sync` of that VOTable, answer received (service)",
                 times["request"]),
                ("… parsing the VOTable answer (client, astropy)", parse_answer_s),
                ("service reading the upload (`read_table`, TABLEDATA in C)", read_s),
                ("astropy parsing the same XML (the service's reading before)", astropy_s),
            ]  # fmt: skip
            for name, seconds in rows:
                print(f"| {name} | {_s(seconds)} | {seconds / api:.2f}× |")
            print(
                f"\n{'' if small else '(one run, no warm-up) '}"
                f"pyvo / Python API: {times['pyvo'] / api:.2f}× end to end, "
                f"{times['request'] / api:.2f}× for the service's part "
                f"(target ≤ {TARGET}×)",
                flush=True,
            )
    finally:
        http.close()
        server.send_signal(signal.SIGINT)
        server.wait(60)
        from qserv_py.cluster.local import LocalCluster
        from qserv_py.exec.dispatch import close_pools

        close_pools()
        LocalCluster(prepared.cluster_dir).destroy()


def _best(call: Callable[[], Any], runs: int = 2) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def _astropy_parse(xml: bytes) -> Any:
    from astropy.io.votable import parse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return next(parse(io.BytesIO(xml), verify="ignore").iter_tables()).array


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=500_000)
    parser.add_argument("--forced-per-object", type=float, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qserv-bench-tap-upload"))
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--big-targets", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--xmatch-arcsec", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--server-processes", type=int, default=2)
    started = time.perf_counter()
    run(parser.parse_args())
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
