"""Compiled (numba) per-cell kernels for :mod:`napari_hrs.markers.quantify`.

One region (a (H, W) labels array padded outside the image with a non-zero label, and its
(C, H, W) channels) holds the crops of many cells; each crop is the cell's bounding box plus the
ring radius. :func:`measure_cells` measures each cell whole before the next:

- its geometry (:func:`_cell_pixels`): the cell's pixels (area, sums of rows and columns, their
  flat offsets in the region) as runs per row, then its background ring, the pixels whose
  Euclidean distance ``d`` to the cell satisfies ``gap < d <= gap + width`` and whose label is
  0. ``d <= r`` holds exactly when some cell pixel lies within the disk of radius ``r``: row
  ``y`` is covered by the runs of rows ``y + dy`` widened by ``isqrt(r**2 - dy**2)``. For
  row-convex cells (one run per row, 8-connected rows: nearly all) that union is one interval
  per row, accumulated for all rows at once per row offset ``dy`` (vectorised loops);
  otherwise it is counted with difference arrays. The cost is per row and ``dy`` and per ring
  pixel, not per disk offset. The offsets go to one crop-sized buffer.
- then, per channel, the values through those offsets (:func:`_segment_stats`): the cell's sum
  and median (numpy's: mean of the two middle values), the ring's median, mean and standard
  deviation (``ddof=0``; radix-selected medians and exact integer arithmetic for <= 16-bit
  integers, numpy's median and two passes in float64 otherwise).
- meanwhile the next cell's crop rows are prefetched (:func:`_prefetch_crop`): they lie a region
  row apart, a pattern the hardware prefetchers do not follow (the kernel is ~12 % faster).

:func:`channel_stats` gives the same statistics for given offset segments of one channel.
The ring is that of the docs (docs/markers.md): the background pixels within ``gap + width``
pixels but farther than ``gap`` from the cell; rings of neighbouring cells may share pixels.
The tests check the kernels against a naive per-cell Euclidean distance transform and numpy.
Kernels release the GIL and are compiled on first use (~11 s on the 2-core reference machine
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
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


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


@intrinsic
def _prefetch(typingctx, arr, idx):  # pragma: no cover - compiled
    """``_prefetch(arr, i)`` in compiled code: ask the CPU to load the cache line holding
    ``arr.ravel()[i]`` (``arr`` C-contiguous; a hint only: never faults, changes no value)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        i8p = ir.IntType(8).as_pointer()
        item = context.get_abi_sizeof(context.get_data_type(aryty.dtype))
        at = builder.mul(
            context.cast(builder, args[1], signature.args[1], types.intp),
            context.get_constant(types.intp, item),
        )
        ptr = builder.gep(builder.bitcast(ary.data, i8p), [at])
        i32 = ir.IntType(32)
        # llvmlite names the overload for its pointer type (llvm.prefetch.p0i8 / .p0)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        )
        # read, keep in all cache levels, data cache
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@numba.njit(cache=_CACHE, nogil=True)
def _prefetch_crop(flat, vals, plane, n_ch, width, by, bx, bh, bw, outer):  # pragma: no cover
    """Prefetch the crop of a cell (box ``by, bx, bh, bw`` widened by ``outer``) in the flat
    labels ``flat`` and in each of the ``n_ch`` channel planes of ``vals``: every cache line of
    each crop row (the crop's rows are a region row apart: the hardware prefetchers do not
    see them coming)."""
    h = bh + 2 * outer
    w = bw + 2 * outer
    st_l = max(64 // flat.itemsize, 1)
    st_v = max(64 // vals.itemsize, 1)
    for y in range(h):
        off = (by - outer + y) * width + bx - outer
        for x in range(0, w, st_l):
            _prefetch(flat, off + x)
        _prefetch(flat, off + w - 1)
        for c in range(n_ch):
            at = c * plane + off
            for x in range(0, w, st_v):
                _prefetch(vals, at + x)
            _prefetch(vals, at + w - 1)


__all__ = ["channel_stats", "disk_half_widths", "lut_copy", "measure_cells", "tile_boxes"]


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
        for x in range(1, w):  # unsigned index: no negative-index test per pixel (2x faster)
            v = row[np.uint64(x)]
            if v != prev:
                if prev != 0:
                    _grow(np.int64(prev) - lo, y, start, x, y0, y1, x0, x1)
                prev = v
                start = x
        if prev != 0:  # the row's last run
            _grow(np.int64(prev) - lo, y, start, w, y0, y1, x0, x1)


@numba.njit(cache=_CACHE, nogil=True, inline="always")
def _grow(v, y, start, stop, y0, y1, x0, x1):  # pragma: no cover - compiled
    if y0[v] < 0:
        y0[v] = y
    y1[v] = y + 1
    if start < x0[v]:
        x0[v] = start
    if stop > x1[v]:
        x1[v] = stop


@numba.njit(cache=_CACHE, nogil=True)
def lut_copy(src, lut, dst):  # pragma: no cover - compiled
    """``dst[y, x] = lut[src[y, x]]`` for (Y, X) arrays (any strides; ``dst`` may be ``src``)."""
    h, w = src.shape
    for y in range(h):
        for x in range(w):
            dst[y, x] = lut[np.uint64(src[y, x])]


def disk_half_widths(gap: int, outer: int) -> tuple[np.ndarray, np.ndarray]:
    """Half-widths ``isqrt(r**2 - j**2)`` of the disks of radius ``outer`` and ``gap`` on row
    offsets ``j = -outer..outer`` (int64; -1 where ``|j| > gap``)."""
    j = range(-outer, outer + 1)
    k_outer = np.array([math.isqrt(outer * outer - d * d) for d in j], np.int64)
    k_gap = np.array([math.isqrt(gap * gap - d * d) if abs(d) <= gap else -1 for d in j], np.int64)
    return k_outer, k_gap


@numba.njit(cache=_CACHE, nogil=True)
def measure_cells(  # noqa: PLR0913
    lab, chans, ids, by, bx, bh, bw, k_outer, k_gap, shift, is_int, offs,
    area, sy, sx, ring_n, ext, total, median, bg_median, bg_mean, bg_sd,
):  # pragma: no cover - compiled  # fmt: skip
    """Pixels, ring and channel statistics of each cell ``i``, whose bounding box is rows
    ``by[i]:by[i] + bh[i]``, columns ``bx[i]:bx[i] + bw[i]`` of the (H, W) region ``lab`` (at
    least ``outer`` pixels from its edges); ``chans`` is (C, H, W), the region's channels.

    ``k_outer[j + outer]`` / ``k_gap[j + outer]`` are the half-widths of the outer / gap disks
    on row offset ``j`` (-1 where the gap disk does not reach; :func:`disk_half_widths`).
    Fills ``area``, ``sy`` / ``sx`` (sums of the cell's row / column indices, relative to the
    box's top-left corner minus ``outer``), ``ring_n``, ``ext`` ((N, 4): the cell's exact
    bounding box ``y0, y1, x0, x1``, half-open, in the same crop coordinates; ``-1`` rows for a
    cell without pixels: the given box need only contain the cell), and per channel ``c`` the
    (C, N) rows
    ``total[c]``... as :func:`channel_stats` does (``shift`` / ``is_int`` as there). Each cell
    is measured whole (pixels, ring, every channel) before the next: the flat offsets of its
    pixels, then of its ring, go to ``offs`` (int32 or int64, at least the largest crop's
    ``(bh + 2 outer) * (bw + 2 outer)`` entries: cell and ring are disjoint pixels of the crop)
    and the rows it touches stay in cache.
    """
    width = lab.shape[1]
    flat = lab.ravel()
    vals = chans.ravel()
    plane = lab.size
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
    cov = np.empty((6, max_h + 2 * outer), np.int64)
    buf = np.empty(max_h * max_w, vals.dtype)
    hist4 = np.zeros((4, 256), np.int64)
    hist_lo = np.zeros(512, np.int64)
    n_ch = chans.shape[0]
    for i in range(ids.size):
        if i + 1 < ids.size:  # the next cell's crop loads while this one is measured
            _prefetch_crop(
                flat, vals, plane, n_ch, width, by[i + 1], bx[i + 1], bh[i + 1], bw[i + 1], outer
            )  # fmt: skip
        a_px, s_y, s_x, r_px = _cell_pixels(
            flat, width, ids[i], by[i], bx[i], bh[i], bw[i], k_outer, k_gap, row_ptr, run_a,
            run_b, diff_o, diff_g, cov, offs,
        )  # fmt: skip
        area[i] = a_px
        sy[i] = s_y
        sx[i] = s_x
        ring_n[i] = r_px
        _extent(row_ptr, run_a, run_b, outer, bh[i], ext[i])
        for c in range(chans.shape[0]):
            base = c * plane
            total[c, i], _, median[c, i], _ = _segment_stats(
                vals, base, offs, 0, a_px, shift, is_int, False, buf, hist4, hist_lo
            )  # fmt: skip
            _, bg_mean[c, i], bg_median[c, i], bg_sd[c, i] = _segment_stats(
                vals, base, offs, a_px, r_px, shift, is_int, True, buf, hist4, hist_lo
            )  # fmt: skip


@numba.njit(cache=_CACHE, nogil=True)
def _extent(row_ptr, run_a, run_b, outer, bh, out):  # pragma: no cover - compiled
    """``out[:] = y0, y1, x0, x1``: the bounding box of the runs on crop rows
    ``outer..outer + bh`` (runs of a row ascending); all ``-1`` when there are none."""
    out[:] = -1
    for y in range(outer, outer + bh):
        a, b = row_ptr[y], row_ptr[y + 1]
        if b == a:
            continue
        if out[0] < 0:
            out[0] = y
            out[2] = run_a[a]
            out[3] = run_b[b - 1]
        out[1] = y + 1
        out[2] = min(out[2], run_a[a])
        out[3] = max(out[3], run_b[b - 1])


@numba.njit(cache=_CACHE, nogil=True)
def _cell_pixels(
    flat, width, cid, by, bx, bh, bw, k_outer, k_gap, row_ptr, run_a, run_b, diff_o, diff_g,
    cov, offs,
):  # pragma: no cover - compiled  # fmt: skip
    """One cell of :func:`measure_cells`: the flat offsets (into the region, raster order) of
    its pixels into ``offs[:area]`` and of its ring right after them; returns the area, the
    sums of its crop row / column indices, and the ring's size."""
    outer = (k_outer.size - 1) // 2
    h = bh + 2 * outer  # the crop: box + outer on every side
    w = bw + 2 * outer
    base = (by - outer) * width + bx - outer
    # the cell: runs of `cid` on the box's rows (crop coordinates)
    n_runs = 0
    a_px = 0
    s_y = 0
    s_x = 0
    for y in range(h):
        row_ptr[y] = n_runs
        if y < outer or y >= outer + bh:
            continue
        off = base + y * width
        row = flat[off + outer : off + outer + bw]  # the box's part of the row
        inside = False
        x0 = 0
        for x in range(outer, outer + bw + 1):
            hit = x < outer + bw and row[np.uint64(x - outer)] == cid
            if hit:
                offs[a_px] = off + x
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
    # the ring: covered by the outer disk, not by the gap disk, label 0
    if _row_convex(row_ptr, run_a, run_b, outer, bh):
        r_px = _ring_convex(
            flat, base, width, h, row_ptr, run_a, run_b, k_outer, k_gap, cov, offs, a_px
        )  # fmt: skip
    else:
        r_px = _ring_general(
            flat, base, width, h, w, row_ptr, run_a, run_b, k_outer, k_gap, diff_o, diff_g,
            offs, a_px,
        )  # fmt: skip
    return a_px, s_y, s_x, r_px


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
    flat, base, width, h, row_ptr, run_a, run_b, k_outer, k_gap, cov, ring_off, pos
):  # pragma: no cover - compiled  # fmt: skip
    """Ring of a row-convex cell: per crop row, the outer interval minus the gap interval.

    ``cov`` (6, >= h + 2 outer) is scratch: the run of every crop row (``outer`` empty rows
    padded on each side, empty rows as an empty interval far outside), then each row's outer
    and gap intervals, accumulated one disk row offset at a time over all crop rows (loops
    without branches, which the compiler vectorises)."""
    outer = (k_outer.size - 1) // 2
    far = np.int64(1) << 40
    a_s, b_s, lo_o, hi_o, lo_g, hi_g = cov[0], cov[1], cov[2], cov[3], cov[4], cov[5]
    n = h + 2 * outer
    for y in range(n):  # row y - outer of the crop
        src = y - outer
        if 0 <= src < h and row_ptr[src + 1] > row_ptr[src]:
            a_s[y] = run_a[row_ptr[src]]
            b_s[y] = run_b[row_ptr[src]]
        else:
            a_s[y] = far
            b_s[y] = -far
    lo_o[:h] = far
    hi_o[:h] = -far
    lo_g[:h] = far
    hi_g[:h] = -far
    for j in range(-outer, outer + 1):  # crop row y takes the run of row y + j widened
        ko = k_outer[j + outer]
        kg = k_gap[j + outer]
        at = j + outer
        for y in range(h):
            lo_o[y] = min(lo_o[y], a_s[y + at] - ko)
            hi_o[y] = max(hi_o[y], b_s[y + at] + ko)
        if kg >= 0:
            for y in range(h):
                lo_g[y] = min(lo_g[y], a_s[y + at] - kg)
                hi_g[y] = max(hi_g[y], b_s[y + at] + kg)
    r_px = 0
    for y in range(h):
        if hi_o[y] < 0:  # no cell row within reach
            continue
        lo, hi = lo_o[y], hi_o[y]
        g0, g1 = lo_g[y], hi_g[y]
        if g1 < 0:  # no gap coverage on this row
            g0 = hi
            g1 = hi
        off = base + y * width
        for x in range(lo, g0):
            if flat[np.uint64(off + x)] == 0:
                ring_off[pos + r_px] = off + x
                r_px += 1
        for x in range(g1, hi):
            if flat[np.uint64(off + x)] == 0:
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
def _gather16(flat, base, offs, pos, n, shift, buf, hist4):  # pragma: no cover - compiled
    """Copy the ``n`` values at ``flat[base + offs[pos:pos + n]]`` into ``buf`` and count their
    high bytes (of ``value + shift``) in four interleaved histograms (``hist4``, (4, 256), zero
    on entry): runs of equal bytes then do not wait on each other's increment. Returns the sums
    of the values and of their squares (exact in int64), and the smallest and largest high
    byte.

    Three simple loops (the copy, the sums and extremes, the counts) instead of one: each
    compiles to tight code (the sums vectorise), ~2x faster than the fused loop on the
    reference machine (docs/performance.md). Indices are unsigned: no negative-index
    wraparound test per value (every offset is >= 0).
    """
    at = np.uint64(base)
    for k in range(n):
        buf[k] = flat[at + np.uint64(offs[pos + k])]
    s1 = 0
    s2 = 0
    v_lo = np.int64(1) << 40
    v_hi = -v_lo
    for k in range(n):
        v = np.int64(buf[k])
        s1 += v
        s2 += v * v
        v_lo = min(v_lo, v)
        v_hi = max(v_hi, v)
    h = hist4.ravel()
    for k in range(n):
        h[np.uint64((k & 3) * 256 + ((np.int64(buf[k]) + shift) >> 8))] += 1
    return s1, s2, (v_lo + shift) >> 8, (v_hi + shift) >> 8


@numba.njit(cache=_CACHE, nogil=True)
def _select16(buf, n, shift, hist4, b_lo, b_hi, hist_lo):  # pragma: no cover - compiled
    """numpy's median of ``buf[:n]`` (<= 16-bit integers, ``value + shift`` in 0..65535) from
    the high-byte histograms of :func:`_gather16` over bins ``b_lo..b_hi`` (cleared on return):
    the bins of the two middle values, then one branch-free pass counting the low bytes of the
    values in those bins (``hist_lo``, 512 entries: the lower middle value's bin, then the
    upper one's; only the first 256 are used and cleared when both lie in one bin)."""
    k1 = (n - 1) // 2
    k2 = n // 2
    h1 = -1
    h2 = -1
    r1 = 0
    r2 = 0
    c = 0
    h = hist4.ravel()
    for b in range(b_lo, b_hi + 1):
        at = np.uint64(b)
        cnt = h[at] + h[at + 256] + h[at + 512] + h[at + 768]
        h[at] = 0
        h[at + 256] = 0
        h[at + 512] = 0
        h[at + 768] = 0
        if h1 < 0 and c + cnt > k1:
            h1 = b
            r1 = k1 - c
        if h2 < 0 and c + cnt > k2:
            h2 = b
            r2 = k2 - c
        c += cnt
    if h1 == h2:  # the usual case: one bin, one histogram
        hist_lo[:256] = 0
        for k in range(n):  # adds 0 for the other values: no one counter that every value hits
            u = np.int64(buf[k]) + shift
            hist_lo[np.uint64(u & 255)] += (u >> 8) == h1
        v1 = h1 * 256 + _rank_index(hist_lo, 0, r1) - shift
        v2 = h1 * 256 + _rank_index(hist_lo, 0, r2) - shift
    else:
        hist_lo[:] = 0
        for k in range(n):
            u = np.int64(buf[k]) + shift
            b = u >> 8
            hist_lo[np.uint64((u & 255) + (256 if b == h2 else 0))] += (b == h1) | (b == h2)
        v1 = h1 * 256 + _rank_index(hist_lo, 0, r1) - shift
        v2 = h2 * 256 + _rank_index(hist_lo, 256, r2) - shift
    return (np.float64(v1) + np.float64(v2)) / 2.0


@numba.njit(cache=_CACHE, nogil=True, inline="always")
def _rank_index(hist, at, r):  # pragma: no cover - compiled
    """Index (from ``at``) of the bin holding the ``r``-th value (0-based) of ``hist[at:at+256]``."""
    c = 0
    for b in range(256):
        c += hist[at + b]
        if c > r:
            return b
    return 255


@numba.njit(cache=_CACHE, nogil=True)
def _median(values, is_int):  # pragma: no cover - compiled
    """numpy's median; integers are selected in their own type (sums of two promote to int64),
    floats in float64 (as numpy computes the mean of the two middle float32 values)."""
    if is_int:
        return np.median(values)
    return np.median(values.astype(np.float64))


@numba.njit(cache=_CACHE, nogil=True)
def _mean_sd(values, m):  # pragma: no cover - compiled
    """Mean and SD (ddof=0) of ``values[:m]``, two passes in float64."""
    s = 0.0
    for k in range(m):
        s += np.float64(values[k])
    mean = s / m
    d2 = 0.0
    for k in range(m):
        d = np.float64(values[k]) - mean
        d2 += d * d
    return mean, math.sqrt(d2 / m)


@numba.njit(cache=_CACHE, nogil=True)
def _segment_stats(
    flat, base, offs, pos, n, shift, is_int, want_sd, buf, hist4, hist_lo
):  # pragma: no cover - compiled  # fmt: skip
    """Sum, mean, median and SD (``ddof=0``; NaN unless ``want_sd``) of the ``n`` values at
    ``flat[base + offs[pos:pos + n]]``; sum 0 and NaN for the rest when ``n == 0``.

    ``shift >= 0``: <= 16-bit integers (``value + shift`` in 0..65535), a gathering pass (the
    copy, the sums, the high-byte counts) and a selection pass over the copy, exact integer
    sums and SD (up to 40,000 values). Otherwise integers
    are summed exactly in int64 (``is_int``), floats in float64; numpy's median; the mean and
    SD in float64.
    """
    nan = np.nan
    if n == 0:
        return 0.0, nan, nan, nan
    if shift >= 0:
        s1, s2, b_lo, b_hi = _gather16(flat, base, offs, pos, n, shift, buf, hist4)
        med = _select16(buf, n, shift, hist4, b_lo, b_hi, hist_lo)
        total = np.float64(s1)  # exact: |sum| < 2**53
        if not want_sd:
            return total, total / n, med, nan
        if n <= 40_000:  # n * sum(v**2) - sum(v)**2 exactly in int64 (|v| < 2**16)
            sd = math.sqrt((n * s2 - s1 * s1) / (np.float64(n) * n))
            return total, total / n, med, sd
        mean, sd = _mean_sd(buf, n)
        return total, mean, med, sd
    if is_int:
        acc_i = 0
        for k in range(n):
            v = flat[base + offs[pos + k]]
            buf[k] = v
            acc_i += np.int64(v)
        total = np.float64(acc_i)
    else:
        acc_f = 0.0
        for k in range(n):
            v = flat[base + offs[pos + k]]
            buf[k] = v
            acc_f += np.float64(v)
        total = acc_f
    med = _median(buf[:n], is_int)
    if not want_sd:
        return total, total / n, med, nan
    mean, sd = _mean_sd(buf, n)
    return total, mean, med, sd


@numba.njit(cache=_CACHE, nogil=True)
def channel_stats(
    ch, seg_start, cell_off, area, ring_off, ring_n, shift, is_int,
    total, median, bg_median, bg_mean, bg_sd,
):  # pragma: no cover - compiled  # fmt: skip
    """Per cell ``i``, through flat offsets into ``ch``: ``total`` (sum of the values at
    ``cell_off[seg_start[i]:][:area[i]]``), their ``median``, and over the ring (``ring_off``,
    ``ring_n``) ``bg_median``, ``bg_mean``, ``bg_sd``; NaN where a cell has no ring (or no
    pixels). The statistics of :func:`measure_cells`, on given segments.

    ``shift >= 0`` marks <= 16-bit integers (``value + shift`` in 0..65535: radix-selected
    medians, exact integer sums and SD); ``is_int`` sums other integers exactly in int64.
    """
    flat = ch.ravel()
    n_max = 1
    for i in range(area.size):
        n_max = max(n_max, area[i], ring_n[i])
    buf = np.empty(n_max, flat.dtype)
    hist4 = np.zeros((4, 256), np.int64)
    hist_lo = np.zeros(512, np.int64)
    for i in range(area.size):
        pos = seg_start[i]
        total[i], _, median[i], _ = _segment_stats(
            flat, 0, cell_off, pos, area[i], shift, is_int, False, buf, hist4, hist_lo
        )  # fmt: skip
        _, bg_mean[i], bg_median[i], bg_sd[i] = _segment_stats(
            flat, 0, ring_off, pos, ring_n[i], shift, is_int, True, buf, hist4, hist_lo
        )  # fmt: skip
