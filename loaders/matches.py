"""Placing the rows of a match table (Qserv's match tables): each row relates a row of
director 1 and a row of director 2 by their keys, and is stored in the chunk of each of
them, as Qserv's partitioner stores it.

A copy's ``match_flags`` say which side placed it there: bit 1 (:data:`FLAG_FIRST`) the
director-1 row is in this chunk, bit 2 (:data:`FLAG_SECOND`) the director-2 row is; when
both are in one chunk the row is stored once with both bits. Bit 4
(:data:`FLAG_PRIMARY`) marks the one copy that a query of the match table alone reads:
the copy in director 1's chunk, or the director-2 copy when the row names no director-1
row. Qserv's czar deduplicates with ``dirCol1 IS NULL OR flag <> 2``; the primary bit
says the same and also covers a key the operator let through unknown.

Chunks come from the director indexes (key → chunk, spatial_index). A key that no
director row has is refused, naming a few, unless the load allows unknown keys (the
row is then placed by its other side only; a row with no known side is refused). The
two rows of a match in different chunks must be within the catalog's overlap of each
other: a join director₁ ⋈ match ⋈ director₂ reads the far side from the chunk's
overlap, so a wider pair would be missed; such rows are refused too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from qserv_py.schema.ddl import dirindex_table
from qserv_py.schema.model import (
    FLAG_FIRST,
    FLAG_PRIMARY,
    FLAG_SECOND,
    Catalog,
    Table,
    TableKind,
)
from qserv_py.sky.healpix import ORDER, angular_separation

#: examples named in a refusal
EXAMPLES = 5


@dataclass
class _Side:
    """One side of the match table: its director and key column."""

    director: str
    key: str
    dirindex: str
    unknown: int = 0
    examples: list[int] = field(default_factory=list)


@dataclass
class Placed:
    """The copies of a batch's rows: which row each copy is, and its chunk, spatial_index
    and flags."""

    rows: np.ndarray
    chunk: np.ndarray
    index: np.ndarray
    flags: np.ndarray


class MatchPlacer:
    """Places the batches of one load of a match table; collects what is wrong."""

    def __init__(self, catalog: Catalog, table: Table, *, allow_unknown: bool) -> None:
        assert table.kind is TableKind.MATCH
        self.table = table
        self.overlap_deg = catalog.overlap_arcsec / 3600
        self.allow_unknown = allow_unknown
        self.sides = [
            _Side(director, key, dirindex_table(catalog.name, director))
            for director, key in table.match_sides
        ]
        self.unplaced = 0  # rows with no known side
        self.unplaced_rows: list[int] = []
        self.too_far = 0  # rows whose two sides are farther apart than the overlap
        self.too_far_examples: list[tuple[int, int, float]] = []
        self.seen = 0

    def place(self, czar: psycopg.Connection, batch: pa.Table) -> Placed:
        """The copies of ``batch``'s rows (none once something is wrong: the load fails
        at the end, and only the counting goes on)."""
        n = batch.num_rows
        looked = [self._lookup(czar, side, batch) for side in self.sides]
        (k1, c1, i1, ok1), (k2, c2, i2, ok2) = looked
        neither = ~ok1 & ~ok2
        if neither.any():
            self.unplaced += int(neither.sum())
            first = self.seen + np.flatnonzero(neither)[: EXAMPLES - len(self.unplaced_rows)]
            self.unplaced_rows += [int(r) + 1 for r in first]
        both = ok1 & ok2 & (c1 != c2)
        if both.any():
            far = self._far(i1[both], i2[both])
            if far.any():
                self.too_far += int(far.sum())
                rows = np.flatnonzero(both)[far]
                seps = angular_separation(*_centres(i1[rows]), *_centres(i2[rows])) * 3600
                for row, sep in zip(rows.tolist(), seps.tolist(), strict=True):
                    if len(self.too_far_examples) < EXAMPLES:
                        self.too_far_examples.append((int(k1[row]), int(k2[row]), sep))
        self.seen += n
        if self.failed:
            empty = np.empty(0, np.int64)
            return Placed(empty, empty, empty, np.empty(0, np.int16))
        same = ok1 & ok2 & (c1 == c2)
        # copy 1: in director 1's chunk (primary); copy 2: in director 2's chunk, unless
        # that is the same chunk
        rows1 = np.flatnonzero(ok1)
        flags1 = FLAG_FIRST | FLAG_PRIMARY | np.where(same[rows1], FLAG_SECOND, 0)
        rows2 = np.flatnonzero(ok2 & ~same)
        flags2 = FLAG_SECOND | np.where(ok1[rows2], 0, FLAG_PRIMARY)
        return Placed(
            np.concatenate([rows1, rows2]),
            np.concatenate([c1[rows1], c2[rows2]]),
            np.concatenate([i1[rows1], i2[rows2]]),
            np.concatenate([flags1, flags2]).astype(np.int16),
        )

    def _lookup(
        self, czar: psycopg.Connection, side: _Side, batch: pa.Table
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Key, chunk, spatial_index of each row's side, and whether it is known (a NULL
        key is no side; an unknown key is counted, or with the option no side)."""
        column = batch.column(side.key.lower())
        present = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)
        keys = np.asarray(pc.fill_null(column, 0).to_numpy(zero_copy_only=False), np.int64)
        n = len(keys)
        chunk, index = np.zeros(n, np.int64), np.zeros(n, np.int64)
        wanted = np.unique(keys[present])
        found = np.array(
            czar.execute(
                f"SELECT key, chunk_id, spatial_index FROM {side.dirindex}"
                " WHERE key = ANY(%s) ORDER BY key",
                (wanted.tolist(),),
            ).fetchall()
            if len(wanted)
            else [],
            dtype=np.int64,
        ).reshape(-1, 3)
        known = np.zeros(n, dtype=bool)
        if len(found):
            pos = np.minimum(np.searchsorted(found[:, 0], keys), len(found) - 1)
            known = present & (found[pos, 0] == keys)
            chunk[known], index[known] = found[pos[known], 1], found[pos[known], 2]
        unknown = present & ~known
        if unknown.any():
            side.unknown += int(unknown.sum())
            missing = np.unique(keys[unknown])[:EXAMPLES].tolist()
            side.examples = sorted({*side.examples, *missing})[:EXAMPLES]
        return keys, chunk, index, known

    def _far(self, index1: np.ndarray, index2: np.ndarray) -> np.ndarray:
        """Which pairs are farther apart than the overlap (by their order-29 pixel
        centres: within a milliarcsecond, where the overlap copies reach arcseconds
        beyond the overlap radius; see qserv_py.sky.overlap)."""
        sep = angular_separation(*_centres(index1), *_centres(index2))
        return np.asarray(sep > self.overlap_deg, dtype=bool)

    @property
    def failed(self) -> bool:
        unknown = any(s.unknown for s in self.sides) and not self.allow_unknown
        return bool(unknown or self.unplaced or self.too_far)

    def problems(self) -> list[str]:
        """What is wrong with the rows seen, each saying what to do."""
        name = self.table.name
        found = []
        if not self.allow_unknown:
            for side in self.sides:
                if side.unknown:
                    found.append(
                        f"{side.unknown} rows of {name} have a {side.key} that is not in "
                        f"{side.director} (e.g. {', '.join(map(str, side.examples))}); load "
                        f"those {side.director} rows first, fix the input, or load with "
                        "allow_unknown_match_keys (CLI --allow-unknown-match-keys) to place "
                        "such rows by their other side only"
                    )
        if self.unplaced:
            keys = " and ".join(s.key for s in self.sides)
            found.append(
                f"{self.unplaced} rows of {name} name no known row on either side "
                f"(rows {', '.join(map(str, self.unplaced_rows))} of the input: {keys} NULL "
                "or unknown); a match row needs at least one director row to place it"
            )
        if self.too_far:
            one, two = (s.key for s in self.sides)
            pairs = self.too_far_examples
            shown = ", ".join(f"{one}={a} {two}={b} ({s:.1f}″)" for a, b, s in pairs)
            found.append(
                f"{self.too_far} rows of {name} relate rows farther apart than the overlap "
                f"of the catalog ({self.overlap_deg * 3600:g}″; e.g. {shown}): a join "
                "through the match table reads the far row from the chunk's overlap and "
                "would miss them; drop those matches, or create the catalog with a larger "
                "qserv:overlap"
            )
        return found


def _centres(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec (degrees) of the centres of order-29 pixels."""
    from cdshealpix import nested

    lon, lat = nested.healpix_to_lonlat(np.asarray(index).astype(np.uint64), ORDER, num_threads=0)
    return np.asarray(lon.deg), np.asarray(lat.deg)
