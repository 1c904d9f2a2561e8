"""From query text to an :class:`~qserv_py.exec.plan.ExecPlan`.

The passes, in order: parse (dialect) → normalize (canonical tree) → qualify (schema)
→ check (read-only, allowed functions) → analyze (partitioned tables, joins,
restrictors) → rewrite for the workers (chunk predicates, overlap, spatial_index ranges)
→ split (worker and merge SQL).

A query that chunk-local data cannot answer correctly is refused with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types

from qserv_py.errors import QueryError, QueryRefused
from qserv_py.exec.plan import ExecPlan, ResultColumn
from qserv_py.query import geometry as geo
from qserv_py.query.booleans import compare_booleans
from qserv_py.query.check import check_allowed
from qserv_py.query.context import PlanContext
from qserv_py.query.normalize import normalize
from qserv_py.query.parse import parse
from qserv_py.query.qualify import qualify
from qserv_py.query.regions_ast import arguments, constant, region_of
from qserv_py.query.render import IndexRanges, to_postgres
from qserv_py.query.split import PARTIALS, split
from qserv_py.query.units import UNIT_META, convert_units
from qserv_py.query.uploads import Uploads
from qserv_py.schema.ddl import overlap_table_name
from qserv_py.schema.model import Catalog, Table, TableKind
from qserv_py.sky.regions import Cone, Region

CHUNKS = "qserv_chunks__"  # stands for the chunk list in worker SQL until rendering
#: prefix of a partitioned table's name in worker SQL: ``dp02.qserv_part__object`` stands
#: for the partition of the chunk a statement reads (see qserv_py.exec.plan)
PARTITION = "qserv_part__"


@dataclass
class Ref:
    """A partitioned table of the query."""

    alias: str
    catalog: Catalog
    table: Table
    node: exp.Table
    overlap: bool = False

    def column(self, name: str | None) -> str | None:
        return name.lower() if name else None

    @property
    def ra(self) -> str | None:
        return self.column(self.table.ra_column)

    @property
    def dec(self) -> str | None:
        return self.column(self.table.dec_column)

    @property
    def director_key(self) -> str | None:
        """The column holding the director key (its own key for a director)."""
        key = (
            self.table.key_column
            if self.table.kind is TableKind.DIRECTOR
            else self.table.director_key
        )
        return self.column(key)

    @property
    def director(self) -> str:
        return (
            self.table.sql_name
            if self.table.kind is TableKind.DIRECTOR
            else (self.table.director or "").lower()
        )


@dataclass
class Derived(Ref):
    """A subquery (or CTE) in FROM over partitioned tables that each chunk answers alone:
    its own tables get their chunk predicates inside it. It joins the rest of the query
    like a table, through the columns that carry its director key and position."""

    inner: list[Ref] = field(default_factory=list)
    #: chunks that can hold its rows (its own restrictors applied)
    chunks: set[int] = field(default_factory=set)
    exposed: dict[str, str] = field(default_factory=dict)  # key | ra | dec -> output name
    director_name: str = ""

    @property
    def ra(self) -> str | None:
        return self.exposed.get("ra")

    @property
    def dec(self) -> str | None:
        return self.exposed.get("dec")

    @property
    def director_key(self) -> str | None:
        return self.exposed.get("key")

    @property
    def director(self) -> str:
        return self.director_name


def plan(
    text: str,
    lang: str,
    ctx: PlanContext,
    uploads: Mapping[str, pa.Table | pa.Schema] | None = None,
) -> ExecPlan:
    """The plan of a query; ``uploads`` are its ``TAP_UPLOAD`` tables, by name (their
    schemas are enough to plan; with the data, cross-matches narrow the chunk set)."""
    state = Uploads(ctx, uploads) if uploads else None
    if state is not None:
        ctx = state.ctx
        return state.finish(_plan(text, lang, ctx, state))
    return _plan(text, lang, ctx, None)


def _plan(text: str, lang: str, ctx: PlanContext, uploads: Uploads | None) -> ExecPlan:
    tree = qualify(normalize(parse(text, lang)), catalogs=ctx.catalogs)
    check_allowed(tree)
    convert_units(tree, catalogs=ctx.catalogs)
    annotate_types(tree, schema=ctx.catalogs.schema())
    compare_booleans(tree)
    if tree.args.get("with_") and _has_partitioned(tree, ctx):
        _inline_ctes(tree)
    if not isinstance(tree, exp.Select):
        return _whole_query_plan(tree, ctx)
    return _plan_select(tree, ctx, uploads)


def _columns(select: exp.Select, ctx: PlanContext, names: list[str]) -> tuple[ResultColumn, ...]:
    out = []
    for projection, name in zip(select.expressions, names, strict=True):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        meta = ResultColumn(name, inner.meta.get(UNIT_META, ""))
        if isinstance(inner, exp.Column) and inner.table:
            source = _source_table(select, inner.table)
            if source is not None:
                cat = ctx.catalogs.catalogs[source.args["db"].name]
                model = cat.table(source.name.removeprefix(PARTITION))
                if model.has_column(inner.name):
                    col = model.column(inner.name)
                    meta = ResultColumn(
                        name if not name.startswith("_col") else col.name,
                        col.unit,
                        col.ucd,
                        col.description,
                        col.datatype,
                    )
        out.append(meta)
    return tuple(out)


def _source_table(select: exp.Select, alias: str) -> exp.Table | None:
    """The catalog table an alias of ``select`` names (the map is built once per query:
    one walk of the tree per result column made SELECT * of a wide table slow)."""
    tables = select.meta.get("qserv_tables")
    if tables is None:
        tables = {t.alias_or_name: t for t in select.find_all(exp.Table) if t.args.get("db")}
        select.meta["qserv_tables"] = tables
    return tables.get(alias)


def _refs(select: exp.Select, ctx: PlanContext) -> list[Ref]:
    """The partitioned tables and chunk-local derived tables of ``select``; its
    subqueries over partitioned tables elsewhere (IN, EXISTS, scalar) are checked to be
    chunk-local and get their chunk predicates."""
    refs: list[Ref] = []
    sources = _sources(select)
    for source in sources:
        if isinstance(source, exp.Table) and source.args.get("db"):
            cat = ctx.catalogs.catalogs[source.args["db"].name]
            table = cat.table(source.name)
            if table.partitioned:
                refs.append(Ref(source.alias_or_name, cat, table, source))
        elif isinstance(source, exp.Subquery) and _has_partitioned(source, ctx):
            refs.append(_derived(source, ctx))
        elif _has_partitioned(source, ctx):
            raise QueryRefused(
                f"this FROM item over partitioned tables cannot be answered chunk by chunk: "
                f"{source.sql('postgres')[:80]}; join the tables directly"
            )
    for sub in _nested_selects(select, sources):
        if _has_partitioned(sub, ctx):
            _where_subquery(sub, refs, ctx)
    return refs


def _nested_selects(select: exp.Select, sources: list[exp.Expression]) -> list[exp.Select]:
    """The subqueries directly inside ``select`` (one level down), but not its FROM items."""
    found = []
    for sub in select.find_all(exp.Select):
        if sub is select or sub.parent_select is not select:
            continue
        node: exp.Expr | None = sub
        while node is not None and node is not select and not any(node is s for s in sources):
            node = node.parent
        if node is select:
            found.append(sub)
    return found


def _prepare(select: exp.Select, ctx: PlanContext) -> tuple[list[Ref], set[int]]:
    """Plan a subquery over partitioned tables for the workers (chunk predicates, joins,
    ranges); its refs, and the chunks that can hold its rows."""
    refs = _refs(select, ctx)
    analysis = _analyze(select, refs, ctx)
    if analysis.areaspec or any(near for _, _, near in analysis.edges):
        raise QueryRefused(
            "qserv_areaspec_* and near-neighbour joins are only supported in the outermost "
            "SELECT, not in a subquery"
        )
    _components(refs, analysis.edges)
    nullable = _nullable_sides(select, refs)
    chunks = _chunk_set(refs, refs, analysis, ctx, nullable)
    _rewrite_for_workers(select, refs, analysis, set(), nullable)
    return refs, chunks


def _is_key(node: exp.Expression, refs: list[Ref]) -> Ref | None:
    """The ref whose director key column ``node`` is."""
    if isinstance(node, exp.Alias):
        node = node.this
    if isinstance(node, exp.Column):
        for ref in refs:
            if node.table == ref.alias and node.name == ref.director_key:
                return ref
    return None


def _check_local(select: exp.Select, refs: list[Ref], correlated: bool, what: str) -> None:
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
    if (group or aggregates) and not (group and any(_is_key(g, refs) for g in group.expressions)):
        raise QueryRefused(
            f"{what} aggregates rows of several chunks (only a GROUP BY on the director key, "
            f"e.g. objectId, stays within one chunk); {how}"
        )
    if select.args.get("distinct") and not any(_is_key(p, refs) for p in select.expressions):
        raise QueryRefused(
            f"{what} has DISTINCT without the director key, which spans chunks; {how}"
        )


def _derived(source: exp.Subquery, ctx: PlanContext) -> Derived:
    """A derived table over partitioned tables, planned for the workers."""
    alias = source.alias_or_name
    inner = source.this
    what = f"the subquery {alias}"
    if not isinstance(inner, exp.Select):
        raise QueryRefused(
            f"{what} is a UNION/EXCEPT/INTERSECT over partitioned tables; run the set "
            "operation as the outermost query"
        )
    refs, chunks = _prepare(inner, ctx)
    _check_local(inner, refs, False, what)
    exposed: dict[str, str] = {}
    anchor: Ref | None = None
    for projection in inner.expressions:
        column = projection.this if isinstance(projection, exp.Alias) else projection
        name = projection.alias_or_name
        key = _is_key(column, refs)
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


def _where_subquery(sub: exp.Select, outer: list[Ref], ctx: PlanContext) -> None:
    """Check an IN, EXISTS or scalar subquery over partitioned tables, and plan it."""
    refs, _ = _prepare(sub, ctx)
    correlated = False
    for conjunct in _conjuncts(sub.args.get("where")):
        if isinstance(conjunct, exp.EQ):
            a, b = _is_key(conjunct.this, refs), _is_key(conjunct.expression, outer)
            c, d = _is_key(conjunct.expression, refs), _is_key(conjunct.this, outer)
            for mine, theirs in ((a, b), (c, d)):
                if mine and theirs and mine.director == theirs.director:
                    correlated = True
    wrapper = sub.parent.parent if isinstance(sub.parent, exp.Subquery) else sub.parent
    keyed_in = (
        isinstance(wrapper, exp.In)
        and len(sub.expressions) == 1
        and (mine := _is_key(sub.expressions[0], refs)) is not None
        and (theirs := _is_key(wrapper.this, outer)) is not None
        and mine.director == theirs.director
    )
    if not (correlated or keyed_in):
        raise QueryRefused(
            "a subquery over partitioned tables in WHERE or SELECT must stay within a chunk: "
            "use `o.objectId IN (SELECT f.objectId FROM ForcedSource f ...)` on the director "
            "key, or correlate it on the director key (EXISTS (SELECT ... WHERE "
            "f.objectId = o.objectId)); otherwise run it as its own query"
        )
    _check_local(sub, refs, correlated, "the subquery in WHERE")


def _inline_ctes(select: exp.Expression) -> None:
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
                table.replace(_as_derived(bodies[table.name], table))
        bodies[cte.alias_or_name] = body
    select.set("with_", None)
    for table in list(select.find_all(exp.Table)):
        if not table.args.get("db") and table.name in bodies:
            table.replace(_as_derived(bodies[table.name], table))


def _as_derived(body: exp.Expression, table: exp.Table) -> exp.Subquery:
    return exp.Subquery(
        this=body.copy(), alias=exp.TableAlias(this=exp.to_identifier(table.alias_or_name))
    )


def _has_partitioned(node: exp.Expression, ctx: PlanContext) -> bool:
    for table in node.find_all(exp.Table):
        if table.args.get("db"):
            cat = ctx.catalogs.catalogs[table.args["db"].name]
            if cat.table(table.name).partitioned:
                return True
    return False


def _conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    if isinstance(node, exp.Where):
        node = node.this
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _column_of(node: exp.Expression, refs: dict[str, Ref]) -> tuple[Ref, str] | None:
    if isinstance(node, exp.Column) and node.table in refs:
        return refs[node.table], node.name
    return None


def _point_of(node: exp.Expression, refs: dict[str, Ref]) -> Ref | None:
    """The ref whose position (ra, dec columns) ``node`` is, as Point or two args."""
    args = arguments(node) if isinstance(node, geo.Point) else None
    if args is None or len(args) != 2:
        return None
    a, b = _column_of(args[0], refs), _column_of(args[1], refs)
    if a and b and a[0] is b[0] and a[1] == a[0].ra and b[1] == b[0].dec:
        return a[0]
    return None


@dataclass
class _Analysis:
    regions: dict[str, list[Region]]
    keys: dict[str, set[int]]
    edges: list[tuple[str, str, bool]]  # (alias, alias, near-neighbour?)
    areaspec: list[exp.Expression]
    #: the radius (degrees) of each near-neighbour edge
    radius: dict[tuple[str, str], float] = field(default_factory=dict)


def _analyze(select: exp.Select, refs: list[Ref], ctx: PlanContext) -> _Analysis:
    by_alias = {r.alias: r for r in refs}
    analysis = _Analysis({}, {}, [], [])
    where = _conjuncts(select.args.get("where"))
    ons = [c for j in select.args.get("joins") or [] for c in _conjuncts(j.args.get("on"))]
    for conjunct in where + ons:
        edge = _join_edge(conjunct, by_alias)
        if edge is not None:
            analysis.edges.append(edge)
            radius = _nn_radius(conjunct) if edge[2] else None
            if radius is not None:
                analysis.radius[(edge[0], edge[1])] = radius
            continue
        if conjunct in ons:
            continue
        if isinstance(conjunct, geo.AreaSpec):
            analysis.areaspec.append(conjunct)
            continue
        spatial = _spatial_restrictor(conjunct, by_alias)
        if spatial is not None:
            analysis.regions.setdefault(spatial[0].alias, []).append(spatial[1])
            continue
        keys = _key_restrictor(conjunct, by_alias)
        if keys is not None:
            ref, values = keys
            known = analysis.keys.get(ref.alias)
            analysis.keys[ref.alias] = values if known is None else known & values
    return analysis


def _nn_radius(conjunct: exp.Expression) -> float | None:
    """The constant radius of a near-neighbour predicate (DISTANCE < r, or CIRCLE(.., r))."""
    if isinstance(conjunct, (exp.LT, exp.LTE)):
        return constant(conjunct.expression)
    if isinstance(conjunct, geo.Contains):
        region = arguments(conjunct)[1]
        return constant(arguments(region)[2]) if isinstance(region, geo.Circle) else None
    return None


def _join_edge(conjunct: exp.Expression, refs: dict[str, Ref]) -> tuple[str, str, bool] | None:
    if isinstance(conjunct, exp.EQ):
        a, b = _column_of(conjunct.this, refs), _column_of(conjunct.expression, refs)
        if (
            a
            and b
            and a[0] is not b[0]
            and a[1] == a[0].director_key
            and b[1] == b[0].director_key
            and a[0].director == b[0].director
            and a[0].catalog is b[0].catalog
        ):
            return (a[0].alias, b[0].alias, False)
        return None
    pair = _near_neighbour(conjunct, refs)
    if pair is not None:
        return pair
    return None


def _near_neighbour(conjunct: exp.Expression, refs: dict[str, Ref]) -> tuple[str, str, bool] | None:
    """DISTANCE(a, b) < r, or CONTAINS(POINT(a), CIRCLE(b, r)), between two directors."""
    radius: float | None = None
    first = second = None
    if isinstance(conjunct, (exp.LT, exp.LTE)) and isinstance(conjunct.this, geo.Distance):
        args = arguments(conjunct.this)
        radius = constant(conjunct.expression)
        first = _pair_ref(args[0], args[1], refs)
        second = _pair_ref(args[2], args[3], refs)
    elif isinstance(conjunct, geo.Contains):
        point, region = arguments(conjunct)
        if isinstance(region, geo.Circle):
            cargs = arguments(region)
            first = _point_of(point, refs)
            second = _pair_ref(cargs[0], cargs[1], refs)
            radius = constant(cargs[2])
    if first is None or second is None or first is second or radius is None:
        return None
    if first.table is not second.table or first.table.kind is not TableKind.DIRECTOR:
        raise QueryRefused(
            "a spatial join is only supported between two instances of one director table "
            f"(here {first.table.name} and {second.table.name})"
        )
    overlap = first.catalog.overlap_arcsec / 3600
    if radius > overlap:
        raise QueryRefused(
            f"the join radius {radius * 3600:g}″ is larger than the overlap of catalog "
            f"{first.catalog.name} ({overlap * 3600:g}″): pairs farther apart than the overlap "
            "can sit in different chunks and would be missed; use a radius of at most "
            f"{overlap * 3600:g}″"
        )
    return (first.alias, second.alias, True)


def _pair_ref(ra: exp.Expression, dec: exp.Expression, refs: dict[str, Ref]) -> Ref | None:
    a, b = _column_of(ra, refs), _column_of(dec, refs)
    if a and b and a[0] is b[0] and a[1] == a[0].ra and b[1] == b[0].dec:
        return a[0]
    return None


def _spatial_restrictor(
    conjunct: exp.Expression, refs: dict[str, Ref]
) -> tuple[Ref, Region] | None:
    if isinstance(conjunct, geo.Contains):
        point, region = arguments(conjunct)
        ref = _point_of(point, refs)
        if ref is not None:
            shape = region_of(region)
            return (ref, shape) if shape is not None else None
        # CONTAINS(POINT(const), CIRCLE(o.ra, o.dec, r)): a cone search too
        if isinstance(region, geo.Circle):
            cargs = arguments(region)
            ref = _pair_ref(cargs[0], cargs[1], refs)
            pargs = arguments(point) if isinstance(point, geo.Point) else None
            if ref is not None and pargs is not None:
                ra, dec, radius = constant(pargs[0]), constant(pargs[1]), constant(cargs[2])
                if None not in (ra, dec, radius):
                    return ref, Cone(ra, dec, radius)  # type: ignore[arg-type]
        return None
    if isinstance(conjunct, (exp.LT, exp.LTE)) and isinstance(conjunct.this, geo.Distance):
        args = arguments(conjunct.this)
        radius = constant(conjunct.expression)
        for pos, other in ((0, 2), (2, 0)):
            ref = _pair_ref(args[pos], args[pos + 1], refs)
            ra, dec = constant(args[other]), constant(args[other + 1])
            if ref is not None and None not in (ra, dec, radius):
                return ref, Cone(ra, dec, radius)  # type: ignore[arg-type]
    return None


def _key_restrictor(conjunct: exp.Expression, refs: dict[str, Ref]) -> tuple[Ref, set[int]] | None:
    if isinstance(conjunct, exp.EQ):
        for side, other in (
            (conjunct.this, conjunct.expression),
            (conjunct.expression, conjunct.this),
        ):
            col = _column_of(side, refs)
            value = constant(other)
            if (
                col
                and col[1] == col[0].director_key
                and value is not None
                and float(value).is_integer()
            ):
                return col[0], {int(value)}
    if isinstance(conjunct, exp.In) and not conjunct.args.get("query"):
        col = _column_of(conjunct.this, refs)
        values = [constant(v) for v in conjunct.expressions]
        if (
            col
            and col[1] == col[0].director_key
            and values
            and all(v is not None and float(v).is_integer() for v in values)
        ):
            return col[0], {int(v) for v in values if v is not None}
    return None


def _components(refs: list[Ref], edges: list[tuple[str, str, bool]]) -> None:
    parent = {r.alias: r.alias for r in refs}

    def find(a: str) -> str:
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b, _ in edges:
        parent[find(a)] = find(b)
    roots = {find(r.alias) for r in refs}
    if len(roots) > 1:
        names = ", ".join(f"{r.table.name} ({r.alias})" for r in refs)
        raise QueryRefused(
            f"the partitioned tables {names} are not joined chunk by chunk: join a child to "
            "its director on the director key (e.g. o.objectId = f.objectId), or two "
            "instances of a director by a distance no larger than the overlap"
        )


def _display_names(select: exp.Select, ctx: PlanContext) -> None:
    """Name each result column as the user expects: a column by its schema spelling, an
    unnamed expression by its function (as PostgreSQL does: count, avg), unique."""
    seen: dict[str, int] = {}
    renamed: dict[str, str] = {}
    for projection in select.expressions:
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        alias = projection.alias_or_name
        name = alias
        if isinstance(inner, exp.Column) and inner.table and alias == inner.name:
            source = _source_table(select, inner.table)
            if source is not None:
                model = ctx.catalogs.catalogs[source.args["db"].name].table(
                    source.name.removeprefix(PARTITION)
                )
                if model.has_column(inner.name):
                    name = model.column(inner.name).name
        elif alias.startswith("_col_"):
            name = _expression_name(inner)
        count = seen.get(name.lower(), 0)
        seen[name.lower()] = count + 1
        if count:
            name = f"{name}_{count + 1}"
        if name != alias:
            renamed.setdefault(alias, name)
        if isinstance(projection, exp.Alias):
            projection.set("alias", exp.to_identifier(name, quoted=name != name.lower()))
        else:
            projection.replace(exp.alias_(inner.copy(), name, quoted=name != name.lower()))
    # ORDER BY may name a projection by its alias (qualify writes it so): follow the rename
    order = select.args.get("order")
    for item in order.expressions if order is not None else []:
        key = item.this
        if isinstance(key, exp.Column) and not key.table and key.name in renamed:
            new = renamed[key.name]
            key.set("this", exp.to_identifier(new, quoted=new != new.lower()))


def _expression_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return "expr"


def _plan_select(select: exp.Select, ctx: PlanContext, uploads: Uploads | None = None) -> ExecPlan:
    _display_names(select, ctx)
    _areaspec(select, ctx)
    oracle_sql = to_postgres(select)  # before subqueries get their chunk predicates
    refs = _refs(select, ctx)
    analysis = _analyze(select, refs, ctx)
    near = [e for e in analysis.edges if e[2]]
    if len(near) > 1:
        raise QueryRefused("only one spatial self-join per query is supported")
    _components(refs, analysis.edges)
    nullable = _nullable_sides(select, refs)
    overlap_aliases = {near[0][1]} if near else set()
    primary = [r for r in refs if r.alias not in overlap_aliases]
    if near and any(isinstance(r, Derived) for r in refs if r.alias in near[0][:2]):
        raise QueryRefused("a near-neighbour join needs the director table itself on both sides")
    if uploads is not None:
        plain = [r for r in refs if not isinstance(r, Derived)]
        uploads.analyze(select, plain, nullable, overlap_aliases)
    chunks = _chunk_set(primary, refs, analysis, ctx, nullable)
    if uploads is not None:
        chunks = uploads.restrict(chunks)
    _rewrite_for_workers(select, refs, analysis, overlap_aliases, nullable)
    if uploads is not None:
        uploads.rewrite(select, CHUNKS)
    parts = split(select)
    if uploads is not None:
        uploads.name_tables(parts.worker)
    worker_sql = to_postgres(parts.worker, copy=False).replace(CHUNKS, "{chunks}")
    merge_sql = to_postgres(parts.merge, copy=False).replace(PARTIALS, "{partials}")
    columns = _columns(select, ctx, parts.names)
    if not refs:
        workers = [w.name for w in ctx.spec.workers]
        return ExecPlan(
            worker_sql,
            merge_sql,
            {},
            workers[0],
            parts.limit,
            parts.concatenate,
            columns,
            oracle_sql,
        )
    return ExecPlan(
        worker_sql,
        merge_sql,
        _assign(chunks, refs[0].catalog.sql_name, ctx),
        None,
        parts.limit,
        parts.concatenate,
        columns,
        oracle_sql,
        partitions=ctx.states[refs[0].catalog.sql_name].partitions,
    )


def _areaspec(select: exp.Select, ctx: PlanContext) -> None:
    """``qserv_areaspec_*(...)`` in WHERE becomes CONTAINS(POINT(ra, dec), region) on the
    first director table of FROM (then a spatial restrictor like any other)."""
    for spec in _conjuncts(select.args.get("where")):
        if not isinstance(spec, geo.AreaSpec):
            continue
        director = next(
            (
                (source, ctx.catalogs.catalogs[source.args["db"].name].table(source.name))
                for source in _sources(select)
                if isinstance(source, exp.Table)
                and source.args.get("db")
                and ctx.catalogs.catalogs[source.args["db"].name].table(source.name).kind
                is TableKind.DIRECTOR
            ),
            None,
        )
        if director is None:
            raise QueryRefused("qserv_areaspec_* needs a director table (e.g. Object) in FROM")
        source, table = director
        alias = source.alias_or_name
        point = geo.Point(
            ra=exp.column((table.ra_column or "").lower(), alias),
            dec=exp.column((table.dec_column or "").lower(), alias),
        )
        spec.replace(geo.Contains(point=point, region=arguments(spec)[0].copy()))


def _chunk_set(
    primary: list[Ref],
    refs: list[Ref],
    analysis: _Analysis,
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
            lo, hi = _ranges(region)
            chunks &= set(state.layout.chunks_overlapping(lo, hi)[1].tolist())
        if ref.alias in analysis.keys:
            chunks &= ctx.lookup_keys(ref.catalog.sql_name, ref.director, analysis.keys[ref.alias])
    return chunks


def _assign(chunks: set[int], catalog: str, ctx: PlanContext) -> dict[str, tuple[int, ...]]:
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


def _sources(select: exp.Select) -> list[exp.Expression]:
    """The FROM source and the joined sources, in order."""
    sources = [select.args["from_"].this] if select.args.get("from_") else []
    return sources + [j.this for j in select.args.get("joins") or []]


def _nullable_sides(select: exp.Select, refs: list[Ref]) -> set[str]:
    """The aliases on the NULL-filled side of an outer join.

    Their chunk predicates cannot go in WHERE (that would reject the NULL-filled rows).
    An outer join that keeps unmatched rows of replicated tables only, against a
    partitioned table, is refused: every worker would return those rows.
    """
    partitioned = {r.alias for r in refs}
    aliases = [source.alias_or_name for source in _sources(select)]
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


def _rewrite_for_workers(
    select: exp.Select,
    refs: list[Ref],
    analysis: _Analysis,
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
            table = _partition(ref.catalog.sql_name, ref.table.sql_name)
            margin = _partition(ref.catalog.sql_name, overlap_table_name(ref.table))
            union: exp.Expression = exp.maybe_parse(
                f"SELECT * FROM {table} UNION ALL SELECT * FROM {margin}", dialect="postgres"
            )
            ref.node.replace(
                exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier(ref.alias)))
            )
        else:
            ref.node.set("this", exp.to_identifier(PARTITION + ref.table.sql_name))
        for region in analysis.regions.get(ref.alias, []):
            extra.append(_index_ranges(region, ref.alias))
    for (a, b), radius in analysis.radius.items():
        # the overlap side only needs rows within the join radius of the primary's cones
        for region in analysis.regions.get(a, []):
            if isinstance(region, Cone) and b not in analysis.regions:
                widened = Cone(region.ra, region.dec, min(region.radius + radius, 180.0))
                extra.append(_index_ranges(widened, b))
    position = {source.alias_or_name: i for i, source in enumerate(_sources(select))}
    joins = select.args.get("joins") or []
    for a, b, _ in analysis.edges:
        if a in derived or b in derived:
            continue  # joined on the director key: the same chunk anyway
        same_chunk = exp.EQ(this=exp.column("chunk_id", a), expression=exp.column("chunk_id", b))
        last = max(position[a], position[b])
        join = joins[last - 1] if last else None
        if nullable and join is not None and join.side and join.args.get("on") is not None:
            join.set("on", exp.and_(join.args["on"], same_chunk))
        else:
            extra.append(same_chunk)
    if extra:
        condition = exp.and_(*[exp.Paren(this=e) for e in extra], copy=False)
        where = select.args.get("where")
        if where is not None:
            condition = exp.and_(exp.Paren(this=where.this), condition, copy=False)
        select.where(condition, append=False, copy=False)


def _partition(catalog: str, table: str) -> str:
    return f"{catalog}.{PARTITION}{table}"


def _index_ranges(region: Region, alias: str) -> exp.Expr:
    """``spatial_index`` range predicate of a region (one node, see IndexRanges)."""
    lo, hi = _ranges(region)
    ranges = tuple(zip(lo.tolist(), hi.tolist(), strict=True))
    return IndexRanges(this=exp.column("spatial_index", alias), ranges=ranges)


@functools.lru_cache(maxsize=256)
def _ranges(region: Region) -> tuple[np.ndarray, np.ndarray]:
    """A region's spatial_index ranges (computed once per region: chunks and predicate)."""
    return region.index_ranges()


def _set_operation_plan(tree: exp.SetOperation, ctx: PlanContext) -> ExecPlan:
    """UNION/EXCEPT/INTERSECT with partitioned tables: each SELECT runs on the workers
    tagged with its number (``qserv_branch``); the merge applies the set operation (and
    its ORDER BY/LIMIT) to the tagged rows of all chunks on the czar."""
    leaves = _set_leaves(tree)
    catalogs = set()
    for leaf in leaves:
        refs_here = [t for t in leaf.find_all(exp.Table) if t.args.get("db")]
        catalogs |= {t.args["db"].name for t in refs_here}
        if not _has_partitioned(leaf, ctx):
            raise QueryRefused(
                "a UNION/EXCEPT/INTERSECT mixes a SELECT of replicated tables only with "
                "partitioned ones: every worker would return its rows; run it separately"
            )
        plain = not (
            leaf.args.get("group")
            or leaf.args.get("distinct")
            or leaf.args.get("limit")
            or leaf.args.get("offset")
            or leaf.args.get("order")
            or leaf.find(exp.Window)
            or any(p.find(exp.AggFunc) for p in leaf.expressions)
        )
        if not plain:
            raise QueryRefused(
                "each SELECT of a UNION/EXCEPT/INTERSECT over partitioned tables must return "
                "plain rows (no GROUP BY, aggregate, DISTINCT, ORDER BY or LIMIT inside): put "
                "ORDER BY/LIMIT after the last SELECT, or aggregate over a subquery"
            )
        _display_names(leaf, ctx)
        _areaspec(leaf, ctx)
    if len(catalogs) > 1:
        raise QueryRefused("a set operation over partitioned tables must stay in one catalog")
    names = [p.alias_or_name for p in leaves[0].expressions]
    order = tree.args.get("order")
    for item in order.expressions if order is not None else []:
        key = item.this  # ORDER BY of the whole set operation names its result columns
        if isinstance(key, exp.Column) and not key.table:
            name = next((n for n in names if n.lower() == key.name.lower()), key.name)
            key.set("this", exp.to_identifier(name, quoted=name != name.lower()))
    oracle_sql = to_postgres(tree)
    result_columns = _columns(leaves[0], ctx, names)
    merge_tree = tree.copy()
    for i, twin in enumerate(_set_leaves(merge_tree)):
        columns = [
            exp.alias_(exp.column(f"c{j}"), n, quoted=n != n.lower()) for j, n in enumerate(names)
        ]
        branch = exp.EQ(this=exp.column("qserv_branch"), expression=exp.Literal.number(i))
        twin.replace(exp.select(*columns).from_(PARTIALS).where(branch))
    chunks: set[int] = set()
    workers = []
    first_refs: list[Ref] = []
    for i, leaf in enumerate(leaves):
        refs = _refs(leaf, ctx)
        first_refs = first_refs or refs
        analysis = _analyze(leaf, refs, ctx)
        near = [e for e in analysis.edges if e[2]]
        if len(near) > 1:
            raise QueryRefused("only one spatial self-join per SELECT is supported")
        _components(refs, analysis.edges)
        nullable = _nullable_sides(leaf, refs)
        overlap = {near[0][1]} if near else set()
        primary = [r for r in refs if r.alias not in overlap]
        chunks |= _chunk_set(primary, refs, analysis, ctx, nullable)
        _rewrite_for_workers(leaf, refs, analysis, overlap, nullable)
        if len(leaf.expressions) != len(names):
            raise QueryRefused("each SELECT of a set operation must have the same columns")
        values = [p.this if isinstance(p, exp.Alias) else p for p in leaf.expressions]
        leaf.set(
            "expressions",
            [exp.alias_(exp.Literal.number(i), "qserv_branch")]
            + [exp.alias_(v, f"c{j}", copy=False) for j, v in enumerate(values)],
        )
        workers.append(f"({to_postgres(leaf, copy=False)})")
    worker_sql = " UNION ALL ".join(workers).replace(CHUNKS, "{chunks}")
    return ExecPlan(
        worker_sql,
        to_postgres(merge_tree, copy=False).replace(PARTIALS, "{partials}"),
        _assign(chunks, first_refs[0].catalog.sql_name, ctx),
        None,
        None,
        False,
        result_columns,
        oracle_sql,
        partitions=ctx.states[first_refs[0].catalog.sql_name].partitions,
    )


def _set_leaves(tree: exp.Expression) -> list[exp.Select]:
    """The SELECTs of a set operation, left to right."""
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    if isinstance(tree, exp.SetOperation):
        return _set_leaves(tree.this) + _set_leaves(tree.expression)
    if not isinstance(tree, exp.Select):
        raise QueryRefused(f"unexpected part of a set operation: {tree.sql('postgres')[:60]}")
    return [tree]


def _whole_query_plan(tree: exp.Expression, ctx: PlanContext) -> ExecPlan:
    """A set operation or WITH over replicated tables only: run it whole on one worker."""
    if _has_partitioned(tree, ctx):
        if isinstance(tree, exp.SetOperation):
            return _set_operation_plan(tree, ctx)
        raise QueryRefused(
            f"this kind of query ({tree.key}) over partitioned tables is not supported"
        )
    sql = to_postgres(tree)
    names = [e.alias_or_name for e in tree.selects] if hasattr(tree, "selects") else []
    merge = exp.select(*[exp.alias_(exp.column(f"c{i}"), n) for i, n in enumerate(names)]).from_(
        PARTIALS
    )
    worker_cols = ", ".join(
        f"q.{exp.to_identifier(n).sql('postgres')} AS c{i}" for i, n in enumerate(names)
    )
    worker = f"SELECT {worker_cols} FROM ({sql}) AS q"
    return ExecPlan(
        worker,
        to_postgres(merge).replace(PARTIALS, "{partials}"),
        {},
        ctx.spec.workers[0].name,
        None,
        True,
        tuple(ResultColumn(n) for n in names),
        sql,
    )
