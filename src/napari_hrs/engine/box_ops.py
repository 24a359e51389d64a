"""Box coding, proposal-to-ground-truth matching and balanced sampling (as in detectron2).

Boxes are ``(x0, y0, x1, y1)`` float tensors in pixels, shape ``(N, 4)``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["Box2BoxTransform", "Matcher", "pairwise_iou", "smooth_l1", "subsample_labels"]

_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class Box2BoxTransform:
    """R-CNN box coding: ``(dx, dy, dw, dh)`` scaled by ``weights`` ``(wx, wy, ww, wh)``.

    ``dx = wx * (gx - px) / pw``, ``dw = ww * log(gw / pw)`` (centres and sizes in pixels).
    """

    def __init__(self, weights: tuple[float, ...], scale_clamp: float = _DEFAULT_SCALE_CLAMP):
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def get_deltas(self, src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Deltas ``(N, 4)`` that turn ``src`` boxes into ``target`` boxes."""
        src_w = src[:, 2] - src[:, 0]
        src_h = src[:, 3] - src[:, 1]
        src_x = src[:, 0] + 0.5 * src_w
        src_y = src[:, 1] + 0.5 * src_h
        tgt_w = target[:, 2] - target[:, 0]
        tgt_h = target[:, 3] - target[:, 1]
        tgt_x = target[:, 0] + 0.5 * tgt_w
        tgt_y = target[:, 1] + 0.5 * tgt_h
        wx, wy, ww, wh = self.weights
        return torch.stack(
            (
                wx * (tgt_x - src_x) / src_w,
                wy * (tgt_y - src_y) / src_h,
                ww * torch.log(tgt_w / src_w),
                wh * torch.log(tgt_h / src_h),
            ),
            dim=1,
        )

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes ``(N, 4k)`` from ``deltas`` ``(N, 4k)`` applied to ``boxes`` ``(N, 4)``."""
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = torch.clamp(deltas[:, 2::4] / ww, max=self.scale_clamp)
        dh = torch.clamp(deltas[:, 3::4] / wh, max=self.scale_clamp)
        px = dx * widths[:, None] + ctr_x[:, None]
        py = dy * heights[:, None] + ctr_y[:, None]
        pw = torch.exp(dw) * widths[:, None]
        ph = torch.exp(dh) * heights[:, None]
        out = torch.stack((px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph), dim=-1)
        return out.reshape(deltas.shape)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``(len(a), len(b))``; empty boxes give 0."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(inter > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


class Matcher:
    """Assign each prediction (column) to its best ground truth (row) of an IoU matrix.

    ``thresholds`` ``[t1, ..., tk]`` split IoU into intervals labelled ``labels`` (k + 1 values,
    -1 ignore, 0 negative, 1 positive). With ``allow_low_quality_matches`` every ground truth's
    best predictions (ties included) are made positive.
    """

    def __init__(self, thresholds: list[float], labels: list[int],
                 allow_low_quality_matches: bool = False) -> None:  # fmt: skip
        if len(labels) != len(thresholds) + 1:
            raise ValueError("Matcher needs one more label than thresholds")
        self.thresholds = [-float("inf"), *thresholds, float("inf")]
        self.labels = labels
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(matches, match_labels)``, both ``(M,)`` int64 for an ``(N_gt, M)`` IoU matrix."""
        if iou.numel() == 0:
            m = iou.shape[1]
            matches = iou.new_zeros(m, dtype=torch.int64)
            labels = iou.new_full((m,), self.labels[0], dtype=torch.int64)
            return matches, labels
        vals, matches = iou.max(dim=0)
        labels = matches.new_full(matches.shape, 1, dtype=torch.int64)
        for lab, lo, hi in zip(self.labels, self.thresholds[:-1], self.thresholds[1:], strict=True):
            sel = (vals >= lo) & (vals < hi)
            labels[sel] = lab
        if self.allow_low_quality_matches:
            best, _ = iou.max(dim=1)
            _, pred_idx = torch.nonzero(iou == best[:, None], as_tuple=True)
            labels[pred_idx] = 1
        return matches, labels


def subsample_labels(labels: torch.Tensor, num_samples: int, positive_fraction: float,
                     bg_label: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Random positive / negative indices: at most ``num_samples * positive_fraction``
    positives (labels not -1 nor ``bg_label``), negatives (``bg_label``) fill the rest."""
    positive = torch.nonzero((labels != -1) & (labels != bg_label)).squeeze(1)
    negative = torch.nonzero(labels == bg_label).squeeze(1)
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    perm1 = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
    perm2 = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
    return positive[perm1], negative[perm2]


def smooth_l1(input: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Summed smooth-L1 (``beta`` < 1e-5: plain L1, as detectron2)."""
    if beta < 1e-5:
        return (input - target).abs().sum()
    return F.smooth_l1_loss(input, target, beta=beta, reduction="sum")
