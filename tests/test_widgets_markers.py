"""Markers widget (threaded quantification, live re-calls, category colours, summary) and the
PRM1 vs PNA scatter plot linked both ways with the viewer."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent

import napari_hrs.markers as markers
from _widgets_helpers import add_marker_layers, capture_errors, make_viewer
from napari_hrs._widgets._markers import MarkersWidget
from napari_hrs.markers import CATEGORY_COLORS

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(request, qtbot):
    return make_viewer(request)


def _rgba(hex_color: str) -> np.ndarray:
    from napari.utils.colormaps.standardize_color import transform_color

    return transform_color(hex_color)[0]


def test_quantify_call_colour_and_summary(viewer, qtbot, monkeypatch):
    layers, truth, _ = add_marker_layers(viewer)
    cells = layers["cells"]
    w = MarkersWidget(viewer)
    assert (w.prm1.value, w.pna.value, w.cells.value) == (layers["PRM1"], layers["PNA"], cells)

    assert w.run() is not None  # threaded, like in the GUI
    qtbot.waitUntil(lambda: not w.job.running, timeout=30_000)
    # the widget shows what the core computes (PRM1 / PNA quantified, Otsu calls)
    ref = markers.call_markers(
        markers.quantify({"PRM1": layers["PRM1"].data, "PNA": layers["PNA"].data}, cells.data,
                         ring_px=(2, 6)), "otsu")  # fmt: skip
    feats = cells.features.set_index("index").loc[ref["label_id"]]
    for col in ("PRM1_mean_bgsub", "PNA_background", "PRM1_positive", "PNA_positive"):
        np.testing.assert_array_equal(feats[col], ref[col])
    np.testing.assert_array_equal(feats["category"], ref["category"].astype(str))
    assert (feats["PRM1_positive"] == truth.set_index("label_id")["PRM1"]).mean() > 0.8
    assert "score" in cells.features.columns  # detection columns are kept
    for label, cat in zip(feats.index[:6], feats["category"][:6], strict=True):
        np.testing.assert_allclose(
            cells.colormap.map(np.array([label]))[0], _rgba(CATEGORY_COLORS[cat])
        )
    summary = cells.metadata["hrs_markers"]["summary"]
    expected = float((ref["PRM1_positive"] | ref["PNA_positive"]).mean())
    assert summary["n_cells"] == len(truth)
    assert summary["fraction_marker_positive"] == pytest.approx(expected)
    assert "PRM1+ and/or PNA+" in w.summary.value

    # a new method re-calls at once, without measuring again
    monkeypatch.setattr(markers, "quantify", lambda *a, **k: pytest.fail("quantified again"))
    w.otsu_scale.value = "linear"
    lin = markers.call_markers(ref, "otsu", otsu_scale="linear")
    np.testing.assert_array_equal(
        cells.features.set_index("index").loc[ref["label_id"], "PNA_positive"], lin["PNA_positive"]
    )
    assert cells.metadata["hrs_markers"]["thresholds"]["PNA"]["otsu_scale"] == "linear"
    w.method.value = "manual"
    assert not w.otsu_scale.visible
    w.thr_prm1.value = w.thr_pna.value = 1e6
    assert not cells.features["PRM1_positive"].any()
    assert set(cells.features["category"]) == {"neither"}
    assert cells.metadata["hrs_markers"]["summary"]["fraction_marker_positive"] == 0.0


def test_widget_offers_the_core_otsu_scales():
    from napari_hrs._widgets import _markers

    assert _markers.OTSU_SCALES == markers.OTSU_SCALES


def test_scatter_plot_linked_both_ways(viewer, qtbot):
    layers, _, _ = add_marker_layers(viewer)
    cells = layers["cells"]
    cells.scale = (0.5, 0.5)
    w = MarkersWidget(viewer)
    from napari_hrs._widgets._common import run_sync
    from napari_hrs._widgets._markers import quantify_job

    channels, labels, params = w.parameters()
    import threading

    w.set_table(run_sync(quantify_job(channels, labels, threading.Event(), **params)), cells)
    sc = w.show_scatter()
    np.testing.assert_array_equal(np.sort(sc.ids), np.sort(cells.features["index"]))
    sc.canvas.draw()

    # click a point -> its cell is selected and centred
    i = 4
    x, y = sc.ax.transData.transform(sc.xy[i])
    MouseEvent("button_press_event", sc.canvas, x, y, button=1)._process()
    label = int(sc.ids[i])
    assert cells.selected_label == label
    row = cells.features.set_index("index").loc[label]
    np.testing.assert_allclose(viewer.camera.center[-2:],
                               (row.centroid_y_px * 0.5, row.centroid_x_px * 0.5))  # fmt: skip
    assert sc.selected_point == i

    # select a cell in the viewer -> its point is ringed
    j = 9
    cells.selected_label = int(sc.ids[j])
    assert sc.selected_point == j


def test_missing_layers_are_notified(viewer, monkeypatch):
    errors = capture_errors(monkeypatch)
    w = MarkersWidget(viewer)
    assert w.run() is None
    assert "choose the PRM1 and PNA and cells (a Labels layer) layer(s)" in errors[-1]
    assert w.show_scatter() is None and "quantify the cells first" in errors[-1]


def test_summary_follows_the_detect_score_slider(viewer, qtbot):
    """Moving the Detect widget's "show score ≥" slider re-summarizes the shown cells live."""
    import threading

    from napari_hrs._widgets._common import run_sync
    from napari_hrs._widgets._detect import DetectWidget
    from napari_hrs._widgets._markers import quantify_job

    layers, truth, table = add_marker_layers(viewer)
    cells = layers["cells"]
    w = MarkersWidget(viewer)
    channels, labels, params = w.parameters()
    w.set_table(run_sync(quantify_job(channels, labels, threading.Event(), **params)), cells)
    assert cells.metadata["hrs_markers"]["summary"]["n_cells"] == len(truth)
    d = DetectWidget(viewer)
    d.result_layer = cells
    d.shown.enabled = True
    d.shown.value = 0.75
    kept = cells.features[cells.features["score"] >= 0.75]
    assert 0 < len(kept) < len(truth)
    summary = cells.metadata["hrs_markers"]["summary"]
    assert summary["n_cells"] == len(kept)
    expected = float((kept["PRM1_positive"] | kept["PNA_positive"]).mean())
    assert summary["fraction_marker_positive"] == pytest.approx(expected)
    assert f"cells counted: {len(kept)} of" in w.summary.value
    d.shown.value = 0.0  # back to all cells
    assert cells.metadata["hrs_markers"]["summary"]["n_cells"] == len(truth)
