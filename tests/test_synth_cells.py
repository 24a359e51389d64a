"""Cell models: sizes and marker rules per type (biology.md), and what one drawn cell looks like."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from napari_hrs.synth.cells import (
    CELL_TYPES,
    DIAMETER_UM,
    HEAD_WIDTH_UM,
    HRS_NUCLEUS_UM,
    MAX_EXTENT_UM,
    TYPE_FRACTIONS,
    sample_cell,
)
from napari_hrs.synth.patch import granule_position, patch_radius_px, render_cell

PX = 0.325


def _cells(cell_type: str, n: int = 300, seed: int = 0, **kw):
    rng = np.random.default_rng(seed)
    return [sample_cell(rng, cell_type, 100.0, 100.0, **kw) for _ in range(n)]


def test_types_and_fractions():
    assert CELL_TYPES[0] == "round_spermatid" and len(CELL_TYPES) == 7
    assert set(TYPE_FRACTIONS) == set(CELL_TYPES) == set(DIAMETER_UM)
    assert sum(TYPE_FRACTIONS.values()) == pytest.approx(1.0)
    assert max(TYPE_FRACTIONS, key=TYPE_FRACTIONS.get) == "round_spermatid"


@pytest.mark.parametrize(
    ("cell_type", "lo", "hi"),
    [
        ("round_spermatid", 6, 9),
        ("elongated_spermatid", 4, 5),
        ("spermatocyte", 12, 20),
        ("spermatogonium", 10, 12),
        ("red_blood_cell", 7, 8),
        ("lymphocyte", 7, 10),
        ("debris", 2, 8),
    ],
)
def test_diameters_within_biology(cell_type, lo, hi):
    d = np.array([c.diameter_um for c in _cells(cell_type)])
    assert (d >= lo).all() and (d <= hi).all()
    assert d.max() - d.min() > 0.5 * (hi - lo)  # the whole range is used


def test_round_spermatid_anatomy():
    cells = _cells("round_spermatid", 400)
    nucleus = np.array([c.nucleus_frac * c.diameter_um for c in cells])
    assert (nucleus >= HRS_NUCLEUS_UM[0] - 1.6).all() and (nucleus <= HRS_NUCLEUS_UM[1]).all()
    assert (nucleus < np.array([c.diameter_um for c in cells])).all()
    granule = np.mean([c.granule for c in cells])
    assert 0.55 < granule < 0.85  # "often" a granule


def test_round_spermatid_markers():
    cells = _cells("round_spermatid", 2000)
    prm1 = np.array([c.prm1 for c in cells])
    pna = np.array([c.pna for c in cells])
    assert 0.78 < pna.mean() < 0.92
    assert 0.45 < prm1.mean() < 0.7
    assert 0.02 < (~prm1 & ~pna).mean() < 0.09  # truly negative hRS
    assert 0.25 < (~prm1 & pna).mean() < 0.5  # PRM1- PNA+
    assert (prm1 & ~pna).any() and (prm1 & pna).any()
    assert all((c.prm1_level > 0) == c.prm1 and (c.pna_level > 0) == c.pna for c in cells)


@pytest.mark.parametrize(
    "cell_type", ["spermatocyte", "spermatogonium", "red_blood_cell", "lymphocyte", "debris"]
)
def test_look_alikes_are_marker_negative(cell_type):
    cells = _cells(cell_type)
    assert not any(c.prm1 or c.pna or c.prm1_level or c.pna_level for c in cells)
    if cell_type != "spermatocyte":
        assert not any(c.faint_pna for c in cells)


def test_elongated_spermatids_are_bright_and_have_tails():
    cells = _cells("elongated_spermatid")
    assert all(c.prm1 and c.pna for c in cells)
    widths = np.array([c.aspect * c.diameter_um for c in cells])
    assert (widths >= HEAD_WIDTH_UM[0]).all() and (widths <= HEAD_WIDTH_UM[1]).all()
    assert min(c.prm1_level for c in cells) > max(c.prm1_level for c in _cells("round_spermatid"))
    assert all(0 < c.tail_len_um + c.radius_um <= MAX_EXTENT_UM for c in cells)


def test_unknown_type_is_refused():
    with pytest.raises(ValueError, match="round_spermatid"):
        sample_cell(np.random.default_rng(0), "sertoli", 0, 0)


def _patch(cell_type: str, seed: int = 0, **changes):
    cell = _cells(cell_type, 1, seed, defocus_rate=0.0)[0]
    for k, v in changes.items():
        setattr(cell, k, v)
    return cell, render_cell(cell, PX)


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_patch_mask_area_matches_diameter(cell_type):
    for seed in range(3):
        cell, p = _patch(cell_type, seed)
        expected = math.pi * (cell.radius_um / PX) ** 2 * cell.aspect
        tol = 0.45 if cell_type == "debris" else 0.15  # debris: irregular outline
        assert p.mask.sum() == pytest.approx(expected, rel=tol)
        assert ndimage.label(p.mask)[1] == 1  # one connected body
        h = patch_radius_px(cell, PX)
        assert p.mask.shape == p.pna.shape == p.relief.shape == (2 * h + 1, 2 * h + 1)


def test_markers_only_inside_the_cell():
    for seed in range(10):
        cell, p = _patch("round_spermatid", seed, prm1=True, pna=True)
        cell.prm1_level = cell.pna_level = 1000.0
        p = render_cell(cell, PX)
        inside = ndimage.binary_dilation(p.mask, iterations=1)
        assert p.pna[~inside].max() < 1.0 and p.prm1[~inside].max() < 1.0
        assert p.pna.max() == pytest.approx(1000.0, rel=0.05)
        # PRM1 is nuclear: it peaks near the nucleus centre; PNA sits beside the nucleus
        gy, gx = granule_position(cell, PX)
        r_nuc = cell.nucleus_frac * cell.radius_um / PX
        assert math.hypot(gy, gx) > 0.5 * r_nuc


def test_negative_cell_emits_nothing():
    for cell_type in ("red_blood_cell", "lymphocyte", "spermatogonium"):
        _, p = _patch(cell_type)
        assert not p.prm1.any() and not p.pna.any()


def test_red_blood_cell_has_central_pallor():
    cell, p = _patch("red_blood_cell")
    t = p.trans / np.maximum(p.alpha, 1e-6)
    c = p.mask.shape[0] // 2
    r = int(0.7 * cell.radius_um / PX)
    ring = t[c, c + r - 2 : c + r + 1].mean()
    assert t[c - 1 : c + 2, c - 1 : c + 2].mean() > ring + 0.05


def test_lymphocyte_darker_inside_than_round_spermatid():
    def inner_transmission(cell_type):
        vals = []
        for seed in range(5):
            _, p = _patch(cell_type, seed)
            vals.append((p.trans / np.maximum(p.alpha, 1e-6))[p.mask].mean())
        return np.mean(vals)

    assert inner_transmission("lymphocyte") < inner_transmission("round_spermatid") - 0.05


def test_elongated_tail_reaches_beyond_the_head():
    cell, p = _patch("elongated_spermatid")
    dark = p.relief < -0.1
    assert dark.sum() > 20 and not (dark & p.mask).all()
    ys, xs = np.nonzero(dark & ~ndimage.binary_dilation(p.mask, iterations=3))
    c = p.mask.shape[0] // 2
    assert np.hypot(ys - c, xs - c).max() * PX > 0.6 * cell.tail_len_um


def test_defocus_blurs_the_cell():
    cell, sharp = _patch("lymphocyte")
    cell.defocus_um = 0.8
    blurred = render_cell(cell, PX)
    assert (
        blurred.mask == np.pad(sharp.mask, (blurred.mask.shape[0] - sharp.mask.shape[0]) // 2)
    ).all()
    assert np.abs(np.diff(blurred.alpha, axis=0)).max() < np.abs(np.diff(sharp.alpha, axis=0)).max()
