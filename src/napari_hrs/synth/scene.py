"""Scene layout: where the cells are, block by block, deterministic for a seed.

The image plane is cut into square blocks of :data:`BLOCK` pixels. The cells of block
``(by, bx)`` are drawn from ``numpy.random.default_rng(SeedSequence([seed, by, bx]))``, so any
part of an arbitrarily large image can be rendered without drawing the rest. Most cells land
uniformly at random; a fraction (:data:`CLUSTER_RATE`) is placed against the previous cell of
the block, touching or slightly overlapping it, as cells clump in a suspension. A candidate is
dropped when it overlaps too much (centre distance below :data:`MIN_SEPARATION` times the sum
of the radii) an earlier candidate of its own block or any candidate of the already-placed
neighbour blocks (up-left, up, up-right, left). The label id of a cell is
``block_index * CELLS_PER_BLOCK + index_in_block + 1`` (uint32); higher ids lie on top.

Dust on the optics (:func:`block_dust`) is drawn the same way from its own seed sequence; it is
not a cell and carries no label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from napari_hrs.synth.cells import CELL_TYPES, MAX_EXTENT_UM, TYPE_FRACTIONS, Cell, sample_cell

#: side of a placement block, pixels (fixed: it must not depend on the chunk size)
BLOCK = 256
#: ids per block (the largest number of candidates a block may draw is one less)
CELLS_PER_BLOCK = 256
#: mean number of cells per 1000 µm² at density 1.0
BASE_DENSITY = 3.5
#: centre distance below which two cells count as overlapping, times the sum of their radii
MIN_SEPARATION = 0.8
#: fraction of cells placed against the previous cell of their block (touching / overlapping)
CLUSTER_RATE = 0.2
#: mean number of dust specks per block
DUST_PER_BLOCK = 0.25
#: default range of the per-scene density factor when scenes are jittered (training sets)
DENSITY_JITTER = (0.6, 1.5)


@dataclass(frozen=True)
class SceneParams:
    """Global, per-acquisition parameters of a synthetic scene.

    Attributes
    ----------
    seed : int
        Everything else random is derived from it.
    shape : tuple of int
        ``(Y, X)`` in pixels.
    pixel_size_um : float
        Pixel size, µm.
    density : float
        Scale factor on :data:`BASE_DENSITY` cells per 1000 µm².
    bf_level : float
        Brightfield background, counts (uint16, 12-bit range).
    illum_amp, vignetting : float
        Relative amplitude of the smooth uneven illumination and of the per-field vignetting.
    read_noise, gain : float
        Camera read noise (counts, standard deviation) and shot-noise gain (variance per count).
    fl_background : (float, float)
        Fluorescence background (PRM1, PNA), counts.
    bleed : float
        Fraction of the PNA emission seen in the PRM1 channel (bleed-through).
    shifts : ((int, int), (int, int))
        ``(dy, dx)`` registration shift of PRM1 and PNA against brightfield, pixels.
    defocus_rate : float
        Fraction of cells out of focus.
    """

    seed: int
    shape: tuple[int, int]
    pixel_size_um: float = 0.325
    density: float = 1.0
    bf_level: float = 2500.0
    illum_amp: float = 0.12
    vignetting: float = 0.04
    read_noise: float = 6.0
    gain: float = 0.5
    fl_background: tuple[float, float] = (110.0, 120.0)
    bleed: float = 0.02
    defocus_rate: float = 0.15
    shifts: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    illum: tuple[float, ...] = field(default=(0.0,) * 8)

    @property
    def n_blocks(self) -> tuple[int, int]:
        return (-(-self.shape[0] // BLOCK), -(-self.shape[1] // BLOCK))

    @property
    def margin_px(self) -> int:
        """Farthest a cell's pixels reach from its centre, plus the channel shift, pixels."""
        return int(math.ceil(MAX_EXTENT_UM / self.pixel_size_um)) + 8


def make_scene(
    seed: int,
    shape: tuple[int, int],
    pixel_size_um: float = 0.325,
    density: float = 1.0,
    *,
    jitter: bool = False,
    density_jitter: tuple[float, float] = DENSITY_JITTER,
) -> SceneParams:
    """Scene parameters for ``seed`` (shape ``(Y, X)`` in pixels, pixel size in µm).

    ``jitter`` varies illumination, noise, defocus, density (by a factor drawn uniformly from
    ``density_jitter``, ``0 < low <= high``) and pixel size (±8 %), for training sets of
    independent scenes.
    """
    lo, hi = (float(v) for v in density_jitter)
    if not 0 < lo <= hi:
        raise ValueError(
            f"density_jitter {density_jitter!r}: expected (low, high) factors "
            "with 0 < low <= high, e.g. (0.6, 1.5)"
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    shifts = []
    for _ in range(2):  # PRM1, PNA: 1-3 px shift along each axis, random sign
        s = rng.integers(1, 4, 2) * rng.choice([-1, 1], 2)
        shifts.append((int(s[0]), int(s[1])))
    illum = tuple(float(v) for v in rng.uniform(0, 1, 8))
    kw: dict = {}
    if jitter:
        kw = {
            "bf_level": float(rng.uniform(1800, 3000)),
            "illum_amp": float(rng.uniform(0.04, 0.2)),
            "read_noise": float(rng.uniform(3, 12)),
            "gain": float(rng.uniform(0.3, 1.0)),
            "defocus_rate": float(rng.uniform(0.05, 0.3)),
            "vignetting": float(rng.uniform(0.0, 0.08)),
        }
        density = density * float(rng.uniform(lo, hi))
        pixel_size_um = pixel_size_um * float(rng.uniform(0.92, 1.08))
    return SceneParams(
        seed=int(seed),
        shape=(int(shape[0]), int(shape[1])),
        pixel_size_um=float(pixel_size_um),
        density=float(density),
        shifts=(shifts[0], shifts[1]),
        illum=illum,
        **kw,
    )


def _candidates(scene: SceneParams, by: int, bx: int) -> list[Cell]:
    return _candidates_cached(scene, by, bx)


@lru_cache(maxsize=4096)
def _candidates_cached(scene: SceneParams, by: int, bx: int) -> list[Cell]:
    """All cells drawn for block ``(by, bx)``, before overlap rejection (ids set)."""
    rng = np.random.default_rng(np.random.SeedSequence([scene.seed, by, bx]))
    y0, x0 = by * BLOCK, bx * BLOCK
    h = min(BLOCK, scene.shape[0] - y0)
    w = min(BLOCK, scene.shape[1] - x0)
    area_um2 = h * w * scene.pixel_size_um**2
    lam = scene.density * BASE_DENSITY * area_um2 / 1000.0
    n = min(int(rng.poisson(lam)), CELLS_PER_BLOCK - 1)
    p = np.array([TYPE_FRACTIONS[t] for t in CELL_TYPES])
    types = rng.choice(len(CELL_TYPES), size=n, p=p / p.sum())
    ys = y0 + rng.uniform(0, h, n)
    xs = x0 + rng.uniform(0, w, n)
    clustered = rng.random(n) < CLUSTER_RATE
    base = (by * scene.n_blocks[1] + bx) * CELLS_PER_BLOCK
    cells: list[Cell] = []
    for k in range(n):
        c = sample_cell(
            rng, CELL_TYPES[types[k]], float(ys[k]), float(xs[k]), defocus_rate=scene.defocus_rate
        )
        ang, gap = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.82, 1.0))
        if clustered[k] and cells:  # against the previous cell: touching or overlapping
            prev = cells[-1]
            dist = gap * (prev.radius_um + c.radius_um) / scene.pixel_size_um
            cy, cx = prev.cy + dist * math.sin(ang), prev.cx + dist * math.cos(ang)
            if y0 <= cy < y0 + h and x0 <= cx < x0 + w:  # stay in the block
                c.cy, c.cx = cy, cx
        c.label_id = base + k + 1
        cells.append(c)
    return cells


@lru_cache(maxsize=1024)
def block_dust(scene: SceneParams, by: int, bx: int) -> tuple[tuple[float, ...], ...]:
    """Dust specks of block ``(by, bx)``: ``(cy, cx, radius_px, strength, ring)`` each."""
    rng = np.random.default_rng(np.random.SeedSequence([scene.seed, by, bx, 0xD057]))
    n = int(rng.poisson(DUST_PER_BLOCK))
    out = []
    for _ in range(n):
        cy = by * BLOCK + float(rng.uniform(0, BLOCK))
        cx = bx * BLOCK + float(rng.uniform(0, BLOCK))
        radius = float(rng.uniform(1.5, 10.0)) / scene.pixel_size_um
        out.append((cy, cx, radius, float(rng.uniform(0.03, 0.12)), float(rng.random() < 0.5)))
    return tuple(out)


def _overlaps(c: Cell, others: list[Cell], px: float) -> bool:
    for o in others:
        lim = MIN_SEPARATION * (c.radius_um + o.radius_um) / px
        if (c.cy - o.cy) ** 2 + (c.cx - o.cx) ** 2 < lim * lim:
            return True
    return False


@lru_cache(maxsize=4096)
def block_cells(scene: SceneParams, by: int, bx: int) -> tuple[Cell, ...]:
    """The placed cells of block ``(by, bx)`` (after overlap rejection), in id order."""
    nby, nbx = scene.n_blocks
    if not (0 <= by < nby and 0 <= bx < nbx):
        return ()
    earlier: list[Cell] = []
    for ny, nx in ((by - 1, bx - 1), (by - 1, bx), (by - 1, bx + 1), (by, bx - 1)):
        if 0 <= ny < nby and 0 <= nx < nbx:
            earlier.extend(_candidates(scene, ny, nx))
    px = scene.pixel_size_um
    placed: list[Cell] = []
    for c in _candidates(scene, by, bx):
        if not _overlaps(c, placed, px) and not _overlaps(c, earlier, px):
            placed.append(c)
    return tuple(placed)


def cells_in_region(
    scene: SceneParams, y0: int, x0: int, y1: int, x1: int, margin: int | None = None
) -> list[Cell]:
    """Cells of the blocks overlapping the pixel region ``[y0, y1) x [x0, x1)`` grown by
    ``margin`` pixels (default :attr:`SceneParams.margin_px`), sorted by label id."""
    m = scene.margin_px if margin is None else margin
    by0, by1 = max(0, (y0 - m) // BLOCK), min(scene.n_blocks[0] - 1, (y1 + m) // BLOCK)
    bx0, bx1 = max(0, (x0 - m) // BLOCK), min(scene.n_blocks[1] - 1, (x1 + m) // BLOCK)
    out: list[Cell] = []
    for by in range(by0, by1 + 1):
        for bx in range(bx0, bx1 + 1):
            out.extend(block_cells(scene, by, bx))
    out.sort(key=lambda c: c.label_id)
    return out


def clear_cache() -> None:
    """Forget cached block layouts (memory is bounded by the caches' sizes anyway)."""
    _candidates_cached.cache_clear()
    block_cells.cache_clear()
    block_dust.cache_clear()
