"""Train widget: parameters from layers (classes from features), a short fine-tuning run with
its held-out evaluation shown, cancel, and user errors as notifications."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import zarr

from _widgets_helpers import capture_errors, make_viewer
from napari_hrs._widgets._common import Failed, run_sync
from napari_hrs._widgets._train import STARTS, TrainWidget, layer_annotations, train_job
from napari_hrs.errors import Cancelled

pytestmark = pytest.mark.gui
torch = pytest.importorskip("torch")


@pytest.fixture
def viewer(request, qtbot):
    return make_viewer(request)


@pytest.fixture
def errors(monkeypatch):
    return capture_errors(monkeypatch)


@pytest.fixture(scope="module")
def annotated():
    """The sample's brightfield and its ground-truth hRS (other cells unlabelled), 512 x 512."""
    from napari_hrs.synth.sample import sample_path

    p = sample_path()
    g = zarr.open_group(str(p), mode="r")
    bf = np.asarray(g["0"][0, :512, :512])
    lab = np.asarray(g["labels/ground_truth/0"][:512, :512])
    t = pd.read_csv(p / "labels/ground_truth/cells.csv")
    hrs = t.label_id[t.cell_type == "round_spermatid"].to_numpy()
    lyo = t.label_id[t.cell_type == "lymphocyte"].to_numpy()
    keep = np.isin(lab, np.concatenate([hrs, lyo]))
    return bf, np.where(keep, lab, 0), set(hrs.tolist()), set(lyo.tolist())


def test_classes_from_features(viewer, annotated):
    bf, lab, hrs, lyo = annotated
    img = viewer.add_image(bf, name="BF")
    ids = np.unique(lab[lab > 0])
    feats = pd.DataFrame({"index": ids,
                          "class_name": ["lymphocyte" if i in lyo else "" for i in ids]})  # fmt: skip
    labels = viewer.add_labels(lab, name="cells", features=feats)
    image, labs, classes, names = layer_annotations(img, labels, "round_spermatid")
    assert image.shape == labs.shape == bf.shape
    assert names == ["round_spermatid", "lymphocyte"]
    assert {i for i, c in classes.items() if c == "lymphocyte"} == set(ids) & lyo
    assert {i for i, c in classes.items() if c == "round_spermatid"} == set(ids) & hrs


def test_colour_layer_trains_on_its_green_channel(viewer, annotated):
    bf, lab, _, _ = annotated
    rgb = np.stack([bf // 2, bf, bf // 3], axis=-1)
    img = viewer.add_image(rgb, name="photo", rgb=True)
    labels = viewer.add_labels(lab, name="cells")
    image, labs, _, _ = layer_annotations(img, labels, "round_spermatid")
    np.testing.assert_array_equal(image, bf)  # the green channel, as detection reads it
    small = viewer.add_labels(lab[:100], name="small")
    with pytest.raises(ValueError, match="pick a 2-D Labels layer drawn on this image"):
        layer_annotations(img, small, "round_spermatid")


def test_short_training_shows_evaluation(viewer, annotated, tmp_path):
    bf, lab, hrs, _ = annotated
    lab = np.where(np.isin(lab, list(hrs)), lab, 0)
    viewer.add_image(bf, name="BF", metadata={"role": "brightfield"})
    viewer.add_labels(lab, name="hRS")
    w = TrainWidget(viewer)
    w.labels.value = viewer.layers["hRS"]
    w.iters.value, w.crop.value = 3, 128
    w.out.value = tmp_path / "tuned.pt"
    data, params = w.parameters()
    assert params["init"] == "compact" and params["iters"] == 3
    seen = []
    result = run_sync(train_job(*data, threading.Event(), **params), seen.append)
    assert not isinstance(result, Failed), result
    assert seen[-1][0] == seen[-1][1]
    assert result.checkpoint.exists() and result.n_val >= 1
    w.show_result(result)
    assert "segm mAP" in w.result_text.value and "tuned.pt" in w.result_text.value
    assert w.curve.path == result.eval_dir / "pr_curve.png"
    from napari_hrs.engine.checkpoint import load_checkpoint

    assert tuple(load_checkpoint(result.checkpoint).cfg.class_names) == ("round_spermatid",)


def test_cancel_stops_training(viewer, annotated, tmp_path):
    bf, lab, hrs, _ = annotated
    lab = np.where(np.isin(lab, list(hrs)), lab, 0)
    img = viewer.add_image(bf, name="BF")
    labels = viewer.add_labels(lab, name="hRS")
    data = layer_annotations(img, labels, "round_spermatid")
    ev = threading.Event()
    seen = []

    def on_progress(item):
        seen.append(item)
        ev.set()  # cancel after the first iteration

    result = run_sync(train_job(*data, ev, out=tmp_path / "m.pt", init=None, iters=50, crop=128),
                      on_progress)  # fmt: skip
    assert isinstance(result, Failed) and isinstance(result.error, Cancelled)
    assert seen and seen[-1][0] < 50


def test_user_errors_are_notifications(viewer, errors, tmp_path):
    w = TrainWidget(viewer)
    assert w.run() is None and "choose the brightfield image" in errors[-1]
    viewer.add_image(np.zeros((64, 64), np.uint16), name="BF")
    viewer.add_labels(np.zeros((64, 64), np.int32), name="empty")
    w.reset_choices()
    w.image.value, w.labels.value = viewer.layers["BF"], viewer.layers["empty"]
    assert w.run() is None and "no labelled cell" in errors[-1]
    viewer.add_labels(np.ones((32, 32), np.int32), name="small")
    w.reset_choices()
    w.labels.value = viewer.layers["small"]
    assert w.run() is None and "pick a 2-D Labels layer drawn on this image" in errors[-1]
    w.labels.value = viewer.layers["empty"]
    w.start.value = STARTS[1]
    assert not w.checkpoint.native.isHidden()
