"""Uploaded tables in queries (``TAP_UPLOAD.name``), and cross-matches with them.

A query's uploads are Arrow tables (or, to plan only, their schemas). Each becomes a
table of the catalog ``tap_upload`` (:func:`upload_catalog`), so the qualify pass resolves
``TAP_UPLOAD.t`` and its columns like any table's, with suggestions for unknown names.

The planner then decides, for each reference to an upload in the query's FROM:

- a **cross-match** (:class:`CrossMatch`): the upload is joined with a director table by
  a spatial predicate with a constant radius r no larger than the catalog's overlap —
  ``CONTAINS(POINT(o.ra, o.dec), CIRCLE(t.ra, t.dec, r)) = 1`` (either way round),
  ``DISTANCE(POINT(..), POINT(..)) < r`` or ``<= r``, ``scisql_angSep(...) < r``. The
  targets are partitioned like the catalog (:func:`partition_targets`): a copy of a
  target in every chunk that can hold an object within r of it, each copy with the
  ``spatial_index`` ranges of that chunk that can (one row per copy and range). On a
  worker the copies of a chunk (``t.qserv_chunk``) join the chunk's own rows (never its
  overlap) with ``o.spatial_index >= t.qserv_lo AND o.spatial_index < t.qserv_hi`` (a
  btree probe; the ranges lie inside the chunk), then the exact test. An object lies in
  one chunk and in at most one range of a target's copy there, so every pair is found
  exactly once, and the merge just concatenates.
- otherwise the whole upload is shipped to every worker the query reads, as a small
  replicated table would be (joins by id, subqueries, joins with replicated tables).

The worker SQL names an upload by a token (:func:`token`) that execution
(:mod:`qserv_py.exec.uploads`) replaces with the name of the table it made for the query
on each worker.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from qserv_py.errors import QueryError, QueryRefused, UploadError
from qserv_py.exec.plan import ExecPlan
from qserv_py.query import geometry as geo
from qserv_py.query.analysis import conjuncts, from_sources
from qserv_py.query.qualify import UPLOADS, CatalogSet
from qserv_py.query.regions_ast import arguments, constant
from qserv_py.schema.model import (
    Catalog,
    Column,
    Table,
    TableKind,
    identifier_problem,
)
from qserv_py.sky.healpix import (
    ORDER,
    IntArray,
    ancestor,
    index_range,
    neighbourhood_order,
    neighbours,
    spatial_index,
)
from qserv_py.sky.layout import Layout

if TYPE_CHECKING:
    from qserv_py.query.analysis import Ref
    from qserv_py.query.context import PlanContext

#: the schema of the upload tables on the workers
SCHEMA = "qserv_upload"
#: columns a cross-match's shipped targets carry besides the upload's own
CHUNK, LO, HI = "qserv_chunk", "qserv_lo", "qserv_hi"
#: a shipped target's ranges are coarsened while the objects expected in one of their
#: pixels stay below this. Measured (1″, 100k targets, 200k objects): 0.05 to 0.5 join
#: fastest; 4 takes 1.6×, 64 takes 9× as long (each candidate is a heap fetch and a
#: trigonometric test), and no coarsening 1.2× (4.5 probes per target instead of 1.04)
CANDIDATES_PER_PIXEL = 0.1
#: square degrees of an order-0 HEALPix pixel
ORDER0_AREA_DEG2 = 4 * math.pi * (180 / math.pi) ** 2 / 12

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


# --- cross-match detection ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CrossMatch:
    """An upload reference joined with a director table by distance."""

    alias: str  # of the upload in the query
    ra: str  # the upload's position columns
    dec: str
    radius: float  # degrees
    director: str  # alias of the director table
    conjunct: exp.Expression = field(repr=False)
    #: the catalog's layout, and each of its chunks' objects per square degree (in the
    #: layout's order)
    layout: Layout | None = field(default=None, repr=False)
    density: npt.NDArray[np.float64] | None = field(default=None, repr=False)
    #: every result row has a match (an inner join): chunks without targets have none
    narrows: bool = True


def _upload_pair(ra: exp.Expression, dec: exp.Expression, uploads: Mapping[str, str]) -> str | None:
    if (
        isinstance(ra, exp.Column)
        and isinstance(dec, exp.Column)
        and ra.table in uploads
        and ra.table == dec.table
    ):
        return ra.table
    return None


def _director_pair(ra: exp.Expression, dec: exp.Expression, refs: Mapping[str, Ref]) -> str | None:
    if not (isinstance(ra, exp.Column) and isinstance(dec, exp.Column)):
        return None
    ref = refs.get(ra.table)
    if (
        ref is not None
        and ra.table == dec.table
        and ref.table.kind is TableKind.DIRECTOR
        and ra.name == ref.ra
        and dec.name == ref.dec
    ):
        return ref.alias
    return None


def spatial_join(
    conjunct: exp.Expression, uploads: Mapping[str, str], refs: Mapping[str, Ref]
) -> tuple[str, str, str, str, float] | None:
    """(upload alias, its ra column, its dec column, director alias, radius) of a
    cross-match predicate between an upload and a director table, else None."""
    pairs: tuple[list[exp.Expression], list[exp.Expression]] | None = None
    radius: float | None = None
    if isinstance(conjunct, geo.Contains):
        point, region = arguments(conjunct)
        if isinstance(point, geo.Point) and isinstance(region, geo.Circle):
            cargs = arguments(region)
            pairs, radius = (arguments(point), cargs[:2]), constant(cargs[2])
    else:
        distance, bound = None, None
        if isinstance(conjunct, (exp.LT, exp.LTE)):
            distance, bound = conjunct.this, conjunct.expression
        elif isinstance(conjunct, (exp.GT, exp.GTE)):
            distance, bound = conjunct.expression, conjunct.this
        if isinstance(distance, geo.Distance) and bound is not None:
            args = arguments(distance)
            pairs, radius = (args[:2], args[2:]), constant(bound)
    if pairs is None or radius is None or len(pairs[0]) != 2 or len(pairs[1]) != 2:
        return None
    for mine, theirs in (pairs, pairs[::-1]):
        upload = _upload_pair(mine[0], mine[1], uploads)
        director = _director_pair(theirs[0], theirs[1], refs)
        if upload is not None and director is not None:
            return upload, mine[0].name, mine[1].name, director, radius
    return None


def check_radius(radius: float, ref: Ref) -> None:
    """Refuse a cross-match radius larger than the catalog's overlap."""
    overlap = ref.catalog.overlap_arcsec
    if radius * 3600 > overlap:
        raise QueryRefused(
            f"the cross-match radius {radius * 3600:g}″ is larger than the overlap of catalog "
            f"{ref.catalog.name} ({overlap:g}″), the largest radius this catalog is "
            f"partitioned for; use a radius of at most {overlap:g}″"
        )


def density(layout: Layout, chunk_rows: Mapping[int, int]) -> npt.NDArray[np.float64]:
    """Objects per square degree of each chunk of ``layout`` (in its order)."""
    rows = np.array([chunk_rows.get(int(c), 0) for c in layout.uniq.tolist()], np.float64)
    area = ORDER0_AREA_DEG2 / 4.0 ** layout.orders.astype(np.float64)
    return rows / area


# --- partitioning the targets -------------------------------------------------------------


def partition_targets(
    ra: npt.ArrayLike,
    dec: npt.ArrayLike,
    radius_deg: float,
    layout: Layout,
    chunk_density: npt.NDArray[np.float64] | None = None,
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """(row, chunk, lo, hi): each target's copies, with the spatial_index range
    ``[lo, hi)`` of that chunk holding every object of the chunk within ``radius_deg``.

    Targets are located at the order whose 3×3 pixel blocks hold every circle of the
    radius (:func:`~qserv_py.sky.healpix.neighbourhood_order`); each block pixel goes to
    the chunks it meets, cut to each chunk. Where a block pixel lies inside its chunk, it
    is widened to its ancestor at the coarsest order (not coarser than the chunk) whose
    pixels hold at most :data:`CANDIDATES_PER_PIXEL` objects at the chunk's density
    (``chunk_density``, objects per square degree in the layout's order): in sparse sky
    one btree probe then finds a target's candidates, instead of up to nine. A target's
    ranges in a chunk are disjoint, and merged where contiguous: an object is in at most
    one of them. Targets without a finite position, or with ``|dec| > 90``, get no copy
    (they match nothing). Rows come sorted by lo (so by chunk).
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    empty = np.empty(0, np.int64)
    good = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90))
    if len(good) == 0 or radius_deg < 0:
        return empty, empty, empty, empty
    k = neighbourhood_order(radius_deg)
    own = ancestor(spatial_index(ra[good], dec[good]), k)
    block = neighbours(own, k)
    # a missing neighbour (8 at some base-pixel corners) is the own pixel again
    pixels = np.where(block >= 0, block, own[:, None])
    shift = 2 * (ORDER - k)
    lo = pixels << shift
    hi = lo + (np.int64(1) << shift)
    position = np.searchsorted(layout.lo, lo, side="right") - 1
    if np.any(hi > layout.hi[position]):  # chunks smaller than the block's pixels
        return _partition_fine(good, pixels.ravel(), k, layout)
    if chunk_density is not None:
        wanted = np.log(np.maximum(chunk_density, 1e-300) * ORDER0_AREA_DEG2)
        wanted = np.ceil((wanted - math.log(CANDIDATES_PER_PIXEL)) / math.log(4))
        coarse = np.clip(wanted, layout.orders, k).astype(np.int64)[position]
        width = 2 * (ORDER - coarse)
        lo = (pixels >> (2 * (k - coarse))) << width
        hi = lo + (np.int64(1) << width)
    # a block widened into one pixel (most, in sparse sky) is one range; the others: their
    # ranges by lo (so by chunk), the same one once, contiguous ones merged
    one = np.all(lo == lo[:, :1], axis=1)
    many = ~one
    lo_m, hi_m, pos_m = lo[many], hi[many], position[many]
    order = np.argsort(lo_m, axis=1)
    lo_m = np.take_along_axis(lo_m, order, axis=1)
    hi_m = np.take_along_axis(hi_m, order, axis=1)
    pos_m = np.take_along_axis(pos_m, order, axis=1)
    start = np.ones(lo_m.shape, dtype=bool)
    start[:, 1:] = (lo_m[:, 1:] != lo_m[:, :-1]) & (
        (lo_m[:, 1:] != hi_m[:, :-1]) | (pos_m[:, 1:] != pos_m[:, :-1])
    )
    first = np.flatnonzero(start.ravel())
    rows = np.concatenate([good[one], np.repeat(good[many], lo_m.shape[1])[first]])
    where = np.concatenate([position[one, 0], pos_m.ravel()[first]])
    out_lo = np.concatenate([lo[one, 0], lo_m.ravel()[first]])
    merged_hi = np.maximum.reduceat(hi_m.ravel(), first) if len(first) else first
    out_hi = np.concatenate([hi[one, 0], merged_hi])
    by_lo = np.argsort(out_lo, kind="stable")
    return rows[by_lo], layout.uniq[where[by_lo]], out_lo[by_lo], out_hi[by_lo]


def _partition_fine(
    rows: IntArray, pixels: IntArray, k: int, layout: Layout
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """:func:`partition_targets` where block pixels can be larger than chunks: each
    block pixel cut into the chunks it meets (``pixels`` is the blocks, raveled)."""
    rows = np.repeat(rows, len(pixels) // len(rows))
    shift = 2 * (ORDER - k)
    plo, phi = pixels << shift, (pixels + 1) << shift
    which, chunks = layout.chunks_overlapping(plo, phi)
    rows, plo, phi = rows[which], plo[which], phi[which]
    cut_lo, cut_hi = index_range(chunks)
    lo, hi = np.maximum(plo, cut_lo), np.minimum(phi, cut_hi)
    order = np.lexsort((lo, rows))
    rows, chunks, lo, hi = rows[order], chunks[order], lo[order], hi[order]
    new_range = (lo[1:] != lo[:-1]) & ((lo[1:] != hi[:-1]) | (chunks[1:] != chunks[:-1]))
    start = np.concatenate([[True], (rows[1:] != rows[:-1]) | new_range])
    first = np.flatnonzero(start)
    rows, chunks, lo = rows[first], chunks[first], lo[first]
    hi = np.maximum.reduceat(hi, first)
    by_lo = np.argsort(lo, kind="stable")
    return rows[by_lo], chunks[by_lo], lo[by_lo], hi[by_lo]


# --- what the plan carries ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class UploadUse:
    """One table execution makes on the workers for an upload."""

    name: str  # the upload's name (lower case)
    token: str  # its name in the worker SQL (``qserv_upload.<token>``)
    #: the columns shipped: (name, PostgreSQL type), the upload's then CHUNK, LO, HI
    columns: tuple[tuple[str, str], ...]
    xmatch: CrossMatch | None = None


@dataclass(frozen=True, eq=False)
class UploadPlan(ExecPlan):
    """An :class:`ExecPlan` whose worker SQL reads uploads: run it with
    :func:`qserv_py.exec.uploads.execute`, which ships them first."""

    uploads: tuple[UploadUse, ...] = ()
    #: token -> the rows to ship (targets partitioned for a cross-match), when the plan
    #: was made from the uploads' data; else execution prepares them
    shipments: Mapping[str, pa.Table] = field(default_factory=dict)


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


def _floats(column: pa.ChunkedArray, upload: str, name: str) -> npt.NDArray[np.float64]:
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
        self.id_joins: list[tuple[str, str, Ref]] = []  # (upload name, its column, ref)
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
                self.id_joins.append((uploads[mine.table], mine.name, ref))

    def restrict(self, chunks: set[int]) -> set[int]:
        """The chunk set without chunks no cross-matched target (or uploaded director
        key) can reach, when the uploads' data is at hand."""
        for match in self.matches:
            data = self.data.get(match.use.name)
            if isinstance(data, pa.Table):
                shipment = prepare(match.use, data, chunks)
                self.shipments[match.use.token] = shipment
                if match.xmatch.narrows:
                    chunks = chunks & shipment_chunks(shipment)
        for name, column, ref in self.id_joins:
            data = self.data.get(name)
            if not isinstance(data, pa.Table):
                continue
            values = data.column(_column_index(data, column))
            if not pa.types.is_integer(values.type):
                continue
            keys = pc.unique(values.drop_null()).to_pylist()
            chunks &= self.ctx.lookup_keys(ref.catalog.sql_name, ref.director, keys)
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
        return UploadPlan(**base, uploads=uses, shipments=dict(self.shipments))


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
