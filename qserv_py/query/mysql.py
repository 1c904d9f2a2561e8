"""MySQL semantics for Qserv SQL: where MySQL and PostgreSQL answer a query differently,
the Qserv dialect keeps MySQL's answer (Qserv runs on MySQL), or refuses the query.

Passes, run only for ``lang=qserv``:

- :func:`show_columns`: ``SHOW COLUMNS FROM t [LIKE 'pattern']`` → a SELECT of the
  catalog's description of ``t``, in MySQL's columns (Field, Type, Null, Key, Default,
  Extra);
- :func:`pseudo_columns` (before normalize and qualify): Qserv's ``chunkId`` and
  ``subChunkId`` columns of partitioned tables → :class:`ChunkColumn` nodes, which
  :func:`expand_pseudo_columns` (after the type pass) writes as our ``chunk_id`` (a
  HEALPix NUNIQ id, not Qserv's chunk number) and the row's sub-pixel within its chunk
  (0..63, three orders finer);
- :func:`mysql_semantics` (after the type pass, which it needs): ``LIKE`` on a number
  compares its text; ``HEX``; integer ``+ - *`` in 64 bits; ``/`` of exact numbers is
  decimal with MySQL's scale (the dividend's + 4); ``DIV`` is a BIGINT; ``DIV`` and ``%``
  by zero are NULL;
- :func:`check_functions`: a function that PostgreSQL would not know (sqlglot has no
  translation for it) is refused here, naming it, instead of failing on a worker.

NULLs sort first in ascending order, as in MySQL: the Qserv dialect (sqlglot's MySQL)
writes ``NULLS FIRST`` / ``NULLS LAST`` itself.

>>> from qserv_py.query.normalize import normalize
>>> from qserv_py.query.parse import parse
>>> from qserv_py.query.render import to_postgres
>>> print(to_postgres(show_columns(parse("SHOW COLUMNS FROM t", "qserv"), lambda t, c: [
...     ("id", "bigint", False, True), ("flux", "double precision", True, False)])))
... # doctest: +NORMALIZE_WHITESPACE
SELECT "Field", "Type", "Null", "Key", "Default", "Extra" FROM (VALUES
(1, 'id', 'bigint', 'NO', 'PRI', CAST(NULL AS TEXT), ''),
(2, 'flux', 'double', 'YES', '', CAST(NULL AS TEXT), ''))
AS c(n, "Field", "Type", "Null", "Key", "Default", "Extra") ORDER BY n
>>> to_postgres(normalize(parse("SELECT a FROM t ORDER BY a", "qserv")))
'SELECT a FROM t ORDER BY a NULLS FIRST'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from sqlglot import exp

from qserv_py.errors import QueryError, QueryRefused
from qserv_py.query import geometry as geo
from qserv_py.query import params
from qserv_py.query.analysis import from_sources
from qserv_py.query.context import PlanContext
from qserv_py.query.render import QservPostgresGenerator
from qserv_py.query.walk import find_all

#: (name, PostgreSQL type, nullable, primary key) of each column of a table
Describe = Callable[[str, str | None], Sequence[tuple[str, str, bool, bool]]]

#: PostgreSQL type → MySQL's name of it, as SHOW COLUMNS writes it
_MYSQL_TYPES = {
    "bigint": "bigint",
    "integer": "int",
    "smallint": "smallint",
    "real": "float",
    "double precision": "double",
    "boolean": "tinyint(1)",
    "text": "text",
    "bytea": "blob",
    "timestamp": "datetime",
}


def show_columns(tree: exp.Expression, describe: Describe) -> exp.Expression:
    """``SHOW [FULL] COLUMNS FROM t [FROM db] [LIKE 'p']`` → the SELECT that answers it
    (the description from ``describe(table, catalog)``); any other SHOW is refused."""
    if not isinstance(tree, exp.Show):
        return tree
    if tree.name.upper() != "COLUMNS" or tree.args.get("target") is None:
        raise QueryRefused(
            f"SHOW {tree.name.upper()} is not supported; SHOW COLUMNS FROM <table> is, and "
            "the tables and columns of every catalog are in TAP_SCHEMA (or /api/catalogs)"
        )
    if tree.args.get("where") is not None:
        raise QueryRefused("SHOW COLUMNS ... WHERE is not supported; use LIKE 'pattern'")
    db = tree.args.get("db")
    columns = describe(tree.args["target"].name, db.name if db is not None else None)
    rows = [
        exp.Tuple(
            expressions=[
                exp.Literal.number(i),
                exp.Literal.string(name),
                exp.Literal.string(_mysql_type(pg_type)),
                exp.Literal.string("YES" if nullable else "NO"),
                exp.Literal.string("PRI" if key else ""),
                exp.cast(exp.null(), exp.DType.TEXT),
                exp.Literal.string(""),
            ]
        )
        for i, (name, pg_type, nullable, key) in enumerate(columns, start=1)
    ]
    names = ["n", "Field", "Type", "Null", "Key", "Default", "Extra"]
    values = exp.Values(
        expressions=rows,
        alias=exp.TableAlias(
            this=exp.to_identifier("c"),
            columns=[exp.to_identifier(n, quoted=n != "n") for n in names],
        ),
    )
    select = exp.select(*(exp.column(exp.to_identifier(n, quoted=True)) for n in names[1:]))
    select = select.from_(values).order_by(exp.column("n"))
    like = tree.args.get("like")
    if like is not None:  # MySQL's default collation compares without case
        select = select.where(
            exp.ILike(this=exp.column(exp.to_identifier("Field", quoted=True)), expression=like)
        )
    return select


def _mysql_type(pg_type: str) -> str:
    if pg_type in _MYSQL_TYPES:
        return _MYSQL_TYPES[pg_type]
    if pg_type.startswith("character varying") or pg_type.startswith("varchar"):
        return pg_type.replace("character varying", "varchar")
    return pg_type.replace("character", "char")


class ChunkColumn(exp.Expression, exp.Func):
    """Qserv's ``chunkId`` / ``subChunkId`` of the table ``this`` (an alias, or None if
    the query names only one partitioned table); ``sub``: subChunkId."""

    _sql_names: ClassVar[list[str]] = ["QSERV_CHUNK_COLUMN"]
    arg_types: ClassVar[dict[str, bool]] = {"this": False, "sub": False, "name": True}


_PSEUDO = {"chunkid": False, "subchunkid": True}


def pseudo_columns(tree: exp.Expression, has_column: Callable[[str], bool]) -> bool:
    """``chunkId`` / ``subChunkId`` columns → :class:`ChunkColumn` (before qualify, so
    that it does not look for them in the schema), unless a catalog table has a real
    column of that name (``has_column``); whether there were any."""
    found = False
    for column in find_all(tree, exp.Column):
        name = column.name.lower()
        if name not in _PSEUDO or has_column(name) or column.args.get("db"):
            continue
        node = ChunkColumn(
            this=column.args["table"].copy() if column.args.get("table") else None,
            sub=exp.true() if _PSEUDO[name] else exp.false(),
            name=exp.Literal.string(column.name),
        )
        parent = column.parent
        if isinstance(parent, exp.Select) and column.arg_key == "expressions":
            column.replace(exp.alias_(node, exp.to_identifier(column.name, quoted=True)))
        else:
            column.replace(node)
        found = True
    return found


def expand_pseudo_columns(
    tree: exp.Expression, partitioned: Callable[[exp.Select], list[str]]
) -> None:
    """Each :class:`ChunkColumn` → the SQL of the chunk or sub-chunk of its table's row;
    ``partitioned(select)``: the aliases of the partitioned tables of a SELECT."""
    for node in find_all(tree, ChunkColumn):
        name = node.args["name"].name
        select = node.parent_select
        aliases = partitioned(select) if select is not None else []
        table = node.args.get("this")
        if table is not None:
            alias = table.name
            if alias not in aliases:
                raise QueryError(
                    f"{alias}.{name}: {alias} is not a partitioned table of this SELECT; "
                    "chunkId and subChunkId are columns of partitioned tables only"
                )
        elif len(aliases) == 1:
            alias = aliases[0]
        else:
            raise QueryError(
                f"{name} is ambiguous or unknown here: qualify it with the alias of a "
                "partitioned table of this SELECT (o.chunkId)"
            )
        chunk = exp.column("chunk_id", alias)
        if node.args["sub"].this is True:
            node.replace(_sub_chunk(chunk, exp.column("spatial_index", alias)))
        else:
            node.replace(chunk)


def _sub_chunk(chunk: exp.Expression, index: exp.Expression) -> exp.Expression:
    """The row's pixel three HEALPix orders finer than its chunk, numbered 0..63 within
    the chunk: ``(spatial_index >> 2 (26 - k)) & 63`` for a chunk of order k, whose NUNIQ
    id lies in [4^(k+1), 4^(k+2)), so that k = (floor(log2(id)) - 2) / 2."""
    sql = "(({index} >> (2 * (26 - (FLOOR(LOG(2, CAST({chunk} AS NUMERIC)))::INT - 2) / 2))) & 63)"
    text = sql.format(index=index.sql("postgres"), chunk=chunk.sql("postgres"))
    return exp.maybe_parse(text, dialect="postgres")


# --- MySQL's semantics --------------------------------------------------------------------

_INTEGERS = exp.DataType.INTEGER_TYPES
_EXACT = {*_INTEGERS, exp.DType.DECIMAL, exp.DType.BIGDECIMAL}
#: MySQL's div_precision_increment (its default): the digits a division adds to the scale
DIV_PRECISION = 4


def mysql_semantics(tree: exp.Expression) -> bool:
    """Rewrite ``tree`` (typed) to MySQL's answers; whether anything changed (the caller
    types it again)."""
    changed = False
    for like in find_all(tree, exp.Like, exp.ILike):
        if _is(like.this, *exp.DataType.NUMERIC_TYPES):
            like.set("this", exp.cast(like.this.copy(), exp.DType.TEXT))
            changed = True
    for hexed in find_all(tree, exp.Hex):
        hexed.replace(_hex(hexed.this))
        changed = True
    for op in find_all(tree, exp.Add, exp.Sub, exp.Mul):
        small = not (_is(op.this, exp.DType.BIGINT) or _is(op.expression, exp.DType.BIGINT))
        if small and _is(op.this, *_INTEGERS) and _is(op.expression, *_INTEGERS):
            op.set("this", exp.cast(op.this.copy(), exp.DType.BIGINT))
            changed = True
    for div in list(find_all(tree, exp.Div)):
        if geo.number(div) is not None:
            continue  # constants (a radius 1 / 3600.0) keep their value, see docs/qserv-sql.md
        scale = _scale(div.this)
        if scale is not None and _scale(div.expression) is not None:
            quotient = exp.Div(
                this=exp.cast(div.this.copy(), exp.DType.DECIMAL),
                expression=exp.Nullif(this=div.expression.copy(), expression=exp.Literal.number(0)),
                typed=True,
            )
            div.replace(
                exp.Round(this=quotient, decimals=exp.Literal.number(scale + DIV_PRECISION))
            )
            changed = True
    for intdiv in list(find_all(tree, exp.IntDiv)):
        divisor = exp.Nullif(this=intdiv.expression.copy(), expression=exp.Literal.number(0))
        intdiv.set("expression", divisor)
        intdiv.replace(exp.cast(intdiv.copy(), exp.DType.BIGINT))
        changed = True
    for mod in find_all(tree, exp.Mod):
        if not isinstance(mod.expression, exp.Nullif):
            mod.set(
                "expression",
                exp.Nullif(this=mod.expression.copy(), expression=exp.Literal.number(0)),
            )
            changed = True
    return changed


def _is(node: exp.Expression, *kinds: exp.DType) -> bool:
    kind = node.type
    return kind is not None and kind.is_type(*kinds)


def _scale(node: exp.Expression) -> int | None:
    """The decimal scale MySQL gives an exact number (None: approximate, a double)."""
    if isinstance(node, exp.Paren):
        return _scale(node.this)
    if isinstance(node, exp.Neg):
        return _scale(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        text = params.text(node)
        if "e" in text.lower():
            return None
        return len(text.split(".", 1)[1]) if "." in text else 0
    if isinstance(node, (exp.Add, exp.Sub)):
        a, b = _scale(node.this), _scale(node.expression)
        return None if a is None or b is None else max(a, b)
    if isinstance(node, exp.Mul):
        a, b = _scale(node.this), _scale(node.expression)
        return None if a is None or b is None else a + b
    if isinstance(node, exp.Round) and isinstance(node.args.get("decimals"), exp.Literal):
        return int(params.text(node.args["decimals"]))
    if _is(node, *_INTEGERS):
        return 0
    return None


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    """A PostgreSQL function call written as is (sqlglot would map some names)."""
    return exp.Anonymous(this=name, expressions=list(args))


def _hex(arg: exp.Expression) -> exp.Expression:
    """MySQL's HEX: of a string, its bytes; of a number, the BIGINT it rounds to (two's
    complement for negative numbers, as PostgreSQL's to_hex of a bigint)."""
    if _is(arg, *exp.DataType.TEXT_TYPES):
        encoded = exp.func(
            "encode",
            _call("convert_to", arg.copy(), exp.Literal.string("UTF8")),
            exp.Literal.string("hex"),
        )
        return exp.Upper(this=encoded)
    if _is(arg, *_INTEGERS):
        number = exp.cast(arg.copy(), exp.DType.BIGINT)
    else:
        rounded = exp.Round(this=exp.cast(arg.copy(), exp.DType.DECIMAL))
        number = exp.cast(rounded, exp.DType.BIGINT)
    return exp.Upper(this=exp.Anonymous(this="to_hex", expressions=[number]))


# --- functions PostgreSQL does not have ---------------------------------------------------

#: names sqlglot writes as they are (no translation) that PostgreSQL has, with the same
#: meaning (from pg_proc of PostgreSQL 15, less those that read the server's state; and
#: the conditional expressions, which are syntax in PostgreSQL)
_AS_IS_NAMES = """
    ABS ACOS ACOSH ASCII ASIN ASINH ATAN ATAN2 ATANH AVG BIT_LENGTH CBRT CORR COS COSH COT
    COUNT COVAR_POP COVAR_SAMP DEGREES EXP LEFT LENGTH LN LOWER MD5 PI POWER RADIANS REPEAT
    REPLACE REVERSE RIGHT SIGN SIN SINH SPLIT_PART SQRT STDDEV STDDEV_POP STDDEV_SAMP SUM TAN
    TANH TRANSLATE TRUNC UPPER WIDTH_BUCKET REGR_AVGX REGR_AVGY REGR_COUNT REGR_INTERCEPT
    REGR_R2 REGR_SLOPE REGR_SXX REGR_SXY REGR_SYY COALESCE GREATEST LEAST NULLIF
"""
_POSTGRES_AS_IS = frozenset(_AS_IS_NAMES.split())

#: our own nodes, written by the renderer
_OWN: tuple[type[exp.Expr], ...] = (ChunkColumn, geo.Region, *geo.NODES)


def check_functions(tree: exp.Expression) -> None:
    """Refuse a function (or operator) sqlglot parsed but has no PostgreSQL for: it would
    reach a worker as a name PostgreSQL does not know."""
    generator = QservPostgresGenerator
    for node in find_all(tree, exp.Func):
        if isinstance(node, (exp.Anonymous, *_OWN)):
            continue  # anonymous calls: the check pass allows a few, refuses the rest
        kind = type(node)
        if kind in generator.TRANSFORMS or hasattr(generator, f"{node.key}_sql"):
            continue
        if node.sql_name() in _POSTGRES_AS_IS:
            continue
        spelled = node.sql(dialect="mysql").split("(", 1)[0].strip() or node.sql_name()
        raise QueryRefused(
            f"the MySQL function {spelled} is not supported in Qserv SQL here (it has no "
            "PostgreSQL translation); compute it on the result, or see docs/qserv-sql.md "
            "for the functions that are"
        )


# --- the planner's entry points -----------------------------------------------------------


def describer(ctx: PlanContext) -> Describe:
    """The column descriptions of a table of ``ctx``'s catalogs, for :func:`show_columns`."""

    def describe(name: str, catalog: str | None) -> list[tuple[str, str, bool, bool]]:
        _, table = ctx.catalogs.resolve(name, catalog)
        keys = {k.lower() for k in table.primary_key}
        return [(c.name, c.pg_type, c.nullable, c.sql_name in keys) for c in table.columns]

    return describe


def column_finder(ctx: PlanContext) -> Callable[[str], bool]:
    """Whether a table of ``ctx``'s catalogs has a column of this (lower-case) name."""
    names = {
        c.sql_name for cat in ctx.catalogs.catalogs.values() for t in cat.tables for c in t.columns
    }
    return names.__contains__


def after_types(tree: exp.Expression, ctx: PlanContext, pseudo: bool) -> bool:
    """The Qserv passes that need the types: refuse untranslated functions, expand
    ``chunkId`` / ``subChunkId``, MySQL's semantics; whether the tree must be typed again."""
    check_functions(tree)
    changed = mysql_semantics(tree)  # before the pseudo-columns' own SQL is in the tree
    if pseudo:
        expand_pseudo_columns(tree, lambda select: _partitioned_aliases(select, ctx))
    return changed or pseudo


def _partitioned_aliases(select: exp.Select, ctx: PlanContext) -> list[str]:
    aliases = []
    for source in from_sources(select):
        if isinstance(source, exp.Table) and source.args.get("db"):
            table = ctx.catalogs.catalogs[source.args["db"].name].table(source.name)
            if table.partitioned:
                aliases.append(source.alias_or_name)
    return aliases
