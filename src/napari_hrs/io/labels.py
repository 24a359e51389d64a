"""Read the NGFF label images (``labels/<name>``) that belong to an OME-Zarr acquisition, lazily.

A label image (ground truth, a detection result written by napari-hrs) is a multiscale integer
image next to the pixel data. This module only reads them; writing is :mod:`napari_hrs.io.ngff`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import zarr

from napari_hrs.errors import AcquisitionError
from napari_hrs.io._raw import RawImage, channel_factory
from napari_hrs.io._zarr import ome_attrs, open_node, parse_multiscale, pixel_size
from napari_hrs.io.acquisition import Acquisition


@dataclass
class LabelImage:
    """One NGFF label image for the acquisition's plane.

    Attributes
    ----------
    name : str
        The label group name (``labels/<name>``).
    levels : list of dask.array.Array
        Integer label arrays ``(Y, X)``, full resolution first.
    scale : tuple of float
        ``(y, x)`` size of one label pixel in acquisition level-0 pixels (1.0 when the label
        image has the acquisition's shape).
    metadata : dict
        The ``image-label`` metadata (colors, properties, source), if any.
    """

    name: str
    levels: list[da.Array]
    scale: tuple[float, float] = (1.0, 1.0)
    metadata: dict[str, Any] = field(default_factory=dict)


def _label_levels(node: zarr.Group, source: Path, plane: dict[str, int]
                  ) -> tuple[list[da.Array], dict[str, Any]]:  # fmt: skip
    """The ``(Y, X)`` levels of the NGFF label image ``node`` at ``plane`` (clipped to its
    T / Z sizes), full resolution first, and its parsed multiscales entry."""
    parsed = parse_multiscale(node, ome_attrs(node)["multiscales"][0], source)
    axes = parsed["axes"]
    raw = RawImage(levels=parsed["levels"], axes=axes, token=f"{source}:{uuid.uuid4().hex}")
    sizes = raw.sizes()
    fixed = {a: min(plane.get(a, 0), sizes[a] - 1) for a in axes if a not in "cyx"}
    make = channel_factory(raw, fixed)
    return [make(i, 0) for i in range(len(raw.levels))], parsed


def is_label_image(path: Path) -> bool:
    """True when ``path`` is an NGFF label image (``image-label`` metadata) opened on its own: a
    detection result ``RESULT.zarr`` or ``IMAGE.ome.zarr/labels/NAME``."""
    try:
        root = open_node(path)
    except AcquisitionError:
        return False
    return isinstance(root, zarr.Group) and "image-label" in ome_attrs(root)


def open_label_image(path: Path) -> tuple[list[da.Array], float | None]:
    """The lazy ``(Y, X)`` levels (full resolution first; T / Z index 0) of the NGFF label image
    at ``path`` and its pixel size in µm, when the metadata give one."""
    root = open_node(path)
    if not isinstance(root, zarr.Group) or not ome_attrs(root).get("multiscales"):
        raise AcquisitionError(f"{path}: a label image without NGFF multiscales metadata")
    levels, parsed = _label_levels(root, path, {})
    return levels, pixel_size(parsed)


def _labels_group(acq: Acquisition) -> zarr.Group | None:
    if not acq.format.startswith("ome-zarr"):
        return None
    root = open_node(acq.path)
    group_path = acq.metadata.get("zarr_group") or ""
    group = root[group_path] if group_path else root
    if not isinstance(group, zarr.Group) or "labels" not in group:
        return None
    labels = group["labels"]
    return labels if isinstance(labels, zarr.Group) else None


def label_names(acq: Acquisition) -> list[str]:
    """Names of the NGFF label images of ``acq`` (empty for non-OME-Zarr files)."""
    group = _labels_group(acq)
    if group is None:
        return []
    names = ome_attrs(group).get("labels") or []
    return [str(n) for n in names if str(n) in group]


def read_labels(acq: Acquisition, names: list[str] | None = None) -> dict[str, LabelImage]:
    """Lazy NGFF label images of ``acq``'s plane (same T/Z as the acquisition); no chunk is read.

    Parameters
    ----------
    acq : Acquisition
        An acquisition opened from an OME-Zarr.
    names : list of str, optional
        Which label images; default all listed in ``labels/.zattrs``.

    Returns
    -------
    dict
        name -> :class:`LabelImage`; empty when the file has no labels.
    """
    group = _labels_group(acq)
    if group is None:
        return {}
    out: dict[str, LabelImage] = {}
    for name in label_names(acq) if names is None else names:
        if name not in group:
            raise AcquisitionError(f"{acq.path}: no label image {name!r}; found {label_names(acq)}")
        node = group[name]
        attrs = ome_attrs(node)
        if not attrs.get("multiscales"):
            continue
        levels, _ = _label_levels(node, acq.path / "labels" / name, acq.plane)
        _, y0, x0 = acq.shape
        h, w = levels[0].shape
        out[name] = LabelImage(
            name=name,
            levels=levels,
            scale=(y0 / h, x0 / w),
            metadata=dict(attrs.get("image-label") or {}),
        )
    return out
