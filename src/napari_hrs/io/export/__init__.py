"""Export results: labels (NGFF label image, new zarr, TIFF), per-cell tables (CSV), detections
(COCO JSON with RLE masks) and the picking list (hRS centroids in µm, ranked by score).

Every writer is atomic: it writes a hidden sibling (``.NAME.partial-XXXX``) and renames it into
place, so a failure or a cancel mid-write leaves no partial file and an existing file intact.
Nothing here modifies the source image arrays: an NGFF export only adds ``labels/<name>`` to an
OME-Zarr. Provenance (plugin version, time, model, thresholds; :func:`provenance`) is stored in
each file's metadata: the NGFF attributes, the TIFF description, the COCO ``info``, and a
``<stem>.provenance.json`` beside each CSV.

Label images are ``(Y, X)`` integer arrays (numpy, dask or zarr; a list is taken as a multiscale
pyramid and its first level is written), in pixels; µm only where a name ends in ``_um``.
No napari or Qt import.

>>> from napari_hrs.io.export import save_labels, save_coco, save_picking_list
>>> save_labels(labels, "cells.zarr", pixel_size_um=0.325)  # doctest: +SKIP
"""

from napari_hrs.io.export._atomic import atomic_target, provenance
from napari_hrs.io.export.coco import coco_dataset, label_boxes, rle_encode, save_coco
from napari_hrs.io.export.labels import (
    drop_labels,
    save_labels,
    save_labels_ngff,
    save_labels_tiff,
    save_labels_zarr,
)
from napari_hrs.io.export.tables import (
    HRS_CLASSES,
    PICKING_COLUMNS,
    picking_list,
    save_picking_list,
    save_table,
)

__all__ = [
    "HRS_CLASSES",
    "PICKING_COLUMNS",
    "atomic_target",
    "coco_dataset",
    "drop_labels",
    "label_boxes",
    "picking_list",
    "provenance",
    "rle_encode",
    "save_coco",
    "save_labels",
    "save_labels_ngff",
    "save_labels_tiff",
    "save_labels_zarr",
    "save_picking_list",
    "save_table",
]
