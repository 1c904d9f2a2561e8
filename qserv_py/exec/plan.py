"""What the planner hands to execution: SQL for the workers, SQL for the merge, chunks.

The planner (``qserv_py.query``) produces an :class:`ExecPlan` from a checked query tree;
execution (``qserv_py.exec.dispatch``) runs it. Neither looks at the user's text.

``worker_sql`` runs on a worker over a batch of its chunks. A partitioned table in it is
named ``catalog.qserv_part__table``, standing for one chunk's partition: execution writes
the statement once per chunk of the batch, naming that chunk's partition
(``catalog.table_<chunk>``, or ``ONLY catalog.table``, empty, where the chunk has none,
see ``partitions``), and reads their UNION ALL. The placeholder ``{chunks}`` is replaced by an
``ARRAY[...]::bigint[]`` literal of the chunk ids the statement reads. Its rows are
streamed with binary COPY into a merge table on the czar. ``merge_sql`` then runs on the
czar, with the placeholder ``{partials}`` replaced by that table's name.

On Citus (docs/citus.md) a chunk has no partition, and the statement is not repeated
per chunk: each placeholder becomes the batch's rows of the distributed table,
``(SELECT * FROM catalog.table WHERE chunk_id = ANY(ARRAY[...]))``, in one statement the
coordinator routes to the shards holding those chunks. The worker SQL joins partitioned
tables on ``chunk_id`` equality, so one statement over a batch reads what the UNION ALL of
its chunks' statements would (a UNION ALL of one branch per chunk took Citus 300 times as
long: each branch planned and run on its own; docs/decisions.md). A statement that reads
``{chunks}`` elsewhere too (an upload's rows of the chunk, which are not joined on chunk
equality) is still repeated per chunk, as on native workers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResultColumn:
    """A column of the result as the user sees it, with its metadata."""

    name: str
    unit: str = ""
    ucd: str = ""
    description: str = ""
    #: VOTable/Felis datatype when the column comes straight from a catalog column
    datatype: str = ""


@dataclass(frozen=True)
class ExecPlan:
    #: SELECT ... over the workers' tables, with ``{chunks}`` for the chunk list
    worker_sql: str
    #: SELECT ... FROM {partials} ... on the czar
    merge_sql: str
    #: worker name -> the chunks this query reads there (each chunk on exactly one of the
    #: workers that hold it); empty for a query of replicated tables only
    chunks: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: a query of replicated tables only: worker_sql runs once, on ``replicated_worker``
    replicated_worker: str | None = None
    #: rows the user wants at most (LIMIT + OFFSET), if any
    limit: int | None = None
    #: the merge just concatenates partial rows (no ORDER BY, aggregate or DISTINCT), so
    #: execution may stop the workers as soon as ``limit`` rows have arrived
    concatenate: bool = False
    columns: tuple[ResultColumn, ...] = ()
    #: for EXPLAIN: the SQL the oracle (one unpartitioned database) would run
    oracle_sql: str = ""
    estimated_rows: int | None = None
    #: ``catalog.table`` (or overlap table) -> the chunks that have a partition of it
    partitions: dict[str, frozenset[int]] = field(default_factory=dict)
    #: the merge SQL only names the worker SQL's columns, in order: a plan one worker
    #: answers in one statement may run the worker SQL alone (the result's names come
    #: from ``columns``)
    passthrough: bool = False
    #: the catalog whose chunks ``chunks`` lists: execution asks the czar for their other
    #: holders when a worker fails (see qserv_py.exec.routing)
    catalog: str | None = None
    #: chunk -> the workers holding it, as the plan's metadata said (shared, not copied):
    #: execution moves chunks off a worker known down without asking the czar
    holders: Mapping[int, tuple[str, ...]] | None = field(default=None, repr=False)
    #: rewrites a statement as it is written, given the chunks it reads (one chunk's
    #: branch, or a whole statement's chunks), on native workers: execution puts a small
    #: upload's rows of those chunks in its text (:mod:`qserv_py.exec.uploads`)
    per_chunk: Callable[[str, tuple[int, ...]], str] | None = field(
        default=None, repr=False, compare=False
    )
    #: planner settings the worker statements run with, (name, value): measured choices
    #: for shapes whose estimates mislead PostgreSQL (see :mod:`qserv_py.query.neighbours`)
    worker_settings: tuple[tuple[str, str], ...] = ()
    #: on Citus, read straight from the shards on the worker nodes: ``catalog.table`` ->
    #: chunk -> its shard table there (:mod:`qserv_py.exec.citus_direct`); None: through
    #: the coordinator
    shards: Mapping[str, Mapping[int, str]] | None = field(default=None, repr=False, compare=False)
    #: with ``shards``: a shard table -> every chunk of the catalog in it; a statement that
    #: reads them all reads the shard without a ``chunk_id`` filter
    shard_chunks: Mapping[str, frozenset[int]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def total_chunks(self) -> int:
        return sum(len(c) for c in self.chunks.values())


_PARTITION = re.compile(r"\.qserv_part__(\w+)\b")  # a literal first: a fast scan
_ALIASED = re.compile(r"\s+AS\s", re.IGNORECASE)


def worker_sql(plan: ExecPlan, chunks: tuple[int, ...], *, citus: bool = False) -> str:
    """The statement a worker runs for ``chunks`` (see :mod:`qserv_py.exec.plan`);
    ``citus``: for a Citus coordinator (distributed tables, no chunk partitions).

    >>> plan = ExecPlan("SELECT count(*) AS p0 FROM qt.qserv_part__object AS o", "")
    >>> print(worker_sql(plan, (16, 17), citus=True).replace(" WHERE", "\\n WHERE"))
    SELECT count(*) AS p0 FROM (SELECT * FROM qt.object
     WHERE chunk_id = ANY(ARRAY[16,17]::bigint[])) AS o
    """
    template = plan.worker_sql.strip().rstrip(";")
    if "qserv_part__" not in template:
        text = template.replace("{chunks}", _array(chunks))
        return text if plan.per_chunk is None else plan.per_chunk(text, chunks)
    pieces = _pieces(template)
    if plan.shards is not None:
        return _on_shards(pieces, chunks, plan.shards, plan.shard_chunks)
    if citus and "{chunks}" not in template:
        return _on_citus(pieces, chunks)
    if citus:  # the statement reads {chunks} elsewhere too (an upload's chunk): per chunk
        return " UNION ALL ".join(f"({_on_citus(pieces, (c,))})" for c in chunks) or (
            _on_citus(pieces, ())
        )

    def one(chunk: int | None) -> str:
        read = () if chunk is None else (chunk,)
        text = list(pieces)
        for i in range(1, len(pieces), 2):
            table = pieces[i]
            if chunk is not None and chunk in plan.partitions.get(table, ()):
                text[i] = f"{table}_{chunk}"
            else:
                text[i] = f"ONLY {table}"  # a partitioned parent alone holds no rows
        out = "".join(text).replace("{chunks}", _array(read))
        return out if plan.per_chunk is None else plan.per_chunk(out, read)

    if not chunks:
        return one(None)
    if len(chunks) == 1:
        return one(chunks[0])
    return " UNION ALL ".join(f"({one(c)})" for c in chunks)


def _on_citus(
    pieces: list[str],
    chunks: tuple[int, ...],
    names: Mapping[str, str] | None = None,
    whole: frozenset[str] = frozenset(),
) -> str:
    """The worker SQL for a Citus coordinator: one statement over ``chunks``; with
    ``names`` (table -> its shard table), for the worker node holding those shards, of
    which those in ``whole`` are read whole (``chunks`` are all of their chunks)."""
    text = list(pieces)
    where = f"chunk_id = ANY({_array(chunks)})" if chunks else "false"
    for i in range(1, len(pieces), 2):
        table = pieces[i]
        # a subquery in FROM needs an alias: the table's own name if none follows
        alias = "" if _ALIASED.match(pieces[i + 1]) else f" AS {table.split('.')[1]}"
        source = table if names is None else names[table]
        if source in whole:
            text[i] = f"{source}{alias}"
        else:
            text[i] = f"(SELECT * FROM {source} WHERE {where}){alias}"
    return "".join(text).replace("{chunks}", _array(chunks))


def _on_shards(
    pieces: list[str],
    chunks: tuple[int, ...],
    shards: Mapping[str, Mapping[int, str]],
    catalog_chunks: Mapping[str, frozenset[int]],
) -> str:
    """The worker SQL for a Citus worker node, naming the shard tables: one statement
    per group of ``chunks`` in the same shards (a UNION ALL if several), reading whole
    the shards whose every chunk of the catalog (``catalog_chunks``) the group holds;
    without chunks (a probe of the columns), over the shards of the plan's first chunk."""
    tables = list(dict.fromkeys(pieces[1::2]))
    groups: dict[tuple[str, ...], list[int]] = {}
    for chunk in chunks:
        groups.setdefault(tuple(shards[t][chunk] for t in tables), []).append(chunk)
    if not groups:
        return _on_citus(pieces, (), {t: next(iter(shards[t].values())) for t in tables})
    statements = [
        _on_citus(
            pieces,
            tuple(cs),
            dict(zip(tables, names, strict=True)),
            frozenset(n for n in names if n in catalog_chunks and catalog_chunks[n] <= set(cs)),
        )
        for names, cs in groups.items()
    ]
    return (
        statements[0] if len(statements) == 1 else " UNION ALL ".join(f"({s})" for s in statements)
    )


def partitioned_tables(plan: ExecPlan) -> list[str]:
    """The partitioned tables (``catalog.table``) the worker SQL reads, once each."""
    return list(dict.fromkeys(_pieces(plan.worker_sql)[1::2]))


def _pieces(template: str) -> list[str]:
    """``template`` cut at its placeholders (``catalog.qserv_part__table``): its text at
    even indices, the tables (``catalog.table``) between them at odd ones."""
    pieces: list[str] = []
    end = 0
    for match in _PARTITION.finditer(template):
        start = match.start()  # the catalog is the word before the dot
        while start > end and (template[start - 1].isalnum() or template[start - 1] == "_"):
            start -= 1
        if start == match.start():
            continue
        pieces += [template[end:start], f"{template[start : match.start()]}.{match[1]}"]
        end = match.end()
    pieces.append(template[end:])
    return pieces


def _array(chunks: tuple[int, ...]) -> str:
    return f"ARRAY[{','.join(str(int(c)) for c in chunks)}]::bigint[]"
