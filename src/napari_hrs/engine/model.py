"""The Cascade Mask R-CNN: backbone (ResNet-FPN) + RPN + cascade ROI heads + mask head.

Input: float images ``(B, C, H, W)`` on a 0..255 scale (``cfg.input_format`` channel order);
the model normalises with ``cfg.pixel_mean`` / ``cfg.pixel_std`` and zero-pads to a multiple of
``cfg.size_divisibility`` itself. Training (``model.train()``) with targets returns a dict of
losses; evaluation returns one dict per image: ``boxes`` ``(N, 4)`` (x0, y0, x1, y1 pixels of
the unpadded image), ``scores`` ``(N,)``, ``classes`` ``(N,)`` (0-based), ``mask_probs``
``(N, 28, 28)`` (box-relative mask probabilities).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from napari_hrs.engine.backbone import build_backbone
from napari_hrs.engine.config import ModelConfig
from napari_hrs.engine.roi_heads import CascadeROIHeads
from napari_hrs.engine.rpn import RPN

__all__ = ["CascadeMaskRCNN", "build_model"]


class CascadeMaskRCNN(nn.Module):
    """Cascade Mask R-CNN with detectron2's module names (see :mod:`napari_hrs.engine`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg, cfg.input_channels)
        ch, strides = self.backbone.out_channels, self.backbone.strides
        self.proposal_generator = RPN(cfg, ch, strides)
        self.roi_heads = CascadeROIHeads(cfg, ch, strides[:4])
        mean = torch.tensor(cfg.pixel_mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(cfg.pixel_std, dtype=torch.float32).view(-1, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalised, zero-padded batch and the unpadded ``(H, W)``."""
        if images.ndim != 4 or images.shape[1] != self.cfg.input_channels:
            raise ValueError(f"expected images (B, {self.cfg.input_channels}, H, W), got shape "
                             f"{tuple(images.shape)}")  # fmt: skip
        h, w = int(images.shape[-2]), int(images.shape[-1])
        x = (images.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
        d = max(1, int(self.cfg.size_divisibility))
        ph, pw = -(-h // d) * d - h, -(-w // d) * d - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), value=0.0)
        return x, (h, w)

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):  # noqa: ANN201
        """Losses (training, ``targets`` given) or detections (see the module docstring).

        Parameters
        ----------
        images : Tensor
            ``(B, C, H, W)`` float, 0..255.
        targets : list of dict, optional
            Per image ``boxes`` ``(N, 4)`` float pixels, ``classes`` ``(N,)`` int64 (0-based)
            and ``masks`` ``(N, H, W)`` bool (full image).
        """
        if not self.training:
            return self.inference(images)
        if targets is None:
            raise ValueError("training needs targets (boxes, classes, masks per image); call "
                             "model.eval() for inference")  # fmt: skip
        if len(targets) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(targets)} targets")
        x, size = self.preprocess(images)
        tg = [self._prepare_target(t, size, i) for i, t in enumerate(targets)]
        features = self.backbone(x)
        proposals, losses = self.proposal_generator(
            features, size, len(tg), [t["boxes"] for t in tg]
        )
        losses.update(self.roi_heads.forward_train(features[:4], proposals, tg, size))
        return losses

    def _prepare_target(self, t: dict, size: tuple[int, int], index: int) -> dict:
        """Tensors on the model's device; boxes clipped to the image, empty ones dropped (as
        detectron2's dataset mapper does)."""
        h, w = size
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=self.device).reshape(-1, 4)
        classes = torch.as_tensor(t["classes"], dtype=torch.int64, device=self.device).reshape(-1)
        masks = torch.as_tensor(t["masks"], device=self.device)
        masks = masks if masks.dtype == torch.bool else masks != 0
        if masks.numel() == 0 and len(boxes) == 0:
            masks = masks.new_zeros((0, h, w), dtype=torch.bool)
        if len(classes) != len(boxes) or masks.ndim != 3 or len(masks) != len(boxes):
            raise ValueError(f"target {index}: {len(boxes)} boxes, {len(classes)} classes and "
                             f"masks of shape {tuple(masks.shape)}; give one class and one "
                             "(H, W) mask per box")  # fmt: skip
        if tuple(masks.shape[-2:]) != (h, w):
            raise ValueError(f"target {index}: masks are {tuple(masks.shape[-2:])} but the "
                             f"images are {(h, w)}; pass full-image masks (N, H, W)")  # fmt: skip
        if len(classes) and (int(classes.min()) < 0 or int(classes.max()) >= self.cfg.num_classes):
            raise ValueError(f"target {index}: classes must be 0..{self.cfg.num_classes - 1} "
                             f"({list(self.cfg.class_names)}), got {classes.unique().tolist()}")  # fmt: skip
        boxes = torch.stack((boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                             boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)), dim=1)  # fmt: skip
        keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
        if not bool(keep.all()):
            boxes, classes, masks = boxes[keep], classes[keep], masks[keep]
        return {"boxes": boxes, "classes": classes, "masks": masks}

    def inference(self, images: torch.Tensor, score_thresh: float | None = None,
                  nms_thresh: float | None = None, max_detections: int | None = None
                  ) -> list[dict[str, torch.Tensor]]:  # fmt: skip
        """Detections per image (see the module docstring); defaults come from ``cfg``
        (``max_detections``: the config's cap for this input size, see
        :meth:`~napari_hrs.engine.config.ROIHeadsConfig.detection_cap`)."""
        rh = self.cfg.roi_heads
        thr = rh.score_thresh if score_thresh is None else float(score_thresh)
        nms = rh.nms_thresh if nms_thresh is None else float(nms_thresh)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                x, size = self.preprocess(images)
                top = rh.detection_cap(*size) if max_detections is None else int(max_detections)
                features = self.backbone(x)
                proposals, _ = self.proposal_generator(features, size, x.shape[0])
                return self.roi_heads.forward_test(features[:4], proposals, size, thr, nms, top)
        finally:
            self.train(was_training)


def build_model(cfg: ModelConfig) -> CascadeMaskRCNN:
    """A randomly initialised :class:`CascadeMaskRCNN` for ``cfg`` (on the CPU)."""
    return CascadeMaskRCNN(cfg)
