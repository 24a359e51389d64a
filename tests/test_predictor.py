"""Mask pasting (napari_hrs.engine.masks) and the batched Predictor."""

from __future__ import annotations

import numpy as np
import pytest

from _engine_fakes import FakeConfig, FakeDiscModel, disc_image, random_discs
from napari_hrs.engine.intensity import estimate_range
from napari_hrs.engine.masks import (
    box_extent,
    box_iou,
    mask_iou,
    paint_labels,
    paste_mask,
    reframe_mask,
)
from napari_hrs.engine.predictor import Predictor, config_hash, resolve_device


# ------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize(
    "box, size, extent",
    [
        ((10.0, 20.0, 30.0, 50.0), None, (20, 50, 10, 30)),
        ((10.4, 20.6, 30.2, 49.5), None, (20, 50, 10, 31)),
        ((-5.0, -3.0, 8.0, 6.0), (100, 100), (0, 6, 0, 8)),
        ((90.0, 95.0, 120.0, 130.0), (100, 110), (95, 100, 90, 110)),
        ((200.0, 200.0, 220.0, 220.0), (100, 100), (100, 100, 100, 100)),
    ],
)
def test_box_extent(box, size, extent):
    assert box_extent(box, size) == extent


@pytest.mark.parametrize("box", [(10, 20, 38, 48), (3.5, 7.25, 60.5, 30.75), (0, 0, 7, 5)])
def test_paste_full_mask_fills_its_box(box):
    mask, (y0, x0) = paste_mask(np.ones((28, 28), np.float32), box)
    iy0, iy1, ix0, ix1 = box_extent(box)
    assert (y0, x0) == (iy0, ix0) and mask.shape == (iy1 - iy0, ix1 - ix0)
    assert mask.dtype == bool
    # every pixel whose centre lies inside the box (by half a mask cell: bilinear edges) is set
    ys = np.arange(iy0, iy1) + 0.5
    xs = np.arange(ix0, ix1) + 0.5
    hy, hx = (box[3] - box[1]) / 56, (box[2] - box[0]) / 56
    inside = ((ys >= box[1] + hy) & (ys <= box[3] - hy))[:, None] & (
        (xs >= box[0] + hx) & (xs <= box[2] - hx)
    )[None]
    assert mask[inside].all()
    assert mask.sum() >= inside.sum()


def test_paste_mask_geometry_left_half():
    probs = np.zeros((28, 28), np.float32)
    probs[:, :14] = 1.0  # the left half of the box
    mask, (y0, x0) = paste_mask(probs, (100, 50, 156, 78))
    assert (y0, x0) == (50, 100) and mask.shape == (28, 56)
    assert mask[:, :27].all() and not mask[:, 29:].any()


def test_paste_mask_matches_grid_sample():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    probs = rng.random((28, 28)).astype(np.float32)
    box = (12.3, 7.8, 47.1, 33.4)
    pasted, (y0, x0) = paste_mask(probs, box, threshold=None)
    ys = (torch.arange(y0, y0 + pasted.shape[0]) + 0.5 - box[1]) / (box[3] - box[1]) * 2 - 1
    xs = (torch.arange(x0, x0 + pasted.shape[1]) + 0.5 - box[0]) / (box[2] - box[0]) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[None].float()
    ref = torch.nn.functional.grid_sample(torch.from_numpy(probs)[None, None], grid,
                                          align_corners=False)[0, 0].numpy()  # fmt: skip
    np.testing.assert_allclose(pasted, ref, atol=1e-5)


def test_paste_mask_clipped_and_outside():
    mask, off = paste_mask(np.ones((28, 28)), (-10, -10, 10, 10), image_size=(50, 50))
    assert off == (0, 0) and mask.shape == (10, 10) and mask.all()
    mask, off = paste_mask(np.ones((28, 28)), (60, 60, 70, 70), image_size=(50, 50))
    assert mask.size == 0
    with pytest.raises(ValueError, match="one"):
        paste_mask(np.ones((2, 28, 28)), (0, 0, 1, 1))


def test_reframe_mask_to_a_clipped_box():
    probs = np.zeros((28, 28), np.float32)
    probs[:, :14] = 1.0
    old, new = (0.0, 0.0, 56.0, 28.0), (0.0, 0.0, 28.0, 28.0)  # keep the left half
    re = reframe_mask(probs, old, new)
    a, oa = paste_mask(probs, old, image_size=(28, 28))
    b, ob = paste_mask(re, new, image_size=(28, 28))
    assert oa == ob and mask_iou(a, oa, b, ob) > 0.97


def test_box_and_mask_iou():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    iou = box_iou(boxes, boxes)
    np.testing.assert_allclose(np.diag(iou), 1.0)
    assert iou[0, 1] == pytest.approx(50 / 150) and iou[0, 2] == 0
    a = np.ones((10, 10), bool)
    assert mask_iou(a, (0, 0), a, (0, 5)) == pytest.approx(50 / 150)
    assert mask_iou(a, (0, 0), a, (20, 20)) == 0.0


def test_paint_labels_higher_score_wins():
    a = np.ones((10, 10), bool)
    out = paint_labels(np.zeros((20, 20), np.uint32), (0, 0), [a, a], [(0, 0), (5, 5)], [1, 2],
                       [0.9, 0.6])  # fmt: skip
    assert out[7, 7] == 1 and out[12, 12] == 2 and out[2, 2] == 1
    # painting a window elsewhere in the image
    out = paint_labels(np.zeros((10, 10), np.uint32), (10, 10), [a], [(5, 5)], [3], [0.5])
    assert out[:5, :5].all() and not out[5:, 5:].any()


# ------------------------------------------------------------------------------------ predictor
def _scaled(shape, n, seed):
    img, gt = disc_image(shape, random_discs(shape, n, seed=seed), seed=seed)
    return estimate_range(img).apply(img), gt


def _same(a, b):
    assert len(a) == len(b) and a.image_size == b.image_size
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_array_equal(a.mask_probs, b.mask_probs)


def test_batching_equals_one_by_one_with_mixed_sizes():
    """Images are stacked only with images of their padded size (a multiple of 32): three
    pad to 96 x 128 (two batches of <= 2), the others each to a size of their own."""
    shapes = [(96, 128), (128, 96), (70, 120), (128, 128), (33, 200), (90, 100)]
    images = [_scaled(s, 8, i)[0] for i, s in enumerate(shapes)]
    model = FakeDiscModel()
    batched = Predictor(model, batch_size=2).predict(images)
    assert [c[0] for c in model.calls] == [2, 1, 1, 1, 1]
    assert [tuple(c[2:4]) for c in model.calls] == [(96, 128), (96, 128), (128, 96),
                                                     (128, 128), (64, 224)]  # fmt: skip
    single = [Predictor(FakeDiscModel(), batch_size=1).predict([im])[0] for im in images]
    for b, s, im in zip(batched, single, images, strict=True):
        _same(b, s)
        assert b.image_size == im.shape
        assert (b.boxes[:, 2] <= im.shape[1]).all() and (b.boxes[:, 3] <= im.shape[0]).all()
    assert sum(len(b) for b in batched) > 10


def test_predict_is_deterministic_and_sorted():
    img, _ = _scaled((128, 160), 10, 3)
    p = Predictor(FakeDiscModel(), score_threshold=0.0)
    a, b = p.predict([img, img])
    _same(a, b)
    _same(a, p.predict([img])[0])
    assert (np.diff(a.scores) <= 0).all()


def test_score_threshold_and_max_detections():
    img, _ = _scaled((160, 160), 12, 5)
    every = Predictor(FakeDiscModel(), score_threshold=0.0).predict([img])[0]
    assert len(every) >= 8
    cut = float(np.median(every.scores))
    high = Predictor(FakeDiscModel(), score_threshold=cut).predict([img])[0]
    assert len(high) == int((every.scores >= cut).sum())
    top = Predictor(FakeDiscModel(), score_threshold=0.0, max_detections=3).predict([img])[0]
    np.testing.assert_array_equal(top.scores, every.scores[:3])


def test_channels_adapted_to_the_model():
    img, _ = _scaled((64, 64), 3, 2)
    rgb_model = FakeDiscModel(FakeConfig(input_channels=3))
    p = Predictor(rgb_model)
    gray = p.predict([img])[0]
    three = p.predict([np.stack([img] * 3)])[0]
    _same(gray, three)
    assert rgb_model.calls[0][1] == 3
    with pytest.raises(ValueError, match="2-channel"):
        p.predict([np.stack([img] * 2)])


def test_box_cut_by_padding_gets_a_regridded_mask():
    # a disc cut by the image's right edge: its box ends at the image edge, not in the padding
    img, gt = disc_image((64, 50), [(30, 46, 10, 0)])
    x = estimate_range(img).apply(img)
    det = Predictor(FakeDiscModel()).predict([x])[0]
    assert len(det) == 1 and det.boxes[0, 2] <= 50
    mask, off = paste_mask(det.mask_probs[0], det.boxes[0], det.image_size)
    ref = gt > 0
    full = np.zeros_like(ref)
    full[off[0] : off[0] + mask.shape[0], off[1] : off[1] + mask.shape[1]] = mask
    assert (full & ref).sum() / (full | ref).sum() > 0.9


def test_provenance_and_devices():
    p = Predictor(FakeDiscModel(), device="cpu", score_threshold=0.3)
    d = p.describe()
    assert (
        d["config_hash"] == config_hash(FakeConfig()) != config_hash(FakeConfig(input_channels=3))
    )
    assert d["device"] == "cpu" and d["score_threshold"] == 0.3 and not d["amp"]
    assert p.class_names == ("hRS", "RBC") and p.pixel_size_um == 0.5
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="score_threshold"):
        Predictor(FakeDiscModel(), score_threshold=2.0)
    with pytest.raises(TypeError, match="not callable"):
        Predictor(object())


def test_channels_last_by_default_for_our_model_same_detections():
    import torch

    from _engine_model_helpers import disc_batch, tiny_cfg
    from napari_hrs.engine.checkpoint import Loaded
    from napari_hrs.engine.model import build_model

    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.roi_heads.box_predictor:
            p.cls_score.bias[0] = 2.0  # detections pass the threshold
    images = [im[0].numpy() for im in disc_batch(2, 96)[0]]
    default = Predictor(Loaded(model, cfg), score_threshold=0.3)
    assert default.channels_last
    a = default.predict(images)
    model.to(memory_format=torch.contiguous_format)
    b = Predictor(Loaded(model, cfg), score_threshold=0.3, channels_last=False).predict(images)
    assert sum(len(d) for d in a) > 0
    for da, db in zip(a, b, strict=True):
        assert len(da) == len(db)
        np.testing.assert_allclose(da.boxes, db.boxes, atol=1e-3)
        np.testing.assert_allclose(da.scores, db.scores, atol=1e-5)
    assert not Predictor(FakeDiscModel()).channels_last
