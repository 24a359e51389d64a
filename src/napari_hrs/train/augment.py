"""Augmentations for brightfield microscopy instance segmentation.

Cells have no preferred orientation and microscopes differ in illumination, focus and noise, so
training sees: flips, 90-degree rotations, a small scale jitter, brightness / contrast / gamma
changes, Gaussian blur (defocus), Gaussian noise (shot / read noise) and random crops of large
images. Geometric transforms are applied to the image and to every instance mask together;
boxes are recomputed from the masks afterwards (:func:`masks_to_boxes`), so they always agree.

Images are ``(C, Y, X)`` float32 on the model's 0..255 scale (after
:mod:`napari_hrs.engine.intensity`), masks ``(N, Y, X)`` bool. Everything is driven by a
:class:`numpy.random.Generator`, so a seed reproduces an augmentation exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

__all__ = ["AugmentConfig", "augment", "masks_to_boxes"]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; probabilities in [0, 1], intensities on the 0..255 scale.

    Attributes
    ----------
    flip : probability of a horizontal flip (and, independently, of a vertical flip)
    rot90 : rotate by a random multiple of 90 degrees
    scale : (min, max) zoom factor; an hRS of 20 px becomes 18-22 px with (0.9, 1.1)
    brightness : maximal additive shift, 0..255 units
    contrast : (min, max) multiplicative contrast around the image mean
    gamma : (min, max) gamma exponent
    blur_prob, blur_sigma : probability and (min, max) sigma in pixels of a Gaussian blur
    noise_prob, noise_std : probability and (min, max) std (0..255 units) of Gaussian noise
    crop_size : output size in pixels (square); None keeps the input size. Larger images are
        randomly cropped, smaller ones padded with the image median.
    min_area : instances with fewer pixels left after cropping are dropped
    """

    flip: float = 0.5
    rot90: bool = True
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 12.0
    contrast: tuple[float, float] = (0.8, 1.2)
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_prob: float = 0.25
    blur_sigma: tuple[float, float] = (0.4, 1.2)
    noise_prob: float = 0.3
    noise_std: tuple[float, float] = (1.0, 6.0)
    crop_size: int | None = None
    min_area: int = 6

    @classmethod
    def none(cls, crop_size: int | None = None) -> AugmentConfig:
        """No augmentation at all (only the crop / pad to ``crop_size``)."""
        return cls(
            flip=0.0,
            rot90=False,
            scale=(1.0, 1.0),
            brightness=0.0,
            contrast=(1.0, 1.0),
            gamma=(1.0, 1.0),
            blur_prob=0.0,
            noise_prob=0.0,
            crop_size=crop_size,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight half-open boxes ``(N, 4)`` float32 ``x0, y0, x1, y1`` (pixels) of ``(N, Y, X)`` masks."""
    n = masks.shape[0]
    boxes = np.zeros((n, 4), np.float32)
    if n == 0:
        return boxes
    rows = masks.any(axis=2)  # (N, Y)
    cols = masks.any(axis=1)  # (N, X)
    for i in range(n):
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if ys.size:
            boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def _zoom(image: np.ndarray, masks: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Zoom image (bilinear) and masks (bilinear, thresholded at 0.5) on the same grid."""
    h, w = image.shape[-2:]
    out_h, out_w = max(1, round(h * factor)), max(1, round(w * factor))
    zf = (out_h / h, out_w / w)
    image = ndimage.zoom(image, (1, *zf), order=1, grid_mode=True, mode="nearest")
    if masks.shape[0]:
        m = ndimage.zoom(
            masks.astype(np.float32), (1, *zf), order=1, grid_mode=True, mode="nearest"
        )
        masks = m > 0.5
    else:
        masks = np.zeros((0, out_h, out_w), bool)
    return image, masks


def _crop_or_pad(
    image: np.ndarray, masks: np.ndarray, size: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random crop (or centred pad with the image median) to ``size`` = (Y, X)."""
    c, h, w = image.shape
    th, tw = size
    if h > th or w > tw:
        y0 = int(rng.integers(0, h - th + 1)) if h > th else 0
        x0 = int(rng.integers(0, w - tw + 1)) if w > tw else 0
        image = image[:, y0 : y0 + th, x0 : x0 + tw]
        masks = masks[:, y0 : y0 + th, x0 : x0 + tw]
        h, w = image.shape[-2:]
    if h < th or w < tw:
        py, px = (th - h) // 2, (tw - w) // 2
        fill = np.median(image, axis=(1, 2)).astype(np.float32)
        out = np.empty((c, th, tw), np.float32)
        out[:] = fill[:, None, None]
        out[:, py : py + h, px : px + w] = image
        mout = np.zeros((masks.shape[0], th, tw), bool)
        mout[:, py : py + h, px : px + w] = masks
        image, masks = out, mout
    return image, masks


def augment(
    image: np.ndarray,
    masks: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment one image and its instance masks consistently.

    Parameters
    ----------
    image : (C, Y, X) float, 0..255 scale
    masks : (N, Y, X) bool
    rng : the random generator (seed it for reproducible augmentations)
    config : strengths; default :class:`AugmentConfig`

    Returns
    -------
    image : (C, Y', X') float32, (Y', X') = ``config.crop_size`` or the input size
    masks : (M, Y', X') bool, instances with fewer than ``config.min_area`` pixels removed
    keep : (M,) int64 indices of the kept input instances (to select their classes)
    """
    cfg = config or AugmentConfig()
    image = np.asarray(image, np.float32)
    masks = np.asarray(masks, bool)
    if image.ndim != 3 or masks.ndim != 3 or image.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"augment expects image (C, Y, X) and masks (N, Y, X) of the same size, got "
            f"{image.shape} and {masks.shape}"
        )
    out_size = (cfg.crop_size, cfg.crop_size) if cfg.crop_size else image.shape[-2:]

    # geometry (image and masks together)
    if rng.random() < cfg.flip:
        image, masks = image[..., ::-1], masks[..., ::-1]
    if rng.random() < cfg.flip:
        image, masks = image[..., ::-1, :], masks[..., ::-1, :]
    if cfg.rot90:
        k = int(rng.integers(4))
        image, masks = np.rot90(image, k, axes=(1, 2)), np.rot90(masks, k, axes=(1, 2))
    lo, hi = cfg.scale
    factor = float(rng.uniform(lo, hi)) if hi > lo else lo
    if abs(factor - 1.0) > 1e-3:
        image, masks = _zoom(np.ascontiguousarray(image), np.ascontiguousarray(masks), factor)
    image, masks = _crop_or_pad(image, masks, tuple(out_size), rng)
    image = np.ascontiguousarray(image, dtype=np.float32)
    masks = np.ascontiguousarray(masks)

    # photometry (image only)
    mean = float(image.mean())
    c = float(rng.uniform(*cfg.contrast))
    b = float(rng.uniform(-cfg.brightness, cfg.brightness)) if cfg.brightness else 0.0
    image = (image - mean) * c + mean + b
    g = float(rng.uniform(*cfg.gamma))
    if abs(g - 1.0) > 1e-3:
        pos = np.clip(image, 0.0, None) / 255.0
        image = np.where(image > 0, 255.0 * pos**g, image).astype(np.float32)
    if rng.random() < cfg.blur_prob:
        s = float(rng.uniform(*cfg.blur_sigma))
        image = ndimage.gaussian_filter(image, (0, s, s))
    if rng.random() < cfg.noise_prob:
        std = float(rng.uniform(*cfg.noise_std))
        image = image + rng.normal(0.0, std, image.shape).astype(np.float32)
    image = np.clip(image, -64.0, 319.0).astype(np.float32)

    areas = masks.reshape(masks.shape[0], int(np.prod(masks.shape[1:]))).sum(axis=1)
    keep = np.flatnonzero(areas >= max(cfg.min_area, 1)).astype(np.int64)
    return image, masks[keep], keep
