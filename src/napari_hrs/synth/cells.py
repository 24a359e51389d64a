"""Cell types of a testicular suspension: their parameters and the drawing of one cell.

Sizes are the textbook ranges of ``/work/shared/biology.md`` (µm); :func:`sample_cell` draws one
:class:`Cell` of a type from a numpy ``Generator``. The drawing of its pixels lives in
:mod:`napari_hrs.synth.patch`. Marker positivity is decided here, once per cell, and is the
ground truth that the images are rendered from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
#: width of an elongated spermatid's head, µm
HEAD_WIDTH_UM = (2.5, 3.5)
#: nucleus diameter of a round spermatid, µm
HRS_NUCLEUS_UM = (4.0, 6.0)
#: length of a sperm tail (flagellum), µm; brightfield only, not part of the label
TAIL_UM = (30.0, 50.0)
#: the largest Gaussian blur (sigma, µm) of an out-of-focus cell
MAX_DEFOCUS_UM = 0.9
#: the largest distance (µm) a cell's pixels reach from its centre (a blurred sperm tail)
MAX_EXTENT_UM = TAIL_UM[1] + DIAMETER_UM["elongated_spermatid"][1] / 2 + 4 * MAX_DEFOCUS_UM
#: round spermatids: P(negative for both markers); otherwise P(PNA+), P(PRM1+) (PRM1 forced
#: when PNA is negative, so every other hRS carries at least one marker)
HRS_DOUBLE_NEGATIVE = 0.05
HRS_PNA_RATE = 0.90
HRS_PRM1_RATE = 0.55
#: spermatocytes with a faint, diffuse PNA stain (still negative in the table: a look-alike)
SPERMATOCYTE_FAINT_PNA = 0.05
#: emission (counts above background) of PRM1 / PNA in positive cells
PRM1_LEVEL = {"round_spermatid": (500.0, 1100.0), "elongated_spermatid": (2200.0, 5000.0)}
PNA_LEVEL = {"round_spermatid": (1400.0, 2800.0), "elongated_spermatid": (700.0, 1400.0)}


@dataclass
class Cell:
    """One cell; position in level-0 pixels, sizes in µm, angles in radians."""

    type: str
    cy: float
    cx: float
    diameter_um: float
    aspect: float  # minor / major axis
    angle: float  # orientation of the major axis
    prm1: bool
    pna: bool
    defocus_um: float  # Gaussian blur sigma of the whole cell (0: in focus)
    nucleus_frac: float  # nucleus diameter / cell diameter (0: none)
    nucleus_shift: tuple[float, float]  # (dy, dx), a fraction of the cell radius
    granule: bool  # bright acrosomal granule beside the nucleus (round spermatids)
    granule_angle: float
    cap: bool  # PNA cap over the nucleus instead of a dot
    darkness: float  # 0..1, how much light the cytoplasm absorbs
    prm1_level: float
    pna_level: float
    faint_pna: float  # diffuse PNA of a marker-negative look-alike (0: none)
    shape_coef: tuple[tuple[float, float], ...]  # (amplitude, phase) of outline harmonics 2..
    tex_seed: int  # seeds the cell's own texture noise
    tail_len_um: float = 0.0
    tail_bend: float = 0.0
    label_id: int = 0

    @property
    def radius_um(self) -> float:
        """Half the diameter, µm."""
        return self.diameter_um / 2


def _markers(rng: np.random.Generator, cell_type: str) -> tuple[bool, bool]:
    """(PRM1, PNA) positivity of a new cell of ``cell_type``."""
    if cell_type == "elongated_spermatid":
        return True, True
    if cell_type != "round_spermatid" or rng.random() < HRS_DOUBLE_NEGATIVE:
        return False, False
    pna = bool(rng.random() < HRS_PNA_RATE)
    prm1 = bool(rng.random() < HRS_PRM1_RATE) or not pna
    return prm1, pna


def sample_cell(
    rng: np.random.Generator,
    cell_type: str,
    cy: float,
    cx: float,
    *,
    defocus_rate: float = 0.15,
) -> Cell:
    """Draw a cell of ``cell_type`` centred at ``(cy, cx)`` (pixels) from its type's ranges.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness (a fixed number of draws per type, in a fixed order).
    defocus_rate : float
        Probability that the cell lies out of the focal plane (blurred).
    """
    if cell_type not in DIAMETER_UM:
        raise ValueError(f"unknown cell type {cell_type!r}; pass one of {', '.join(CELL_TYPES)}")
    lo, hi = DIAMETER_UM[cell_type]
    d = float(rng.uniform(lo + 0.05, hi - 0.05))
    prm1, pna = _markers(rng, cell_type)
    granule = cap = False
    nucleus, aspect = 0.0, float(rng.uniform(0.9, 1.0))
    darkness = float(rng.uniform(0.12, 0.22))
    n_harm, amp = 3, 0.03
    faint = 0.0
    if cell_type == "round_spermatid":
        nucleus = min(float(rng.uniform(*HRS_NUCLEUS_UM)), d - 1.6) / d
        granule = bool(rng.random() < 0.7)
        cap = pna and bool(rng.random() < 0.35)
    elif cell_type == "elongated_spermatid":
        aspect = float(rng.uniform(*HEAD_WIDTH_UM)) / d
        nucleus, darkness = 1.0, float(rng.uniform(0.45, 0.6))
    elif cell_type == "spermatocyte":
        nucleus = float(rng.uniform(0.55, 0.7))
        darkness = float(rng.uniform(0.1, 0.18))
        if rng.random() < SPERMATOCYTE_FAINT_PNA:
            faint = float(rng.uniform(25.0, 60.0))
    elif cell_type == "spermatogonium":
        nucleus, aspect = float(rng.uniform(0.6, 0.72)), float(rng.uniform(0.82, 1.0))
        darkness = float(rng.uniform(0.2, 0.3))
    elif cell_type == "red_blood_cell":
        darkness, aspect = float(rng.uniform(0.1, 0.17)), float(rng.uniform(0.93, 1.0))
    elif cell_type == "lymphocyte":  # a thin, pale rim of cytoplasm round a large nucleus
        nucleus = float(rng.uniform(0.84, 0.92))
        darkness = float(rng.uniform(0.06, 0.12))
    else:  # debris
        aspect, n_harm, amp = float(rng.uniform(0.4, 0.9)), 5, 0.15
        darkness = float(rng.uniform(0.2, 0.45))
    shift = (0.0, 0.0)
    if 0 < nucleus < 1.0:
        shift = tuple(float(v) for v in rng.uniform(-0.6, 0.6, 2) * (1.0 - nucleus))
    prm1_range = PRM1_LEVEL.get(cell_type, (0.0, 0.0))
    pna_range = PNA_LEVEL.get(cell_type, (0.0, 0.0))
    cell = Cell(
        type=cell_type,
        cy=cy,
        cx=cx,
        diameter_um=d,
        aspect=aspect,
        angle=float(rng.uniform(0, math.pi)),
        prm1=prm1,
        pna=pna,
        defocus_um=float(rng.uniform(0.3, MAX_DEFOCUS_UM)) if rng.random() < defocus_rate else 0.0,
        nucleus_frac=nucleus,
        nucleus_shift=shift,  # type: ignore[arg-type]
        granule=granule,
        granule_angle=float(rng.uniform(0, 2 * math.pi)),
        cap=cap,
        darkness=darkness,
        prm1_level=float(rng.uniform(*prm1_range)) if prm1 else 0.0,
        pna_level=float(rng.uniform(*pna_range)) if pna else 0.0,
        faint_pna=faint,
        shape_coef=tuple(
            (float(rng.uniform(0, amp)), float(rng.uniform(0, 2 * math.pi))) for _ in range(n_harm)
        ),
        tex_seed=int(rng.integers(0, 2**62)),
    )
    if cell_type == "elongated_spermatid":
        cell.tail_len_um = float(rng.uniform(*TAIL_UM))
        cell.tail_bend = float(rng.uniform(-0.4, 0.4))
    return cell
