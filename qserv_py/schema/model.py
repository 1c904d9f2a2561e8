"""The catalog model: catalogs, tables and columns as the rest of qserv_py sees them.

Identifiers are case-insensitive (as in ADQL): lookups fold case, while ``name`` keeps the
spelling of the schema file, which results and metadata show. Physical names in
PostgreSQL are the lower-cased names (``sql_name``), so generated SQL never quotes them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum


class TableKind(StrEnum):
    DIRECTOR = "director"  # owns positions; partitioned by sky; has overlap
    CHILD = "child"  # rows live in their director row's chunk (via the director key)
    REPLICATED = "replicated"  # small; a full copy on every worker
    #: relates two director tables by their keys (Qserv's match tables); each row is stored
    #: in the chunk of each director row it names, flagged with which side placed it
    MATCH = "match"


#: Felis datatype -> PostgreSQL type. ``char``/``string``/``unicode`` take a length.
FELIS_TO_PG: dict[str, str] = {
    "boolean": "boolean",
    "byte": "smallint",
    "short": "smallint",
    "int": "integer",
    "long": "bigint",
    "float": "real",
    "double": "double precision",
    "char": "char",
    "string": "varchar",
    "unicode": "varchar",
    "text": "text",
    "binary": "bytea",
    "timestamp": "timestamp",
}

#: Felis datatype -> VOTable datatype (for TAP metadata).
FELIS_TO_VOTABLE: dict[str, str] = {
    "boolean": "boolean",
    "byte": "unsignedByte",
    "short": "short",
    "int": "int",
    "long": "long",
    "float": "float",
    "double": "double",
    "char": "char",
    "string": "char",
    "unicode": "unicodeChar",
    "text": "char",
    "binary": "unsignedByte",
    "timestamp": "char",
}

#: Columns every partitioned (director, child and match) table carries in PostgreSQL.
SPATIAL_INDEX = "spatial_index"
CHUNK_ID = "chunk_id"
#: A match table's copies also carry which side placed each copy in its chunk: bit 1 the
#: first director's row is in this chunk, bit 2 the second's, bit 4 this is the copy a
#: query of the match table alone reads (see qserv_py.query.matches)
MATCH_FLAGS = "match_flags"
FLAG_FIRST, FLAG_SECOND, FLAG_PRIMARY = 1, 2, 4

#: Catalog, table and column names are plain ASCII identifiers of at most 55 characters
#: (PostgreSQL's limit is 63; the rest leaves room for suffixes such as ``_overlap``).
#: Generated SQL writes them lower-cased; catalog and table names unquoted, so they may not
#: be PostgreSQL reserved words, column names through :func:`sql_identifier`, quoted when
#: they are one (real catalogs have columns named ``offset``, ``order``, ``size``...).
IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_IDENTIFIER_LENGTH = 55

_PG_RESERVED = """
all analyse analyze and any array as asc asymmetric authorization binary both case cast
check collate collation column concurrently constraint create cross current_catalog
current_date current_role current_schema current_time current_timestamp current_user
default deferrable desc distinct do else end except false fetch for foreign freeze from
full grant group having ilike in initially inner intersect into is isnull join lateral
leading left like limit localtime localtimestamp natural not notnull null offset on only
or order outer overlaps placing primary references returning right select session_user
similar some symmetric system_user table tablesample then to trailing true union unique
user using variadic verbose when where window with
"""
#: PostgreSQL keywords that cannot name a table or column unquoted.
PG_RESERVED_WORDS = frozenset(_PG_RESERVED.split())


def identifier_problem(name: str, *, column: bool = False) -> str | None:
    """Why ``name`` cannot be a catalog, table or (``column``) column name, or None if it
    can. A column may be a reserved word: generated SQL quotes it.

    >>> identifier_problem("coord_ra") is None
    True
    >>> identifier_problem("coord-ra")
    "'coord-ra' is not a valid identifier: use letters, digits and _, not starting with a digit"
    >>> identifier_problem("Order")
    "'Order' is a reserved word in PostgreSQL"
    >>> identifier_problem("Order", column=True) is None
    True
    """
    if not IDENTIFIER_RE.fullmatch(name):
        return (
            f"{name!r} is not a valid identifier: use letters, digits and _, "
            "not starting with a digit"
        )
    if len(name) > MAX_IDENTIFIER_LENGTH:
        return f"{name!r} is {len(name)} characters long; the limit is {MAX_IDENTIFIER_LENGTH}"
    if name.lower() in PG_RESERVED_WORDS and not column:
        return f"{name!r} is a reserved word in PostgreSQL"
    return None


def sql_identifier(name: str) -> str:
    """A column name as generated SQL writes it: lower-cased, and double-quoted if it is a
    PostgreSQL reserved word.

    >>> sql_identifier("coord_RA"), sql_identifier("Offset")
    ('coord_ra', '"offset"')
    """
    folded = name.lower()
    return f'"{folded}"' if folded in PG_RESERVED_WORDS else folded


@dataclass(frozen=True)
class Column:
    name: str
    datatype: str  # a key of FELIS_TO_PG
    length: int | None = None
    nullable: bool = True
    description: str = ""
    unit: str = ""
    ucd: str = ""
    principal: bool = False

    @property
    def sql_name(self) -> str:
        return self.name.lower()

    @property
    def sql_ident(self) -> str:
        """The name as generated SQL writes it (quoted if reserved, see sql_identifier)."""
        return sql_identifier(self.name)

    @property
    def pg_type(self) -> str:
        base = FELIS_TO_PG[self.datatype]
        if self.length is not None and self.datatype in ("char", "string", "unicode"):
            return f"{base}({self.length})"
        return base

    @property
    def votable_datatype(self) -> str:
        return FELIS_TO_VOTABLE[self.datatype]

    @property
    def arraysize(self) -> str | None:
        """VOTable arraysize: fixed for char(n), variable for strings."""
        if self.datatype == "char":
            return str(self.length or 1)
        if self.datatype in ("string", "unicode", "text", "binary", "timestamp"):
            return f"{self.length}*" if self.length else "*"
        return None


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    referenced_table: str
    referenced_columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    name: str
    kind: TableKind
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    description: str = ""
    # director tables: their position columns
    ra_column: str | None = None
    dec_column: str | None = None
    # child tables: the director table and this table's column holding the director key
    # (match tables: the first director and its key column)
    director: str | None = None
    director_key: str | None = None
    foreign_keys: tuple[ForeignKey, ...] = ()
    # match tables: the second director and this table's column holding its key
    director2: str | None = None
    director_key2: str | None = None

    @property
    def sql_name(self) -> str:
        return self.name.lower()

    @property
    def partitioned(self) -> bool:
        return self.kind is not TableKind.REPLICATED

    @functools.cached_property
    def _by_name(self) -> dict[str, Column]:
        return {col.sql_name: col for col in self.columns}

    def column(self, name: str) -> Column:
        """The column named ``name`` (case-insensitive); KeyError if there is none."""
        found = self._by_name.get(name.lower())
        if found is None:
            raise KeyError(name)
        return found

    def has_column(self, name: str) -> bool:
        return name.lower() in self._by_name

    @property
    def key_column(self) -> str | None:
        """The single-column primary key (the director key of a director table)."""
        return self.primary_key[0] if len(self.primary_key) == 1 else None

    @property
    def match_sides(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """A match table's (director, key column) of side 1 and of side 2."""
        assert self.kind is TableKind.MATCH
        assert self.director and self.director_key and self.director2 and self.director_key2
        return (self.director, self.director_key), (self.director2, self.director_key2)

    @property
    def stored_extra(self) -> tuple[str, ...]:
        """The columns qserv_py adds to this table's rows on the workers, in order."""
        if not self.partitioned:
            return ()
        extra = (SPATIAL_INDEX, CHUNK_ID)
        return (*extra, MATCH_FLAGS) if self.kind is TableKind.MATCH else extra


@dataclass(frozen=True)
class Catalog:
    name: str
    tables: tuple[Table, ...]
    description: str = ""
    #: overlap margin in arcseconds (director tables keep copies of rows this close to
    #: a chunk's edge)
    overlap_arcsec: float = 60.0
    source: str = ""  # the file it was read from, for messages
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def sql_name(self) -> str:
        return self.name.lower()

    def table(self, name: str) -> Table:
        """The table named ``name`` (case-insensitive); KeyError if there is none."""
        folded = name.lower()
        for table in self.tables:
            if table.sql_name == folded:
                return table
        raise KeyError(name)

    def has_table(self, name: str) -> bool:
        return any(t.sql_name == name.lower() for t in self.tables)

    def tables_of_kind(self, kind: TableKind) -> tuple[Table, ...]:
        return tuple(t for t in self.tables if t.kind is kind)
