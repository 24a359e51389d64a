"""Write OME-Zarr (NGFF 0.4, zarr format 2): image and label groups, metadata, pyramids.

Shared by the synthetic generator and by code that saves detection results. Everything is
written chunk by chunk (memory bounded by a few chunks, whatever the image size) and atomically
(into a hidden sibling directory, renamed into place on success; an existing image is never
overwritten unless asked, and adding labels never opens the image arrays for writing).

- :func:`image_writer` / :func:`create_image`: an image group, ``(C, Y, X)`` levels ``"0"..``,
  ``multiscales`` with scales in micrometres and ``omero`` channel names, colours and windows;
- :func:`labels_writer` / :func:`create_labels`: a label image ``(Y, X)`` inside an existing
  OME-Zarr (``labels/<name>``, listed in ``labels/.zattrs``) or as a standalone zarr;
- :func:`fill_pyramid`: levels 1..n from level 0, one output chunk at a time (2x2 mean for
  images, stride-2 nearest for labels); the writers call it on success.

Example: add detection labels to an existing image, tile by tile::

    from napari_hrs.io import ngff

    with ngff.labels_writer("slide.ome.zarr", "detections", (ny, nx), chunks=(1024, 1024),
                            pixel_size_um=0.325) as level0:
        for y, x, tile in tiles:                   # uint32 (h, w) label tiles
            level0[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    # slide.ome.zarr/labels/detections now holds levels 0..n, listed in labels/.zattrs

and a new three-channel image::

    with ngff.image_writer("out.ome.zarr", (3, ny, nx), chunks=(1024, 1024), pixel_size_um=0.325,
                           channel_names=["brightfield", "PRM1", "PNA"],
                           colors=["FFFFFF", "00FF00", "FF00FF"]) as root:
        root["0"][:, y0:y1, x0:x1] = block             # uint16 (C, h, w)
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


def level_shape(shape: Sequence[int], level: int) -> tuple[int, ...]:
    """Shape of pyramid ``level`` (the last two axes halved ``level`` times, rounding up)."""
    s = list(shape)
    for _ in range(level):
        s[-2], s[-1] = -(-s[-2] // 2), -(-s[-1] // 2)
    return tuple(s)


def pyramid_chunk_count(shape: Sequence[int], chunks_yx: Sequence[int], n_levels: int) -> int:
    """Output chunks :func:`fill_pyramid` writes (levels 1..n-1), for progress totals."""
    total = 0
    for i in range(1, n_levels):
        ly, lx = level_shape(shape, i)[-2:]
        total += -(-ly // chunks_yx[0]) * -(-lx // chunks_yx[1])
    return total


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


def _check(shape: Sequence[int], chunks: Sequence[int], ndim: int, what: str, px) -> None:
    if len(shape) != ndim or min(shape) < 1:
        axes = "(C, Y, X)" if ndim == 3 else "(Y, X)"
        raise ValueError(f"{what} shape {tuple(shape)} is not a {axes} shape; pass {ndim} sizes")
    if len(chunks) != 2 or min(chunks) < 1:
        raise ValueError(f"chunks {tuple(chunks)} must be (cy, cx) pixels, e.g. (1024, 1024)")
    if px is not None and not float(px) > 0:
        raise ValueError(f"pixel_size_um {px!r} must be a positive size in µm (or None)")


def _new_array(group: zarr.Group, name: str, shape, chunks, dtype) -> zarr.Array:
    return group.create_array(
        name=name,
        shape=tuple(shape),
        chunks=tuple(min(c, s) for c, s in zip(chunks, shape, strict=True)),
        dtype=dtype,
        fill_value=0,
        compressors=Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE),
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )


def _make_levels(group, shape, chunks, dtype, n_levels) -> zarr.Array:
    arrays = [
        _new_array(group, str(i), level_shape(shape, i), chunks, dtype) for i in range(n_levels)
    ]
    return arrays[0]


def create_image(
    path: str | os.PathLike,
    shape_cyx: Sequence[int],
    dtype: str = "uint16",
    *,
    chunks: Sequence[int],
    pixel_size_um: float | None = None,
    n_levels: int | None = None,
    channel_names: Sequence[str] = (),
    colors: Sequence[str] = (),
    windows: Sequence[tuple[float, float]] = (),
    name: str = "",
) -> zarr.Group:
    """Create an empty OME-Zarr image group at a new ``path`` and return it.

    Parameters
    ----------
    shape_cyx : (int, int, int)
        Level-0 shape ``(C, Y, X)``, pixels.
    chunks : (int, int)
        ``(cy, cx)`` chunk shape in pixels (one channel per chunk).
    pixel_size_um : float, optional
        Level-0 pixel size, µm (the scale of level ``i`` is ``pixel_size_um * 2**i``).
    n_levels : int, optional
        Pyramid levels; default :func:`n_levels_for` (halve until the smaller side < 512).
    channel_names, colors, windows
        ``omero`` metadata per channel: name, hex colour (``"FF00FF"``), display window.

    Fill ``group["0"]`` and call :func:`fill_pyramid`, or use :func:`image_writer`, which
    writes aside and renames into place.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; choose a new path (or remove it first)")
    _check(shape_cyx, chunks, 3, "image", pixel_size_um)
    if channel_names and len(channel_names) != shape_cyx[0]:
        raise ValueError(
            f"{len(channel_names)} channel names {list(channel_names)} for {shape_cyx[0]} "
            "channels; pass one name per channel"
        )
    n = n_levels_for(shape_cyx[1:]) if n_levels is None else int(n_levels)
    root = zarr.open_group(store=str(path), mode="w", zarr_format=2)
    _make_levels(root, shape_cyx, (1, *chunks), dtype, n)
    write_multiscales_metadata(root, axes="cyx", n_levels=n, pixel_size_um=pixel_size_um, name=name)
    if channel_names:
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
        top = float(info.max) if info is not None else 1.0
        chans = []
        for i, label in enumerate(channel_names):
            lo, hi = windows[i] if i < len(windows) else (0.0, top)
            chans.append(
                {
                    "label": str(label),
                    "color": colors[i] if i < len(colors) else "FFFFFF",
                    "active": True,
                    "window": {"start": lo, "end": hi, "min": 0.0, "max": top},
                }
            )
        root.attrs["omero"] = {
            "version": NGFF_VERSION,
            "channels": chans,
            "rdefs": {"model": "color"},
        }
    return root


def _sibling(target: Path, tag: str) -> Path:
    return target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}")


def _move_into_place(tmp: Path, target: Path) -> None:
    if target.exists():
        old = _sibling(target, "old")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


@contextmanager
def image_writer(
    path: str | os.PathLike,
    shape_cyx: Sequence[int],
    dtype: str = "uint16",
    *,
    chunks: Sequence[int],
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    **kwargs: Any,
) -> Iterator[zarr.Group]:
    """Write a new OME-Zarr image atomically: yield the root group of a hidden sibling
    directory (fill ``group["0"]``, ``(C, Y, X)``); on success compute the pyramid and rename it
    to ``path``. On an error or :class:`~napari_hrs.errors.Cancelled` nothing is left behind.

    ``kwargs`` are those of :func:`create_image`; ``progress(done, total)`` and ``cancel()``
    cover the pyramid. An existing ``path`` is replaced only with ``overwrite``.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True or choose another path")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "partial")
    try:
        root = create_image(tmp, shape_cyx, dtype, chunks=chunks, **kwargs)
        yield root
        fill_pyramid(root, "image", progress, cancel)
        _move_into_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def _label_attrs(image_label, properties, colors) -> dict[str, Any]:
    attrs: dict[str, Any] = {"version": NGFF_VERSION, **(image_label or {})}
    if properties:
        attrs["properties"] = [{"label-value": int(k), **dict(v)} for k, v in properties.items()]
    if colors:
        attrs["colors"] = [{"label-value": int(k), "rgba": list(v)} for k, v in colors.items()]
    return attrs


def _init_label_group(target: Path, name: str, shape_yx, chunks, dtype, px, n_levels, attrs):
    _check(shape_yx, chunks, 2, "label", px)
    n = n_levels_for(shape_yx) if n_levels is None else int(n_levels)
    group = zarr.open_group(store=str(target), mode="w", zarr_format=2)
    level0 = _make_levels(group, shape_yx, chunks, dtype, n)
    write_multiscales_metadata(group, axes="yx", n_levels=n, pixel_size_um=px, name=name)
    group.attrs["image-label"] = attrs
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
    n_levels: int | None = None,
    overwrite: bool = False,
    image_label: dict[str, Any] | None = None,
    properties: dict[int, dict[str, Any]] | None = None,
    colors: dict[int, Sequence[int]] | None = None,
) -> zarr.Array:
    """Create an empty NGFF label image and return its level-0 array ``(Y, X)``.

    Parameters
    ----------
    image_or_store_path : path
        An existing OME-Zarr image (the labels go to ``labels/<name>`` and are listed in
        ``labels/.zattrs``; the image arrays are not touched) or a new path (a standalone
        label zarr).
    shape_yx, chunks : (int, int)
        Level-0 shape and chunk shape, pixels.
    n_levels : int, optional
        Pyramid levels; default :func:`n_levels_for`.
    overwrite : bool
        Replace an existing label image of that name.
    image_label : dict, optional
        Extra ``image-label`` metadata (e.g. ``{"source": {"image": "../../"}}``).
    properties, colors : dict, optional
        Per label value: NGFF ``properties`` (e.g. ``{3: {"class": "round_spermatid"}}``) and
        ``rgba`` colours (0-255).

    Fill level 0, then call :func:`fill_pyramid` on the group (or use :func:`labels_writer`,
    which does both atomically).
    """
    path = Path(image_or_store_path)
    target, inside = _label_target(path, name)
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True or another name")
        shutil.rmtree(target)
    attrs = _label_attrs(image_label, properties, colors)
    arr = _init_label_group(target, name, shape_yx, chunks, dtype, pixel_size_um, n_levels, attrs)
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
    n_levels: int | None = None,
    overwrite: bool = False,
    image_label: dict[str, Any] | None = None,
    properties: dict[int, dict[str, Any]] | None = None,
    colors: dict[int, Sequence[int]] | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Iterator[zarr.Array]:
    """Like :func:`create_labels`, atomically: yield level 0 of a label image being written in
    a hidden sibling directory; on success build the pyramid, rename it into place and only
    then list it in ``labels/.zattrs``. ``progress`` / ``cancel`` cover the pyramid."""
    path = Path(image_or_store_path)
    target, inside = _label_target(path, name)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True or another name")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "partial")
    attrs = _label_attrs(image_label, properties, colors)
    try:
        arr = _init_label_group(tmp, name, shape_yx, chunks, dtype, pixel_size_um, n_levels, attrs)
        yield arr
        fill_pyramid(zarr.open_group(store=str(tmp), mode="r+"), "labels", progress, cancel)
        _move_into_place(tmp, target)
        if inside:
            _register(path, name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def downsample(block: np.ndarray, kind: str) -> np.ndarray:
    """One 2x pyramid step of ``block`` (``(..., Y, X)``): ``"image"`` 2x2 mean (odd edges
    replicated, integers rounded), ``"labels"`` stride-2 nearest."""
    if kind == "labels":
        return block[..., ::2, ::2]
    h, w = block.shape[-2:]
    if h % 2 or w % 2:  # odd edge: replicate the last row / column
        pad = [(0, 0)] * (block.ndim - 2) + [(0, h % 2), (0, w % 2)]
        block = np.pad(block, pad, mode="edge")
    s = block.shape
    m = block.astype(np.float32).reshape(*s[:-2], s[-2] // 2, 2, s[-1] // 2, 2).mean(axis=(-3, -1))
    if np.issubdtype(block.dtype, np.integer):
        return np.rint(m).astype(block.dtype)
    return m.astype(block.dtype)


def fill_pyramid(
    group: zarr.Group,
    kind: str = "image",
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> None:
    """Compute levels 1..n of an NGFF group from level 0, one output chunk at a time.

    ``kind`` is ``"image"`` (2x2 mean) or ``"labels"`` (stride-2 nearest). Level ``i`` is read
    from level ``i - 1`` in blocks of twice the output chunk, so memory stays bounded.
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
            raise Cancelled("pyramid computation cancelled; nothing was written")
        src, dst = group[paths[i - 1]], group[paths[i]]
        y1, x1 = min(y + cy, dst.shape[-2]), min(x + cx, dst.shape[-1])
        lead = (slice(None),) * (src.ndim - 2)
        block = src[(*lead, slice(2 * y, 2 * y1), slice(2 * x, 2 * x1))]
        dst[(*lead, slice(y, y1), slice(x, x1))] = downsample(block, kind)
        if progress is not None:
            progress(done, len(jobs))
