"""Cell models of a testicular suspension: per-type parameters and the rendering of one cell.

A :class:`Cell` is drawn from its type's ranges (sizes in µm, see ``/work/shared/biology.md``)
with a numpy ``Generator``; :func:`render_cell` turns it into a small patch (brightfield
transmission, label mask, PRM1 and PNA emission) around its centre. A patch depends on the cell
only, never on the chunk being rendered, which makes the output independent of the chunk size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

#: cell types, in COCO category order (category id = index + 1)
CELL_TYPES: tuple[str, ...] = (
    "round_spermatid",
    "elongated_spermatid",
    "spermatocyte",
    "spermatogonium",
    "red_blood_cell",
    "lymphocyte",
    "debris",
)
#: fraction of each type among placed cells
TYPE_FRACTIONS: dict[str, float] = {
    "round_spermatid": 0.30,
    "elongated_spermatid": 0.10,
    "spermatocyte": 0.10,
    "spermatogonium": 0.08,
    "red_blood_cell": 0.18,
    "lymphocyte": 0.16,
    "debris": 0.08,
}
#: diameter range in µm (elongated spermatid: head length; debris: longest extent)
DIAMETER_UM: dict[str, tuple[float, float]] = {
    "round_spermatid": (6.0, 9.0),
    "elongated_spermatid": (4.0, 5.0),
    "spermatocyte": (12.0, 20.0),
    "spermatogonium": (10.0, 12.0),
    "red_blood_cell": (7.0, 8.0),
    "lymphocyte": (7.0, 10.0),
    "debris": (2.0, 8.0),
}
#: the largest distance (µm) a cell's patch reaches from its centre (a sperm tail)
TAIL_UM = (25.0, 45.0)
MAX_EXTENT_UM = TAIL_UM[1] + 3.0
#: direction of the oblique (Hoffman-like) illumination, unit (dy, dx)
LIGHT = (-math.sqrt(0.5), -math.sqrt(0.5))


@dataclass
class Cell:
    """One cell; positions in level-0 pixels, sizes in µm."""

    type: str
    cy: float
    cx: float
    diameter_um: float
    aspect: float  # minor / major axis
    angle: float  # radians, orientation of the major axis
    prm1: bool
    pna: bool
    defocus_um: float
    nucleus_frac: float  # nucleus diameter / cell diameter (0: none)
    nucleus_shift: tuple[float, float]  # (dy, dx) as a fraction of the cell radius
    granule: bool
    granule_angle: float
    cap: bool  # PNA cap instead of a dot
    darkness: float  # 0..1, how much light the body absorbs
    prm1_level: float
    pna_level: float
    shape_coef: tuple[tuple[float, float], ...]  # (amplitude, phase) of harmonics 2..
    texture: tuple[float, ...]  # frequencies / phases of the internal texture
    tail_angle: float = 0.0
    tail_len_um: float = 0.0
    tail_bend: float = 0.0
    label_id: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def radius_um(self) -> float:
        return self.diameter_um / 2


def sample_cell(rng: np.random.Generator, cell_type: str, cy: float, cx: float) -> Cell:
    """Draw a cell of ``cell_type`` centred at ``(cy, cx)`` (pixels) from its type's ranges."""
    lo, hi = DIAMETER_UM[cell_type]
    d = float(rng.uniform(lo + 0.1, hi - 0.1))
    prm1 = pna = False
    granule = cap = False
    nucleus, aspect, darkness = 0.0, float(rng.uniform(0.9, 1.0)), float(rng.uniform(0.15, 0.3))
    n_harm, amp = 3, 0.03
    if cell_type == "round_spermatid":
        nucleus = float(rng.uniform(4.0, 6.0)) / d
        nucleus = min(nucleus, (d - 1.5) / d)
        granule = bool(rng.random() < 0.7)
        r = rng.random()
        if r >= 0.05:  # 5 % are negative for both markers
            pna = bool(rng.random() < 0.9)
            prm1 = bool(rng.random() < 0.55) or not pna
        cap = pna and bool(rng.random() < 0.35)
    elif cell_type == "elongated_spermatid":
        aspect = float(rng.uniform(2.6, 3.4)) / d
        nucleus, darkness = 1.0, float(rng.uniform(0.45, 0.6))
        prm1, pna = True, True
    elif cell_type == "spermatocyte":
        nucleus = float(rng.uniform(0.55, 0.7))
    elif cell_type == "spermatogonium":
        nucleus, darkness = float(rng.uniform(0.6, 0.72)), float(rng.uniform(0.25, 0.35))
    elif cell_type == "red_blood_cell":
        darkness = float(rng.uniform(0.12, 0.2))
    elif cell_type == "lymphocyte":
        nucleus = float(rng.uniform(0.78, 0.88))
    elif cell_type == "debris":
        aspect, n_harm, amp = float(rng.uniform(0.4, 0.9)), 5, 0.15
    shift = (0.0, 0.0)
    if nucleus and nucleus < 1.0:
        room = 1.0 - nucleus
        shift = tuple(float(v) for v in rng.uniform(-0.6, 0.6, 2) * room)
    cell = Cell(
        type=cell_type,
        cy=cy,
        cx=cx,
        diameter_um=d,
        aspect=aspect,
        angle=float(rng.uniform(0, math.pi)),
        prm1=prm1,
        pna=pna,
        defocus_um=float(rng.uniform(0.3, 0.8)) if rng.random() < 0.15 else 0.0,
        nucleus_frac=nucleus,
        nucleus_shift=shift,  # type: ignore[arg-type]
        granule=granule,
        granule_angle=float(rng.uniform(0, 2 * math.pi)),
        cap=cap,
        darkness=darkness,
        prm1_level=float(
            rng.uniform(1800, 3000)
            if cell_type == "elongated_spermatid"
            else rng.uniform(500, 1100)
        ),
        pna_level=float(
            rng.uniform(600, 1200)
            if cell_type == "elongated_spermatid"
            else rng.uniform(1400, 2800)
        ),
        shape_coef=tuple(
            (float(rng.uniform(0, amp)), float(rng.uniform(0, 6.3))) for _ in range(n_harm)
        ),
        texture=tuple(float(v) for v in rng.uniform(0, 1, 12)),
    )
    if cell_type == "elongated_spermatid":
        cell.tail_len_um = float(rng.uniform(*TAIL_UM))
        cell.tail_bend = float(rng.uniform(-0.4, 0.4))
    return cell


@dataclass
class Patch:
    """A rendered cell: arrays ``(H, W)`` whose pixel (0, 0) is level-0 pixel ``(y0, x0)``."""

    y0: int
    x0: int
    mask: np.ndarray  # bool, the cell body (its label)
    alpha: np.ndarray  # float32 0..1, soft body coverage (after defocus)
    trans: np.ndarray  # float32, alpha * transmission of the body
    relief: np.ndarray  # float32, additive edge relief / halo / tail in transmission units
    prm1: np.ndarray  # float32 emission
    pna: np.ndarray  # float32 emission


def patch_radius_px(cell: Cell, pixel_size_um: float) -> int:
    """Half-size (pixels) of the square patch that holds the whole rendered cell."""
    reach = max(cell.radius_um * 1.4, cell.tail_len_um + cell.radius_um) + 3 * cell.defocus_um
    return int(math.ceil(reach / pixel_size_um)) + 3


def _smooth_disc(rho: np.ndarray, radius_px: float) -> np.ndarray:
    """Anti-aliased coverage of ``rho <= 1`` (rho in units of a radius of ``radius_px``)."""
    return np.clip(0.5 - (rho - 1.0) * radius_px, 0.0, 1.0).astype(np.float32)


def _granule_position(cell: Cell, px: float) -> tuple[float, float]:
    """Offset (pixels) of the acrosomal granule / PNA dot from the cell centre: at the nucleus
    edge, pulled inside the cell so it stays 1.3 µm from the outline."""
    r_px = cell.radius_um / px
    rn = cell.nucleus_frac * r_px
    gy = cell.nucleus_shift[0] * r_px + (rn + 0.3 / px) * math.sin(cell.granule_angle)
    gx = cell.nucleus_shift[1] * r_px + (rn + 0.3 / px) * math.cos(cell.granule_angle)
    dist, limit = math.hypot(gy, gx), max(r_px - 1.3 / px, 0.0)
    if dist > limit > 0:
        gy, gx = gy * limit / dist, gx * limit / dist
    return gy, gx


def render_cell(cell: Cell, pixel_size_um: float) -> Patch:
    """Render ``cell`` into a :class:`Patch` (positions in pixels, intensities arbitrary units)."""
    px = pixel_size_um
    h = patch_radius_px(cell, px)
    y0, x0 = int(math.floor(cell.cy)) - h, int(math.floor(cell.cx)) - h
    yy, xx = np.mgrid[y0 : y0 + 2 * h + 1, x0 : x0 + 2 * h + 1].astype(np.float32)
    dy, dx = yy - np.float32(cell.cy), xx - np.float32(cell.cx)
    ca, sa = math.cos(cell.angle), math.sin(cell.angle)
    u, v = dy * ca + dx * sa, -dy * sa + dx * ca  # major, minor axis coordinates (px)
    r_px = cell.radius_um / px
    a, b = r_px, r_px * cell.aspect
    theta = np.arctan2(v, u)
    edge = np.ones_like(theta)
    for k, (amp, ph) in enumerate(cell.shape_coef, start=2):
        edge += amp * np.cos(k * theta + ph)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / edge
    mask = rho <= 1.0
    body = _smooth_disc(rho, 0.5 * (a + b))
    t = cell.texture

    # transmission of the body
    trans = np.full(rho.shape, 1.0 - cell.darkness, np.float32)
    tex = (np.sin(u * (0.6 + t[0]) + t[1] * 6.3) * np.sin(v * (0.6 + t[2]) + t[3] * 6.3)).astype(
        np.float32
    )
    trans += 0.03 * tex
    nuc = np.zeros_like(trans)
    if cell.nucleus_frac > 0:
        ny, nx = cell.nucleus_shift[0] * r_px, cell.nucleus_shift[1] * r_px
        rn = cell.nucleus_frac * r_px
        if cell.type == "elongated_spermatid":
            nrho = rho
        else:
            nrho = np.sqrt((dy - ny) ** 2 + (dx - nx) ** 2) / max(rn, 0.5)
        nuc = _smooth_disc(nrho, rn)
        nuc_dark = {"spermatogonium": 0.25, "lymphocyte": 0.2, "elongated_spermatid": 0.0}.get(
            cell.type, 0.12
        )
        trans -= nuc_dark * nuc
        if cell.type == "spermatocyte":  # thread-like chromatin
            threads = np.abs(
                np.sin(u * (0.9 + t[4]) + np.sin(v * (0.3 + t[5])) * 2.0)
                * np.sin(v * (0.8 + t[6]) + np.sin(u * (0.35 + t[7])) * 2.0)
            )
            trans -= 0.18 * nuc * (threads > 0.55)
        if cell.granule:  # bright acrosomal granule beside the nucleus
            gy, gx = _granule_position(cell, px)
            g = np.exp(-((dy - gy) ** 2 + (dx - gx) ** 2) / (2 * (0.45 / px) ** 2))
            trans += 0.25 * g.astype(np.float32)
    if cell.type == "red_blood_cell":  # biconcave: bright central pallor
        trans += 0.14 * np.exp(-((rho / 0.5) ** 2)).astype(np.float32)
    if cell.type == "debris":  # refractile speckles
        trans += 0.35 * np.sin(u * (1.5 + t[8]) + t[9] * 6) * np.cos(v * (1.5 + t[10]) + t[11] * 6)

    # edge relief: oblique illumination makes one side of the edge bright, the other dark
    rr = np.sqrt(dy**2 + dx**2) + 1e-6
    facing = (dy * LIGHT[0] + dx * LIGHT[1]) / rr
    width = max(0.5 / px, 1.2)
    ring = np.exp(-(((rho - 1.0) * 0.5 * (a + b) / width) ** 2)).astype(np.float32)
    strength = 0.35 if cell.type != "debris" else 0.5
    relief = (strength * facing * ring + 0.06 * ring * (rho > 1)).astype(np.float32)
    if cell.tail_len_um > 0:  # flagellum: a thin dark curve leaving the head backwards
        s = -u  # along the major axis, behind the head
        bend = cell.tail_bend * (s * px / cell.tail_len_um) ** 2 * cell.tail_len_um / px
        dist = np.abs(v - bend)
        along = (s > a * 0.8) & (s < cell.tail_len_um / px)
        tail = np.exp(-((dist / max(0.3 / px, 0.7)) ** 2)) * along
        relief -= (0.25 * tail).astype(np.float32)

    # fluorescence emission
    prm1 = np.zeros_like(trans)
    pna = np.zeros_like(trans)
    if cell.prm1:
        prm1 = (cell.prm1_level * nuc * (0.85 + 0.15 * tex)).astype(np.float32)
    if cell.pna:
        if cell.type == "elongated_spermatid":  # acrosome over the front of the head
            gy, gx = 0.55 * a * ca, 0.55 * a * sa
            sig = 0.9 / px
        else:
            gy, gx = _granule_position(cell, px)
            sig = (1.4 if cell.cap else 0.8) / px
        spot = np.exp(-((dy - gy) ** 2 + (dx - gx) ** 2) / (2 * sig**2))
        if cell.cap:  # crescent: the spot outside the nucleus
            spot = spot * (1.0 - 0.8 * nuc)
        pna = (cell.pna_level * spot / max(float(spot.max()), 1e-6)).astype(np.float32)

    alpha = body
    premult = (alpha * trans).astype(np.float32)
    if cell.defocus_um > 0:
        sigma = cell.defocus_um / px
        alpha, premult, relief, prm1, pna = (
            ndimage.gaussian_filter(arr, sigma, mode="constant").astype(np.float32)
            for arr in (alpha, premult, relief, prm1, pna)
        )
        relief *= 0.6  # a defocused edge has less relief
    return Patch(y0, x0, mask, alpha, premult, relief, prm1, pna)
