"""UNION, EXCEPT and INTERSECT: over replicated tables only, run whole on one worker;
with partitioned tables, each SELECT runs on the workers tagged with its number and the
merge applies the set operation to the tagged rows of all chunks.
"""

from __future__ import annotations

from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.exec.plan import ExecPlan, ResultColumn
from qserv_py.query.analysis import (
    Ref,
    areaspec_restrictions,
    has_partitioned,
)
from qserv_py.query.chunking import (
    CHUNKS,
    assign_chunks,
)
from qserv_py.query.columns import display_names, result_columns
from qserv_py.query.context import PlanContext
from qserv_py.query.render import to_postgres
from qserv_py.query.split import PARTIALS
from qserv_py.query.subqueries import analyse_select


def _set_operation_plan(tree: exp.SetOperation, ctx: PlanContext) -> ExecPlan:
    """UNION/EXCEPT/INTERSECT with partitioned tables: each SELECT runs on the workers
    tagged with its number (``qserv_branch``); the merge applies the set operation (and
    its ORDER BY/LIMIT) to the tagged rows of all chunks on the czar."""
    leaves = _set_leaves(tree)
    catalogs = set()
    for leaf in leaves:
        refs_here = [t for t in leaf.find_all(exp.Table) if t.args.get("db")]
        catalogs |= {t.args["db"].name for t in refs_here}
        if not has_partitioned(leaf, ctx):
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
        display_names(leaf, ctx)
        areaspec_restrictions(leaf, ctx)
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
    described = result_columns(leaves[0], ctx, names)
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
        analysed = analyse_select(leaf, ctx, outermost=True)
        first_refs = first_refs or analysed.refs
        chunks |= analysed.chunks(ctx)
        analysed.rewrite(leaf)
        if len(leaf.expressions) != len(names):
            raise QueryRefused("each SELECT of a set operation must have the same columns")
        values = [p.this if isinstance(p, exp.Alias) else p for p in leaf.expressions]
        leaf.set(
            "expressions",
            [exp.alias_(exp.Literal.number(i), "qserv_branch")]
            + [exp.alias_(v, f"c{j}", copy=False) for j, v in enumerate(values)],
        )
        workers.append(f"({to_postgres(leaf, copy=False, written_out=True)})")
    worker_sql = " UNION ALL ".join(workers).replace(CHUNKS, "{chunks}")
    return ExecPlan(
        worker_sql,
        to_postgres(merge_tree, copy=False).replace(PARTIALS, "{partials}"),
        assign_chunks(chunks, first_refs[0].catalog.sql_name, ctx),
        None,
        None,
        False,
        described,
        oracle_sql,
        partitions=ctx.states[first_refs[0].catalog.sql_name].partitions,
        catalog=first_refs[0].catalog.sql_name,
        holders=ctx.states[first_refs[0].catalog.sql_name].placement,
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


def whole_query_plan(tree: exp.Expression, ctx: PlanContext) -> ExecPlan:
    """A set operation or WITH over replicated tables only: run it whole on one worker."""
    if has_partitioned(tree, ctx):
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
