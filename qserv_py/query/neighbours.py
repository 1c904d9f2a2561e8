"""Near-neighbour joins in linear time: a grid of zones and RA buckets, joined by hash.

A near-neighbour join (``DISTANCE(o1, o2) < r`` between two instances of a director,
r no larger than the overlap) pairs, in each chunk, the chunk's rows (o1) with the
chunk's rows and its overlap (o2). Compared pair by pair that is quadratic in the chunk's
size. Instead, the worker SQL cuts the sky into *cells* — the zones of Gray & Szalay's
zones algorithm (height ``h``, a few times r), each cut into RA buckets at least as wide
as the RA half-width of an r-circle anywhere in the zone — gives each o2 row its one cell
(a key computed from its position) and each o1 row one row per cell its r-circle can
reach (usually one or two, at most 2 zones × 3 buckets), and joins the two on the cell
key: a hash or merge join, so linear in the rows plus the candidates (n log n for a
sort), followed by the exact distance test. No index is needed: the cells are computed
in the statement, from the position columns, so any radius up to the overlap works on
the data as loaded. o1 becomes a derived table of the columns the query reads from it
(its own restrictions, e.g. a cone's spatial_index ranges, applied inside first).

Exact at every edge, by construction (each bound is loose, never tight):

- zones: ``z(dec) = floor((dec + 90) / h)`` clamped to ``[0, nz - 1]`` (the last zone
  reaches the pole). If ``|o1 o2| <= r`` then ``|dec2 - dec1| <= r``, so by monotonicity
  ``z(dec2)`` lies in ``[z(dec1 - r'), z(dec1 + r')]`` (``r' > r``, a margin for rounding);
- buckets: zone z (largest ``|dec|`` in it: D) has ``n(z)`` buckets of RA, each at least
  ``8100 sin h / (90 - D)`` degrees wide — a bound of the RA half-width
  ``asin(sin h / cos D)`` of an h-circle whose centre is in the zone (Jordan's inequality
  twice, ``cos D >= (90 - D) / 90`` and ``asin x <= 90 x`` degrees) — and one bucket where
  ``D + h >= 90`` (a circle there can contain the pole). So an o1 within r of an o2 of
  zone z is at most one bucket width away from it in RA (across 0/360 too: buckets are
  taken modulo n);
- o1's reach in RA: ``alpha = 8100 sin r' / (90 - |dec1|)`` (all of it where the circle
  can contain the pole), capped at the bucket width; its buckets are those from
  ``bucket(ra1 - alpha)`` to ``bucket(ra1 + alpha)`` modulo n (all of them when n <= 3).

An o1's cells are distinct and an o2 has one, so every pair within r is found exactly
once. Chunk borders are the overlap's business, unchanged: o1 reads the chunk, o2 the
chunk and its overlap.

>>> cells = Cells.for_radius(10 / 3600)
>>> round(cells.h * 3600, 6), cells.zones
(40.0, 16199)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from qserv_py.query.render import to_postgres

#: the zone height in join radii: the cells are about ``CELL_RADII · r`` wide, so most
#: o1 rows reach one or two cells (and never more than two zones: h > 2r'), and a cell
#: holds few candidates even where objects cluster. Tried on two chunks of the 100k
#: release at 10″: 1 r clearly slower (up to 9 cells per o1), 2–8 r alike within this
#: machine's noise, 20 r and more slower in clustered chunks (candidates per cell)
CELL_RADII = 4.0
#: a margin on the radius, so that rounding in the cell arithmetic never loses a pair
MARGIN = 1e-9
#: the smallest zone height (degrees): zone and bucket numbers stay far below 2**53
MIN_HEIGHT = 1e-6
#: the column of o1's cells in worker SQL
CELL = "qserv_cell"
#: the column of o2's cell in worker SQL
CELL2 = "qserv_cell2"
CHUNK_ID = "chunk_id"
#: the planner settings of a statement with a cell join. PostgreSQL takes o1's cells for
#: ten rows an object (an unnest's default) where there are about two, and then often
#: sorts both sides for a merge join; a hash join on the cell (the other side's ~15k rows
#: a chunk in memory) is 20-25 % faster on the 100k-object release (bench/neighbours.py)
CELL_JOIN_SETTINGS = (("enable_mergejoin", "off"),)


def _f(value: float) -> str:
    """A double precision literal (a bare ``0.5`` is numeric in PostgreSQL: slow)."""
    return f"CAST({value!r} AS DOUBLE PRECISION)"


@dataclass(frozen=True)
class Cells:
    """The cell grid of a join radius ``radius`` (degrees)."""

    radius: float
    h: float  # zone height (degrees)
    zones: int
    ra: str = "ra"  # the position columns of the o1 table
    dec: str = "dec"

    @classmethod
    def for_radius(cls, radius: float, ra: str = "ra", dec: str = "dec") -> Cells:
        h = max(CELL_RADII * max(radius, 0.0), MIN_HEIGHT)
        return cls(radius, h, max(int(180 // h), 1), ra, dec)

    @property
    def reach(self) -> float:
        """The radius with its margin (r')."""
        return max(self.radius, 0.0) * (1 + MARGIN) + MARGIN

    def zone(self, dec: str) -> str:
        return f"LEAST(GREATEST(FLOOR(({dec} + 90) / {_f(self.h)}), 0), {_f(self.zones - 1)})"

    def _abs_dec(self, zone: str) -> str:
        """The largest |dec| in ``zone``."""
        last, h = _f(self.zones - 1), _f(self.h)
        top = f"CASE WHEN {zone} >= {last} THEN 90 ELSE ABS(({zone} + 1) * {h} - 90) END"
        return f"GREATEST(ABS({zone} * {h} - 90), {top})"

    def buckets(self, zone: str) -> str:
        """The number of RA buckets of ``zone`` (double precision, a whole number)."""
        d = self._abs_dec(zone)
        scale = 360 / (8100 * math.sin(math.radians(self.h)))
        return (
            f"CASE WHEN {d} + {_f(self.h)} >= 90 THEN CAST(1 AS DOUBLE PRECISION) "
            f"ELSE GREATEST(FLOOR((90 - {d}) * {_f(scale)}), 1) END"
        )

    @staticmethod
    def bucket(ra: str, n: str) -> str:
        """The bucket of RA ``ra`` (any value: taken modulo 360) among ``n``."""
        return f"LEAST(FLOOR(({ra} - 360 * FLOOR({ra} / 360)) * {n} / 360), {n} - 1)"

    def reach_ra(self, dec: str) -> str:
        """A bound of the RA half-width of the r'-circle around a point at ``dec``."""
        r = self.reach
        return (
            f"CASE WHEN ABS({dec}) + {_f(r)} >= 90 THEN CAST(180 AS DOUBLE PRECISION) "
            f"ELSE {_f(8100 * math.sin(math.radians(min(r, 90.0))))} / (90 - ABS({dec})) END"
        )

    def key_scale(self) -> int:
        """The factor of the zone in a cell's key ``zone * scale + bucket`` (more than any
        zone's buckets; not a power of two, whose keys PostgreSQL's int8 hash folds)."""
        return int(90 * 360 / (8100 * math.sin(math.radians(self.h)))) + 3

    def cells_sql(self, source: str, columns: list[str], where: str | None) -> str:
        """The rows of ``source`` with the cells their r-circles meet: ``columns``, and
        one row per cell with its key ``qserv_cell`` (NULL in the rows of unreached ones).

        Set-level steps, each kept apart (OFFSET 0) so that PostgreSQL computes each
        value once per row (not inlined into every use), with narrow rows: the zones
        reached (at most two: the zone height is more than 2r'), their bucket counts, the
        buckets of o1's westmost and eastmost reach in each, the first bucket and the
        bucket count reached in each, then the keys of the (at most six) cells,
        unnested."""
        r = _f(self.reach)
        cols = ", ".join(f"t.{c}" for c in columns)
        first = (
            f"SELECT {cols}, {self.zone(f't.{self.dec} - {r}')} AS qz, "
            f"{self.zone(f't.{self.dec} + {r}')} AS qz_hi, {self.reach_ra(f't.{self.dec}')} AS qa "
            f"FROM {source} AS t" + (f" WHERE {where}" if where else "") + " OFFSET 0"
        )
        counted = (
            f"SELECT t.*, {self.buckets('t.qz')} AS qn0, {self.buckets('(t.qz + 1)')} AS qn1 "
            f"FROM ({first}) AS t OFFSET 0"
        )

        def edge(z: int, sign: str) -> str:  # the bucket of ra -/+ o1's reach, in zone z
            n = f"t.qn{z}"
            return self.bucket(f"(t.{self.ra} {sign} LEAST(t.qa, 360 / {n}))", n)

        edged = (
            f"SELECT t.*, {edge(0, '-')} AS qb0, {edge(0, '+')} AS qe0, "
            f"{edge(1, '-')} AS qb1, {edge(1, '+')} AS qe1 FROM ({counted}) AS t OFFSET 0"
        )

        def reached(z: int) -> str:
            n = f"t.qn{z}"
            return (
                f"CASE WHEN {n} <= 3 THEN {n} ELSE "
                f"MOD(CAST(t.qe{z} - t.qb{z} + {n} AS BIGINT), CAST({n} AS BIGINT)) + 1 END"
            )

        ranged = (
            f"SELECT t.*, CASE WHEN t.qn0 <= 3 THEN 0 ELSE t.qb0 END AS qlo0, "
            f"{reached(0)} AS qk0, "
            f"CASE WHEN t.qn1 <= 3 THEN 0 ELSE t.qb1 END AS qlo1, "
            f"CASE WHEN t.qz_hi > t.qz THEN {reached(1)} ELSE 0 END AS qk1 "
            f"FROM ({edged}) AS t OFFSET 0"
        )
        scale = self.key_scale()
        keys = ", ".join(
            f"CASE WHEN t.qk{z} > {j} THEN CAST(t.qz + {z} AS BIGINT) * {scale} "
            f"+ MOD(CAST(t.qlo{z} AS BIGINT) + {j}, CAST(t.qn{z} AS BIGINT)) END"
            for z in (0, 1)
            for j in range(3)
        )
        cells = f"UNNEST(ARRAY_REMOVE(ARRAY[{keys}], NULL))"
        return f"SELECT {cols}, {cells} AS {CELL} FROM ({ranged}) AS t"

    def keyed_sql(self, source: str, columns: list[str], where: str | None) -> str:
        """The rows of ``source`` (the o2 side) with the key of their one cell,
        ``qserv_cell2``: ``columns`` and the key. Like :meth:`cells_sql`, in steps kept
        apart (OFFSET 0), so that the zone and its bucket count are computed once a row
        (written as one expression, :meth:`cell_key`, PostgreSQL computes the zone nine
        times: 30 % of a 15k-object chunk's statement)."""
        cols = ", ".join(f"t.{c}" for c in columns)
        zoned = (
            f"SELECT {cols}, {self.zone(f't.{self.dec}')} AS qz FROM {source} AS t"
            + (f" WHERE {where}" if where else "")
            + " OFFSET 0"
        )
        counted = f"SELECT t.*, {self.buckets('t.qz')} AS qn FROM ({zoned}) AS t OFFSET 0"
        bucket = self.bucket(f"t.{self.ra}", "t.qn")
        return (
            f"SELECT {cols}, CAST(t.qz AS BIGINT) * {self.key_scale()} + CAST({bucket} AS"
            f" BIGINT) AS {CELL2} FROM ({counted}) AS t"
        )

    def cell_key(self, ra: str, dec: str) -> str:
        """The key of the cell of the point (ra, dec)."""
        zone = self.zone(dec)
        bucket = self.bucket(ra, f"({self.buckets(zone)})")
        return f"CAST({zone} AS BIGINT) * {self.key_scale()} + CAST({bucket} AS BIGINT)"


def cell_join(
    select: exp.Select,
    first: str,
    first_pos: tuple[str, str],
    second: tuple[str, str, str],
    radius: float,
    restrictions: Sequence[exp.Expr] = (),
    second_restrictions: Sequence[exp.Expr] = (),
    elsewhere: Sequence[exp.Expr] = (),
    *,
    chunk_column: bool = True,
) -> exp.Expression:
    """Read ``first`` (alias; its ra, dec columns), a chunk partition in ``select``, with
    the cells its rows reach (see :meth:`Cells.cells_sql`), and ``second`` (alias, ra,
    dec) with the key of its rows' cell (:meth:`Cells.keyed_sql`): each side only the
    columns the query uses (in ``select`` and in ``elsewhere``, conditions still to be
    added to it), and its own ``restrictions`` (e.g. its spatial_index ranges) copied
    inside, so that only its rows in the region get cells; and ``chunk_id`` when
    ``chunk_column`` (a statement of several chunks matches the sides' chunks too). Return
    the condition that matches the two.

    >>> import sqlglot
    >>> s = sqlglot.parse_one("SELECT t1.id FROM c.t AS t1, c.t AS t2", read="postgres")
    >>> cond = cell_join(s, "t1", ("ra", "dec"), ("t2", "ra", "dec"), 1 / 3600)
    >>> s.sql("postgres")[:68]
    'SELECT t1.id FROM (SELECT t.id, t.ra, t.dec, t.chunk_id, UNNEST(ARRA'
    >>> cond.sql()
    't1.qserv_cell = t2.qserv_cell2'
    """
    alias, ra2, dec2 = second
    cells = Cells.for_radius(radius, *first_pos)
    extra = (CHUNK_ID,) if chunk_column else ()
    body = cells.cells_sql(
        *_side(select, first, (*first_pos, *extra), restrictions, elsewhere, CELL)
    )
    _replace(select, first, body)
    keyed = Cells.for_radius(radius, ra2, dec2)
    second_side = _side(select, alias, (ra2, dec2, *extra), second_restrictions, elsewhere, CELL2)
    _replace(select, alias, keyed.keyed_sql(*second_side))
    return exp.maybe_parse(f"{first}.{CELL} = {alias}.{CELL2}", dialect="postgres")


def _side(
    select: exp.Select,
    alias: str,
    needed: tuple[str, ...],
    restrictions: Sequence[exp.Expr],
    elsewhere: Sequence[exp.Expr],
    made: str,
) -> tuple[str, list[str], str]:
    """(source, columns, where) of one side of a cell join: the table or subquery read
    as ``alias``, the columns of it that the query reads and the ``needed`` ones (its
    position, maybe chunk_id), its own restrictions."""
    node = next(s for s in _sources(select) if s.alias_or_name == alias)
    table = node.copy()
    table.set("alias", None)
    used = {c.name for c in select.find_all(exp.Column) if c.table == alias}
    for condition in (*restrictions, *elsewhere):
        used |= {c.name for c in condition.find_all(exp.Column) if c.table == alias}
    columns = sorted(used - {made}) + [c for c in needed if c not in used]
    inner = [r.copy() for r in restrictions]
    for restriction in inner:
        for column in restriction.find_all(exp.Column):
            column.set("table", exp.to_identifier("t"))
    where = " AND ".join(
        f"({to_postgres(r, written_out=True)})" for r in inner if isinstance(r, exp.Expression)
    )
    return (
        table.sql(dialect="postgres"),
        [exp.to_identifier(c).sql("postgres") for c in columns],
        where,
    )


def _replace(select: exp.Select, alias: str, body: str) -> None:
    node = next(s for s in _sources(select) if s.alias_or_name == alias)
    node.replace(
        exp.Subquery(
            this=exp.maybe_parse(body, dialect="postgres"),
            alias=exp.TableAlias(this=exp.to_identifier(alias)),
        )
    )


def _sources(select: exp.Select) -> list[exp.Expression]:
    return [select.args["from_"].this] + [j.this for j in select.args.get("joins") or []]


def worker_settings(worker_sql: str) -> tuple[tuple[str, str], ...]:
    """The planner settings of a plan's worker statements: :data:`CELL_JOIN_SETTINGS`
    when they join cells, else none."""
    return CELL_JOIN_SETTINGS if CELL in worker_sql else ()
