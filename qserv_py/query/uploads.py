"""Uploaded tables in queries (``TAP_UPLOAD.name``): their catalog, and their plan.

A query's uploads are Arrow tables (or, to plan only, their schemas). Each becomes a
table of the catalog ``tap_upload`` (:func:`upload_catalog`), so the qualify pass resolves
``TAP_UPLOAD.t`` and its columns like any table's, with suggestions for unknown names.

The planner then decides (:class:`Uploads`), for each reference to an upload in the
query's FROM:

- a **cross-match** (:mod:`qserv_py.query.xmatch`): the upload is joined with a director
  table by distance, with a constant radius no larger than the catalog's overlap. The
  targets are shipped partitioned like the catalog: a copy in each chunk that can hold a
  match, joined to the chunk's own rows by ``spatial_index`` ranges beside the predicate.
- otherwise the whole upload is shipped to every worker the query reads, as a small
  replicated table would be (joins by id, subqueries, joins with replicated tables).

The worker SQL names an upload by a token (:func:`token`) that execution
(:mod:`qserv_py.exec.uploads`) replaces with the name of the table it made for the query
on each worker; the plan (:class:`UploadPlan`) says what to ship (:func:`prepare`).

A plan made from the uploads' schemas holds no rows: it is the same for every upload of
those schemas, so a client plans a query shape once (the plan cache of
:class:`qserv_py.client.Client`) and :func:`with_data` gives the plan of each new
upload: the chunks that no cross-matched target and no uploaded director key reaches
left out, the rows to ship prepared — the plan the planner makes from the data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from sqlglot import exp

from qserv_py.errors import QueryError, UploadError
from qserv_py.exec.plan import ExecPlan
from qserv_py.query.analysis import conjuncts, from_sources
from qserv_py.query.chunking import assign_chunks
from qserv_py.query.qualify import UPLOADS, CatalogSet
from qserv_py.query.xmatch import CrossMatch, check_radius, density, partition_targets, spatial_join
from qserv_py.schema.model import (
    Catalog,
    Column,
    Table,
    TableKind,
    identifier_problem,
)

if TYPE_CHECKING:
    from qserv_py.query.analysis import Ref
    from qserv_py.query.context import PlanContext

#: the schema of the upload tables on the workers
SCHEMA = "qserv_upload"
#: columns a cross-match's shipped targets carry besides the upload's own
CHUNK, LO, HI = "qserv_chunk", "qserv_lo", "qserv_hi"

_ARROW_TO_FELIS: tuple[tuple[object, str], ...] = (
    (pa.types.is_boolean, "boolean"),
    (lambda t: t in (pa.int8(), pa.int16(), pa.uint8()), "short"),
    (lambda t: t in (pa.int32(), pa.uint16()), "int"),
    (lambda t: t in (pa.int64(), pa.uint32(), pa.uint64()), "long"),
    (lambda t: t in (pa.float16(), pa.float32()), "float"),
    (pa.types.is_float64, "double"),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "text"),
    (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "binary"),
    (lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t), "timestamp"),
    (pa.types.is_null, "text"),
)


def token(name: str, n: int = 0) -> str:
    """The name an upload's table has in worker SQL until execution names it.

    >>> token("t"), token("t", n=2)
    ('upload__t', 'upload__t__2')
    """
    return f"upload__{name}" + (f"__{n}" if n else "")


def _felis_type(kind: pa.DataType) -> str | None:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    for test, felis in _ARROW_TO_FELIS:
        if test(kind):  # type: ignore[operator]
            return felis
    return None


def _meta(f: pa.Field, key: str) -> str:
    value = (f.metadata or {}).get(key.encode())
    return value.decode(errors="replace") if value else ""


def upload_table(name: str, schema: pa.Schema) -> Table:
    """The table model of an upload: its columns' names, types and metadata (field
    metadata ``unit``, ``ucd``, ``description``). Names must be plain identifiers."""
    problem = identifier_problem(name)
    if problem is not None:
        raise UploadError(f"upload name {problem}; name the upload with letters, digits and _")
    columns = []
    for f in schema:
        label = f"upload {name}, column {f.name!r}"
        problem = identifier_problem(f.name)
        if problem is not None:
            raise UploadError(f"{label}: the name {problem}; rename the column")
        if f.name.lower().startswith("qserv_"):
            raise UploadError(f"{label}: names starting with qserv_ are reserved; rename it")
        felis = _felis_type(f.type)
        if felis is None:
            raise UploadError(
                f"{label} has the type {f.type}, which queries cannot use; upload numbers, "
                "booleans, strings or timestamps (one value per cell)"
            )
        columns.append(
            Column(
                f.name.lower(),
                felis,
                description=_meta(f, "description"),
                unit=_meta(f, "unit"),
                ucd=_meta(f, "ucd"),
            )
        )
    if not columns:
        raise UploadError(f"upload {name} has no columns")
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise UploadError(f"upload {name} repeats a column name (names ignore case): {names}")
    return Table(name.lower(), TableKind.REPLICATED, tuple(columns))


def upload_catalog(uploads: Mapping[str, pa.Schema | pa.Table]) -> Catalog:
    """The catalog ``tap_upload`` holding a query's uploads."""
    tables = tuple(
        upload_table(name, data.schema if isinstance(data, pa.Table) else data)
        for name, data in uploads.items()
    )
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise UploadError(f"upload names repeat (names ignore case): {sorted(names)}")
    return Catalog(UPLOADS, tables, description="the query's uploaded tables")


# --- what the plan carries ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class UploadUse:
    """One table execution makes on the workers for an upload."""

    name: str  # the upload's name (lower case)
    token: str  # its name in the worker SQL (``qserv_upload.<token>``)
    #: the columns shipped: (name, PostgreSQL type), the upload's then CHUNK, LO, HI
    columns: tuple[tuple[str, str], ...]
    xmatch: CrossMatch | None = None


class KeyJoin(NamedTuple):
    """``upload.column = director key`` in the query: the upload's keys name its chunks."""

    upload: str  # the upload's name (lower case)
    column: str
    catalog: str  # the director's catalog (SQL name)
    director: str  # the director table


@dataclass(frozen=True, eq=False)
class UploadPlan(ExecPlan):
    """An :class:`ExecPlan` whose worker SQL reads uploads: run it with
    :func:`qserv_py.exec.uploads.execute`, which ships them first."""

    uploads: tuple[UploadUse, ...] = ()
    #: token -> the rows to ship (targets partitioned for a cross-match), when the plan
    #: was made from the uploads' data; else execution prepares them
    shipments: Mapping[str, pa.Table] = field(default_factory=dict)
    #: the joins by director key that narrow the chunks once the keys are known
    key_joins: tuple[KeyJoin, ...] = ()


def shipped_columns(table: Table, xmatch: CrossMatch | None) -> tuple[tuple[str, str], ...]:
    columns = tuple((c.sql_name, c.pg_type) for c in table.columns)
    if xmatch is not None:
        columns += ((CHUNK, "bigint"), (LO, "bigint"), (HI, "bigint"))
    return columns


def prepare(use: UploadUse, data: pa.Table, chunks: set[int] | frozenset[int]) -> pa.Table:
    """The rows to ship for ``use``: the upload's columns (names lower-cased), and for a
    cross-match one row per target copy (:func:`partition_targets`) in ``chunks``."""
    names = [n for n, _ in use.columns if n not in (CHUNK, LO, HI)]
    lowered = {f.name.lower(): i for i, f in enumerate(data.schema)}
    missing = [n for n in names if n not in lowered]
    if missing:
        raise QueryError(f"upload {use.name} has no column {missing[0]}; it was planned with one")
    columns = [data.column(lowered[n]) for n in names]
    columns = [  # PostgreSQL gets dates as timestamps (see upload_table)
        c.cast(pa.timestamp("us")) if pa.types.is_date(c.type) else c for c in columns
    ]
    table = pa.Table.from_arrays(columns, names=names)
    xm = use.xmatch
    if xm is None:
        return table
    if xm.layout is None:
        return (
            table.slice(0, 0)
            .append_column(CHUNK, pa.array([], pa.int64()))
            .append_column(LO, pa.array([], pa.int64()))
            .append_column(HI, pa.array([], pa.int64()))
        )
    ra = _floats(table.column(xm.ra), use.name, xm.ra)
    dec = _floats(table.column(xm.dec), use.name, xm.dec)
    rows, chunk, lo, hi = partition_targets(ra, dec, xm.radius, xm.layout, xm.density)
    keep = np.isin(chunk, np.fromiter(chunks, np.int64, len(chunks)))
    rows, chunk, lo, hi = rows[keep], chunk[keep], lo[keep], hi[keep]
    out = table.take(pa.array(rows))
    for name, values in ((CHUNK, chunk), (LO, lo), (HI, hi)):
        out = out.append_column(name, pa.array(values, pa.int64()))
    return out


def narrow(
    chunks: set[int],
    uses: Iterable[UploadUse],
    key_joins: Iterable[KeyJoin],
    data: Mapping[str, pa.Table | pa.Schema],
    ctx: PlanContext,
) -> tuple[set[int], dict[str, pa.Table]]:
    """``chunks`` without those no cross-matched target of ``uses`` (that narrows) and no
    uploaded director key of ``key_joins`` can reach, given the uploads' ``data`` (by
    lower-case name; a schema narrows nothing); and the rows to ship of each
    cross-match, by token."""
    import pyarrow.compute as pc  # (here: slow to import)

    shipments: dict[str, pa.Table] = {}
    for use in uses:
        table = data.get(use.name)
        if use.xmatch is None or not isinstance(table, pa.Table):
            continue
        shipment = shipments[use.token] = prepare(use, table, chunks)
        if use.xmatch.narrows:
            chunks = chunks & shipment_chunks(shipment)
    for join in key_joins:
        table = data.get(join.upload)
        if not isinstance(table, pa.Table):
            continue
        values = table.column(_column_index(table, join.column))
        if not pa.types.is_integer(values.type):
            continue
        keys = pc.unique(values.drop_null()).to_pylist()
        chunks &= ctx.lookup_keys(join.catalog, join.director, keys)
    return chunks, shipments


def with_data(
    plan: ExecPlan, data: Mapping[str, pa.Table | pa.Schema], ctx: PlanContext
) -> ExecPlan:
    """``plan``, made from the uploads' schemas on ``ctx``, as the planner makes it from
    their ``data`` (by name): narrowed (:func:`narrow`), its chunks assigned again, and
    the rows of each upload prepared. (Any other plan is returned as it is.)"""
    if not isinstance(plan, UploadPlan) or not plan.uploads:
        return plan
    tables = {name.lower(): t for name, t in data.items()}
    chunks = {c for cs in plan.chunks.values() for c in cs}
    if plan.catalog is not None:
        chunks, shipments = narrow(chunks, plan.uploads, plan.key_joins, tables, ctx)
    else:
        shipments = {}
    for use in plan.uploads:
        table = tables.get(use.name)
        if use.xmatch is None and isinstance(table, pa.Table):
            shipments[use.token] = prepare(use, table, frozenset())
    assigned = assign_chunks(chunks, plan.catalog, ctx) if plan.catalog is not None else {}
    return replace(plan, chunks=assigned, shipments=shipments)


def _floats(column: pa.ChunkedArray, upload: str, name: str) -> npt.NDArray[np.float64]:
    import pyarrow.compute as pc  # (here: slow to import)

    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise QueryError(
            f"upload {upload}: column {name} is used as a position, but holds {kind}, not "
            "numbers (degrees)"
        )
    values = pc.cast(column, pa.float64()).combine_chunks()
    return np.asarray(values.fill_null(math.nan).to_numpy(zero_copy_only=False), np.float64)


def shipment_chunks(shipment: pa.Table) -> set[int]:
    """The chunks a cross-match shipment has targets in."""
    import pyarrow.compute as pc  # (here: slow to import)

    return set(pc.unique(shipment.column(CHUNK)).to_pylist())


# --- the planner's helper -------------------------------------------------------------------


def _shipped_table(alias: str, name: str) -> exp.Table:
    """``qserv_upload.<name> AS <alias>``."""
    return exp.Table(
        this=exp.to_identifier(name),
        db=exp.to_identifier(SCHEMA),
        alias=exp.TableAlias(this=exp.to_identifier(alias)),
    )


@dataclass
class _Match:
    xmatch: CrossMatch
    use: UploadUse
    #: where the predicate is: None for WHERE, else the join whose ON holds it
    join: exp.Join | None


class Uploads:
    """The uploads of one query, as the planner goes (see the module's docstring).

    The planner calls, for its outermost SELECT: :meth:`analyze` (which uploads are
    cross-matches), :meth:`restrict` (the chunk set), :meth:`rewrite` (the join on chunk
    and ranges), :meth:`name_tables` (on the worker SELECT); then :meth:`finish` on the
    plan of any query.
    """

    def __init__(self, ctx: PlanContext, data: Mapping[str, pa.Schema | pa.Table]) -> None:
        self.data = {name.lower(): d for name, d in data.items()}
        catalogs = dict(ctx.catalogs.catalogs)
        catalogs[UPLOADS] = upload_catalog(self.data)
        self.ctx = ctx.with_catalogs(CatalogSet(catalogs, ctx.catalogs.default))
        self.matches: list[_Match] = []
        self.key_joins: list[KeyJoin] = []
        self.shipments: dict[str, pa.Table] = {}

    @property
    def catalog(self) -> Catalog:
        return self.ctx.catalogs.catalogs[UPLOADS]

    def analyze(
        self, select: exp.Select, refs: list[Ref], nullable: set[str], overlap: set[str]
    ) -> None:
        """Find the cross-matches (and the joins by director key) of ``select``'s uploads.

        ``refs`` are its plain partitioned tables. A cross-match needs the director on a
        chunk's own rows (not an overlap side, not NULL-filled), and its predicate in
        WHERE, in an inner join's ON, or in the ON of the outer join that NULL-fills the
        upload: then the copies' join on chunk and ranges goes beside it.
        """
        uploads = {
            s.alias_or_name: s.name
            for s in from_sources(select)
            if isinstance(s, exp.Table) and s.text("db") == UPLOADS
        }
        if not uploads:
            return
        by_alias = {r.alias: r for r in refs}
        directors = {
            a: r
            for a, r in by_alias.items()
            if a not in overlap and a not in nullable and r.table.kind is TableKind.DIRECTOR
        }
        where = conjuncts(select.args.get("where"))
        places: list[tuple[exp.Expression, exp.Join | None]] = [(c, None) for c in where]
        for join in select.args.get("joins") or []:
            outer = join if join.side else None
            places += [(c, outer) for c in conjuncts(join.args.get("on"))]
        for conjunct, outer in places:
            if outer is None:
                self._id_join(conjunct, uploads, by_alias, nullable)
        matched: set[str] = set()
        for conjunct, join in places:
            found = spatial_join(conjunct, uploads, directors)
            if found is None or found[0] in matched:
                continue
            alias, ra, dec, director, radius = found
            if join is not None and not _fills(join, alias, director):
                continue
            ref = directors[director]
            check_radius(radius, ref)
            state = self.ctx.states.get(ref.catalog.sql_name)
            layout = state.layout if state is not None else None
            dens = None
            if state is not None and layout is not None:
                dens = density(layout, state.chunk_rows.get(ref.table.sql_name, {}))
            xm = CrossMatch(
                alias, ra, dec, radius, director, conjunct, layout, dens, narrows=join is None
            )
            name = uploads[alias]
            use = UploadUse(
                name,
                token(name, len(self.matches) + 1),
                shipped_columns(self.catalog.table(name), xm),
                xm,
            )
            self.matches.append(_Match(xm, use, join))
            matched.add(alias)

    def _id_join(
        self,
        conjunct: exp.Expression,
        uploads: Mapping[str, str],
        refs: Mapping[str, Ref],
        nullable: set[str],
    ) -> None:
        """Record ``t.id = o.<director key>`` (neither side NULL-filled)."""
        if not isinstance(conjunct, exp.EQ):
            return
        for mine, theirs in (
            (conjunct.this, conjunct.expression),
            (conjunct.expression, conjunct.this),
        ):
            if not (isinstance(mine, exp.Column) and isinstance(theirs, exp.Column)):
                continue
            ref = refs.get(theirs.table)
            if (
                mine.table in uploads
                and ref is not None
                and theirs.name == ref.director_key
                and mine.table not in nullable
                and ref.alias not in nullable
            ):
                self.key_joins.append(
                    KeyJoin(uploads[mine.table], mine.name, ref.catalog.sql_name, ref.director)
                )

    def restrict(self, chunks: set[int]) -> set[int]:
        """The chunk set without chunks no cross-matched target (or uploaded director
        key) can reach, when the uploads' data is at hand."""
        uses = [m.use for m in self.matches]
        chunks, shipments = narrow(chunks, uses, self.key_joins, self.data, self.ctx)
        self.shipments.update(shipments)
        return chunks

    def rewrite(self, select: exp.Select, chunk_list: str) -> None:
        """Join each cross-match's target copies of the chunk to its director's rows by
        the copy's spatial_index range, beside the cross-match predicate.

        A copy's ranges lie inside its chunk, so they also say ``o.chunk_id =
        t.qserv_chunk``; written out, PostgreSQL would join on that equality (comparing
        every target of a chunk with every object) instead of probing the btree on
        ``spatial_index`` once per range.
        """
        for match in self.matches:
            t, o = match.xmatch.alias, match.xmatch.director
            condition = exp.and_(
                exp.EQ(
                    this=exp.column(CHUNK, t), expression=exp.func("ANY", exp.column(chunk_list))
                ),
                exp.GTE(this=exp.column("spatial_index", o), expression=exp.column(LO, t)),
                exp.LT(this=exp.column("spatial_index", o), expression=exp.column(HI, t)),
                copy=False,
            )
            if match.join is not None:
                match.join.set("on", exp.and_(match.join.args["on"], condition, copy=False))
            else:
                select.where(condition, copy=False)

    def name_tables(self, worker: exp.Select) -> None:
        """The cross-matched uploads of the worker SELECT: their shipped tables."""
        tokens = {m.xmatch.alias: m.use.token for m in self.matches}
        for table in list(worker.find_all(exp.Table)):
            alias = table.alias_or_name
            if table.text("db") == UPLOADS and alias in tokens and table.parent_select is worker:
                table.replace(_shipped_table(alias, tokens[alias]))

    def finish(self, plan: ExecPlan) -> ExecPlan:
        """The plan with its uploads: every other reference to an upload reads the whole
        upload (``qserv_upload.upload__<name>``); their rows, if the data is at hand."""
        whole: dict[str, UploadUse] = {}

        def name(match: re.Match[str]) -> str:
            upload = match.group(1)
            if upload is None:
                return match.group(0)  # a string literal
            use = whole.get(upload)
            if use is None:
                table = self.catalog.table(upload)
                use = whole[upload] = UploadUse(
                    table.name, token(table.name), shipped_columns(table, None)
                )
            return f"{SCHEMA}.{use.token}"

        worker_sql = _UPLOAD_REF.sub(name, plan.worker_sql)
        uses = tuple(m.use for m in self.matches) + tuple(whole.values())
        if not uses:
            return plan
        for use in whole.values():
            data = self.data.get(use.name)
            if isinstance(data, pa.Table):
                self.shipments[use.token] = prepare(use, data, frozenset())
        base = {f.name: getattr(plan, f.name) for f in fields(ExecPlan)}
        base["worker_sql"] = worker_sql
        return UploadPlan(
            **base, uploads=uses, shipments=dict(self.shipments), key_joins=tuple(self.key_joins)
        )


#: ``tap_upload.<name>`` in generated SQL, or a string literal (left alone)
_UPLOAD_REF = re.compile(r"'(?:[^']|'')*'|\b" + UPLOADS + r"\.([a-z_][a-z0-9_]*)\b")


def _fills(join: exp.Join, upload: str, director: str) -> bool:
    """Does the outer ``join`` NULL-fill the upload while keeping the director's rows?"""
    side = (join.side or "").upper()
    joined = join.this.alias_or_name
    if side == "LEFT":
        return joined == upload and director != upload
    if side == "RIGHT":
        return joined == director
    return False


def _column_index(table: pa.Table, name: str) -> int:
    return next(i for i, f in enumerate(table.schema) if f.name.lower() == name)
