"""Result-byte limits, enforced by the servers (qserv_py.exec.limits): hand-written plans
on the session cluster, on the fast path (one statement) and the general one (COPY into a
merge table, then the merge)."""

from __future__ import annotations

import psycopg
import pytest

from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import ResultTooLarge
from qserv_py.exec.dispatch import execute
from qserv_py.exec.limits import too_large
from qserv_py.exec.plan import ExecPlan, ResultColumn

PADDED = "SELECT c AS chunk, repeat('x', {size}) AS pad FROM unnest({{chunks}}) AS c"


def plan_of(spec: ClusterSpec, size: int, *, spread: bool) -> ExecPlan:
    """Rows of ``size`` bytes: one per chunk, on one worker (the fast path) or on all of
    them in more than one batch (the general path)."""
    names = [w.name for w in spec.workers]
    chunks = (
        {n: (10 * i + 1, 10 * i + 2) for i, n in enumerate(names)} if spread else {names[0]: (1, 2)}
    )
    return ExecPlan(
        PADDED.format(size=size),
        "SELECT chunk, pad FROM {partials} ORDER BY chunk",
        chunks,
        columns=(ResultColumn("chunk"), ResultColumn("pad", unit="char")),
    )


@pytest.mark.parametrize("spread", [False, True], ids=["fast path", "merge"])
def test_result_over_the_byte_limit_stops(spec: ClusterSpec, spread: bool) -> None:
    plan = plan_of(spec, 300_000, spread=spread)
    rows = 2 * (len(spec.workers) if spread else 1)
    fits = execute(spec, plan, max_bytes=rows * 300_100, batch_chunks=1)
    assert fits.table.num_rows == rows and fits.table.column_names == ["chunk", "pad"]
    assert fits.table.schema.field("pad").metadata[b"unit"] == b"char"  # guard column gone
    assert set(fits.table.column("pad").to_pylist()) == {"x" * 300_000}
    with pytest.raises(ResultTooLarge, match=r"limit of 500,000 bytes \(the result is over"):
        execute(spec, plan, max_bytes=500_000, batch_chunks=1)


def test_a_row_over_the_limit_never_leaves_its_worker(spec: ClusterSpec) -> None:
    """A row larger than the limit is refused by the worker that makes it (each COPY row
    would otherwise pass whole through this process), before any merge."""
    plan = plan_of(spec, 3_000_000, spread=True)
    with pytest.raises(ResultTooLarge, match=r"one row is 3,000,0\d\d bytes"):
        execute(spec, plan, max_bytes=1_000_000, batch_chunks=1)


def test_no_limit_no_guard(spec: ClusterSpec) -> None:
    plan = plan_of(spec, 10, spread=True)
    assert execute(spec, plan, batch_chunks=1).table.column_names == ["chunk", "pad"]


def test_a_row_postgresql_cannot_hold_is_too_large() -> None:
    """A row near 1 GB fails in PostgreSQL itself where the size sum stores it ("tuple is
    too big", bench/limits.py); under a byte limit that is the result's size again."""
    found = too_large(psycopg.errors.ProgramLimitExceeded("tuple is too big"), 1000)
    assert isinstance(found, ResultTooLarge) and "limit of 1,000 bytes" in found.message
    assert too_large(psycopg.errors.ProgramLimitExceeded("tuple is too big"), None) is None
    assert too_large(psycopg.errors.ProgramLimitExceeded("too many columns"), 1000) is None
