"""What a PostgreSQL error means for the user: their query's mistake, or a worker's failure.

PostgreSQL says which by the SQLSTATE of the error, whose first two characters are its
class (PostgreSQL's Appendix A; psycopg registers an exception class for each code, e.g.
``psycopg.errors.DivisionByZero`` for 22012). The classes caused by the SQL the user
wrote become :class:`~qserv_py.errors.QuerySqlError` (HTTP 400) with PostgreSQL's message;
a server short of a resource is :class:`~qserv_py.errors.WorkerBusy` (503); anything else
(a connection lost, the server shutting down, an I/O or internal error) stays a
:class:`~qserv_py.errors.WorkerError` (502): a worker really failed.

>>> import psycopg.errors
>>> e = user_error("worker1", psycopg.errors.lookup("22012")("division by zero"))
>>> type(e).__name__, e.http_status
('QuerySqlError', 400)
>>> print(e)  # doctest: +NORMALIZE_WHITESPACE
the query failed in PostgreSQL on worker worker1: division by zero
(SQLSTATE 22012 DivisionByZero: a data exception, a value the operation cannot take)
>>> user_error("worker1", psycopg.errors.lookup("08006")("lost")) is None
True
>>> type(database_error("worker1", psycopg.errors.lookup("53200")("out of memory"))).__name__
'WorkerBusy'
"""

from __future__ import annotations

import psycopg

from qserv_py.errors import QservError, QueryRefused, QuerySqlError, WorkerBusy, WorkerError

#: SQLSTATE classes caused by the query's own SQL, and what each means to its author
USER_CLASSES: dict[str, str] = {
    "0A": "a feature PostgreSQL does not support",
    "21": "a cardinality violation, e.g. a scalar subquery that returned more than one row",
    "22": "a data exception, a value the operation cannot take",
    "23": "an integrity constraint violation",
    "2F": "an SQL routine exception",
    "38": "an external routine exception",
    "39": "an external routine invocation exception",
    "42": "a syntax error or access rule violation in the SQL",
    "44": "a WITH CHECK OPTION violation",
    "54": "a program limit exceeded: the query is too large or too complex, simplify it",
    "P0": "a PL/pgSQL error",
}

#: SQLSTATE class of a server short of a resource (memory, disk, connections)
BUSY_CLASS = "53"


def _describe(error: psycopg.Error) -> str:
    """PostgreSQL's message, with its detail and hint when it gave them."""
    diag = error.diag
    text = getattr(diag, "message_primary", None) or str(error).strip() or type(error).__name__
    text = text.splitlines()[0]
    for extra in (getattr(diag, "message_detail", None), getattr(diag, "message_hint", None)):
        if extra:
            text += f"; {extra.splitlines()[0]}"
    return text


def user_error(where: str, error: psycopg.Error) -> QuerySqlError | None:
    """The user's error that ``error`` (from ``where``, a worker or the czar) is, or None
    when it is not caused by the query's SQL."""
    state = error.sqlstate or ""
    meaning = USER_CLASSES.get(state[:2])
    if meaning is None:
        return None
    place = "the czar" if where == "czar" else f"worker {where}"
    return QuerySqlError(
        f"the query failed in PostgreSQL on {place}: {_describe(error)}\n"
        f"(SQLSTATE {state} {type(error).__name__}: {meaning})",
        sqlstate=state,
    )


def database_error(where: str, error: psycopg.Error, doing: str = "") -> QservError:
    """The error a user sees for ``error`` raised on ``where`` (a worker's name or
    ``czar``) while ``doing`` something (words to put after the place, optional)."""
    found = user_error(where, error)
    if found is not None:
        return found
    place = f"worker {where}" if where != "czar" else "the czar"
    if doing:
        place += f" {doing}"
    if error.sqlstate == "53400" and "temp_file_limit" in _describe(error):
        return QueryRefused(
            f"the query needs more temporary file space on {place} than a query may use "
            "(setting reader_temp_file_limit): make it cheaper (fewer rows to sort, join, "
            f"group or recurse over): {_describe(error)}"
        )
    if (error.sqlstate or "").startswith(BUSY_CLASS):
        return WorkerBusy(f"{place} is short of resources, try again later: {_describe(error)}")
    return WorkerError(f"{place}: {_describe(error)}")
