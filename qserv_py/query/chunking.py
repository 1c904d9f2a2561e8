"""The chunks a query reads, which worker reads each, and the worker rewrite: each
partitioned table becomes its chunk's partition (a placeholder that execution fills per
chunk), an overlap side reads the partition and its overlap, joins get chunk equality, and
restricted tables get spatial_index ranges.
"""

from __future__ import annotations

import functools

import numpy as np
from sqlglot import exp

from qserv_py.errors import QueryError, QueryRefused
from qserv_py.query.analysis import Analysis, Derived, Ref, conjuncts, from_sources
from qserv_py.query.context import PlanContext
from qserv_py.query.matches import anchor_keys, dedupe_condition
from qserv_py.query.neighbours import cell_join
from qserv_py.query.render import IndexRanges
from qserv_py.schema.ddl import overlap_table_name
from qserv_py.sky.regions import Cone, Region

CHUNKS = "qserv_chunks__"  # stands for the chunk list in worker SQL until rendering
#: prefix of a partitioned table's name in worker SQL: ``dp02.qserv_part__object`` stands
#: for the partition of the chunk a statement reads (see qserv_py.exec.plan)
PARTITION = "qserv_part__"


def chunk_set(
    primary: list[Ref],
    refs: list[Ref],
    analysis: Analysis,
    ctx: PlanContext,
    nullable: set[str] | frozenset[str] = frozenset(),
) -> set[int]:
    if not refs:
        return set()
    state = ctx.states[refs[0].catalog.sql_name]
    chunks: set[int] = set()
    for ref in refs:
        if isinstance(ref, Derived):
            chunks |= ref.chunks
        else:
            chunks |= set(state.chunks_with_rows.get(ref.table.sql_name, ()))
    for ref in refs:
        if isinstance(ref, Derived) and ref.alias not in nullable:
            chunks &= ref.chunks  # no row of the query without one of its rows
    for ref in primary:
        for region in analysis.regions.get(ref.alias, []):
            if state.layout is None:
                return set()
            lo, hi = region_ranges(region)
            chunks &= set(state.layout.chunks_overlapping(lo, hi)[1].tolist())
        if ref.alias in analysis.keys and ref.table.sql_name not in state.placed_by_position:
            # (a child with rows placed by position: some of its keys are in no director
            # row's chunk, so the director index cannot say where they are)
            chunks &= ctx.lookup_keys(ref.catalog.sql_name, ref.director, analysis.keys[ref.alias])
        by_key = anchor_keys(ref, analysis)  # a match table's, on the side it is read by
        if by_key is not None:
            chunks &= ctx.lookup_keys(ref.catalog.sql_name, *by_key)
    return chunks


def assign_chunks(chunks: set[int], catalog: str, ctx: PlanContext) -> dict[str, tuple[int, ...]]:
    """Each chunk to the least-loaded of the workers holding it."""
    placement = ctx.states[catalog].placement
    load: dict[str, list[int]] = {w.name: [] for w in ctx.spec.workers}
    for chunk in sorted(chunks):
        holders = placement.get(chunk)
        if not holders:
            raise QueryError(
                f"chunk {chunk} of catalog {catalog} has no worker; is the data published?"
            )
        best = min(holders, key=lambda w: (len(load.get(w, [])), w))
        load.setdefault(best, []).append(chunk)
    return {w: tuple(cs) for w, cs in load.items() if cs}


def nullable_sides(select: exp.Select, refs: list[Ref]) -> set[str]:
    """The aliases on the NULL-filled side of an outer join.

    Their chunk predicates cannot go in WHERE (that would reject the NULL-filled rows).
    An outer join that keeps unmatched rows of replicated tables only, against a
    partitioned table, is refused: every worker would return those rows.
    """
    partitioned = {r.alias for r in refs}
    aliases = [source.alias_or_name for source in from_sources(select)]
    nullable: set[str] = set()
    for i, join in enumerate(select.args.get("joins") or [], start=1):
        side = join.side.upper()
        if side not in ("LEFT", "RIGHT", "FULL"):
            continue
        before, joined = set(aliases[:i]), {aliases[i]}
        kept, filled = (
            (before, joined)
            if side == "LEFT"
            else (joined, before)
            if side == "RIGHT"
            else (before | joined, before | joined)
        )
        for preserved in (kept,) if side != "FULL" else (before, joined):
            if not preserved & partitioned and filled & partitioned:
                raise QueryRefused(
                    f"this {side} outer join keeps the unmatched rows of a replicated table "
                    "against a partitioned one: every chunk would return them; put the "
                    "partitioned table on the preserved side, or use an inner join"
                )
        nullable |= filled
    return nullable


def rewrite_for_workers(
    select: exp.Select,
    refs: list[Ref],
    analysis: Analysis,
    overlap: set[str],
    nullable: set[str],
) -> None:
    """Chunk partitions, chunk equality on joins, overlap sides, spatial_index ranges.

    Each partitioned table is read from its chunk's partition, named by the placeholder
    ``catalog.qserv_part__table`` (execution writes one statement per chunk, see
    :mod:`qserv_py.exec.plan`): no per-row chunk test, and each partition's own indexes
    (index-only scans). An overlap side reads the chunk's partition and its overlap
    partition. On a join's NULL-filled side, the chunk equality goes in the ON clause.
    """
    extra: list[exp.Expr] = []
    derived = {r.alias for r in refs if isinstance(r, Derived)}
    for ref in refs:
        if ref.alias in derived:
            continue  # its own tables have their partitions inside it
        if ref.alias in overlap:
            table = partition_placeholder(ref.catalog.sql_name, ref.table.sql_name)
            margin = partition_placeholder(ref.catalog.sql_name, overlap_table_name(ref.table))
            union: exp.Expression = exp.maybe_parse(
                f"SELECT * FROM {table} UNION ALL SELECT * FROM {margin}", dialect="postgres"
            )
            ref.node.replace(
                exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier(ref.alias)))
            )
        else:
            ref.node.set("this", exp.to_identifier(PARTITION + ref.table.sql_name))
        for region in analysis.regions.get(ref.alias, []):
            extra.append(index_ranges(region, ref.alias))
        dedupe = dedupe_condition(ref)  # a match table not joined to a director
        if dedupe is not None:
            extra.append(dedupe)
    for (a, b), radius in analysis.radius.items():
        # the overlap side only needs rows within the join radius of the primary's cones
        for region in analysis.regions.get(a, []):
            if isinstance(region, Cone) and b not in analysis.regions:
                widened = Cone(region.ra, region.dec, min(region.radius + radius, 180.0))
                extra.append(index_ranges(widened, b))
    position = {source.alias_or_name: i for i, source in enumerate(from_sources(select))}
    joins = select.args.get("joins") or []
    for a, b, near in analysis.edges:
        if a in derived or b in derived:
            continue  # joined on the director key: the same chunk anyway
        if near and analysis.per_chunk and a not in nullable and b not in nullable:
            # both sides read the statement's one chunk (its partition, and its overlap):
            # no chunk_id test, and no chunk_id column read, which is a catalog table's
            # last (reading it unpacks every column of every row: ~15 % of the statement)
            continue
        same_chunk = exp.EQ(this=exp.column("chunk_id", a), expression=exp.column("chunk_id", b))
        last = max(position[a], position[b])
        join = joins[last - 1] if last else None
        if nullable and join is not None and join.side and join.args.get("on") is not None:
            join.set("on", exp.and_(join.args["on"], same_chunk))
        else:
            extra.append(same_chunk)
    extra += near_neighbour_cells(select, refs, analysis, nullable, extra)
    if extra:
        condition = exp.and_(*[exp.Paren(this=e) for e in extra], copy=False)
        where = select.args.get("where")
        if where is not None:
            condition = exp.and_(exp.Paren(this=where.this), condition, copy=False)
        select.where(condition, append=False, copy=False)


def near_neighbour_cells(
    select: exp.Select,
    refs: list[Ref],
    analysis: Analysis,
    nullable: set[str],
    extra: list[exp.Expr],
) -> list[exp.Expr]:
    """The cell join of each near-neighbour edge (see :mod:`qserv_py.query.neighbours`):
    the o1 side read with the cells its rows reach (its own restrictions, in WHERE or
    ``extra``, applied first), and the conditions matching the o2 side's cell. An edge on
    an outer join's NULL-filled side keeps the plain comparison (o1's cells would
    multiply its unmatched rows)."""
    by_alias = {r.alias: r for r in refs}
    conditions: list[exp.Expr] = []
    for (a, b), radius in analysis.radius.items():
        first, second = by_alias.get(a), by_alias.get(b)
        if first is None or second is None or a in nullable or b in nullable:
            continue
        if not (first.ra and first.dec and second.ra and second.dec):
            continue
        known = [*conjuncts(select.args.get("where")), *extra]
        own = [c for c in known if _only(c, a)]
        theirs = [c for c in known if _only(c, b)]
        conditions.append(
            cell_join(
                select,
                a,
                (first.ra, first.dec),
                (b, second.ra, second.dec),
                radius,
                own,
                theirs,
                [*extra, *conditions],
                chunk_column=not analysis.per_chunk,
            )
        )
    return conditions


def _only(condition: exp.Expr, alias: str) -> bool:
    """Whether ``condition`` reads the columns of ``alias`` and nothing else that varies
    (no other table, subquery, aggregate or window)."""
    if condition.find(exp.Subquery, exp.Select, exp.AggFunc, exp.Window):
        return False
    tables = {c.table for c in condition.find_all(exp.Column)}
    return tables == {alias}


def partition_placeholder(catalog: str, table: str) -> str:
    return f"{catalog}.{PARTITION}{table}"


def index_ranges(region: Region, alias: str) -> exp.Expr:
    """``spatial_index`` range predicate of a region (one node, see IndexRanges)."""
    lo, hi = region_ranges(region)
    ranges = tuple(zip(lo.tolist(), hi.tolist(), strict=True))
    return IndexRanges(this=exp.column("spatial_index", alias), ranges=ranges)


@functools.lru_cache(maxsize=256)
def region_ranges(region: Region) -> tuple[np.ndarray, np.ndarray]:
    """A region's spatial_index ranges (computed once per region: chunks and predicate)."""
    return region.index_ranges()
