"""Long IN lists of numbers (issue 13): parsed as one node, so planning does the same
work whatever their length (75,000 ids cost ~19 s to plan as 75,000 subtrees), and they
still read the director index and answer as before."""

from __future__ import annotations

from qserv_py.client import Client
from qserv_py.query.guard import COMPACT_AT, list_values
from qserv_py.query.parse import parse
from qserv_py.query.planner import plan


def _nodes(text: str, lang: str = "adql") -> int:
    return sum(1 for _ in parse(text, lang).walk())


def test_planning_work_does_not_grow_with_the_list() -> None:
    """The tree of a 5,000-value list has as many nodes as one of 100 values: each pass
    walks the same tree (the text is still tokenized once: linear, and cheap)."""

    def text(n: int) -> str:
        return f"SELECT objectId FROM Object WHERE objectId IN ({', '.join(map(str, range(n)))})"

    for lang in ("adql", "postgresql", "qserv"):
        assert _nodes(text(100), lang) == _nodes(text(5_000), lang)

    def lists(text: str) -> int:
        return sum(list_values(node) is not None for node in parse(text, "adql").walk())

    assert lists(text(COMPACT_AT)) == 1
    assert lists(text(COMPACT_AT - 1)) == 0  # a short list is left as the parser made it
    mixed = (
        "SELECT objectId FROM Object WHERE objectId IN (objectId, "
        + ", ".join(map(str, range(100)))
        + ")"
    )
    assert lists(mixed) == 0


def test_long_lists_answer_as_before(client: Client) -> None:
    """Director keys in a long list still restrict the chunks (the director index), signs
    and NOT IN keep their meaning, and a list inside an expression is written back as it
    was spelled."""
    ids = client.query("SELECT TOP 300 objectId FROM Object ORDER BY objectId").column(0)
    ids = ids.to_pylist()
    total = client.query("SELECT COUNT(*) FROM Object").column(0)[0].as_py()
    listed = ", ".join(f"-{i}" if k % 7 == 0 else str(i) for k, i in enumerate(ids))
    kept = len([i for k, i in enumerate(ids) if k % 7 != 0])  # (no negative ids)
    inside = f"objectId IN ({listed}, -1, +2)"
    counted = client.query(f"SELECT COUNT(*) FROM Object WHERE {inside}")
    assert counted.column(0)[0].as_py() == kept + (2 in ids)
    outside = client.query(f"SELECT COUNT(*) FROM Object WHERE objectId NOT IN ({listed})")
    assert outside.column(0)[0].as_py() == total - kept
    case = client.query(f"SELECT SUM(CASE WHEN {inside} THEN 1 ELSE 0 END) FROM Object")
    assert case.column(0)[0].as_py() == kept + (2 in ids)

    def chunks(condition: str) -> set[int]:
        planned = plan(f"SELECT objectId FROM Object WHERE {condition}", "adql", client.context)
        return {c for held in planned.chunks.values() for c in held}

    values = listed.split(", ")
    groups = [", ".join(values[k : k + 60]) for k in range(0, len(values), 60)]
    expected = set().union(*(chunks(f"objectId IN ({group})") for group in groups))
    assert chunks(f"objectId IN ({listed})") == expected  # as short lists read them
    assert expected < chunks("objectId > 0")  # the director index restricted them
    for k in range(3):  # one shape, other numbers: the plan cache fills its template in
        some = ids[k * 100 : k * 100 + 100]
        text = f"SELECT COUNT(*) FROM Object WHERE objectId IN ({', '.join(map(str, some))})"
        assert client.query(text).column(0)[0].as_py() == len(set(some))
    long = plan(f"SELECT objectId FROM Object WHERE {inside}", "adql", client.context)
    assert f"-{ids[0]}, {ids[1]}" in long.worker_sql
