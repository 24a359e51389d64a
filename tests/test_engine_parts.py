"""Building blocks of the Cascade Mask R-CNN: anchors, box coding, matching, sampling,
ROI pooling and the ResNet-FPN backbone."""

from __future__ import annotations

import pytest
import torch

from _engine_model_helpers import tiny_cfg
from napari_hrs.engine.anchors import AnchorGenerator
from napari_hrs.engine.backbone import FrozenBatchNorm2d, build_backbone
from napari_hrs.engine.box_ops import Box2BoxTransform, Matcher, pairwise_iou, subsample_labels
from napari_hrs.engine.config import get_preset
from napari_hrs.engine.poolers import ROIPooler, assign_boxes_to_levels


def test_anchor_count_and_layout():
    gen = AnchorGenerator(((32,), (64,)), (0.5, 1.0, 2.0), (4, 8))
    feats = [torch.zeros(1, 8, 6, 5), torch.zeros(1, 8, 3, 3)]
    a0, a1 = gen(feats)
    assert gen.num_anchors == 3
    assert a0.shape == (6 * 5 * 3, 4) and a1.shape == (3 * 3 * 3, 4)
    # location-major: the first three anchors share the centre (0, 0); the next ones at x = 4
    centres = (a0[:, :2] + a0[:, 2:]) / 2
    assert torch.allclose(centres[:3], torch.zeros(3, 2))
    assert torch.allclose(centres[3], torch.tensor([4.0, 0.0]))
    wh = a0[:3, 2:] - a0[:3, :2]
    assert torch.allclose(wh.prod(dim=1), torch.full((3,), 32.0**2))
    assert torch.allclose(wh[:, 1] / wh[:, 0], torch.tensor([0.5, 1.0, 2.0]))


@pytest.mark.parametrize(
    "weights",
    [
        (1.0, 1.0, 1.0, 1.0),
        (10.0, 10.0, 5.0, 5.0),
        (20.0, 20.0, 10.0, 10.0),
        (30.0, 30.0, 15.0, 15.0),
    ],  # fmt: skip
)
def test_box_coder_round_trip(weights):
    g = torch.Generator().manual_seed(1)
    src = torch.rand(50, 2, generator=g) * 100
    src = torch.cat([src, src + 5 + torch.rand(50, 2, generator=g) * 40], dim=1)
    tgt = src + torch.randn(50, 4, generator=g) * 3
    tgt[:, 2:] = torch.maximum(tgt[:, 2:], tgt[:, :2] + 1)
    coder = Box2BoxTransform(weights)
    deltas = coder.get_deltas(src, tgt)
    assert torch.allclose(coder.apply_deltas(deltas, src), tgt, atol=1e-3)
    assert torch.allclose(coder.get_deltas(src, src), torch.zeros(50, 4), atol=1e-6)


def test_iou_and_matcher():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    preds = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 29, 30], [50, 50, 60, 60],
                          [0, 0, 10, 8]])  # fmt: skip
    iou = pairwise_iou(gt, preds)
    assert iou[0, 0] == 1 and iou[0, 1] == pytest.approx(0.5) and iou[1, 3] == 0
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1])(iou)
    assert matches[2] == 1
    assert labels.tolist() == [1, -1, 1, 0, 1]
    # low-quality matches: gt 1's best prediction is positive even below 0.7
    iou_low = pairwise_iou(gt, preds[[1, 3, 2]] * torch.tensor([1.0, 1, 1, 1]))
    iou_low[1, 2] = 0.5
    _, lab = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(iou_low)
    assert lab[2] == 1
    _, lab_no = Matcher([0.3, 0.7], [0, -1, 1])(iou_low)
    assert lab_no[2] == -1


def test_matcher_without_gt():
    m, lab = Matcher([0.5], [0, 1])(torch.zeros(0, 7))
    assert m.shape == (7,) and lab.tolist() == [0] * 7


@pytest.mark.parametrize(("n_pos", "n_neg", "want_pos", "want_neg"),
                         [(100, 1000, 64, 192), (10, 1000, 10, 246), (10, 5, 10, 5)])  # fmt: skip
def test_subsample(n_pos, n_neg, want_pos, want_neg):
    labels = torch.cat([torch.ones(n_pos), torch.zeros(n_neg), -torch.ones(7)]).long()
    pos, neg = subsample_labels(labels, 256, 0.25, 0)
    assert len(pos) == want_pos and len(neg) == want_neg
    assert bool((labels[pos] == 1).all()) and bool((labels[neg] == 0).all())
    assert len(set(pos.tolist())) == len(pos)


def test_level_assignment():
    boxes = torch.tensor([[0.0, 0, 24, 24], [0, 0, 112, 112], [0, 0, 224, 224], [0, 0, 448, 448],
                          [0, 0, 2000, 2000]])  # fmt: skip
    lv = assign_boxes_to_levels(boxes, 2, 5, 224, 4)
    assert lv.tolist() == [0, 1, 2, 3, 3]


def test_pooler_reads_the_right_level():
    feats = [torch.full((2, 3, 32, 32), float(k)) for k in range(4)]
    pooler = ROIPooler(7, (4, 8, 16, 32))
    boxes = [torch.tensor([[0.0, 0, 20, 20]]), torch.tensor([[0.0, 0, 120, 120], [0, 0, 500, 500]])]
    out = pooler(feats, boxes)
    assert out.shape == (3, 3, 7, 7)
    assert out[:, 0, 3, 3].tolist() == [0.0, 1.0, 3.0]


@pytest.mark.parametrize("norm", ["FrozenBN", "BN", "GN"])
def test_backbone_shapes(norm):
    cfg = tiny_cfg(**{"backbone.norm": norm})
    bb = build_backbone(cfg, 1).eval()
    with torch.no_grad():
        feats = bb(torch.zeros(2, 1, 128, 96))
    assert [tuple(f.shape) for f in feats] == [
        (2, 32, 128 // s, 96 // s) for s in (4, 8, 16, 32)
    ] + [(2, 32, 2, 2)]  # noqa: E501


def test_paper_backbone_freezes_stem_and_res2():
    bb = build_backbone(get_preset("paper"), 3)
    frozen = {n.split(".")[1] for n, p in bb.named_parameters() if not p.requires_grad}
    trainable = {
        n.split(".")[1]
        for n, p in bb.named_parameters()
        if p.requires_grad and n.startswith("bottom_up")
    }  # noqa: E501
    assert frozen == {"stem", "res2"} and trainable == {"res3", "res4", "res5"}
    assert isinstance(bb.bottom_up.stem.conv1.norm, FrozenBatchNorm2d)


def test_frozen_bn_matches_batchnorm_eval():
    bn = torch.nn.BatchNorm2d(4).eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    fbn = FrozenBatchNorm2d(4)
    fbn.load_state_dict(bn.state_dict())
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(fbn(x), bn(x), atol=1e-5)


@pytest.mark.parametrize("bias", [False, True])
def test_frozen_bn_folds_into_the_conv_at_inference(bias):
    """Without gradients a conv + FrozenBN runs as one conv with folded weights: same output
    as the two steps (which training, with gradients, still runs)."""
    from napari_hrs.engine.backbone import Conv2d

    torch.manual_seed(0)
    conv = Conv2d(8, 16, 3, padding=1, bias=bias, norm=FrozenBatchNorm2d(16))
    for buf, lo, hi in (("weight", 0.5, 2.0), ("bias", -1.0, 1.0), ("running_mean", -1.0, 1.0),
                        ("running_var", 0.2, 3.0)):  # fmt: skip
        getattr(conv.norm, buf).uniform_(lo, hi)
    x = torch.randn(2, 8, 12, 10)
    two_steps = conv.norm(torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))
    with torch.no_grad():
        folded = conv(x)
    assert torch.allclose(folded, two_steps, atol=1e-5, rtol=1e-5)
    assert torch.allclose(conv(x), two_steps, atol=1e-6)  # with gradients: the two steps
