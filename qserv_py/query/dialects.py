"""The query languages as sqlglot dialects: ``Adql`` and ``Qserv`` (PostgreSQL is sqlglot's
own ``postgres``).

Both parse ADQL's geometry, IN_UNIT, the ``scisql_*`` functions and ``qserv_areaspec_*``
into the nodes of :mod:`qserv_py.query.geometry` (Rubin's TAP service offers scisql from
ADQL too). Defining the classes registers them with sqlglot, so ``read="adql"`` and
``read="qserv"`` work as well.

- ``Adql``: ADQL 2.1 (and 2.0, a subset) on sqlglot's ANSI base: ``SELECT TOP n``,
  OFFSET, ``||``, ILIKE, WITH, set operations, ``"delimited"`` identifiers, LOG is the
  natural logarithm. What ADQL leaves open follows PostgreSQL, where the query runs:
  integer division of integers, NULLs sort last in ascending order.
- ``Qserv``: Qserv's MySQL spelling (backquoted identifiers, ``LIMIT offset, n``,
  ``#`` comments, ``||`` is OR), MySQL semantics (``/`` divides as decimals).

>>> import sqlglot
>>> sqlglot.parse_one("SELECT TOP 3 ra FROM t ORDER BY ra", read="adql").sql("postgres")
'SELECT ra FROM t ORDER BY ra LIMIT 3'
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from sqlglot import exp, parser, tokens
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
from sqlglot.dialects.mysql import MySQL
from sqlglot.parsers.mysql import MySQLParser
from sqlglot.tokens import TokenType

from qserv_py.query.geometry import NODES, PARSER_FUNCTIONS

E = TypeVar("E", bound=exp.Expr)


def _own_arguments(expression: exp.Expr, args: list | None) -> list | None:
    """No argument count check for our nodes: their builders map the call's arguments
    themselves (a coordinate frame dropped, scisql's flat lists split into nodes)."""
    return None if isinstance(expression, NODES) else args


class Adql(Dialect):
    """ADQL 2.1 (IVOA), as far as a catalog database answers it."""

    NORMALIZATION_STRATEGY = NormalizationStrategy.LOWERCASE
    NULL_ORDERING = "nulls_are_large"
    TYPED_DIVISION = True

    class Tokenizer(tokens.Tokenizer):
        KEYWORDS: ClassVar[dict[str, TokenType]] = {
            **tokens.Tokenizer.KEYWORDS,
            "TOP": TokenType.TOP,
        }

    class Parser(parser.Parser):
        LOG_DEFAULTS_TO_LN = True
        FUNCTIONS: ClassVar[dict[str, Any]] = {**parser.Parser.FUNCTIONS, **PARSER_FUNCTIONS}

        def validate_expression(self, expression: E, args: list | None = None) -> E:
            return super().validate_expression(expression, _own_arguments(expression, args))


class Qserv(MySQL):
    """Qserv's SQL: MySQL with scisql UDFs and ``qserv_areaspec_*`` restrictors."""

    class Parser(MySQLParser):
        FUNCTIONS: ClassVar[dict[str, Any]] = {**MySQLParser.FUNCTIONS, **PARSER_FUNCTIONS}

        def validate_expression(self, expression: E, args: list | None = None) -> E:
            return super().validate_expression(expression, _own_arguments(expression, args))
