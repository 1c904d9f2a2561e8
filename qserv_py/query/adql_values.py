"""The value rules of the ADQL 2.1 grammar check, and the recogniser's helpers.

:mod:`qserv_py.query.adql_grammar` recognises queries, FROM clauses and conditions; this
module holds what they stand on: the token cursor with its failure bookkeeping
(:class:`Mismatch`, the furthest point reached), names of up to four parts, and the value
expressions of the BNF (``<value_expression>`` down to ``<value_expression_primary>``:
numbers, strings, columns, functions with their argument counts, CAST to ADQL types,
and the CASE extension).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

from qserv_py.query.adql_lexer import (
    ARITY,
    CAST_TYPES,
    EXPRESSION_START,
    GEOMETRY,
    SET_FUNCTIONS,
    Token,
    is_keyword,
    reserved_note,
)

T = TypeVar("T")


class Mismatch(Exception):
    """The grammar does not allow tokens[index]: ``expected`` was, ``note`` says more.
    A ``final`` mismatch is reported as it is (a list does not reword it)."""

    def __init__(self, index: int, expected: str, note: str, problem: str, final: bool) -> None:
        super().__init__(problem)
        self.index = index
        self.expected = expected
        self.note = note
        self.problem = problem
        self.final = final


class Rules:
    """The recogniser's state and helpers, names, and the value rules (expressions,
    functions, CAST, CASE); the query rules are in :mod:`qserv_py.query.adql_grammar`."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.furthest: Mismatch | None = None

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
        raise Mismatch(index, expected, note, problem + note, final)

    def expect(self, word: str, expected: str | None = None) -> None:
        if not self.accept(word):
            self.fail(expected or (word if word.isalpha() else repr(word)))

    def attempt(self, rule: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``rule``; on a mismatch, go back and remember how far it got."""
        start = self.i
        try:
            return True, rule()
        except Mismatch as exc:
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
            except Mismatch as exc:
                if exc.index == start and not exc.final:
                    self.fail(f"{what} after ','" if count else what, note=exc.note)
                raise
            count += 1
            if not self.accept(","):
                return count

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
                raise Mismatch(
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

    # -- rules of the query part (adql_grammar._Recogniser)

    def subquery(self) -> None:
        raise NotImplementedError

    def search_condition(self) -> None:
        raise NotImplementedError
