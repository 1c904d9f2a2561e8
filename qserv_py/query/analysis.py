"""What a SELECT says about its partitioned tables: the refs (tables and chunk-local
derived tables), the restrictors that choose chunks (regions on a director's position,
director keys), and the join edges that keep a join chunk-local (director key,
near-neighbour distance). A join that is not chunk-local is refused with the rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.query import geometry as geo
from qserv_py.query import params
from qserv_py.query.context import PlanContext
from qserv_py.query.guard import list_values
from qserv_py.query.regions_ast import arguments, constant, integer_constant, region_of
from qserv_py.schema.model import Catalog, Table, TableKind
from qserv_py.sky.regions import Cone, Region


@dataclass
class Ref:
    """A partitioned table of the query."""

    alias: str
    catalog: Catalog
    table: Table
    node: exp.Table
    overlap: bool = False
    #: a match table: the side (1 or 2) whose director's chunk its rows are read in, and
    #: whether a table joins it on that side (see qserv_py.query.matches)
    match_anchor: int = 1
    match_joined: bool = False
    #: and whether its anchor side's key restriction chooses the chunks
    match_narrowed: bool = False

    def column(self, name: str | None) -> str | None:
        return name.lower() if name else None

    @property
    def ra(self) -> str | None:
        """The position columns that place the rows in chunks: a director's only (a
        child's own position, if it has one, does not say where its rows are)."""
        return self.column(self.table.ra_column) if self.is_director else None

    @property
    def dec(self) -> str | None:
        return self.column(self.table.dec_column) if self.is_director else None

    @property
    def is_director(self) -> bool:
        return self.table.kind is TableKind.DIRECTOR

    @property
    def is_match(self) -> bool:
        return type(self) is Ref and self.table.kind is TableKind.MATCH

    @property
    def director_key(self) -> str | None:
        """The column holding the director key (its own key for a director; a match
        table has two, see :meth:`key_director`)."""
        if self.is_match:
            return None
        key = (
            self.table.key_column
            if self.table.kind is TableKind.DIRECTOR
            else self.table.director_key
        )
        return self.column(key)

    @property
    def director(self) -> str:
        if self.is_match:
            return ""
        return (
            self.table.sql_name
            if self.table.kind is TableKind.DIRECTOR
            else (self.table.director or "").lower()
        )

    def match_side(self, column: str) -> int | None:
        """The side (1 or 2) whose director key ``column`` of a match table holds."""
        if self.is_match:
            for side, (_, key) in enumerate(self.table.match_sides, start=1):
                if column == key.lower():
                    return side
        return None

    def key_director(self, column: str) -> str | None:
        """The director (sql name) whose key ``column`` holds, if it holds one."""
        side = self.match_side(column)
        if side is not None:
            return self.table.match_sides[side - 1][0].lower()
        return self.director if column == self.director_key else None


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


def from_sources(select: exp.Select) -> list[exp.Expression]:
    """The FROM source and the joined sources, in order."""
    sources = [select.args["from_"].this] if select.args.get("from_") else []
    return sources + [j.this for j in select.args.get("joins") or []]


def has_partitioned(node: exp.Expression, ctx: PlanContext) -> bool:
    for table in node.find_all(exp.Table):
        if table.args.get("db"):
            cat = ctx.catalogs.catalogs[table.args["db"].name]
            if cat.table(table.name).partitioned:
                return True
    return False


def conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    if isinstance(node, exp.Where):
        node = node.this
    if isinstance(node, exp.Paren):
        return conjuncts(node.this)
    if isinstance(node, exp.And):
        return conjuncts(node.this) + conjuncts(node.expression)
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
class Analysis:
    regions: dict[str, list[Region]]
    keys: dict[str, set[int]]
    edges: list[tuple[str, str, bool]]  # (alias, alias, near-neighbour?)
    areaspec: list[exp.Expression]
    #: the radius (degrees) of each near-neighbour edge
    radius: dict[tuple[str, str], float] = field(default_factory=dict)
    #: match tables: the aliases joined to each side (1, 2) on that side's director key
    match_sides: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    #: match tables: the director keys each side's key column is restricted to
    match_keys: dict[str, dict[int, set[int]]] = field(default_factory=dict)
    #: each worker statement reads one chunk (native workers; on Citus a statement reads
    #: several chunks of a shard): a near-neighbour join's sides need no chunk_id test
    per_chunk: bool = False


def analyze(
    select: exp.Select, refs: list[Ref], ctx: PlanContext, *, outermost: bool = False
) -> Analysis:
    """What ``select`` says about its ``refs``; the restrictors of the ``outermost`` SELECT
    are noted for the plan cache, which re-runs them with new values (see ``params``)."""
    by_alias = {r.alias: r for r in refs}
    analysis = Analysis({}, {}, [], [], per_chunk=ctx.spec.backend != "citus")
    where = conjuncts(select.args.get("where"))
    ons = [c for j in select.args.get("joins") or [] for c in conjuncts(j.args.get("on"))]
    for conjunct in where + ons:
        edge = _join_edge(conjunct, by_alias)
        if edge is not None:
            analysis.edges.append(edge)
            _note_match_side(analysis, conjunct, by_alias)
            radius = _nn_radius(conjunct) if edge[2] else None
            if radius is not None:
                analysis.radius[(edge[0], edge[1])] = radius
            continue
        if conjunct in ons:
            continue
        if isinstance(conjunct, geo.AreaSpec):
            analysis.areaspec.append(conjunct)
            continue
        with params.restrictor_scope(outermost):
            restricts = restrict(analysis, conjunct, by_alias)
        if restricts and outermost:
            params.note_restrictor(conjunct)
    return analysis


def restrict(analysis: Analysis, conjunct: exp.Expression, refs: dict[str, Ref]) -> bool:
    """Add ``conjunct`` to the regions or keys of ``analysis`` if it restricts a table;
    whether it does."""
    spatial = _spatial_restrictor(conjunct, refs)
    if spatial is not None:
        analysis.regions.setdefault(spatial[0].alias, []).append(spatial[1])
        return True
    keys = _key_restrictor(conjunct, refs)
    if keys is None:
        return False
    ref, values, column = keys
    side = ref.match_side(column)
    if side is None:
        known = analysis.keys.get(ref.alias)
        analysis.keys[ref.alias] = values if known is None else known & values
    else:
        sides = analysis.match_keys.setdefault(ref.alias, {})
        before = sides.get(side)
        sides[side] = values if before is None else before & values
    return True


def _note_match_side(analysis: Analysis, conjunct: exp.Expression, refs: dict[str, Ref]) -> None:
    """For a join edge with a match table, note which side of it the other table joins."""
    if not isinstance(conjunct, exp.EQ):
        return
    a, b = _column_of(conjunct.this, refs), _column_of(conjunct.expression, refs)
    if a and b:
        for (mine, column), (other, _) in ((a, b), (b, a)):
            side = mine.match_side(column)
            if side is not None:
                sides = analysis.match_sides.setdefault(mine.alias, {})
                sides.setdefault(side, set()).add(other.alias)


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
            and (director := a[0].key_director(a[1])) is not None
            and director == b[0].key_director(b[1])
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
    bound: exp.Expression | None = None
    first = second = None
    if isinstance(conjunct, (exp.LT, exp.LTE)) and isinstance(conjunct.this, geo.Distance):
        args = arguments(conjunct.this)
        first = _pair_ref(args[0], args[1], refs)
        second = _pair_ref(args[2], args[3], refs)
        bound = conjunct.expression
    elif isinstance(conjunct, geo.Contains):
        point, region = arguments(conjunct)
        if isinstance(region, geo.Circle):
            cargs = arguments(region)
            first = _point_of(point, refs)
            second = _pair_ref(cargs[0], cargs[1], refs)
            bound = cargs[2]
    if first is None or second is None or first is second or bound is None:
        return None
    radius = constant(bound)  # only now: reading a constant pins it (see params)
    if radius is None:
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
    if isinstance(conjunct, geo.RegionWithin) and isinstance(conjunct.this, geo.Circle):
        # CONTAINS(CIRCLE(o.ra, o.dec, r), region): a disc inside a region of constants
        # has its centre there (for r >= 0; a negative radius is no disc)
        cargs = arguments(conjunct.this)
        ref = _pair_ref(cargs[0], cargs[1], refs)
        outer = conjunct.expression
        if ref is not None and isinstance(outer, geo.REGIONS):
            shape = region_of(outer)
            radius = constant(cargs[2]) if shape is not None else None
            if shape is not None and radius is not None and radius >= 0:
                return ref, shape
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


def _key_restrictor(
    conjunct: exp.Expression, refs: dict[str, Ref]
) -> tuple[Ref, set[int], str] | None:
    """The ref, keys and column of a director-key restriction (``key = n``, ``key IN``)."""
    if isinstance(conjunct, exp.EQ):
        for side, other in (
            (conjunct.this, conjunct.expression),
            (conjunct.expression, conjunct.this),
        ):
            col = _column_of(side, refs)
            if col and col[0].key_director(col[1]) is not None:
                value = integer_constant(other)
                if value is not None:
                    return col[0], {value}, col[1]
    if isinstance(conjunct, exp.In) and not conjunct.args.get("query"):
        col = _column_of(conjunct.this, refs)
        if col and col[0].key_director(col[1]) is not None:
            items = conjunct.expressions
            if len(items) == 1 and (listed := list_values(items[0])) is not None:
                items = listed  # a long list of numbers, parsed as one node
            values = [integer_constant(v) for v in items]
            if values and None not in values:
                return col[0], {v for v in values if v is not None}, col[1]
    return None


def check_joined(refs: list[Ref], edges: list[tuple[str, str, bool]]) -> None:
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


def areaspec_restrictions(select: exp.Select, ctx: PlanContext) -> None:
    """``qserv_areaspec_*(...)`` in WHERE becomes ``CONTAINS(POINT(ra, dec), region)`` on
    *every* partitioned table of FROM (and its JOINs) that has position columns, each by
    its own position, as Qserv's QservRestrictorPlugin does (it adds one
    ``scisql_s2PtIn*(alias.ra, alias.decl, ...) = 1`` per chunked table of the FROM list):
    both sides of a near-neighbour join are in the region. Directors' conditions then
    choose chunks like any spatial restrictor; a child's own position (``qserv:ra_column``
    on a child table) only filters its rows, since they live in their director's chunk.
    A child without position columns is not restricted by itself (its join to its director
    is). At least one table must take the restriction, else the query is refused."""
    for spec in conjuncts(select.args.get("where")):
        if not isinstance(spec, geo.AreaSpec):
            continue
        restricted: list[exp.Expression] = []
        for source in from_sources(select):
            if not (isinstance(source, exp.Table) and source.args.get("db")):
                continue
            table = ctx.catalogs.catalogs[source.args["db"].name].table(source.name)
            if not (table.partitioned and table.ra_column and table.dec_column):
                continue
            alias = source.alias_or_name
            point = geo.Point(
                ra=exp.column(table.ra_column.lower(), alias),
                dec=exp.column(table.dec_column.lower(), alias),
            )
            restricted.append(geo.Contains(point=point, region=arguments(spec)[0].copy()))
        if not restricted:
            raise QueryRefused(
                "qserv_areaspec_* needs a partitioned table with position columns "
                "(a director such as Object) in FROM"
            )
        spec.replace(exp.and_(*restricted, copy=False) if len(restricted) > 1 else restricted[0])
