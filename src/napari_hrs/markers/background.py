"""Local ring background and per-cell (per-segment) statistics.

The background of a cell is measured in a **ring** around it: the pixels whose Euclidean
distance ``d`` to the nearest pixel of the cell satisfies ``gap < d <= gap + width`` (pixels),
and that belong to no cell at all (label 0). The gap keeps the blurred edge of the cell's own
signal out of the background; excluding labelled pixels keeps a neighbour's signal out. Rings
of neighbouring cells may share background pixels.

Everything here works on *stacks of crops*: ``(N, H, W)`` arrays holding one crop per cell, so
the ring of every cell is computed at once, with whole-array numpy operations (no per-pixel or
per-cell Python loops). Per-cell statistics work on *segments*: the values of all cells
concatenated, cell after cell (the order in which a boolean mask selects them from a stack),
with the number of values of each cell.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "ring_mask",
    "ring_sqdist",
    "segment_mean_sd",
    "segment_median",
    "segment_sort",
    "segment_sum",
]


def ring_sqdist(inside: np.ndarray, radius: int, *, margin: bool = False) -> np.ndarray:
    """Squared Euclidean distance to the nearest ``inside`` pixel of the same crop, up to a radius.

    Parameters
    ----------
    inside : (N, H, W) or (H, W) bool
        ``True`` on the pixels of the cell of each crop.
    radius : int
        Largest distance of interest, in pixels. Distances ``<= radius`` are exact; larger ones
        come back as some value ``> radius**2``.
    margin : bool
        Promise that no ``inside`` pixel lies within ``radius`` of a crop edge (crops cut with
        that margin), which skips the check; otherwise such crops are padded first.

    Returns
    -------
    (N, H, W) or (H, W) uint8 / uint16 / int32 (the smallest that holds ``2 * radius**2 +
    2 * radius + 1``)
        Squared distances in pixels² (0 on the cell itself).

    Notes
    -----
    Exact separable transform (Saito & Toriwaki) truncated at the radius: the squared distance
    along X, ``gx²(y, x) = min_dx dx² [inside(y, x + dx)]``, then
    ``d²(y, x) = min_dy dy² + gx²(y + dy, x)``, both over ``|d| <= radius``: ``4 * radius``
    whole-array passes per axis on the smallest integer type. Crops never interact.
    """
    radius = int(radius)
    squeeze = inside.ndim == 2
    ins = np.asarray(inside, dtype=bool)
    if squeeze:
        ins = ins[None]
    r = radius
    if (
        r > 0
        and not margin
        and (ins[:, :r].any() or ins[:, -r:].any() or ins[:, :, :r].any() or ins[:, :, -r:].any())
    ):
        # cells closer than `radius` to a crop edge: pad so that shifts never wrap onto them
        padded = np.pad(ins, ((0, 0), (r, r), (r, r)))
        out = ring_sqdist(padded, r)[:, r:-r, r:-r]
        return out[0] if squeeze else out
    n, h, w = ins.shape
    cap2 = (r + 1) ** 2
    top = cap2 + r * r  # largest value ever computed
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.int32
    # Flat passes: shifting by d (X) or d * w (Y) wraps into the neighbouring row / crop only
    # across the `radius`-wide empty margin, which holds the capped value: nothing leaks.
    base = np.where(ins, dtype(0), dtype(cap2)).ravel()
    g2 = _min_plus_parabola(base, r, 1)  # along X, capped at (radius + 1)**2
    out = _min_plus_parabola(g2, r, w).reshape(n, h, w)  # then along Y
    return out[0] if squeeze else out


def _min_plus_parabola(a: np.ndarray, radius: int, step: int) -> np.ndarray:
    """``out[i] = min over |d| <= radius of a[i + d * step] + d**2`` on a flat array."""
    out = a.copy()
    tmp = np.empty_like(a)
    for d in range(1, radius + 1):
        k = d * step
        if k >= a.size:
            break
        off = a.dtype.type(d * d)
        np.add(a[:-k], off, out=tmp[:-k])
        np.minimum(out[k:], tmp[:-k], out=out[k:])
        np.add(a[k:], off, out=tmp[k:])
        np.minimum(out[:-k], tmp[k:], out=out[:-k])
    return out


def ring_mask(
    inside: np.ndarray, occupied: np.ndarray, gap: int, width: int, *, margin: bool = False
) -> np.ndarray:
    """The background ring of each crop: ``gap < d <= gap + width`` and not ``occupied``.

    Parameters
    ----------
    inside : (N, H, W) or (H, W) bool
        The cell of each crop.
    occupied : same shape, bool
        Pixels that can never be background: any cell (including this one) and pixels outside
        the image.
    gap, width : int
        Ring geometry in pixels: ``gap >= 0`` pixels are skipped outside the cell, then a band
        ``width >= 1`` pixels wide is taken.
    margin : bool
        See :func:`ring_sqdist`.

    Returns
    -------
    bool array of the same shape.
    """
    gap, outer = int(gap), int(gap) + int(width)
    if inside.shape[-1] <= 64:
        return _ring_mask_bits(inside, occupied, gap, outer)
    d2 = ring_sqdist(inside, outer, margin=margin)
    ring = d2 <= outer * outer
    ring &= d2 > gap * gap
    ring &= ~occupied
    return ring


def _pack_rows(mask: np.ndarray) -> np.ndarray:
    """(N, H, W <= 64) bool -> (N, H) uint64, bit j = column j."""
    packed = np.packbits(mask, axis=-1, bitorder="little")
    buf = np.zeros((*mask.shape[:-1], 8), np.uint8)
    buf[..., : packed.shape[-1]] = packed
    return buf.view("<u8")[..., 0]


def _disk_dilate_rows(rows: np.ndarray, radius: int) -> np.ndarray:
    """Dilate bit-packed rows (N, H) uint64 by a Euclidean disk of ``radius`` pixels.

    Row ``y`` of the result ORs, for every ``|dy| <= radius``, row ``y + dy`` dilated along X by
    ``isqrt(radius**2 - dy**2)``: exactly the pixels within ``radius`` of a set pixel.
    """
    h = rows.shape[1]
    horiz = [rows]  # horiz[k]: rows dilated by k pixels along X
    for k in range(1, radius + 1):
        kk = np.uint64(k)
        horiz.append(horiz[-1] | (rows << kk) | (rows >> kk))
    out = horiz[radius].copy()
    for dy in range(1, min(radius, h - 1) + 1):
        src = horiz[math.isqrt(radius * radius - dy * dy)]
        out[:, dy:] |= src[:, :-dy]
        out[:, :-dy] |= src[:, dy:]
    return out


def _ring_mask_bits(inside: np.ndarray, occupied: np.ndarray, gap: int, outer: int) -> np.ndarray:
    """:func:`ring_mask` for crops at most 64 pixels wide: one uint64 per crop row, so each
    dilation step is a whole-array shift / OR on ``N * H`` words instead of ``N * H * W``
    pixels. Exact; works for any crop (bits shifted off a row are dropped, never wrapped)."""
    squeeze = inside.ndim == 2
    if squeeze:
        inside, occupied = inside[None], occupied[None]
    w = inside.shape[-1]
    rows = _pack_rows(inside)
    ring = _disk_dilate_rows(rows, outer)
    ring &= ~(_disk_dilate_rows(rows, gap) if gap > 0 else rows)
    ring &= ~_pack_rows(occupied)
    ring = np.ascontiguousarray(ring).view(np.uint8).reshape(*ring.shape, 8)
    out = np.unpackbits(ring, axis=-1, count=w, bitorder="little").view(bool)
    return out[0] if squeeze else out


def _segment_ids(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _sorted_segments(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, Any]:
    """Values sorted within segments, possibly encoded; returns ``(array, decode)``."""
    if np.issubdtype(values.dtype, np.integer) and values.size:
        vmin = int(values.min())
        vbits = max((int(values.max()) - vmin).bit_length(), 1)
        sbits = max(int(len(counts) - 1).bit_length(), 1)
        if vbits + sbits <= 62:
            # one key per value: segment in the high bits, value - vmin in the low bits
            kt = np.uint32 if vbits + sbits <= 32 else np.int64
            if vmin == 0:
                low = values.astype(kt)
            elif values.dtype.kind == "u":
                low = (values - values.dtype.type(vmin)).astype(kt)
            else:
                low = (values.astype(np.int64) - vmin).astype(kt)
            key = np.repeat(np.arange(len(counts), dtype=kt) << kt(vbits), counts)
            key |= low
            key.sort()
            mask = kt((1 << vbits) - 1)

            def decode(k: np.ndarray) -> np.ndarray:
                return ((k & mask).astype(np.int64) + vmin).astype(values.dtype)

            return key, decode
    return values[np.lexsort((values, _segment_ids(counts)))], lambda v: v


def segment_sort(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sort the values of each segment (ascending), keeping segments in place.

    Parameters
    ----------
    values : (M,) numeric
        Segment values, concatenated segment after segment.
    counts : (N,) int
        Length of each segment; ``counts.sum() == M``.

    Returns
    -------
    (M,) array of the same dtype. Integers are sorted as one key per value (segment in the high
    bits, a uint32 key when value range and segment count fit in 32 bits, else int64), other
    types with a lexicographic sort.
    """
    values = np.asarray(values)
    counts = np.asarray(counts, dtype=np.int64)
    if values.size == 0:
        return values.copy()
    arr, decode = _sorted_segments(values, counts)
    return decode(arr)


def segment_median(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of each segment (as :func:`numpy.median`: mean of the two middle values).

    Returns ``(N,)`` float64; NaN for empty segments.
    """
    values = np.asarray(values)
    counts = np.asarray(counts, dtype=np.int64)
    out = np.full(len(counts), np.nan)
    if len(counts) == 0 or not counts.any():
        return out
    arr, decode = _sorted_segments(values, counts)
    starts = np.cumsum(counts) - counts
    ok = counts > 0
    lo = decode(arr[(starts + (counts - 1) // 2)[ok]]).astype(np.float64)
    hi = decode(arr[(starts + counts // 2)[ok]]).astype(np.float64)
    out[ok] = (lo + hi) / 2.0
    return out


def _reduce_sum(values: np.ndarray, counts: np.ndarray, dtype: type) -> np.ndarray:
    """Per-segment sums with ``np.add.reduceat`` (segments are contiguous), 0 when empty."""
    out = np.zeros(len(counts), dtype)
    ok = counts > 0
    if ok.any():
        starts = (np.cumsum(counts) - counts)[ok]
        out[ok] = np.add.reduceat(values, starts, dtype=dtype)
    return out


def segment_sum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sum of each segment as float64, 0 for empty ones.

    Integers are summed in int64 (exact), floats in float64; the order of the additions depends
    only on the segment's own values, so equal segments always give equal sums.
    """
    values = np.asarray(values)
    counts = np.asarray(counts, dtype=np.int64)
    exact = values.dtype.kind in "iub"
    return _reduce_sum(values, counts, np.int64 if exact else np.float64).astype(np.float64)


def segment_mean_sd(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (``ddof=0``) of each segment, float64; NaN when empty.

    For 8 / 16-bit integers the variance numerator ``n * sum(v**2) - sum(v)**2`` is computed
    exactly in int64; other types use two passes (squared deviations from the segment mean),
    so bright, flat backgrounds lose no precision either way.
    """
    values = np.asarray(values)
    counts = np.asarray(counts, dtype=np.int64)
    n = counts.astype(np.float64)
    small_int = values.dtype.kind in "iub" and values.dtype.itemsize <= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        if small_int and counts.max(initial=0) <= 40_000:  # n**2 * 2**32 < 2**63
            s1 = _reduce_sum(values, counts, np.int64)
            sq = values.astype(np.int64)
            sq *= sq
            s2 = _reduce_sum(sq, counts, np.int64)
            num = counts * s2 - s1 * s1
            return s1 / n, np.sqrt(num / (n * n))
        mean = _reduce_sum(values, counts, np.float64) / n
        dev = values.astype(np.float64) - np.repeat(mean, counts)
        dev *= dev
        return mean, np.sqrt(_reduce_sum(dev, counts, np.float64) / n)
