"""Acquisition data model and lazy readers (OME-Zarr, zarr, OME-TIFF, TIFF).

>>> from napari_hrs.io import open_acquisition
>>> acq = open_acquisition("slide.ome.zarr")  # doctest: +SKIP
>>> acq.channel("brightfield", level=0)  # dask (Y, X)  # doctest: +SKIP

Nothing here imports napari or Qt.
"""

from napari_hrs.io.acquisition import Acquisition
from napari_hrs.io.labels import LabelImage, label_names, read_labels
from napari_hrs.io.open import AcquisitionNotFoundError, open_acquisition, plane_sizes
from napari_hrs.io.roles import REQUIRED_ROLES, ROLE_ALIASES, ROLES, match_role, resolve_roles

__all__ = [
    "REQUIRED_ROLES",
    "ROLES",
    "ROLE_ALIASES",
    "Acquisition",
    "AcquisitionNotFoundError",
    "LabelImage",
    "label_names",
    "match_role",
    "open_acquisition",
    "plane_sizes",
    "read_labels",
    "resolve_roles",
]
