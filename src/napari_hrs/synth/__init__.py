"""Synthetic hRS acquisitions: brightfield + PRM1 + PNA OME-Zarr with ground truth, and COCO.

>>> from napari_hrs.synth import generate_acquisition, read_ground_truth
>>> generate_acquisition("scene.ome.zarr", size=1024, seed=0)  # doctest: +SKIP
>>> labels, table = read_ground_truth("scene.ome.zarr")  # doctest: +SKIP

Core module: no napari or Qt import.
"""

from napari_hrs.synth.cells import CELL_TYPES, DIAMETER_UM
from napari_hrs.synth.coco import export_coco
from napari_hrs.synth.render import CHANNELS, render_region
from napari_hrs.synth.scene import SceneParams, make_scene
from napari_hrs.synth.writer import generate_acquisition, read_ground_truth

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
