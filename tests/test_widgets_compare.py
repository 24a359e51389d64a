"""Compare widget: side-by-side grid with outlines on every channel, one-click overlay, and the
per-cell gallery."""

from __future__ import annotations

import numpy as np
import pytest

from _widgets_helpers import add_marker_layers, capture_errors, make_viewer
from napari_hrs._widgets._compare import OUTLINE_KEY, CompareWidget
from napari_hrs._widgets._gallery import to_uint8

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(request, qtbot):
    return make_viewer(request)


def test_side_by_side_overlay_and_gallery(viewer):
    layers, _, table = add_marker_layers(viewer)
    cells = layers["cells"]
    order = list(viewer.layers)
    w = CompareWidget(viewer)
    assert [w.channels[r].value for r in ("brightfield", "PRM1", "PNA")] == [
        layers["brightfield"], layers["PRM1"], layers["PNA"]]  # fmt: skip
    assert w.cells.value is cells

    outlines = w.side_by_side()
    grid = viewer.canvas.grid
    assert grid.enabled and grid.stride == 2 and tuple(grid.shape) == (1, 3)
    assert len(outlines) == 3 and not cells.visible
    positions = set()
    for role, outline in zip(("brightfield", "PRM1", "PNA"), outlines, strict=True):
        channel = w.channels[role].value
        assert outline.contour == 1 and outline.data is cells.data
        assert outline.metadata[OUTLINE_KEY] == cells.name
        pos = grid.position(viewer.layers.index(channel), viewer.layers)
        assert pos == grid.position(viewer.layers.index(outline), viewer.layers)
        positions.add(pos)
    assert positions == {(0, 0), (0, 1), (0, 2)}  # one viewbox per channel

    row = table.iloc[3]
    cells.selected_label = int(row["id"])  # selecting a cell fills the gallery
    assert w.gallery.images and len(w.gallery.images) == 3
    half = w.crop.value // 2
    cy, cx = int((row.y0 + row.y1) / 2), int((row.x0 + row.x1) / 2)
    prm1 = layers["PRM1"]
    expected = prm1.data[max(0, cy - half) : cy + half, max(0, cx - half) : cx + half]
    np.testing.assert_array_equal(w.crops(int(row["id"]))["PRM1: PRM1"], expected)
    np.testing.assert_array_equal(
        w.gallery.images["PRM1: PRM1"], to_uint8(expected, tuple(prm1.contrast_limits))
    )
    outlines[1].selected_label = int(table.iloc[5]["id"])  # picking in a viewbox selects too
    assert cells.selected_label == int(table.iloc[5]["id"])

    w.overlay()  # one click back
    assert not grid.enabled and list(viewer.layers) == order
    assert all(lay.visible for lay in viewer.layers)
    assert not any(OUTLINE_KEY in lay.metadata for lay in viewer.layers)


def test_layers_of_different_shapes_are_refused(viewer, monkeypatch):
    errors = capture_errors(monkeypatch)
    layers, _, _ = add_marker_layers(viewer)
    small = viewer.add_image(np.zeros((20, 30), np.uint16), name="small")
    w = CompareWidget(viewer)
    w.channels["PNA"].value = small
    assert w.side_by_side() == []
    assert "different shapes" in errors[-1] and "'small' (20, 30)" in errors[-1]
    assert not viewer.canvas.grid.enabled
