"""Render any rectangular region of a synthetic scene: brightfield, PRM1, PNA and labels.

Every pixel value is a function of the scene and the pixel's global position only: cells come
from :mod:`napari_hrs.synth.scene` (blocks), each cell is rendered as a whole patch
(:mod:`napari_hrs.synth.patch`) and composited in label-id order (higher ids on top), the
illumination (smooth gradient plus the vignetting of each camera field of :data:`FIELD`
pixels) is an analytic function of global coordinates, and the noise is drawn per fixed
256 x 256 noise block keyed on ``(seed, channel, block index)``. Rendering a region in one piece
or in chunks of any size gives the same pixels.

Brightfield: ``bf_level * illumination * (composited transmission + relief) * dust``, shot
(Gaussian approximation) and read noise, clipped to the 12-bit range (bright refractile debris
saturates). Fluorescence: background with a smooth haze, the cells' emission shifted by the
channel's registration shift, PNA bleeding a little into PRM1, same noise model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from napari_hrs.synth.patch import patch_radius_px, render_cell
from napari_hrs.synth.scene import BLOCK, SceneParams, block_dust, cells_in_region

CHANNELS: tuple[str, ...] = ("brightfield", "PRM1", "PNA")
NOISE_BLOCK = 256
MAX_VALUE = 4095  # 12-bit camera in uint16
#: side of one camera field of a stitched mosaic (pixels): the vignetting repeats with it
FIELD = 2048

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


def _plane_wave(y: np.ndarray, x: np.ndarray, angle: float, period: float, phase: float):
    """``sin(k (y sin a + x cos a) + phase)`` on the grid ``y (h, 1) x x (1, w)``, evaluated
    separably (trigonometry on the two axes only)."""
    k = 2 * math.pi / period
    ay, ax = k * math.sin(angle) * y, k * math.cos(angle) * x + phase
    return np.sin(ay) * np.cos(ax) + np.cos(ay) * np.sin(ax)


def illumination(scene: SceneParams, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Relative illumination (about 1) on the grid of global pixel coordinates ``y`` ``(h, 1)``
    by ``x`` ``(1, w)``: two slow plane waves times the vignetting of each camera field."""
    p = scene.illum
    f = 0.65 * _plane_wave(y, x, p[0] * math.pi, 3000 + 4000 * p[2], p[4] * 2 * math.pi)
    f += 0.35 * _plane_wave(y, x, p[1] * math.pi, 1200 + 2000 * p[3], p[5] * 2 * math.pi)
    fy = (np.mod(y, FIELD) + 0.5) / FIELD - 0.5
    fx = (np.mod(x, FIELD) + 0.5) / FIELD - 0.5
    vignette = 1.0 - scene.vignetting * 2.0 * (fy**2 + fx**2)
    return ((1.0 + scene.illum_amp * f) * vignette).astype(np.float32)


def _dust(scene: SceneParams, trans: np.ndarray, y0: int, x0: int) -> None:
    """Darken ``trans`` (region at ``(y0, x0)``) in place with the out-of-focus dust specks."""
    h, w = trans.shape
    m = scene.margin_px
    by0, by1 = max(0, (y0 - m) // BLOCK), min(scene.n_blocks[0] - 1, (y0 + h + m) // BLOCK)
    bx0, bx1 = max(0, (x0 - m) // BLOCK), min(scene.n_blocks[1] - 1, (x0 + w + m) // BLOCK)
    for by in range(by0, by1 + 1):
        for bx in range(bx0, bx1 + 1):
            for cy, cx, radius, strength, ring in block_dust(scene, by, bx):
                r = int(math.ceil(2 * radius)) + 2
                py, px = int(cy) - r, int(cx) - r
                sl = _overlap(py, px, 2 * r + 1, 2 * r + 1, y0, x0, h, w)
                if sl is None:
                    continue
                yy, xx = np.ogrid[py : py + 2 * r + 1, px : px + 2 * r + 1]
                d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2, dtype=np.float32) / radius
                if ring:  # defocused dust: a dark ring with a paler centre
                    prof = np.exp(-(((d - 1.0) / 0.3) ** 2)) + 0.35 * np.exp(-(d**2))
                else:
                    prof = np.exp(-(d**2))
                trans[sl[0]] *= (1.0 - strength * prof[sl[1]]).astype(np.float32)


def haze(scene: SceneParams, y: np.ndarray, x: np.ndarray, channel: int) -> np.ndarray:
    """Out-of-focus fluorescence haze (relative, about 0.25..0.75) on the grid ``y`` ``(h, 1)``
    by ``x`` ``(1, w)`` (global pixel coordinates)."""
    p = scene.illum
    k = 2 * math.pi / (900 + 700 * p[6 + channel % 2])
    hz = 0.5 + 0.25 * np.sin(y * k + p[7] * 2 * math.pi) * np.cos(x * k * 0.8 + channel)
    return hz.astype(np.float32)


def noise(scene: SceneParams, channel: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Standard normal values ``(h, w)`` for the region, cut from fixed noise blocks."""
    out = _alloc((h, w), np.float32)
    b = NOISE_BLOCK
    for by in range(y0 // b, (y0 + h - 1) // b + 1):
        for bx in range(x0 // b, (x0 + w - 1) // b + 1):
            ss = np.random.SeedSequence([scene.seed, 0xA015E, channel, by, bx])
            z = np.random.default_rng(ss).standard_normal((b, b), dtype=np.float32)
            sl = _overlap(by * b, bx * b, b, b, y0, x0, h, w)
            if sl is not None:
                out[sl[0]] = z[sl[1]]
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
    for cell in cells:
        reach = patch_radius_px(cell, px) + 4  # + the largest channel shift
        if not (y0 - reach <= cell.cy < y0 + h + reach and x0 - reach <= cell.cx < x0 + w + reach):
            continue  # its patch cannot touch the region
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
                if ci == 0 and scene.bleed:  # PNA seen through the PRM1 filter
                    fl[0][r] += scene.bleed * p.pna[q]

    _dust(scene, trans, y0, x0)
    y = np.arange(y0, y0 + h, dtype=np.float64)[:, None]
    x = np.arange(x0, x0 + w, dtype=np.float64)[None, :]
    image = _alloc((3, h, w), np.uint16)
    bf = scene.bf_level * illumination(scene, y, x) * np.clip(trans, 0.05, None)
    channels = [bf]
    for ci in range(2):
        bg = scene.fl_background[ci] * (1.0 + 0.4 * haze(scene, y, x, ci))
        channels.append(bg + fl[ci])
    for c, v in enumerate(channels):
        # shot noise (Gaussian approximation, variance gain * signal) plus read noise
        sd = np.sqrt(np.maximum(v, 0) * scene.gain + scene.read_noise**2)
        v = v + sd * noise(scene, c, y0, x0, h, w)
        image[c] = np.clip(np.rint(v), 0, MAX_VALUE).astype(np.uint16)
    return image, labels
