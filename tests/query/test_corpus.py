"""The differential corpus: every query in tests/queries runs on the cluster and on the
oracle (one unpartitioned database with the same rows), and the results must agree.

A query file starts with comment lines that say how to run and compare it::

    -- lang: adql | postgresql | qserv        (default adql)
    -- order: ordered                         (compare in order; default: as multisets)
    -- compare: count                         (only the number of rows: LIMIT without ORDER)
    -- refuse: <text>                         (must be refused with this in the message)

Each query runs on catalog ``qt`` (every chunk on one worker) and on ``qt2`` (the same
rows, every chunk on two workers); tables are named without their catalog.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from qserv_py.client import Client
from qserv_py.errors import QueryError

QUERIES = Path(__file__).resolve().parents[1] / "queries"


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    lang: str = "adql"
    ordered: bool = False
    count_only: bool = False
    refuse: str | None = None


def _case(path: Path) -> Case:
    text = path.read_text()
    header = dict(re.findall(r"^--\s*(\w+):\s*(.+?)\s*$", text, flags=re.M))
    return Case(
        path.stem,
        text,
        header.get("lang", "adql"),
        header.get("order") == "ordered",
        header.get("compare") == "count",
        header.get("refuse"),
    )


CASES = [_case(p) for p in sorted(QUERIES.glob("*.sql"))]


def _norm(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    return value


def _close(a: object, b: object) -> bool:
    a, b = _norm(a), _norm(b)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        fa, fb = float(a), float(b)  # type: ignore[arg-type]
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _key(row: tuple) -> tuple:
    return tuple(
        (0, "")
        if v is None
        else (1, f"{float(_norm(v)):.6g}")
        if isinstance(_norm(v), float)
        else (2, str(v))  # type: ignore[arg-type]
        for v in row
    )


def compare(got: list[tuple], want: list[tuple], *, ordered: bool) -> None:
    assert len(got) == len(want), f"{len(got)} rows, the oracle has {len(want)}"
    if not ordered:
        got, want = sorted(got, key=_key), sorted(want, key=_key)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w) and all(_close(a, b) for a, b in zip(g, w, strict=True)), (
            f"row {i}: {g} != oracle {w}"
        )


@pytest.fixture(params=["qt", "qt2"])
def catalog_client(request: pytest.FixtureRequest) -> Client:
    """A client whose default catalog is ``qt``, then ``qt2`` (replication 2)."""
    client: Client = request.getfixturevalue("client" if request.param == "qt" else "client2")
    return client


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_oracle(case: Case, catalog_client: Client, oracle: psycopg.Connection) -> None:
    client = catalog_client
    if case.refuse:
        with pytest.raises(QueryError) as err:
            client.query(case.text, case.lang)
        assert case.refuse in str(err.value)
        return
    result = client.query(case.text, case.lang)
    got = [tuple(row.values()) for row in result.to_pylist()]
    # binary results: a real arrives as the float32 it is, as from the cluster
    want = (
        oracle.cursor(binary=True).execute(client.plan(case.text, case.lang).oracle_sql).fetchall()
    )
    if case.count_only:
        assert len(got) == len(want)
        return
    compare(got, want, ordered=case.ordered)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 160
