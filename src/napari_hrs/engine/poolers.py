"""Multi-level ROIAlign (detectron2's ``ROIPooler`` with ``ROIAlignV2``: ``aligned=True``).

A box of side ``s = sqrt(area)`` (pixels) is pooled from level
``floor(canonical_level + log2(s / canonical_box_size))``, clamped to the available levels.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import roi_align

__all__ = ["ROIPooler", "assign_boxes_to_levels"]


def assign_boxes_to_levels(boxes: torch.Tensor, min_level: int, max_level: int,
                           canonical_box_size: int, canonical_level: int) -> torch.Tensor:  # fmt: skip
    """0-based level index (relative to ``min_level``) of each box ``(N, 4)``."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    sizes = torch.sqrt(area.clamp(min=0))
    lvl = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    return (torch.clamp(lvl, min=min_level, max=max_level) - min_level).to(torch.int64)


class ROIPooler(nn.Module):
    """Pool ``(R, C, S, S)`` features of boxes from a list of FPN maps ``(B, C, H, W)``.

    Parameters
    ----------
    output_size : int
        S, the side of the pooled grid.
    strides : tuple of int
        Stride (pixels) of each map given to ``forward`` (powers of 2, consecutive).
    sampling_ratio : int
        Bilinear samples per bin side; 0 = adaptive (``ceil(bin size)``).
    """

    def __init__(self, output_size: int, strides: tuple[int, ...], sampling_ratio: int = 0,
                 canonical_box_size: int = 224, canonical_level: int = 4) -> None:  # fmt: skip
        super().__init__()
        self.output_size = int(output_size)
        self.scales = tuple(1.0 / s for s in strides)
        self.min_level = int(round(math.log2(strides[0])))
        self.max_level = int(round(math.log2(strides[-1])))
        self.sampling_ratio = int(sampling_ratio)
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def forward(self, features: list[torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        """``features``: one map per stride; ``boxes``: one ``(N_i, 4)`` tensor per image."""
        feats = [f.float() for f in features]  # fp16 autocast: roi_align in float32
        rois = torch.cat(
            [
                torch.cat([b.new_full((len(b), 1), float(i)), b.float()], dim=1)
                for i, b in enumerate(boxes)
            ],
            dim=0,
        ) if boxes else feats[0].new_zeros((0, 5))  # fmt: skip
        n, c = rois.shape[0], feats[0].shape[1]
        s = self.output_size
        if len(feats) == 1:
            return roi_align(feats[0], rois, s, self.scales[0], self.sampling_ratio, aligned=True)
        levels = assign_boxes_to_levels(rois[:, 1:], self.min_level, self.max_level,
                                        self.canonical_box_size, self.canonical_level)  # fmt: skip
        out = feats[0].new_zeros((n, c, s, s))
        for lvl, (feat, scale) in enumerate(zip(feats, self.scales, strict=True)):
            idx = torch.nonzero(levels == lvl).squeeze(1)
            if idx.numel() == 0:
                continue
            out[idx] = roi_align(feat, rois[idx], s, scale, self.sampling_ratio, aligned=True)
        return out
