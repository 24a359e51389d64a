"""Read OME-TIFF and plain TIFF (incl. pyramids: SubIFDs, multi-series levels), metadata only.

Pixel data goes through ``TiffPageSeries.aszarr()``: a zarr 3 store whose chunks are the TIFF
tiles or strips, so a dask block reads only the tiles under it. bioio-ome-tiff is not used for
the data: it makes one dask block per whole (Z, Y, X) volume and reads level 0 only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from napari_hrs.errors import AcquisitionError
from napari_hrs.io._raw import RGB_NAMES, RawImage, to_um
from napari_hrs.io._zarr import _plain_axes

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")


def is_tiff(path: Path) -> bool:
    """Whether ``path`` is a file with a TIFF suffix (``.tif``, ``.ome.tiff``, ``.btf`` ...)."""
    return path.is_file() and path.suffix.lower() in TIFF_SUFFIXES


def _ome_image(xml: str | None, index: int) -> dict[str, Any]:
    """Channel names and physical size of OME Image ``index`` (namespace-agnostic)."""
    if not xml:
        return {}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    images = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Image"]
    if index >= len(images):
        return {}
    pixels = next((el for el in images[index] if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return {}
    channels = [el for el in pixels if el.tag.endswith("Channel")]
    size = None
    for a in "XY":
        value = pixels.get(f"PhysicalSize{a}")
        if value is not None:
            # the OME schema's default unit is the micrometre
            size = to_um(float(value), pixels.get(f"PhysicalSize{a}Unit", "µm"))
            if size is not None:
                break
    return {
        "names": [ch.get("Name") or "" for ch in channels],
        "pixel_size_um": size,
        "name": images[index].get("Name"),
    }


def _resolution_size(tif: tifffile.TiffFile, page: Any) -> float | None:
    """Pixel size from ImageJ metadata or the resolution tags, when given in a length unit."""
    try:
        xres = page.resolution[0]
    except (AttributeError, IndexError, TypeError):
        return None
    if not xres or xres <= 0:
        return None
    ij = tif.imagej_metadata or {}
    if ij.get("unit"):
        return to_um(1.0 / xres, {"micron": "um", "\\u00B5m": "um"}.get(ij["unit"], ij["unit"]))
    unit = getattr(page, "resolutionunit", None)
    # INCH (2) and NONE (1) are what writers put by default (72 dpi): not a pixel size
    um_per_unit = {3: 1e4, 4: 1e3, 5: 1.0}.get(int(unit) if unit is not None else 1)
    return None if um_per_unit is None else to_um(um_per_unit / xres, "um")


def _is_rgb(series: Any, n_c: int) -> bool:
    """Whether a series is a colour camera's RGB(A) picture: photometric RGB, 8-bit, its 3 or 4
    samples interleaved per pixel (axes ``...YXS``). Planar or 16-bit "RGB" files are what
    tifffile writes by default for any (3 | 4, Y, X) stack, fluorescence included: not colour."""
    try:
        photometric = series.keyframe.photometric
    except AttributeError:
        return False
    return (
        photometric == tifffile.PHOTOMETRIC.RGB
        and series.axes.upper().endswith("S")
        and np.dtype(series.dtype) == np.uint8
        and n_c in (3, 4)
    )


def _axes(series: Any, path: Path) -> str:
    letters = series.axes.upper()
    if "C" not in letters and letters.count("S") == 1:
        letters = letters.replace("S", "C")  # RGB / planar samples are the channels
    axes = letters.lower()
    known = set("tczyx")
    unknown = [(a, n) for a, n in zip(axes, series.shape, strict=True) if a not in known]
    if unknown and all(n == 1 for _, n in unknown):
        return axes
    if unknown:
        # plain TIFF stacks: tifffile calls the extra axis Q/I; fall back to the ndim rule
        squeezed = tuple(n for n in series.shape if n > 1)
        if len(squeezed) == len(series.shape):
            return _plain_axes(tuple(series.shape), None, path)
        raise AcquisitionError(
            f"{path}: TIFF axes {series.axes} with shape {series.shape} are not understood"
        )
    return axes


def open_tiff(path: Path, scene: int | str | None = None) -> RawImage:
    """Read the metadata of a TIFF / OME-TIFF and wrap its series as lazy zarr arrays.

    Parameters
    ----------
    path : Path
        The TIFF file.
    scene : int or str, optional
        Series (OME Image) index or name; default the first.
    """
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise AcquisitionError(f"{path}: not a readable TIFF file ({exc})") from exc
    try:
        series_list = [s for s in tif.series if s.shape and len(s.shape) >= 2]
        if not series_list:
            raise AcquisitionError(f"{path}: the TIFF file holds no image")
        names = [s.name or str(i) for i, s in enumerate(series_list)]
        if scene is None:
            idx = 0
        elif isinstance(scene, str) and scene in names:
            idx = names.index(scene)
        elif isinstance(scene, int) and not isinstance(scene, bool) and 0 <= scene < len(names):
            idx = scene
        else:
            raise AcquisitionError(
                f"{path}: scene {scene!r} not found; the file has {len(names)} series {names}; "
                f"pass scene=<0..{len(names) - 1}> or a name (--scene on the command line)"
            )
        series = series_list[idx]
        axes = _axes(series, path)
        store = series.aszarr(multiscales=True)
        group = zarr.open_group(store, mode="r")
        levels = [group[str(i)] for i in range(len(series.levels))]
        if levels[0].shape != tuple(series.shape):
            raise AcquisitionError(
                f"{path}: TIFF series shape {series.shape} != zarr view {levels[0].shape}"
            )
        is_ome = bool(tif.is_ome)
        meta = _ome_image(tif.ome_metadata, tif.series.index(series)) if is_ome else {}
        n_c = dict(zip(axes, series.shape, strict=True)).get("c", 1)
        names_found = meta.get("names") or []
        if not is_ome and tif.is_imagej:
            names_found = (tif.imagej_metadata or {}).get("Labels") or []
        channel_names = (
            [str(n) for n in names_found] if len(names_found) == n_c and all(names_found) else None
        )
        rgb = _is_rgb(series, n_c)
        if rgb and channel_names is None:
            channel_names = list(RGB_NAMES[:n_c])
        pixel_size = meta.get("pixel_size_um") if is_ome else None
        if pixel_size is None and not is_ome:
            pixel_size = _resolution_size(tif, series.keyframe)
    except AcquisitionError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise AcquisitionError(f"{path}: cannot read the TIFF layout ({exc})") from exc
    tif.filehandle.close()  # the zarr store reopens the file when a chunk is read
    return RawImage(
        levels=levels,
        axes=axes,
        channel_names=channel_names,
        pixel_size_um=pixel_size,
        scene=names[idx] if len(series_list) > 1 else None,
        format="ome-tiff" if is_ome else ("imagej-tiff" if tif.is_imagej else "tiff"),
        metadata={"tiff_series": idx, "tiff_axes": series.axes, "rgb": rgb},
        closers=[store.close, tif.close],
    )
