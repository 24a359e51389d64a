"""Label images: a new NGFF zarr, ``labels/<name>`` inside an OME-Zarr, or a tiled TIFF."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.errors import AcquisitionError
from napari_hrs.io.export._atomic import (
    Cancel,
    PathLike,
    Progress,
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
            band = np.asarray(arr[y : y + tile].compute())
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


def _write_pyramid(group: Any, arr: Any, chunk: int, progress: Progress | None,
                   cancel: Cancel | None) -> list[str]:  # fmt: skip
    """Write ``arr`` as ``0`` and its 2x nearest-neighbour levels ``1, 2, ...`` into ``group``."""
    import dask.array as da

    shapes = [tuple(int(s) for s in arr.shape)]
    while max(shapes[-1]) > chunk and min(shapes[-1]) >= 2:
        shapes.append(tuple(-(-s // 2) for s in shapes[-1]))
    total = sum(len(_blocks(s, chunk)) for s in shapes)
    done, src, paths = 0, arr, []
    for i, shape in enumerate(shapes):
        dst = group.create_array(str(i), shape=shape, dtype=arr.dtype, fill_value=0,
                                 chunks=(min(chunk, shape[0]), min(chunk, shape[1])))  # fmt: skip
        for sl in _blocks(shape, chunk):
            block = np.asarray(src[sl].compute())
            if block.any():
                dst[sl] = block
            done += 1
            _tick(progress, cancel, done, total)
        paths.append(str(i))
        src = da.from_zarr(dst)[::2, ::2]
    return paths


def _ngff_attrs(name: str, paths: list[str], pixel_size_um: float | None, zarr_format: int,
                source: bool, metadata: Mapping[str, Any] | None) -> dict:  # fmt: skip
    unit = {"unit": "micrometer"} if pixel_size_um else {}
    base = pixel_size_um or 1.0
    ms = {"name": name,
          "axes": [{"name": a, "type": "space", **unit} for a in "yx"],
          "datasets": [{"path": p, "coordinateTransformations": [
              {"type": "scale", "scale": [base * 2**i, base * 2**i]}]} for i, p in enumerate(paths)]}  # fmt: skip
    label = {"source": {"image": "../../"}} if source else {}
    extra = {"napari_hrs": dict(metadata or {})}
    if zarr_format == 3:
        return {"ome": {"version": "0.5", "multiscales": [ms], "image-label": label}, **extra}
    return {"multiscales": [{"version": "0.4", **ms}],
            "image-label": {"version": "0.4", **label}, **extra}  # fmt: skip


def save_labels_zarr(
    labels: Any,
    path: PathLike,
    *,
    name: str | None = None,
    pixel_size_um: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    chunk: int = 1024,
    zarr_format: int = 3,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    _source: bool = False,
) -> Path:
    """Write a ``(Y, X)`` label image as a new NGFF label image (multiscale, 2x pyramid).

    Parameters
    ----------
    labels : (Y, X) integer array or list of levels
    path : path
        The new zarr group (``labels.zarr``).
    pixel_size_um : float, optional
        Level-0 pixel size (µm) for the NGFF scale transforms.
    metadata : mapping, optional
        Provenance, stored under the ``napari_hrs`` attribute.
    zarr_format : 2 or 3
        NGFF 0.4 (zarr v2) or 0.5 (zarr v3).
    """
    import zarr

    arr = _as_labels(labels)
    target = Path(path)
    with atomic_target(target, overwrite=overwrite) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=zarr_format)
        paths = _write_pyramid(group, arr, int(chunk), progress, cancel)
        group.attrs.update(_ngff_attrs(name or target.name.split(".")[0], paths, pixel_size_um,
                                       zarr_format, _source, metadata))  # fmt: skip
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
    into place, and only then listed in ``labels``'s attributes.

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
    attrs = ome_attrs(group)
    if not attrs.get("multiscales"):
        raise AcquisitionError(f"{image} has no NGFF 'multiscales' image; pick the image group "
                               "of an OME-Zarr or export to a new .zarr / .tif")  # fmt: skip
    fmt = int(group.metadata.zarr_format)
    arr = _as_labels(labels)
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"label name {name!r} is not a plain name; pass e.g. 'detections'")
    out = save_labels_zarr(arr, image / "labels" / name, name=name, pixel_size_um=pixel_size_um,
                           metadata=metadata, overwrite=overwrite, chunk=chunk, zarr_format=fmt,
                           progress=progress, cancel=cancel, _source=True)  # fmt: skip
    lab_group = zarr.open_group(str(image / "labels"), mode="a", zarr_format=fmt)
    lattrs = ome_attrs(lab_group)
    names = [n for n in lattrs.get("labels", []) if n != name] + [name]
    if fmt == 3:
        lab_group.attrs.update({"ome": {**lattrs, "version": "0.5", "labels": names}})
    else:
        lab_group.attrs.update({"labels": names})
    return out


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
