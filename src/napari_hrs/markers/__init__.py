"""PRM1 / PNA per-cell marker quantification.

:func:`quantify` measures every labelled cell (area, centroid, intensities, local ring
background) tile by tile; :func:`call_markers` calls cells PRM1+ / PNA+; :func:`summarize`
counts the categories and gives the paper's statistic (the fraction of detected hRS that are
PRM1+ and/or PNA+). Qt-free, napari-free.
"""

from napari_hrs.markers.positivity import (
    CATEGORIES,
    CATEGORY_COLORS,
    OTSU_SCALES,
    call_markers,
    call_positive,
)
from napari_hrs.markers.quantify import MEASURES, quantify, quantify_acquisition
from napari_hrs.markers.summary import format_summary, summarize

__all__ = [
    "CATEGORIES",
    "CATEGORY_COLORS",
    "MEASURES",
    "OTSU_SCALES",
    "call_markers",
    "call_positive",
    "format_summary",
    "quantify",
    "quantify_acquisition",
    "summarize",
]
