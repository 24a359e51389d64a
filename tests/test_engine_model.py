"""The Cascade Mask R-CNN end to end (napari_hrs.engine.model): losses, inference, cascade."""

from __future__ import annotations

import pytest
import torch

from _engine_model_helpers import disc_batch, empty_target, tiny_cfg
from napari_hrs.engine.config import get_preset
from napari_hrs.engine.model import build_model

LOSSES = {"loss_rpn_cls", "loss_rpn_loc", "loss_mask"} | {
    f"loss_{k}_stage{s}" for k in ("cls", "box_reg") for s in range(3)
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def test_training_losses_with_and_without_instances(model):
    images, targets = disc_batch(2)
    targets[1] = empty_target()
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.roi_heads.box_head[2].parameters()]
    assert all(g is not None for g in grads)
    model.zero_grad()


def test_all_empty_batch_trains(model):
    images, _ = disc_batch(1)
    model.train()
    losses = model(images, [empty_target()])
    assert float(losses["loss_mask"].detach()) == 0.0
    assert float(losses["loss_box_reg_stage0"].detach()) == 0.0
    sum(losses.values()).backward()
    model.zero_grad()


def test_inference_format_and_determinism(model):
    model.eval()
    images, _ = disc_batch(2, size=70)  # not a multiple of 32: padded inside
    with torch.inference_mode():
        a = model(images)
        b = model.inference(images, score_thresh=0.0, max_detections=7)
    assert len(a) == 2
    for out in a:
        assert set(out) == {"boxes", "scores", "classes", "mask_probs"}
        n = len(out["boxes"])
        assert out["boxes"].shape == (n, 4) and out["mask_probs"].shape == (n, 28, 28)
        assert out["classes"].dtype == torch.int64
        assert bool((out["scores"] > 0.05).all())
        if n:
            assert float(out["boxes"][:, 2:].max()) <= 70
    assert all(len(o["boxes"]) <= 7 for o in b)
    c = model.inference(images, score_thresh=0.0, max_detections=7)
    for x, y in zip(b, c, strict=True):
        for k in x:
            assert torch.equal(x[k], y[k])
    assert not model.training


def test_final_score_is_mean_of_stage_scores():
    torch.manual_seed(0)
    m = build_model(tiny_cfg()).eval()
    probs = (0.9, 0.6, 0.3)
    for k, p in enumerate(probs):
        pred = m.roi_heads.box_predictor[k]

        def fake(x, p=p):
            n = x.shape[0]
            logits = torch.log(torch.tensor([p, 1 - p])).expand(n, 2)
            return logits, torch.zeros(n, 4)

        pred.forward = fake
    out = m.inference(disc_batch(1)[0], score_thresh=0.0, nms_thresh=1.0, max_detections=1000)
    scores = out[0]["scores"]
    assert len(scores) > 0
    assert torch.allclose(scores, torch.full_like(scores, sum(probs) / 3), atol=1e-5)


def test_short_overfit_reduces_losses():
    torch.manual_seed(0)
    m = build_model(tiny_cfg())
    images, targets = disc_batch(1)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    m.train()
    history = []
    for _ in range(15):
        losses = m(images, targets)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append({k: float(v) for k, v in losses.items()})
    first, last = history[0], history[-1]
    assert sum(last.values()) < 0.7 * sum(first.values())
    for key in ("loss_rpn_cls", "loss_cls_stage0", "loss_mask"):
        assert last[key] < first[key], key


def test_paper_preset_size():
    m = build_model(get_preset("paper"))
    n = sum(p.numel() for p in m.parameters())
    assert 65e6 < n < 75e6
    assert "roi_heads.box_predictor.2.cls_score.weight" in m.state_dict()
    assert m.state_dict()["roi_heads.box_predictor.0.cls_score.weight"].shape == (2, 1024)
    assert m.state_dict()["roi_heads.mask_head.predictor.weight"].shape[0] == 1


def test_wrong_channel_count(model):
    with pytest.raises(ValueError, match="expected images"):
        model.eval()(torch.zeros(1, 3, 64, 64))
