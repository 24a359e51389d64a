"""The synthetic generator: determinism, chunk independence, bounded memory, truth vs pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from _synth_helpers import arrays, assert_same_acquisition, make_small, per_cell_mean, truth
from napari_hrs.synth import CELL_TYPES, DIAMETER_UM, make_scene, render_region
from napari_hrs.synth import render as render_mod
from napari_hrs.synth import writer as writer_mod
from napari_hrs.synth.render import MAX_VALUE
from napari_hrs.synth.scene import clear_cache


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def dense():
    """A denser in-memory scene (more cells of every type) with its truth table."""
    from napari_hrs.synth.scene import block_cells

    scene = make_scene(11, (768, 768), density=1.6)
    image, labels = render_region(scene, 0, 0, 768, 768)
    cells = {c.label_id: c for b in np.ndindex(scene.n_blocks) for c in block_cells(scene, *b)}
    return scene, image, labels, cells


def _full_area(cell, px: float) -> float:
    """Pixels of the cell's body when nothing hides it."""
    return float(np.pi * (cell.diameter_um / 2 / px) ** 2 * cell.aspect)


def test_same_seed_same_output(small, tmp_path):
    assert_same_acquisition(small, make_small(tmp_path, workers=1))


def test_other_seed_differs(small):
    a = render_region(make_scene(3, (512, 576)), 0, 0, 512, 576)[0]
    b = render_region(make_scene(4, (512, 576)), 0, 0, 512, 576)[0]
    np.testing.assert_array_equal(a, arrays(small)["0"])  # what the writer wrote
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(("chunk", "workers"), [(96, 2), (512, 1)])
def test_independent_of_chunk_size_and_workers(small, tmp_path, chunk, workers):
    clear_cache()
    assert_same_acquisition(small, make_small(tmp_path, chunk=chunk, workers=workers))


def test_region_equals_crop_of_larger_region():
    scene = make_scene(7, (700, 700))
    img, lab = render_region(scene, 0, 0, 700, 700)
    img2, lab2 = render_region(scene, 123, 301, 333, 257)
    np.testing.assert_array_equal(img2, img[:, 123:456, 301:558])
    np.testing.assert_array_equal(lab2, lab[123:456, 301:558])


def test_memory_is_bounded_by_chunks_not_image(tmp_path):
    shapes, inflight = [], []
    render_mod.set_array_hook(shapes.append)
    writer_mod.set_inflight_hook(inflight.append)
    try:
        clear_cache()
        make_small(tmp_path, size=(640, 704), chunk=128, workers=2)
    finally:
        render_mod.set_array_hook(None)
        writer_mod.set_inflight_hook(None)
    scene = make_scene(3, (640, 704))
    bound = max(128, 2 * scene.margin_px)  # a cell patch never exceeds twice the margin
    assert shapes and inflight
    assert max(max(s[-2:]) for s in shapes) <= bound
    assert all(int(np.prod(s[-2:])) < 640 * 704 / 4 for s in shapes)
    assert max(inflight) <= 2 * 2  # at most two chunks per worker are ever held
    assert len(inflight) == 5 * 6  # one submission per level-0 chunk


def test_table_matches_labels(small):
    labels, table = truth(small)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    assert len(table) > 30
    assert sorted(table.label_id) == ids.tolist()  # every labelled cell has pixels, and a row
    counts = ndimage.sum_labels(np.ones_like(labels), labels, table.label_id.to_numpy())
    np.testing.assert_array_equal(counts, table.area_px.to_numpy())
    assert set(table.cell_type) <= set(CELL_TYPES)
    assert table.label_id.is_unique
    np.testing.assert_allclose(table.centroid_y_um, table.centroid_y_px * 0.325, atol=1e-3)


def test_labels_pyramid_is_nearest(small):
    a = arrays(small)
    np.testing.assert_array_equal(a["labels/ground_truth/1"], a["labels/ground_truth/0"][::2, ::2])
    mean = a["0"][:, :2, :2].astype(float).mean(axis=(1, 2))
    np.testing.assert_array_equal(a["1"][:, 0, 0], np.rint(mean))


def test_types_and_proportions(dense):
    _, _, labels, cells = dense
    present = {cells[i].type for i in np.unique(labels) if i}
    assert present == set(CELL_TYPES)
    types = pd.Series([cells[i].type for i in np.unique(labels) if i])
    frac = types.value_counts(normalize=True)
    assert 0.18 < frac["round_spermatid"] < 0.42 and frac.idxmax() == "round_spermatid"


@pytest.mark.parametrize("cell_type", [t for t in CELL_TYPES if t != "debris"])
def test_measured_sizes_within_biology(dense, cell_type):
    """Equivalent diameters of unoccluded cells' masks lie in biology.md's range."""
    scene, _, labels, cells = dense
    px = scene.pixel_size_um
    ids, areas = np.unique(labels, return_counts=True)
    d = []
    for i, a in zip(ids, areas, strict=True):
        c = cells.get(int(i))
        if c is None or c.type != cell_type:
            continue
        if a < 0.97 * _full_area(c, px):  # partly hidden or cut by the border
            continue
        major = c.diameter_um  # table diameter: cell / head length
        d.append(major)
        assert 2 * np.sqrt(a / np.pi / c.aspect) * px == pytest.approx(major, rel=0.12)
    lo, hi = DIAMETER_UM[cell_type]
    assert d, f"no unoccluded {cell_type}"
    assert lo <= min(d) and max(d) <= hi


@pytest.mark.parametrize(("channel", "marker"), [(1, "PRM1"), (2, "PNA")])
def test_marker_pixels_only_in_positive_cells(dense, channel, marker):
    scene, image, labels, cells = dense
    sy, sx = scene.shifts[channel - 1]
    # bring labels into the marker channel's frame (it is shifted by (sy, sx) pixels)
    shifted = np.roll(labels, (sy, sx), axis=(0, 1))
    pos = [c for c in cells.values() if getattr(c, marker.lower())]
    sharp = np.isin(shifted, [c.label_id for c in pos if not c.defocus_um])
    blurred = np.isin(shifted, [c.label_id for c in pos if c.defocus_um])
    reach = int(np.ceil(3 * 0.9 / scene.pixel_size_um)) + 3  # defocus spreads the signal
    pos_region = ndimage.binary_dilation(sharp, iterations=3)
    pos_region |= ndimage.binary_dilation(blurred, iterations=reach)
    img = image[channel].astype(float)
    background = np.median(img[~ndimage.binary_dilation(labels > 0, iterations=8)])
    bright = img > background + 300
    assert bright.sum() > 50
    assert (bright & ~pos_region).sum() == 0, "marker signal outside the positive cells"
    # per cell: each in-focus positive cell is bright somewhere, negatives never are
    ids = list(cells)
    peaks = ndimage.maximum(np.where(pos_region, 0.0, img), shifted, ids)
    peaks_pos = ndimage.maximum(img, shifted, ids)
    areas = ndimage.sum_labels(np.ones_like(labels), labels, ids)
    checked = 0
    for i, peak, peak_pos, area in zip(ids, peaks, peaks_pos, areas, strict=True):
        c = cells[i]
        if c.defocus_um or area < 0.95 * _full_area(c, scene.pixel_size_um):
            continue  # blurred, or partly hidden / cut by the border
        checked += 1
        if getattr(c, marker.lower()):
            assert peak_pos > background + 200, (c.type, peak_pos)
        else:  # away from touching positive neighbours, a negative cell stays dark
            assert peak < background + 150, (c.type, peak)
    assert checked > 50


def test_median_marker_levels_separate(small):
    img = arrays(small)["0"]
    labels, table = truth(small)
    big = table[table.area_px >= 100]
    for channel, marker in ((1, "PRM1"), (2, "PNA")):
        m = per_cell_mean(img[channel], labels, big.label_id.to_numpy())
        pos = m[big[f"{marker}_positive"].to_numpy()]
        neg = m[~big[f"{marker}_positive"].to_numpy()]
        assert len(pos) >= 3 and len(neg) >= 3
        assert np.median(pos) > np.percentile(neg, 90)


def test_only_spermatids_are_positive(small):
    _, table = truth(small)
    others = table[~table.cell_type.isin(["round_spermatid", "elongated_spermatid"])]
    assert not others.PRM1_positive.any() and not others.PNA_positive.any()
    elongated = table[table.cell_type == "elongated_spermatid"]
    assert elongated.PRM1_positive.all() and elongated.PNA_positive.all()
    hrs = table[table.cell_type == "round_spermatid"]
    assert (hrs.PNA_positive & ~hrs.PRM1_positive).any()  # PRM1- PNA+ round spermatids


def test_brightfield_looks_like_brightfield(dense):
    _, image, labels, cells = dense
    bf = image[0].astype(float)
    background = bf[~ndimage.binary_dilation(labels > 0, iterations=15)]
    ids = [i for i, c in cells.items() if c.type in ("lymphocyte", "round_spermatid")]
    inside = per_cell_mean(bf, labels, np.array(ids))
    inside = inside[np.isfinite(inside)]
    assert np.median(inside) < 0.92 * background.mean()  # cells darker than the background
    assert 0.01 < background.std() / background.mean() < 0.1  # noise + uneven illumination
    assert (image[0] == MAX_VALUE).any() or (image[1] == MAX_VALUE).any()  # some saturation
    assert image.max() <= MAX_VALUE


def test_bad_arguments(tmp_path):
    from napari_hrs.synth import generate_acquisition

    with pytest.raises(ValueError, match="too small"):
        generate_acquisition(tmp_path / "x.ome.zarr", size=4)
    with pytest.raises(ValueError, match="pixel_size_um"):
        generate_acquisition(tmp_path / "x.ome.zarr", size=64, pixel_size_um=0)
    make_small(tmp_path, size=64, chunk=32)
    with pytest.raises(FileExistsError, match="overwrite"):
        make_small(tmp_path, size=64, chunk=32)


def test_progress_and_cancel(tmp_path):
    from napari_hrs.errors import Cancelled

    calls = []
    make_small(tmp_path, size=(520, 530), chunk=256, progress=lambda d, t: calls.append((d, t)))
    # 3x3 level-0 chunks, then level 1 (260 x 265: 2x2 chunks) for the image and the labels
    assert calls[-1] == (9 + 4 + 4, 17)
    assert [d for d, _ in calls] == list(range(1, 18))
    target = tmp_path / "cancelled.ome.zarr"
    seen = []
    with pytest.raises(Cancelled, match="cancelled"):
        make_small(
            tmp_path,
            name=target.name,
            cancel=lambda: len(seen) > 1,
            progress=lambda d, t: seen.append(d),
        )
    assert not target.exists() and not list(tmp_path.glob(".cancelled*"))
