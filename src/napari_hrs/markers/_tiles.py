"""Tiled reading for :mod:`napari_hrs.markers.quantify`: sources, label boxes, region plans.

All coordinates are pixels of the (Y, X) image; regions are ``(slice_y, slice_x)`` and may reach
outside the image (the missing part is padded).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_hrs.errors import AcquisitionError, HRSError, PixelReadError
from napari_hrs.io.direct import direct_reader
from napari_hrs.markers import _kernels

#: crops (box + ring radius) are planned rounded up to a multiple of this many pixels (a margin)
CROP_STEP = 8


@dataclass(frozen=True)
class Source:
    """A (Y, X) view of a numpy / dask / zarr array (leading axes of size 1 dropped)."""

    array: Any
    prefix: tuple[int, ...]
    shape: tuple[int, int]
    dtype: np.dtype
    is_dask: bool
    what: str = "array"

    @classmethod
    def of(cls, array: Any, what: str) -> Source:
        """``array`` as a source; a dask array with a direct store reader is read through it
        (:func:`napari_hrs.io.direct.direct_reader`: one call per tile, same values)."""
        if not hasattr(array, "shape") or not hasattr(array, "__getitem__"):
            array = np.asarray(array)
        array = direct_reader(array) or array
        shape = tuple(int(s) for s in array.shape)
        if len(shape) < 2 or any(s != 1 for s in shape[:-2]):
            raise AcquisitionError(
                f"{what} must be a 2-D (Y, X) array; got shape {shape}. Pass one channel / one "
                "plane (e.g. acquisition.channel('PRM1'))."
            )
        return cls(
            array=array,
            prefix=(0,) * (len(shape) - 2),
            shape=(shape[-2], shape[-1]),
            dtype=np.dtype(array.dtype),
            is_dask=hasattr(array, "dask") and hasattr(array, "compute"),
            what=what,
        )

    def lazy(self, ys: slice, xs: slice) -> Any:
        return self.array[(*self.prefix, ys, xs)]


def read_region(
    sources: list[Source],
    region: tuple[slice, slice],
    shape: tuple[int, int],
    pads: tuple,
    signed: bool = True,
) -> list[np.ndarray]:
    """Read ``region`` of every source as numpy, padding what lies outside the image.

    ``pads[0]`` fills the first source (the labels: -1, after casting unsigned labels to a signed
    type when ``signed``), ``pads[1]`` the others. Dask sources are computed together (threaded
    decompression); several store readers (zarr) are read side by side on threads. Pixels that
    cannot be read (a truncated or corrupted file) raise an :class:`AcquisitionError` naming the
    source and the rows / columns.
    """
    ys, xs = region
    cy = slice(max(ys.start, 0), min(ys.stop, shape[0]))
    cx = slice(max(xs.start, 0), min(xs.stop, shape[1]))
    try:
        out = _read(sources, cy, cx)
    except HRSError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever tifffile / zarr / numcodecs raise
        raise _read_error(sources, cy, cx, exc) from exc
    if signed:
        out[0] = _signed_labels(out[0])
    pad = ((cy.start - ys.start, ys.stop - cy.stop), (cx.start - xs.start, xs.stop - cx.stop))
    if any(v for p in pad for v in p):
        out = [np.pad(a, pad, constant_values=pads[0] if i == 0 else pads[1]) for i, a in enumerate(out)]  # fmt: skip
    return out


def read_region_into(source: Source, region: tuple[slice, slice], out: np.ndarray) -> None:
    """``out[...] =`` the pixels of ``region`` (inside the image) of ``source``, decoded
    straight into ``out`` (a writable view; values cast to its dtype) where the source's store
    reader can (``read_into``: chunk by chunk, :mod:`napari_hrs.io.chunks`), else read as a tile
    and copied; errors as :func:`read_region` (a :class:`PixelReadError` naming the source)."""
    ys, xs = region
    if source.is_dask or not hasattr(source.array, "read_into"):
        out[...] = read_region([source], region, source.shape, pads=(0,), signed=False)[0]
        return
    try:
        source.array.read_into((*source.prefix, ys, xs), out)
    except HRSError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever tifffile / zarr / numcodecs raise
        raise _read_error([source], ys, xs, exc) from exc


def _read_error(sources: list[Source], cy: slice, cx: slice, exc: Exception) -> PixelReadError:
    """The error for pixels of ``sources`` that cannot be read, naming the culprit(s)."""
    bad = [s.what for s in sources if not _readable(s, cy, cx)] or [s.what for s in sources]
    return PixelReadError(
        f"cannot read the pixels of {' / '.join(bad)} at rows {cy.start}-{cy.stop}, columns "
        f"{cx.start}-{cx.stop} (a truncated or corrupted file?): {exc}",
        what=bad[0],
    )


def _readable(source: Source, cy: slice, cx: slice) -> bool:
    """Whether ``source`` alone can be read at (cy, cx) (to name the culprit of a failure)."""
    try:
        np.asarray(source.lazy(cy, cx))
        return True
    except Exception:  # noqa: BLE001
        return False


def _read(sources: list[Source], cy: slice, cx: slice) -> list[np.ndarray]:
    stores = [
        i for i, s in enumerate(sources) if not (s.is_dask or isinstance(s.array, np.ndarray))
    ]
    lazies = [s.lazy(cy, cx) if i not in stores else None for i, s in enumerate(sources)]
    if len(stores) > 1:  # zarr stores: read side by side (decoding releases the GIL)
        done = worker_pool().map(lambda i: np.asarray(sources[i].lazy(cy, cx)), stores)
        for i, arr in zip(stores, done, strict=True):
            lazies[i] = arr
    else:
        for i in stores:
            lazies[i] = sources[i].lazy(cy, cx)
    dask_at = [i for i, s in enumerate(sources) if s.is_dask]
    if dask_at:
        import dask

        done = dask.compute(*[lazies[i] for i in dask_at], scheduler="threads")
        for i, arr in zip(dask_at, done, strict=True):
            lazies[i] = arr
    return [np.asarray(a) for a in lazies]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def worker_pool() -> ThreadPoolExecutor:
    """The threads of marker quantification (shared, created on first use): reading several
    stores of a tile side by side, measuring bands of a region's cells side by side. Their
    tasks never wait on each other."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hrs-markers")
        return _POOL


def _signed_labels(lab: np.ndarray) -> np.ndarray:
    if lab.dtype == bool:
        return lab.astype(np.int32)
    if lab.dtype.kind == "u":
        big = lab.dtype.itemsize >= 4 and lab.size and int(lab.max()) >= 2**31
        return lab.astype(np.int64 if big else np.int32)
    return lab


def tile_grid(shape: tuple[int, int], tile: int | tuple[int, int]) -> list[tuple[slice, slice]]:
    """Tiles of ``tile`` pixels (an int or (Y, X) sizes) covering a (Y, X) image, row-major."""
    ty, tx = (tile, tile) if isinstance(tile, int) else tile
    return [
        (slice(y, min(y + ty, shape[0])), slice(x, min(x + tx, shape[1])))
        for y in range(0, shape[0], ty)
        for x in range(0, shape[1], tx)
    ]


@dataclass(frozen=True)
class LabelBoxes:
    """Bounding boxes (half-open, pixels) of every label id > 0, ids ascending.

    ``codes``: the value each cell has in the labels pass 2 reads, where that is not its id
    (the labels cached by pass 1 with their ids renumbered, see ``_LabelCache``)."""

    ids: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    codes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def values(self) -> np.ndarray:
        """Each cell's value in the labels that pass 2 reads (its code, else its id)."""
        return self.ids if self.codes is None else self.codes


def _tile_boxes(t: np.ndarray, oy: int, ox: int) -> tuple[np.ndarray, int]:
    """(K, 5) int64 rows ``id, y0, y1, x0, x1`` of the labels in one tile, and the largest id."""
    if t.dtype == bool:
        t = t.view(np.uint8)
    if t.dtype.kind == "i" and t.size and (lo := int(t.min())) < 0:
        raise AcquisitionError(f"labels must be >= 0 (0 = background); found {lo}.")
    hi = int(t.max()) if t.size else 0
    if hi == 0:
        return np.zeros((0, 5), np.int64), 0
    # boxes are kept per id of first..hi (16 bytes each): find `first` when the ids run high
    first = int(np.min(t, where=t > 0, initial=hi)) if hi > 1 << 22 else 1
    ids_map = None
    if hi - first > max(1 << 22, 4 * t.size):  # sparse huge ids: compact them first
        ids_map, inv = np.unique(t, return_inverse=True)
        t = inv.reshape(t.shape).astype(np.int64)
        if ids_map[0] != 0:
            ids_map = np.concatenate([[0], ids_map])
            t += 1
        first, top = 1, int(t.max())
    else:
        top = hi
    arr = _kernels.tile_boxes(t, first, top)
    if ids_map is not None:
        arr[:, 0] = ids_map[arr[:, 0]]
    arr[:, 1:3] += oy
    arr[:, 3:5] += ox
    return arr, hi


#: most label ids (largest id + 1) that the label cache renumbers through a lookup table
_CODE_IDS_MAX = 1 << 22


class _LabelCache:
    """The labels read in pass 1, kept for pass 2 while they fit ``budget`` bytes, in the
    smallest unsigned type that holds the ids seen so far.

    Ids beyond 65535 (uint32 storage) are renumbered 1..N instead (``codes``, ``lut``: id ->
    code, ids ascending as first seen), so that fewer than 65536 cells with large or sparse ids
    still take 2 bytes a pixel: sparse uint32 labels of an 8192² image (268 MB) fit the default
    budget that way, and are not decompressed a second time. Up to :data:`_CODE_IDS_MAX` as the
    largest id; beyond it the cache holds the ids themselves again.
    """

    def __init__(self, shape: tuple[int, int], budget: int) -> None:
        self.shape, self.budget = shape, budget
        self.array: np.ndarray | None = None
        self.ok = budget > 0
        self.lut: np.ndarray | None = None  # id -> code (0: not seen), while renumbering
        self.n_codes = 0
        self.seen: list[np.ndarray] = []  # ids of the tiles stored before renumbering
        self.may_code = True  # False once an id >= _CODE_IDS_MAX was seen

    def put(self, t: np.ndarray, ys: slice, xs: slice, hi: int, ids: np.ndarray) -> None:
        """Store tile ``t`` (at ``ys, xs``) whose largest id is ``hi`` and ids are ``ids``."""
        if not self.ok:
            return
        if hi >= _CODE_IDS_MAX:
            self.may_code = False
            if self.lut is not None:
                self._stop_codes()
        elif self.lut is None and hi > 0xFFFF and self.may_code:
            self._start_codes(hi)
        if self.lut is not None:
            self._add_codes(ids, hi)
            top = self.n_codes
        else:
            self.seen.append(ids)
            top = hi
        if not self._fit(top):
            return
        if self.lut is None:
            self.array[ys, xs] = t
        else:
            _kernels.lut_copy(t, self.lut, self.array[ys, xs])

    def codes(self, ids: np.ndarray) -> np.ndarray | None:
        """The codes of ``ids`` in :attr:`array`, None when it holds the ids themselves."""
        return None if self.lut is None else self.lut[ids].astype(np.int64)

    def _fit(self, top: int) -> bool:
        """Make :attr:`array` hold values up to ``top``; False (cache dropped) past the budget."""
        need = np.min_scalar_type(top)
        if need.kind != "u" or need.itemsize > 4:
            need = np.dtype(np.int64)
        if self.array is None or need.itemsize > self.array.dtype.itemsize:
            if self.shape[0] * self.shape[1] * need.itemsize > self.budget:
                self.ok, self.array, self.lut, self.seen = False, None, None, []
                return False
            if self.array is None:
                self.array = np.zeros(self.shape, need)
            else:
                self.array = self.array.astype(need)
        return True

    def _start_codes(self, hi: int) -> None:
        """Renumber: codes for the ids stored so far (ascending), the stored tiles recoded."""
        old = np.unique(np.concatenate(self.seen)) if self.seen else np.zeros(0, np.int64)
        self.lut = np.zeros(hi + 1, np.uint32)
        self.lut[old] = np.arange(1, len(old) + 1, dtype=np.uint32)
        self.n_codes, self.seen = len(old), []
        if self.array is not None:
            _kernels.lut_copy(self.array, self.lut, self.array)

    def _add_codes(self, ids: np.ndarray, hi: int) -> None:
        if hi >= len(self.lut):
            self.lut = np.concatenate([self.lut, np.zeros(hi + 1 - len(self.lut), np.uint32)])
        new = ids[self.lut[ids] == 0]
        self.lut[new] = np.arange(self.n_codes + 1, self.n_codes + 1 + len(new), dtype=np.uint32)
        self.n_codes += len(new)

    def _stop_codes(self) -> None:
        """Back to ids: the stored codes replaced by their ids (an id >= _CODE_IDS_MAX came)."""
        inv = np.zeros(self.n_codes + 1, np.int64)
        seen = np.flatnonzero(self.lut)
        inv[self.lut[seen]] = seen
        self.lut, self.n_codes = None, 0
        self.seen = [seen]
        if self.array is not None:
            arr = self.array
            self.array = None
            if self._fit(int(seen.max(initial=0))):
                _kernels.lut_copy(arr, inv, self.array)


def label_boxes(
    labels: Source,
    grid: list[tuple[slice, slice]],
    *,
    step: Callable[[], None],
    check: Callable[[], None],
    cache_bytes: int = 0,
    workers: int = 2,
) -> tuple[LabelBoxes, np.ndarray | None]:
    """Pass 1: bounding box of every label, reading the labels one tile at a time.

    ``workers`` threads each read (decompress) a tile and find its boxes, side by side (the
    reads and the compiled scan release the GIL); tiles are taken back in order, at most
    ``workers + 1`` of them in memory. Returns the boxes and, when the labels are lazy (dask /
    zarr) and fit ``cache_bytes``, the whole labels image as numpy so that pass 2 does not read
    (decompress) them again.
    """
    lazy = not isinstance(labels.array, np.ndarray)
    cache = _LabelCache(labels.shape, cache_bytes if lazy else 0)
    found = []

    def scan(k: int) -> tuple[np.ndarray, np.ndarray, int]:
        ys, xs = grid[k]
        t = read_region([labels], grid[k], labels.shape, pads=(0,), signed=False)[0]
        return (t, *_tile_boxes(t, ys.start, xs.start))

    n_workers = max(1, int(workers))
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        ahead = collections.deque(
            pool.submit(scan, k) for k in range(min(n_workers + 1, len(grid)))
        )
        try:
            for k, (ys, xs) in enumerate(grid):
                check()
                t, rows, hi = ahead.popleft().result()
                if k + len(ahead) + 1 < len(grid):
                    ahead.append(pool.submit(scan, k + len(ahead) + 1))
                found.append(rows)
                cache.put(t, ys, xs, hi, rows[:, 0])
                step()
        finally:  # cancelled or failed: do not read the tiles still queued
            for f in ahead:
                f.cancel()
    cached = cache.array if cache.ok else None
    rows = np.concatenate(found) if found else np.zeros((0, 5), np.int64)
    if not len(rows):
        e = np.zeros(0, np.int64)
        return LabelBoxes(e, e, e, e, e), cached
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    starts = np.flatnonzero(np.r_[True, rows[1:, 0] != rows[:-1, 0]])
    boxes = LabelBoxes(
        ids=rows[starts, 0],
        y0=np.minimum.reduceat(rows[:, 1], starts),
        y1=np.maximum.reduceat(rows[:, 2], starts),
        x0=np.minimum.reduceat(rows[:, 3], starts),
        x1=np.maximum.reduceat(rows[:, 4], starts),
        codes=cache.codes(rows[starts, 0]),  # None unless the cached labels hold codes
    )
    return boxes, cached


def crop_shape(boxes: LabelBoxes, cells: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop height and width of each cell: box + ``radius`` each side, rounded up to CROP_STEP."""
    h = boxes.y1[cells] - boxes.y0[cells] + 2 * radius
    w = boxes.x1[cells] - boxes.x0[cells] + 2 * radius
    return -(-h // CROP_STEP) * CROP_STEP, -(-w // CROP_STEP) * CROP_STEP


@dataclass(frozen=True)
class RegionPlan:
    """Pass 2 work item: the region to read and the cells (indices into LabelBoxes) it serves."""

    region: tuple[slice, slice]
    cells: np.ndarray


def plan_regions(
    boxes: LabelBoxes,
    tile: int,
    radius: int,
    shape: tuple[int, int],
    cells: np.ndarray | None = None,
) -> list[RegionPlan]:
    """Assign cells (default all) to the tile holding their box's top-left corner; one region
    per tile, read directly.

    A region covers the tile's cells' crops (so it may overhang the tile by the ring radius and
    by cells reaching into the next tiles); tiles without cells get no region.
    """
    cells = np.arange(len(boxes)) if cells is None else np.asarray(cells)
    if not len(cells):
        return []
    ntx = -(-shape[1] // tile)
    owner = (boxes.y0[cells] // tile) * ntx + boxes.x0[cells] // tile
    order = cells[np.argsort(owner, kind="stable")]
    owner = (boxes.y0[order] // tile) * ntx + boxes.x0[order] // tile
    cuts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1], True])
    hb, wb = crop_shape(boxes, np.arange(len(boxes)), radius)
    cy0, cx0 = boxes.y0 - radius, boxes.x0 - radius
    plans = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        cells = order[a:b]
        ys = slice(int(cy0[cells].min()), int((cy0[cells] + hb[cells]).max()))
        xs = slice(int(cx0[cells].min()), int((cx0[cells] + wb[cells]).max()))
        plans.append(RegionPlan((ys, xs), cells))
    return plans
