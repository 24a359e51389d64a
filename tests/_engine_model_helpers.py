"""Tiny model configs and disc images for the Cascade Mask R-CNN tests."""

from __future__ import annotations

import torch

from napari_hrs.engine.config import ModelConfig, get_preset


def tiny_cfg(class_names: tuple[str, ...] = ("hRS",), **changes) -> ModelConfig:
    """The compact preset, narrower still (fast on a shared 2-core CPU)."""
    cfg = get_preset("compact", class_names=class_names)
    base = {
        "fpn.out_channels": 32,
        "roi_heads.fc_dim": 64,
        "roi_heads.batch_size_per_image": 64,
        "mask_head.conv_dim": 16,
        "rpn.pre_nms_topk_train": 200,
        "rpn.post_nms_topk_train": 100,
        "rpn.pre_nms_topk_test": 200,
        "rpn.post_nms_topk_test": 100,
    }
    base.update(changes)
    return cfg.override(base)


def disc_batch(n_images: int = 1, size: int = 64, seed: int = 0):
    """Gray images ``(B, 1, size, size)`` (0..255) with two dark discs each, and targets."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    images, targets = [], []
    for _ in range(n_images):
        img = torch.full((size, size), 200.0) + 5 * torch.randn(size, size, generator=g)
        discs = [(size * 0.3, size * 0.3, size * 0.15), (size * 0.68, size * 0.65, size * 0.12)]
        masks, boxes = [], []
        for cy, cx, r in discs:
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            img[m] = 60.0
            masks.append(m)
            boxes.append([cx - r, cy - r, cx + r, cy + r])
        images.append(img[None])
        targets.append({"boxes": torch.tensor(boxes), "classes": torch.zeros(2, dtype=torch.int64),
                        "masks": torch.stack(masks)})  # fmt: skip
    return torch.stack(images), targets


def empty_target(size: int = 64) -> dict:
    return {"boxes": torch.zeros((0, 4)), "classes": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros((0, size, size), dtype=torch.bool)}  # fmt: skip


def calibrate_frozen_bn(model, images) -> None:
    """Give every FrozenBN of a random model the statistics of what reaches it on ``images``
    (one pass, in order), as trained weights would have: activations stay O(1) through the 50
    layers instead of growing until float rounding decides the boxes."""
    from napari_hrs.engine.backbone import FrozenBatchNorm2d

    def hook(mod, args):
        x = args[0].detach().float()
        mod.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        mod.running_var.copy_(x.var(dim=(0, 2, 3)) + 1e-3)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, FrozenBatchNorm2d)]  # fmt: skip
    try:
        with torch.enable_grad():  # the unfolded path, which calls each norm module
            model.backbone(model.preprocess(images)[0])
    finally:
        for h in handles:
            h.remove()
