"""npe2 writer: a Labels layer -> ``.zarr`` (an NGFF label image, 2x pyramid) or ``.tif``.

Calls :func:`napari_hrs.io.export.save_labels`: the file is written aside and renamed into
place, with the pixel size (µm, from the reader's layer metadata) and provenance (plugin
version, layer, source image, detection run) in its metadata. No napari or Qt import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SUFFIXES = (".zarr", ".tif", ".tiff")


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one labels layer; returns the path written.

    Parameters
    ----------
    path : str
        Target ending in ``.zarr``, ``.tif`` or ``.tiff`` (``.zarr`` is appended when there is
        no suffix).
    data : (Y, X) integer array, or a list of them (multiscale: level 0 is written)
    meta : dict
        The layer attributes napari passes (``name``, ``metadata``, ...).
    """
    from napari_hrs.io.export import provenance, save_labels

    target = Path(path)
    if not target.suffix:
        target = target.with_suffix(".zarr")
    if target.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{target.name}: napari-hrs writes labels as {', '.join(SUFFIXES)}; "
                         "choose one of these")  # fmt: skip
    layer_meta = dict(meta.get("metadata") or {})
    px = layer_meta.get("pixel_size_um")
    prov = provenance(layer=meta.get("name"), source=layer_meta.get("acquisition_path"),
                      detection=layer_meta.get("hrs_detection"))  # fmt: skip
    out = save_labels(data, target, pixel_size_um=float(px) if px else None, metadata=prov,
                      overwrite=True)  # fmt: skip
    return [str(out)]
