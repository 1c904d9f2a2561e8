"""From query text to an :class:`~qserv_py.exec.plan.ExecPlan`.

The passes, in order: parse (dialect) → normalize (canonical tree) → qualify (schema)
→ check (read-only, allowed functions) → units (IN_UNIT) → types → booleans → CTEs
inlined → analyze (partitioned tables, chunk-local subqueries, joins, restrictors:
``analysis``, ``subqueries``) → chunk set and rewrite for the workers (partitions,
overlap, spatial_index ranges: ``chunking``) → split (worker and merge SQL). Set
operations are planned by ``setops``, result columns named by ``columns``.

A query that chunk-local data cannot answer correctly is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
from sqlglot import exp

from qserv_py.errors import QueryLimitExceeded
from qserv_py.exec.plan import ExecPlan
from qserv_py.query import mysql, params
from qserv_py.query.analysis import (
    Derived,
    areaspec_restrictions,
    has_partitioned,
)
from qserv_py.query.booleans import compare_booleans
from qserv_py.query.check import check_allowed
from qserv_py.query.chunking import (
    CHUNKS,
    assign_chunks,
)
from qserv_py.query.columns import display_names, result_columns
from qserv_py.query.context import PlanContext
from qserv_py.query.guard import check_row_references
from qserv_py.query.neighbours import worker_settings
from qserv_py.query.normalize import normalize
from qserv_py.query.parse import parse
from qserv_py.query.qualify import qualify
from qserv_py.query.render import to_postgres
from qserv_py.query.setops import whole_query_plan
from qserv_py.query.split import PARTIALS, output_names, split
from qserv_py.query.subqueries import analyse_select, inline_ctes
from qserv_py.query.types import annotate
from qserv_py.query.units import convert_units
from qserv_py.query.uploads import Uploads


def plan(
    text: str,
    lang: str,
    ctx: PlanContext,
    uploads: Mapping[str, pa.Table | pa.Schema] | None = None,
    *,
    oracle: bool = True,
) -> ExecPlan:
    """The plan of a query; ``uploads`` are its ``TAP_UPLOAD`` tables, by name (their
    schemas are enough to plan; with the data, cross-matches narrow the chunk set).
    ``oracle=False`` leaves out ``oracle_sql`` (writing it costs a copy of the tree:
    execution does not need it, EXPLAIN and the tests do)."""
    try:
        state = Uploads(ctx, uploads) if uploads else None
        if state is not None:
            ctx = state.ctx
            return state.finish(_plan(text, lang, ctx, state, oracle))
        return _plan(text, lang, ctx, None, oracle)
    except RecursionError:  # the guard's limits keep the known shapes away; a backstop
        raise QueryLimitExceeded(
            "the query is nested too deeply to plan: lower its nesting of parentheses, "
            "subqueries and function calls (settings max_query_nesting, max_query_depth)",
            setting="max_query_depth",
        ) from None


def _plan(
    text: str, lang: str, ctx: PlanContext, uploads: Uploads | None, oracle: bool
) -> ExecPlan:
    parsed = parse(text, lang, ctx.limits)
    qserv = lang.strip().lower() == "qserv"
    if qserv:
        parsed = mysql.show_columns(parsed, mysql.describer(ctx))
    # chunkId / subChunkId before normalize folds their case (the result keeps it)
    pseudo = qserv and mysql.pseudo_columns(parsed, mysql.column_finder(ctx))
    tree = qualify(normalize(parsed, copy=False), catalogs=ctx.catalogs)
    check_row_references(tree)
    check_allowed(tree)
    convert_units(tree, catalogs=ctx.catalogs)
    annotate(tree, catalogs=ctx.catalogs)
    if qserv and mysql.after_types(tree, ctx, pseudo):
        annotate(tree, catalogs=ctx.catalogs)
    compare_booleans(tree)
    if tree.args.get("with_") and has_partitioned(tree, ctx):
        inline_ctes(tree)
    if not isinstance(tree, exp.Select):
        return whole_query_plan(tree, ctx)
    return _plan_select(tree, ctx, uploads, oracle)


def _plan_select(
    select: exp.Select, ctx: PlanContext, uploads: Uploads | None = None, oracle: bool = True
) -> ExecPlan:
    display_names(select, ctx)
    areaspec_restrictions(select, ctx)
    # before subqueries get their chunk partitions
    oracle_sql = to_postgres(select) if oracle else ""
    analysed = analyse_select(select, ctx, outermost=True)
    params.note_outermost(analysed)
    refs = analysed.refs
    if uploads is not None:
        plain = [r for r in refs if not isinstance(r, Derived)]
        uploads.analyze(select, plain, analysed.nullable, analysed.overlap)
    chunks = analysed.chunks(ctx)
    if uploads is not None:
        chunks = uploads.restrict(chunks)
    analysed.rewrite(select)
    if uploads is not None:
        uploads.rewrite(select, CHUNKS)
    # described before the split, which takes the select's nodes
    columns = result_columns(select, ctx, output_names(select))
    parts = split(select)
    if uploads is not None:
        uploads.name_tables(parts.worker)
    worker_sql = to_postgres(parts.worker, copy=False, written_out=True).replace(
        CHUNKS, "{chunks}"
    )
    merge_sql = to_postgres(parts.merge, copy=False).replace(PARTIALS, "{partials}")
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
            passthrough=parts.passthrough and uploads is None,
        )
    return ExecPlan(
        worker_sql,
        merge_sql,
        assign_chunks(chunks, refs[0].catalog.sql_name, ctx),
        None,
        parts.limit,
        parts.concatenate,
        columns,
        oracle_sql,
        partitions=ctx.states[refs[0].catalog.sql_name].partitions,
        passthrough=parts.passthrough and uploads is None,
        catalog=refs[0].catalog.sql_name,
        holders=ctx.states[refs[0].catalog.sql_name].placement,
        worker_settings=worker_settings(worker_sql),
    )
