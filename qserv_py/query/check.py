"""The check pass: only reading, only allowed functions.

Tables are already limited to the catalogs by qualify (no system catalogs). Here every
function call must be a known, side-effect-free function: an anonymous (unknown to
sqlglot) function is refused unless listed below, and so are window functions.
"""

from __future__ import annotations

from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.query.walk import find_all

#: functions sqlglot does not model but that are safe and useful
ALLOWED_ANONYMOUS = frozenset({"random", "trunc", "cbrt", "sign", "width_bucket", "log10"})

#: statements that write
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Command)


def check_allowed(tree: exp.Expression) -> exp.Expression:
    """Refuse anything but reading with allowed functions (returns the tree)."""
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        raise QueryRefused("only SELECT queries are allowed")
    for node in find_all(tree, exp.Window, exp.Anonymous, *_WRITES):
        if isinstance(node, exp.Window):
            raise QueryRefused(
                "window functions are not supported: they need rows from all chunks at once; "
                "compute them on the result instead"
            )
        if isinstance(node, exp.Anonymous) and node.name.lower() not in ALLOWED_ANONYMOUS:
            raise QueryRefused(
                f"function {node.name} is not allowed; see the documentation for the functions "
                "you can use"
            )
        if isinstance(node, _WRITES):
            raise QueryRefused("only SELECT queries are allowed")
    return tree
