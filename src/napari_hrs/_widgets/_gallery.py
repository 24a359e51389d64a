"""A row of grayscale thumbnails (one per channel) with a title: the per-cell gallery."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QGridLayout, QLabel, QWidget

THUMB = 128  # thumbnail edge on screen (screen pixels)


def to_uint8(crop: np.ndarray, limits: tuple[float, float] | None = None) -> np.ndarray:
    """A ``(Y, X)`` crop scaled to 0..255 with contrast ``limits`` (default: its min / max)."""
    crop = np.asarray(crop, dtype=np.float64)
    if crop.ndim > 2:
        crop = crop.reshape(crop.shape[-2:]) if crop.size == np.prod(crop.shape[-2:]) else crop[0]
    lo, hi = limits if limits is not None else (np.nanmin(crop), np.nanmax(crop))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((crop - lo) * scale, 0, 255).astype(np.uint8)


class Gallery(QWidget):
    """Crops of one cell in every channel; :attr:`images` holds what is shown (uint8)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setLayout(QGridLayout())
        self.title = QLabel("select a cell (click it, or a point in the scatter plot)")
        self.layout().addWidget(self.title, 0, 0, 1, 3)
        self.images: dict[str, np.ndarray] = {}
        self._labels: list[QLabel] = []

    def set_crops(self, crops: Mapping[str, np.ndarray], title: str,
             limits: Mapping[str, tuple[float, float]] | None = None) -> None:  # fmt: skip
        """Replace the thumbnails with ``crops`` (name -> (Y, X) pixels)."""
        for lab in self._labels:
            self.layout().removeWidget(lab)
            lab.deleteLater()
        self._labels = []
        self.images = {n: to_uint8(c, (limits or {}).get(n)) for n, c in crops.items() if c.size}
        self.title.setText(title)
        for col, (name, img) in enumerate(self.images.items()):
            h, w = img.shape
            buf = np.ascontiguousarray(img)
            qimg = QImage(buf.data, w, h, w, QImage.Format_Grayscale8).copy()
            pix = QPixmap.fromImage(qimg).scaled(THUMB, THUMB, Qt.KeepAspectRatio,
                                                 Qt.FastTransformation)  # fmt: skip
            thumb, caption = QLabel(), QLabel(name)
            thumb.setPixmap(pix)
            self.layout().addWidget(thumb, 1, col)
            self.layout().addWidget(caption, 2, col)
            self._labels += [thumb, caption]
