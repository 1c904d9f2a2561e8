"""Read Felis YAML (the schema format of lsst/sdm_schemas) into the catalog model.

A Felis file lists tables and their columns, with ``"@id"``s such as ``"#Object.objectId"``
that primary keys and foreign-key constraints refer to. qserv_py adds a few ``qserv:``
annotations saying how each table is laid out on the workers::

    qserv:overlap: 60                 # top level, arcsec (default 60)
    tables:
    - name: Object
      qserv:kind: director            # director | child | replicated
      qserv:ra_column: coord_ra       # directors: position columns
      qserv:dec_column: coord_dec
      primaryKey: "#Object.objectId"  # directors: the director key
    - name: Source
      qserv:kind: child
      qserv:director: Object
      qserv:director_key: objectId    # optional if a ForeignKey references Object's key
      qserv:ra_column: ra             # optional: the child's own position (both or
      qserv:dec_column: dec           # neither): areaspec filters by it, and a load can
                                      # place rows of unknown director key by it
    - name: RefObjMatch
      qserv:kind: match               # relates two directors (Qserv's match tables)
      qserv:director1: RefObject      # the first director and the column of this table
      qserv:director_key1: refId      # holding its key (NULL: no row on that side)
      qserv:director2: Object         # the second director and its key column
      qserv:director_key2: objectId

Every other key (``mysql:``, ``tap:``, ``votable:``, ``indexes`` ...) is accepted and
ignored. Every problem raises :class:`~qserv_py.errors.SchemaError` naming the file, the
table and the column, and saying what to change. Columns that place rows on the sky
(primary keys, director positions, director keys of children) are made NOT NULL; the
two keys of a match table may be NULL (a match row with one side only).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, NoReturn

import yaml

from qserv_py.errors import SchemaError
from qserv_py.schema.model import (
    CHUNK_ID,
    FELIS_TO_PG,
    MATCH_FLAGS,
    SPATIAL_INDEX,
    Catalog,
    Column,
    ForeignKey,
    Table,
    TableKind,
    identifier_problem,
)

DEFAULT_OVERLAP_ARCSEC = 60.0
RESERVED_COLUMNS = (SPATIAL_INDEX, CHUNK_ID, MATCH_FLAGS)
_CATALOG_KEYS = ("qserv:overlap",)
_MATCH_KEYS = (
    "qserv:director1",
    "qserv:director_key1",
    "qserv:director2",
    "qserv:director_key2",
)
_TABLE_KEYS = (
    "qserv:kind",
    "qserv:ra_column",
    "qserv:dec_column",
    "qserv:director",
    "qserv:director_key",
    *_MATCH_KEYS,
)
#: keys that only tables of these kinds may have
_KIND_KEYS = {
    ("qserv:ra_column", "qserv:dec_column"): (TableKind.DIRECTOR, TableKind.CHILD),
    ("qserv:director", "qserv:director_key"): (TableKind.CHILD,),
    _MATCH_KEYS: (TableKind.MATCH,),
}
_NUMERIC = ("float", "double")
_TYPE_FAMILIES = (
    ("byte", "short", "int", "long"),
    ("float", "double"),
    ("char", "string", "unicode", "text"),
)


# --- public API -----------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def parse_catalog(text: str, source: str) -> Catalog:
    """The catalog described by the Felis YAML ``text``; ``source`` names it in messages.

    Remembered (the model is immutable): every load, query and command reads its catalog
    from the czar, and parsing dp02's schema took longer than a small query.
    """
    return _Reader(source).read(_load_yaml(text, source))


def load_catalog(path: str | Path) -> Catalog:
    """The catalog described by the Felis YAML file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(path, "file not found; give the path of a Felis YAML file") from None
    except IsADirectoryError:
        raise SchemaError(path, "is a directory; give the path of a Felis YAML file") from None
    except UnicodeDecodeError as exc:
        raise SchemaError(path, f"not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise SchemaError(path, f"cannot be read: {exc.strerror}") from None
    return parse_catalog(text, str(path))


def default_catalog_path(name: str = "dp02") -> Path:
    """The path of a schema shipped with qserv_py (``qserv_py/schema/<name>.yaml``)."""
    package = resources.files(__package__ or "qserv_py.schema")
    available = sorted(p.name.removesuffix(".yaml") for p in package.iterdir() if _is_yaml(p))
    if name not in available:
        raise SchemaError(
            f"{name}.yaml",
            f"no built-in schema named {name!r}; built-in schemas: {', '.join(available)}",
        )
    return Path(str(package / f"{name}.yaml"))


def default_catalog(name: str = "dp02") -> Catalog:
    """A schema shipped with qserv_py, parsed (``dp02``: Object, Source, ForcedSource, CcdVisit)."""
    return load_catalog(default_catalog_path(name))


def _is_yaml(entry: Traversable) -> bool:
    return entry.is_file() and entry.name.endswith(".yaml")


# --- YAML -------------------------------------------------------------------------------


# libyaml's parser when PyYAML has it (about ten times faster), with the same constructor
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise SchemaError(source, f"YAML syntax error{where}: {problem}; fix the file") from None
    except yaml.YAMLError as exc:
        raise SchemaError(source, f"YAML syntax error: {exc}; fix the file") from None


# --- the reader --------------------------------------------------------------------------


@dataclasses.dataclass
class _RawTable:
    """A table between the passes: columns read, keys and kind not yet resolved."""

    name: str
    doc: dict[str, Any]
    columns: list[Column]
    kind: TableKind | None = None
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    ra_column: str | None = None
    dec_column: str | None = None
    director: str | None = None
    director_key: str | None = None
    director2: str | None = None
    director_key2: str | None = None

    def find(self, name: str) -> Column | None:
        folded = name.lower()
        return next((c for c in self.columns if c.sql_name == folded), None)


class _Reader:
    """Turns one loaded Felis document into a Catalog, checking it on the way."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tables: list[_RawTable] = []
        self.table_ids: dict[str, _RawTable] = {}  # "#Object" -> table
        self.column_ids: dict[str, tuple[_RawTable, Column]] = {}  # "#Object.ra" -> ...

    def error(self, problem: str, table: str | None = None, column: str | None = None) -> NoReturn:
        raise SchemaError(self.source, problem, table=table, column=column)

    def read(self, doc: Any) -> Catalog:
        if not isinstance(doc, dict):
            found = "nothing" if doc is None else f"a {type(doc).__name__}"
            self.error(
                f"the top level must be a mapping with `name` and `tables`, found {found}; "
                "is this a Felis schema file?"
            )
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            self.error("no catalog `name` at the top level; add `name: <catalog name>`")
        self.check_identifier(name, "catalog name")
        self.check_qserv_keys(doc, _CATALOG_KEYS, "at the top level")
        overlap = self.read_overlap(doc.get("qserv:overlap", DEFAULT_OVERLAP_ARCSEC))
        tables = doc.get("tables")
        if not isinstance(tables, list) or not tables:
            self.error(f"catalog {name} has no tables; add a `tables:` list")

        for index, table_doc in enumerate(tables, start=1):
            self.read_table(index, table_doc)
        for table in self.tables:
            self.resolve_keys(table)
            self.resolve_kind(table)
        for table in self.tables:
            if table.kind is TableKind.CHILD:
                self.resolve_child(table)
            elif table.kind is TableKind.MATCH:
                self.resolve_match(table)
        self.check_overlap_names()
        return Catalog(
            name=name,
            tables=tuple(self.build(t) for t in self.tables),
            description=_text(doc.get("description")),
            overlap_arcsec=overlap,
            source=self.source,
        )

    # -- checks shared by all levels

    def check_identifier(
        self, name: str, what: str, table: str | None = None, column: str | None = None
    ) -> None:
        problem = identifier_problem(name, column=what == "column name")
        if problem is not None:
            self.error(f"invalid {what}: {problem}; rename it", table, column)

    def check_qserv_keys(
        self, doc: dict[str, Any], known: tuple[str, ...], where: str, table: str | None = None
    ) -> None:
        for key in doc:
            if isinstance(key, str) and key.startswith("qserv:") and key not in known:
                self.error(
                    f"unknown annotation {key} {where}; known here: {', '.join(known)}", table
                )

    def read_overlap(self, value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value <= 0:
            self.error(
                f"qserv:overlap must be a positive number of arcseconds, found {value!r}; "
                f"remove it for the default ({DEFAULT_OVERLAP_ARCSEC:g})"
            )
        return float(value)

    # -- pass 1: tables and columns

    def read_table(self, index: int, doc: Any) -> None:
        if not isinstance(doc, dict):
            self.error(f"table #{index} is not a mapping; each table needs `name` and `columns`")
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            self.error(f"table #{index} has no `name`; add `name: <table name>`")
        self.check_identifier(name, "table name", table=name)
        other = self.find_table(name)
        if other is not None:
            self.error(
                f"duplicate table name: {_already(name, other.name)} (names are "
                "case-insensitive); rename or remove one",
                table=name,
            )
        self.check_qserv_keys(doc, _TABLE_KEYS, "on a table", table=name)
        columns_doc = doc.get("columns")
        if not isinstance(columns_doc, list) or not columns_doc:
            self.error("table has no columns; add a `columns:` list", table=name)
        table = _RawTable(name=name, doc=doc, columns=[])
        for position, column_doc in enumerate(columns_doc, start=1):
            column = self.read_column(name, position, column_doc)
            twin = table.find(column.name)
            if twin is not None:
                self.error(
                    f"duplicate column name: {_already(column.name, twin.name)} in this table "
                    "(names are case-insensitive); rename or remove one",
                    table=name,
                    column=column.name,
                )
            table.columns.append(column)
            if isinstance(column_doc.get("@id"), str):
                self.column_ids[column_doc["@id"]] = (table, column)
        self.tables.append(table)
        if isinstance(doc.get("@id"), str):
            self.table_ids[doc["@id"]] = table

    def read_column(self, table: str, position: int, doc: Any) -> Column:
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not doc["name"]:
            self.error(f"column #{position} has no `name`; add `name: <column name>`", table)
        name: str = doc["name"]
        self.check_identifier(name, "column name", table, name)
        if name.lower() in RESERVED_COLUMNS:
            self.error(
                f"column name {name!r} is reserved: qserv_py adds {SPATIAL_INDEX}, "
                f"{CHUNK_ID} and {MATCH_FLAGS} to partitioned tables itself; rename the column",
                table,
                name,
            )
        self.check_qserv_keys(doc, (), "on a column", table=table)
        datatype = doc.get("datatype")
        if not isinstance(datatype, str) or datatype not in FELIS_TO_PG:
            self.error(
                f"unknown datatype {datatype!r}; use one of: {', '.join(FELIS_TO_PG)}",
                table,
                name,
            )
        length = doc.get("length")
        if length is not None and (
            not isinstance(length, int) or isinstance(length, bool) or length <= 0
        ):
            self.error(
                f"length must be a positive integer, found {length!r}; "
                f"give the maximum number of characters of this {datatype} column",
                table,
                name,
            )
        nullable = doc.get("nullable", True)
        if not isinstance(nullable, bool):
            self.error(f"nullable must be true or false, found {nullable!r}", table, name)
        principal = doc.get("tap:principal", 0)
        if principal not in (0, 1):  # True and False compare equal to 1 and 0
            self.error(f"tap:principal must be 0 or 1, found {principal!r}", table, name)
        unit = doc.get("ivoa:unit") or doc.get("fits:tunit") or doc.get("fits.tunit")
        return Column(
            name=name,
            datatype=datatype,
            length=length,
            nullable=nullable,
            description=_text(doc.get("description")),
            unit=_text(unit),
            ucd=_text(doc.get("ivoa:ucd")),
            principal=bool(principal),
        )

    # -- pass 2: keys and kinds

    def resolve(self, ref: Any, table: _RawTable, what: str) -> tuple[_RawTable, Column]:
        """The table and column that ``ref`` (an ``"@id"`` or a bare column name) means."""
        if not isinstance(ref, str) or not ref:
            self.error(
                f"{what} must be a column name or a '#Table.column' id, found {ref!r}",
                table.name,
            )
        if ref.startswith("#") and ref in self.column_ids:
            return self.column_ids[ref]
        target, column_name = table, ref
        if "." in ref:
            table_name, column_name = ref.removeprefix("#").split(".", 1)
            found = self.table_ids.get(f"#{table_name}") or self.find_table(table_name)
            if found is None:
                self.error(
                    f"missing key: {what} {ref!r} refers to table {table_name}, which is not "
                    "in the catalog; fix the reference",
                    table.name,
                    column_name,
                )
            target = found
        column = target.find(column_name)
        if column is None:
            named = what if ref == column_name else f"{what} {ref!r}"
            self.error(
                f"missing key: {named} names column {column_name}, which table "
                f"{target.name} does not have; fix the reference or add the column",
                table.name,
                column_name,
            )
        return target, column

    def own_column(self, ref: Any, table: _RawTable, what: str) -> Column:
        """Resolve ``ref``, which must name a column of ``table`` itself."""
        target, column = self.resolve(ref, table, what)
        if target is not table:
            self.error(
                f"{what} {ref!r} names a column of table {target.name}; "
                f"it must name a column of {table.name}",
                table.name,
                column.name,
            )
        return column

    def find_table(self, name: str) -> _RawTable | None:
        return next((t for t in self.tables if t.name.lower() == name.lower()), None)

    def resolve_keys(self, table: _RawTable) -> None:
        refs = table.doc.get("primaryKey")
        refs = [] if refs is None else refs if isinstance(refs, list) else [refs]
        table.primary_key = tuple(self.own_column(r, table, "primaryKey").name for r in refs)
        fks = []
        for index, constraint in enumerate(table.doc.get("constraints") or [], start=1):
            if isinstance(constraint, dict) and constraint.get("@type") == "ForeignKey":
                fks.append(self.read_foreign_key(table, index, constraint))
        table.foreign_keys = tuple(fks)

    def read_foreign_key(self, table: _RawTable, index: int, doc: dict[str, Any]) -> ForeignKey:
        name = _text(doc.get("name")) or f"{table.name}_fk{index}"
        what = f"ForeignKey {name}"
        columns = [self.own_column(r, table, f"{what} column") for r in _refs(doc, "columns")]
        referenced = [
            self.resolve(r, table, f"{what} referenced column")
            for r in _refs(doc, "referencedColumns")
        ]
        ref_tables = {t.name for t, _ in referenced}
        if not columns or len(columns) != len(referenced) or len(ref_tables) != 1:
            self.error(
                f"ForeignKey {name} needs `columns` and `referencedColumns` lists of the same "
                "length, the referenced columns all in one table",
                table.name,
            )
        return ForeignKey(
            name=name,
            columns=tuple(c.name for c in columns),
            referenced_table=ref_tables.pop(),
            referenced_columns=tuple(c.name for _, c in referenced),
        )

    def resolve_kind(self, table: _RawTable) -> None:
        value = table.doc.get("qserv:kind")
        kinds = "|".join(k.value for k in TableKind)
        if value is None:
            self.error(
                f"missing qserv:kind; add `qserv:kind: {kinds}` to say how the table is "
                "laid out (director: has positions; child: rows follow a director's; "
                "replicated: small, copied to every worker; match: relates two directors' "
                "rows by their keys)",
                table.name,
            )
        try:
            table.kind = TableKind(value)
        except ValueError:
            self.error(f"unknown qserv:kind {value!r}; use one of {kinds}", table.name)
        for keys, allowed in _KIND_KEYS.items():
            for key in keys:
                if table.kind not in allowed and key in table.doc:
                    names = " and ".join(k.value for k in allowed)
                    self.error(
                        f"{key} applies only to {names} tables, and this table is "
                        f"qserv:kind {table.kind.value}; remove it or change the kind",
                        table.name,
                    )
        if table.kind is TableKind.DIRECTOR:
            self.resolve_director(table)
        elif table.kind is TableKind.CHILD and (
            "qserv:ra_column" in table.doc or "qserv:dec_column" in table.doc
        ):
            # a child's own position: qserv_areaspec_* filters it, and a load can place its
            # rows whose director key is unknown by it (place_unknown_by_position)
            self.resolve_position(
                table,
                "child table with only one of qserv:ra_column, "
                "qserv:dec_column; give both, or neither",
            )

    def resolve_director(self, table: _RawTable) -> None:
        self.resolve_position(table, "director table without {key}")
        self.resolve_director_key(table)

    def resolve_position(self, table: _RawTable, missing: str) -> None:
        axes = (("qserv:ra_column", "right ascension"), ("qserv:dec_column", "declination"))
        for key, axis in axes:
            ref = table.doc.get(key)
            if ref is None:
                self.error(
                    f"{missing.format(key=key)}; add `{key}: <column>` naming its "
                    f"{axis} column (degrees)",
                    table.name,
                )
            column = self.own_column(ref, table, key)
            if column.datatype not in _NUMERIC:
                self.error(
                    f"{key} names a column of datatype {column.datatype}; a position column "
                    f"must be float or double (degrees)",
                    table.name,
                    column.name,
                )
            setattr(table, "ra_column" if key == "qserv:ra_column" else "dec_column", column.name)

    def resolve_director_key(self, table: _RawTable) -> None:
        if not table.primary_key:
            self.error(
                f'director table without primaryKey; add `primaryKey: "#{table.name}.<column>"` '
                "naming its unique object id (the director key)",
                table.name,
            )
        if len(table.primary_key) != 1:
            self.error(
                f"the primaryKey of a director table must be one column (the director key), "
                f"found {', '.join(table.primary_key)}",
                table.name,
            )

    # -- pass 3: children, once every director is known

    def resolve_child(self, table: _RawTable) -> None:
        director = self.find_director(table, "qserv:director")
        table.director = director.name
        key = table.doc.get("qserv:director_key")
        if key is not None:
            column = self.own_column(key, table, "qserv:director_key")
        else:
            column = self.infer_director_key(table, director)
        director_key = director.find(director.primary_key[0])
        assert director_key is not None
        if not _compatible(column.datatype, director_key.datatype):
            self.error(
                f"director key {column.name} is {column.datatype} but the key it refers to, "
                f"{director.name}.{director_key.name}, is {director_key.datatype}; "
                "give them the same datatype",
                table.name,
                column.name,
            )
        table.director_key = column.name

    def find_director(self, table: _RawTable, key: str) -> _RawTable:
        """The director table that ``key`` (qserv:director, qserv:director1...) names."""
        name = table.doc.get(key)
        directors = [t.name for t in self.tables if t.kind is TableKind.DIRECTOR]
        choices = ", ".join(directors) or "none; mark one with `qserv:kind: director`"
        if name is None:
            self.error(
                f"{table.kind} table without {key}; add `{key}: <table>` naming a director "
                f"table (director tables: {choices})",
                table.name,
            )
        director = self.table_ids.get(name) if isinstance(name, str) else None
        director = director or (self.find_table(name) if isinstance(name, str) else None)
        if director is None:
            self.error(
                f"{key} {name!r} does not exist in this catalog; "
                f"name a director table (director tables: {choices})",
                table.name,
            )
        if director.kind is not TableKind.DIRECTOR:
            self.error(
                f"{key} {name!r} is a {director.kind} table, not a director; "
                f"name a director table (director tables: {choices})",
                table.name,
            )
        return director

    def resolve_match(self, table: _RawTable) -> None:
        """A match table's two directors and the columns holding their keys (Qserv's
        dirTable1/dirColName1, dirTable2/dirColName2)."""
        keys: list[Column] = []
        for side in ("1", "2"):
            director = self.find_director(table, f"qserv:director{side}")
            what = f"qserv:director_key{side}"
            ref = table.doc.get(what)
            if ref is None:
                self.error(
                    f"match table without {what}; add `{what}: <column>` naming the column "
                    f"that holds the {director.name} key",
                    table.name,
                )
            column = self.own_column(ref, table, what)
            director_key = director.find(director.primary_key[0])
            assert director_key is not None
            if column.datatype not in _TYPE_FAMILIES[0] or not _compatible(
                column.datatype, director_key.datatype
            ):
                self.error(
                    f"{what} {column.name} is {column.datatype} but the key it refers to, "
                    f"{director.name}.{director_key.name}, is {director_key.datatype}; "
                    "give them the same integer datatype",
                    table.name,
                    column.name,
                )
            if keys and keys[0].name == column.name:
                self.error(
                    f"qserv:director_key1 and qserv:director_key2 both name {column.name}; "
                    "a match table holds the key of each side in a column of its own",
                    table.name,
                    column.name,
                )
            keys.append(column)
            if side == "1":
                table.director, table.director_key = director.name, column.name
            else:
                table.director2, table.director_key2 = director.name, column.name

    def infer_director_key(self, table: _RawTable, director: _RawTable) -> Column:
        """The child's column that a ForeignKey constraint links to the director key."""
        key = director.primary_key[0]
        found = {
            fk.columns[0]
            for fk in table.foreign_keys
            if fk.referenced_table == director.name and fk.referenced_columns == (key,)
        }
        if len(found) != 1:
            how_many = "several ForeignKeys reference" if found else "no ForeignKey references"
            self.error(
                f"child table without director key: no qserv:director_key, and {how_many} "
                f"{director.name}.{key}; add `qserv:director_key: <column>` naming the column "
                f"that holds the {director.name} key",
                table.name,
            )
        column = table.find(found.pop())
        assert column is not None
        return column

    def check_overlap_names(self) -> None:
        names = {t.name.lower(): t.name for t in self.tables}
        for table in self.tables:
            overlap = f"{table.name.lower()}_overlap"
            if table.kind is TableKind.DIRECTOR and overlap in names:
                self.error(
                    f"table name clashes with the overlap table of director {table.name} "
                    f"({overlap}), which qserv_py creates itself; rename the table",
                    names[overlap],
                )

    def build(self, table: _RawTable) -> Table:
        """The finished Table; columns that place rows on the sky become NOT NULL."""
        placing = {*table.primary_key, table.ra_column, table.dec_column}
        if table.kind is TableKind.CHILD:
            placing.add(table.director_key)
        columns = tuple(
            dataclasses.replace(c, nullable=False) if c.name in placing else c
            for c in table.columns
        )
        assert table.kind is not None
        return Table(
            name=table.name,
            kind=table.kind,
            columns=columns,
            primary_key=table.primary_key,
            description=_text(table.doc.get("description")),
            ra_column=table.ra_column,
            dec_column=table.dec_column,
            director=table.director,
            director_key=table.director_key,
            foreign_keys=table.foreign_keys,
            director2=table.director2,
            director_key2=table.director_key2,
        )


def _text(value: Any) -> str:
    """A string field that YAML may have left empty (``fits:tunit:``) or made a number."""
    return "" if value is None else str(value).strip()


def _already(name: str, other: str) -> str:
    return (
        f"{name!r} is defined twice" if name == other else f"{name!r} is also defined as {other!r}"
    )


def _refs(doc: dict[str, Any], key: str) -> Iterator[Any]:
    value = doc.get(key)
    yield from (value if isinstance(value, list) else [] if value is None else [value])


def _compatible(a: str, b: str) -> bool:
    return a == b or any(a in family and b in family for family in _TYPE_FAMILIES)
