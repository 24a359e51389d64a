"""Plain containers passed between the model, the predictor and the tiler.

Coordinates are **pixels of the image the model saw**, boxes are ``(x0, y0, x1, y1)`` with
x = column and y = row, half-open in the detectron2 sense (a box covering pixel columns 3..5
inclusive is x0=3, x1=6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """Instances found in one image (or one tile).

    Attributes
    ----------
    boxes : (N, 4) float32
        ``x0, y0, x1, y1`` in pixels of the input image.
    scores : (N,) float32
        Final confidence in [0, 1] (mean of the cascade stages' class probabilities).
    classes : (N,) int64
        Index into the model's ``class_names`` (0-based, background excluded).
    mask_probs : (N, M, M) float32
        Mask probabilities in [0, 1] on an M x M grid (M = 28 for the mask head) covering each
        instance's box. Never full-image masks: use :func:`napari_hrs.engine.masks.paste_mask`
        to paste one into its box.
    image_size : (H, W)
        Size of the image these detections refer to, in pixels.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    mask_probs: np.ndarray
    image_size: tuple[int, int]
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, image_size: tuple[int, int], mask_size: int = 28) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            classes=np.zeros((0,), np.int64),
            mask_probs=np.zeros((0, mask_size, mask_size), np.float32),
            image_size=tuple(image_size),
        )

    def select(self, keep: np.ndarray) -> Detections:
        """A subset by boolean mask or integer index array."""
        return Detections(
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            classes=self.classes[keep],
            mask_probs=self.mask_probs[keep],
            image_size=self.image_size,
            extra={k: v[keep] for k, v in self.extra.items()},
        )
