"""Label images: a new NGFF zarr, ``labels/<name>`` inside an OME-Zarr, or a tiled TIFF."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.errors import AcquisitionError
from napari_hrs.io.export._atomic import (
    Cancel,
    PathLike,
    Progress,
    _check_target,
    _json_default,
    _tick,
    atomic_target,
)


def _as_labels(labels: Any) -> Any:
    """A lazy ``(Y, X)`` integer dask array from an array, a pyramid list, or a zarr array."""
    import dask.array as da

    if isinstance(labels, (list, tuple)):
        if not labels:
            raise ValueError("an empty list of label levels; pass a (Y, X) integer array")
        labels = labels[0]
    arr = labels if isinstance(labels, da.Array) else da.asarray(labels)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"labels must be (Y, X); got shape {tuple(arr.shape)}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"labels must be an integer image (cell ids, 0 = background); got dtype {arr.dtype}. "
            "Pass a labels layer, not an intensity image."
        )
    return arr


def _blocks(shape: tuple[int, int], tile: int) -> list[tuple[slice, slice]]:
    h, w = shape
    return [(slice(y, min(y + tile, h)), slice(x, min(x + tile, w)))
            for y in range(0, h, tile) for x in range(0, w, tile)]  # fmt: skip


def save_labels_tiff(
    labels: Any,
    path: PathLike,
    *,
    pixel_size_um: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Write a ``(Y, X)`` label image as a tiled, zlib-compressed (Big)TIFF, band by band.

    The pixel size (µm) goes into the TIFF resolution tags (pixels per cm) and, with the
    ``metadata`` (provenance), into the JSON ``ImageDescription``.
    """
    import tifffile

    arr = _as_labels(labels)
    h, w = (int(s) for s in arr.shape)
    tile = 256
    n_bands = -(-h // tile)
    desc = {"axes": "YX", "pixel_size_um": pixel_size_um, "napari_hrs": dict(metadata or {})}
    res = {}
    if pixel_size_um:
        res = {"resolution": (1e4 / pixel_size_um, 1e4 / pixel_size_um),
               "resolutionunit": "CENTIMETER"}  # fmt: skip

    def tiles() -> Iterator[np.ndarray]:
        for b, y in enumerate(range(0, h, tile)):
            _tick(progress, cancel, b, n_bands)
            band = np.asarray(arr[y : y + tile].compute(scheduler="threads"))
            for x in range(0, w, tile):
                yield band[:, x : x + tile]

    with atomic_target(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(
            tmp, data=tiles(), shape=(h, w), dtype=arr.dtype, tile=(tile, tile),
            compression="zlib", bigtiff=h * w * arr.dtype.itemsize > 2**31 - 2**25,
            description=json.dumps(desc, default=_json_default), metadata=None, **res,
        )  # fmt: skip
        _tick(progress, cancel, n_bands, n_bands)
    return Path(path)


def _level_shape(shape: tuple[int, ...], level: int) -> tuple[int, ...]:
    """Shape of pyramid level ``level`` (each level halves, rounding up)."""
    return tuple(-(-int(s) // 2**level) for s in shape)


def _fill(dst: Any, arr: Any, chunk: int, tick: Callable[[int], None]) -> None:
    """Copy ``arr`` into the zarr array ``dst`` block by block (empty blocks are skipped)."""
    for k, sl in enumerate(_blocks(tuple(int(s) for s in arr.shape), chunk)):
        block = np.asarray(arr[sl].compute(scheduler="threads"))
        if block.any():
            dst[sl] = block
        tick(k + 1)


def _via_ngff(arr: Any, where: Path, name: str, *, pixel_size_um: float | None,
              metadata: Mapping[str, Any] | None, overwrite: bool, chunk: int,
              progress: Progress | None, cancel: Cancel | None) -> Path:  # fmt: skip
    """Write with :func:`napari_hrs.io.ngff.labels_writer` (NGFF 0.4): a new label zarr at
    ``where``, or ``labels/<name>`` when ``where`` is an NGFF 0.4 image."""
    import zarr

    from napari_hrs.io import ngff

    shape = tuple(int(s) for s in arr.shape)
    chunks = (min(chunk, shape[0]), min(chunk, shape[1]))
    n_levels = ngff.n_levels_for(shape)
    n0 = len(_blocks(shape, chunk))
    total = n0 + sum(  # output chunks of the pyramid levels (what fill_pyramid reports)
        -(-lv[0] // chunks[0]) * -(-lv[1] // chunks[1])
        for lv in (_level_shape(shape, i) for i in range(1, n_levels))
    )
    inside = _is_image(where, 2)
    label_attrs = {"source": {"image": "../../"}} if inside else {}
    with ngff.labels_writer(
        where, name, shape, chunks=chunks, dtype=arr.dtype.name, pixel_size_um=pixel_size_um,
        n_levels=n_levels, overwrite=overwrite, image_label=label_attrs, cancel=cancel,
        progress=None if progress is None else (lambda d, t: progress(n0 + d, total)),
    ) as level0:  # fmt: skip
        _fill(level0, arr, chunk, lambda k: _tick(progress, cancel, k, total))
        group = zarr.open_group(store=level0.store, mode="r+", zarr_format=2)
        group.attrs["napari_hrs"] = json.loads(json.dumps(dict(metadata or {}), default=_json_default))  # fmt: skip
    return where / "labels" / name if inside else where


def _is_image(path: Path, zarr_format: int | None = None) -> bool:
    """Whether ``path`` is an OME-Zarr image group (multiscales, not a label image)."""
    import zarr

    from napari_hrs.io._zarr import ome_attrs

    if not path.is_dir():
        return False
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:  # not a zarr group
        return False
    if zarr_format is not None and int(group.metadata.zarr_format) != zarr_format:
        return False
    attrs = ome_attrs(group)
    return bool(attrs.get("multiscales")) and "image-label" not in attrs


def save_labels_zarr(
    labels: Any,
    path: PathLike,
    *,
    name: str | None = None,
    pixel_size_um: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    chunk: int = 1024,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Write a ``(Y, X)`` label image as a new NGFF 0.4 label zarr (2x pyramid), atomically.

    Parameters
    ----------
    labels : (Y, X) integer array or list of levels
    path : path
        The new zarr group (``labels.zarr``); an existing one is replaced only with ``overwrite``.
    pixel_size_um : float, optional
        Level-0 pixel size (µm) for the NGFF scale transforms.
    metadata : mapping, optional
        Provenance, stored under the ``napari_hrs`` attribute.
    chunk : int
        Chunk edge in pixels.
    """
    arr = _as_labels(labels)
    target = _check_target(path, overwrite)
    if _is_image(target):
        raise FileExistsError(f"{target} is an OME-Zarr image; pass another path, or use "
                              "save_labels_ngff to add labels inside it")  # fmt: skip
    # labels_writer writes aside too, but would add labels *inside* an existing label zarr
    with atomic_target(target, overwrite=overwrite) as tmp:
        _via_ngff(arr, tmp, name or target.name.split(".")[0], pixel_size_um=pixel_size_um,
                  metadata=metadata, overwrite=False, chunk=int(chunk), progress=progress,
                  cancel=cancel)  # fmt: skip
    return target


def _write_v3(arr: Any, image: Path, name: str, *, pixel_size_um: float | None,
              metadata: Mapping[str, Any] | None, overwrite: bool, chunk: int,
              progress: Progress | None, cancel: Cancel | None) -> Path:  # fmt: skip
    """``labels/<name>`` inside an NGFF 0.5 (zarr v3) image (:mod:`napari_hrs.io.ngff` writes
    NGFF 0.4 only): same layout, 2x nearest pyramid, written aside and renamed into place."""
    import dask.array as da
    import zarr

    from napari_hrs.io import ngff
    from napari_hrs.io._zarr import ome_attrs

    shape = tuple(int(s) for s in arr.shape)
    shapes = [_level_shape(shape, i) for i in range(ngff.n_levels_for(shape))]
    total = sum(len(_blocks(s, chunk)) for s in shapes)
    target = image / "labels" / name
    done = 0

    def tick(_k: int) -> None:
        nonlocal done
        done += 1
        _tick(progress, cancel, done, total)

    with atomic_target(target, overwrite=overwrite) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        src = arr
        for i, lshape in enumerate(shapes):
            dst = group.create_array(str(i), shape=lshape, dtype=arr.dtype, fill_value=0,
                                     chunks=(min(chunk, lshape[0]), min(chunk, lshape[1])))  # fmt: skip
            _fill(dst, src, chunk, tick)
            src = da.from_zarr(dst)[::2, ::2]
        unit = {"unit": "micrometer"} if pixel_size_um else {}
        base = pixel_size_um or 1.0
        ms = {"name": name, "axes": [{"name": a, "type": "space", **unit} for a in "yx"],
              "datasets": [{"path": str(i), "coordinateTransformations": [
                  {"type": "scale", "scale": [base * 2**i, base * 2**i]}]}
                  for i in range(len(shapes))]}  # fmt: skip
        group.attrs.update({"ome": {"version": "0.5", "multiscales": [ms],
                                    "image-label": {"source": {"image": "../../"}}},
                            "napari_hrs": dict(metadata or {})})  # fmt: skip
    lab_group = zarr.open_group(str(image / "labels"), mode="a", zarr_format=3)
    lattrs = ome_attrs(lab_group)
    names = [n for n in lattrs.get("labels", []) if n != name] + [name]
    lab_group.attrs.update({"ome": {**lattrs, "version": "0.5", "labels": names}})
    return target


def save_labels_ngff(
    labels: Any,
    image: PathLike,
    name: str = "detections",
    *,
    pixel_size_um: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    chunk: int = 1024,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Add a label image as ``labels/<name>`` inside an OME-Zarr image (NGFF 0.4 or 0.5).

    The image arrays are never opened for writing; the label group is written aside, renamed
    into place, and only then listed in ``labels``'s attributes. NGFF 0.4 images are written
    with :func:`napari_hrs.io.ngff.labels_writer`.

    Parameters
    ----------
    image : path
        The OME-Zarr image group (the one holding ``multiscales``), e.g. ``slide.ome.zarr``.
    name : str
        Label image name; an existing one is replaced only with ``overwrite``.
    """
    import zarr

    from napari_hrs.io._zarr import ome_attrs

    image = Path(image)
    try:
        group = zarr.open_group(str(image), mode="r")
    except Exception as exc:  # not a zarr group
        raise AcquisitionError(f"{image} is not a zarr group ({exc}); pick an OME-Zarr image or "
                               "export to a new .zarr / .tif") from exc  # fmt: skip
    if not ome_attrs(group).get("multiscales"):
        raise AcquisitionError(f"{image} has no NGFF 'multiscales' image; pick the image group "
                               "of an OME-Zarr or export to a new .zarr / .tif")  # fmt: skip
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"label name {name!r} is not a plain name; pass e.g. 'detections'")
    _check_target(image / "labels" / name, overwrite)
    kw = {"pixel_size_um": pixel_size_um, "metadata": metadata, "overwrite": overwrite,
          "chunk": int(chunk), "progress": progress, "cancel": cancel}  # fmt: skip
    arr = _as_labels(labels)
    if int(group.metadata.zarr_format) == 3:
        return _write_v3(arr, image, name, **kw)
    return _via_ngff(arr, image, name, **kw)


def save_labels(labels: Any, path: PathLike, **kwargs: Any) -> Path:
    """Write labels by the path's suffix: ``.tif`` / ``.tiff`` -> TIFF, ``.zarr`` -> NGFF zarr.

    Keyword arguments go to :func:`save_labels_tiff` or :func:`save_labels_zarr`.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        return save_labels_tiff(labels, path, **kwargs)
    if suffix == ".zarr":
        return save_labels_zarr(labels, path, **kwargs)
    raise ValueError(f"{path}: unknown label format {suffix or '(no suffix)'!r}; "
                     "use a .zarr or .tif path")  # fmt: skip


def drop_labels(labels: Any, ids: Any) -> Any:
    """``labels`` with the given ids set to 0 (background), lazily (a dask ``(Y, X)`` array).

    Used to export only the cells shown, e.g. those above a score threshold.
    """
    arr = _as_labels(labels)
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    if not len(ids):
        return arr

    def block(b: np.ndarray) -> np.ndarray:
        return np.where(np.isin(b, ids), 0, b).astype(b.dtype, copy=False)

    return arr.map_blocks(block, dtype=arr.dtype)
