"""The catalog schema: the model of catalogs, tables and columns, read from Felis YAML."""

from __future__ import annotations

from qserv_py.schema.felis import (
    default_catalog,
    default_catalog_path,
    load_catalog,
    parse_catalog,
)
from qserv_py.schema.model import (
    CHUNK_ID,
    FELIS_TO_PG,
    FELIS_TO_VOTABLE,
    SPATIAL_INDEX,
    Catalog,
    Column,
    ForeignKey,
    Table,
    TableKind,
)

__all__ = [
    "CHUNK_ID",
    "FELIS_TO_PG",
    "FELIS_TO_VOTABLE",
    "SPATIAL_INDEX",
    "Catalog",
    "Column",
    "ForeignKey",
    "Table",
    "TableKind",
    "default_catalog",
    "default_catalog_path",
    "load_catalog",
    "parse_catalog",
]
