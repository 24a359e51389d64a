"""Pass 2 of :func:`napari_hrs.markers.quantify`: every chunk read (decompressed) once.

Tiles are aligned to the channels' chunk grid and read once each, in raster order. A cell is
measured with the tile holding the bottom-right corner of its crop (its box plus the ring
radius), so everything its crop needs has been read by then: the current tile, the tile to its
left, and the row of tiles above. Those are kept as a *left strip* (the last ``wb`` columns of
the previous tile) and a *top band* (the last ``hb`` rows of the previous tile row, full width),
where ``hb`` / ``wb`` are the farthest any crop reaches above / left of its tile. The region
``[tile_y0 - hb, tile_y1) x [tile_x0 - wb, tile_x1)`` is assembled from band, strip and tile.

Memory: a few tiles plus two bands of ``hb`` rows by the image width. Cells whose crop reaches
more than a tile above or left of their tile (giant labels) are measured afterwards from regions
read directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from napari_hrs.markers._tiles import (
    CROP_STEP,
    LabelBoxes,
    RegionPlan,
    Source,
    crop_shape,
    plan_regions,
    read_region,
    read_region_into,
    worker_pool,
)


def chunk_aligned(sources: list[Source], tile: int) -> tuple[int, int]:
    """Tile (Y, X) sizes: ``tile`` rounded up to whole chunks of the first chunked source."""
    for s in sources:
        chunks = getattr(s.array, "chunks", None)
        if not chunks:
            continue
        cy, cx = (int(c[0]) if isinstance(c, tuple) else int(c) for c in chunks[-2:])
        return max(cy, -(-tile // cy) * cy), max(cx, -(-tile // cx) * cx)
    return tile, tile


@dataclass
class StreamPlan:
    """Tiles, their cells, the band / strip sizes and the cells left for direct reads."""

    ty: int
    tx: int
    hb: int
    wb: int
    extra: int
    needed: np.ndarray  # (n_ty, n_tx) bool: tiles some crop touches
    owned: dict[tuple[int, int], np.ndarray]  # tile -> cell indices
    fallback: np.ndarray  # cell indices measured from direct reads


def plan_stream(
    boxes: LabelBoxes, shape: tuple[int, int], tiles: tuple[int, int], radius: int
) -> StreamPlan:
    """Assign each cell to the tile holding its crop's bottom-right corner (clipped to the image)."""
    ty, tx = tiles
    h, w = shape
    nty, ntx = -(-h // ty), -(-w // tx)
    ch, cw = crop_shape(boxes, np.arange(len(boxes)), radius)
    cy0, cx0 = boxes.y0 - radius, boxes.x0 - radius
    ti = (np.minimum(cy0 + ch, h) - 1) // ty
    tj = (np.minimum(cx0 + cw, w) - 1) // tx
    up, left = ti * ty - cy0, tj * tx - cx0
    normal = (up <= ty) & (left <= tx)
    hb = int(max(up[normal].max(initial=0), 0))
    wb = int(max(left[normal].max(initial=0), 0))
    needed = np.zeros((nty, ntx), bool)
    i0, j0 = np.maximum(cy0, 0) // ty, np.maximum(cx0, 0) // tx
    for a in (i0, ti):
        for b in (j0, tj):
            needed[a[normal], b[normal]] = True
    idx = np.flatnonzero(normal)
    key = ti[idx] * ntx + tj[idx]
    order = np.argsort(key, kind="stable")
    idx, key = idx[order], key[order]
    cuts = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True]) if len(key) else np.zeros(1, int)
    owned = {divmod(int(key[a]), ntx): idx[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)}
    return StreamPlan(
        ty, tx, hb, wb, radius + CROP_STEP, needed, owned, np.flatnonzero(~normal)
    )  # fmt: skip


def region_shape(plan: StreamPlan) -> tuple[int, int]:
    """(H, W) of the regions assembled for ``plan``'s tiles: band + tile + margin."""
    return plan.hb + plan.ty + plan.extra, plan.wb + plan.tx + plan.extra


class _Canvas:
    """The region buffers of one source (two, used in turn), and its band and strip."""

    def __init__(
        self, plan: StreamPlan, width: int, dtype: np.dtype, pad: int, bufs: tuple = ()
    ) -> None:
        """``bufs``: the two region buffers when given (views into stacked channel buffers)."""
        self.plan, self.pad = plan, pad
        p = plan
        self.bufs = bufs or tuple(np.empty(region_shape(plan), dtype) for _ in range(2))
        band_w = p.wb + width + p.tx + p.extra
        self.band_prev = np.full((p.hb, band_w), pad, dtype)
        self.band_cur = np.full((p.hb, band_w), pad, dtype)
        self.strip = np.full((p.ty, p.wb), pad, dtype)

    def assemble(self, tile: np.ndarray, j: int, k: int) -> np.ndarray:
        """Region of tile ``(., j)`` in buffer ``k % 2``; then its band and strip are kept."""
        self.tile_view(tile.shape, j, k)[...] = tile
        return self.keep(tile.shape, j, k)

    def tile_view(self, tile_shape: tuple[int, int], j: int, k: int) -> np.ndarray:
        """Fill buffer ``k % 2`` for tile ``(., j)`` of ``tile_shape`` (band, strip, padding)
        but for the tile itself, and return the tile's place in it (a view, to be written)."""
        p, b = self.plan, self.bufs[k % 2]
        th, tw = tile_shape
        b[: p.hb] = self.band_prev[:, j * p.tx : j * p.tx + b.shape[1]]
        b[p.hb : p.hb + p.ty, : p.wb] = self.strip if j else self.pad
        b[p.hb : p.hb + th, p.wb + tw :] = self.pad
        b[p.hb + th :] = self.pad
        return b[p.hb : p.hb + th, p.wb : p.wb + tw]

    def keep(self, tile_shape: tuple[int, int], j: int, k: int) -> np.ndarray:
        """Once the tile is in buffer ``k % 2``: keep its last ``hb`` rows in the band and its
        last ``wb`` columns in the strip; returns the buffer (the region)."""
        p, b = self.plan, self.bufs[k % 2]
        th, tw = tile_shape
        self.band_cur[:, p.wb + j * p.tx : p.wb + j * p.tx + tw] = b[
            th : th + p.hb, p.wb : p.wb + tw
        ]
        self.strip[:] = b[p.hb : p.hb + p.ty, tw : tw + p.wb]
        return b

    def next_row(self) -> None:
        self.band_prev, self.band_cur = self.band_cur, self.band_prev


def stream_regions(
    sources: list[Source],
    plan: StreamPlan,
    shape: tuple[int, int],
    label_dtype: np.dtype,
    *,
    check: Callable[[], None],
    step: Callable[[], None],
    timing: dict,
    audit: dict[str, int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray | list[np.ndarray], RegionPlan]]:
    """Yield ``(labels, channels, RegionPlan)`` for every tile owning cells, reading each tile
    once (the next one is read on a thread while the current one is measured). ``channels`` is
    one (C, H, W) array when the channels share a dtype, else a list of (H, W) arrays.

    ``audit`` (``{"nonzero": 0, "max": 0}``) gets the number of labelled pixels of the whole
    image and its largest label, as read (before the cast to ``label_dtype``): the labels of
    tiles no crop needs are read for it too (only the labels)."""
    nty, ntx = plan.needed.shape
    lab_pad = np.iinfo(label_dtype).max if label_dtype.kind == "u" else -1
    canvases = [_Canvas(plan, shape[1], label_dtype, lab_pad)]
    stacks = None
    if len({s.dtype for s in sources[1:]}) == 1:  # channels of one type: one (C, H, W) region
        dt, n = sources[1].dtype, len(sources) - 1
        stacks = tuple(np.empty((n, *region_shape(plan)), dt) for _ in range(2))
        canvases += [
            _Canvas(plan, shape[1], dt, 0, bufs=(stacks[0][c], stacks[1][c])) for c in range(n)
        ]
    else:
        canvases += [_Canvas(plan, shape[1], s.dtype, 0) for s in sources[1:]]
    order = [(i, j) for i in range(nty) for j in range(ntx) if plan.needed[i, j]]
    row = [0]

    def load(c: int, ys: slice, xs: slice, j: int, k: int) -> np.ndarray:
        """Read source ``c``'s tile and assemble its region (on a pool thread)."""
        src, canvas = sources[c], canvases[c]
        th, tw = ys.stop - ys.start, xs.stop - xs.start
        if c:  # a channel: decoded straight into the region buffer where its store allows
            view = canvas.tile_view((th, tw), j, k)
            read_region_into(src, (ys, xs), view)
            nbytes[c] = view.nbytes
            return canvas.keep((th, tw), j, k)
        # the labels: tiles lie inside the image (no padding); they are cast to the canvas's
        # type as they are copied in (the audit counts them as read, before the cast)
        tile = read_region([src], (ys, xs), shape, pads=(lab_pad,), signed=False)[0]
        if audit is not None:
            _count_labels(audit, tile)  # one labels source: no other thread adds to it
        return canvas.assemble(tile, j, k)

    nbytes = [0] * len(sources)

    def read(k: int) -> list[np.ndarray]:
        """Read tile ``order[k]`` and assemble its regions (on the reader thread, in order):
        each source on its own pool thread (decoding and copying release the GIL)."""
        i, j = order[k]
        ys = slice(i * plan.ty, min((i + 1) * plan.ty, shape[0]))
        xs = slice(j * plan.tx, min((j + 1) * plan.tx, shape[1]))
        t = time.perf_counter()
        while row[0] < i:
            for c in canvases:
                c.next_row()
            row[0] += 1
        jobs = [worker_pool().submit(load, c, ys, xs, j, k) for c in range(len(sources))]
        bufs = [f.result() for f in jobs]
        timing["channel_bytes"] += sum(nbytes)
        timing["read_s"] += time.perf_counter() - t
        return bufs

    # one reader thread: tile k + 1 is read and assembled (into the other buffers) while the
    # cells of tile k are measured; buffers k % 2 are not touched again before tile k + 2
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(read, 0) if order else None
        for k, (i, j) in enumerate(order):
            check()
            t = time.perf_counter()
            bufs = future.result()
            timing["wait_s"] += time.perf_counter() - t
            future = pool.submit(read, k + 1) if k + 1 < len(order) else None
            cells = plan.owned.get((i, j))
            if cells is not None:
                y0, x0 = i * plan.ty - plan.hb, j * plan.tx - plan.wb
                region = (slice(y0, y0 + bufs[0].shape[0]), slice(x0, x0 + bufs[0].shape[1]))
                chans = stacks[k % 2] if stacks is not None else bufs[1:]
                yield bufs[0], chans, RegionPlan(region, cells)
            step()
    for i, j in ((i, j) for i in range(nty) for j in range(ntx) if not plan.needed[i, j]):
        if audit is not None:
            check()
            ys = slice(i * plan.ty, min((i + 1) * plan.ty, shape[0]))
            xs = slice(j * plan.tx, min((j + 1) * plan.tx, shape[1]))
            _count_labels(
                audit, read_region(sources[:1], (ys, xs), shape, pads=(0,), signed=False)[0]
            )
        step()


def _count_labels(audit: dict[str, int], lab: np.ndarray) -> None:
    """Add the labelled pixels of the labels tile ``lab`` and its largest label to ``audit``."""
    audit["nonzero"] += int(np.count_nonzero(lab))
    audit["max"] = max(audit["max"], int(lab.max(initial=0)))


def fallback_plans(
    boxes: LabelBoxes, cells: np.ndarray, tile: int, radius: int, shape: tuple[int, int]
) -> list[RegionPlan]:
    """Regions for the cells too large for the band / strip (read directly, rare)."""
    return plan_regions(boxes, tile, radius, shape, cells)


def read_plans(
    sources: list[Source],
    plans: list[RegionPlan],
    shape: tuple[int, int],
    *,
    check: Callable[[], None],
    step: Callable[[], None],
) -> Iterator[tuple[np.ndarray, list[np.ndarray], RegionPlan]]:
    """Yield ``(labels, channels, plan)`` reading each plan's region directly."""
    for plan in plans:
        check()
        lab, *chans = read_region(sources, plan.region, shape, pads=(-1, 0))
        yield lab, chans, plan
        step()
