"""The plan cache: a query shape seen before is planned by filling in its numbers.

Services see the same queries again and again with other numbers: cone searches at other
positions, lookups of other objectIds. Compiling one (parse, qualify, types, analysis,
split, SQL writing) costs 3–10 ms of Python; the statement itself ~1 ms on a worker.

**Shapes.** A query's shape is its token list with each number replaced by its kind
(integer or not), in one language, planned against one :class:`PlanContext` (the cache
is emptied when the metadata changes). The first time a shape is seen it is planned as
usual. The second time, the cache also makes a **template** of it:

1. the query is planned as usual (the plan to check against, and the one returned);
2. it is planned again with each number spelled uniquely (``7.5`` as ``007.5``: the same
   value) and the reads of literal values tracked (:mod:`qserv_py.query.params`);
3. each literal is then **free** — its spelling appears in the worker or merge SQL and
   planning never read its value, except in the outermost SELECT's restrictors — or
   **pinned**: read elsewhere (a LIMIT, a join radius, a 0/1 compared with CONTAINS, a
   region that restricts nothing), written nowhere (consumed by a rewrite), or in the
   select list, ORDER BY, GROUP BY, LIMIT or OFFSET. Pinned values become part of the key
   of the template: another value is another template;
4. the SQL becomes fragments: text, literal slots, and a slot for each outermost
   spatial_index range predicate;
5. the template is **checked**: filled in with this query's numbers, it must give exactly
   the plan of step 1 (SQL, chunks, limit, columns). If not, the shape is never cached.

**Filling in** (a later query of the shape and pinned values): the outermost restrictor
conjuncts are re-run on the new numbers by the planner's own code — the regions'
validation as at parse time, then :func:`qserv_py.query.analysis.restrict` — giving the
regions and director keys, hence the chunk set (``chunk_set``, a director-index lookup
for keys) and the range predicates; the literal slots take the new numbers' text. If a
conjunct no longer restricts (``objectId = 1.5``), the query is planned as usual.

Restrictor re-runs are used only where the chunk set depends on nothing else: no derived
tables over partitioned tables, no near-neighbour join; otherwise the restrictors'
numbers are pinned. Queries with uploads are planned by :meth:`PlanCache.plan_uploads`
instead: from the uploads' schemas once per text, language and schemas, then given each
upload's data (:func:`qserv_py.query.uploads.with_data`). EXPLAIN (which shows the
oracle SQL) is always planned as usual; a plan from the cache has no ``oracle_sql``.

Once a shape has a template, later texts of it are recognised without sqlglot's tokenizer
(~0.08 ms): by their skeleton, the text with each number replaced by its form, when the
numbers a regular expression finds in the template's text were exactly the tokenizer's
number tokens (see ``_numbers``).

A number's sign is a token of its own: ``CIRCLE(10, -5, 1)`` and ``CIRCLE(10, 5, 1)`` are
two shapes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from qserv_py.errors import QservError
from qserv_py.exec.plan import ExecPlan
from qserv_py.query import geometry as geo
from qserv_py.query import params
from qserv_py.query.analysis import Analysis, Derived, restrict
from qserv_py.query.chunking import assign_chunks, chunk_set, region_ranges
from qserv_py.query.context import PlanContext
from qserv_py.query.guard import check_text
from qserv_py.query.parse import dialect, parse
from qserv_py.query.planner import plan as plan_query
from qserv_py.query.render import index_ranges_sql
from qserv_py.query.subqueries import Analysed
from qserv_py.query.uploads import with_data
from qserv_py.sky.regions import Region

log = logging.getLogger(__name__)

#: shapes kept (the least recently used go first), and templates per shape (one for each
#: combination of pinned values, e.g. each LIMIT; the oldest go first)
CAPACITY = 512
TEMPLATES_PER_SHAPE = 16
#: positions whose literals are always pinned (their values shape the plan)
_PINNING = (exp.Limit, exp.Offset, exp.Fetch, exp.Order, exp.Ordered, exp.Group, geo.InUnit)

_Fragment = str | tuple[str, int]  # text, ("lit", literal) or ("ranges", slot)


@dataclass(frozen=True)
class _Slot:
    """A spatial_index range predicate of the outermost SELECT: the ``index``-th region
    of ``alias``, on the column written ``column``."""

    alias: str
    index: int
    column: str


@dataclass
class _Template:
    pinned: frozenset[int]
    #: unique spelling of each literal (in the restrictor copies) → its position
    spelling: dict[str, int]
    worker: list[_Fragment]
    merge: list[_Fragment]
    plan: ExecPlan  # chunks, limit, columns, ... of the query the template was made from
    #: re-run for new values (empty: the chunk set does not depend on free literals)
    restrictors: list[exp.Expression] = field(default_factory=list)
    analysed: Analysed | None = None
    slots: list[_Slot] = field(default_factory=list)

    def __post_init__(self) -> None:
        #: the region nodes of each restrictor (validated again for new values)
        self.regions = [list(c.find_all(*geo.REGIONS)) for c in self.restrictors]


@dataclass
class _Shape:
    seen: int = 0
    #: the literals the first template pinned (None: not made yet); False: not cacheable
    pinned: frozenset[int] | bool | None = None
    templates: dict[tuple[str, ...], _Template] = field(default_factory=dict)


class PlanCache:
    """Plans of query shapes (see the module's docstring); thread-safe."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._shapes: OrderedDict[tuple[Any, ...], _Shape] = OrderedDict()
        #: (language, skeleton of the text) → the key of its shape (see _numbers)
        self._known: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._ctx: PlanContext | None = None
        #: (text, language, the uploads' names and schemas) → the plan from the schemas
        self._uploads: OrderedDict[tuple[Any, ...], ExecPlan] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _context(self, ctx: PlanContext) -> None:
        """Forget every plan made on another context (under the lock)."""
        if self._ctx is not ctx:
            self._shapes.clear()
            self._known.clear()
            self._uploads.clear()
            self._ctx = ctx

    def plan_uploads(
        self, text: str, lang: str, ctx: PlanContext, uploads: Mapping[str, pa.Table | pa.Schema]
    ) -> ExecPlan:
        """The plan of ``text`` reading ``uploads`` (tables or schemas, by name), as the
        planner makes it from them with ``oracle=False``: the shape is planned once from
        the schemas (their fields' metadata included: units and UCDs change plans)."""
        schemas = {n: t.schema if isinstance(t, pa.Table) else t for n, t in uploads.items()}
        key = (
            text,
            lang.strip().lower(),
            tuple(sorted((n.lower(), s.serialize().to_pybytes()) for n, s in schemas.items())),
        )
        with self._lock:
            self._context(ctx)
            planned = self._uploads.get(key)
            if planned is not None:
                self._uploads.move_to_end(key)
        if planned is None:
            self.misses += 1
            planned = plan_query(text, lang, ctx, schemas, oracle=False)
            with self._lock:
                if self._ctx is ctx:
                    self._uploads[key] = planned
                    while len(self._uploads) > self.capacity:
                        self._uploads.popitem(last=False)
        else:
            self.hits += 1
        return with_data(planned, uploads, ctx)

    def plan(self, text: str, lang: str, ctx: PlanContext) -> ExecPlan:
        """The plan of ``text`` (as :func:`qserv_py.query.planner.plan` with
        ``oracle=False`` would make it)."""
        name = lang.strip().lower()
        check_text(text, lang, ctx.limits)  # a template's numbers may be longer
        skeleton, spans, values = _numbers(text)
        with self._lock:
            key = self._known.get((name, skeleton))
        numbers: list[Token] | None = None
        if key is None:
            try:
                key, numbers = _shape(text, lang)
            except Exception:  # the planner says what is wrong
                return plan_query(text, lang, ctx, oracle=False)
            values = tuple(t.text for t in numbers)
        with self._lock:
            self._context(ctx)
            shape = self._shapes.get(key)
            if shape is None:
                shape = self._shapes[key] = _Shape()
                while len(self._shapes) > self.capacity:
                    self._shapes.popitem(last=False)
            else:
                self._shapes.move_to_end(key)
            shape.seen += 1
            pinned = shape.pinned
            template = None
            if isinstance(pinned, frozenset):
                template = shape.templates.get(tuple(values[i] for i in sorted(pinned)))
        if template is not None:
            planned = _fill(template, values, ctx)
            if planned is not None:
                self.hits += 1
                return planned
        self.misses += 1
        if pinned is False or shape.seen < 2:
            return plan_query(text, lang, ctx, oracle=False)
        planned = plan_query(text, lang, ctx, oracle=False)
        if numbers is None:
            numbers = _shape(text, lang)[1]
        made = _make(text, lang, ctx, numbers, planned)
        with self._lock:
            if made is not None and spans == [(t.start, t.end + 1) for t in numbers]:
                self._known[(name, skeleton)] = key
                while len(self._known) > self.capacity:
                    self._known.pop(next(iter(self._known)))
            if made is None or (isinstance(pinned, frozenset) and not made.pinned <= pinned):
                shape.pinned = False
                shape.templates.clear()
            else:
                if not isinstance(shape.pinned, frozenset):
                    shape.pinned = made.pinned
                assert isinstance(shape.pinned, frozenset)
                shape.templates[tuple(values[i] for i in sorted(shape.pinned))] = made
                while len(shape.templates) > TEMPLATES_PER_SHAPE:
                    shape.templates.pop(next(iter(shape.templates)))
        return planned


def _kind(number: str) -> str:
    return "int" if number.isdigit() else "num"


def _shape(text: str, lang: str) -> tuple[tuple[Any, ...], list[Token]]:
    """The key of a query's shape, and its number tokens (sqlglot's tokenizer)."""
    tokens = dialect(lang).tokenizer().tokenize(text)
    key = (
        lang.strip().lower(),
        tuple(
            (
                t.token_type,
                _kind(t.text) if t.token_type == TokenType.NUMBER else t.text,
                *t.comments,
            )
            for t in tokens
        ),
    )
    return key, [t for t in tokens if t.token_type == TokenType.NUMBER]


#: a number as the tokenizer scans one (with what follows and precedes it)
_NUMBER = re.compile(r"(?<![\w.$])(\d+)(\.\d*)?([eE][-+]?\d+)?(?![\w.$])")


def _numbers(text: str) -> tuple[str, list[tuple[int, int]], tuple[str, ...]]:
    """``text`` with each number replaced by its form, the numbers' spans, their texts.

    A shortcut to a shape's key: once a shape has a template, the skeleton of its text
    stands for the key if these spans were exactly the tokenizer's number tokens. Another
    text with the same skeleton differs only in the digits of numbers of the same forms,
    outside strings, comments and quoted names (the same characters are around them), so
    the tokenizer would find the same tokens.
    """
    pieces, spans, values, at = [], [], [], 0
    for match in _NUMBER.finditer(text):
        fraction, exponent = match[2] or "", match[3] or ""
        sign = exponent[1:2] if exponent[1:2] in ("+", "-") else ""
        form = f"\x00{fraction[:1]}{'d' if len(fraction) > 1 else ''}{exponent[:1]}{sign}\x00"
        pieces += [text[at : match.start()], form]
        spans.append(match.span())
        values.append(match[0])
        at = match.end()
    pieces.append(text[at:])
    return "".join(pieces), spans, tuple(values)


def _make(
    text: str,
    lang: str,
    ctx: PlanContext,
    numbers: list[Token],
    planned: ExecPlan,
) -> _Template | None:
    """The template of a query planned as ``planned``, or None if it cannot have one."""
    unique = [("0" * (i + 1)) + t.text for i, t in enumerate(numbers)]
    if len(set(unique)) < len(unique):
        return None
    by_position = _pinned_by_position(
        parse(_respelled(text, numbers, unique), lang), {s: i for i, s in enumerate(unique)}
    )
    # numbers pinned by their position keep their spelling (GROUP BY x + 1 must still
    # match SELECT x + 1); the others are spelled uniquely, to be found in the SQL
    spelled = [t.text if i in by_position else unique[i] for i, t in enumerate(numbers)]
    spelling = {unique[i]: i for i in range(len(numbers)) if i not in by_position}
    if set(spelling) & {numbers[i].text for i in by_position}:
        return None
    padded = _respelled(text, numbers, spelled)
    pinned = set(by_position)
    tracker = params.Tracker(index=spelling)
    try:
        with params.tracking(tracker):
            tracked = plan_query(padded, lang, ctx, oracle=False)
    except QservError as exc:  # e.g. GROUP BY x + 1 no longer matches SELECT x + 1
        log.debug("plan cache: %r cannot have a template: %s", text[:200], exc)
        return None
    pinned |= tracker.pinned
    restrictors: list[exp.Expression] = []
    slots: list[_Slot] = []
    written_ranges: list[str] = []
    outermost = tracker.outermost if tracker.selects == 1 else None
    analysed = outermost if isinstance(outermost, Analysed) else None
    in_restrictors = {
        spelling[n.this]
        for r in tracker.restrictors
        for n in r.find_all(exp.Literal)
        if n.this in spelling
    }
    found = None
    if (
        analysed is not None
        and tracker.restrictors
        and not analysed.overlap
        and not analysed.analysis.radius
        and not any(isinstance(r, Derived) for r in analysed.refs)
    ):  # the chunk set depends on the outermost restrictors only: they can be re-run
        found = _slots(analysed, tracked.worker_sql)
    if found is not None:
        # restrictors re-run for new values; a literal read in the scope of a conjunct
        # that restricts nothing could only have made it a restrictor: no harm
        restrictors, slots, written_ranges = tracker.restrictors, found[0], found[1]
        pinned |= tracker.validated - in_restrictors
    elif tracker.restrictors:
        pinned |= tracker.restricting | tracker.validated
    else:
        pinned |= tracker.validated
    written = f"{tracked.worker_sql}\n{tracked.merge_sql}"
    for s, i in spelling.items():
        if not re.search(_word(s), written):
            pinned.add(i)
    worker = _fragments(tracked.worker_sql, spelling, written_ranges)
    merge = _fragments(tracked.merge_sql, spelling, [])
    template = _Template(
        frozenset(pinned),
        spelling,
        worker,
        merge,
        planned,
        restrictors,
        analysed if restrictors else None,
        slots,
    )
    check = _fill(template, tuple(t.text for t in numbers), ctx)
    same = check is not None and all(
        getattr(check, f) == getattr(planned, f)
        for f in ("worker_sql", "merge_sql", "chunks", "replicated_worker", "limit",
                  "concatenate", "partitions")
    )  # fmt: skip
    if not same:
        log.debug("plan cache: the template of %r does not give its plan", text[:200])
        return None
    return template


def _respelled(text: str, numbers: list[Token], spelled: list[str]) -> str:
    """``text`` with each number token written as in ``spelled``."""
    pieces, at = [], 0
    for token, spelling in zip(numbers, spelled, strict=True):
        pieces += [text[at : token.start], spelling]
        at = token.end + 1
    return "".join(pieces) + text[at:]


def _pinned_by_position(tree: exp.Expression, spelling: dict[str, int]) -> set[int]:
    """Literals in the select list, ORDER BY, GROUP BY, LIMIT, OFFSET or IN_UNIT."""
    pinned = set()
    for literal in tree.find_all(exp.Literal):
        position = spelling.get(literal.this)
        if position is None or literal.is_string:
            continue
        node: exp.Expr | None = literal
        while node is not None:
            parent = node.parent
            if isinstance(parent, _PINNING) or (
                isinstance(parent, exp.Select) and node.arg_key == "expressions"
            ):
                pinned.add(position)
                break
            node = parent
    return pinned


def _word(spelling: str) -> str:
    return rf"(?<![\w.]){re.escape(spelling)}(?![\w.])"


def _ranges_sql(column: str, region: Region) -> str:
    lo, hi = region_ranges(region)
    return index_ranges_sql(column, list(zip(lo.tolist(), hi.tolist(), strict=True)))


def _slots(analysed: Analysed, worker_sql: str) -> tuple[list[_Slot], list[str]] | None:
    """The outermost range predicates and their text, each found once in the worker SQL
    (else None)."""
    slots, texts = [], []
    for ref in analysed.refs:
        for index, region in enumerate(analysed.analysis.regions.get(ref.alias, [])):
            column = f"{ref.alias}.spatial_index"
            written = _ranges_sql(column, region)
            if written == "FALSE" or worker_sql.count(written) != 1:
                return None
            slots.append(_Slot(ref.alias, index, column))
            texts.append(written)
    return slots, texts


def _fragments(sql: str, spelling: dict[str, int], ranges: list[str]) -> list[_Fragment]:
    """``sql`` cut at the literals' spellings and at the range predicates ``ranges``."""
    parts: list[_Fragment] = [sql]
    for slot, written in enumerate(ranges):
        cut: list[_Fragment] = []
        for part in parts:
            if isinstance(part, str) and written in part:
                head, tail = part.split(written, 1)
                cut += [head, ("ranges", slot), tail]
            else:
                cut.append(part)
        parts = cut
    if not spelling:
        return parts
    words = re.compile("|".join(_word(s) for s in sorted(spelling, key=len, reverse=True)))
    out: list[_Fragment] = []
    for part in parts:
        if not isinstance(part, str):
            out.append(part)
            continue
        at = 0
        for match in words.finditer(part):
            out += [part[at : match.start()], ("lit", spelling[match.group()])]
            at = match.end()
        out.append(part[at:])
    return [p for p in out if p != ""]


def _fill(template: _Template, values: tuple[str, ...], ctx: PlanContext) -> ExecPlan | None:
    """The plan of the template's shape for the numbers ``values`` (their texts), or None
    if its restrictors do not restrict the same way with them."""
    chunks = template.plan.chunks
    ranges: list[str] = []
    analysed = template.analysed
    if template.restrictors and analysed is not None:
        bound = {s: values[i] for s, i in template.spelling.items()}
        refs = {r.alias: r for r in analysed.refs}
        before = analysed.analysis
        analysis = Analysis({}, {}, before.edges, [], dict(before.radius))
        with params.tracking(params.Tracker(index=template.spelling, bound=bound)):
            for conjunct, regions in zip(template.restrictors, template.regions, strict=True):
                for region in regions:
                    geo.region_of(region)  # the check parsing does, with its messages
                if not restrict(analysis, conjunct, refs):
                    return None
        if analysis.keys.keys() != before.keys.keys() or {
            a: len(r) for a, r in analysis.regions.items()
        } != {a: len(r) for a, r in before.regions.items()}:
            return None
        found = chunk_set(analysed.primary, analysed.refs, analysis, ctx, analysed.nullable)
        chunks = assign_chunks(found, analysed.refs[0].catalog.sql_name, ctx)
        ranges = [_ranges_sql(s.column, analysis.regions[s.alias][s.index]) for s in template.slots]

    def write(fragments: list[_Fragment]) -> str:
        return "".join(
            f if isinstance(f, str) else values[f[1]] if f[0] == "lit" else ranges[f[1]]
            for f in fragments
        )

    return replace(
        template.plan,
        worker_sql=write(template.worker),
        merge_sql=write(template.merge),
        chunks=chunks,
        oracle_sql="",
    )
