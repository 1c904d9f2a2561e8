"""Which number literals of a query its plan depends on, for the plan cache.

The plan cache (:mod:`qserv_py.query.cache`) compiles a query once more with each number
literal spelled uniquely (leading zeros: ``7.5`` as ``007.5``, the same value), with a
:class:`Tracker` active. Planning reads a literal's value only through :func:`text`
(``regions_ast.constant``, ``geometry.number``, LIMIT, LOG's base), and each read is
noted against the literal:

- a read in the **restrictor scope** (the outermost SELECT's spatial and director-key
  restrictors, and the validation of their regions) is re-done when the plan is reused
  with other values: the cache re-runs those restrictors on the new values;
- any other read **pins** the literal: its value becomes part of the cache key.

While the cache re-runs restrictors for new values, the Tracker's ``bound`` maps each
unique spelling to the new value's text, so that the same code reads the new values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlglot import exp


@dataclass
class Tracker:
    #: unique spelling of each number literal → its position among the query's literals
    index: dict[str, int]
    #: while re-running restrictors: unique spelling → the text of the new value
    bound: dict[str, str] | None = None
    #: literals read outside the restrictor scope
    pinned: set[int] = field(default_factory=set)
    #: literals read inside it
    restricting: set[int] = field(default_factory=set)
    #: literals read to validate a region as it is parsed (re-done for a restrictor's
    #: regions; any other such literal is pinned)
    validated: set[int] = field(default_factory=set)
    #: the outermost SELECT's restrictor conjuncts (copies), in order
    restrictors: list[exp.Expression] = field(default_factory=list)
    #: what the planner learnt of the outermost SELECT (set by the planner), and how many
    #: outermost SELECTs it planned (the branches of a set operation are several)
    outermost: object | None = None
    selects: int = 0
    scope: int = 0
    validating: int = 0


_tracker: ContextVar[Tracker | None] = ContextVar("qserv_py_params", default=None)


@contextmanager
def tracking(tracker: Tracker) -> Iterator[Tracker]:
    """Note the reads of literal values while compiling (or re-running restrictors)."""
    token = _tracker.set(tracker)
    try:
        yield tracker
    finally:
        _tracker.reset(token)


@contextmanager
def restrictor_scope(on: bool = True, *, validation: bool = False) -> Iterator[None]:
    """Reads in here are re-done for new values, so they do not pin (when ``on``);
    ``validation``: the check of a region as it is parsed."""
    tracker = _tracker.get()
    if tracker is None or not on:
        yield
        return
    attr = "validating" if validation else "scope"
    setattr(tracker, attr, getattr(tracker, attr) + 1)
    try:
        yield
    finally:
        setattr(tracker, attr, getattr(tracker, attr) - 1)


def text(node: exp.Literal) -> str:
    """The text of a number literal as planning reads it (noting the read)."""
    value = node.this
    tracker = _tracker.get()
    if tracker is None:
        return value
    position = tracker.index.get(value)
    if position is None:
        return value
    if tracker.bound is not None:
        return tracker.bound[value]
    if tracker.validating:
        tracker.validated.add(position)
    elif tracker.scope:
        tracker.restricting.add(position)
    else:
        tracker.pinned.add(position)
    return value


def note_outermost(analysed: object) -> None:
    """The planner's analysis of an outermost SELECT (for re-running its restrictors)."""
    tracker = _tracker.get()
    if tracker is not None and tracker.bound is None:
        tracker.outermost = analysed
        tracker.selects += 1


def note_restrictor(conjunct: exp.Expression) -> None:
    """Keep a copy of an outermost restrictor conjunct, to re-run it for new values."""
    tracker = _tracker.get()
    if tracker is not None and tracker.bound is None:
        tracker.restrictors.append(conjunct.copy())
