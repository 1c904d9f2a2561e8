"""The plan cache gives exactly the plans (or the errors) the planner gives.

Every corpus query is planned twice through a fresh cache (the second time makes its
template), then with its numbers changed — a little, and a lot (crossing the overlap, a
pole, a LIMIT) — and each outcome is compared with the planner's for the same text: the
same plan, field by field, or the same error.
"""

from __future__ import annotations

import random
from dataclasses import fields

import pyarrow as pa
import pytest

from qserv_py.client import Client
from qserv_py.errors import QservError, QueryError, QueryRefused
from qserv_py.exec.plan import ExecPlan
from qserv_py.query.cache import PlanCache
from qserv_py.query.parse import dialect
from qserv_py.query.planner import plan
from tests.query.test_corpus import CASES, Case

CONE = (
    "SELECT objectId, coord_ra, coord_dec FROM Object WHERE "
    "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, {r})) = 1"
)


def _variant(text: str, lang: str, scale: float, step: int) -> str:
    """``text`` with each number changed (integers stay integers)."""
    tokens = dialect(lang).tokenizer().tokenize(text)
    pieces, at = [], 0
    for token in tokens:
        if token.token_type.name != "NUMBER":
            continue
        if token.text.isdigit():
            new = str(int(int(token.text) * scale) + step)
        else:
            new = repr(float(token.text) * scale + step * 0.001)
        pieces += [text[at : token.start], new]
        at = token.end + 1
    return "".join(pieces) + text[at:]


def _outcome(make: object) -> ExecPlan | tuple[type, str]:
    try:
        return make()  # type: ignore[operator]
    except QservError as exc:
        return type(exc), str(exc)


def _same(got: ExecPlan | tuple, want: ExecPlan | tuple, text: str) -> None:
    if isinstance(want, tuple) or isinstance(got, tuple):
        assert got == want, text
        return
    for f in fields(ExecPlan):
        if f.name == "oracle_sql":  # a cached plan has none (EXPLAIN plans in full)
            continue
        assert getattr(got, f.name) == getattr(want, f.name), f"{f.name} differs for {text}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cached_plans_are_the_planners(case: Case, client: Client) -> None:
    ctx = client.context
    cache = PlanCache()
    texts = [case.text, case.text]
    texts += [_variant(case.text, case.lang, 1.0, 1), _variant(case.text, case.lang, 1.0, 2)]
    texts += [_variant(case.text, case.lang, 40.0, 3)]
    for text in texts:
        want = _outcome(lambda t=text: plan(t, case.lang, ctx, oracle=False))
        got = _outcome(lambda t=text: cache.plan(t, case.lang, ctx))
        _same(got, want, text)


def test_cones_and_lookups_are_filled_in(client: Client) -> None:
    cache = PlanCache()
    ctx = client.context
    rng = random.Random(5)
    for _ in range(8):
        # positive declinations: a sign is a token, so -5 and 5 are two shapes
        text = CONE.format(ra=rng.uniform(0, 360), dec=rng.uniform(0.5, 89.5), r=0.1)
        _same(cache.plan(text, "adql", ctx), plan(text, "adql", ctx, oracle=False), text)
    assert cache.hits == 6  # the first two are planned in full (the second makes it)
    light_curve = (
        "SELECT * FROM Object o JOIN ForcedSource f ON o.objectId = f.objectId "
        "WHERE o.objectId = {key}"
    )
    for key in (1, 2, 3, 4, 5):
        text = light_curve.format(key=key)
        _same(cache.plan(text, "adql", ctx), plan(text, "adql", ctx, oracle=False), text)
    assert cache.hits == 9


def test_cached_cones_return_the_oracle_rows(client: Client, oracle: object) -> None:
    """End to end through Client.query: later cones come from the cache."""
    rng = random.Random(11)
    before = client.plans.hits
    for _ in range(5):
        text = CONE.format(ra=rng.uniform(0, 360), dec=rng.uniform(1, 60), r=3.0)
        got = client.query(text)
        want = oracle.execute(client.plan(text).oracle_sql).fetchall()  # type: ignore[attr-defined]
        assert sorted(got.column("objectId").to_pylist()) == sorted(r[0] for r in want)
        assert isinstance(got, pa.Table)
    assert client.plans.hits >= before + 3


def test_a_region_made_invalid_is_refused_as_without_the_cache(client: Client) -> None:
    cache = PlanCache()
    ctx = client.context
    for dec in (10, 20):
        cache.plan(CONE.format(ra=10, dec=dec, r=1), "adql", ctx)
    bad = CONE.format(ra=10, dec=100, r=1)
    with pytest.raises(QueryError) as cached:
        cache.plan(bad, "adql", ctx)
    with pytest.raises(QueryError) as planned:
        plan(bad, "adql", ctx, oracle=False)
    assert str(cached.value) == str(planned.value)


def test_a_join_radius_beyond_the_overlap_is_refused_from_the_cache(client: Client) -> None:
    cache = PlanCache()
    ctx = client.context
    join = (
        "SELECT COUNT(*) FROM Object o1, Object o2 WHERE o1.objectId <> o2.objectId AND "
        "DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < {r}"
    )
    for r in (0.001, 0.002):
        cache.plan(join.format(r=r), "adql", ctx)
    with pytest.raises(QueryRefused, match="larger than the overlap"):
        cache.plan(join.format(r=5.0), "adql", ctx)


def test_a_key_that_no_longer_restricts_is_planned_in_full(client: Client) -> None:
    cache = PlanCache()
    ctx = client.context
    for key in ("1.0", "2.0"):
        cache.plan(f"SELECT * FROM Object WHERE objectId = {key}", "adql", ctx)
    text = "SELECT * FROM Object WHERE objectId = 1.5"
    _same(cache.plan(text, "adql", ctx), plan(text, "adql", ctx, oracle=False), text)


def test_limits_are_part_of_the_key(client: Client) -> None:
    cache = PlanCache()
    ctx = client.context
    for n in (3, 3, 5, 7):
        got = cache.plan(f"SELECT TOP {n} objectId FROM Object", "adql", ctx)
        assert got.limit == n


def test_the_shortcut_key_is_used_only_where_it_finds_the_tokenizers_numbers(
    client: Client,
) -> None:
    """A shape whose text has digits in a string, a quoted name or a comment is always
    tokenized; one without is looked up by its skeleton. Both plan as the planner."""
    ctx = client.context
    cache = PlanCache()
    plain = "SELECT objectId FROM Object WHERE objectId = {}"
    tricky = 'SELECT objectId AS "id 7" FROM Object WHERE objectId = {} -- 12\n'
    for text in (plain, tricky):
        for key in (1, 2, 3, 40, 500):
            query = text.format(key)
            _same(cache.plan(query, "adql", ctx), plan(query, "adql", ctx, oracle=False), query)
    assert len(cache._known) == 1
    assert cache.hits == 6
