"""What a format reader hands to :func:`open_acquisition`, and the lazy plane selection.

A format reader (OME-Zarr, zarr, TIFF, bioio) returns a :class:`RawImage`: its levels as
n-D arrays (zarr arrays or dask arrays) with one axis letter per dimension. :func:`plane_levels`
turns them into ``(C, Y, X)`` dask arrays for one T/Z plane without reading any chunk: a zarr
array is wrapped in a :class:`_PlaneView` whose ``__getitem__`` translates a ``(C, Y, X)`` block
into an index of the stored array, so dask's graph has one task per output chunk and no extra
slicing layer (cheap even for 30000 x 30000 images).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from napari_hrs.errors import AcquisitionError
from napari_hrs.io.chunks import chunk_reader
from napari_hrs.io.direct import register_direct

#: channel names of a colour picture (RGB TIFF, PNG, JPEG...) whose file names none; the
#: readers set ``metadata["rgb"]`` so that green becomes the brightfield (io.roles)
RGB_NAMES: tuple[str, ...] = ("red", "green", "blue", "alpha")

#: micrometres per unit (NGFF axis units, OME PhysicalSizeXUnit)
_UM_PER_UNIT: dict[str, float] = {
    "micrometer": 1.0,
    "micrometre": 1.0,
    "micron": 1.0,
    "µm": 1.0,
    "μm": 1.0,  # Greek mu
    "um": 1.0,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "nm": 1e-3,
    "angstrom": 1e-4,
    "å": 1e-4,
    "picometer": 1e-6,
    "pm": 1e-6,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "mm": 1e3,
    "centimeter": 1e4,
    "cm": 1e4,
    "meter": 1e6,
    "metre": 1e6,
    "m": 1e6,
}

#: dask chunks smaller than this (pixels along Y or X) are grown (e.g. single-row TIFF strips)
MIN_CHUNK = 16


def to_um(value: float | None, unit: str | None) -> float | None:
    """``value`` in ``unit`` as micrometres; None when either is unknown or not a length."""
    if value is None or unit is None:
        return None
    factor = _UM_PER_UNIT.get(str(unit).strip().lower())
    if factor is None:
        return None
    out = float(value) * factor
    return out if math.isfinite(out) and out > 0 else None


@dataclass
class RawImage:
    """The image of one scene, as a format reader found it.

    ``levels`` are n-D arrays (zarr or dask), full resolution first, all with the axes
    ``axes`` (lower-case letters: ``t``, ``c``, ``z``, ``y``, ``x``; other letters are unknown
    axes that must have size 1).
    """

    levels: list[Any]
    axes: str
    channel_names: list[str] | None = None
    pixel_size_um: float | None = None
    level_scales: list[tuple[float, float]] | None = None
    scene: str | None = None
    format: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)
    token: str = ""

    def sizes(self) -> dict[str, int]:
        """Axis letter -> size at full resolution."""
        return dict(zip(self.axes, (int(s) for s in self.levels[0].shape), strict=True))


class _PlaneView:
    """A lazy ``(C, Y, X)`` (or, with ``c`` fixed, ``(Y, X)``) view of an n-D zarr array.

    ``fixed`` gives the index on every axis that is not in the output.
    """

    def __init__(self, array: Any, axes: str, fixed: dict[str, int]) -> None:
        self.array = array
        self.axes = axes
        self.fixed = fixed
        self.out = "yx" if "c" in fixed else "cyx"
        sizes = dict(zip(axes, array.shape, strict=True))
        self.shape = tuple(sizes.get(a, 1) for a in self.out)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.out)
        self._reader: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None}  # rebuilt where it is read (a dask worker)

    @property
    def reader(self) -> Any:
        """What reads the stored array: a :class:`~napari_hrs.io.chunks.ChunkReader` for a
        plain local zarr array (the same values, less CPU), else the array itself."""
        if self._reader is None:
            self._reader = chunk_reader(self.array) or self.array
        return self._reader

    @property
    def chunks(self) -> tuple[int, ...]:
        """Stored chunk sizes along the output axes."""
        sizes = _stored_chunks(self.array, self.axes)
        return tuple(sizes.get(a, 1) for a in self.out)

    def _index(self, key: tuple[slice, ...]) -> tuple[tuple[Any, ...], list[str]]:
        """The stored array's index for ``key`` (output axes) and the axes it keeps."""
        sel = dict(zip(self.out, key, strict=True))
        index = tuple(sel[a] if a in sel else self.fixed.get(a, 0) for a in self.axes)
        return index, [a for a, i in zip(self.axes, index, strict=True) if isinstance(i, slice)]

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        index, kept = self._index(key)
        out = np.asarray(self.reader[index])
        out = out.transpose([kept.index(a) for a in self.out if a in kept])
        return out[np.newaxis] if len(kept) < self.ndim else out

    def read_into(self, key: tuple[slice, ...], out: np.ndarray) -> None:
        """``out[...] = self[key]``, decoded straight into ``out`` when the stored axes are in
        the output's order and the reader can (a chunk reader)."""
        index, kept = self._index(key)
        into = getattr(self.reader, "read_into", None)
        if into is None or kept != [a for a in self.out if a in kept]:
            out[...] = self[key]
        elif out.ndim == len(kept):
            into(index, out)
        else:  # the output's axes that the stored array lacks or that are indexed: size 1
            into(index, out[tuple(slice(None) if a in kept else 0 for a in self.out)])


def _stored_chunks(array: Any, axes: str) -> dict[str, int]:
    """Axis letter -> stored chunk size (the whole axis when unchunked)."""
    stored = getattr(array, "chunks", None) or array.shape
    if isinstance(stored[0], tuple):  # a dask array: regular chunks -> first block size
        stored = tuple(c[0] for c in stored)
    return dict(zip(axes, (int(c) for c in stored), strict=True))


def _chunks(array: Any, axes: str) -> tuple[int, int]:
    """Dask chunks ``(cy, cx)`` following the stored chunks (grown when tiny)."""
    sizes = _stored_chunks(array, axes)
    full = dict(zip(axes, array.shape, strict=True))
    out = []
    for a in "yx":
        c = max(int(sizes[a]), 1)
        if c < MIN_CHUNK:
            c *= math.ceil(MIN_CHUNK / c)
        out.append(min(c, int(full[a])))
    return out[0], out[1]


def choose_plane(raw: RawImage, source: Path, t: int | None, z: int | None) -> dict[str, int]:
    """Indices on the non-(C, Y, X) axes of ``raw``; errors name sizes and what to pass."""
    sizes = raw.sizes()
    for needed in "yx":
        if needed not in sizes:
            raise AcquisitionError(f"{source}: the image has no {needed.upper()} axis ({raw.axes})")
    chosen: dict[str, int] = {}
    asked = {"t": t, "z": z}
    stacks = {a: n for a, n in sizes.items() if a in "tz" and n > 1}
    missing = [a for a in stacks if asked[a] is None]
    if missing:
        found = ", ".join(f"{a.upper()}={n}" for a, n in stacks.items())
        hint = " and ".join(f"{a}=<0..{stacks[a] - 1}>" for a in missing)
        raise AcquisitionError(
            f"{source}: this is a stack ({found}); choose one plane: pass {hint} (on the "
            f"command line: {' '.join(f'--{a} N' for a in missing)})"
        )
    for a, value in asked.items():
        n = sizes.get(a, 1)
        if value is None or (a not in sizes and value == 0):
            if a in sizes:
                chosen[a] = 0
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise AcquisitionError(f"{source}: {a}={value!r} must be an integer 0..{n - 1}")
        if not 0 <= value < n:
            raise AcquisitionError(
                f"{source}: {a}={value} is out of range; the file has {a.upper()}={n}, "
                f"pass {a}=<0..{n - 1}>"
            )
        chosen[a] = int(value)
    for a, n in sizes.items():
        if a not in "tczyx":
            if n > 1:
                raise AcquisitionError(
                    f"{source}: axis {a!r} of size {n} (axes {raw.axes}, shape "
                    f"{raw.levels[0].shape}) is not understood; expected T, C, Z, Y, X"
                )
            chosen[a] = 0
    return chosen


def _level_fixed(raw: RawImage, level: Any, plane: dict[str, int]) -> dict[str, int]:
    """``plane`` on one level: a 3-D pyramid may downsample Z too, so the index is scaled."""
    n0 = raw.sizes()
    sizes = dict(zip(raw.axes, level.shape, strict=True))
    return {a: min(int(v * sizes[a] / max(n0[a], 1)), sizes[a] - 1) for a, v in plane.items()}


def _dask_view(raw: RawImage, i: int, fixed: dict[str, int]) -> da.Array:
    return _dask_view_and_source(raw, i, fixed)[0]


def _dask_view_and_source(
    raw: RawImage, i: int, fixed: dict[str, int]
) -> tuple[da.Array, _PlaneView | None]:
    """The lazy view of level ``i`` and the store view its graph reads (None for dask levels)."""
    level = raw.levels[i]
    if isinstance(level, da.Array):
        order = [a for a in raw.axes if a not in fixed]
        arr = level[tuple(fixed.get(a, slice(None)) for a in raw.axes)]
        out = "yx" if "c" in fixed else "cyx"
        arr = arr.transpose([order.index(a) for a in out if a in order])
        return (arr if len(order) == len(out) else arr[np.newaxis]), None
    view = _PlaneView(level, raw.axes, fixed)
    cy, cx = _chunks(level, raw.axes)
    arr = da.from_array(
        view,
        chunks=(cy, cx) if view.ndim == 2 else (1, cy, cx),
        name="hrs-" + tokenize(raw.token, i, sorted(fixed.items()), level.shape),
        fancy=False,
        asarray=False,
        meta=np.empty((0,) * view.ndim, dtype=view.dtype),
    )
    return arr, view


def plane_levels(raw: RawImage, plane: dict[str, int]) -> list[da.Array]:
    """Lazy ``(C, Y, X)`` dask arrays of every level for ``plane`` (no chunk is read)."""
    return [_dask_view(raw, i, _level_fixed(raw, lv, plane)) for i, lv in enumerate(raw.levels)]


def channel_factory(raw: RawImage, plane: dict[str, int]) -> Callable[[int, int], da.Array]:
    """A function ``(level, c) -> (Y, X)`` dask array built directly on the store.

    Equal to ``plane_levels(raw, plane)[level][c]`` but with a graph of one layer, so reading a
    tile of a 30000 x 30000 channel costs milliseconds rather than walking every chunk's task.
    """

    def make(level: int, c: int) -> da.Array:
        fixed = _level_fixed(raw, raw.levels[level], plane)
        if "c" in raw.axes:
            fixed["c"] = c
        elif c != 0:
            raise IndexError(f"channel {c} of a single-channel image")
        arr, view = _dask_view_and_source(raw, level, fixed)
        out = arr if arr.ndim == 2 else arr[0]
        if view is not None:  # whole-tile readers (markers) can slice the store directly
            register_direct(out, view, () if arr.ndim == 2 else (0,))
        return out

    return make
