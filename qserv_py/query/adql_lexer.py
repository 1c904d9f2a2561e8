"""The words of ADQL 2.1: its tokens (§2.1), what its functions take, and the messages
that name them. Used by :mod:`qserv_py.query.adql_grammar`.

>>> [t.text for t in tokenize("SELECT a<>'x''y' FROM t -- note")]
['SELECT', 'a', '<>', "'x''y'", 'FROM', 't', '']
"""

from __future__ import annotations

import re
from typing import NamedTuple, NoReturn

from qserv_py.errors import QueryParseError
from qserv_py.query.reserved import ADQL_RESERVED

_LEXEME = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<numbers>(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?[ \t\r\n]*,[ \t\r\n]*){16,})
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z][A-Za-z0-9_]*)
  | (?P<name>"(?:[^"]|"")*")
  | (?P<string>'(?:[^']|'')*')
  | (?P<op><>|!=|<=|>=|\|\||==|[-+*%=<>(),.;|!^~?:&\[\]]|/(?!\*))
  | (?P<bad>.)
    """,
    re.X | re.S,
)


_NUMBER_OR_COMMA = re.compile(r"(?P<number>[^,\s]+)|(?P<op>,)")


class Token(NamedTuple):
    #: word, name, string, number, op, end; numbers: a run of at least 16 "number,"
    kind: str
    text: str
    start: int
    #: what the grammar compares: a word in upper case, anything else as written
    key: str

    def shown(self) -> str:
        if self.kind == "end":
            return "the end of the query"
        if self.kind == "numbers":
            return repr(self.text.split(",")[0].strip())
        return self.key if self.kind == "word" and is_keyword(self.text) else repr(self.text)


def is_keyword(word: str) -> bool:
    return word.upper() in ADQL_RESERVED


_STRUCTURE_WORDS = """
    SELECT FROM WHERE GROUP HAVING ORDER BY OFFSET UNION EXCEPT INTERSECT AND OR ON USING JOIN
    AS ASC DESC THEN ELSE END WHEN IS IN NOT BETWEEN LIKE ILIKE NATURAL INNER LEFT RIGHT FULL
    OUTER DISTINCT ALL TOP WITH NULL
"""
#: reserved words that build the statement: never meant as a name, so a message about
#: them does not suggest delimiting
STRUCTURE = frozenset(_STRUCTURE_WORDS.split())


def reserved_note(word: str, what: str = "a name") -> str:
    """Why a reserved word cannot be ``what``, and how to write such a name."""
    if word.upper() in STRUCTURE:
        return ""
    return (
        f" ({word.upper()} is a reserved word in ADQL: {what} spelled so is written "
        f'delimited, "{word}")'
    )


def tokenize(text: str) -> list[Token]:
    """The ADQL tokens of ``text`` (comments and whitespace dropped), one regular
    expression pass."""
    tokens: list[Token] = []
    append = tokens.append
    for match in _LEXEME.finditer(text):
        kind = match.lastgroup
        if kind == "space" or kind == "comment":
            continue
        value = match.group()
        if kind == "word":
            append(Token(kind, value, match.start(), value.upper()))
            continue
        if kind == "numbers":  # "1, 2, 3, ..., " as one token: long IN lists stay cheap
            if tokens and tokens[-1].text in ("(", ","):
                append(Token(kind, value, match.start(), kind))
                continue
            for part in _NUMBER_OR_COMMA.finditer(value):  # elsewhere: one token each
                append(
                    Token(
                        part.lastgroup or "",
                        part.group(),
                        match.start() + part.start(),
                        part.group(),
                    )
                )
            continue
        if kind == "bad":
            fail_at(text, match.start(), _bad_character(text, match.start()))
        if kind == "number":
            end = match.end()
            if end < len(text) and (text[end].isalnum() or text[end] == "_"):
                word = re.match(r"[\w.]+", text[match.start() :])
                spelled = word.group(0) if word else value
                fail_at(
                    text,
                    match.start(),
                    f"{spelled!r} is not a number (write numbers as 12, 1.5, 1.5e-3; ADQL has "
                    "no hexadecimal literals; put a space between a number and a name)",
                )
        append(Token(kind or "", value, match.start(), value))
    end = tokens[-1].start + len(tokens[-1].text) if tokens else 0
    tokens.append(Token("end", "", end, ""))
    return tokens


def _bad_character(text: str, pos: int) -> str:
    char = text[pos]
    if char == "_":
        word = re.match(r"\w+", text[pos:])
        name = word.group(0) if word else "_"
        return f"an unquoted name cannot start with '_' ({name}); write it delimited: \"{name}\""
    if char in "'\"":
        return "unterminated string or quoted name"
    if text.startswith("/*", pos):
        return "unterminated comment: close it with */"
    return f"the character {char!r} is not part of ADQL"


def position(text: str, offset: int) -> tuple[int, int]:
    before = text[: max(offset, 0)]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def fail_at(text: str, offset: int, problem: str) -> NoReturn:
    line, column = position(text, offset)
    raise QueryParseError(f"syntax error: {problem}", text=text, line=line, column=column)


COMPARISONS = frozenset({"=", "<>", "!=", "<", ">", "<=", ">="})
SET_FUNCTIONS = frozenset({"AVG", "MAX", "MIN", "SUM", "COUNT"})
_ONE_ARGUMENT = """
    ABS CEILING DEGREES EXP FLOOR LOG LOG10 RADIANS SQRT ACOS ASIN ATAN COS COT SIN TAN LOWER
    UPPER AREA CENTROID COORD1 COORD2 COORDSYS REGION
"""
#: ADQL's own functions (reserved names) → (least, most) arguments; None: any number
ARITY: dict[str, tuple[int, int | None]] = {
    **dict.fromkeys(
        [
            "ABS",
            "CEILING",
            "DEGREES",
            "EXP",
            "FLOOR",
            "LOG",
            "LOG10",
            "RADIANS",
            "SQRT",
            "ACOS",
            "ASIN",
            "ATAN",
            "COS",
            "COT",
            "SIN",
            "TAN",
            "LOWER",
            "UPPER",
            "AREA",
            "CENTROID",
            "COORD1",
            "COORD2",
            "COORDSYS",
            "REGION",
        ],
        (1, 1),
    ),
    **dict.fromkeys(
        ["ATAN2", "MOD", "POWER", "CONTAINS", "INTERSECTS", "IN_UNIT", "NULLIF"], (2, 2)
    ),
    "PI": (0, 0),
    "RAND": (0, 1),
    "ROUND": (1, 2),
    "TRUNCATE": (1, 2),
    "DISTANCE": (2, 4),
    "POINT": (2, 2),
    "CIRCLE": (2, 3),
    "BOX": (3, 4),
    "POLYGON": (3, None),
    "COALESCE": (1, None),
}
#: the constructors whose first argument may be a coordinate system string
GEOMETRY = frozenset({"POINT", "CIRCLE", "BOX", "POLYGON"})
CAST_TYPES = (
    "SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, CHAR(n), VARCHAR(n), TIMESTAMP, "
    "POINT, CIRCLE or POLYGON"
)
EXPRESSION_START = "an expression"
