"""Anchor generation over the FPN levels (detectron2's ``DefaultAnchorGenerator``).

Anchors are ``(x0, y0, x1, y1)`` in input pixels, ordered location-major (row, column) and
anchor-minor, matching the RPN head's ``(N, A, H, W) -> (N, H * W * A)`` flattening.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["AnchorGenerator"]


def cell_anchors(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...]) -> torch.Tensor:
    """``(len(sizes) * len(aspect_ratios), 4)`` anchors centred on 0; ratio is height / width."""
    out = []
    for size in sizes:
        area = float(size) ** 2
        for ratio in aspect_ratios:
            w = math.sqrt(area / ratio)
            h = ratio * w
            out.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(out, dtype=torch.float32)


class AnchorGenerator(nn.Module):
    """Anchors for each level given its stride (pixels)."""

    def __init__(self, sizes: tuple[tuple[float, ...], ...], aspect_ratios: tuple[float, ...],
                 strides: tuple[int, ...], offset: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        if len(sizes) != len(strides):
            raise ValueError(f"{len(sizes)} anchor size tuples for {len(strides)} levels")
        self.strides = tuple(int(s) for s in strides)
        self.offset = float(offset)
        for i, s in enumerate(sizes):
            self.register_buffer(
                f"cell_anchors_{i}", cell_anchors(s, aspect_ratios), persistent=False
            )
        self.num_levels = len(sizes)

    @property
    def num_anchors(self) -> int:
        """Anchors per location (the same on every level)."""
        return int(self.cell_anchors_0.shape[0])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """One ``(H_l * W_l * A, 4)`` float32 tensor per level."""
        out = []
        for i, feat in enumerate(features):
            h, w = feat.shape[-2:]
            stride = self.strides[i]
            base = getattr(self, f"cell_anchors_{i}")
            sx = (torch.arange(w, device=base.device, dtype=torch.float32) + self.offset) * stride
            sy = (torch.arange(h, device=base.device, dtype=torch.float32) + self.offset) * stride
            yy, xx = torch.meshgrid(sy, sx, indexing="ij")
            xx, yy = xx.reshape(-1), yy.reshape(-1)
            shifts = torch.stack((xx, yy, xx, yy), dim=1)
            out.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
        return out
