"""The split pass: one SELECT becomes worker SQL (partial results) and merge SQL.

Workers run the query's FROM/WHERE over their chunks and return partial rows; the czar
merges them. Without aggregation the workers return the projected rows (with ORDER BY
and LIMIT pushed down), and the merge orders and limits again. With aggregation the
workers group by the query's keys and return partial aggregates:

====================  ==============================  ==================================
query                 worker                          merge
====================  ==============================  ==================================
COUNT(x)              count(x) AS p                   coalesce(sum(p), 0)::bigint
SUM(x), MIN, MAX      sum(x) AS p                     sum(p) (min, max)
AVG(x)                sum(x) AS p, count(x) AS q      sum(p) / nullif(sum(q), 0)
VAR/STDDEV(x)         count, avg, M2 per batch        Chan's combination of (n, mean, M2)
agg(DISTINCT x)       x added to the GROUP BY          agg(DISTINCT x)
====================  ==============================  ==================================

>>> import sqlglot
>>> s = split(sqlglot.parse_one(
...     "SELECT o.band AS band, avg(o.flux) AS m FROM t.o AS o GROUP BY o.band", read="postgres"))
>>> s.worker.sql("postgres")
'SELECT o.band AS g0, SUM(o.flux) AS p0, COUNT(o.flux) AS p1 FROM t.o AS o GROUP BY o.band'
>>> s.merge.sql("postgres")
'SELECT g0 AS "band", SUM(p0) / NULLIF(SUM(p1), 0) AS "m" FROM qserv_partials__ GROUP BY g0'
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from qserv_py.errors import QueryError
from qserv_py.query import params
from qserv_py.query.walk import find_all

PARTIALS = "qserv_partials__"  # the merge table in merge SQL; rendered as {partials}
_VARIANCE = (exp.Variance, exp.VariancePop, exp.Stddev, exp.StddevSamp, exp.StddevPop)
_SMALL_INTEGERS = (exp.DataType.Type.INT, exp.DataType.Type.SMALLINT, exp.DataType.Type.TINYINT)


@dataclass
class Split:
    worker: exp.Select
    merge: exp.Select
    #: the merge only concatenates worker rows (execution may stop early at the limit)
    concatenate: bool
    limit: int | None
    #: the merge only names the worker's columns, in order (no ORDER BY, DISTINCT, LIMIT)
    passthrough: bool = False


def split(select: exp.Select) -> Split:
    """Split a qualified SELECT (aliases on every projection) into worker and merge.

    The worker takes the nodes of ``select`` (its FROM, WHERE, projections) rather than
    copies of them: a copy of a typed tree costs as much as building it, so ``select``
    must not be used afterwards (its result columns are described before)."""
    # most queries have neither: one walk to know, instead of one per projection
    found = find_all(select, exp.Filter, exp.AggFunc)
    if any(isinstance(n, exp.Filter) for n in found):
        _inline_filters(select)
    aggregates = _aggregates(select) if any(isinstance(n, exp.AggFunc) for n in found) else []
    if not aggregates and not select.args.get("group"):
        return _split_rows(select)
    return _split_aggregates(select, aggregates)


def output_names(select: exp.Select) -> list[str]:
    """The names of the result columns of ``select``, as the merge writes them."""
    return [_name(projection) for projection in select.expressions]


def _limit(select: exp.Select) -> tuple[int | None, int]:
    def value(node: exp.Expression | None) -> int | None:
        if node is None:
            return None
        expr = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
        if not isinstance(expr, exp.Literal) or not expr.is_int:
            raise QueryError("LIMIT, TOP and OFFSET must be whole numbers")
        return int(params.text(expr))

    return value(select.args.get("limit")), value(select.args.get("offset")) or 0


def _from_where(select: exp.Select) -> exp.Select:
    """A worker SELECT with the query's FROM, joins and WHERE (taken from ``select``),
    and no projections."""
    worker = exp.Select()
    for key in ("from_", "joins", "where", "with_"):
        if select.args.get(key) is not None:
            worker.set(key, select.args.pop(key))
    return worker


def _partials() -> exp.Table:
    """The merge table (built, not parsed: the builders parse a string argument)."""
    return exp.Table(this=exp.to_identifier(PARTIALS))


def _column(name: str) -> exp.Column:
    """``exp.column(name)`` of a plain name (``c0``), built directly."""
    return exp.Column(this=exp.Identifier(this=name, quoted=False))


def _alias(node: exp.Expr, name: str, *, quoted: bool = False) -> exp.Expr:
    """``exp.alias_(node, name, copy=False)``, built directly for a column (``alias_``
    sets the alias of a node that takes one, such as a subquery, instead)."""
    if type(node) is exp.Column:
        return exp.Alias(this=node, alias=exp.Identifier(this=name, quoted=quoted))
    return exp.alias_(node, name, quoted=quoted, copy=False)


def _name(projection: exp.Expression) -> str:
    return projection.alias_or_name


def _split_rows(select: exp.Select) -> Split:
    limit, offset = _limit(select)
    names = output_names(select)
    order = select.args.get("order")
    # the ORDER BY keys that are projections, found before the worker takes these
    positions = (
        [_projection_index(select, item.this) for item in order.expressions]
        if order is not None
        else []
    )
    worker = _from_where(select)
    merge = exp.Select(from_=exp.From(this=_partials()))
    # the lists set once: the select() builder re-sets the whole list for each one added
    columns, merged = [], []
    for i, (projection, name) in enumerate(zip(list(select.expressions), names, strict=True)):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        inner.pop()
        columns.append(_alias(inner, f"c{i}"))
        merged.append(_alias(_column(f"c{i}"), name, quoted=True))
    worker.set("expressions", columns)
    merge.set("expressions", merged)
    if order is not None:
        worker_order, merge_order = [], []
        for j, (item, position) in enumerate(zip(order.expressions, positions, strict=True)):
            if position is not None:
                column = f"c{position}"
            else:
                column = f"s{j}"
                worker.append("expressions", exp.alias_(item.this.copy(), column, copy=False))
            worker_order.append(item.__class__(this=exp.column(column), **_ordered_flags(item)))
            merge_order.append(item.__class__(this=exp.column(column), **_ordered_flags(item)))
        worker.set("order", exp.Order(expressions=worker_order))
        merge.set("order", exp.Order(expressions=merge_order))
    if select.args.get("distinct"):
        worker.set("distinct", exp.Distinct())
        merge.set("distinct", exp.Distinct())
    if limit is not None:
        worker.set("limit", exp.Limit(expression=exp.Literal.number(limit + offset)))
        merge.set("limit", exp.Limit(expression=exp.Literal.number(limit)))
    if offset:
        merge.set("offset", exp.Offset(expression=exp.Literal.number(offset)))
    concatenate = order is None and not select.args.get("distinct")
    total = None if limit is None else limit + offset
    return Split(worker, merge, concatenate, total, concatenate and total is None)


def _ordered_flags(item: exp.Ordered) -> dict[str, object]:
    return {"desc": item.args.get("desc"), "nulls_first": item.args.get("nulls_first")}


def _projection_index(select: exp.Select, key: exp.Expression) -> int | None:
    """The projection an ORDER BY key names (by alias or by equal expression)."""
    for i, projection in enumerate(select.expressions):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if (
            isinstance(key, exp.Column)
            and not key.table
            and key.name.lower() == projection.alias_or_name.lower()
        ):
            return i
        if key == inner:
            return i
    return None


def _inline_filters(select: exp.Select) -> None:
    """``agg(x) FILTER (WHERE c)`` → ``agg(CASE WHEN c THEN x END)`` (``1`` for ``*``):
    the same value for every aggregate that skips NULLs, as all mergeable ones do.

    >>> import sqlglot
    >>> s = sqlglot.parse_one("SELECT count(*) FILTER (WHERE x > 0) FROM t", read="postgres")
    >>> _inline_filters(s)
    >>> s.sql("postgres")
    'SELECT COUNT(CASE WHEN x > 0 THEN 1 END) FROM t'
    """
    for node in find_all(select, exp.Filter):
        agg = node.this
        if not isinstance(agg, exp.AggFunc) or node.find_ancestor(exp.Select) is not select:
            continue
        arg = agg.this
        distinct = isinstance(arg, exp.Distinct)
        value = arg.expressions[0] if distinct and len(arg.expressions) == 1 else arg
        if value is None or isinstance(value, exp.Star):
            value = exp.Literal.number(1)
        case = exp.Case(ifs=[exp.If(this=node.expression.this.copy(), true=value.copy())])
        case.type = value.type
        inlined = agg.copy()
        inlined.set("this", exp.Distinct(expressions=[case]) if distinct else case)
        node.replace(inlined)


def _aggregates(select: exp.Select) -> list[exp.AggFunc]:
    found: list[exp.AggFunc] = []
    for part in (*select.expressions, select.args.get("having"), select.args.get("order")):
        if part is None:
            continue
        for node in find_all(part, exp.AggFunc):
            if node.find_ancestor(exp.Subquery, exp.Select) not in (None, select):
                continue
            if isinstance(node, exp.AggFunc) and node.find_ancestor(exp.Window):
                raise QueryError(
                    "window functions are not supported: they need all rows at once; compute "
                    "them on the result instead"
                )
            found.append(node)
    return found


class _Merger:
    """Builds worker partials and the merge expression of each aggregate."""

    def __init__(self, worker: exp.Select) -> None:
        self.worker = worker
        self.partials: dict[str, exp.Column] = {}  # worker SQL -> its column
        self.distinct: dict[str, str] = {}  # DISTINCT argument SQL -> worker group column
        self.distinct_expressions: list[exp.Expression] = []
        self.variance = False
        #: (count, mean) partial columns of each variance argument; argument k's overall
        #: group mean is column gm<k> of the merge's inner query
        self.variance_parts: list[tuple[str, str]] = []

    def partial(self, expression: exp.Expr) -> exp.Column:
        key = expression.sql("postgres")
        if key not in self.partials:
            name = f"p{len(self.partials)}"
            self.worker.append("expressions", exp.alias_(expression, name, copy=False))
            self.partials[key] = exp.column(name)
        return self.partials[key].copy()

    def merge(self, agg: exp.AggFunc) -> exp.Expr:
        arg = agg.this
        if isinstance(arg, exp.Distinct):
            if len(arg.expressions) != 1:
                raise QueryError("aggregates over DISTINCT take one expression")
            inner = arg.expressions[0]
            key = inner.sql("postgres")
            if key not in self.distinct:
                self.distinct[key] = f"d{len(self.distinct)}"
                self.distinct_expressions.append(inner.copy())
                self.worker.append(
                    "expressions", exp.alias_(inner.copy(), self.distinct[key], copy=False)
                )
            column = self.distinct[key]
            return agg.__class__(this=exp.Distinct(expressions=[exp.column(column)]))
        if isinstance(agg, exp.Count):
            p = self.partial(exp.Count(this=arg.copy() if arg else exp.Star()))
            return exp.cast(exp.func("coalesce", exp.Sum(this=p), exp.Literal.number(0)), "bigint")
        if isinstance(agg, exp.Sum):
            merged = exp.Sum(this=self.partial(exp.Sum(this=arg.copy())))
            # PostgreSQL's sum of smallint/integer is bigint; a sum of bigint partials
            # would be numeric
            if arg.type is not None and arg.type.this in _SMALL_INTEGERS:
                return exp.cast(merged, "bigint")
            return merged
        if isinstance(agg, (exp.Min, exp.Max)):
            return agg.__class__(this=self.partial(agg.__class__(this=arg.copy())))
        if isinstance(agg, exp.Avg):
            # PostgreSQL averages real in double precision; so must the partial sums
            summed = arg.copy()
            if arg.type is not None and arg.type.this is exp.DataType.Type.FLOAT:
                summed = exp.cast(summed, "double precision")
            total = self.partial(exp.Sum(this=summed))
            count = self.partial(exp.Count(this=arg.copy()))
            return exp.Div(
                typed=True,
                this=exp.Sum(this=total),
                expression=exp.func("nullif", exp.Sum(this=count), exp.Literal.number(0)),
            )
        if isinstance(agg, _VARIANCE):
            return self._variance(agg, arg)
        raise QueryError(f"aggregate {agg.sql('postgres')} cannot be computed across chunks")

    def _variance(self, agg: exp.AggFunc, arg: exp.Expression) -> exp.Expr:
        """Chan's parallel combination of (n, mean, M2) per batch; ``gm`` is the group's
        overall mean, computed by a window in the merge's inner query."""
        self.variance = True
        n = self.partial(exp.Count(this=arg.copy()))
        mean = self.partial(exp.Avg(this=arg.copy()))
        if (n.name, mean.name) not in self.variance_parts:
            self.variance_parts.append((n.name, mean.name))
        gm = exp.column(f"gm{self.variance_parts.index((n.name, mean.name))}")
        m2 = self.partial(
            exp.func(
                "coalesce",
                exp.Mul(
                    this=exp.VariancePop(this=arg.copy()), expression=exp.Count(this=arg.copy())
                ),
                exp.Literal.number(0),
            )
        )
        total_n = exp.Sum(this=n.copy())
        m2_total = exp.Sum(
            this=exp.Add(
                this=m2,
                expression=exp.Mul(
                    this=n.copy(),
                    expression=exp.Pow(
                        this=exp.Paren(this=exp.Sub(this=mean, expression=gm)),
                        expression=exp.Literal.number(2),
                    ),
                ),
            )
        )
        population = isinstance(agg, (exp.VariancePop, exp.StddevPop))
        denominator = (
            total_n if population else exp.Sub(this=total_n, expression=exp.Literal.number(1))
        )
        var: exp.Expr = exp.Div(
            typed=True,
            this=m2_total,
            expression=exp.func(
                "nullif", exp.cast(denominator, "double precision"), exp.Literal.number(0)
            ),
        )
        if not population:
            # var_samp of one value is NULL, as in PostgreSQL
            var = exp.If(
                this=exp.GT(this=total_n.copy(), expression=exp.Literal.number(1)), true=var
            )
        return (
            exp.func("sqrt", var)
            if isinstance(agg, (exp.Stddev, exp.StddevSamp, exp.StddevPop))
            else var
        )


def _split_aggregates(select: exp.Select, aggregates: list[exp.AggFunc]) -> Split:
    limit, offset = _limit(select)
    if select.args.get("distinct"):
        raise QueryError("SELECT DISTINCT with aggregates is not supported; drop DISTINCT")
    worker = _from_where(select)
    group = select.args.pop("group", None)
    groups = list(group.expressions) if group is not None else []
    group_columns = {}
    for k, key in enumerate(groups):
        worker.append("expressions", exp.alias_(key.copy(), f"g{k}", copy=False))
        group_columns[key.sql("postgres")] = f"g{k}"
    merger = _Merger(worker)
    merged: dict[str, exp.Expr] = {}
    for agg in aggregates:
        merged.setdefault(agg.sql("postgres"), merger.merge(agg))

    def rewrite(node: exp.Expression) -> exp.Expression:
        def replace(n: exp.Expression) -> exp.Expression:
            key = n.sql("postgres")
            if isinstance(n, exp.AggFunc) and key in merged:
                return merged[key].copy()  # type: ignore[return-value]
            column = group_columns.get(key)
            if column is not None and not isinstance(n, exp.Literal):
                return exp.column(column)
            return n

        result = node.transform(replace)
        leftover = [c for c in result.find_all(exp.Column) if c.table]
        if leftover:
            raise QueryError(
                f"column {leftover[0].sql('postgres')} must appear in GROUP BY or be used in an "
                "aggregate function"
            )
        return result

    merge = exp.Select()
    names = output_names(select)
    for projection, name in zip(select.expressions, names, strict=True):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        merge.append("expressions", exp.alias_(rewrite(inner), name, quoted=True, copy=False))
    if merger.distinct:
        worker.set(
            "group",
            exp.Group(
                expressions=[
                    *groups,
                    *merger.distinct_expressions,
                ]
            ),
        )
    elif groups:
        worker.set("group", exp.Group(expressions=groups))
    source: exp.Expression = _partials()
    if merger.variance_parts:
        source = _with_group_means(merger.variance_parts, len(groups))
    merge.from_(source, copy=False)
    if groups:
        merge.group_by(*(exp.column(f"g{k}") for k in range(len(groups))), copy=False)
    if select.args.get("having") is not None:
        merge.having(rewrite(select.args["having"].this), copy=False)
    order = select.args.get("order")
    if order is not None:
        items = []
        for item in order.expressions:
            key = item.this
            position = _projection_index(select, key)
            target = (
                exp.column(names[position], quoted=True) if position is not None else rewrite(key)
            )
            items.append(exp.Ordered(this=target, **_ordered_flags(item)))
        merge.set("order", exp.Order(expressions=items))
    if limit is not None:
        merge.set("limit", exp.Limit(expression=exp.Literal.number(limit)))
    if offset:
        merge.set("offset", exp.Offset(expression=exp.Literal.number(offset)))
    return Split(worker, merge, False, None)


def _with_group_means(parts: list[tuple[str, str]], groups: int) -> exp.Expression:
    """The partials with ``gm<k>``: each group's overall mean of variance argument k,
    ``sum(n·mean) / sum(n)`` over the group's batches (a window, so that Chan's formula
    can use it per row)."""
    keys = [exp.column(f"g{k}") for k in range(groups)]
    means = []
    for k, (n_name, mean_name) in enumerate(parts):
        n, mean = exp.column(n_name), exp.column(mean_name)
        weighted = exp.Window(
            this=exp.Sum(this=exp.Mul(this=n, expression=mean)),
            partition_by=[c.copy() for c in keys],
        )
        total = exp.Window(this=exp.Sum(this=n.copy()), partition_by=[c.copy() for c in keys])
        gm = exp.Div(
            typed=True, this=weighted, expression=exp.func("nullif", total, exp.Literal.number(0))
        )
        means.append(exp.alias_(gm, f"gm{k}", copy=False))
    inner = exp.select(exp.Star(), *means).from_(_partials(), copy=False)
    return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("t")))
