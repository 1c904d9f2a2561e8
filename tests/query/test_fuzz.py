"""Property-based fuzzing of the planner (issue 13): the corpus queries (tests/queries/)
and the TAP examples (api/examples.py), mutated the way careless and hostile users
mutate queries (cut, duplicated, spliced with tokens of other queries, keywords, stray
quotes, backticks, NUL, odd numbers, deep parentheses), in each query language. Planning
either succeeds or raises a :class:`~qserv_py.errors.QservError` with a 4xx status —
never a RecursionError, a TypeError, an AttributeError or anything else. Deterministic
(``derandomize``): CI runs the same few hundred examples, in under a minute."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qserv_py.api.examples import Sample, make_examples
from qserv_py.client import Client
from qserv_py.errors import QservError
from qserv_py.query.planner import plan

QUERIES = Path(__file__).resolve().parents[1] / "queries"


def _seeds() -> list[str]:
    texts = [
        re.sub(r"^--.*$", "", p.read_text(), flags=re.M).strip()
        for p in sorted(QUERIES.glob("*.sql"))
    ]
    return [t for t in texts if t]


SEEDS = _seeds()
#: fragments users and attackers type: keywords, operators, quoting, odd numbers
FRAGMENTS = [
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
    "\x00",
    "1e",
    "0x1F",
    "1_000",
    "1e999",
    "-0",
    "NULL",
    "TRUE",
    "'é€😀'",
    "$$",
    "--",
    "/*",
    "E'\\x00'",
    "pg_sleep(1)",
    "pg_read_file('/etc/passwd')",
    "current_setting('x')",
    "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 1, 2, 3)) = 1",
    "DISTANCE(1, 2, 3, 4)",
    "qserv_areaspec_box(0, 0, 1, 1)",
    "scisql_s2PtInCircle(ra, decl, 1, 1, 1)",
    "ROW(1, 2)",
    "(1, 2)",
    "ARRAY[1]",
    "CASE WHEN 1 THEN 2 END",
    "COUNT(*)",
    "objectId",
    "TAP_UPLOAD.t",
    "Object",
    "qt.Object",
    "information_schema.tables",
    '"order"',
    "order",
    "select",
    "(" * 45,
    ")" * 45,
    " OR objectId = 1" * 50,
]
LANGS = ["adql", "postgresql", "qserv"]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[str]) -> str:
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 40)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "splice", "duplicate"]))
        if action == "insert":
            text = text[:i] + draw(st.sampled_from(FRAGMENTS)) + text[i:]
        elif action == "delete":
            text = text[:i] + text[j:]
        elif action == "replace":
            text = text[:i] + draw(st.sampled_from(FRAGMENTS)) + text[j:]
        elif action == "splice":
            other = draw(st.sampled_from(seeds))
            k = draw(st.integers(0, len(other)))
            text = text[:i] + other[k : k + draw(st.integers(1, 60))] + text[j:]
        else:
            text = text[:i] + text[i:j] * draw(st.integers(2, 5)) + text[j:]
    return text


def _check(client: Client, text: str, lang: str) -> None:
    try:
        plan(text, lang, client.context, oracle=False)
    except QservError as exc:  # the planner said what is wrong: fine, if it is a 4xx
        assert 400 <= exc.http_status < 500, (type(exc).__name__, str(exc))


@settings(
    max_examples=350,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=mutated(SEEDS), lang=st.sampled_from(LANGS))
def test_mutated_corpus_queries_plan_or_raise_qserv_errors(
    client: Client, text: str, lang: str
) -> None:
    _check(client, text, lang)


def _example_seeds(client: Client) -> list[str]:
    catalog = client.context.catalogs.catalogs["qt"]
    return [e.query for e in make_examples(catalog, Sample(1, 10.0, -5.0))]


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), lang=st.sampled_from(LANGS))
def test_mutated_examples_plan_or_raise_qserv_errors(
    client: Client, data: st.DataObject, lang: str
) -> None:
    text = data.draw(mutated(_example_seeds(client)))
    _check(client, text, lang)
