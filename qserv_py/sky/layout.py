"""A catalog's sky layout: disjoint HEALPix pixels (chunks) that cover the whole sky.

The loader builds it once per catalog, from a first pass over the director's positions.
It is *adaptive* (as HATS/LSDB do): starting from every pixel of ``min_order``, a pixel
that holds more than ``max_rows_per_chunk`` rows is split into its four children, down
to ``max_order``. Or it is *fixed*: every pixel of one order. Empty pixels stay chunks
too, so a later load always finds a chunk for every position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qserv_py.sky.healpix import ORDER, IntArray, index_range, nuniq, order_ipix

DEFAULT_MAX_ROWS_PER_CHUNK = 1_000_000
DEFAULT_MIN_ORDER = 1
DEFAULT_MAX_ORDER = 10


@dataclass(frozen=True, eq=False)
class Layout:
    """Chunks sorted by the start of their spatial_index range."""

    uniq: IntArray  # NUNIQ ids
    lo: IntArray  # first spatial_index of each chunk
    hi: IntArray  # one past the last

    @classmethod
    def from_chunks(cls, chunks: IntArray | list[int]) -> Layout:
        """The layout made of these NUNIQ chunks; ValueError unless they tile the sky."""
        uniq = np.asarray(chunks, dtype=np.int64)
        lo, hi = index_range(uniq)
        order = np.argsort(lo, kind="stable")
        uniq, lo, hi = uniq[order], lo[order], hi[order]
        full = np.int64(12) << (2 * ORDER)
        if len(uniq) == 0 or lo[0] != 0 or hi[-1] != full or np.any(lo[1:] != hi[:-1]):
            raise ValueError("the chunks do not tile the sky exactly once")
        return cls(uniq, lo, hi)

    @classmethod
    def fixed(cls, order: int) -> Layout:
        """Every pixel of ``order``."""
        _check_order(order)
        return cls.from_chunks(nuniq(order, np.arange(12 * 4**order, dtype=np.int64)))

    @classmethod
    def adaptive(
        cls,
        counts: PixelCounts,
        max_rows_per_chunk: int = DEFAULT_MAX_ROWS_PER_CHUNK,
        min_order: int = DEFAULT_MIN_ORDER,
        max_order: int = DEFAULT_MAX_ORDER,
    ) -> Layout:
        """Split pixels holding more than ``max_rows_per_chunk`` rows, from ``min_order``
        down to ``max_order`` (``counts`` must be at ``max_order`` or finer)."""
        _check_order(min_order)
        _check_order(max_order)
        if not min_order <= max_order <= counts.order:
            raise ValueError(
                f"need min_order ({min_order}) <= max_order ({max_order}) <= the order of "
                f"the counts ({counts.order})"
            )
        if max_rows_per_chunk < 1:
            raise ValueError("max_rows_per_chunk must be at least 1")
        ipix = np.arange(12 * 4**min_order, dtype=np.int64)
        chunks = []
        for order in range(min_order, max_order + 1):
            shift = 2 * (counts.order - order)
            rows = counts.rows_in(ipix << shift, (ipix + 1) << shift)
            split = (rows > max_rows_per_chunk) & (order < max_order)
            chunks.append(nuniq(order, ipix[~split]))
            ipix = ((ipix[split] << 2)[:, None] + np.arange(4, dtype=np.int64)).ravel()
        return cls.from_chunks(np.concatenate(chunks))

    def __len__(self) -> int:
        return len(self.uniq)

    @property
    def orders(self) -> IntArray:
        return order_ipix(self.uniq)[0]

    def chunk_of(self, index: IntArray) -> IntArray:
        """The chunk (NUNIQ) holding each spatial_index."""
        pos = np.searchsorted(self.lo, np.asarray(index, dtype=np.int64), side="right") - 1
        return self.uniq[pos]

    def chunks_overlapping(self, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
        """For each half-open spatial_index range [lo, hi), the chunks it touches.

        Returns (range number, chunk) pairs.
        """
        lo = np.asarray(lo, dtype=np.int64)
        hi = np.asarray(hi, dtype=np.int64)
        first = np.searchsorted(self.lo, lo, side="right") - 1
        last = np.searchsorted(self.lo, hi - 1, side="right") - 1
        n = last - first + 1
        which = np.repeat(np.arange(len(lo)), n)
        offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        return which, self.uniq[np.repeat(first, n) + offsets]


class PixelCounts:
    """Rows per pixel at one order, accumulated batch by batch in bounded memory.

    Counts start sparse (non-empty pixels and their counts). Up to order 10 (12.6M
    pixels), once more than ``SPARSE_MAX_PIXELS`` pixels are non-empty, they become one
    dense array: a fixed 100 MB at most, whatever the number of rows. Finer orders stay
    sparse, growing with the number of non-empty pixels. (Dense from the start, a load
    of a few rows paid for zeroing and summing the whole array.)
    """

    DENSE_MAX_ORDER = 10
    SPARSE_MAX_PIXELS = 1 << 20

    def __init__(self, order: int) -> None:
        _check_order(order)
        self.order = order
        self._dense: IntArray | None = None
        self._pixels = np.empty(0, np.int64)
        self._counts = np.empty(0, np.int64)
        self._pending: list[tuple[IntArray, IntArray]] = []
        self._pending_len = 0
        self._cumulative: IntArray | None = None

    def add(self, index: IntArray) -> None:
        """Count spatial_index values (order 29)."""
        pix, cnt = np.unique(
            np.asarray(index, np.int64) >> (2 * (ORDER - self.order)), return_counts=True
        )
        if self._dense is not None:
            self._dense[pix] += cnt
            self._cumulative = None
            return
        self._pending.append((pix, cnt))
        self._pending_len += len(pix)
        if self._pending_len > max(len(self._pixels), 1 << 20):
            self._merge()
            if self.order <= self.DENSE_MAX_ORDER and len(self._pixels) > self.SPARSE_MAX_PIXELS:
                self._dense = np.zeros(12 * 4**self.order, dtype=np.int64)
                self._dense[self._pixels] = self._counts

    def _merge(self) -> None:
        if self._dense is not None:
            self._pixels = np.flatnonzero(self._dense).astype(np.int64)
            self._counts = self._dense[self._pixels]
            return
        if not self._pending:
            return
        merged = np.concatenate([self._pixels, *(p for p, _ in self._pending)])
        weights = np.concatenate([self._counts, *(c for _, c in self._pending)])
        self._pixels, inverse = np.unique(merged, return_inverse=True)
        self._counts = np.bincount(inverse, weights=weights).astype(np.int64)
        self._pending, self._pending_len = [], 0

    @property
    def pixels(self) -> IntArray:
        """The non-empty pixels, sorted."""
        self._merge()
        return self._pixels

    @property
    def counts(self) -> IntArray:
        """Rows in each of ``pixels``."""
        self._merge()
        return self._counts

    @property
    def total(self) -> int:
        return int(self._dense.sum()) if self._dense is not None else int(self.counts.sum())

    def rows_in(self, lo: IntArray, hi: IntArray) -> IntArray:
        """Rows in each half-open range [lo, hi) of pixels at this order (memory bounded
        by the pixel count of the order, not by the rows or the non-empty pixels)."""
        if self._dense is not None:
            if self._cumulative is None:
                self._cumulative = np.concatenate([[0], np.cumsum(self._dense)])
            return self._cumulative[hi] - self._cumulative[lo]
        cum = np.concatenate([[0], np.cumsum(self.counts)])
        return cum[np.searchsorted(self.pixels, hi)] - cum[np.searchsorted(self.pixels, lo)]


def _check_order(order: int) -> None:
    if not 0 <= order <= ORDER:
        raise ValueError(f"HEALPix order {order} is outside 0..{ORDER}")
