"""Subqueries and CTEs over partitioned tables, answered chunk by chunk when each chunk
holds all they need: derived tables that return rows or aggregate per object, IN on the
director key, EXISTS and scalar subqueries correlated on the director key. Anything else
is refused with the reason and a rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.query.analysis import (
    Analysis,
    Derived,
    Ref,
    analyze,
    check_joined,
    conjuncts,
    from_sources,
    has_partitioned,
)
from qserv_py.query.chunking import chunk_set, nullable_sides, rewrite_for_workers
from qserv_py.query.context import PlanContext
from qserv_py.query.matches import plan_matches
from qserv_py.query.walk import find_all
from qserv_py.schema.model import TableKind


def partitioned_refs(select: exp.Select, ctx: PlanContext) -> list[Ref]:
    """The partitioned tables and chunk-local derived tables of ``select``; its
    subqueries over partitioned tables elsewhere (IN, EXISTS, scalar) are checked to be
    chunk-local and get their chunk predicates."""
    refs: list[Ref] = []
    sources = from_sources(select)
    for source in sources:
        if isinstance(source, exp.Table) and source.args.get("db"):
            cat = ctx.catalogs.catalogs[source.args["db"].name]
            table = cat.table(source.name)
            if table.partitioned:
                refs.append(Ref(source.alias_or_name, cat, table, source))
        elif isinstance(source, exp.Subquery) and has_partitioned(source, ctx):
            refs.append(derived_ref(source, ctx))
        elif has_partitioned(source, ctx):
            raise QueryRefused(
                f"this FROM item over partitioned tables cannot be answered chunk by chunk: "
                f"{source.sql('postgres')[:80]}; join the tables directly"
            )
    for sub in nested_selects(select, sources):
        if has_partitioned(sub, ctx):
            where_subquery(sub, refs, ctx)
    return refs


def nested_selects(select: exp.Select, sources: list[exp.Expression]) -> list[exp.Select]:
    """The subqueries directly inside ``select`` (one level down), but not its FROM items."""
    found = []
    for sub in find_all(select, exp.Select):
        if sub is select or sub.parent_select is not select:
            continue
        node: exp.Expr | None = sub
        while node is not None and node is not select and not any(node is s for s in sources):
            node = node.parent
        if node is select:
            found.append(sub)
    return found


@dataclass
class Analysed:
    """A SELECT's partitioned tables and what joins and restricts them."""

    refs: list[Ref]
    analysis: Analysis
    #: aliases on the NULL-filled side of an outer join
    nullable: set[str]
    #: the alias read with its overlap (the second side of a near-neighbour join)
    overlap: set[str]

    @property
    def primary(self) -> list[Ref]:
        return [r for r in self.refs if r.alias not in self.overlap]

    def chunks(self, ctx: PlanContext) -> set[int]:
        return chunk_set(self.primary, self.refs, self.analysis, ctx, self.nullable)

    def rewrite(self, select: exp.Select) -> None:
        rewrite_for_workers(select, self.refs, self.analysis, self.overlap, self.nullable)


def analyse_select(select: exp.Select, ctx: PlanContext, *, outermost: bool) -> Analysed:
    """Analyse a SELECT (its subqueries planned on the way); refuse joins that are not
    chunk-local, and near-neighbour joins and areaspec anywhere but the outermost level."""
    refs = partitioned_refs(select, ctx)
    analysis = analyze(select, refs, ctx, outermost=outermost)
    near = [e for e in analysis.edges if e[2]]
    if not outermost and (analysis.areaspec or near):
        raise QueryRefused(
            "qserv_areaspec_* and near-neighbour joins are only supported in the outermost "
            "SELECT, not in a subquery"
        )
    if len(near) > 1:
        raise QueryRefused("only one spatial self-join per SELECT is supported")
    if near and any(isinstance(r, Derived) for r in refs if r.alias in near[0][:2]):
        raise QueryRefused("a near-neighbour join needs the director table itself on both sides")
    check_joined(refs, analysis.edges)
    state = ctx.states.get(refs[0].catalog.sql_name) if refs else None
    placed = state.placed_by_position if state else frozenset()
    matched = plan_matches(select, refs, analysis, placed)
    if matched and not outermost:
        raise QueryRefused(
            "a join director ⋈ match ⋈ director is only supported in the outermost SELECT, "
            "not in a subquery"
        )
    overlap = {near[0][1]} if near else set()
    return Analysed(refs, analysis, nullable_sides(select, refs), overlap | matched)


def prepare_subquery(select: exp.Select, ctx: PlanContext) -> tuple[list[Ref], set[int]]:
    """Plan a subquery over partitioned tables for the workers (chunk partitions, joins,
    ranges); its refs, and the chunks that can hold its rows."""
    analysed = analyse_select(select, ctx, outermost=False)
    chunks = analysed.chunks(ctx)
    analysed.rewrite(select)
    return analysed.refs, chunks


def key_ref(node: exp.Expression, refs: list[Ref]) -> Ref | None:
    """The ref whose director key column ``node`` is."""
    if isinstance(node, exp.Alias):
        node = node.this
    if isinstance(node, exp.Column):
        for ref in refs:
            if node.table == ref.alias and node.name == ref.director_key:
                return ref
    return None


def check_chunk_local(select: exp.Select, refs: list[Ref], correlated: bool, what: str) -> None:
    """Refuse a subquery whose rows depend on more than one chunk."""
    how = (
        "rewrite it as a join, or run it as its own query (its result can be uploaded "
        "as TAP_UPLOAD)"
    )
    if select.args.get("limit") or select.args.get("offset"):
        raise QueryRefused(f"{what} has LIMIT/OFFSET, which would apply per chunk; {how}")
    if select.find(exp.Window):
        raise QueryRefused(f"{what} has a window function, which spans chunks; {how}")
    if correlated:
        return
    group = select.args.get("group")
    aggregates = any(p.find(exp.AggFunc) for p in select.expressions)
    if (group or aggregates) and not (group and any(key_ref(g, refs) for g in group.expressions)):
        raise QueryRefused(
            f"{what} aggregates rows of several chunks (only a GROUP BY on the director key, "
            f"e.g. objectId, stays within one chunk); {how}"
        )
    if select.args.get("distinct") and not any(key_ref(p, refs) for p in select.expressions):
        raise QueryRefused(
            f"{what} has DISTINCT without the director key, which spans chunks; {how}"
        )


def derived_ref(source: exp.Subquery, ctx: PlanContext) -> Derived:
    """A derived table over partitioned tables, planned for the workers."""
    alias = source.alias_or_name
    inner = source.this
    what = f"the subquery {alias}"
    if not isinstance(inner, exp.Select):
        raise QueryRefused(
            f"{what} is a UNION/EXCEPT/INTERSECT over partitioned tables; run the set "
            "operation as the outermost query"
        )
    refs, chunks = prepare_subquery(inner, ctx)
    check_chunk_local(inner, refs, False, what)
    exposed: dict[str, str] = {}
    anchor: Ref | None = None
    for projection in inner.expressions:
        column = projection.this if isinstance(projection, exp.Alias) else projection
        name = projection.alias_or_name
        key = key_ref(column, refs)
        if key is not None and "key" not in exposed:
            exposed["key"], anchor = name, key
        if isinstance(column, exp.Column):
            for ref in refs:
                if column.table == ref.alias and ref.table.kind is TableKind.DIRECTOR:
                    for axis in ("ra", "dec"):
                        if column.name == getattr(ref, axis) and axis not in exposed:
                            exposed[axis] = name
    first = anchor or refs[0]
    return Derived(
        alias,
        first.catalog,
        first.table,
        source,  # type: ignore[arg-type]
        inner=refs,
        chunks=chunks,
        exposed=exposed,
        director_name=first.director,
    )


def where_subquery(sub: exp.Select, outer: list[Ref], ctx: PlanContext) -> None:
    """Check an IN, EXISTS or scalar subquery over partitioned tables, and plan it."""
    refs, _ = prepare_subquery(sub, ctx)
    correlated = False
    pairs: list[tuple[Ref, Ref]] = []
    for conjunct in conjuncts(sub.args.get("where")):
        if isinstance(conjunct, exp.EQ):
            a, b = key_ref(conjunct.this, refs), key_ref(conjunct.expression, outer)
            c, d = key_ref(conjunct.expression, refs), key_ref(conjunct.this, outer)
            for mine, theirs in ((a, b), (c, d)):
                if mine and theirs and mine.director == theirs.director:
                    correlated = True
                    pairs.append((mine, theirs))
    # the chunk_id equality that every join between partitioned tables carries: a no-op
    # where each chunk is read alone, and on Citus what shows the correlation shard-local
    for mine, theirs in pairs[:1]:
        if type(mine) is Ref and type(theirs) is Ref:
            same_chunk = exp.EQ(
                this=exp.column("chunk_id", mine.alias),
                expression=exp.column("chunk_id", theirs.alias),
            )
            sub.where(same_chunk, copy=False)
    wrapper = sub.parent.parent if isinstance(sub.parent, exp.Subquery) else sub.parent
    keyed_in = (
        isinstance(wrapper, exp.In)
        and len(sub.expressions) == 1
        and (mine := key_ref(sub.expressions[0], refs)) is not None
        and (theirs := key_ref(wrapper.this, outer)) is not None
        and mine.director == theirs.director
    )
    if not (correlated or keyed_in):
        raise QueryRefused(
            "a subquery over partitioned tables in WHERE or SELECT must stay within a chunk: "
            "use `o.objectId IN (SELECT f.objectId FROM ForcedSource f ...)` on the director "
            "key, or correlate it on the director key (EXISTS (SELECT ... WHERE "
            "f.objectId = o.objectId)); otherwise run it as its own query"
        )
    check_chunk_local(sub, refs, correlated, "the subquery in WHERE")


def inline_ctes(select: exp.Expression) -> None:
    """Common table expressions become derived tables where they are used (so that each
    is planned chunk by chunk like a subquery in FROM)."""
    with_ = select.args["with_"]
    if with_.args.get("recursive"):
        raise QueryRefused("WITH RECURSIVE over partitioned tables is not supported")
    bodies: dict[str, exp.Expression] = {}
    for cte in with_.expressions:
        body = cte.this
        for table in list(body.find_all(exp.Table)):
            if not table.args.get("db") and table.name in bodies:
                table.replace(as_derived(bodies[table.name], table))
        bodies[cte.alias_or_name] = body
    select.set("with_", None)
    for table in list(select.find_all(exp.Table)):
        if not table.args.get("db") and table.name in bodies:
            table.replace(as_derived(bodies[table.name], table))


def as_derived(body: exp.Expression, table: exp.Table) -> exp.Subquery:
    return exp.Subquery(
        this=body.copy(), alias=exp.TableAlias(this=exp.to_identifier(table.alias_or_name))
    )
