"""The guard before and after parsing: planning limits and input that no pass should see.

A public service plans whatever text it is sent. Before the parser runs, the text is
checked for its length, NUL characters, its number of tokens ("terms"), how deeply its
parentheses and CASE expressions nest (sqlglot's parser recurses ~17 Python frames per
level: 60 levels exhaust Python's stack) and numbers PostgreSQL would reject (``1e``,
``0x1F``, ``1_000``: "trailing junk after numeric literal"). After parsing, long AND / OR
chains, which the parser builds as left-deep trees as deep as they are long (every pass
that walks up from a column to its SELECT then costs the chain's length, quadratic in
all), are rebuilt as balanced trees of the same operands in the same order, and the depth
of the whole tree is bounded. Each refusal names the limit and its setting
(:class:`~qserv_py.errors.QueryLimitExceeded`) or the place of the bad input.

>>> check_text("SELECT 1", "adql", PlanLimits(max_chars=5))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
qserv_py.errors.QueryLimitExceeded: the query text is 8 characters long, ... max_query_chars)
>>> from sqlglot import parse_one
>>> tree = parse_one("SELECT 1 WHERE a = 1 OR a = 2 OR a = 3 OR a = 4 OR a = 5")
>>> depth(tree), depth(balance(tree, longer_than=2)), tree.sql()
(9, 8, 'SELECT 1 WHERE a = 1 OR a = 2 OR a = 3 OR a = 4 OR a = 5')
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from qserv_py.config import Settings
from qserv_py.errors import QueryLimitExceeded, QueryParseError, QueryRefused
from qserv_py.query.walk import find_all

#: a number as PostgreSQL reads one (no trailing exponent marker, no underscores)
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
#: tokens that open / close one level of nesting
_OPEN = frozenset({TokenType.L_PAREN, TokenType.CASE, TokenType.L_BRACKET})
_CLOSE = frozenset({TokenType.R_PAREN, TokenType.END, TokenType.R_BRACKET})


@dataclass(frozen=True)
class PlanLimits:
    """The planning limits (settings ``max_query_chars``, ``max_query_terms``,
    ``max_query_nesting``, ``max_query_depth``; see docs/configuration.md)."""

    #: characters of the query text
    max_chars: int = 2_000_000
    #: tokens of the query text (names, numbers, strings, operators, punctuation)
    max_terms: int = 250_000
    #: parentheses and CASE expressions nested in the text
    max_nesting: int = 32
    #: depth of the syntax tree, AND / OR chains balanced
    max_depth: int = 300

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanLimits:
        return cls(
            settings.max_query_chars,
            settings.max_query_terms,
            settings.max_query_nesting,
            settings.max_query_depth,
        )


def _position(text: str, offset: int) -> tuple[int, int]:
    before = text[: max(offset, 0)]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _at(text: str, message: str, offset: int) -> QueryParseError:
    line, column = _position(text, offset)
    return QueryParseError(message, text=text, line=line, column=column)


def check_text(text: str, lang: str, limits: PlanLimits) -> None:
    """Refuse text over the length limit or holding NUL characters (before tokenizing)."""
    if len(text) > limits.max_chars:
        raise QueryLimitExceeded(
            f"the query text is {len(text):,} characters long, more than the limit of "
            f"{limits.max_chars:,} (setting max_query_chars)",
            setting="max_query_chars",
        )
    nul = text.find("\x00")
    if nul >= 0:
        raise _at(
            text.replace("\x00", " "),
            "the query contains a NUL character (code 0), which no SQL text may hold: remove it",
            nul,
        )


def check_tokens(text: str, tokens: Sequence[Token], limits: PlanLimits) -> None:
    """Refuse too many tokens, too deep a nesting and numbers PostgreSQL rejects."""
    if len(tokens) > limits.max_terms:
        raise QueryLimitExceeded(
            f"the query has {len(tokens):,} terms (tokens), more than the limit of "
            f"{limits.max_terms:,} (setting max_query_terms); for long lists of values, "
            "upload them as a table (TAP UPLOAD) and join",
            setting="max_query_terms",
        )
    level = 0
    for i, token in enumerate(tokens):
        kind = token.token_type
        if kind in _OPEN:
            level += 1
            if level > limits.max_nesting:
                line, column = _position(text, token.start)
                raise QueryLimitExceeded(
                    f"the query nests parentheses or CASE expressions more than "
                    f"{limits.max_nesting} deep (line {line}, column {column}; setting "
                    "max_query_nesting): write it with fewer levels",
                    setting="max_query_nesting",
                )
        elif kind in _CLOSE:
            level = max(level - 1, 0)
        elif kind == TokenType.NUMBER:
            after = tokens[i + 1] if i + 1 < len(tokens) else None
            glued = (
                after is not None
                and after.start == token.end + 1
                and (after.text[:1].isalnum() or after.text[:1] == "_")
                and after.token_type not in (TokenType.STRING, TokenType.NUMBER)
            )
            if not _NUMBER.fullmatch(token.text) or glued:
                spelled = token.text + (after.text if glued and after is not None else "")
                raise _at(
                    text,
                    f"syntax error: {spelled!r} is not a number (write numbers as 12, 1.5, "
                    "1.5e-3; put a space between a number and a name)",
                    token.start,
                )


#: an IN list of at least this many plain numbers is parsed as one node (:func:`value_list`)
COMPACT_AT = 64
_SIGNS = frozenset({TokenType.DASH, TokenType.PLUS})


def value_list(texts: Sequence[str]) -> exp.Var:
    """One node for the plain numbers of a long ``IN (...)`` list: a ``Var`` of their
    text as spelled, signs included (``1, -2, 3``), which every SQL writer writes as it
    is. As one subtree per value, sqlglot's parser descended ~15 calls per value and
    every pass walked each: a 75,000-value list cost ~19 s to plan (issue 13). Only
    lists of plain number tokens become one (:func:`compact_lists`); :func:`list_values`
    gives the values back as the parser would have built them."""
    return exp.Var(this=", ".join(texts))


def list_values(node: exp.Expr) -> list[exp.Expr] | None:
    """The values of a :func:`value_list` node as parse trees (``-5`` a Neg of a
    Literal), or None if ``node`` is not one."""
    if not isinstance(node, exp.Var):
        return None
    texts = node.name.split(", ")
    if len(texts) < COMPACT_AT:
        return None
    found: list[exp.Expr] = []
    for text in texts:
        number = text[1:] if text[:1] == "-" else text
        if not _NUMBER.fullmatch(number):
            return None
        literal = exp.Literal.number(number)
        found.append(exp.Neg(this=literal) if number is not text else literal)
    return found


def compact_lists(tokens: list[Token]) -> tuple[list[Token], dict[str, tuple[str, ...]]]:
    """``tokens`` with each ``IN (`` list of at least :data:`COMPACT_AT` plain numbers
    (each maybe signed) replaced by one string token, a marker unique to this call; and
    the numbers' texts of each marker (:func:`restore_lists` makes them a
    :func:`value_list` after parsing). Tokens only, so strings and comments that look
    like lists are left alone; a list with anything else in it stays as it is."""
    lists: dict[str, tuple[str, ...]] = {}
    out: list[Token] = []
    nonce = secrets.token_hex(8)
    i, n = 0, len(tokens)
    while i < n:
        token = tokens[i]
        out.append(token)
        i += 1
        if token.token_type != TokenType.IN or i >= n or tokens[i].token_type != TokenType.L_PAREN:
            continue
        j = i + 1
        texts: list[str] = []
        while j < n:
            sign = ""
            if tokens[j].token_type in _SIGNS and j + 1 < n:
                sign = "-" if tokens[j].token_type == TokenType.DASH else ""
                j += 1
            if tokens[j].token_type != TokenType.NUMBER:
                break
            texts.append(sign + tokens[j].text)
            j += 1
            if j < n and tokens[j].token_type == TokenType.COMMA:
                j += 1
                continue
            break
        if len(texts) < COMPACT_AT or j >= n or tokens[j].token_type != TokenType.R_PAREN:
            continue
        marker = f"qserv_py value list {len(lists)} {nonce}"
        lists[marker] = tuple(texts)
        first, last = tokens[i + 1], tokens[j - 1]
        out.append(tokens[i])
        out.append(Token(TokenType.STRING, marker, first.line, first.col, first.start, last.end))
        i = j  # the closing parenthesis comes next
    return out, lists


def restore_lists(tree: exp.Expression, lists: dict[str, tuple[str, ...]]) -> None:
    """Replace the markers of :func:`compact_lists` in ``tree`` by their value lists."""
    if not lists:
        return
    for node in find_all(tree, exp.Literal):
        if node.is_string and node.this in lists:
            node.replace(value_list(lists[node.this]))


def _chain(node: exp.Connector) -> list[exp.Expr]:
    """The operands of a left-deep chain of ``type(node)``, in order (not recursive)."""
    kind = type(node)
    right: list[exp.Expr] = []
    current: exp.Expr = node
    while type(current) is kind and not current.comments:
        right.append(current.expression)
        current = current.this
    right.append(current)
    right.reverse()
    return right


def _balanced(kind: type[exp.Connector], operands: list[exp.Expr]) -> exp.Expr:
    if len(operands) == 1:
        return operands[0]
    middle = len(operands) // 2
    return kind(
        this=_balanced(kind, operands[:middle]), expression=_balanced(kind, operands[middle:])
    )


def balance(tree: exp.Expr, *, longer_than: int = 8) -> exp.Expr:
    """Rebuild AND / OR chains of more than ``longer_than`` operands as balanced trees
    (the same operands in the same order: AND and OR are associative, in SQL's
    three-valued logic too). Returns the tree (changed in place)."""
    stack: list[exp.Expr] = [tree]
    while stack:
        node = stack.pop()
        if type(node) in (exp.And, exp.Or):
            operands = _chain(node)  # type: ignore[arg-type]
            if len(operands) > longer_than:
                rebuilt = _balanced(type(node), operands)  # type: ignore[arg-type]
                if node is tree:
                    tree = rebuilt
                else:
                    node.replace(rebuilt)
                stack.extend(operands)
                continue
        for value in node.args.values():
            if type(value) is list:
                stack.extend(v for v in value if isinstance(v, exp.Expr))
            elif isinstance(value, exp.Expr):
                stack.append(value)
    return tree


def depth(tree: exp.Expr) -> int:
    """The number of nodes on the longest path from ``tree`` down to a leaf."""
    deepest = 0
    stack: list[tuple[exp.Expr, int]] = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        for value in node.args.values():
            if type(value) is list:
                stack.extend((v, level + 1) for v in value if isinstance(v, exp.Expr))
            elif isinstance(value, exp.Expr):
                stack.append((value, level + 1))
    return deepest


def check_tree(tree: exp.Expression, limits: PlanLimits) -> exp.Expression:
    """Balance long AND / OR chains, then refuse a tree deeper than the limit, a SELECT
    without columns, a row value as a result column and duplicate CTE column names.
    Returns the tree (a new root when the root itself was a chain)."""
    balanced = balance(tree)
    assert isinstance(balanced, exp.Expression)  # a statement is never an AND / OR
    tree = balanced
    found = depth(tree)
    if found > limits.max_depth:
        raise QueryLimitExceeded(
            f"the query's expressions nest {found} deep, more than the limit of "
            f"{limits.max_depth} (setting max_query_depth); a long chain of arithmetic "
            "operators counts one level per operator: split it or use sum() over rows",
            setting="max_query_depth",
        )
    for node in find_all(tree, exp.Select, exp.CTE, exp.Subquery):
        if isinstance(node, exp.Select):
            _check_select(node)
        elif isinstance(node, exp.CTE) or (
            isinstance(node, exp.Subquery) and node.args.get("alias") is not None
        ):
            _check_columns(node)
    return tree


def _check_select(select: exp.Select) -> None:
    if not select.expressions:
        raise QueryRefused(
            "the SELECT lists no columns: name at least one column or expression, "
            "e.g. SELECT TOP 10 * FROM ..."
        )
    for column in select.expressions:
        value = column.this if isinstance(column, exp.Alias) else column
        while isinstance(value, exp.Paren):
            value = value.this
        if isinstance(value, exp.Tuple):
            raise QueryRefused(
                f"a row value {value.sql()} cannot be a result column: select its "
                "values as separate columns"
            )
        for row in find_all(value, exp.Tuple):
            if not _compared(row, value):
                raise QueryRefused(
                    f"a row value {row.sql()} cannot be (part of) a result column, as in "
                    f"{value.sql()}: select its values as separate columns"
                )
    # a sort or group key is a column of the merge table too
    for clause, keys, advice in (
        ("ORDER BY", select.args.get("order"), "sort by its values: ORDER BY a, b"),
        ("GROUP BY", select.args.get("group"), "group by its values: GROUP BY a, b"),
    ):
        for key in keys.expressions if keys is not None else ():
            value = key.this if isinstance(key, exp.Ordered) else key
            rows = [value] if isinstance(value, exp.Tuple) else []
            rows += [r for r in find_all(value, exp.Tuple) if not _compared(r, value)]
            if rows:
                raise QueryRefused(
                    f"a row value {rows[0].sql()} cannot be (part of) a key of {clause}: {advice}"
                )


def _compared(row: exp.Expr, top: exp.Expr) -> bool:
    """Whether the row value ``row`` is an operand of a comparison (``(a, b) = (1, 2)``,
    ``(a, b) IN (...)``), COUNT or a nested query below ``top``: otherwise the column's
    type would be a record, which no merge table or client can hold (a CASE or COALESCE
    of rows failed on the czar with 'has pseudo-type record', a 500)."""
    node = row.parent
    while node is not None and node is not top.parent:
        if isinstance(node, (exp.Predicate, exp.Count, exp.Select, exp.Subquery)):
            return True
        node = node.parent
    return False


def _check_columns(node: exp.CTE | exp.Subquery) -> None:
    """A WITH query or derived table must not name two columns alike (PostgreSQL
    would find a reference to either ambiguous)."""
    alias = node.args.get("alias")
    named = list(alias.columns) if isinstance(alias, exp.TableAlias) else []
    inner = node.this
    if not named and isinstance(inner, exp.Select):
        named = [
            c.args.get("alias") or c.this if isinstance(c, exp.Alias) else c
            for c in inner.expressions
        ]
    seen: set[str] = set()
    for item in named:
        ident = item.this if isinstance(item, exp.Column) else item
        if not isinstance(ident, exp.Identifier):
            continue  # an expression without a name, a star: PostgreSQL names it
        name = ident.name if ident.quoted else ident.name.lower()
        if name in seen:
            what = "WITH query" if isinstance(node, exp.CTE) else "derived table"
            raise QueryRefused(
                f"the {what} {node.alias or ''} names column {name} twice: give each "
                "column its own name".replace("  ", " ")
            )
        seen.add(name)


def check_row_references(tree: exp.Expression) -> None:
    """Refuse a bare table name used as a value (``SELECT o FROM Object o``): PostgreSQL
    reads it as the whole row, of the table's composite type, which no result, merge
    table or client can take. Run after qualify, which marks such a name a TableColumn."""
    for node in find_all(tree, exp.TableColumn):
        raise QueryRefused(
            f"{node.name} names a table, not a column: select {node.name}.* or the columns you need"
        )
