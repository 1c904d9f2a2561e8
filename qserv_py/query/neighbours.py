"""Near-neighbour joins in linear time: a grid of zones and RA buckets, joined by hash.

A near-neighbour join (``DISTANCE(o1, o2) < r`` between two instances of a director,
r no larger than the overlap) pairs, in each chunk, the chunk's rows (o1) with the
chunk's rows and its overlap (o2). Compared pair by pair that is quadratic in the chunk's
size. Instead, the worker SQL cuts the sky into *cells* — the zones of Gray & Szalay's
zones algorithm (height ``h``, a few times r), each cut into RA buckets at least as wide
as the RA half-width of an r-circle anywhere in the zone — gives each o2 row its one cell
(two numbers computed from its position) and each o1 row the cells its r-circle can reach
(usually one, at most 3 zones × 4 buckets), and joins the two on the cell: a hash join,
so linear in the rows plus the candidates, followed by the exact distance test. No index
is needed: the cells are computed in the statement, from the position columns.

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
from dataclasses import dataclass

from sqlglot import exp

#: the zone height in join radii: the cells are about ``CELL_RADII · r`` wide, so most
#: o1 rows reach one or two cells, and a cell holds few candidates even where objects
#: cluster. Measured on the 100k release at 10″ (bench/neighbours.py): 2–8 r within 30%
#: of each other, 1 r and 20 r slower (more cells per o1; more candidates per cell)
CELL_RADII = 4.0
#: a margin on the radius, so that rounding in the cell arithmetic never loses a pair
MARGIN = 1e-9
#: the smallest zone height (degrees): zone and bucket numbers stay far below 2**53
MIN_HEIGHT = 1e-6
#: the largest: with fewer zones than this a whole-sky self-join compares almost all pairs
MAX_HEIGHT = 30.0
#: the alias of the o1 cells in worker SQL
CELLS_ALIAS = "qserv_nn"


def _f(value: float) -> str:
    """A double precision literal (a bare ``0.5`` is numeric in PostgreSQL: slow)."""
    return f"CAST({value!r} AS DOUBLE PRECISION)"


@dataclass(frozen=True)
class Cells:
    """The cell grid of a join radius ``radius`` (degrees)."""

    radius: float
    h: float  # zone height (degrees)
    zones: int

    @classmethod
    def for_radius(cls, radius: float) -> Cells:
        h = min(max(CELL_RADII * max(radius, 0.0), MIN_HEIGHT), MAX_HEIGHT)
        return cls(radius, h, max(int(180 // h), 1))

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

    def cells_sql(self, ra: str, dec: str) -> str:
        """A LATERAL subquery of the cells (z, b) that the r-circle around (ra, dec) meets.

        Each level is kept apart (OFFSET 0) so that PostgreSQL computes each value once
        per row instead of inlining the expressions into every use."""
        r = _f(self.reach)
        zones = (
            f"SELECT CAST({self.zone(f'{dec} - {r}')} + d.dz AS DOUBLE PRECISION) AS z "
            f"FROM (VALUES (0), (1), (2)) AS d(dz) "
            f"WHERE {self.zone(f'{dec} - {r}')} + d.dz <= {self.zone(f'{dec} + {r}')} OFFSET 0"
        )
        counted = f"SELECT a.z, {self.buckets('a.z')} AS n FROM ({zones}) AS a OFFSET 0"
        alpha = f"LEAST({self.reach_ra(dec)}, 360 / b.n)"
        lo = self.bucket(f"({ra} - {alpha})", "b.n")
        hi = self.bucket(f"({ra} + {alpha})", "b.n")
        ranged = (
            f"SELECT b.z, b.n, CASE WHEN b.n <= 3 THEN 0 ELSE {lo} END AS lo, "
            f"CASE WHEN b.n <= 3 THEN b.n ELSE MOD(CAST({hi} - {lo} + b.n AS BIGINT), "
            f"CAST(b.n AS BIGINT)) + 1 END AS k FROM ({counted}) AS b OFFSET 0"
        )
        return (
            "SELECT CAST(c.z AS BIGINT) AS z, "
            "MOD(CAST(c.lo AS BIGINT) + j.j, CAST(c.n AS BIGINT)) AS b "
            f"FROM ({ranged}) AS c CROSS JOIN (VALUES (0), (1), (2), (3)) AS j(j) "
            "WHERE j.j < c.k OFFSET 0"
        )

    def cell_match(self, alias: str, ra: str, dec: str) -> str:
        """The o2 row at (ra, dec) is in the cell ``alias`` (z, b)."""
        zone = self.zone(dec)
        return (
            f"{alias}.z = CAST({zone} AS BIGINT) AND "
            f"{alias}.b = CAST({self.bucket(ra, f'({self.buckets(zone)})')} AS BIGINT)"
        )


def cell_join(
    select: exp.Select,
    first: str,
    first_pos: tuple[str, str],
    second: tuple[str, str, str],
    radius: float,
) -> exp.Expression:
    """Join the cells of ``first`` (alias; its ra, dec columns) right after it in the FROM
    of ``select``; return the condition that matches ``second`` (alias, ra, dec) to them.

    >>> import sqlglot
    >>> s = sqlglot.parse_one("SELECT 1 FROM t AS o1, t AS o2", read="postgres")
    >>> cond = cell_join(s, "o1", ("ra", "dec"), ("o2", "ra", "dec"), 1 / 3600)
    >>> [j.this.sql()[:22] for j in s.args["joins"]]
    ['LATERAL (SELECT CAST(c', 't AS o2']
    >>> cond.sql()[:27]
    'qserv_nn.z = CAST(LEAST(GRE'
    """
    cells = Cells.for_radius(radius)
    ra, dec = (exp.column(c, first).sql(dialect="postgres") for c in first_pos)
    alias, ra2, dec2 = second
    lateral: exp.Expression = exp.maybe_parse(
        f"SELECT 1 FROM t CROSS JOIN LATERAL ({cells.cells_sql(ra, dec)}) AS {CELLS_ALIAS}",
        dialect="postgres",
    ).args["joins"][0]
    sources = [select.args["from_"].this] + [j.this for j in select.args.get("joins") or []]
    position = next(i for i, s in enumerate(sources) if s.alias_or_name == first)
    joins = list(select.args.get("joins") or [])
    joins.insert(position, lateral)
    select.set("joins", joins)
    o2 = (exp.column(c, alias).sql(dialect="postgres") for c in (ra2, dec2))
    return exp.maybe_parse(cells.cell_match(CELLS_ALIAS, *o2), dialect="postgres")
