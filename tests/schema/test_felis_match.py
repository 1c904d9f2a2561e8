"""Match tables in Felis (``qserv:kind: match``): the two directors and their key columns,
and every mistake in them refused with the table, the column and what to change."""

from __future__ import annotations

import pytest

from qserv_py.errors import SchemaError
from qserv_py.schema import TableKind, parse_catalog
from qserv_py.schema.model import CHUNK_ID, MATCH_FLAGS, SPATIAL_INDEX

DIRECTORS = """
name: sky
tables:
- name: Obj
  primaryKey: "#Obj.objId"
  qserv:kind: director
  qserv:ra_column: ra
  qserv:dec_column: dec
  columns:
  - {name: objId, "@id": "#Obj.objId", datatype: long}
  - {name: ra, datatype: double}
  - {name: dec, datatype: double}
- name: Ref
  primaryKey: "#Ref.refId"
  qserv:kind: director
  qserv:ra_column: ra
  qserv:dec_column: dec
  columns:
  - {name: refId, "@id": "#Ref.refId", datatype: long}
  - {name: ra, datatype: double}
  - {name: dec, datatype: double}
- name: Visit
  qserv:kind: replicated
  columns:
  - {name: visitId, datatype: long}
"""
MATCH = """
- name: RefMatch
  qserv:kind: match
  qserv:director1: Ref
  qserv:director_key1: refId
  qserv:director2: Obj
  qserv:director_key2: objId
  columns:
  - {name: refId, datatype: long}
  - {name: objId, datatype: long}
  - {name: dist, datatype: double}
"""


def test_match_table_parses() -> None:
    table = parse_catalog(DIRECTORS + MATCH, "m.yaml").table("RefMatch")
    assert table.kind is TableKind.MATCH and table.partitioned
    assert table.match_sides == (("Ref", "refId"), ("Obj", "objId"))
    # a match row may name one side only (Qserv's unmatched reference objects)
    assert table.column("refId").nullable and table.column("objId").nullable
    assert table.stored_extra == (SPATIAL_INDEX, CHUNK_ID, MATCH_FLAGS)


def test_a_director_matched_to_itself() -> None:
    text = MATCH.replace("director1: Ref", "director1: Obj").replace("refId", "objId2")
    table = parse_catalog(DIRECTORS + text, "m.yaml").table("RefMatch")
    assert table.match_sides == (("Obj", "objId2"), ("Obj", "objId"))


BAD = [
    ("  qserv:director2: Obj\n", "", ["without qserv:director2", "director tables: Obj, Ref"]),
    ("qserv:director2: Obj", "qserv:director2: Objs", ["qserv:director2 'Objs' does not exist"]),
    ("qserv:director1: Ref", "qserv:director1: Visit", ["'Visit' is a replicated table"]),
    ("  qserv:director_key1: refId\n", "", ["without qserv:director_key1", "Ref key"]),
    ("qserv:director_key2: objId", "qserv:director_key2: obj", ["missing key", "column obj"]),
    ("qserv:director_key2: objId", "qserv:director_key2: refId", ["both name refId"]),
    ("qserv:director_key2: objId", "qserv:director_key2: dist", ["dist is double", "integer"]),
    ("qserv:kind: match\n", "qserv:kind: match\n  qserv:ra_column: ra\n",
     ["qserv:ra_column applies only to director and child tables"]),
    ("qserv:kind: match\n", "qserv:kind: match\n  qserv:director: Obj\n",
     ["qserv:director applies only to child tables", "qserv:kind match"]),
    ("qserv:kind: match\n", "qserv:kind: child\n",
     ["qserv:director1 applies only to match tables"]),
    ("- {name: dist, datatype: double}", "- {name: match_flags, datatype: int}",
     ["column name 'match_flags' is reserved"]),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "words"), BAD, ids=[b[2][0] for b in BAD])
def test_bad_match_table(old: str, new: str, words: list[str]) -> None:
    assert old in MATCH
    with pytest.raises(SchemaError) as info:
        parse_catalog(DIRECTORS + MATCH.replace(old, new), "m.yaml")
    message = str(info.value)
    assert message.startswith("m.yaml") and "table RefMatch" in message
    for word in words:
        assert word in message


def test_tap_schema_marks_both_keys_indexed() -> None:
    from qserv_py.api.tap_schema import describe, find_table

    meta = find_table(describe([parse_catalog(DIRECTORS + MATCH, "m.yaml")]), "sky.RefMatch")
    assert meta is not None
    assert {c.name: c.indexed for c in meta.columns} == {
        "refId": True,
        "objId": True,
        "dist": False,
    }


def test_tap_schema_keys_link_both_directors() -> None:
    from qserv_py.api.tap_schema import describe, find_table

    meta = find_table(describe([parse_catalog(DIRECTORS + MATCH, "m.yaml")]), "sky.RefMatch")
    assert meta is not None
    assert [(k.key_id, k.target_table, k.columns) for k in meta.keys] == [
        ("sky.RefMatch_refId", "sky.Ref", (("refId", "refId"),)),
        ("sky.RefMatch_objId", "sky.Obj", (("objId", "objId"),)),
    ]
