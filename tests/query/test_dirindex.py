"""Director-index lookups: asked of the czar, then answered from a copy in memory, with
the same chunks; a published load brings a new copy; no copy when turned off."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from qserv_py.client import Client
from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.query.dirindex import MEMORY_AFTER, DirectorIndexes, MemoryIndex
from qserv_py.schema.ddl import dirindex_table
from tests.conftest import create_dp02_catalog
from tests.test_client import last_statement

SMALL = LoadOptions(max_rows_per_chunk=150, min_order=2, max_order=8)


@pytest.fixture(scope="module")
def cat(spec: ClusterSpec, release: Path) -> Iterator[str]:
    name = create_dp02_catalog(spec, "qx_dirindex")
    try:
        load(spec, name, "Object", [release / "Object"], SMALL)
        yield name
    finally:
        drop_catalog(spec, name)


def _ids(release: Path) -> list[int]:
    return sorted(pq.read_table(release / "Object", columns=["objectId"])["objectId"].to_pylist())


def _on_czar(spec: ClusterSpec, cat: str, keys: list[int]) -> set[int]:
    """What the director index on the czar says, asked directly."""
    with connect(spec.czar) as czar:
        rows = czar.execute(
            f"SELECT DISTINCT chunk_id FROM {dirindex_table(cat, 'Object')}"
            " WHERE key = ANY(%s::numeric[])",
            ([str(k) for k in keys],),
        ).fetchall()
    return {int(r[0]) for r in rows}


def _copied(indexes: DirectorIndexes, table: str) -> MemoryIndex:
    deadline = time.monotonic() + 60
    while table not in indexes._memory:
        assert time.monotonic() < deadline, "the copy into memory did not finish"
        time.sleep(0.02)
    memory = indexes._memory[table]
    assert memory is not None, "the copy into memory failed"
    return memory


def test_lookups_move_into_memory_and_answer_the_same(
    spec: ClusterSpec, cat: str, release: Path
) -> None:
    ids = _ids(release)
    ctx = Client(spec, cat).context
    indexes, table = ctx.director_indexes, dirindex_table(cat, "Object")
    for key in ids[: MEMORY_AFTER - 1]:
        assert ctx.lookup_keys(cat, "Object", [key]) == _on_czar(spec, cat, [key])
    assert table not in indexes._memory and not indexes.in_memory(cat, "Object")  # not yet
    ctx.lookup_keys(cat, "Object", [ids[-1]])  # the lookup that starts the copy
    memory = _copied(indexes, table)
    assert indexes.in_memory(cat, "Object")
    assert memory.keys.tolist() == ids
    before = last_statement(spec, indexes._connection)
    rng = np.random.default_rng(3)
    absent = [ids[0] - 1, ids[-1] + 1, 0, -1, 2**63 - 1, -(2**63), 2**63, -(2**70)]
    cases = [
        [ids[0]],
        [ids[-1]],
        *([k] for k in absent),
        rng.choice(ids, 50, replace=False).tolist(),
        rng.choice(ids, 20, replace=False).tolist() + absent,
        ids,
        [],
    ]
    for keys in cases:
        assert ctx.lookup_keys(cat, "Object", keys) == _on_czar(spec, cat, keys), keys[:5]
    assert last_statement(spec, indexes._connection) == before  # the czar was not asked


def test_queries_by_id_from_memory(spec: ClusterSpec, cat: str, release: Path) -> None:
    ids = _ids(release)
    client = Client(spec, cat)
    picked = ids[::397]
    text = f"SELECT objectId FROM Object WHERE objectId IN ({', '.join(map(str, picked))})"
    before = client.query(text)
    for key in ids[:MEMORY_AFTER]:
        client.query(f"SELECT objectId FROM Object WHERE objectId = {key}")
    _copied(client.context.director_indexes, dirindex_table(cat, "Object"))
    after = client.query(text)
    assert sorted(after["objectId"].to_pylist()) == sorted(before["objectId"].to_pylist())
    assert sorted(after["objectId"].to_pylist()) == picked


def test_a_published_load_brings_a_new_copy(
    spec: ClusterSpec, release: Path, tmp_path: Path
) -> None:
    name = create_dp02_catalog(spec, "qx_dirindex_reload")
    try:
        load(spec, name, "Object", [release / "Object"], SMALL)
        client = Client(spec, name)
        first = client.context
        ids = _ids(release)
        for key in ids[:MEMORY_AFTER]:
            first.lookup_keys(name, "Object", [key])
        _copied(first.director_indexes, dirindex_table(name, "Object"))
        # a second load: the same objects under new ids, beyond a float's 53 bits (as
        # Rubin's: 1651589610221862935)
        objects = pq.read_table(release / "Object")
        shift = 2**60
        moved = objects.set_column(
            objects.schema.get_field_index("objectId"),
            "objectId",
            pc.add(objects["objectId"], shift),
        )
        (tmp_path / "moved").mkdir()
        pq.write_table(moved, tmp_path / "moved" / "part.parquet")
        load(spec, name, "Object", [tmp_path / "moved"], SMALL)
        deadline = time.monotonic() + 30
        while (second := client.context) is first:  # the load's notification comes
            assert time.monotonic() < deadline, "the client did not see the load"
            time.sleep(0.02)
        new = [k + shift for k in ids[:: len(ids) // 7]]
        for key in new[:MEMORY_AFTER]:
            assert second.lookup_keys(name, "Object", [key]) == _on_czar(spec, name, [key])
        memory = _copied(second.director_indexes, dirindex_table(name, "Object"))
        assert memory.keys.size == 2 * len(ids)
        assert second.lookup_keys(name, "Object", new) == _on_czar(spec, name, new) != set()
        for key in [*new, new[-1] + 1, new[0] - 2**59]:  # planned in full, then from the cache
            got = client.query(f"SELECT objectId FROM Object WHERE objectId = {key}")
            assert got["objectId"].to_pylist() == ([key] if key - shift in ids else []), key
        picked = ", ".join(map(str, new))
        got = client.query(f"SELECT objectId FROM Object WHERE objectId IN ({picked})")
        assert sorted(got["objectId"].to_pylist()) == new
    finally:
        drop_catalog(spec, name)


@pytest.mark.parametrize("limit", [0, 1000])
def test_no_copy_when_turned_off_or_too_big(
    spec: ClusterSpec, cat: str, release: Path, limit: int
) -> None:
    ids = _ids(release)  # 4,000 objects: more than the limit
    ctx = Client(spec, cat, director_index_memory_keys=limit).context
    for key in ids[: 3 * MEMORY_AFTER]:
        assert ctx.lookup_keys(cat, "Object", [key]) == _on_czar(spec, cat, [key])
    copying = f"qserv-dirindex-{dirindex_table(cat, 'Object')}"
    assert not any(t.name == copying for t in threading.enumerate())  # none was started
    time.sleep(0.2)
    assert ctx.director_indexes._memory == {}


def test_a_failed_copy_leaves_lookups_on_the_czar(
    spec: ClusterSpec, cat: str, release: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = _ids(release)
    indexes = Client(spec, cat).context.director_indexes
    missing = dirindex_table(cat, "NoSuchTable")
    with caplog.at_level(logging.WARNING, logger="qserv_py.query.dirindex"):
        indexes._copy(missing)  # the copy's own connection and statements: they fail
    assert indexes._memory == {missing: None}
    assert f"director index {missing} stays on the czar" in caplog.text
    table = dirindex_table(cat, "Object")
    indexes._memory[table] = None  # as if its copy had failed
    for key in ids[: 2 * MEMORY_AFTER]:
        assert indexes.chunks(cat, "Object", [key]) == _on_czar(spec, cat, [key])
    assert indexes._memory[table] is None and table not in indexes._lookups


def test_a_copy_in_memory_must_be_in_key_order() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        MemoryIndex(np.array([1, 3, 2]), np.array([5, 5, 6]))
    with pytest.raises(ValueError, match="strictly increasing"):
        MemoryIndex(np.array([1, 1]), np.array([5, 5]))
    index = MemoryIndex(np.array([1, 3, 8]), np.array([5, 7, 2**40]))
    assert index.chunks.dtype == np.int64
    assert index.lookup([0, 3, 8, 9]) == {7, 2**40}
