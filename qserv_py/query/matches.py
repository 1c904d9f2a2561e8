"""Match tables in a SELECT: which copy of each match row a chunk reads, and which
director is read with its overlap, so that every match row is counted exactly once.

A match table relates director₁ and director₂ rows by their keys; the loader stores each
row in the chunk of each director row it names (``qserv_py.loaders.matches``), flagged
with the side that placed the copy. So, per chunk c:

- **match alone**: the copy flagged *primary* (one per row) is read:
  ``(m.match_flags & 4) <> 0``. Restricted by a side's key (``m.refId = 42``), the chunk
  set is that key's chunk (director index) and the copy placed by that side is read:
  ``(m.match_flags & 1) <> 0``. (Qserv's ``MatchTablePlugin`` adds
  ``dirCol1 IS NULL OR flag <> 2`` for the same purpose.)
- **match ⋈ director (or a child of it) on one side's key**: the join itself picks the
  copy in that director row's chunk (the two are joined on ``chunk_id``): no filter.
- **director₁ ⋈ match ⋈ director₂**: one side, the *anchor*, is joined in its chunk as
  above; the other director is read from the chunk and its overlap (as the second side of
  a near-neighbour join is), which holds it because the loader refuses match rows whose
  two sides are farther apart than the overlap. The anchor is the side whose tables are
  restricted (a cone, an id lookup), so its restriction chooses the chunks; side 1 if
  neither or both are. The other side must be that director alone (nothing else joined
  to it), else the query is refused with why.

Outer joins: the director read with its overlap must not be on the preserved side of an
outer join (its overlap copies would come out unmatched), and the match table must not
be preserved against the tables of its anchor side (its copies placed by the other side
would come out unmatched): such joins are refused, with the order that works.
"""

from __future__ import annotations

from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.query.analysis import Analysis, Ref, from_sources
from qserv_py.schema.model import FLAG_FIRST, FLAG_PRIMARY, FLAG_SECOND, MATCH_FLAGS


def plan_matches(
    select: exp.Select,
    refs: list[Ref],
    analysis: Analysis,
    placed_by_position: frozenset[str] = frozenset(),
) -> set[str]:
    """Choose each match table's anchor side (set on its ref); the aliases of the
    directors to read with their overlap. ``placed_by_position``: tables whose keys are
    not all in the director indexes (a match load that allowed unknown keys): a key
    restriction of such a table alone cannot choose chunks."""
    overlap: set[str] = set()
    outer = outer_joins(select)
    matches = {r.alias: r for r in refs if r.is_match}
    for ref in refs:
        if not ref.is_match:
            continue
        sides = analysis.match_sides.get(ref.alias, {})
        other = sorted(a for joined in sides.values() for a in joined if a in matches)
        if other:
            raise QueryRefused(
                f"a join of two match tables ({ref.alias} and {other[0]}) is not supported: "
                "join each match table to the director table instead"
            )
        keys = analysis.match_keys.get(ref.alias, {})
        joined = [s for s in (1, 2) if sides.get(s)]
        ref.match_joined = bool(joined)
        if not joined:
            usable = ref.table.sql_name not in placed_by_position
            ref.match_anchor = 2 if 2 in keys and 1 not in keys else 1
            # (a key unknown to its director: that row's copy is elsewhere)
            ref.match_narrowed = usable and ref.match_anchor in keys
            continue
        if len(joined) == 1:
            ref.match_anchor = joined[0]
            _check_kept(ref, sides[joined[0]], outer)
        else:
            far = _far_side(ref, refs, analysis, outer)
            ref.match_anchor = 3 - far
            overlap.add(next(iter(sides[far])))
        ref.match_narrowed = ref.match_anchor in keys
    if len(overlap) > 1 or (overlap and analysis.radius):
        raise QueryRefused(
            "a SELECT can read one director with its overlap: one join director ⋈ match ⋈ "
            "director, or one near-neighbour join; run the others as queries of their own"
        )
    return overlap


def outer_joins(select: exp.Select) -> list[tuple[set[str], set[str]]]:
    """The (preserved, NULL-filled) aliases of each outer join of ``select``."""
    aliases = [source.alias_or_name for source in from_sources(select)]
    found = []
    for i, join in enumerate(select.args.get("joins") or [], start=1):
        side = join.side.upper()
        before, joined = set(aliases[:i]), {aliases[i]}
        if side == "LEFT":
            found.append((before, joined))
        elif side == "RIGHT":
            found.append((joined, before))
        elif side == "FULL":
            found += [(before, joined), (joined, before)]
    return found


def _kept(match: Ref, group: set[str], outer: list[tuple[set[str], set[str]]]) -> bool:
    """Whether an outer join keeps the match table's rows against a table of ``group``."""
    return any(match.alias in kept and filled & group for kept, filled in outer)


def _check_kept(match: Ref, group: set[str], outer: list[tuple[set[str], set[str]]]) -> None:
    if _kept(match, group, outer):
        raise QueryRefused(
            f"this outer join keeps the rows of the match table {match.table.name} "
            f"({match.alias}) that have no {', '.join(sorted(group))} row: each chunk holds "
            "copies of match rows placed by the other side, which would come out "
            "unmatched; start from the director (Object o LEFT JOIN match m ON ...), or "
            "use an inner join"
        )


def _far_side(
    match: Ref, refs: list[Ref], analysis: Analysis, outer: list[tuple[set[str], set[str]]]
) -> int:
    """The side of ``match`` whose director is read with its overlap (both sides joined)."""
    sides = analysis.match_sides[match.alias]
    by_alias = {r.alias: r for r in refs}
    groups = {side: _group(sides[side], match.alias, analysis) for side in (1, 2)}

    def restricted(side: int) -> bool:
        return side in analysis.match_keys.get(match.alias, {}) or any(
            a in analysis.regions or a in analysis.keys for a in groups[side]
        )

    def alone(side: int) -> bool:
        """Whether that side is one director table, with nothing else joined to it."""
        group = groups[side]
        ref = by_alias[next(iter(group))] if len(group) == 1 else None
        return ref is not None and type(ref) is Ref and ref.is_director

    def preserved(side: int) -> bool:
        return any(groups[side] & kept for kept, _ in outer)

    order = (2, 1) if restricted(2) and not restricted(1) else (1, 2)
    for anchor in order:
        far = 3 - anchor
        if alone(far) and not preserved(far) and not _kept(match, groups[anchor], outer):
            return far
    if any(alone(s) for s in (1, 2)):
        raise QueryRefused(
            f"this join through the match table {match.table.name} ({match.alias}) has "
            "its outer joins in an order that cannot be answered chunk by chunk: preserve "
            "one director and the match table against the other director, as in "
            "Ref r LEFT JOIN match m ON ... LEFT JOIN Obj o ON ..., or use inner joins"
        )
    names = {s: ", ".join(sorted(groups[s])) for s in (1, 2)}
    raise QueryRefused(
        f"the match table {match.table.name} ({match.alias}) joins {names[1]} on its first "
        f"key and {names[2]} on its second: one of the two sides must be its director "
        "table alone (read from the chunk and its overlap), with no other table joined to "
        "it; join the other tables to the first side, or run two queries"
    )


def _group(start: set[str], match: str, analysis: Analysis) -> set[str]:
    """The aliases connected to ``start`` by join edges that do not pass through
    ``match``."""
    found = set(start)
    grown = True
    while grown:
        grown = False
        for a, b, _ in analysis.edges:
            if match in (a, b):
                continue
            if (a in found) != (b in found):
                found |= {a, b}
                grown = True
    return found


def dedupe_condition(ref: Ref) -> exp.Expr | None:
    """The condition that keeps one copy of each row of the match table ``ref`` in a
    query that does not join it to a director (None if it is joined: the join picks the
    copy). Where the anchor side's keys chose the chunks, the copies that side placed;
    else the primary copies.

    >>> from qserv_py.schema.model import Table, TableKind
    >>> m = Ref("m", None, Table("M", TableKind.MATCH, ()), None)  # type: ignore[arg-type]
    >>> dedupe_condition(m).sql("postgres")
    '(m.match_flags & 4) <> 0'
    >>> m.match_narrowed, m.match_anchor = True, 2
    >>> dedupe_condition(m).sql("postgres")
    '(m.match_flags & 2) <> 0'
    """
    if not ref.is_match or ref.match_joined:
        return None
    side_flag = FLAG_FIRST if ref.match_anchor == 1 else FLAG_SECOND
    flag = side_flag if ref.match_narrowed else FLAG_PRIMARY
    return exp.NEQ(
        this=exp.Paren(
            this=exp.BitwiseAnd(
                this=exp.column(MATCH_FLAGS, ref.alias), expression=exp.Literal.number(flag)
            )
        ),
        expression=exp.Literal.number(0),
    )


def anchor_keys(ref: Ref, analysis: Analysis) -> tuple[str, set[int]] | None:
    """The director (sql name) and keys that choose the chunks of the match table ``ref``:
    its anchor side's key restriction, if it has one that can."""
    if not (ref.is_match and ref.match_narrowed):
        return None
    keys = analysis.match_keys.get(ref.alias, {}).get(ref.match_anchor)
    if keys is None:
        return None
    return ref.table.match_sides[ref.match_anchor - 1][0].lower(), keys
