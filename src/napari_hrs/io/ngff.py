"""Write OME-Zarr (NGFF 0.4, zarr format 2): image and label groups, metadata, pyramids.

Small helpers shared by the synthetic generator and by code that saves detection results:

- :func:`create_image` makes an image group (``c, y, x`` arrays, ``omero`` channel metadata);
- :func:`create_labels` makes a label image, inside an existing OME-Zarr (``labels/<name>``,
  never touching the image arrays) or as a standalone zarr at a new path;
- :func:`labels_writer` does the same atomically (sibling temporary directory, then
  ``os.replace``) and builds the pyramid on success;
- :func:`fill_pyramid` computes levels 1..n from level 0 chunk by chunk (2x mean for images,
  stride-2 nearest for labels), so memory stays bounded by a few chunks.

Axes are ``(C, Y, X)`` for images and ``(Y, X)`` for labels; scales are in micrometres.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import Blosc

from napari_hrs.errors import AcquisitionError, Cancelled

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]
NGFF_VERSION = "0.4"
#: a level is added while the smaller side of the last one is at least this (pixels)
MIN_PYRAMID_SIDE = 512


def n_levels_for(shape_yx: Sequence[int], min_side: int = MIN_PYRAMID_SIDE) -> int:
    """Number of 2x levels: halve until the smaller side is below ``min_side`` (at least 1)."""
    n, side = 1, min(shape_yx)
    while side >= min_side:
        side = -(-side // 2)
        n += 1
    return n


def _level_shape(shape: Sequence[int], level: int) -> tuple[int, ...]:
    s = list(shape)
    for _ in range(level):
        s[-2], s[-1] = -(-s[-2] // 2), -(-s[-1] // 2)
    return tuple(s)


def write_multiscales_metadata(
    group: zarr.Group,
    *,
    axes: str,
    n_levels: int,
    pixel_size_um: float | None = None,
    name: str = "",
) -> None:
    """Set NGFF 0.4 ``multiscales`` on ``group`` for datasets ``"0"..str(n_levels - 1)``.

    Parameters
    ----------
    axes : str
        ``"cyx"`` or ``"yx"``.
    pixel_size_um : float, optional
        Level-0 pixel size in µm; without it the scale is in pixels (no unit).
    """
    px = 1.0 if pixel_size_um is None else float(pixel_size_um)
    ax: list[dict[str, Any]] = []
    for a in axes:
        entry: dict[str, Any] = {"name": a, "type": "channel" if a == "c" else "space"}
        if a != "c" and pixel_size_um is not None:
            entry["unit"] = "micrometer"
        ax.append(entry)
    datasets = []
    for i in range(n_levels):
        scale = [1.0 if a == "c" else px * 2**i for a in axes]
        datasets.append(
            {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    group.attrs["multiscales"] = [
        {
            "version": NGFF_VERSION,
            "name": name,
            "axes": ax,
            "datasets": datasets,
            "type": "mean" if "c" in axes else "nearest",
        }
    ]


def _new_array(group: zarr.Group, name: str, shape, chunks, dtype) -> zarr.Array:
    return group.create_array(
        name=name,
        shape=tuple(shape),
        chunks=tuple(chunks),
        dtype=dtype,
        fill_value=0,
        compressors=Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE),
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )


def _make_levels(group, shape, chunks, dtype, n_levels) -> zarr.Array:
    arrays = [
        _new_array(group, str(i), _level_shape(shape, i), chunks, dtype) for i in range(n_levels)
    ]
    return arrays[0]


def create_image(
    path: str | os.PathLike,
    shape_cyx: Sequence[int],
    *,
    chunks: Sequence[int],
    dtype: str = "uint16",
    pixel_size_um: float | None = None,
    n_levels: int = 1,
    channel_names: Sequence[str] = (),
    colors: Sequence[str] = (),
    windows: Sequence[tuple[float, float]] = (),
    name: str = "",
) -> zarr.Group:
    """Create an empty OME-Zarr image group at a new ``path`` (levels ``"0"..``, ``(C, Y, X)``).

    ``chunks`` is ``(cy, cx)`` (one channel per chunk). Use it inside
    :func:`napari_hrs.io.export._atomic.atomic_target` for an atomic write.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; choose a new path (or remove it first)")
    root = zarr.open_group(store=str(path), mode="w", zarr_format=2)
    _make_levels(root, shape_cyx, (1, *chunks), dtype, n_levels)
    write_multiscales_metadata(
        root, axes="cyx", n_levels=n_levels, pixel_size_um=pixel_size_um, name=name
    )
    if channel_names:
        chans = []
        for i, label in enumerate(channel_names):
            lo, hi = windows[i] if i < len(windows) else (0, 65535)
            chans.append(
                {
                    "label": label,
                    "color": colors[i] if i < len(colors) else "FFFFFF",
                    "active": True,
                    "window": {"start": lo, "end": hi, "min": 0, "max": 65535},
                }
            )
        root.attrs["omero"] = {
            "version": NGFF_VERSION,
            "channels": chans,
            "rdefs": {"model": "color"},
        }
    return root


def _is_image(path: Path) -> bool:
    if not path.is_dir():
        return False
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception:
        return False
    return isinstance(node, zarr.Group) and bool(node.attrs.get("multiscales"))


def _label_target(image_or_store_path: Path, name: str) -> tuple[Path, bool]:
    """(directory of the label group, whether it lives inside an image)."""
    if _is_image(image_or_store_path):
        if not name or "/" in name or name.startswith("."):
            raise AcquisitionError(f"label name {name!r} is not a plain name; pass e.g. 'cells'")
        return image_or_store_path / "labels" / name, True
    return image_or_store_path, False


def _init_label_group(
    target: Path, name: str, shape_yx, chunks, dtype, pixel_size_um, n_levels, attrs
) -> zarr.Array:
    group = zarr.open_group(store=str(target), mode="w", zarr_format=2)
    level0 = _make_levels(group, shape_yx, chunks, dtype, n_levels)
    write_multiscales_metadata(
        group, axes="yx", n_levels=n_levels, pixel_size_um=pixel_size_um, name=name
    )
    group.attrs["image-label"] = {"version": NGFF_VERSION, **(attrs or {})}
    return level0


def _register(image: Path, name: str) -> None:
    labels = zarr.open_group(store=str(image / "labels"), mode="a", zarr_format=2)
    names = [str(n) for n in labels.attrs.get("labels", [])]
    if name not in names:
        labels.attrs["labels"] = [*names, name]


def create_labels(
    image_or_store_path: str | os.PathLike,
    name: str,
    shape_yx: Sequence[int],
    *,
    chunks: Sequence[int],
    dtype: str = "uint32",
    pixel_size_um: float | None = None,
    n_levels: int = 1,
    overwrite: bool = False,
    image_label: dict[str, Any] | None = None,
) -> zarr.Array:
    """Create an empty NGFF label image and return its level-0 array ``(Y, X)``.

    Parameters
    ----------
    image_or_store_path : path
        An existing OME-Zarr image (the labels go to ``labels/<name>`` and are listed in
        ``labels/.zattrs``; the image arrays are not touched) or a new path (a standalone
        label zarr).
    chunks : (int, int)
        Chunk shape in pixels.
    overwrite : bool
        Replace an existing label image of that name.

    Fill level 0, then call :func:`fill_pyramid` on ``array``'s group (or use
    :func:`labels_writer`, which does both atomically).
    """
    path = Path(image_or_store_path)
    target, inside = _label_target(path, name)
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True or another name")
        shutil.rmtree(target)
    arr = _init_label_group(
        target, name, shape_yx, chunks, dtype, pixel_size_um, n_levels, image_label
    )
    if inside:
        _register(path, name)
    return arr


@contextmanager
def labels_writer(
    image_or_store_path: str | os.PathLike,
    name: str,
    shape_yx: Sequence[int],
    *,
    chunks: Sequence[int],
    dtype: str = "uint32",
    pixel_size_um: float | None = None,
    n_levels: int = 1,
    overwrite: bool = False,
    image_label: dict[str, Any] | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Iterator[zarr.Array]:
    """Like :func:`create_labels`, atomically: yield level 0 of a label image being written in
    a sibling temporary directory; on success build the pyramid and move it into place."""
    path = Path(image_or_store_path)
    target, inside = _label_target(path, name)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True or another name")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        arr = _init_label_group(
            tmp, name, shape_yx, chunks, dtype, pixel_size_um, n_levels, image_label
        )
        yield arr
        fill_pyramid(zarr.open_group(store=str(tmp), mode="r+"), "labels", progress, cancel)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        if inside:
            _register(path, name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _downsample(block: np.ndarray, kind: str, dtype: np.dtype) -> np.ndarray:
    if kind == "labels":
        return block[..., ::2, ::2]
    h, w = block.shape[-2:]
    if h % 2 or w % 2:  # odd edge: replicate the last row / column
        pad = [(0, 0)] * (block.ndim - 2) + [(0, h % 2), (0, w % 2)]
        block = np.pad(block, pad, mode="edge")
    b = block.astype(np.float64)
    s = b.shape
    m = b.reshape(*s[:-2], s[-2] // 2, 2, s[-1] // 2, 2).mean(axis=(-3, -1))
    return np.rint(m).astype(dtype) if np.issubdtype(dtype, np.integer) else m.astype(dtype)


def fill_pyramid(
    group: zarr.Group,
    kind: str = "image",
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> None:
    """Compute levels 1..n of an NGFF group from level 0, one output chunk at a time.

    ``kind`` is ``"image"`` (2x2 mean) or ``"labels"`` (stride-2 nearest).
    """
    if kind not in ("image", "labels"):
        raise ValueError(f"kind must be 'image' or 'labels', not {kind!r}")
    paths = [d["path"] for d in group.attrs["multiscales"][0]["datasets"]]
    jobs = []
    for i in range(1, len(paths)):
        dst = group[paths[i]]
        cy, cx = dst.chunks[-2:]
        for y in range(0, dst.shape[-2], cy):
            for x in range(0, dst.shape[-1], cx):
                jobs.append((i, y, x, cy, cx))
    for done, (i, y, x, cy, cx) in enumerate(jobs, start=1):
        if cancel is not None and cancel():
            raise Cancelled("pyramid computation cancelled")
        src, dst = group[paths[i - 1]], group[paths[i]]
        y1, x1 = min(y + cy, dst.shape[-2]), min(x + cx, dst.shape[-1])
        lead = (slice(None),) * (src.ndim - 2)
        block = src[(*lead, slice(2 * y, 2 * y1), slice(2 * x, 2 * x1))]
        dst[(*lead, slice(y, y1), slice(x, x1))] = _downsample(block, kind, dst.dtype)
        if progress is not None:
            progress(done, len(jobs))
