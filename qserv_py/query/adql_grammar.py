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

from qserv_py.query.adql_lexer import COMPARISONS, Token, fail_at, is_keyword, tokenize
from qserv_py.query.adql_values import Mismatch, Rules


class _Recogniser(Rules):
    """The query rules of the BNF: queries and set operations, FROM, conditions."""

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
    except Mismatch as exc:
        chosen = exc
    if recogniser.furthest is not None and recogniser.furthest.index > chosen.index:
        chosen = recogniser.furthest
    fail_at(text, tokens[chosen.index].start, chosen.problem)


def _what_may_follow(recogniser: _Recogniser) -> str:
    t = recogniser.tok
    if t.kind == "op" and t.text == ")":
        return "the end of the query (this ')' closes nothing)"
    return "the end of the query or a clause (WHERE, GROUP BY, HAVING, ORDER BY, OFFSET)"
