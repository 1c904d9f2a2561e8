"""Query text → sqlglot tree, in one of the three query languages.

Syntax errors become :class:`QueryParseError` with the line and column of the offending
token and a caret under it; more than one statement is refused. Whether the statement
is a SELECT is for :func:`qserv_py.query.normalize.normalize` to check. ADQL text is
first checked against the ADQL 2.1 grammar (:mod:`qserv_py.query.adql_grammar`).

>>> parse("SELECT TOP 2 ra FROM Object", "ADQL").sql("postgres")
'SELECT ra FROM Object LIMIT 2'
>>> parse("SELECT ra\\nFROM Object WHERE", "adql")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
qserv_py.errors.QueryParseError: syntax error: the query ends too early: ... (line 2, column 18)
  FROM Object WHERE
                   ^
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ErrorLevel, ParseError, TokenError

from qserv_py.errors import QueryError, QueryParseError, QueryRefused
from qserv_py.query import adql_grammar, adql_lexer
from qserv_py.query.dialects import Adql, Qserv
from qserv_py.query.guard import (
    PlanLimits,
    check_text,
    check_tokens,
    check_tree,
    compact_lists,
    restore_lists,
)
from qserv_py.query.joins import flatten_joins

DEFAULT_LIMITS = PlanLimits()

#: query language names (lower case) → dialect class
LANGUAGES: dict[str, type[Dialect]] = {
    "adql": Adql,
    "adql-2.0": Adql,
    "adql-2.1": Adql,
    "postgresql": Postgres,
    "postgres": Postgres,
    "pg": Postgres,
    "qserv": Qserv,
}

_MISSING = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]*\.(\w+)'>")


def dialect(lang: str) -> Dialect:
    """The sqlglot dialect of a query language name (case-insensitive)."""
    try:
        return LANGUAGES[lang.strip().lower()]()
    except KeyError:
        raise QueryError(
            f"unknown query language {lang!r}: use ADQL, PostgreSQL or Qserv"
        ) from None


def parse(text: str, lang: str, limits: PlanLimits = DEFAULT_LIMITS) -> exp.Expression:
    """The tree of the single statement ``text`` in ``lang`` ("adql", "postgresql",
    "qserv", any case; also "ADQL-2.0", "ADQL-2.1", "pg"), within the planning
    ``limits`` (see :mod:`qserv_py.query.guard`)."""
    d = dialect(lang)
    check_text(text, lang, limits)
    # ADQL's own tokens first: its messages (an unterminated comment, a glued number)
    adql_tokens = adql_lexer.tokenize(text) if isinstance(d, Adql) else None
    tokenizer = d.tokenizer()
    try:
        tokens = tokenizer.tokenize(text)
    except TokenError as exc:
        raise _token_error(text, tokenizer, exc) from exc
    check_tokens(text, tokens, limits)
    if adql_tokens is not None:
        adql_grammar.check(text, adql_tokens)
    tokens, lists = compact_lists(tokens)  # long IN lists of numbers: one token each
    parser = d.parser(error_level=ErrorLevel.IMMEDIATE, error_message_context=len(text) + 1)
    try:
        statements = [s for s in parser.parse(tokens, text) if s is not None]
    except ParseError as exc:
        raise _syntax_error(text, exc, at_end=not parser._curr) from exc
    if not statements:
        raise QueryParseError("syntax error: the query is empty", text=text, line=1, column=1)
    if len(statements) > 1:
        raise QueryRefused(
            f"only one SELECT statement is allowed per query, got {len(statements)} statements"
        )
    statement = statements[0]
    if not isinstance(statement, exp.Expression):
        raise QueryRefused(f"only one SELECT statement is allowed per query, not {statement!r}")
    # a user's comment means nothing to the plan; left on a node it would be part of the
    # SQL text that passes compare (a GROUP BY key with a comment matched no select item)
    for node in statement.walk():
        node.comments = None
    restore_lists(statement, lists)
    return check_tree(flatten_joins(statement), limits)


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    before = text[: max(offset, 0)]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _token_error(text: str, tokenizer: object, exc: TokenError) -> QueryParseError:
    """The error for text that cannot be split into tokens (an unterminated string)."""
    cause = str(exc.__cause__ or exc)
    core = getattr(tokenizer, "_core", tokenizer)
    start = getattr(core, "_start", None)
    if not isinstance(start, int):
        found = re.search(r"from \d+:(\d+)", cause)
        start = int(found.group(1)) if found else exc.start or 0
    problem = "unterminated string or quoted name" if cause.startswith("Missing") else cause
    line, column = _position(text, start)
    return QueryParseError(f"syntax error: {problem}", text=text, line=line, column=column)


_TOKEN = re.compile(r"<Token token_type: [^,]*, text: (.*?), line: \d+.*?>")


def _syntax_error(text: str, exc: ParseError, *, at_end: bool) -> QueryParseError:
    """The error for a ParseError; ``at_end``: the parser ran out of tokens."""
    error = exc.errors[0] if exc.errors else {}
    start = len(error.get("start_context") or "")
    highlight = error.get("highlight") or ""
    description = error.get("description") or str(exc)
    if at_end:
        problem = "the query ends too early"
        start += len(highlight)
    elif description == "Invalid expression / Unexpected token":
        problem = f"unexpected {highlight!r}"
    elif description.startswith("Expecting "):
        problem = f"expected {description.removeprefix('Expecting ')} before {highlight!r}"
    elif match := _MISSING.match(description):
        problem = f"incomplete {match.group(1).upper()} at {highlight!r}"
    else:
        # sqlglot may name a token by its repr: "got <Token token_type: ..., text: X, ...>"
        description = _TOKEN.sub(lambda m: repr(m.group(1)), description)
        problem = f"{description[:1].lower()}{description[1:]} at {highlight!r}"
    line, column = _position(text, start)
    return QueryParseError(f"syntax error: {problem}", text=text, line=line, column=column)
