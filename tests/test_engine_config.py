"""Model configs and presets (napari_hrs.engine.config)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from napari_hrs.engine.config import ModelConfig, get_preset


@pytest.mark.parametrize("name", ["paper", "compact"])
def test_preset_round_trip(name):
    cfg = get_preset(name, class_names=("a", "b"))
    assert cfg.num_classes == 2 and cfg.name == name
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_preset_values():
    paper, compact = get_preset("paper"), get_preset("compact")
    assert paper.input_channels == 3 and paper.input_format == "BGR"
    assert paper.pixel_mean == (103.53, 116.28, 123.675)
    assert paper.roi_heads.iou_thresholds == (0.5, 0.6, 0.7)
    assert paper.roi_heads.bbox_reg_weights[2] == (30.0, 30.0, 15.0, 15.0)
    assert paper.anchors.sizes == ((32,), (64,), (128,), (256,), (512,))
    assert paper.mask_resolution == 28 and compact.mask_resolution == 28
    assert compact.input_channels == 1 and compact.pixel_mean == (128.0,)
    assert compact.pixel_size_um == 0.325 and compact.max_object_size_px == 72
    assert compact.score_thresh == 0.05 and compact.detections_per_image == 100
    assert compact.in_channels == 1


@pytest.mark.parametrize(
    ("key", "value", "getter"),
    [
        ("roi_heads.fc_dim", 128, lambda c: c.roi_heads.fc_dim),
        ("model.roi_heads.batch_size_per_image", 64, lambda c: c.roi_heads.batch_size_per_image),
        ("model.class_names", ("x", "y"), lambda c: c.class_names),
        ("score_thresh", 0.3, lambda c: c.score_thresh),
        ("anchors.sizes", [[8], [16], [32], [64], [128]], lambda c: c.anchors.sizes[0]),
    ],
)
def test_override(key, value, getter):
    cfg = get_preset("compact")
    new = cfg.override({key: value})
    expected = (
        (8,) if key == "anchors.sizes" else (tuple(value) if isinstance(value, tuple) else value)
    )
    assert getter(new) == expected
    assert getter(cfg) != expected  # the original is unchanged


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"roi_heads.nope": 1}, "unknown model config key"),
        ({"input_channels": 2}, "input_channels"),
        ({"pixel_mean": [1.0, 2.0]}, "pixel_mean"),
        ({"roi_heads.iou_thresholds": [0.5, 0.6]}, "bbox_reg_weights"),
        ({"backbone.norm": "LN"}, "unknown backbone.norm"),
        ({"class_names": []}, "class_names"),
    ],
)
def test_override_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        get_preset("compact").override(changes)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


def test_engine_import_is_torch_free():
    code = ("import sys, napari_hrs, napari_hrs.engine, napari_hrs.engine.config; "
            "napari_hrs.engine.get_preset('compact'); assert 'torch' not in sys.modules")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_test_time_topk_grows_with_the_input_only_when_configured():
    from napari_hrs.engine.config import get_preset

    paper = get_preset("paper")
    assert paper.test_topk(256, 256) == paper.test_topk(4096, 4096) == (1000, 1000, 100)
    compact = get_preset("compact")
    assert compact.test_topk(256, 256) == (400, 200, 100)
    pre, post, cap = compact.test_topk(2048, 2048)
    assert pre == post == cap == 4195  # ceil(1000 * 2048**2 / 1e6)
    fixed = compact.override({"rpn.topk_test_per_mpx": 0, "roi_heads.detections_per_mpx": 0})
    assert fixed.test_topk(2048, 2048) == (400, 200, 100)
