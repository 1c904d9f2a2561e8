"""Result-size limits, enforced by the PostgreSQL server that produces the rows.

A result is materialised in the service (libpq holds a whole result before psycopg hands
it over, then Arrow, then the rendered answer), so a limit checked after the fetch is too
late: one ``SELECT repeat('x', 1000000000)`` is a gigabyte in the service before Python
sees a byte of it. The limit is therefore written into the SQL itself:

- :func:`capped_total` wraps a statement whose rows the service fetches (the fast path's
  one statement, the merge on the czar) with a running sum of the rows' sizes
  (``pg_column_size`` of each row, a window over the rows in their order); the first row
  that takes the sum over the limit raises an error on the server, so the service never
  receives more than the limit. The statement gets one more column (``qserv_guard``,
  always NULL), which :func:`qserv_py.exec.arrow.fetch_table` drops (``guarded=True``).
- :func:`capped_rows` wraps a worker's statement whose rows are relayed to the czar's
  merge table by COPY: each row is checked alone (a row larger than the limit would be
  one COPY message of that size in the relaying process); the merge then checks the
  total.

The error is raised by casting a message to ``int`` (plain SQL: no function to install on
the workers); :func:`too_large` recognises it by its marker and turns it into
:class:`~qserv_py.errors.ResultTooLarge`. The message depends on the row, so PostgreSQL
cannot fold it into a constant at plan time.

>>> capped_rows("SELECT a FROM t", 1000)[:68]
'SELECT qserv_rows.* FROM (SELECT a FROM t) AS qserv_rows WHERE CASE '
"""

from __future__ import annotations

import re

import psycopg

from qserv_py.errors import ResultTooLarge

MARKER = "qserv_py result limit"
#: the name of the extra (always NULL) column of a :func:`capped_total` statement
GUARD = "qserv_guard"
_SIZE = re.compile(re.escape(MARKER) + r": (a row of|the rows up to here are) (\d+) bytes")


def capped_total(sql: str, max_bytes: int) -> str:
    """``sql`` with a column that raises on the server once its rows, in order, add up to
    more than ``max_bytes`` (sizes as PostgreSQL stores them)."""
    size = "sum(pg_column_size(qserv_rows.*)) OVER (ROWS UNBOUNDED PRECEDING)"
    return (
        f"SELECT qserv_rows.*, CASE WHEN {size} > {int(max_bytes)} THEN "
        f"('{MARKER}: the rows up to here are ' || {size} || ' bytes')::int END AS {GUARD}"
        f" FROM ({sql}) AS qserv_rows"
    )


def capped_rows(sql: str, max_bytes: int) -> str:
    """``sql`` without rows larger than ``max_bytes``: such a row raises on the server."""
    size = "pg_column_size(qserv_rows.*)"
    return (
        f"SELECT qserv_rows.* FROM ({sql}) AS qserv_rows WHERE CASE WHEN {size} > "
        f"{int(max_bytes)} THEN ('{MARKER}: a row of ' || {size} || ' bytes')::int = 0"
        " ELSE true END"
    )


def uncompressed(table: str) -> str:
    """A statement that keeps the merge table ``table`` from compressing its values (their
    sizes would be counted compressed, but they are sent whole): STORAGE EXTERNAL for
    each column of a variable-length type (PostgreSQL 15 cannot say so in CREATE)."""
    return (
        "DO $$ DECLARE c record; BEGIN FOR c IN SELECT a.attname FROM pg_attribute a"
        " JOIN pg_type t ON t.oid = a.atttypid"
        f" WHERE a.attrelid = '{table}'::regclass AND a.attnum > 0 AND t.typstorage <> 'p'"
        f" LOOP EXECUTE format('ALTER TABLE {table} ALTER COLUMN %I SET STORAGE EXTERNAL',"
        " c.attname); END LOOP; END $$"
    )


def too_large(error: BaseException, max_bytes: int | None) -> ResultTooLarge | None:
    """The :class:`ResultTooLarge` that a server error raised by a cap stands for, if it
    is one (else None)."""
    if max_bytes is None:
        return None
    too_big = "tuple is too big" in str(error)  # a row near 1 GB: PostgreSQL cannot hold it
    if isinstance(error, psycopg.errors.ProgramLimitExceeded) and too_big:
        return ResultTooLarge(
            f"the result is larger than the limit of {max_bytes:,} bytes (one row is larger "
            f"than PostgreSQL can hold: {str(error).strip().splitlines()[0]}); the query was "
            "stopped: select fewer or smaller columns",
            limit=max_bytes,
        )
    if not isinstance(error, psycopg.errors.InvalidTextRepresentation):
        return None
    found = _SIZE.search(str(error))
    if found is None:
        return None
    what = "one row is" if found.group(1) == "a row of" else "the result is over"
    return ResultTooLarge(
        f"the result is larger than the limit of {max_bytes:,} bytes ({what} "
        f"{int(found.group(2)):,} bytes); the query was stopped: select fewer rows or "
        "columns (TOP/LIMIT, MAXREC, a narrower WHERE)",
        limit=max_bytes,
    )
