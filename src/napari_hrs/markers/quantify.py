"""Per-cell marker quantification (PRM1, PNA, or any channel), tile by tile.

For every cell of a labels image (label id > 0) and every channel, :func:`quantify` measures the
cell's area, centroid, bounding box, mean / median / integrated intensity, and its local
background: the median and SD of a ring of background pixels around the cell: the pixels of
label 0 whose Euclidean distance ``d`` to the cell satisfies ``gap < d <= gap + width``
(neighbouring cells' rings may share pixels; see :mod:`napari_hrs.markers._kernels`).

How whole slides stay in bounded memory, with numbers identical to a whole-image computation:

1. *Pass 1* reads the labels tile by tile and finds the bounding box of every label (a
   compiled run scan, :func:`~napari_hrs.markers._kernels.tile_boxes`, merged across tiles).
   Lazy labels that fit ``cache_labels_mb`` are kept so that they are not decompressed twice.
   Given ``boxes`` (a detection table) replace this pass; pass 2 then checks that every
   labelled pixel lies in the box of its id, and measures again with pass 1 where not.
2. *Pass 2* (:mod:`napari_hrs.markers._stream`) reads the channels once, in chunk-aligned tiles,
   in raster order; each cell is measured with the tile holding the bottom-right corner of its
   crop (bounding box + ring radius), from a region assembled out of that tile, a strip kept
   from the tile on its left and a band kept from the tile row above. The cells of a tile are
   measured by compiled kernels (:mod:`napari_hrs.markers._kernels`), in raster order.

A cell is always measured from a crop of the same content, in the same pixel order, so the
tile size changes nothing (not even floating-point rounding, nor the median). The next tile is
read (through the store itself where :func:`napari_hrs.io.direct.direct_reader` knows it) and
assembled on a thread while the current one is measured.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from napari_hrs.errors import AcquisitionError, Cancelled, ChannelRoleError
from napari_hrs.markers import _kernels, _stream, _tiles

__all__ = ["MEASURES", "quantify", "quantify_acquisition"]

#: per-marker measurements, each a column ``{marker}_{measure}``
MEASURES: tuple[str, ...] = (
    "mean",
    "median",
    "integrated",
    "background",
    "background_sd",
    "mean_bgsub",
    "integrated_bgsub",
    "sbr",
)

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


def quantify(
    channels: Mapping[str, Any],
    labels: Any,
    *,
    ring_px: tuple[int, int] = (2, 6),
    pixel_size_um: float | None = None,
    tile: int = 2048,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    cache_labels_mb: float = 256.0,
    threads: int | None = None,
    boxes: Any = None,
) -> pd.DataFrame:
    """Measure every labelled cell in every channel.

    Parameters
    ----------
    channels : mapping of name -> (Y, X) array
        numpy, dask or zarr arrays (leading axes of size 1 are dropped), all of the labels' shape.
        The names become column prefixes (``PRM1_mean``...).
    labels : (Y, X) integer array
        Cell label ids (0 = background), same shape as the channels.
    ring_px : (gap, width)
        Background ring in pixels: ``gap`` pixels skipped outside the cell, then ``width`` pixels.
    pixel_size_um : float, optional
        Adds ``centroid_y_um``, ``centroid_x_um`` and ``area_um2``.
    tile : int
        Tile edge in pixels; bounds memory, never changes the numbers.
    progress, cancel
        ``progress(done, total)`` after every tile; ``cancel()`` returning True stops with
        :class:`napari_hrs.errors.Cancelled`.
    cache_labels_mb : float
        Lazy (dask / zarr) labels that fit this many MB (as the smallest unsigned type holding
        their ids; ids beyond 65535 are renumbered 1..N for this, e.g. 2 bytes a pixel for
        fewer than 65536 cells) are kept after the first pass instead of being read twice; 0
        disables. Memory use is at most this plus a few tiles.
    threads : int, optional
        Threads measuring the cells of a tile side by side, and (at most 4) reading and
        scanning label tiles in the labels pass (default: the CPU cores this process may use,
        at most 8). Never changes the numbers. On the 2-core reference machine 2 threads are
        ~13 % faster than 1 (docs/performance.md).
    boxes : table, optional
        Where the cells lie, to skip the labels pass (the first of the two passes): a
        DataFrame (or mapping of columns) with ``label_id`` (or ``id``) and ``x0, y0, x1, y1``
        in pixels, any box holding all of a cell's pixels (e.g. a detection table: fractional
        boxes are widened to whole pixels plus :data:`BOX_MARGIN`). Checked as the labels
        stream (every labelled pixel must lie in the box of its id): where the check fails the
        cells are measured again with the labels pass, with a warning. The numbers are the
        same either way; ids of the table without pixels get no row.

    Returns
    -------
    pandas.DataFrame
        One row per label id (ascending): ``label_id``, ``area_px``, ``centroid_y_px``,
        ``centroid_x_px``, ``bbox_x0``, ``bbox_y0``, ``bbox_x1``, ``bbox_y1`` (half-open,
        pixels), ``ring_area_px``, optional µm columns, then for each channel ``{name}_{m}`` for
        ``m`` in :data:`MEASURES` (intensities in the channel's raw units; ``sbr`` = mean /
        background). ``attrs["quantify"]`` records the parameters and read / compute times.
    """
    gap, width = _check_ring(ring_px)
    lab_src = _tiles.Source.of(labels, "labels")
    if not np.issubdtype(lab_src.dtype, np.integer) and lab_src.dtype != bool:
        raise AcquisitionError(
            f"labels must be an integer image (cell ids, 0 = background); got dtype "
            f"{lab_src.dtype}. Pass a labels layer / NGFF labels image, not an intensity channel."
        )
    names = [str(n) for n in channels]
    srcs = [_tiles.Source.of(channels[n], f"channel {n!r}") for n in channels]
    for name, src in zip(names, srcs, strict=True):
        if src.shape != lab_src.shape:
            raise AcquisitionError(
                f"channel {name!r} has shape {src.shape} (Y, X) but the labels have shape "
                f"{lab_src.shape}; pass labels computed on this image (same level, same size)."
            )
    tile = max(int(tile), 16)
    n_threads = _default_threads() if threads is None else max(int(threads), 1)
    radius = gap + width
    shape = lab_src.shape
    grid = _tiles.tile_grid(shape, _stream.chunk_aligned([lab_src], tile))
    tiles = _stream.chunk_aligned(srcs, tile)
    n_stream = -(-shape[0] // tiles[0]) * -(-shape[1] // tiles[1])
    state = {"done": 0, "total": len(grid) + n_stream}

    def step() -> None:
        state["done"] += 1
        if progress is not None:
            progress(state["done"], state["total"])

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("marker quantification cancelled")

    t0 = time.perf_counter()
    hinted = boxes is not None
    if hinted:  # no labels pass: the boxes are checked as the labels stream (`audit`)
        boxes = _hint_boxes(boxes, shape)
        state["total"] -= len(grid)
        audit: dict[str, int] | None = {"nonzero": 0, "max": 0}
    else:
        boxes, cached = _tiles.label_boxes(
            lab_src, grid, step=step, check=check, cache_bytes=int(cache_labels_mb * 1e6),
            workers=min(n_threads, 4),
        )  # fmt: skip
        if cached is not None:
            lab_src = _tiles.Source.of(cached, "labels")
        audit = None
    _check_compact(boxes, shape)
    t_pass1 = time.perf_counter() - t0
    plan = _stream.plan_stream(boxes, shape, tiles, radius)
    big = _stream.fallback_plans(boxes, plan.fallback, max(tiles), radius, shape)
    state["total"] += len(big)
    label_dtype = _canvas_label_dtype(int(boxes.values.max(initial=0)))
    timing = {"read_s": 0.0, "wait_s": 0.0, "compute_s": 0.0, "channel_bytes": 0}
    sources = [lab_src, *srcs]
    regions = itertools.chain(
        _stream.stream_regions(
            sources,
            plan,
            shape,
            label_dtype,
            check=check,
            step=step,
            timing=timing,
            audit=audit,
        ),
        _stream.read_plans(sources, big, shape, check=check, step=step),
    )
    parts: list[dict[str, np.ndarray]] = []
    for lab, chans, region in regions:
        t = time.perf_counter()
        parts.append(_measure_region(lab, chans, names, region, boxes, gap, width, n_threads))
        timing["compute_s"] += time.perf_counter() - t
    table = _to_table(parts, names, pixel_size_um)
    if audit is not None:
        top = int(boxes.ids.max(initial=0))
        if audit["max"] > top or int(table["area_px"].sum()) != audit["nonzero"]:
            warnings.warn(
                f"the boxes given do not hold every labelled pixel ({int(table['area_px'].sum())}"
                f" of {audit['nonzero']} inside the boxes of their ids; largest label id "
                f"{audit['max']}, largest id given {top}): measuring again with the labels "
                "pass", stacklevel=2,
            )  # fmt: skip
            return quantify(
                channels, labels, ring_px=ring_px, pixel_size_um=pixel_size_um, tile=tile,
                progress=progress, cancel=cancel, cache_labels_mb=cache_labels_mb,
                threads=threads,
            )  # fmt: skip
        table = table[table["area_px"] > 0].reset_index(drop=True)
    table.attrs["quantify"] = {
        "ring_px": (gap, width),
        "tile": tiles,
        "band_px": (plan.hb, plan.wb),
        "n_direct_regions": len(big),
        "threads": n_threads,
        "pixel_size_um": pixel_size_um,
        "channels": names,
        "shape": tuple(shape),
        "labels_pass_s": t_pass1,
        "boxes_given": hinted,
        "total_s": time.perf_counter() - t0,
        **timing,
    }
    return table


def quantify_acquisition(
    acquisition: Any,
    labels: Any,
    markers: Sequence[str] = ("PRM1", "PNA"),
    *,
    level: int = 0,
    ring_px: tuple[int, int] = (2, 6),
    tile: int = 2048,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    cache_labels_mb: float = 256.0,
    threads: int | None = None,
    boxes: Any = None,
) -> pd.DataFrame:
    """:func:`quantify` the marker channels of a :class:`napari_hrs.io.Acquisition`.

    Parameters
    ----------
    acquisition : Acquisition
        Its ``channel(name, level)`` gives the (Y, X) marker channels; its ``pixel_size_um``
        (at level 0) adds the µm columns.
    labels : (Y, X) integer array
        Cell labels of the same level's size.
    markers : sequence of str
        Roles or channel names to measure (``"PRM1"``, ``"PNA"``).
    level : int
        Pyramid level (0 = full resolution).
    ring_px, tile, progress, cancel, cache_labels_mb, threads, boxes
        As for :func:`quantify` (``boxes``: e.g. the detection table of ``labels``).

    Raises
    ------
    ChannelRoleError
        If a marker is not a role or channel of the acquisition (the message lists them).
    """
    chans = {}
    for m in markers:
        try:
            chans[m] = acquisition.channel(m, level=level)
        except (KeyError, IndexError, ValueError) as exc:  # ChannelRoleError is a ValueError
            roles = sorted(getattr(acquisition, "roles", {}) or {})
            found = list(getattr(acquisition, "channel_names", []) or [])
            raise ChannelRoleError(
                f"marker channel {m!r} not found in {getattr(acquisition, 'path', 'the image')}: "
                f"roles {roles}, channels {found}. Name the channel (e.g. --channels "
                f"PRM1=1,PNA=2) or choose markers among these."
            ) from exc
    if hasattr(acquisition, "pixel_size_at"):
        px = acquisition.pixel_size_at(level)
    else:
        px = getattr(acquisition, "pixel_size_um", None) if level == 0 else None
    return quantify(
        chans, labels, ring_px=ring_px, pixel_size_um=px, tile=tile, progress=progress,
        cancel=cancel, cache_labels_mb=cache_labels_mb, threads=threads, boxes=boxes,
    )  # fmt: skip


# --------------------------------------------------------------------------- internals
#: labels whose median box covers more of the image than this are not cells (see _check_compact)
_MAX_MEDIAN_BOX_FRACTION = 0.1


#: pixels added on every side of a given box (``quantify(boxes=...)``): a mask pasted into a
#: detector's fractional box may reach a pixel past it
BOX_MARGIN = 1


def _hint_boxes(table: Any, shape: tuple[int, int]) -> _tiles.LabelBoxes:
    """``quantify(boxes=...)`` as :class:`~._tiles.LabelBoxes`: whole pixels, widened by
    :data:`BOX_MARGIN`, clipped to the image; ids ascending."""
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    id_col = "label_id" if "label_id" in df.columns else "id"
    missing = [c for c in (id_col, "x0", "y0", "x1", "y1") if c not in df.columns]
    if missing:
        raise ValueError(
            f"boxes: missing column(s) {missing}; expected label_id (or id), x0, y0, x1, y1 in "
            f"pixels (a detection table), got {list(df.columns)}"
        )
    ids = df[id_col].to_numpy()
    coords = df[["y0", "y1", "x0", "x1"]].to_numpy(np.float64)
    if len(ids) and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 1):
        raise ValueError("boxes: label ids must be integers >= 1")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("boxes: each label id may appear once")
    if not np.isfinite(coords).all():
        raise ValueError("boxes: x0, y0, x1, y1 must be finite pixel coordinates")
    h, w = shape
    lo = np.floor(coords[:, [0, 2]]).astype(np.int64) - BOX_MARGIN
    hi = np.ceil(coords[:, [1, 3]]).astype(np.int64) + BOX_MARGIN
    y0, x0 = np.clip(lo[:, 0], 0, h), np.clip(lo[:, 1], 0, w)
    y1, x1 = np.clip(hi[:, 0], 0, h), np.clip(hi[:, 1], 0, w)
    keep = (y1 > y0) & (x1 > x0)  # boxes outside the image hold no pixel of it
    order = np.argsort(ids[keep], kind="stable")
    return _tiles.LabelBoxes(*(a[keep][order] for a in (ids.astype(np.int64), y0, y1, x0, x1)))


def _check_compact(boxes: _tiles.LabelBoxes, shape: tuple[int, int]) -> None:
    """Refuse "labels" that are an intensity image: its values scatter over the whole image,
    so nearly every id's box spans most of it; cells of a label image never overlap, so 50 or
    more of them cannot each have a box covering a tenth of the image."""
    if len(boxes) < 50:
        return
    area = (boxes.y1 - boxes.y0).astype(np.float64) * (boxes.x1 - boxes.x0)
    frac = float(np.median(area)) / max(float(shape[0]) * float(shape[1]), 1.0)
    if frac > _MAX_MEDIAN_BOX_FRACTION:
        raise AcquisitionError(
            f"the labels do not look like cells: {len(boxes)} ids whose median bounding box "
            f"covers {100 * frac:.0f} % of the image (cells cover well under 1 % each). Is this "
            "an intensity channel? Pass a label image (a detection result, NGFF labels)."
        )


def _check_ring(ring_px: Sequence[int]) -> tuple[int, int]:
    try:
        gap, width = (int(v) for v in ring_px)
    except (TypeError, ValueError):
        raise ValueError(
            f"ring_px must be (gap, width) in pixels, e.g. (2, 6); got {ring_px!r}"
        ) from None
    if gap < 0 or width < 1:
        raise ValueError(f"ring_px needs gap >= 0 and width >= 1 pixels; got {ring_px!r}")
    return gap, width


def _canvas_label_dtype(top: int) -> np.dtype:
    """The narrowest unsigned type holding label ids ``0..top``, for the streamed regions'
    labels (half the bytes of int32 to copy and scan for the usual < 65536 cells). Outside the
    image they are padded with the type's largest value: any non-zero value works, as a cell's
    pixels are looked for inside its box only and its ring among label-0 pixels only. Ids
    beyond uint32 use int64 padded with -1 (numba compares uint64 with int64 in float64)."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


#: below this many cells a region is measured on one thread
_MIN_CELLS_PER_THREAD = 256


def _default_threads() -> int:
    """The CPU cores this process may use (its affinity where the OS tells it), 1 to 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _measure_region(
    lab: np.ndarray,
    chans: np.ndarray | list[np.ndarray],
    names: list[str],
    plan: _tiles.RegionPlan,
    boxes: _tiles.LabelBoxes,
    gap: int,
    width: int,
    threads: int = 1,
) -> dict[str, np.ndarray]:
    """Measure all cells of one region with the compiled kernels (:mod:`._kernels`).

    ``lab`` and ``chans`` (a list of (Y, X) arrays, or one (C, Y, X) array) are the region
    ``plan.region``, padded outside the image with a non-zero label (-1, or the unsigned type's
    largest value); each cell's crop starts ``gap + width`` pixels above and left of its
    bounding box. Cells are taken in raster order of their boxes (consecutive cells share rows of the region
    in cache: 2-3x faster than label order on a 2k tile); with ``threads > 1`` the order is cut
    into bands measured side by side (the kernels release the GIL; each cell's numbers do not
    depend on the cut).
    """
    cells = plan.cells[np.lexsort((boxes.x0[plan.cells], boxes.y0[plan.cells]))]
    measure = functools.partial(_measure_cells, lab, chans, names, plan, boxes, gap, width)
    k = max(1, min(int(threads), len(cells) // _MIN_CELLS_PER_THREAD))
    if k == 1:
        return measure(cells)
    parts = list(_tiles.worker_pool().map(measure, np.array_split(cells, k)))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _measure_cells(
    lab: np.ndarray,
    chans: np.ndarray | list[np.ndarray],
    names: list[str],
    plan: _tiles.RegionPlan,
    boxes: _tiles.LabelBoxes,
    gap: int,
    width: int,
    cells: np.ndarray,
) -> dict[str, np.ndarray]:
    """:func:`_measure_region` for the cells ``cells`` (indices into ``boxes``), in that order.

    Channels of one dtype are measured together (one kernel call, each cell's geometry found
    once); a (C, H, W) array of channels (as the stream assembles them) is used as it is.
    """
    radius = gap + width
    ry0, rx0 = plan.region[0].start, plan.region[1].start
    n = len(cells)
    ids = boxes.values[cells].astype(np.int64)  # as in `lab` (codes of cached labels)
    by = (boxes.y0[cells] - ry0).astype(np.int64)  # box corner in region pixels
    bx = (boxes.x0[cells] - rx0).astype(np.int64)
    bh = (boxes.y1[cells] - boxes.y0[cells]).astype(np.int64)
    bw = (boxes.x1[cells] - boxes.x0[cells]).astype(np.int64)
    k_outer, k_gap = _kernels.disk_half_widths(gap, radius)
    lab = np.ascontiguousarray(lab)
    area, sy, sx, ring_n = (np.zeros(n, np.int64) for _ in range(4))
    ext = np.empty((n, 4), np.int64)  # the cells' exact boxes (the given ones may be larger)
    # flat offsets of one cell's pixels and ring (int32 halves the memory: regions < 2**31 px)
    crop = int(((bh + 2 * radius) * (bw + 2 * radius)).max(initial=1))
    offs = np.empty(crop, np.int32 if lab.size < 2**31 else np.int64)
    stats: dict[int, tuple[np.ndarray, ...]] = {}
    # no channel: one call with none still measures the geometry
    groups = _channel_groups(chans) or [([], np.zeros((0, *lab.shape), np.uint16))]
    for group, stack in groups:
        shift, is_int = _value_kind(stack.dtype)
        out = tuple(np.empty((len(group), n)) for _ in range(5))
        _kernels.measure_cells(
            lab, stack, ids, by, bx, bh, bw, k_outer, k_gap, shift, is_int, offs, area, sy, sx,
            ring_n, ext, *out,
        )  # fmt: skip
        for row, c in enumerate(group):
            stats[c] = tuple(o[row] for o in out)
    oy, ox = by - radius + ry0, bx - radius + rx0  # crop corner in image pixels
    with np.errstate(divide="ignore", invalid="ignore"):  # hinted ids without pixels: dropped
        cols = {
            "label_id": boxes.ids[cells],
            "area_px": area,
            # sums of image indices / area: the same whatever box the crop started from
            "centroid_y_px": (oy * area + sy) / area,
            "centroid_x_px": (ox * area + sx) / area,
            "bbox_x0": ox + ext[:, 2],
            "bbox_y0": oy + ext[:, 0],
            "bbox_x1": ox + ext[:, 3],
            "bbox_y1": oy + ext[:, 1],
            "ring_area_px": ring_n,
        }
        for c, name in enumerate(names):
            cols.update(_marker_columns(name, area, *stats[c]))
    return cols


def _channel_groups(chans: np.ndarray | list[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
    """Channels grouped by dtype as ``(indices, (C, H, W) array)``; bool channels as uint8.
    A (C, H, W) array is one group as it is."""
    if isinstance(chans, np.ndarray) and chans.ndim == 3:
        stack = chans.view(np.uint8) if chans.dtype == bool else chans
        return [(list(range(len(chans))), np.ascontiguousarray(stack))]
    planes = [np.asarray(c) for c in chans]
    planes = [p.view(np.uint8) if p.dtype == bool else p for p in planes]
    by_dtype: dict[np.dtype, list[int]] = {}
    for i, p in enumerate(planes):
        by_dtype.setdefault(p.dtype, []).append(i)
    return [(idx, np.stack([planes[i] for i in idx])) for idx in by_dtype.values()]


def _value_kind(dtype: np.dtype) -> tuple[int, bool]:
    """``(shift, is_int)`` for the kernels: <= 16-bit integers are shifted into 0..65535 for
    the radix-selected medians (``shift >= 0``); others get -1."""
    kind, size = dtype.kind, dtype.itemsize
    shift = (1 << (8 * size - 1) if kind == "i" else 0) if kind in "iu" and size <= 2 else -1
    return shift, kind in "iu"


def _marker_columns(
    name: str,
    area: np.ndarray,
    total: np.ndarray,
    med: np.ndarray,
    bg: np.ndarray,
    bg_mean: np.ndarray,
    bg_sd: np.ndarray,
) -> dict[str, np.ndarray]:
    """The :data:`MEASURES` of one channel from the kernels' per-cell statistics."""
    del bg_mean  # the ring's mean is not a column (its median is the background)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / area
        sbr = np.where(bg > 0, mean / bg, np.nan)
    return {
        f"{name}_mean": mean,
        f"{name}_median": med,
        f"{name}_integrated": total,
        f"{name}_background": bg,
        f"{name}_background_sd": bg_sd,
        f"{name}_mean_bgsub": mean - bg,
        f"{name}_integrated_bgsub": total - bg * area,
        f"{name}_sbr": sbr,
    }


_GEOMETRY = (
    "label_id",
    "area_px",
    "centroid_y_px",
    "centroid_x_px",
    "bbox_x0",
    "bbox_y0",
    "bbox_x1",
    "bbox_y1",
    "ring_area_px",
)


def _to_table(
    parts: list[dict[str, np.ndarray]], names: list[str], pixel_size_um: float | None
) -> pd.DataFrame:
    """Concatenate the regions' columns into one table sorted by label id."""
    marker_cols = [f"{n}_{m}" for n in names for m in MEASURES]
    keys = [*_GEOMETRY, *marker_cols]
    if parts:
        data = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    else:
        data = {k: np.zeros(0, np.int64 if k in _GEOMETRY[:1] else np.float64) for k in keys}
    order = np.argsort(data["label_id"], kind="stable")
    df = pd.DataFrame({k: data[k][order] for k in keys})
    ints = [k for k in _GEOMETRY if k not in ("centroid_y_px", "centroid_x_px")]
    df = df.astype(dict.fromkeys(ints, np.int64))
    if pixel_size_um is not None:
        px = float(pixel_size_um)
        at = df.columns.get_loc("ring_area_px") + 1
        df.insert(at, "area_um2", df["area_px"] * px * px)
        df.insert(at, "centroid_x_um", df["centroid_x_px"] * px)
        df.insert(at, "centroid_y_um", df["centroid_y_px"] * px)
    return df
