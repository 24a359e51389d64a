"""Draw one cell into a small patch: brightfield transmission and relief, label mask, PRM1, PNA.

The brightfield model is Hoffman-like: the body absorbs a little light (nucleus and chromatin a
little more), and the gradient of the cell's optical thickness along the illumination direction
adds a relief (one side of every edge bright, the other dark). Texture comes from smooth noise
seeded by the cell itself, so a patch depends on the cell only, never on the chunk being
rendered: this is what makes the output independent of the chunk size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_hrs.synth.cells import Cell

#: direction the oblique (Hoffman-like) light comes from, unit (dy, dx): the upper left
LIGHT = (-math.sqrt(0.5), -math.sqrt(0.5))
#: relief per unit thickness gradient (thickness 1 = the cell's full height, gradient per µm)
RELIEF = 0.45


@dataclass
class Patch:
    """A rendered cell: arrays ``(H, W)`` whose pixel (0, 0) is level-0 pixel ``(y0, x0)``."""

    y0: int
    x0: int
    mask: np.ndarray  # bool, the cell body (its label)
    alpha: np.ndarray  # float32 0..1, soft body coverage (after defocus)
    trans: np.ndarray  # float32, alpha * transmission of the body
    relief: np.ndarray  # float32, additive edge relief / halo / tail in transmission units
    prm1: np.ndarray  # float32 emission (counts)
    pna: np.ndarray  # float32 emission (counts)


def patch_radius_px(cell: Cell, pixel_size_um: float) -> int:
    """Half-size (pixels) of the square patch that holds the whole rendered cell."""
    reach = max(cell.radius_um * 1.4, cell.tail_len_um + cell.radius_um) + 4 * cell.defocus_um
    return int(math.ceil(reach / pixel_size_um)) + 3


def _body_radius_px(cell: Cell, pixel_size_um: float) -> int:
    """Half-size (pixels) of the window holding the body (a tail reaches further)."""
    return int(math.ceil((cell.radius_um * 1.4 + 4 * cell.defocus_um) / pixel_size_um)) + 3


def _grid(cell: Cell, half: int):
    """Offsets ``dy, dx`` from the centre and major / minor axis coordinates ``u, v`` (pixels)
    of the square of half-size ``half`` around the cell's pixel."""
    y0, x0 = int(math.floor(cell.cy)) - half, int(math.floor(cell.cx)) - half
    yy, xx = np.mgrid[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1].astype(np.float32)
    dy, dx = yy - np.float32(cell.cy), xx - np.float32(cell.cx)
    ca, sa = math.cos(cell.angle), math.sin(cell.angle)
    return dy, dx, dy * ca + dx * sa, -dy * sa + dx * ca


def _tail_relief(cell: Cell, px: float, half: int) -> np.ndarray:
    """Relief of the flagellum: a thin dark curve leaving the head backwards."""
    _, _, u, v = _grid(cell, half)
    s = -u
    bend = cell.tail_bend * (s * px / cell.tail_len_um) ** 2 * cell.tail_len_um / px
    dist = np.abs(v - bend)
    along = (s > 0.8 * cell.radius_um / px) & (s < cell.tail_len_um / px)
    width = np.where(s * px < cell.radius_um + 5.0, 0.45, 0.28) / px  # the midpiece is thicker
    return (-0.3 * np.exp(-((dist / np.maximum(width, 0.7)) ** 2)) * along).astype(np.float32)


def _smooth_disc(rho: np.ndarray, radius_px: float) -> np.ndarray:
    """Anti-aliased coverage of ``rho <= 1`` (rho in units of a radius of ``radius_px``)."""
    return np.clip(0.5 - (rho - 1.0) * radius_px, 0.0, 1.0).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (float32 ``(Y, X)``)."""
    sigma_px = max(sigma_px, 0.5)
    white = rng.standard_normal(shape, dtype=np.float32)
    out = ndimage.gaussian_filter(white, sigma_px, mode="wrap")
    return out * np.float32(2 * math.sqrt(math.pi) * sigma_px)  # analytic std of filtered noise


def _gauss(dy: np.ndarray, dx: np.ndarray, cy: float, cx: float, sigma: float) -> np.ndarray:
    return np.exp(-((dy - cy) ** 2 + (dx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)


def granule_position(cell: Cell, px: float) -> tuple[float, float]:
    """Offset (pixels) of the acrosomal granule / PNA dot from the cell centre: at the nucleus
    edge, pulled inside the cell so that it stays 1.3 µm from the outline."""
    r_px = cell.radius_um / px
    rn = cell.nucleus_frac * r_px
    gy = cell.nucleus_shift[0] * r_px + (rn + 0.3 / px) * math.sin(cell.granule_angle)
    gx = cell.nucleus_shift[1] * r_px + (rn + 0.3 / px) * math.cos(cell.granule_angle)
    dist, limit = math.hypot(gy, gx), max(r_px - 1.3 / px, 0.0)
    if dist > limit > 0:
        gy, gx = gy * limit / dist, gx * limit / dist
    return gy, gx


def _nucleus_texture(cell: Cell, nuc: np.ndarray, n_fine: np.ndarray, n_coarse: np.ndarray):
    """Extra absorption of the nucleus: chromatin pattern of each type."""
    if cell.type == "spermatocyte":  # meiotic prophase: thread-like chromatin (noise ridges)
        threads = np.exp(-((n_coarse / 0.4) ** 2))
        return nuc * (0.08 + 0.22 * threads)
    if cell.type == "spermatogonium":  # dense, dark nucleus, fine granules
        return nuc * (0.24 + 0.05 * n_fine)
    if cell.type == "lymphocyte":  # dense heterochromatin in coarse clumps, filling the cell
        clumps = np.clip(n_coarse, 0.0, None)
        return nuc * (0.3 + 0.12 * clumps + 0.03 * n_fine)
    if cell.type == "round_spermatid":  # pale, finely granular
        return nuc * (0.1 + 0.03 * n_fine)
    return nuc * 0.0


def render_cell(cell: Cell, pixel_size_um: float) -> Patch:
    """Render ``cell`` into a :class:`Patch` (positions in pixels, intensities relative /
    counts)."""
    px = pixel_size_um
    h = patch_radius_px(cell, px)
    hb = min(h, _body_radius_px(cell, px))
    dy, dx, u, v = _grid(cell, hb)
    ca, sa = math.cos(cell.angle), math.sin(cell.angle)
    r_px = cell.radius_um / px
    a, b = r_px, r_px * cell.aspect
    theta = np.arctan2(v, u)
    edge = np.ones_like(theta)
    for k, (amp, ph) in enumerate(cell.shape_coef, start=2):
        edge += amp * np.cos(k * theta + ph)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / edge
    mask = rho <= 1.0
    body = _smooth_disc(rho, 0.5 * (a + b))
    dome = np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0)) * body
    shape = rho.shape
    rng = np.random.default_rng(cell.tex_seed)
    elongated = cell.type == "elongated_spermatid"
    zeros = np.zeros(shape, np.float32)
    n_fine = zeros if elongated else smooth_noise(rng, shape, 0.35 / px)
    n_coarse = zeros if elongated else smooth_noise(rng, shape, 0.7 / px)

    absorb = (cell.darkness + 0.03 * n_fine) * body  # cytoplasm, finely granular
    thick = dome.copy()
    nuc = zeros
    if cell.nucleus_frac > 0:
        ny, nx = cell.nucleus_shift[0] * r_px, cell.nucleus_shift[1] * r_px
        rn = cell.nucleus_frac * r_px
        nrho = rho if elongated else np.sqrt((dy - ny) ** 2 + (dx - nx) ** 2) / max(rn, 0.5)
        nuc = _smooth_disc(nrho, rn) * body
        absorb += _nucleus_texture(cell, nuc, n_fine, n_coarse)
        thick += 0.25 * np.sqrt(np.clip(1.0 - nrho**2, 0.0, 1.0)) * body
    if cell.granule:  # bright, refractile acrosomal granule beside the nucleus
        gy, gx = granule_position(cell, px)
        g = _gauss(dy, dx, gy, gx, 0.4 / px)
        absorb -= 0.45 * g
        thick += 0.5 * g
    if cell.type == "red_blood_cell":  # biconcave disc: thin, bright centre (pallor)
        pallor = np.exp(-((rho / 0.55) ** 2)).astype(np.float32) * body
        absorb -= 0.12 * pallor
        thick = body * (0.35 + 0.65 * np.clip(rho, 0, 1) ** 2) * np.sqrt(np.clip(1 - rho**8, 0, 1))
    if cell.type == "debris":  # refractile: strong relief and bright glints (may saturate)
        absorb += 0.15 * n_coarse * body
        absorb -= 0.9 * np.clip(n_fine - 1.4, 0.0, None) * body
        thick = dome * (1.0 + 0.6 * n_coarse)
    trans = np.clip(1.0 - absorb, 0.02, None).astype(np.float32)

    # relief: gradient of the (slightly smoothed) thickness along the light, per µm
    thick = ndimage.gaussian_filter(thick.astype(np.float32), 0.3 / px)
    gy_, gx_ = np.gradient(thick)
    relief = (-RELIEF * (gy_ * LIGHT[0] + gx_ * LIGHT[1]) / px).astype(np.float32)
    if cell.type == "debris":
        relief *= 2.0
    halo = np.exp(-(((rho - 1.0) * 0.5 * (a + b) * px / 0.6) ** 2)) * (rho > 1.0)
    relief += (0.05 * halo).astype(np.float32)  # faint bright halo around the outline
    # fluorescence emission (counts above background)
    prm1 = zeros
    pna = zeros
    if cell.prm1:
        prm1 = (cell.prm1_level * nuc * (0.85 + 0.12 * n_coarse)).astype(np.float32)
    if cell.pna:
        if elongated:  # acrosome over the front of the head
            gy, gx, sig = 0.5 * a * ca, 0.5 * a * sa, 1.0 / px
        else:
            gy, gx = granule_position(cell, px)
            sig = (1.5 if cell.cap else 0.8) / px
        spot = _gauss(dy, dx, gy, gx, sig)
        if cell.cap:  # crescent hugging the nucleus
            spot = spot * (1.0 - 0.8 * nuc)
        pna = (cell.pna_level * spot / max(float(spot.max()), 1e-6) * body).astype(np.float32)
    elif cell.faint_pna > 0:  # diffuse, faint: a negative look-alike
        pna = (cell.faint_pna * body * np.clip(1.0 + 0.5 * n_coarse, 0, None)).astype(np.float32)

    alpha = body
    premult = (alpha * trans).astype(np.float32)
    if h > hb:  # the tail reaches beyond the body window
        pad = h - hb
        mask, alpha, premult, relief, prm1, pna = (
            np.pad(arr, pad) for arr in (mask, alpha, premult, relief, prm1, pna)
        )
    if cell.tail_len_um > 0:
        relief = relief + _tail_relief(cell, px, h)
    if cell.defocus_um > 0:
        sigma = cell.defocus_um / px
        wide = ndimage.gaussian_filter(alpha, 2.5 * sigma, mode="constant")
        alpha, premult, relief, prm1, pna = (
            ndimage.gaussian_filter(arr, sigma, mode="constant").astype(np.float32)
            for arr in (alpha, premult, relief, prm1, pna)
        )
        relief = 0.5 * relief + 0.25 * (wide - alpha)  # softer edge, bright defocus halo
    y0, x0 = int(math.floor(cell.cy)) - h, int(math.floor(cell.cx)) - h
    return Patch(y0, x0, mask, alpha, premult, relief.astype(np.float32), prm1, pna)
