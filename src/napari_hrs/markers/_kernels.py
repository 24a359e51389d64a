"""Compiled (numba) per-cell kernels for :mod:`napari_hrs.markers.quantify`.

One region (a (H, W) labels array padded with -1 outside the image, and its channels) holds the
crops of many cells; each crop is the cell's bounding box plus the ring radius. Two kernels
measure them:

- :func:`cell_geometry` scans each crop once: the cell's pixels (area, sums of rows and
  columns, their flat offsets in the region) as runs per row, then its background ring, the
  pixels whose Euclidean distance ``d`` to the cell satisfies ``gap < d <= gap + width`` and
  whose label is 0. ``d <= r`` holds exactly when some cell pixel lies within the disk of
  radius ``r``: row ``y`` is covered by the runs of rows ``y + dy`` widened by
  ``isqrt(r**2 - dy**2)``. For row-convex cells (one run per row, 8-connected rows: nearly
  all) that union is one interval per row; otherwise it is counted with difference arrays.
  The cost is per run and per ring pixel, not per disk offset.
- :func:`channel_stats` gathers one channel's values through those offsets and gives, per
  cell, the sum, median (numpy's: mean of the two middle values), and the ring's median, mean
  and standard deviation (``ddof=0``; exact integer arithmetic for <= 16-bit integers, two
  passes in float64 otherwise).

The ring is that of the docs (docs/markers.md): the background pixels within ``gap + width``
pixels but farther than ``gap`` from the cell; rings of neighbouring cells may share pixels.
The tests check the kernels against a naive per-cell Euclidean distance transform and numpy.
Kernels release the GIL and are compiled on first use (~7 s on the 2-core reference machine
for uint16 channels and int32 labels; other dtypes compile their own versions), then cached on
disk by numba beside this file (or in ``NUMBA_CACHE_DIR``), which later processes load in well
under a second. :func:`tile_boxes` (label bounding boxes, the first pass) is compiled too.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numba
import numpy as np


def _cache_ok() -> bool:
    """Whether numba can write its cache (beside this file, or in NUMBA_CACHE_DIR); numba
    raises at compile time when no cache location is writable, so then compile each run."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return True
    here = Path(__file__).parent
    try:
        (here / "__pycache__").mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=here / "__pycache__"):
            return True
    except OSError:
        return False


_CACHE = _cache_ok()

__all__ = ["cell_geometry", "channel_stats", "disk_half_widths", "tile_boxes"]


def tile_boxes(tile: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Bounding boxes of the labels ``lo..hi`` (``lo >= 1``) of a (Y, X) tile of non-negative
    integers: ``(K, 5)`` int64 rows ``id, y0, y1, x0, x1`` (half-open, tile pixels) of the ids
    present, ascending (what :func:`scipy.ndimage.find_objects` finds, in one pass over the
    runs; memory: four int32 per id of the range)."""
    n = max(hi - lo + 1, 0)
    y0 = np.full(n, -1, np.int32)
    y1 = np.zeros(n, np.int32)
    x0 = np.full(n, tile.shape[1], np.int32)
    x1 = np.zeros(n, np.int32)
    if n:
        _box_runs(tile, lo, y0, y1, x0, x1)
    k = np.flatnonzero(y1)
    return np.stack([k + lo, y0[k], y1[k], x0[k], x1[k]], axis=1).astype(np.int64)


@numba.njit(cache=_CACHE, nogil=True)
def _box_runs(tile, lo, y0, y1, x0, x1):  # pragma: no cover - compiled
    """Grow the boxes (``y0 == -1``: not seen yet) of ids ``lo + i`` with every run of equal
    labels > 0 (ids below ``lo`` must not occur)."""
    h, w = tile.shape
    for y in range(h):
        row = tile[y]
        prev = row[0]
        start = 0
        for x in range(1, w + 1):
            v = row[x] if x < w else 0
            if v == prev:
                continue
            if prev != 0:
                _grow(np.int64(prev) - lo, y, start, x, y0, y1, x0, x1)
            prev = v
            start = x


@numba.njit(cache=_CACHE, nogil=True, inline="always")
def _grow(v, y, start, stop, y0, y1, x0, x1):  # pragma: no cover - compiled
    if y0[v] < 0:
        y0[v] = y
    y1[v] = y + 1
    if start < x0[v]:
        x0[v] = start
    if stop > x1[v]:
        x1[v] = stop


def disk_half_widths(gap: int, outer: int) -> tuple[np.ndarray, np.ndarray]:
    """Half-widths ``isqrt(r**2 - j**2)`` of the disks of radius ``outer`` and ``gap`` on row
    offsets ``j = -outer..outer`` (int64; -1 where ``|j| > gap``)."""
    j = range(-outer, outer + 1)
    k_outer = np.array([math.isqrt(outer * outer - d * d) for d in j], np.int64)
    k_gap = np.array([math.isqrt(gap * gap - d * d) if abs(d) <= gap else -1 for d in j], np.int64)
    return k_outer, k_gap


@numba.njit(cache=_CACHE, nogil=True)
def cell_geometry(  # noqa: PLR0913
    lab, ids, by, bx, bh, bw, k_outer, k_gap, seg_start, cell_off, ring_off, area, sy, sx, ring_n
):  # pragma: no cover - compiled
    """Pixels and ring of each cell ``i``, whose bounding box is rows ``by[i]:by[i] + bh[i]``,
    columns ``bx[i]:bx[i] + bw[i]`` of the region ``lab`` (at least ``outer`` pixels from its
    edges).

    ``k_outer[j + outer]`` / ``k_gap[j + outer]`` are the half-widths of the outer / gap disks
    on row offset ``j`` (-1 where the gap disk does not reach; :func:`disk_half_widths`).
    Fills ``area``, ``sy`` / ``sx`` (sums of the cell's row / column indices, relative to the
    box's top-left corner minus ``outer``), ``ring_n``, and the flat offsets (into
    ``lab.ravel()``, raster order) of the cell's pixels at ``cell_off[seg_start[i]:]`` and of
    its ring at ``ring_off[seg_start[i]:]`` (segments of at least ``(bh + 2 outer) * (bw + 2
    outer)`` entries).
    """
    width = lab.shape[1]
    flat = lab.ravel()
    outer = (k_outer.size - 1) // 2
    max_h = 0
    max_w = 0
    for i in range(ids.size):
        max_h = max(max_h, bh[i] + 2 * outer)
        max_w = max(max_w, bw[i] + 2 * outer)
    row_ptr = np.zeros(max_h + 1, np.int64)
    run_a = np.empty(max_h * (max_w // 2 + 1), np.int64)
    run_b = np.empty_like(run_a)
    diff_o = np.zeros(max_w + 1, np.int64)
    diff_g = np.zeros(max_w + 1, np.int64)
    for i in range(ids.size):
        cid = ids[i]
        h = bh[i] + 2 * outer  # the crop: box + outer on every side
        w = bw[i] + 2 * outer
        base = (by[i] - outer) * width + bx[i] - outer
        pos = seg_start[i]
        # the cell: runs of `cid` on the box's rows (crop coordinates)
        n_runs = 0
        a_px = 0
        s_y = 0
        s_x = 0
        for y in range(h):
            row_ptr[y] = n_runs
            if y < outer or y >= outer + bh[i]:
                continue
            off = base + y * width
            inside = False
            x0 = 0
            for x in range(outer, outer + bw[i] + 1):
                hit = x < outer + bw[i] and flat[off + x] == cid
                if hit:
                    cell_off[pos + a_px] = off + x
                    a_px += 1
                    if not inside:
                        inside = True
                        x0 = x
                elif inside:
                    inside = False
                    run_a[n_runs] = x0
                    run_b[n_runs] = x
                    n_runs += 1
                    n = x - x0
                    s_y += y * n
                    s_x += (x0 + x - 1) * n // 2
        row_ptr[h] = n_runs
        area[i] = a_px
        sy[i] = s_y
        sx[i] = s_x
        # the ring: covered by the outer disk, not by the gap disk, label 0
        if _row_convex(row_ptr, run_a, run_b, outer, bh[i]):
            r_px = _ring_convex(
                flat, base, width, h, row_ptr, run_a, run_b, k_outer, k_gap, ring_off, pos
            )  # fmt: skip
        else:
            r_px = _ring_general(
                flat, base, width, h, w, row_ptr, run_a, run_b, k_outer, k_gap, diff_o, diff_g,
                ring_off, pos,
            )  # fmt: skip
        ring_n[i] = r_px


@numba.njit(cache=_CACHE, nogil=True)
def _row_convex(row_ptr, run_a, run_b, outer, bh):  # pragma: no cover - compiled
    """One run on every row of the box, each overlapping or touching (8-connected) the run
    of the row above: then the runs widened by any disk cover one interval per row."""
    for y in range(outer, outer + bh):
        if row_ptr[y + 1] - row_ptr[y] != 1:
            return False
        if y > outer:
            r = row_ptr[y]
            if run_a[r] > run_b[r - 1] or run_a[r - 1] > run_b[r]:
                return False
    return True


@numba.njit(cache=_CACHE, nogil=True)
def _ring_convex(
    flat, base, width, h, row_ptr, run_a, run_b, k_outer, k_gap, ring_off, pos
):  # pragma: no cover - compiled  # fmt: skip
    """Ring of a row-convex cell: per crop row, the outer interval minus the gap interval."""
    outer = (k_outer.size - 1) // 2
    r_px = 0
    for y in range(h):
        lo_o = 1 << 60
        hi_o = -1
        lo_g = 1 << 60
        hi_g = -1
        for j in range(-outer, outer + 1):
            src = y + j
            if src < 0 or src >= h or row_ptr[src + 1] == row_ptr[src]:
                continue
            r = row_ptr[src]
            ko = k_outer[j + outer]
            lo_o = min(lo_o, run_a[r] - ko)
            hi_o = max(hi_o, run_b[r] + ko)
            kg = k_gap[j + outer]
            if kg >= 0:
                lo_g = min(lo_g, run_a[r] - kg)
                hi_g = max(hi_g, run_b[r] + kg)
        if hi_o < 0:
            continue
        if hi_g < 0:  # no gap coverage on this row
            lo_g = hi_o
            hi_g = hi_o
        off = base + y * width
        for x in range(lo_o, lo_g):
            if flat[off + x] == 0:
                ring_off[pos + r_px] = off + x
                r_px += 1
        for x in range(hi_g, hi_o):
            if flat[off + x] == 0:
                ring_off[pos + r_px] = off + x
                r_px += 1
    return r_px


@numba.njit(cache=_CACHE, nogil=True)
def _ring_general(
    flat, base, width, h, w, row_ptr, run_a, run_b, k_outer, k_gap, diff_o, diff_g, ring_off, pos
):  # pragma: no cover - compiled  # fmt: skip
    """Ring of any cell: per crop row, the coverage of every widened run counted with
    difference arrays (``diff_o`` / ``diff_g``, zero on entry and on return)."""
    outer = (k_outer.size - 1) // 2
    r_px = 0
    for y in range(h):
        any_o = False
        for j in range(-outer, outer + 1):
            src = y + j
            if src < 0 or src >= h:
                continue
            ko = k_outer[j + outer]
            kg = k_gap[j + outer]
            for r in range(row_ptr[src], row_ptr[src + 1]):
                diff_o[run_a[r] - ko] += 1
                diff_o[run_b[r] + ko] -= 1
                any_o = True
                if kg >= 0:
                    diff_g[run_a[r] - kg] += 1
                    diff_g[run_b[r] + kg] -= 1
        if not any_o:
            continue
        off = base + y * width
        co = 0
        cg = 0
        for x in range(w):
            co += diff_o[x]
            cg += diff_g[x]
            diff_o[x] = 0
            diff_g[x] = 0
            if co > 0 and cg == 0 and flat[off + x] == 0:
                ring_off[pos + r_px] = off + x
                r_px += 1
        diff_o[w] = 0
        diff_g[w] = 0
    return r_px


@numba.njit(cache=_CACHE, nogil=True)
def _rank_in_bins(hist, k):  # pragma: no cover - compiled
    """(bin, rank within the bin) of the ``k``-th smallest value (0-based) from a histogram."""
    c = 0
    for b in range(hist.size):
        if c + hist[b] > k:
            return b, k - c
        c += hist[b]
    return hist.size - 1, 0


@numba.njit(cache=_CACHE, nogil=True)
def _low_byte_hist(values, shift, high, hist):  # pragma: no cover - compiled
    """``hist``: counts of the low bytes of the values (``+ shift``) whose high byte is ``high``."""
    hist[:] = 0
    for i in range(values.size):
        u = np.int64(values[i]) + shift
        if (u >> 8) == high:
            hist[u & 255] += 1


@numba.njit(cache=_CACHE, nogil=True)
def _median_16bit(values, shift, hist_hi, hist_lo):  # pragma: no cover - compiled
    """numpy's median of <= 16-bit integers (``values + shift`` in ``0..65535``) by radix
    selection: a histogram of the high bytes, then one of the low bytes of the values in the
    bin(s) holding the two middle values; 2-3 passes over the values instead of a sort."""
    n = values.size
    hist_hi[:] = 0
    for i in range(n):
        hist_hi[(np.int64(values[i]) + shift) >> 8] += 1
    h1, r1 = _rank_in_bins(hist_hi, (n - 1) // 2)
    h2, r2 = _rank_in_bins(hist_hi, n // 2)
    _low_byte_hist(values, shift, h1, hist_lo)
    lo1, _ = _rank_in_bins(hist_lo, r1)
    v1 = h1 * 256 + lo1 - shift
    if h2 != h1:  # the upper middle value is the smallest of the next non-empty high bin
        _low_byte_hist(values, shift, h2, hist_lo)
    lo2, _ = _rank_in_bins(hist_lo, r2)
    v2 = h2 * 256 + lo2 - shift
    return (np.float64(v1) + np.float64(v2)) / 2.0


@numba.njit(cache=_CACHE, nogil=True)
def _median(values, is_int):  # pragma: no cover - compiled
    """numpy's median; integers are selected in their own type (sums of two promote to int64),
    floats in float64 (as numpy computes the mean of the two middle float32 values)."""
    if is_int:
        return np.median(values)
    return np.median(values.astype(np.float64))


@numba.njit(cache=_CACHE, nogil=True)
def channel_stats(
    ch, seg_start, cell_off, area, ring_off, ring_n, shift, is_int,
    total, median, bg_median, bg_mean, bg_sd,
):  # pragma: no cover - compiled  # fmt: skip
    """Per cell ``i``: ``total`` (sum of its pixels), ``median``, and over its ring
    ``bg_median``, ``bg_mean``, ``bg_sd``; NaN where a cell has no ring (or no pixels).

    ``shift >= 0`` marks <= 16-bit integers (``value + shift`` in 0..65535: radix-selected
    medians, exact integer SD); ``is_int`` sums integers exactly in int64.
    """
    flat = ch.ravel()
    small = shift >= 0
    n_max = 1
    for i in range(area.size):
        n_max = max(n_max, area[i], ring_n[i])
    buf = np.empty(n_max, flat.dtype)
    hist_hi = np.empty(256, np.int64)
    hist_lo = np.empty(256, np.int64)
    nan = np.nan
    for i in range(area.size):
        pos = seg_start[i]
        n = area[i]
        if is_int:
            acc_i = 0
            for k in range(n):
                v = flat[cell_off[pos + k]]
                buf[k] = v
                acc_i += np.int64(v)
            total[i] = np.float64(acc_i)
        else:
            acc_f = 0.0
            for k in range(n):
                v = flat[cell_off[pos + k]]
                buf[k] = v
                acc_f += np.float64(v)
            total[i] = acc_f
        if n == 0:
            median[i] = nan
        elif small:
            median[i] = _median_16bit(buf[:n], shift, hist_hi, hist_lo)
        else:
            median[i] = _median(buf[:n], is_int)
        m = ring_n[i]
        if m == 0:
            bg_median[i] = nan
            bg_mean[i] = nan
            bg_sd[i] = nan
            continue
        for k in range(m):
            buf[k] = flat[ring_off[pos + k]]
        if small and m <= 40_000:  # n * sum(v**2) - sum(v)**2 exactly in int64
            s1 = 0
            s2 = 0
            for k in range(m):
                v = np.int64(buf[k])
                s1 += v
                s2 += v * v
            bg_mean[i] = s1 / m
            bg_sd[i] = math.sqrt((m * s2 - s1 * s1) / (np.float64(m) * m))
        else:
            s = 0.0
            for k in range(m):
                s += np.float64(buf[k])
            mean = s / m
            d2 = 0.0
            for k in range(m):
                d = np.float64(buf[k]) - mean
                d2 += d * d
            bg_mean[i] = mean
            bg_sd[i] = math.sqrt(d2 / m)
        if small:
            bg_median[i] = _median_16bit(buf[:m], shift, hist_hi, hist_lo)
        else:
            bg_median[i] = _median(buf[:m], is_int)
