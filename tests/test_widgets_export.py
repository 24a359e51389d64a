"""Export widget: every export reads back equal (only the cells shown), NGFF inside the source
OME-Zarr without touching its arrays, and unwritable paths as notifications."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from _io_helpers import make_data, write_ngff
from _widgets_helpers import add_marker_layers, capture_errors, make_viewer
from napari_hrs._widgets import _display
from napari_hrs._widgets._common import run_sync
from napari_hrs._widgets._export import (
    COCO,
    LABELS_NGFF,
    LABELS_TIFF,
    LABELS_ZARR,
    PICKING,
    TABLE,
    ExportWidget,
    export_job,
)
from napari_hrs.io import open_acquisition, read_labels

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(request, qtbot):
    return make_viewer(request)


@pytest.fixture
def scene(viewer, tmp_path):
    """Cells from an OME-Zarr image; cells scoring < 0.75 hidden by the score slider."""
    layers, _, table = add_marker_layers(viewer)
    cells = layers["cells"]
    image = write_ngff(tmp_path / "img.ome.zarr", make_data((3, *cells.data.shape)), version="0.5")
    cells.metadata.update(acquisition_path=str(image), hrs_detection={"model": {"name": "fake"}})
    _display.set_score_threshold(cells, 0.75)
    hidden = table["id"][table["score"] < 0.75].to_numpy()
    assert 0 < len(hidden) < len(table)
    shown = np.where(np.isin(cells.data, hidden), 0, cells.data)
    return cells, image, table, hidden, shown


def _export(w: ExportWidget, kind: str, path=None):
    w.kind.value = kind
    if path is not None:
        w.path.value = path
    return run_sync(export_job(w.request(), threading.Event()))


@pytest.mark.parametrize("kind, name", [(LABELS_ZARR, "cells.zarr"), (LABELS_TIFF, "cells.tif")])
def test_labels_exports_read_back(viewer, scene, tmp_path, kind, name):
    cells, _, _, _, shown = scene
    w = ExportWidget(viewer)
    assert w.cells.value is cells
    out = _export(w, kind, tmp_path / name)
    assert out == tmp_path / name
    if kind == LABELS_TIFF:
        with tifffile.TiffFile(out) as tif:
            back = tif.asarray()
            prov = json.loads(tif.pages[0].description)["napari_hrs"]
    else:
        group = zarr.open_group(str(out), mode="r")
        back, prov = group["0"][:], group.attrs["napari_hrs"]
    np.testing.assert_array_equal(back, shown)  # hidden cells are left out
    assert prov["detection"]["model"] == {"name": "fake"} and prov["score_threshold_shown"] == 0.75

    w.shown_only.value = False  # everything
    np.testing.assert_array_equal(tifffile.imread(_export(w, LABELS_TIFF, tmp_path / "all.tif")),
                                  cells.data)  # fmt: skip


def test_ngff_inside_the_source_image(viewer, scene):
    cells, image, _, _, shown = scene
    level0 = zarr.open_group(str(image), mode="r")["0"][:]
    w = ExportWidget(viewer)
    w.name.value = "cells"
    assert _export(w, LABELS_NGFF) == image / "labels" / "cells"
    found = read_labels(open_acquisition(image))
    np.testing.assert_array_equal(found["cells"].levels[0].compute(), shown)
    np.testing.assert_array_equal(zarr.open_group(str(image), mode="r")["0"][:], level0)


def test_tables_coco_and_picking_list(viewer, scene, tmp_path):
    from pycocotools.coco import COCO as CocoApi

    cells, _, table, hidden, shown = scene
    w = ExportWidget(viewer)
    csv = pd.read_csv(_export(w, TABLE, tmp_path / "cells"))  # the suffix is added
    kept = table[~table["id"].isin(hidden)].reset_index(drop=True)
    pd.testing.assert_frame_equal(csv[kept.columns], kept, check_dtype=False)
    assert (tmp_path / "cells.provenance.json").is_file()

    coco = CocoApi(str(_export(w, COCO, tmp_path / "det.json")))
    assert sorted(coco.anns) == sorted(kept["id"])
    for lid in kept["id"]:
        np.testing.assert_array_equal(coco.annToMask(coco.anns[lid]), shown == lid)

    pick = pd.read_csv(_export(w, PICKING, tmp_path / "pick.csv"))
    assert list(pick["id"]) == list(kept.sort_values("score", ascending=False)["id"])
    np.testing.assert_allclose(pick["x_um"], pick["x_px"] * 0.5)


def test_export_errors_are_notifications(viewer, scene, tmp_path, qtbot, monkeypatch):
    errors = capture_errors(monkeypatch)
    w = ExportWidget(viewer)
    (tmp_path / "a_file").write_text("")
    w.kind.value, w.path.value = TABLE, tmp_path / "a_file" / "cells.csv"
    worker = w.run()  # a threaded export that fails in the worker
    qtbot.waitUntil(lambda: not w.job.running, timeout=10_000)
    assert worker is not None and "cannot create the folder" in errors[-1]
    w.kind.value, w.path.value = LABELS_TIFF, tmp_path / "cells.csv"
    assert w.run() is None and "saved as .tif or .tiff" in errors[-1]
    cells = scene[0]
    cells.metadata["acquisition_path"] = None
    w.kind.value = LABELS_NGFF
    assert w.run() is None and "does not come from an OME-Zarr" in errors[-1]
