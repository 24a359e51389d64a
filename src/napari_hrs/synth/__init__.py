"""Synthetic hRS acquisitions: brightfield + PRM1 + PNA OME-Zarr with ground truth, and COCO.

>>> from napari_hrs.synth import generate_acquisition, read_ground_truth
>>> generate_acquisition("scene.ome.zarr", size=1024, seed=0)  # doctest: +SKIP
>>> labels, table = read_ground_truth("scene.ome.zarr")  # doctest: +SKIP

Modules: :mod:`~napari_hrs.synth.cells` (cell types and their parameters),
:mod:`~napari_hrs.synth.patch` (drawing one cell), :mod:`~napari_hrs.synth.scene` (placement
per block), :mod:`~napari_hrs.synth.render` (any region of the image),
:mod:`~napari_hrs.synth.writer` (chunked OME-Zarr), :mod:`~napari_hrs.synth.truth` (the
ground-truth table), :mod:`~napari_hrs.synth.coco` (COCO training sets),
:mod:`~napari_hrs.synth.sample` (the bundled sample). Core module: no napari or Qt import.
"""

from napari_hrs.synth.cells import CELL_TYPES, DIAMETER_UM
from napari_hrs.synth.coco import export_coco
from napari_hrs.synth.render import CHANNELS, render_region
from napari_hrs.synth.scene import SceneParams, make_scene
from napari_hrs.synth.truth import read_ground_truth
from napari_hrs.synth.writer import generate_acquisition

__all__ = [
    "CELL_TYPES",
    "CHANNELS",
    "DIAMETER_UM",
    "SceneParams",
    "export_coco",
    "generate_acquisition",
    "make_scene",
    "read_ground_truth",
    "render_region",
]
