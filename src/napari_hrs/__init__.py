"""napari-hrs: find human round spermatids (hRS) in brightfield microscopy.

The core subpackages (:mod:`napari_hrs.io`, :mod:`napari_hrs.synth`,
:mod:`napari_hrs.engine`, :mod:`napari_hrs.train`, :mod:`napari_hrs.markers`,
:mod:`napari_hrs.cli`) never import napari or Qt; everything napari-facing lives in
:mod:`napari_hrs._napari` (readers, sample data) and :mod:`napari_hrs._widgets`.
Importing this package is cheap: no torch, no napari.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-hrs")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
