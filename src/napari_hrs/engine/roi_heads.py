"""Cascade ROI heads (detectron2's ``CascadeROIHeads``) with a mask head.

Stage 0 refines RPN proposals (+ ground truth, sampled); stage k > 0 refines the previous
stage's predicted boxes (detached), re-matched at its own IoU threshold and not subsampled.
Each stage has its own ``box_head.k`` (2 FC) and ``box_predictor.k`` (``cls_score``:
num_classes + 1, background last; class-agnostic ``bbox_pred``: 4), and its pooled features'
gradient is scaled by 1 / num_stages. At inference, class scores are the mean of the stages'
softmax scores and boxes are the last stage's regression. Boxes are pixels ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms

from napari_hrs.engine.box_ops import (
    Box2BoxTransform,
    Matcher,
    pairwise_iou,
    smooth_l1,
    subsample_labels,
)
from napari_hrs.engine.mask_head import MaskHead, mask_loss, mask_targets
from napari_hrs.engine.poolers import ROIPooler

__all__ = ["BoxHead", "BoxPredictor", "CascadeROIHeads"]


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):  # noqa: ANN001
        ctx.scale = scale
        return x

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        return grad * ctx.scale, None


class BoxHead(nn.Module):
    """Flatten + ``fc1..fcN`` (each + ReLU)."""

    def __init__(self, in_dim: int, fc_dim: int, num_fc: int) -> None:
        super().__init__()
        self.num_fc = num_fc
        for k in range(num_fc):
            fc = nn.Linear(in_dim, fc_dim)
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
            self.add_module(f"fc{k + 1}", fc)
            in_dim = fc_dim
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for k in range(self.num_fc):
            x = F.relu(getattr(self, f"fc{k + 1}")(x))
        return x


class BoxPredictor(nn.Module):
    """``cls_score`` (K + 1 logits, background last) and class-agnostic ``bbox_pred`` (4)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(in_dim, 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class CascadeROIHeads(nn.Module):
    def __init__(self, cfg, in_channels: int, strides: tuple[int, ...]) -> None:  # noqa: ANN001
        super().__init__()
        rh, mh = cfg.roi_heads, cfg.mask_head
        self.cfg = rh
        self.num_classes = cfg.num_classes
        self.num_stages = len(rh.iou_thresholds)
        self.box_pooler = ROIPooler(rh.pooler_resolution, strides, rh.pooler_sampling_ratio,
                                    rh.canonical_box_size, rh.canonical_level)  # fmt: skip
        self.mask_pooler = ROIPooler(mh.pooler_resolution, strides, mh.pooler_sampling_ratio,
                                     rh.canonical_box_size, rh.canonical_level)  # fmt: skip
        in_dim = in_channels * rh.pooler_resolution**2
        self.box_head = nn.ModuleList(
            [BoxHead(in_dim, rh.fc_dim, rh.num_fc) for _ in range(self.num_stages)]
        )
        self.box_predictor = nn.ModuleList(
            [
                BoxPredictor(self.box_head[k].out_dim, self.num_classes)
                for k in range(self.num_stages)
            ]
        )
        self.box2box = [Box2BoxTransform(w) for w in rh.bbox_reg_weights]
        self.matchers = [Matcher([t], [0, 1], allow_low_quality_matches=False)
                         for t in rh.iou_thresholds]  # fmt: skip
        self.mask_head = MaskHead(in_channels, 1 if mh.cls_agnostic else self.num_classes,
                                  mh.num_conv, mh.conv_dim, mh.norm)  # fmt: skip
        self.mask_resolution = mh.resolution

    # --- training helpers ---------------------------------------------------------------
    @torch.no_grad()
    def _label(
        self, boxes: torch.Tensor, target: dict, stage: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(classes with num_classes = background, matched gt boxes, matched gt index)."""
        gt = target["boxes"]
        if len(gt) == 0:
            n = len(boxes)
            bg = torch.full((n,), self.num_classes, dtype=torch.int64, device=boxes.device)
            return (
                bg,
                torch.zeros_like(boxes),
                torch.zeros(n, dtype=torch.int64, device=boxes.device),
            )
        matched, lab = self.matchers[stage](pairwise_iou(gt, boxes))
        classes = target["classes"][matched].clone()
        classes[lab == 0] = self.num_classes
        return classes, gt[matched], matched

    @torch.no_grad()
    def _sample(self, proposals: list[torch.Tensor], targets: list[dict]) -> list[dict]:
        out = []
        for props, tgt in zip(proposals, targets, strict=True):
            if self.cfg.proposal_append_gt and len(tgt["boxes"]):
                props = torch.cat([props, tgt["boxes"].to(props.dtype)])
            classes, gt_boxes, matched = self._label(props, tgt, 0)
            pos, neg = subsample_labels(classes, self.cfg.batch_size_per_image,
                                        self.cfg.positive_fraction, self.num_classes)  # fmt: skip
            idx = torch.cat([pos, neg])
            out.append({"boxes": props[idx], "classes": classes[idx], "gt_boxes": gt_boxes[idx],
                        "matched": matched[idx]})  # fmt: skip
        return out

    def _run_stage(self, features, boxes: list[torch.Tensor], k: int):  # noqa: ANN001
        x = self.box_pooler(features, boxes)
        if self.training:
            x = _ScaleGradient.apply(x, 1.0 / self.num_stages)
        return self.box_predictor[k](self.box_head[k](x))

    def _predict_boxes(
        self, deltas: torch.Tensor, boxes: list[torch.Tensor], k: int
    ) -> list[torch.Tensor]:
        pred = (
            self.box2box[k].apply_deltas(deltas, torch.cat(boxes))
            if len(deltas)
            else deltas.float()
        )
        return list(pred.split([len(b) for b in boxes]))

    def _stage_losses(self, logits, deltas, props: list[dict], k: int) -> dict[str, torch.Tensor]:  # noqa: ANN001
        classes = torch.cat([p["classes"] for p in props])
        boxes = torch.cat([p["boxes"] for p in props])
        gt_boxes = torch.cat([p["gt_boxes"] for p in props])
        loss_cls = F.cross_entropy(logits.float(), classes, reduction="mean") if len(classes) \
            else logits.sum() * 0.0  # fmt: skip
        fg = (classes >= 0) & (classes < self.num_classes)
        if bool(fg.any()):
            gt_d = self.box2box[k].get_deltas(boxes[fg], gt_boxes[fg])
            loss_box = smooth_l1(deltas[fg].float(), gt_d, self.cfg.smooth_l1_beta) / max(
                len(classes), 1
            )
        else:
            loss_box = deltas.sum() * 0.0
        return {f"loss_cls_stage{k}": loss_cls, f"loss_box_reg_stage{k}": loss_box}

    # --- forward ------------------------------------------------------------------------
    def forward_train(self, features, proposals: list[torch.Tensor], targets: list[dict],
                      image_size: tuple[int, int]) -> dict[str, torch.Tensor]:  # noqa: ANN001  # fmt: skip
        h, w = image_size
        sampled = self._sample(proposals, targets)
        losses: dict[str, torch.Tensor] = {}
        props = sampled
        prev: list[torch.Tensor] = []
        for k in range(self.num_stages):
            if k > 0:
                props = []
                for boxes, tgt in zip(prev, targets, strict=True):
                    b = _clip(boxes.detach(), h, w)
                    b = b[((b[:, 2] - b[:, 0]) > 0) & ((b[:, 3] - b[:, 1]) > 0)]
                    classes, gt_boxes, matched = self._label(b, tgt, k)
                    props.append({"boxes": b, "classes": classes, "gt_boxes": gt_boxes,
                                  "matched": matched})  # fmt: skip
            boxes = [p["boxes"] for p in props]
            logits, deltas = self._run_stage(features, boxes, k)
            losses.update(self._stage_losses(logits, deltas, props, k))
            prev = self._predict_boxes(deltas.detach(), boxes, k)
        losses["loss_mask"] = self._mask_loss(features, sampled, targets)
        return losses

    def _mask_loss(self, features, sampled: list[dict], targets: list[dict]) -> torch.Tensor:  # noqa: ANN001
        """Mask loss on the foreground of the stage-0 sampled proposals (as detectron2)."""
        boxes, classes, gt = [], [], []
        for p, tgt in zip(sampled, targets, strict=True):
            fg = p["classes"] < self.num_classes
            b = p["boxes"][fg]
            boxes.append(b)
            classes.append(p["classes"][fg])
            if len(b):
                gt.append(mask_targets(tgt["masks"], p["matched"][fg], b, self.mask_resolution))
        logits = self.mask_head(self.mask_pooler(features, boxes))
        if not gt:
            return logits.sum() * 0.0
        return mask_loss(logits, torch.cat(classes), torch.cat(gt))

    @torch.no_grad()
    def forward_test(self, features, proposals: list[torch.Tensor], image_size: tuple[int, int],
                     score_thresh: float, nms_thresh: float, max_detections: int) -> list[dict]:  # noqa: ANN001  # fmt: skip
        h, w = image_size
        boxes = proposals
        stage_scores = []
        prev: list[torch.Tensor] = []
        for k in range(self.num_stages):
            if k > 0:
                boxes = [_clip(b, h, w) for b in prev]
            logits, deltas = self._run_stage(features, boxes, k)
            stage_scores.append(F.softmax(logits.float(), dim=-1))
            prev = self._predict_boxes(deltas, boxes, k)
        scores = torch.stack(stage_scores).mean(dim=0)
        sizes = [len(b) for b in prev]
        results = []
        for b, s in zip(prev, scores.split(sizes), strict=True):
            results.append(self._detect(b, s, h, w, score_thresh, nms_thresh, max_detections))
        boxes = [r["boxes"] for r in results]
        if sum(len(b) for b in boxes):
            logits = self.mask_head(self.mask_pooler(features, boxes)).float()
            for r, lg in zip(results, logits.split([len(b) for b in boxes]), strict=True):
                idx = torch.arange(len(lg), device=lg.device)
                cls = r["classes"] if lg.shape[1] > 1 else torch.zeros_like(r["classes"])
                r["mask_probs"] = lg[idx, cls].sigmoid()
        else:
            for r in results:
                r["mask_probs"] = r["boxes"].new_zeros(
                    (0, self.mask_resolution, self.mask_resolution)
                )
        return results

    def _detect(self, boxes, scores, h, w, score_thresh, nms_thresh, topk) -> dict:  # noqa: ANN001
        """detectron2's ``fast_rcnn_inference_single_image`` for class-agnostic boxes."""
        ok = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
        boxes, scores = _clip(boxes[ok], h, w), scores[ok, :-1]
        cand = scores > score_thresh
        r, c = cand.nonzero(as_tuple=True)
        b, s = boxes[r], scores[r, c]
        keep = batched_nms(b, s, c, nms_thresh)[:topk]
        b, s, c = b[keep], s[keep], c[keep]
        ok = ((b[:, 2] - b[:, 0]) > 0) & ((b[:, 3] - b[:, 1]) > 0)  # detector_postprocess
        return {"boxes": b[ok], "scores": s[ok], "classes": c[ok]}


def _clip(b: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return torch.stack((b[:, 0].clamp(0, w), b[:, 1].clamp(0, h),
                        b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)), dim=1)  # fmt: skip
