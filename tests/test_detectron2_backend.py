"""engine='detectron2': our config in detectron2's keys, and the same detections from detectron2
itself on the same weights. The equivalence tests skip when detectron2 is not installed (CI);
build it from source for this torch to run them (docs/model.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _engine_model_helpers import calibrate_frozen_bn
from napari_hrs.engine.config import get_preset
from napari_hrs.engine.detectron2_backend import (
    Detectron2Unavailable,
    detectron2_available,
    detectron2_config_dict,
)

needs_d2 = pytest.mark.skipif(not detectron2_available(), reason="detectron2 is not installed")


def test_paper_preset_in_detectron2_keys_is_the_zoo_config():
    """The values of detectron2's Misc/cascade_mask_rcnn_R_50_FPN_3x.yaml (over
    Base-RCNN-FPN.yaml and detectron2's defaults) that define the network at inference."""
    d = detectron2_config_dict(get_preset("paper"))
    assert d["MODEL.BACKBONE.NAME"] == "build_resnet_fpn_backbone"
    assert d["MODEL.RESNETS.DEPTH"] == 50
    assert d["MODEL.RESNETS.NORM"] == "FrozenBN" and d["MODEL.RESNETS.STRIDE_IN_1X1"] is True
    assert d["MODEL.RESNETS.RES2_OUT_CHANNELS"] == 256 and d["MODEL.RESNETS.WIDTH_PER_GROUP"] == 64
    assert d["MODEL.FPN.OUT_CHANNELS"] == 256
    assert d["MODEL.ANCHOR_GENERATOR.SIZES"] == [[32], [64], [128], [256], [512]]
    assert d["MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"] == [[0.5, 1.0, 2.0]]
    assert d["MODEL.RPN.POST_NMS_TOPK_TRAIN"] == 2000 and d["MODEL.RPN.PRE_NMS_TOPK_TEST"] == 1000
    assert d["MODEL.RPN.POST_NMS_TOPK_TEST"] == 1000 and d["MODEL.RPN.NMS_THRESH"] == 0.7
    assert d["MODEL.ROI_HEADS.NAME"] == "CascadeROIHeads"
    assert d["MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG"] is True
    assert d["MODEL.ROI_BOX_CASCADE_HEAD.IOUS"] == [0.5, 0.6, 0.7]
    assert d["MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS"] == [
        [10.0, 10.0, 5.0, 5.0], [20.0, 20.0, 10.0, 10.0], [30.0, 30.0, 15.0, 15.0]]  # fmt: skip
    assert d["MODEL.ROI_BOX_HEAD.NUM_FC"] == 2 and d["MODEL.ROI_BOX_HEAD.FC_DIM"] == 1024
    assert d["MODEL.ROI_MASK_HEAD.NUM_CONV"] == 4 and d["MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION"] == 14
    assert d["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE"] == 512
    assert d["INPUT.FORMAT"] == "BGR" and d["MODEL.PIXEL_MEAN"] == [103.53, 116.28, 123.675]


def test_compact_preset_needs_a_custom_backbone():
    d = detectron2_config_dict(get_preset("compact", class_names=("a", "b")))
    assert d["MODEL.BACKBONE.NAME"] is None  # one block per stage: not a detectron2 depth
    assert d["MODEL.ROI_HEADS.NUM_CLASSES"] == 2 and d["INPUT.FORMAT"] == "L"


def test_inexpressible_config_is_refused():
    cfg = get_preset("compact").override({"roi_heads.canonical_level": 3})
    with pytest.raises(Detectron2Unavailable, match="canonical"):
        detectron2_config_dict(cfg)


def test_unknown_engine_is_refused():
    from napari_hrs.engine.predictor import Predictor

    with pytest.raises(ValueError, match="unknown engine"):
        Predictor("compact", device="cpu", engine="caffe2")


@pytest.mark.skipif(detectron2_available(), reason="detectron2 is installed")
def test_missing_detectron2_is_a_clear_error():
    from napari_hrs.engine.predictor import Predictor

    with pytest.raises(Detectron2Unavailable, match="engine='native'"):
        Predictor("compact", device="cpu", engine="detectron2")


# --------------------------------------------------------------------------- against detectron2
def _match(a, b) -> None:
    """As many detections in ``a`` as in ``b``, and each of ``a`` has its own in ``b`` of the
    same class with box IoU >= 0.99, a score within 1e-3 and mask probabilities within 1e-2."""
    from napari_hrs.engine.box_ops import pairwise_iou

    assert len(a) == len(b), (len(a), len(b))
    if len(a) == 0:
        return
    iou = pairwise_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes)).numpy()
    iou[a.classes[:, None] != b.classes[None, :]] = -1.0  # a box may come back per class
    j = iou.argmax(axis=1)
    assert len(set(j.tolist())) == len(a)  # one-to-one
    assert iou[np.arange(len(a)), j].min() >= 0.99
    assert np.abs(a.scores - b.scores[j]).max() <= 1e-3
    assert np.abs(a.mask_probs - b.mask_probs[j]).max() <= 1e-2


def _sample_tiles(n: int = 2, size: int = 256):
    from napari_hrs.engine.intensity import estimate_range
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth.sample import sample_path

    acq = open_acquisition(sample_path())
    bf = np.asarray(acq.channel("brightfield"), dtype=np.float32)
    img = estimate_range(bf).apply(bf)
    return [img[i * size : (i + 1) * size, 200 : 200 + size] for i in range(n)]


@needs_d2
def test_bundled_model_same_detections_in_detectron2():
    from napari_hrs.engine.predictor import Predictor

    tiles = _sample_tiles()
    ours = Predictor("compact", device="cpu", score_threshold=0.05, batch_size=2)
    theirs = Predictor("compact", device="cpu", score_threshold=0.05, batch_size=2,
                       engine="detectron2")  # fmt: skip
    assert theirs.engine == "detectron2" and theirs.describe()["engine"] == "detectron2"
    a, b = ours.predict(tiles), theirs.predict(tiles)
    assert sum(len(d) for d in a) > 5  # real cells, not an empty comparison
    for da, db in zip(a, b, strict=True):
        _match(da, db)


@needs_d2
def test_paper_preset_same_detections_and_parameters_in_detectron2(tmp_path):
    """ResNet-50-FPN built by detectron2's own config path, our random weights (FrozenBN
    statistics calibrated on the image); the detectron2-format .pth written from detectron2's
    model loads back into ours."""
    from napari_hrs.engine.checkpoint import Loaded, load_model
    from napari_hrs.engine.detectron2_backend import Detectron2Model
    from napari_hrs.engine.model import build_model
    from napari_hrs.engine.predictor import Predictor

    torch.manual_seed(0)
    cfg = get_preset("paper")
    model = build_model(cfg).eval()
    tiles = [np.stack([t] * 3) for t in _sample_tiles(1, 224)]
    calibrate_frozen_bn(model, torch.from_numpy(tiles[0][None]))
    with torch.no_grad():  # confident foreground, so that detections pass every threshold
        for p in model.roi_heads.box_predictor:
            p.cls_score.bias[0] = 2.0
    d2 = Detectron2Model(cfg, model.state_dict())
    n_ours = sum(p.numel() for p in model.parameters())
    assert n_ours == sum(p.numel() for p in d2.d2.parameters())
    path = tmp_path / "model_final.pth"
    torch.save({"model": d2.d2.state_dict(), "iteration": 1}, path)
    kwargs = {"device": "cpu", "score_threshold": 0.5, "max_detections": 20}
    a = Predictor(Loaded(model, cfg), **kwargs).predict(tiles)
    b = Predictor(d2, **kwargs).predict(tiles)
    c = Predictor(load_model(path), **kwargs).predict(tiles)
    assert len(a[0]) > 0
    _match(a[0], b[0])
    _match(a[0], c[0])
