"""Region proposal network (detectron2's ``StandardRPNHead`` + ``RPN``).

Boxes are ``(x0, y0, x1, y1)`` in padded-input pixels; images share one size ``(H, W)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms

from napari_hrs.engine.anchors import AnchorGenerator
from napari_hrs.engine.box_ops import (
    Box2BoxTransform,
    Matcher,
    pairwise_iou,
    smooth_l1,
    subsample_labels,
)

__all__ = ["RPN", "StandardRPNHead"]


class StandardRPNHead(nn.Module):
    """Shared 3x3 conv + ReLU, then 1x1 ``objectness_logits`` (A) and ``anchor_deltas`` (4A)."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


class RPN(nn.Module):
    """Proposals and RPN losses from FPN features ``[P2..P6]``."""

    def __init__(self, cfg, in_channels: int, strides: tuple[int, ...]) -> None:  # noqa: ANN001
        super().__init__()
        r, a = cfg.rpn, cfg.anchors
        self.anchor_generator = AnchorGenerator(a.sizes, a.aspect_ratios, strides, a.offset)
        self.rpn_head = StandardRPNHead(in_channels, self.anchor_generator.num_anchors)
        lo, hi = r.iou_thresholds
        self.matcher = Matcher([lo, hi], [0, -1, 1], allow_low_quality_matches=True)
        self.box2box = Box2BoxTransform(r.bbox_reg_weights)
        self.cfg = r

    def forward(self, features: list[torch.Tensor], image_size: tuple[int, int], num_images: int,
                gt_boxes: list[torch.Tensor] | None = None
                ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:  # fmt: skip
        """``(proposals, losses)``: one ``(P_i, 4)`` box tensor per image (detached, sorted by
        objectness) and the RPN losses (empty when ``gt_boxes`` is None)."""
        anchors = self.anchor_generator(features)
        logits, deltas = self.rpn_head(features)
        # (N, A, H, W) -> (N, H*W*A); (N, A*4, H, W) -> (N, H*W*A, 4)
        logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]
        deltas = [
            d.view(d.shape[0], -1, 4, d.shape[-2], d.shape[-1])
            .permute(0, 3, 4, 1, 2)
            .flatten(1, -2)
            for d in deltas
        ]
        losses: dict[str, torch.Tensor] = {}
        if gt_boxes is not None:
            losses = self.losses(anchors, logits, deltas, gt_boxes)
        proposals = self.find_top_proposals(anchors, logits, deltas, image_size, num_images)
        return proposals, losses

    @torch.no_grad()
    def find_top_proposals(self, anchors, logits, deltas, image_size, num_images):  # noqa: ANN001
        training = self.training
        h, w = image_size
        if training:
            pre, post = self.cfg.pre_nms_topk_train, self.cfg.post_nms_topk_train
        else:
            pre, post = self.cfg.test_topk(h, w)
        all_boxes, all_scores, all_lvl = [], [], []
        for lvl, (anc, lg, dl) in enumerate(zip(anchors, logits, deltas, strict=True)):
            k = min(pre, lg.shape[1])
            scores, idx = lg.detach().float().topk(k, dim=1)  # (N, k)
            batch = torch.arange(num_images, device=lg.device)[:, None]
            d = dl.detach()[batch, idx].reshape(-1, 4)
            a = anc[idx.reshape(-1)]
            boxes = self.box2box.apply_deltas(d, a).reshape(num_images, k, 4)
            all_boxes.append(boxes)
            all_scores.append(scores)
            all_lvl.append(torch.full((k,), lvl, dtype=torch.int64, device=lg.device))
        boxes = torch.cat(all_boxes, dim=1)
        scores = torch.cat(all_scores, dim=1)
        lvls = torch.cat(all_lvl)
        out = []
        for i in range(num_images):
            b, s, lv = boxes[i], scores[i], lvls
            ok = torch.isfinite(b).all(dim=1) & torch.isfinite(s)
            if not bool(ok.all()):
                if training:
                    raise FloatingPointError("predicted RPN boxes or scores contain Inf/NaN; "
                                             "training has diverged (lower the learning rate)")  # fmt: skip
                b, s, lv = b[ok], s[ok], lv[ok]
            b = torch.stack((b[:, 0].clamp(0, w), b[:, 1].clamp(0, h),
                             b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)), dim=1)  # fmt: skip
            keep = ((b[:, 2] - b[:, 0]) > self.cfg.min_size) & (
                (b[:, 3] - b[:, 1]) > self.cfg.min_size
            )
            b, s, lv = b[keep], s[keep], lv[keep]
            keep = batched_nms(b, s, lv, self.cfg.nms_thresh)[:post]
            out.append(b[keep])
        return out

    def losses(self, anchors, logits, deltas, gt_boxes):  # noqa: ANN001
        anchors_all = torch.cat(anchors)
        labels, targets = [], []
        for gt in gt_boxes:
            iou = pairwise_iou(gt, anchors_all)
            matched, lab = self.matcher(iou)
            pos, neg = subsample_labels(lab, self.cfg.batch_size_per_image,
                                        self.cfg.positive_fraction, 0)  # fmt: skip
            lab = torch.full_like(lab, -1)
            lab[pos] = 1
            lab[neg] = 0
            labels.append(lab)
            targets.append(gt[matched] if len(gt) else torch.zeros_like(anchors_all))
        labels_t = torch.stack(labels)  # (N, R)
        logits_t = torch.cat(logits, dim=1).float()
        deltas_t = torch.cat(deltas, dim=1).float()
        pos = labels_t == 1
        valid = labels_t >= 0
        norm = self.cfg.batch_size_per_image * len(gt_boxes)
        gt_deltas = torch.stack([self.box2box.get_deltas(anchors_all, t) for t in targets])
        loc = smooth_l1(deltas_t[pos], gt_deltas[pos], self.cfg.smooth_l1_beta)
        cls = F.binary_cross_entropy_with_logits(logits_t[valid], labels_t[valid].float(),
                                                 reduction="sum")  # fmt: skip
        wgt = self.cfg.loss_weight
        return {"loss_rpn_cls": cls * wgt / norm, "loss_rpn_loc": loc * wgt / norm}
