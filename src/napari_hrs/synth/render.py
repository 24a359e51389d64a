"""Render any rectangular region of a synthetic scene: brightfield, PRM1, PNA and labels.

Every pixel value is a function of the scene and the pixel's global position only: cells come
from :mod:`napari_hrs.synth.scene` (blocks), each cell is rendered as a whole patch, the
illumination is an analytic function of global coordinates, and the noise is drawn per fixed
256 x 256 noise block keyed on ``(seed, channel, block index)``. Rendering a region in one piece
or in chunks of any size gives the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from napari_hrs.synth.cells import render_cell
from napari_hrs.synth.scene import SceneParams, cells_in_region

CHANNELS: tuple[str, ...] = ("brightfield", "PRM1", "PNA")
NOISE_BLOCK = 256
MAX_VALUE = 4095  # 12-bit camera in uint16

#: called with the shape of every array the renderer allocates (tests check the memory bound)
_array_hook: Callable[[tuple[int, ...]], None] | None = None


def set_array_hook(hook: Callable[[tuple[int, ...]], None] | None) -> None:
    """Install (or remove, with None) a callback that sees every allocated array shape."""
    global _array_hook
    _array_hook = hook


def _alloc(shape: tuple[int, ...], dtype: type, fill: float = 0) -> np.ndarray:
    if _array_hook is not None:
        _array_hook(tuple(shape))
    return np.full(shape, fill, dtype=dtype)


def _overlap(
    py: int, px: int, ph: int, pw: int, y0: int, x0: int, h: int, w: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """(region slices, patch slices) where a patch at ``(py, px)`` meets the region."""
    ya, yb = max(py, y0), min(py + ph, y0 + h)
    xa, xb = max(px, x0), min(px + pw, x0 + w)
    if ya >= yb or xa >= xb:
        return None
    return (
        (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0)),
        (slice(ya - py, yb - py), slice(xa - px, xb - px)),
    )


def illumination(scene: SceneParams, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Smooth relative illumination (about 1) at global pixel coordinates ``yy, xx``."""
    p = scene.illum
    a1, a2 = p[0] * math.pi, p[1] * math.pi
    l1, l2 = 3000 + 4000 * p[2], 1200 + 2000 * p[3]
    f = 0.65 * np.sin(
        (yy * math.sin(a1) + xx * math.cos(a1)) * (2 * math.pi / l1) + p[4] * 6.28
    ) + 0.35 * np.sin((yy * math.sin(a2) + xx * math.cos(a2)) * (2 * math.pi / l2) + p[5] * 6.28)
    return (1.0 + scene.illum_amp * f).astype(np.float32)


def haze(scene: SceneParams, yy: np.ndarray, xx: np.ndarray, channel: int) -> np.ndarray:
    """Out-of-focus fluorescence haze (relative, about 0..1) at global coordinates."""
    p = scene.illum
    k = 2 * math.pi / (900 + 700 * p[6 + channel % 2])
    return (0.5 + 0.25 * np.sin(yy * k + p[7] * 6.28) * np.cos(xx * k * 0.8 + channel)).astype(
        np.float32
    )


def noise(scene: SceneParams, channel: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Standard normal pairs ``(2, h, w)`` for the region, cut from fixed noise blocks."""
    out = _alloc((2, h, w), np.float32)
    b = NOISE_BLOCK
    for by in range(y0 // b, (y0 + h - 1) // b + 1):
        for bx in range(x0 // b, (x0 + w - 1) // b + 1):
            ss = np.random.SeedSequence([scene.seed, 0xA015E, channel, by, bx])
            z = np.random.default_rng(ss).standard_normal((2, b, b), dtype=np.float32)
            sl = _overlap(by * b, bx * b, b, b, y0, x0, h, w)
            if sl is not None:
                out[(slice(None), *sl[0])] = z[(slice(None), *sl[1])]
    return out


def render_region(
    scene: SceneParams, y0: int, x0: int, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """Render the region ``[y0, y0 + h) x [x0, x0 + w)`` (level-0 pixels).

    Returns
    -------
    image : numpy.ndarray
        uint16 ``(C, h, w)``, channels :data:`CHANNELS`, values 0..4095.
    labels : numpy.ndarray
        uint32 ``(h, w)`` instance labels (0 = background); higher ids lie on top.
    """
    labels = _alloc((h, w), np.uint32)
    trans = _alloc((h, w), np.float32, 1.0)
    fl = _alloc((2, h, w), np.float32)
    cells = cells_in_region(scene, y0, x0, y0 + h, x0 + w)
    px = scene.pixel_size_um
    m = scene.margin_px
    for cell in cells:
        if not (y0 - m <= cell.cy < y0 + h + m and x0 - m <= cell.cx < x0 + w + m):
            continue
        p = render_cell(cell, px)
        if _array_hook is not None:
            _array_hook(p.mask.shape)
        ph, pw = p.mask.shape
        sl = _overlap(p.y0, p.x0, ph, pw, y0, x0, h, w)
        if sl is not None:
            r, q = sl
            labels[r][p.mask[q]] = cell.label_id
            trans[r] = trans[r] * (1.0 - p.alpha[q]) + p.trans[q] + p.relief[q]
        for ci, (arr, (sy, sx)) in enumerate(zip((p.prm1, p.pna), scene.shifts, strict=True)):
            sl = _overlap(p.y0 + sy, p.x0 + sx, ph, pw, y0, x0, h, w)
            if sl is not None:
                r, q = sl
                fl[ci][r] = fl[ci][r] * (1.0 - p.alpha[q]) + arr[q]

    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    image = _alloc((3, h, w), np.uint16)
    bf = scene.bf_level * illumination(scene, yy, xx) * np.clip(trans, 0.05, None)
    channels = [bf]
    for ci in range(2):
        bg = scene.fl_background[ci] * (1.0 + 0.4 * haze(scene, yy, xx, ci))
        channels.append(bg + fl[ci])
    for c, v in enumerate(channels):
        z = noise(scene, c, y0, x0, h, w)
        v = v + np.sqrt(np.maximum(v, 0) * scene.gain) * z[0] + scene.read_noise * z[1]
        image[c] = np.clip(np.rint(v), 0, MAX_VALUE).astype(np.uint16)
    return image, labels
