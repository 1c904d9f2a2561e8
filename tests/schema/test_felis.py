"""Reading Felis YAML into the catalog model: the default dp02 schema, an sdm_schemas-style
file, and every kind of bad input (each message must name file, table and column)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qserv_py.errors import SchemaError
from qserv_py.schema import (
    Catalog,
    TableKind,
    default_catalog,
    default_catalog_path,
    load_catalog,
    parse_catalog,
)

SCHEMAS = Path(__file__).parent.parent / "fixtures" / "schemas"
BANDS = "ugrizy"
BAND_UCD = {"u": "em.opt.U", "g": "em.opt.B", "r": "em.opt.R", "i": "em.opt.I"}

DP02_COLUMNS = {
    "Object": [
        "objectId", "coord_ra", "coord_dec", "coord_raErr", "coord_decErr", "parentObjectId",
        "tract", "patch", "detect_isPrimary", "refExtendedness", "refBand",
        *(f"{b}_{m}" for b in BANDS for m in (
            "psfFlux", "psfFluxErr", "cModelFlux", "cModelFluxErr", "extendedness"
        )),
    ],
    "Source": [
        "sourceId", "objectId", "ccdVisitId", "coord_ra", "coord_dec", "band", "psfFlux",
        "psfFluxErr", "detect_isPrimary",
    ],
    "ForcedSource": [
        "forcedSourceId", "objectId", "ccdVisitId", "band", "coord_ra", "coord_dec", "psfFlux",
        "psfFluxErr", "psfDiffFlux", "psfDiffFluxErr",
    ],
    "CcdVisit": [
        "ccdVisitId", "visitId", "detector", "band", "expMidptMJD", "expTime", "zeroPoint",
        "seeing", "ra", "decl", "skyRotation",
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def dp02() -> Catalog:
    return default_catalog()


# --- the default schema ------------------------------------------------------------------


def test_dp02_has_exactly_its_tables_and_columns_in_file_order(dp02: Catalog) -> None:
    assert dp02.name == "dp02"
    assert dp02.overlap_arcsec == 60.0
    assert [t.name for t in dp02.tables] == list(DP02_COLUMNS)
    for table in dp02.tables:
        assert [c.name for c in table.columns] == DP02_COLUMNS[table.name], table.name


def test_dp02_datatypes(dp02: Catalog) -> None:
    obj = dp02.table("Object")
    assert obj.column("objectId").pg_type == "bigint"
    assert obj.column("coord_raErr").pg_type == "real"
    assert obj.column("tract").pg_type == "integer"
    assert obj.column("detect_isPrimary").pg_type == "boolean"
    assert obj.column("refBand").pg_type == "char(1)"
    assert {obj.column(f"{b}_psfFlux").datatype for b in BANDS} == {"double"}
    assert {obj.column(f"{b}_extendedness").datatype for b in BANDS} == {"float"}
    visit = dp02.table("CcdVisit")
    assert [visit.column(c).datatype for c in ("detector", "expTime", "decl")] == [
        "int",
        "float",
        "double",
    ]


def test_dp02_kinds_keys_and_positions(dp02: Catalog) -> None:
    obj, src, fsrc, visit = (dp02.table(n) for n in DP02_COLUMNS)
    assert obj.kind is TableKind.DIRECTOR
    assert (obj.key_column, obj.ra_column, obj.dec_column) == ("objectId", "coord_ra", "coord_dec")
    for child in (src, fsrc):
        assert child.kind is TableKind.CHILD
        assert (child.director, child.director_key) == ("Object", "objectId")
    assert visit.kind is TableKind.REPLICATED
    assert [t.primary_key for t in (obj, src, fsrc, visit)] == [
        ("objectId",),
        ("sourceId",),
        ("forcedSourceId",),
        ("ccdVisitId",),
    ]
    assert dp02.tables_of_kind(TableKind.DIRECTOR) == (obj,)
    for table in (obj, src, fsrc, visit):
        assert not table.column(table.primary_key[0]).nullable
    assert not obj.column("coord_ra").nullable and not obj.column("coord_dec").nullable
    assert obj.column("coord_raErr").nullable


def test_dp02_foreign_keys(dp02: Catalog) -> None:
    for name in ("Source", "ForcedSource"):
        links = {
            (fk.columns, fk.referenced_table, fk.referenced_columns)
            for fk in dp02.table(name).foreign_keys
        }
        assert links == {
            (("objectId",), "Object", ("objectId",)),
            (("ccdVisitId",), "CcdVisit", ("ccdVisitId",)),
        }


def test_dp02_units_and_ucds(dp02: Catalog) -> None:
    obj = dp02.table("Object")
    assert (obj.column("coord_ra").unit, obj.column("coord_ra").ucd) == (
        "deg",
        "pos.eq.ra;meta.main",
    )
    assert obj.column("coord_dec").ucd == "pos.eq.dec;meta.main"
    assert obj.column("coord_decErr").ucd == "stat.error;pos.eq.dec"
    assert obj.column("objectId").ucd == "meta.id;meta.main"
    assert obj.column("parentObjectId").ucd == "meta.id.parent"
    for band, em in BAND_UCD.items():
        assert obj.column(f"{band}_psfFlux").ucd == f"phot.flux;{em}"
        assert obj.column(f"{band}_cModelFluxErr").ucd == f"stat.error;phot.flux;{em}"
    assert {obj.column(f"{b}_psfFlux").unit for b in BANDS} == {"nJy"}
    assert obj.column("r_extendedness").ucd.startswith("src.class.starGalaxy")
    assert obj.column("detect_isPrimary").ucd == "meta.code"
    assert dp02.table("Source").column("ccdVisitId").ucd == "meta.id;obs.image"
    visit = dp02.table("CcdVisit")
    expected = {
        "expMidptMJD": ("d", "time.epoch"),
        "expTime": ("s", "time.duration;obs.exposure"),
        "zeroPoint": ("mag", "phot.calib"),
        "seeing": ("arcsec", "instr.obsty.seeing"),
        "ra": ("deg", "pos.eq.ra"),
        "decl": ("deg", "pos.eq.dec"),
        "skyRotation": ("deg", "pos.posAng"),
        "band": ("", "meta.id;instr.filter"),
    }
    assert {c: (visit.column(c).unit, visit.column(c).ucd) for c in expected} == expected


def test_dp02_is_documented_and_marks_principal_columns(dp02: Catalog) -> None:
    assert dp02.description
    for table in dp02.tables:
        assert table.description, table.name
        undocumented = [c.name for c in table.columns if len(c.description) < 10]
        assert not undocumented, (table.name, undocumented)
        assert table.column(table.primary_key[0]).principal
    assert not dp02.table("Object").column("u_psfFluxErr").principal


def test_default_catalog_path() -> None:
    path = default_catalog_path()
    assert path.name == "dp02.yaml" and path.is_file()
    assert load_catalog(path).source == str(path)


def test_unknown_default_catalog_lists_the_built_in_ones() -> None:
    with pytest.raises(SchemaError, match=r"no built-in schema named 'dp99'.*dp02"):
        default_catalog_path("dp99")
    with pytest.raises(SchemaError, match="no built-in schema"):
        default_catalog_path("../schema/dp02")


# --- a file written the way lsst/sdm_schemas writes them --------------------------------


def test_sdm_style_file_parses() -> None:
    catalog = load_catalog(SCHEMAS / "sdm_style.yaml")
    assert catalog.name == "dp02_dc2_catalogs"
    assert catalog.overlap_arcsec == 30.0
    assert catalog.description.startswith("Data Preview 0.2 contains")
    assert [t.name for t in catalog.tables] == [
        "Object",
        "Source",
        "ForcedSource",
        "CcdVisit",
        "CoaddPatches",
    ]
    obj = catalog.table("object")
    assert [c.name for c in obj.columns][:3] == ["objectId", "coord_dec", "coord_ra"]
    assert (obj.ra_column, obj.dec_column, obj.key_column) == ("coord_ra", "coord_dec", "objectId")
    assert obj.column("coord_ra").unit == "deg"  # from fits:tunit
    assert obj.column("deblend_nChild").unit == ""  # `fits:tunit:` with no value
    assert obj.column("skymap").pg_type == "char(12)"
    assert obj.column("objectId").principal and not obj.column("skymap").principal
    assert not obj.column("objectId").nullable  # a primary key is never null


def test_sdm_style_children_and_replicated_tables() -> None:
    catalog = load_catalog(SCHEMAS / "sdm_style.yaml")
    source, forced = catalog.table("Source"), catalog.table("ForcedSource")
    assert (source.director, source.director_key) == ("Object", "objectId")  # from an @id
    assert (forced.director, forced.director_key) == ("Object", "objectId")  # from the FK
    assert not forced.column("objectId").nullable  # it places rows in chunks
    assert [fk.name for fk in forced.foreign_keys] == ["Object_ForcedSource"]  # Unique ignored
    patches = catalog.table("CoaddPatches")  # its "@id" is "#coaddpatches"
    assert patches.kind is TableKind.REPLICATED
    assert patches.primary_key == ("lsst_tract", "lsst_patch")
    assert patches.column("s_region").pg_type == "char(512)"
    assert catalog.table("CcdVisit").column("expMidpt").pg_type == "timestamp"


# --- bad input ------------------------------------------------------------------------------

# file, table, column, words the message must hold
BAD_FILES = [
    ("bad_yaml_syntax", None, None, ["YAML syntax error", "line 9"]),
    ("bad_top_level", None, None, ["top level must be a mapping", "found a list"]),
    ("bad_no_name", None, None, ["no catalog `name`"]),
    ("bad_no_tables", None, None, ["no tables", "`tables:`"]),
    ("bad_catalog_name", None, None, ["invalid catalog name", "'dp-02'"]),
    ("bad_overlap", None, None, ["qserv:overlap", "positive"]),
    ("bad_unknown_datatype", "Object", "psfFlux", ["unknown datatype 'float64'", "double"]),
    ("bad_char_length", "Object", "band", ["length must be a positive integer", "found 0"]),
    ("bad_missing_kind", "CcdVisit", None, ["qserv:kind: director|child|replicated"]),
    ("bad_unknown_kind", "CcdVisit", None, ["unknown qserv:kind 'partitioned'"]),
    ("bad_child_without_director", "Source", None, ["without qserv:director", "Object"]),
    ("bad_child_director_missing", "Source", None, ["'Objects' does not exist"]),
    ("bad_child_director_not_director", "Source", None, ["'CcdVisit' is a replicated table"]),
    ("bad_child_without_director_key", "Source", None, ["without director key"]),
    ("bad_director_without_ra", "Object", None, ["without qserv:ra_column"]),
    ("bad_director_position_not_numeric", "Object", "refBand", ["must be float or double"]),
    ("bad_director_without_primary_key", "Object", None, ["without primaryKey"]),
    ("bad_primary_key_missing", "Object", "objId", ["missing key", "primaryKey"]),
    ("bad_foreign_key_missing", "Source", "object_id", ["missing key", "ForeignKey"]),
    ("bad_director_key_missing", "Source", "parentId", ["missing key", "qserv:director_key"]),
    ("bad_duplicate_table", "OBJECT", None, ["duplicate table name", "'Object'"]),
    ("bad_duplicate_column", "Object", "Coord_RA", ["duplicate column name", "'coord_ra'"]),
    ("bad_identifier", "Object", "psf-flux", ["invalid column name", "not a valid identifier"]),
    ("bad_identifier_too_long", "ccd_visit_metadata", None, ["56 characters", "limit is 55"]),
    ("bad_reserved_word", "Order", None, ["invalid table name", "reserved word"]),
    ("bad_reserved_column", "Object", "chunk_id", ["reserved", "rename the column"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "table", "column", "words"), BAD_FILES, ids=lambda x: x)
def test_bad_file(name: str, table: str | None, column: str | None, words: list[str]) -> None:
    path = SCHEMAS / f"{name}.yaml"
    with pytest.raises(SchemaError) as info:
        load_catalog(path)
    message = str(info.value)
    assert message.startswith(str(path))
    if table is not None:
        assert f"table {table}" in message
    if column is not None:
        assert f"column {column}" in message
    for word in words:
        assert word in message


def test_every_bad_fixture_is_tested() -> None:
    assert {p.stem for p in SCHEMAS.glob("bad_*.yaml")} == {case[0] for case in BAD_FILES}


def test_missing_file() -> None:
    with pytest.raises(SchemaError, match=r"nowhere\.yaml: file not found"):
        load_catalog(SCHEMAS / "nowhere.yaml")


OBJECT = """
name: sky
tables:
- name: Object
  primaryKey: "#Object.objectId"
  qserv:kind: director
  qserv:ra_column: coord_ra
  qserv:dec_column: coord_dec
  columns:
  - {name: objectId, "@id": "#Object.objectId", datatype: long}
  - {name: coord_ra, "@id": "#Object.coord_ra", datatype: double}
  - {name: coord_dec, "@id": "#Object.coord_dec", datatype: double}
"""
SOURCE = """
- name: Source
  qserv:kind: child
  qserv:director: Object
  qserv:director_key: objectId
  columns:
  - {name: sourceId, datatype: long}
  - {name: objectId, datatype: long}
"""


def _edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_inline_base_parses() -> None:
    catalog = parse_catalog(OBJECT + SOURCE, "inline.yaml")
    assert catalog.source == "inline.yaml"
    assert catalog.table("Source").director_key == "objectId"


def test_references_fold_case_and_keep_the_file_spelling() -> None:
    text = _edit(OBJECT, "qserv:ra_column: coord_ra", "qserv:ra_column: COORD_RA")
    text = _edit(text, 'primaryKey: "#Object.objectId"', 'primaryKey: "#object.OBJECTID"')
    obj = parse_catalog(text, "inline.yaml").table("Object")
    assert (obj.ra_column, obj.key_column) == ("coord_ra", "objectId")


INLINE_CASES = [
    (
        "duplicate_yaml_key",
        _edit(OBJECT, "  qserv:kind: director\n", "  qserv:kind: director\n  qserv:kind: child\n"),
        None,
        None,
        ["YAML syntax error at line 7", "duplicate key 'qserv:kind'"],
    ),
    (
        "unknown_annotation",
        _edit(OBJECT, "qserv:ra_column:", "qserv:ra_col:"),
        "Object",
        None,
        ["unknown annotation qserv:ra_col", "qserv:ra_column"],
    ),
    (
        "annotation_of_another_kind",
        _edit(OBJECT, "  qserv:kind: director\n", "  qserv:kind: director\n  qserv:director: X\n"),
        "Object",
        None,
        ["qserv:director applies only to child tables"],
    ),
    (
        "composite_director_key",
        _edit(OBJECT, 'primaryKey: "#Object.objectId"', "primaryKey: [objectId, coord_ra]"),
        "Object",
        None,
        ["must be one column", "objectId, coord_ra"],
    ),
    (
        "primary_key_of_another_table",
        OBJECT + _edit(SOURCE, "  columns:", '  primaryKey: "#Object.objectId"\n  columns:'),
        "Source",
        "objectId",
        ["names a column of table Object"],
    ),
    (
        "foreign_key_to_missing_table",
        OBJECT
        + _edit(SOURCE, "  qserv:director_key: objectId\n", "")
        + """  constraints:
  - {"@type": ForeignKey, name: fk, columns: [objectId], referencedColumns: ["#Obj.objectId"]}
""",
        "Source",
        "objectId",
        ["missing key", "refers to table Obj"],
    ),
    (
        "director_key_type_mismatch",
        OBJECT + _edit(SOURCE, "objectId, datatype: long", "objectId, datatype: char"),
        "Source",
        "objectId",
        ["is char", "Object.objectId, is long"],
    ),
    (
        "child_of_a_child",
        OBJECT
        + SOURCE
        + _edit(SOURCE, "name: Source", "name: SourceExtra").replace(
            "qserv:director: Object", "qserv:director: Source"
        ),
        "SourceExtra",
        None,
        ["'Source' is a child table, not a director"],
    ),
    (
        "clash_with_overlap_table",
        OBJECT + _edit(SOURCE, "name: Source", "name: Object_Overlap"),
        "Object_Overlap",
        None,
        ["clashes with the overlap table of director Object"],
    ),
    (
        "nullable_not_boolean",
        _edit(OBJECT, "datatype: long}", "datatype: long, nullable: maybe}"),
        "Object",
        "objectId",
        ["nullable must be true or false"],
    ),
    (
        "datatype_not_a_string",
        _edit(OBJECT, 'coord_dec", datatype: double', 'coord_dec", datatype: [double]'),
        "Object",
        "coord_dec",
        ["unknown datatype ['double']"],
    ),
    (
        "negative_overlap",
        _edit(OBJECT, "name: sky\n", "name: sky\nqserv:overlap: -5\n"),
        None,
        None,
        ["qserv:overlap must be a positive number", "-5"],
    ),
    (
        "table_without_columns",
        OBJECT + "- {name: Empty, qserv:kind: replicated}\n",
        "Empty",
        None,
        ["no columns"],
    ),
]


@pytest.mark.parametrize(
    ("text", "table", "column", "words"),
    [case[1:] for case in INLINE_CASES],
    ids=[case[0] for case in INLINE_CASES],
)
def test_bad_inline(text: str, table: str | None, column: str | None, words: list[str]) -> None:
    with pytest.raises(SchemaError) as info:
        parse_catalog(text, "my_catalog.yaml")
    message = str(info.value)
    assert message.startswith("my_catalog.yaml")
    if table is not None:
        assert f"table {table}" in message
    if column is not None:
        assert f"column {column}" in message
    for word in words:
        assert word in message
    assert (info.value.table, info.value.column) == (table, column)
