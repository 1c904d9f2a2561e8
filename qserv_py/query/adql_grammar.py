"""The ADQL 2.1 grammar check: a recogniser of the IVOA Recommendation's BNF that runs
on the query text before sqlglot builds the tree.

sqlglot's parser is generous (it reads many SQL dialects at once), so it accepts text
that is not ADQL and sometimes reads it as something else (``SELECT a, FROM t`` drops
the comma, ``y IS 3`` becomes an ``IS`` comparison the worker rejects). This module
walks the text once with its own small tokenizer and a recursive-descent recogniser of
the BNF (Appendix A of ADQL 2.1) and raises :class:`QueryParseError` at the first place
the grammar does not allow, with the line, column and what was expected there. It builds
no tree: sqlglot still does that, once the text is known to be ADQL.

Deliberate extensions (documented in docs/adql.md): ``LIMIT n`` as a synonym of TOP,
``CASE`` expressions, ``TRUE``/``FALSE``, ``NULLIF``, scalar subqueries as values, a
bare boolean column as a condition, ``/* */`` comments and one trailing ``;``.

>>> check("SELECT TOP 5 ra FROM t WHERE dec > 0 ORDER BY ra")
>>> check("SELECT a, FROM t")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
qserv_py.errors.QueryParseError: syntax error: expected a column or an expression after ',', ...
  SELECT a, FROM t
            ^
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

from qserv_py.query.adql_lexer import (
    ARITY,
    CAST_TYPES,
    COMPARISONS,
    EXPRESSION_START,
    GEOMETRY,
    SET_FUNCTIONS,
    Token,
    fail_at,
    is_keyword,
    reserved_note,
    tokenize,
)

T = TypeVar("T")

# --- the recogniser ---------------------------------------------------------------------


class _Mismatch(Exception):
    """The grammar does not allow tokens[index]: ``expected`` was, ``note`` says more.
    A ``final`` mismatch is reported as it is (a list does not reword it)."""

    def __init__(self, index: int, expected: str, note: str, problem: str, final: bool) -> None:
        super().__init__(problem)
        self.index = index
        self.expected = expected
        self.note = note
        self.problem = problem
        self.final = final


class _Recogniser:
    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.furthest: _Mismatch | None = None

    # -- helpers

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def at(self, *words: str) -> bool:
        return self.tokens[self.i].key in words

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += 1
            return True
        return False

    def fail(
        self, expected: str, *, index: int | None = None, note: str = "", final: bool = False
    ) -> NoReturn:
        index = self.i if index is None else index
        token = self.tokens[index]
        if token.kind == "end":
            problem = f"the query ends too early: expected {expected}"
        else:
            problem = f"expected {expected}, got {token.shown()}"
        raise _Mismatch(index, expected, note, problem + note, final)

    def expect(self, word: str, expected: str | None = None) -> None:
        if not self.accept(word):
            self.fail(expected or (word if word.isalpha() else repr(word)))

    def attempt(self, rule: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``rule``; on a mismatch, go back and remember how far it got."""
        start = self.i
        try:
            return True, rule()
        except _Mismatch as exc:
            if self.furthest is None or exc.index > self.furthest.index:
                self.furthest = exc
            self.i = start
            return False, None

    def unsigned_integer(self, after: str) -> None:
        t = self.tok
        if t.kind == "number" and t.text.isdigit():
            self.i += 1
            return
        self.fail(f"a whole number such as 10 after {after}")

    # -- names

    def identifier(self, what: str) -> None:
        t = self.tok
        if t.kind == "name":
            if t.text == '""':
                self.fail(what, note=" (a delimited name cannot be empty)")
            self.i += 1
            return
        if t.kind == "word":
            if is_keyword(t.text):
                self.fail(what, note=reserved_note(t.text))
            self.i += 1
            return
        self.fail(what)

    def dotted(self, what: str, most: int, kind: str) -> int:
        """A name of up to ``most`` parts; returns how many it had."""
        self.identifier(what)
        parts = 1
        while self.at(".") and self.peek().kind in ("word", "name"):
            if parts == most:
                self.fail(
                    f"at most {most} parts in {kind}",
                    index=self.i,
                    note=f" ({kind} names are "
                    + ("catalog.schema.table" if most == 3 else "schema.table.column")
                    + ")",
                )
            self.i += 1
            self.identifier(what)
            parts += 1
        return parts

    # -- queries

    def query(self) -> None:
        if self.at("WITH"):
            self.i += 1
            while True:
                self.identifier("the name of a WITH query")
                if self.at("("):
                    self.fail("AS", note=" (ADQL's WITH takes no column list)")
                self.expect("AS")
                self.expect("(")
                self.select_expression()
                self.expect(")")
                if not self.accept(","):
                    break
        elif not self.at("SELECT", "("):
            note = ""
            if self.tok.kind == "word" and self.tok.text.upper().startswith("SELECT"):
                note = " (put a space after SELECT)"
            self.fail("SELECT (or WITH)", note=note)
        self.select_expression()
        self.accept(";")

    def select_expression(self) -> None:
        self.set_expression()
        if self.accept("ORDER"):
            self.expect("BY", "BY after ORDER")
            self.comma_list(self.order_term, "an ORDER BY term", values=True)
        if self.accept("OFFSET"):
            self.unsigned_integer("OFFSET")
        if self.accept("LIMIT"):  # extension: TOP's PostgreSQL spelling
            self.unsigned_integer("LIMIT")
            if self.accept("OFFSET"):
                self.unsigned_integer("OFFSET")

    def set_expression(self) -> None:
        self.set_term()
        while self.accept("UNION", "EXCEPT"):
            self.accept("ALL")
            self.set_term()

    def set_term(self) -> None:
        self.set_primary()
        while self.accept("INTERSECT"):
            self.accept("ALL")
            self.set_primary()

    def set_primary(self) -> None:
        if self.accept("("):
            if self.at("WITH"):
                self.fail("SELECT", note=" (WITH is allowed only at the start of the whole query)")
            self.select_expression()
            self.expect(")")
            return
        if self.at("WITH"):
            self.fail("SELECT", note=" (WITH is allowed only at the start of the whole query)")
        self.select_query()

    def select_query(self) -> None:
        self.expect("SELECT", "SELECT")
        self.accept("DISTINCT", "ALL")
        if self.accept("TOP"):
            self.unsigned_integer("TOP")
        if self.at("FROM"):
            self.fail("a column, an expression or *", note=" (the SELECT lists no columns)")
        if not self.accept("*"):
            self.comma_list(self.select_item, "a column or an expression", values=True)
        if not self.at("FROM"):
            self.fail("FROM" if self.tok.kind == "end" else "FROM (or ',' and another column)")
        self.i += 1
        self.comma_list(self.table_reference, "a table")
        if self.accept("WHERE"):
            self.search_condition()
        if self.accept("GROUP"):
            self.expect("BY", "BY after GROUP")
            self.comma_list(self.value_expression, "a GROUP BY term", values=True)
        if self.accept("HAVING"):
            self.search_condition()

    def comma_list(self, item: Callable[[], object], what: str, *, values: bool = False) -> int:
        """Items separated by commas; returns how many. In a list of ``values``, a run
        of numbers the lexer took as one token counts as its numbers."""
        count = 0
        while True:
            if values and self.tok.kind == "numbers":  # it ends with ",": an item follows
                count += self.tok.text.count(",")
                self.i += 1
                continue
            start = self.i
            try:
                item()
            except _Mismatch as exc:
                if exc.index == start and not exc.final:
                    self.fail(f"{what} after ','" if count else what, note=exc.note)
                raise
            count += 1
            if not self.accept(","):
                return count

    def select_item(self) -> None:
        t, dot, star = self.tok, self.peek(), self.peek(2)
        if (
            t.kind in ("word", "name")
            and dot.text == "."
            and (star.text == "*" or (self.peek(3).text == "." and self.peek(4).text in ("*", ".")))
        ):
            self.dotted("a table name", 3, "a table")
            self.expect(".")
            self.expect("*")
            return
        self.value_expression()
        if self.accept("AS"):
            self.identifier("a column name after AS")
        elif self.tok.kind == "name" or (
            self.tok.kind == "word" and not is_keyword(self.tok.text) and self.tok.key != "LIMIT"
        ):
            self.identifier("a column name")

    def order_term(self) -> None:
        self.value_expression()
        self.accept("ASC", "DESC")

    # -- FROM

    def table_reference(self) -> None:
        self.table_primary()
        while True:
            natural = self.accept("NATURAL")
            if self.accept("INNER"):
                pass
            elif self.accept("LEFT", "RIGHT", "FULL"):
                self.accept("OUTER")
            if not self.at("JOIN"):
                if natural or self.tokens[self.i - 1].key in (
                    "INNER",
                    "LEFT",
                    "RIGHT",
                    "FULL",
                    "OUTER",
                ):
                    self.fail("JOIN")
                if self.at("CROSS"):
                    self.fail(
                        "a join of ADQL",
                        note=" (CROSS JOIN is not ADQL: list the tables with ',')",
                    )
                return
            self.i += 1
            self.table_primary()
            if natural:
                continue
            if self.accept("ON"):
                self.search_condition()
            elif self.accept("USING"):
                self.expect("(")
                self.comma_list(lambda: self.identifier("a column name"), "a column name")
                self.expect(")")
            else:
                self.fail("ON or USING after the joined table (or write NATURAL JOIN)")

    def table_primary(self) -> None:
        if self.at("("):
            if self.peek().key in ("SELECT", "WITH", "("):
                ok, _ = self.attempt(self.derived_table)
                if ok:
                    return
            ok, _ = self.attempt(self.bracketed_join)
            if ok:
                return
            assert self.furthest is not None
            raise self.furthest
        if self.at("SELECT"):
            self.fail("a table name", note=" (a subquery in FROM goes in parentheses)")
        self.dotted("a table name", 3, "a table")
        self.correlation(required=False)

    def derived_table(self) -> None:
        self.expect("(")
        if self.at("WITH"):
            self.fail("SELECT", note=" (WITH is allowed only at the start of the whole query)")
        self.select_expression()
        self.expect(")")
        self.correlation(required=True)

    def bracketed_join(self) -> None:
        self.expect("(")
        before = self.i
        self.table_reference()
        if not any(self.tokens[k].key == "JOIN" for k in range(before, self.i)):
            self.fail("JOIN", note=" (parentheses in FROM hold a join or a subquery)")
        self.expect(")")

    def correlation(self, *, required: bool) -> None:
        if self.accept("AS"):
            self.identifier("a name after AS")
            return
        t = self.tok
        if t.kind == "name" or (t.kind == "word" and not is_keyword(t.text) and t.key != "LIMIT"):
            self.i += 1
            return
        if required:
            self.fail("a name for the subquery", note=" (write (SELECT ...) AS name)")

    # -- conditions

    def search_condition(self) -> None:
        self.boolean_factor()
        while self.accept("AND", "OR"):
            self.boolean_factor()

    def boolean_factor(self) -> None:
        self.accept("NOT")
        if self.at("("):
            ok, _ = self.attempt(self.parenthesised_condition)
            if ok:
                return
        if self.accept("EXISTS"):
            self.subquery()
            return
        self.predicate()

    def parenthesised_condition(self) -> None:
        self.expect("(")
        self.search_condition()
        self.expect(")")
        t = self.tok
        if t.kind == "op" and t.text in COMPARISONS | {"+", "-", "*", "/", "||", "=="}:
            self.fail("AND, OR or the end of the condition")
        if t.key in ("BETWEEN", "IN", "LIKE", "ILIKE", "IS", "NOT"):
            self.fail("AND, OR or the end of the condition")

    def predicate(self) -> None:
        start = self.i
        self.value_expression()
        t = self.tok
        if t.kind == "op" and t.text in COMPARISONS:
            self.i += 1
            self.value_expression()
            return
        if t.text == "==":
            self.fail("a comparison operator", note=" ('==' is not ADQL: write =)")
        if self.accept("IS"):
            self.accept("NOT")
            if not self.accept("NULL"):
                self.fail("NULL after IS", note=" (IS only tests for NULL: compare with =)")
            return
        self.accept("NOT")
        if self.accept("BETWEEN"):
            self.value_expression()
            self.expect("AND", "AND (of BETWEEN ... AND ...)")
            self.value_expression()
        elif self.accept("IN"):
            if not self.at("("):
                self.fail("'(' after IN", note=" (write IN (1, 2) or IN (SELECT ...))")
            if self.peek().key in ("SELECT", "WITH"):
                self.subquery()
            else:
                self.i += 1
                tokens, i = self.tokens, self.i  # a long list of constants: a quick loop
                while tokens[i].kind in ("number", "string") and tokens[i + 1].key == ",":
                    i += 2
                self.i = i
                self.comma_list(self.value_expression, "a value", values=True)
                self.expect(")")
        elif self.accept("LIKE", "ILIKE"):
            self.value_expression()
        elif self.tokens[self.i - 1].key == "NOT":
            self.fail("BETWEEN, IN, LIKE or ILIKE after NOT")
        elif self.i == start + 1 and self.tokens[start].kind in ("word", "name"):
            return  # extension: a boolean column as a condition
        elif self._is_column(start):
            return
        else:
            self.fail(
                "a comparison (=, <>, <, >, <=, >=, BETWEEN, IN, LIKE, IS NULL)",
                note=" (a geometry predicate is compared with 1, as in CONTAINS(...) = 1)"
                if self.tokens[start].key in ("CONTAINS", "INTERSECTS")
                else "",
            )

    def _is_column(self, start: int) -> bool:
        """Whether tokens[start:i] are a (qualified) column name."""
        span = self.tokens[start : self.i]
        return all(
            (t.kind in ("word", "name")) if k % 2 == 0 else t.text == "."
            for k, t in enumerate(span)
        )

    def subquery(self) -> None:
        self.expect("(")
        if self.at("WITH"):
            self.fail("SELECT", note=" (WITH is allowed only at the start of the whole query)")
        self.select_expression()
        self.expect(")")

    # -- values

    def value_expression(self) -> None:
        self.term()
        while self.tok.kind == "op" and self.tok.text in ("+", "-", "||"):
            self.i += 1
            self.term()

    def term(self) -> None:
        self.factor()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            self.i += 1
            self.factor()

    def factor(self) -> None:
        if self.tok.kind == "op" and self.tok.text in ("+", "-"):
            self.i += 1
        self.primary()

    def primary(self) -> None:
        t = self.tok
        if t.kind in ("number", "string"):
            self.i += 1
            return
        if t.kind == "op" and t.text == "(":
            if self.peek().key in ("SELECT", "WITH"):
                self.subquery()  # extension: a scalar subquery
                return
            self.i += 1
            self.value_expression()
            self.expect(")")
            return
        if t.kind == "name":
            self.column_reference()
            return
        if t.kind != "word":
            self.fail(EXPRESSION_START)
        word = t.key
        if word in ("NULL", "TRUE", "FALSE"):
            self.i += 1
            return
        if word == "CASE":
            self.case()
            return
        if word == "CAST" and self.peek().text == "(":
            self.cast()
            return
        if self.peek().text == "(":
            self.function(word)
            return
        if is_keyword(t.text):
            note = ""
            if word in ARITY or word in SET_FUNCTIONS:
                note = (
                    f" ({word} is an ADQL function, so a column of that name is written "
                    f'delimited, "{t.text}"; the function is {word}(...))'
                )
            else:
                note = reserved_note(t.text, "a column")
            self.fail(EXPRESSION_START, note=note)
        self.column_reference()

    def column_reference(self) -> None:
        self.dotted("a column name", 4, "a column")

    def function(self, word: str) -> None:
        name_index = self.i
        self.i += 2  # name (
        if word in SET_FUNCTIONS:
            if word == "COUNT" and self.accept("*"):
                self.expect(")")
                return
            self.accept("DISTINCT", "ALL")
            self.value_expression()
            self.expect(")", "')' (an aggregate takes one argument)")
            return
        count = 0
        if word in GEOMETRY and self.tok.kind == "string" and self.peek().text == ",":
            count = -1  # the coordinate system (ADQL 2.1 §4.2.5) is not counted
        if not self.at(")"):
            count += self.comma_list(self.value_expression, "an argument", values=True)
        self.expect(")")
        if self.at("OVER"):
            self.fail(
                "an operator or the end of the expression",
                note=" (window functions (OVER) are not ADQL, and window functions are not "
                "supported: they need rows from all chunks at once; compute them on the result)",
                final=True,
            )
        if word in ARITY:
            least, most = ARITY[word]
            if count < least or (most is not None and count > most):
                if most is None:
                    wanted = f"at least {least}"
                elif least == most:
                    wanted = str(least)
                else:
                    wanted = f"{least} to {most}"
                raise _Mismatch(
                    name_index,
                    "",
                    "",
                    f"{word} takes {wanted} argument{'' if wanted == '1' else 's'}, got {count}",
                    True,
                )
        elif is_keyword(self.tokens[name_index].text):
            self.fail(
                EXPRESSION_START,
                index=name_index,
                note=f" ({word} is an SQL reserved word, not an ADQL function)",
                final=True,
            )

    def cast(self) -> None:
        self.i += 2  # CAST (
        self.value_expression()
        self.expect("AS", "AS (of CAST(value AS type))")
        t = self.tok
        word = t.key if t.kind == "word" else ""
        if word in (
            "SMALLINT",
            "INTEGER",
            "BIGINT",
            "REAL",
            "TIMESTAMP",
            "POINT",
            "CIRCLE",
            "POLYGON",
        ):
            self.i += 1
        elif word == "DOUBLE":
            self.i += 1
            self.expect("PRECISION", "PRECISION after DOUBLE")
        elif word in ("CHAR", "VARCHAR"):
            self.i += 1
            if self.accept("("):
                self.unsigned_integer(word + "(")
                self.expect(")")
        else:
            note = ""
            if word == "FLOAT":
                note = " (FLOAT is not an ADQL type: write REAL or DOUBLE PRECISION)"
            elif word in ("INT", "TEXT"):
                note = f" ({word} is not an ADQL type)"
            self.fail(f"an ADQL type: {CAST_TYPES}", note=note)
        self.expect(")")

    def case(self) -> None:
        self.i += 1  # CASE
        simple = not self.at("WHEN")
        if simple:
            self.value_expression()
        if not self.at("WHEN"):
            self.fail("WHEN")
        while self.accept("WHEN"):
            if simple:
                self.value_expression()
            else:
                self.search_condition()
            self.expect("THEN")
            self.value_expression()
        if self.accept("ELSE"):
            self.value_expression()
        self.expect("END", "WHEN, ELSE or END")


def check(text: str, tokens: list[Token] | None = None) -> None:
    """Raise :class:`QueryParseError` unless ``text`` is one ADQL 2.1 query (with the
    extensions listed in the module's docstring); ``tokens``: its tokens, if known."""
    tokens = tokenize(text) if tokens is None else tokens
    recogniser = _Recogniser(text, tokens)
    try:
        recogniser.query()
        if recogniser.tok.kind != "end" and recogniser.tokens[recogniser.i - 1].text != ";":
            recogniser.fail(_what_may_follow(recogniser))
        return
    except _Mismatch as exc:
        chosen = exc
    if recogniser.furthest is not None and recogniser.furthest.index > chosen.index:
        chosen = recogniser.furthest
    fail_at(text, tokens[chosen.index].start, chosen.problem)


def _what_may_follow(recogniser: _Recogniser) -> str:
    t = recogniser.tok
    if t.kind == "op" and t.text == ")":
        return "the end of the query (this ')' closes nothing)"
    return "the end of the query or a clause (WHERE, GROUP BY, HAVING, ORDER BY, OFFSET)"
