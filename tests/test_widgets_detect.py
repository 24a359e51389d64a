"""Detect widget: layers and features from a run, the live score slider, the threaded run with
Cancel, and user errors shown as notifications."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest

from _widgets_helpers import (
    bf_scene,
    capture_errors,
    make_viewer,
    opengl_available,
    use_fake_model,
)
from napari_hrs._widgets._common import Failed, run_sync
from napari_hrs._widgets._detect import DetectWidget, detect_job

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(request, qtbot):
    return make_viewer(request)


@pytest.fixture
def errors(monkeypatch):
    return capture_errors(monkeypatch)


def test_detect_layer_features_and_threshold(viewer, monkeypatch, tmp_path):
    image, gt = bf_scene()
    bf = viewer.add_image(image, name="BF", scale=(0.5, 0.5),
                          metadata={"role": "brightfield", "pixel_size_um": 0.5})  # fmt: skip
    viewer.add_image(image // 2, name="other")
    use_fake_model(monkeypatch)
    w = DetectWidget(viewer)
    assert w.image.value is bf  # the brightfield layer is preselected by its role
    w.tile.value, w.score.value = 128, 0.3
    acq, model, params = w.parameters()
    assert params["tile"] == 128 and params["score_threshold"] == 0.3
    seen = []
    result = run_sync(detect_job(acq, model, threading.Event(), **params), seen.append)
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached total
    layer = w.show_result(result, bf)

    # lazy labels aligned with the image, one instance per disc
    data = layer.data[0] if layer.multiscale else layer.data
    assert isinstance(data, da.Array) and data.shape == image.shape
    np.testing.assert_allclose(layer.scale, bf.scale)
    labels = np.asarray(data)
    assert len(np.unique(labels)) - 1 == len(result.table) == int(gt.max())
    feats = layer.features
    np.testing.assert_array_equal(feats["index"], result.table["id"])
    for col in ("class_name", "score", "area_px", "centroid_y_px", "centroid_x_px"):
        assert col in feats.columns
    for _, row in feats.iterrows():  # the table's centroid lies in its instance
        assert labels[int(round(row.centroid_y_px)), int(round(row.centroid_x_px))] == row["index"]

    # the slider hides low-score instances without re-running the model
    scores = feats["score"].to_numpy()
    cut = float(np.median(scores))
    w.shown.value = cut
    low = feats["index"][scores < cut].to_numpy()
    high = feats["index"][scores >= cut].to_numpy()
    assert len(low) and len(high)
    alpha = layer.colormap.map(np.r_[low, high])[:, 3]
    np.testing.assert_array_equal(alpha, np.r_[np.zeros(len(low)), np.ones(len(high))])
    assert w.summary.value.startswith(f"{len(high)} of {len(feats)} cells shown")
    assert w.shown.min == pytest.approx(0.3)  # the run's threshold: every instance is shown
    w.shown.value = w.shown.min
    assert (layer.colormap.map(feats["index"].to_numpy())[:, 3] == 1).all()


def test_threaded_run_cancel_and_rerun(viewer, monkeypatch, qtbot):
    image, _ = bf_scene((320, 320), n=10)
    viewer.add_image(image, name="BF", metadata={"role": "brightfield"})
    use_fake_model(monkeypatch)
    w = DetectWidget(viewer)
    w.tile.value = 128  # 5 x 5 tiles, batches of 4

    worker = w.run()
    assert worker is not None
    worker.yielded.connect(lambda _p: w.job.cancel())  # cancel at the first progress report
    qtbot.waitUntil(lambda: not w.job.running, timeout=30_000)
    layer = viewer.layers[-1]
    assert layer.name == "detections (incomplete)"
    md = layer.metadata["hrs_detection"]
    assert md["status"] == "incomplete" and md["tiles_done"] < md["tiles_total"]

    viewer.add_points([[1, 1]])  # the viewer is still usable, and so is the widget
    assert w.run() is not None
    qtbot.waitUntil(lambda: not w.job.running, timeout=30_000)
    assert viewer.layers[-1].name == "detections"
    assert viewer.layers[-1].metadata["hrs_detection"]["status"] == "complete"


def test_user_errors_are_notifications(viewer, errors, monkeypatch):
    w = DetectWidget(viewer)
    assert w.run() is None
    assert "no brightfield layer chosen" in errors[-1]

    viewer.add_image(np.zeros((64, 64), np.uint16), name="BF")
    w.image.value = viewer.layers["BF"]
    w.model.value = "checkpoint file"
    w.checkpoint.value = "/nonexistent/model.pt"
    assert w.run() is None
    assert "/nonexistent/model.pt" in errors[-1] and "no such file" in errors[-1]


def test_colour_picture_layer_detects_on_its_green_channel(viewer, errors):
    """A camera picture opened by napari itself is an RGB layer: its green channel is the
    brightfield (as io picks it in colour files); a stack layer is refused with its shape."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    viewer.add_image(rgb, name="photo", rgb=True)
    w = DetectWidget(viewer)
    w.image.value = viewer.layers["photo"]
    acq, _, _ = w.parameters()
    assert acq.roles == {"brightfield": 0} and acq.channel_names == ["photo (green)"]
    np.testing.assert_array_equal(np.asarray(acq.levels[0]), rgb[None, :, :, 1])

    viewer.add_image(np.zeros((3, 48, 64), np.uint16), name="stack")
    w.image.value = viewer.layers["stack"]
    assert w.run() is None
    assert "'stack' has shape (3, 48, 64)" in errors[-1]


WIDGETS = {
    "Detect round spermatids": "DetectWidget",
    "Compare channels": "CompareWidget",
    "PRM1 / PNA markers": "MarkersWidget",
    "PRM1 vs PNA scatter plot": "ScatterWidget",
    "Export cells": "ExportWidget",
}


def test_widgets_dock_from_the_plugin_menu(request, qtbot):
    if not opengl_available():
        pytest.skip("needs a napari window (OpenGL; run under Xvfb)")
    import npe2

    npe2.PluginManager.instance().discover()
    viewer = request.getfixturevalue("make_napari_viewer")()
    for name, cls in WIDGETS.items():  # napari passes the viewer to each widget class
        _, widget = viewer.window.add_plugin_dock_widget("napari-hrs", name)
        assert type(widget).__name__ == cls and widget.viewer is viewer


@pytest.mark.slow
def test_real_model_on_a_synthetic_acquisition(viewer, tmp_path):
    """The whole path: synthetic OME-Zarr -> reader layers -> the widget reopens the file ->
    a random-weight Cascade Mask R-CNN checkpoint -> labels written inside the image."""
    import torch

    from napari_hrs._napari.reader import acquisition_layers
    from napari_hrs.engine import build_model, get_preset, save_checkpoint
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth import generate_acquisition

    image = generate_acquisition(tmp_path / "s.ome.zarr", size=256, seed=0, chunk=128)
    for data, kwargs, kind in acquisition_layers(open_acquisition(image)):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    torch.manual_seed(0)
    cfg = get_preset("compact")
    # torch_version as str: a TorchVersion object does not load with weights_only=True
    ckpt = save_checkpoint(tmp_path / "random.pt", build_model(cfg), cfg,
                           provenance={"torch_version": str(torch.__version__)})  # fmt: skip
    w = DetectWidget(viewer)
    assert w.image.value.metadata["role"] == "brightfield"
    w.model.value, w.checkpoint.value = "checkpoint file", ckpt
    w.tile.value, w.score.value, w.device.value = 256, 0.0, "cpu"
    w.store.value = "inside the image (OME-Zarr)"
    acq, model, params = w.parameters()
    assert acq.path == image and acq.n_levels >= 1  # reopened from the file, lazily
    result = run_sync(detect_job(acq, model, threading.Event(), **params))
    if isinstance(result, Failed):
        raise result.error
    assert result.complete and result.path == image / "labels" / "detections"
    layer = w.show_result(result, w.image.value)
    assert len(layer.features) == len(result.table)
    np.testing.assert_allclose(layer.scale, w.image.value.scale)
