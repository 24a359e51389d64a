"""Mask head (detectron2's ``MaskRCNNConvUpsampleHead``) and its loss.

ROIAlign features ``(R, C, 14, 14)`` -> ``mask_fcn1..n`` (3x3 conv + ReLU) -> ``deconv``
(2x2 transposed conv, stride 2, + ReLU) -> ``predictor`` (1x1, one map per class) ->
``(R, num_classes, 28, 28)`` logits. Masks are box-relative grids.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import roi_align

from napari_hrs.engine.backbone import Conv2d, get_norm

__all__ = ["MaskHead", "mask_loss", "mask_targets"]


class MaskHead(nn.Module):
    """``(R, C, S, S)`` pooled features -> ``(R, num_classes, 2S, 2S)`` mask logits."""

    def __init__(self, in_channels: int, num_classes: int, num_conv: int, conv_dim: int,
                 norm: str = "") -> None:  # fmt: skip
        super().__init__()
        ch = in_channels
        self.num_conv = num_conv
        for k in range(num_conv):
            conv = Conv2d(ch, conv_dim, 3, padding=1, bias=not norm, norm=get_norm(norm, conv_dim))
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            self.add_module(f"mask_fcn{k + 1}", conv)
            ch = conv_dim
        self.deconv = nn.ConvTranspose2d(ch, conv_dim, 2, stride=2)
        nn.init.kaiming_normal_(self.deconv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.deconv.bias)
        self.predictor = nn.Conv2d(conv_dim, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(self.num_conv):
            x = F.relu(getattr(self, f"mask_fcn{k + 1}")(x))
        x = F.relu(self.deconv(x))
        return self.predictor(x)


def mask_targets(masks: torch.Tensor, index: torch.Tensor, boxes: torch.Tensor,
                 size: int) -> torch.Tensor:  # fmt: skip
    """Binary ``(R, size, size)`` grids: full-image ``masks[index[r]]`` (``masks`` ``(N, H, W)``)
    cut to ``boxes`` ``(R, 4)`` pixels by ROIAlign (``aligned=True``) and thresholded at 0.5,
    as detectron2's ``BitMasks.crop_and_resize``."""
    if len(boxes) == 0:
        return torch.zeros((0, size, size), dtype=torch.float32, device=boxes.device)
    rois = torch.cat([index.to(boxes.device, torch.float32)[:, None], boxes.float()], dim=1)
    out = roi_align(masks[:, None].float(), rois, (size, size), 1.0, 0, aligned=True).squeeze(1)
    return (out >= 0.5).float()


def mask_loss(logits: torch.Tensor, classes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of each ROI's ground-truth-class map ``logits``
    ``(R, K, M, M)`` (K = 1: class-agnostic) against ``targets`` ``(R, M, M)``; 0 (with a
    gradient) when R = 0."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    if logits.shape[1] == 1:
        classes = torch.zeros_like(classes)
    sel = logits[torch.arange(len(classes), device=logits.device), classes]
    return F.binary_cross_entropy_with_logits(sel.float(), targets, reduction="mean")
