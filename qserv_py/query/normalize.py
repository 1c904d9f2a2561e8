"""The first pass: any parsed query → the canonical tree.

The canonical tree has PostgreSQL semantics, whatever the language it was written in,
plus the nodes of :mod:`qserv_py.query.geometry` (angles in degrees):

- only one SELECT (or WITH / set operation of SELECTs) — anything else is refused;
- every geometry, IN_UNIT, scisql and ``qserv_areaspec_*`` call is a node (PostgreSQL's
  parser leaves them anonymous; the Adql and Qserv parsers build most of them);
- unquoted identifiers are lower case; delimited ones keep their case (``quoted=True``);
- ``Contains`` is a boolean: ``CONTAINS(...) = 1`` (or ``1 = ...``, ``<> 0``) is
  ``Contains``, ``= 0`` is ``NOT Contains``, a bare ``Contains`` where a condition is
  expected stays, and anywhere else (a value) it is ``CASE WHEN Contains THEN 1 ELSE 0 END``;
- ADQL / MySQL functions mean what PostgreSQL needs: ``LOG10(x)`` is ``log(x)``,
  ``ROUND(x, n)`` and ``TRUNCATE(x, n)`` round ``x::numeric``, MOD and MySQL's DIV
  take numerics;
- a POINT only inside CONTAINS (after INTERSECTS, DISTANCE and COORD1/2 are resolved),
  a region only as CONTAINS' second argument, in AreaSpec or in the nodes of
  :mod:`qserv_py.query.region_functions` (so are those predicates boolean as
  ``Contains``) — or either as a whole
  result column (a DALI point, circle or polygon value) — and AreaSpec only as an AND
  term of a WHERE clause.

>>> from qserv_py.query.parse import parse
>>> from qserv_py.query.render import to_postgres
>>> def pg(text, lang="adql"):
...     return to_postgres(normalize(parse(text, lang)))
>>> pg("SELECT TOP 5 ra FROM Object WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
...    "CIRCLE('ICRS', 10, 20, 0.5))")
'SELECT ra FROM object WHERE qserv.pt_in_circle(ra, dec, 10, 20, 0.5) LIMIT 5'
>>> pg("SELECT CONTAINS(POINT(ra, dec), CIRCLE(10, 20, 1)) AS inside FROM t")
'SELECT CASE WHEN qserv.pt_in_circle(ra, dec, 10, 20, 1) THEN 1 ELSE 0 END AS inside FROM t'
>>> pg("SELECT LOG10(flux) FROM t")
'SELECT LOG(flux) FROM t'
>>> pg("SELECT `objectId` FROM Object WHERE scisql_s2PtInBox(ra, decl, 0, 0, 1, 1) = 0",
...    "qserv")
'SELECT "objectId" FROM object WHERE NOT qserv.pt_in_box(ra, decl, 0, 0, 1, 1)'
>>> pg("SELECT ROUND(mag, 2) FROM t WHERE DISTANCE(POINT(ra, dec), POINT(1, 2)) < 0.1",
...    "postgresql")
'SELECT ROUND(CAST(mag AS DECIMAL), 2) FROM t WHERE qserv.ang_sep(ra, dec, 1, 2) < 0.1'
"""

from __future__ import annotations

from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.query import geometry as geo
from qserv_py.query import params
from qserv_py.query.walk import find_all, nodes

#: nodes that modify data or the database: refused anywhere in a query
_WRITES: tuple[type[exp.Expr], ...] = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Copy,
    exp.Grant,
    exp.Set,
    exp.Command,
    exp.Into,
    exp.Lock,
)
#: parents where a child is a condition
_CONDITIONS = (exp.And, exp.Or, exp.Xor, exp.Not, exp.Where, exp.Having, exp.Qualify)


def normalize(tree: exp.Expression, *, copy: bool = True) -> exp.Expression:
    """The canonical tree of a parsed query (a new tree; ``tree`` is left as it was,
    unless ``copy=False``: for a tree fresh from the parser that nothing else holds)."""
    if copy:
        tree = tree.copy()
    check_select(tree)
    build_calls(tree)
    fold_identifiers(tree)
    booleans(tree)
    postgres_functions(tree)
    check_geometry(tree)
    return tree


def check_select(tree: exp.Expression) -> None:
    """Refuse anything but one SELECT (or a WITH / set operation of SELECTs)."""
    if not isinstance(tree, exp.Query):
        kind = tree.name.upper() if isinstance(tree, exp.Command) else tree.key.upper()
        raise QueryRefused(f"only one SELECT statement is allowed per query, not {kind}")
    for node in find_all(tree, *_WRITES):
        what = "SELECT ... INTO" if isinstance(node, exp.Into) else node.key.upper()
        if isinstance(node, exp.Lock):
            what = "FOR UPDATE / FOR SHARE"
        raise QueryRefused(f"queries are read-only: {what} is not allowed")


def build_calls(tree: exp.Expression) -> None:
    """Anonymous calls of geometry, IN_UNIT, scisql and qserv_areaspec names → nodes
    (innermost first, so a call's arguments are nodes when it is built)."""
    calls = [
        node
        for node in nodes(tree)
        if (isinstance(node, exp.Anonymous) and node.name.upper() in geo.FUNCTIONS)
        or type(node) is exp.Contains
    ]
    for node in reversed(calls):
        if isinstance(node, exp.Anonymous):
            built = geo.build(node.name, node.expressions)
        else:
            built = geo.build("CONTAINS", [node.this, node.expression])
        node.replace(built)


def fold_identifiers(tree: exp.Expression) -> None:
    """Unquoted identifiers to lower case (delimited ones keep their case)."""
    for ident in find_all(tree, exp.Identifier):
        if not ident.quoted:
            ident.set("this", ident.name.lower())


def booleans(tree: exp.Expression) -> None:
    """ADQL's 0/1 CONTAINS → the boolean Contains (see the module docstring); Qserv's
    ``qserv_areaspec_*(...) = 1`` (or ``1 = ...``) → the bare AreaSpec, as Qserv reads it."""
    for spec in find_all(tree, geo.AreaSpec):
        outer: exp.Expr = spec
        while isinstance(outer.parent, exp.Paren):
            outer = outer.parent
        equal = outer.parent
        if isinstance(equal, exp.EQ):
            other = equal.expression if equal.this is outer else equal.this
            if _zero_or_one(other) == 1:
                equal.replace(spec)
    for node in find_all(tree, *geo.PREDICATES):
        top: exp.Expr = node
        while isinstance(top.parent, exp.Paren):
            top = top.parent
        parent = top.parent
        if isinstance(parent, (exp.EQ, exp.NEQ)):
            other = parent.expression if parent.this is top else parent.this
            flag = _zero_or_one(other)
            if flag is not None:
                if (flag == 1) == isinstance(parent, exp.EQ):
                    parent.replace(node)
                elif _is_condition(parent) or isinstance(parent.parent, exp.Paren):
                    parent.replace(exp.Not(this=node))
                else:  # NOT binds loosely: (NOT c) as an operand
                    parent.replace(exp.Paren(this=exp.Not(this=node)))
                continue
        if not _is_condition(top):
            then = exp.If(this=node.copy(), true=exp.Literal.number(1))
            top.replace(exp.Case(ifs=[then], default=exp.Literal.number(0)))


def postgres_functions(tree: exp.Expression) -> None:
    """ADQL / MySQL functions that PostgreSQL spells or types differently."""
    for log in find_all(tree, exp.Log):
        if log.expression is not None and log.this.is_int and int(params.text(log.this)) == 10:
            log.replace(exp.Log(this=log.expression))  # LOG10(x): PostgreSQL's log(x)
    for node in find_all(tree, exp.Round, exp.Trunc):
        if node.args.get("decimals") is not None:  # only numeric has round(x, n)
            node.set("this", _numeric(node.this))
    for op in find_all(tree, exp.Mod, exp.IntDiv):  # no % or div() on double precision
        if not (op.this.is_int and op.expression.is_int):
            op.set("this", _numeric(op.this))
            op.set("expression", _numeric(op.expression))


def check_geometry(tree: exp.Expression) -> None:
    """Points and regions only where a predicate uses them; AreaSpec only in WHERE."""
    for cast in find_all(tree, exp.Cast):
        target = cast.to.sql().upper()
        if target in ("POINT", "CIRCLE", "POLYGON"):
            raise QueryRefused(
                f"CAST to {target} is not supported: build the value with {target}(...), as "
                "in POINT(ra, dec)"
            )
    for point in find_all(tree, geo.Point):
        if geometry_value(point):
            continue
        if not (isinstance(point.parent, geo.Contains) and point.arg_key == "point"):
            raise QueryRefused(
                f"{point.sql()} can only be used inside CONTAINS, INTERSECTS, DISTANCE, "
                "COORD1, COORD2, CENTROID or AREA, or as a whole result column"
            )
    for region in find_all(tree, *geo.REGIONS):
        parent = region.parent
        if geometry_value(region):
            if not isinstance(region, VALUE_GEOMETRY):
                raise QueryRefused(f"{geo.adql_name(region)} cannot be a result column")
            continue
        if not (
            (isinstance(parent, geo.Contains) and region.arg_key == "region")
            or isinstance(parent, (geo.AreaSpec, *_REGION_ARGUMENT))
        ):
            raise QueryRefused(
                f"{geo.adql_name(region)} can only be used as an argument of CONTAINS, "
                "INTERSECTS, AREA or CENTROID, as in CONTAINS(POINT(ra, dec), "
                "CIRCLE(10, 20, 1)) = 1, or as a whole result column"
            )
    for spec in find_all(tree, geo.AreaSpec):
        node: exp.Expr = spec
        while isinstance(node.parent, (exp.And, exp.Paren)):
            node = node.parent
        if not isinstance(node.parent, exp.Where):
            raise QueryRefused(
                "qserv_areaspec_* can only be an AND term of a WHERE clause, as in "
                "WHERE qserv_areaspec_circle(10, 20, 1) AND ... (or "
                "qserv_areaspec_circle(10, 20, 1) = 1)"
            )


#: the nodes that take a region as an argument (besides Contains and AreaSpec)
_REGION_ARGUMENT = (geo.RegionArea, geo.PolygonCentroid, geo.RegionsIntersect, geo.RegionWithin)

#: the geometry a result column may be (DALI point, circle, polygon; a BOX as a polygon)
VALUE_GEOMETRY = (geo.Point, geo.Circle, geo.Polygon, geo.AdqlBox)


def geometry_value(node: exp.Expr) -> bool:
    """Whether ``node`` is a whole result column (``SELECT POINT(ra, dec) AS p``): the
    one place a POINT or region is a value rather than a predicate's argument."""
    parent = node.parent
    if isinstance(parent, exp.Alias):
        node, parent = parent, parent.parent
    return isinstance(parent, exp.Select) and node.arg_key == "expressions"


def _zero_or_one(node: exp.Expr) -> int | None:
    value = geo.number(node) if isinstance(node, exp.Expression) else None
    return int(value) if value in (0, 1) else None


def _is_condition(node: exp.Expr) -> bool:
    parent = node.parent
    if isinstance(parent, _CONDITIONS):
        return True
    if isinstance(parent, exp.Join):
        return node.arg_key == "on"
    return isinstance(parent, exp.If) and node.arg_key == "this"


def _numeric(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Cast) and node.to.is_type(exp.DType.DECIMAL):
        return node
    if isinstance(node, exp.Literal) and not node.is_string:
        return node
    return exp.cast(node.copy(), exp.DType.DECIMAL)
