"""Paste box-relative instance masks into their boxes, compare them, paint them.

A mask head predicts an ``M x M`` probability grid (M = 28) covering an instance's box. Pasting
it into the image resamples that grid bilinearly at the centres of the pixels under the box, as
detectron2's ``paste_masks_in_image`` does (``grid_sample`` with ``align_corners=False`` and zero
padding), but one box at a time and only over the box's integer extent: a whole-slide image
never holds an ``N x H x W`` mask stack.

All coordinates are pixels; boxes are ``(x0, y0, x1, y1)`` (x = column), half-open; arrays are
``(Y, X)``. Only numpy is used (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "box_extent",
    "box_iou",
    "mask_iou",
    "paint_labels",
    "paste_mask",
    "reframe_mask",
]


def _interp_matrix(coords: np.ndarray, m: int) -> np.ndarray:
    """``(len(coords), m)`` bilinear weights sampling an ``m``-cell grid at cell coordinates
    ``coords`` (cell ``j`` has its centre at ``j``); samples outside the grid fall off to zero
    (grid_sample's zero padding)."""
    i0 = np.floor(coords).astype(np.int64)
    w1 = (coords - i0).astype(np.float32)
    out = np.zeros((coords.shape[0], m), np.float32)
    rows = np.arange(coords.shape[0])
    for idx, w in ((i0, 1.0 - w1), (i0 + 1, w1)):
        ok = (idx >= 0) & (idx < m)
        out[rows[ok], idx[ok]] += w[ok]
    return out


def box_extent(
    box: Sequence[float], image_size: tuple[int, int] | None = None
) -> tuple[int, int, int, int]:
    """Integer pixel extent ``(y0, y1, x0, x1)`` (half-open) of a float box, clipped to
    ``image_size`` ``(H, W)`` when given: every pixel whose centre lies in the box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    iy0, ix0 = int(np.floor(y0)), int(np.floor(x0))
    iy1, ix1 = int(np.ceil(y1)), int(np.ceil(x1))
    if image_size is not None:
        h, w = image_size
        iy0, ix0 = min(max(iy0, 0), int(h)), min(max(ix0, 0), int(w))
        iy1, ix1 = min(iy1, int(h)), min(ix1, int(w))
    return iy0, max(iy1, iy0), ix0, max(ix1, ix0)


def paste_mask(
    mask_probs: np.ndarray,
    box: Sequence[float],
    image_size: tuple[int, int] | None = None,
    threshold: float | None = 0.5,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Paste one ``(M, M)`` mask probability grid into its box.

    Parameters
    ----------
    mask_probs : (M, M) array
        Probabilities in [0, 1]; the grid covers ``box`` exactly (cell centres at
        ``x0 + (j + 0.5) * (x1 - x0) / M``).
    box : (4,) sequence
        ``(x0, y0, x1, y1)`` in pixels.
    image_size : (H, W), optional
        Clip the extent to the image.
    threshold : float or None
        Return ``probability >= threshold`` (bool); None returns the float32 probabilities.

    Returns
    -------
    mask : (h, w) array
        The box's integer extent (:func:`box_extent`), bool (or float32 when ``threshold`` is
        None); empty when the box lies outside the image.
    offset : (y0, x0)
        Image coordinates (pixels) of ``mask[0, 0]``.
    """
    probs = np.asarray(mask_probs, np.float32)
    if probs.ndim != 2:
        raise ValueError(f"paste_mask expects one (M, M) mask, got shape {probs.shape}")
    iy0, iy1, ix0, ix1 = box_extent(box, image_size)
    x0, y0, x1, y1 = (float(v) for v in box)
    mh, mw = probs.shape
    ys = (np.arange(iy0, iy1, dtype=np.float64) + 0.5 - y0) / max(y1 - y0, 1e-6) * mh - 0.5
    xs = (np.arange(ix0, ix1, dtype=np.float64) + 0.5 - x0) / max(x1 - x0, 1e-6) * mw - 0.5
    pasted = _interp_matrix(ys, mh) @ probs @ _interp_matrix(xs, mw).T
    if threshold is not None:
        pasted = pasted >= threshold
    return pasted, (iy0, ix0)


def reframe_mask(
    mask_probs: np.ndarray, old_box: Sequence[float], new_box: Sequence[float]
) -> np.ndarray:
    """Resample an ``(M, M)`` mask grid covering ``old_box`` onto the same-sized grid covering
    ``new_box`` (e.g. a box clipped to the image): probabilities outside ``old_box`` are 0."""
    probs = np.asarray(mask_probs, np.float32)
    mh, mw = probs.shape
    ox0, oy0, ox1, oy1 = (float(v) for v in old_box)
    nx0, ny0, nx1, ny1 = (float(v) for v in new_box)
    yc = ny0 + (np.arange(mh) + 0.5) * (ny1 - ny0) / mh
    xc = nx0 + (np.arange(mw) + 0.5) * (nx1 - nx0) / mw
    ys = (yc - oy0) / max(oy1 - oy0, 1e-6) * mh - 0.5
    xs = (xc - ox0) / max(ox1 - ox0, 1e-6) * mw - 0.5
    # inside the old box, hold the edge cells (no fade to zero); outside it, zero
    ay = _interp_matrix(np.clip(ys, 0, mh - 1), mh) * ((ys >= -0.5) & (ys <= mh - 0.5))[:, None]
    ax = _interp_matrix(np.clip(xs, 0, mw - 1), mw) * ((xs >= -0.5) & (xs <= mw - 0.5))[:, None]
    return (ay @ probs @ ax.T).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(len(a), len(b))`` of boxes ``(N, 4)`` ``x0, y0, x1, y1``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_overlap(
    a: np.ndarray, offset_a: tuple[int, int], b: np.ndarray, offset_b: tuple[int, int]
) -> int:
    """Number of pixels set in both pasted masks (each with its ``(y0, x0)`` image offset)."""
    ay, ax = offset_a
    by, bx = offset_b
    y0, x0 = max(ay, by), max(ax, bx)
    y1 = min(ay + a.shape[0], by + b.shape[0])
    x1 = min(ax + a.shape[1], bx + b.shape[1])
    if y1 <= y0 or x1 <= x0:
        return 0
    wa = a[y0 - ay : y1 - ay, x0 - ax : x1 - ax]
    wb = b[y0 - by : y1 - by, x0 - bx : x1 - bx]
    return int(np.count_nonzero(wa & wb))


def mask_iou(
    a: np.ndarray, offset_a: tuple[int, int], b: np.ndarray, offset_b: tuple[int, int]
) -> float:
    """Intersection over union of two pasted bool masks (see :func:`paste_mask`)."""
    inter = mask_overlap(a, offset_a, b, offset_b)
    union = int(np.count_nonzero(a)) + int(np.count_nonzero(b)) - inter
    return inter / union if union > 0 else 0.0


def paint_labels(
    out: np.ndarray,
    origin: tuple[int, int],
    masks: Sequence[np.ndarray],
    offsets: Sequence[tuple[int, int]],
    ids: Sequence[int],
    scores: Sequence[float],
) -> np.ndarray:
    """Paint instance masks into a label window ``out`` (Y, X) whose top-left pixel is image
    pixel ``origin`` ``(y, x)``; where masks overlap the highest score wins (ties: lower id).

    Masks that do not reach the window are skipped. ``out`` is modified and returned.
    """
    h, w = out.shape
    oy, ox = origin
    order = sorted(range(len(ids)), key=lambda i: (float(scores[i]), -int(ids[i])))
    for i in order:  # ascending score: later (higher) paint over earlier
        m = masks[i]
        my, mx = offsets[i]
        y0, x0 = max(my, oy), max(mx, ox)
        y1, x1 = min(my + m.shape[0], oy + h), min(mx + m.shape[1], ox + w)
        if y1 <= y0 or x1 <= x0:
            continue
        sub = m[y0 - my : y1 - my, x0 - mx : x1 - mx]
        out[y0 - oy : y1 - oy, x0 - ox : x1 - ox][sub] = ids[i]
    return out
