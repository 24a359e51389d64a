"""The synthetic generator: determinism, chunk independence, bounded memory, truth vs pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from _synth_helpers import arrays, make_small, truth
from napari_hrs.synth import CELL_TYPES, DIAMETER_UM, make_scene, render_region
from napari_hrs.synth import render as render_mod
from napari_hrs.synth.scene import clear_cache


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small(tmp_path_factory.mktemp("synth"))


def test_same_seed_same_output(small, tmp_path):
    again = make_small(tmp_path)
    a, b = arrays(small), arrays(again)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    pd.testing.assert_frame_equal(truth(small)[1], truth(again)[1])


def test_other_seed_differs(small, tmp_path):
    other = make_small(tmp_path, seed=4)
    assert not np.array_equal(arrays(small)["0"], arrays(other)["0"])


@pytest.mark.parametrize("chunk", [96, 200, 512])
def test_independent_of_chunk_size(small, tmp_path, chunk):
    clear_cache()
    other = make_small(tmp_path, chunk=chunk)
    a, b = arrays(small), arrays(other)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} with chunk {chunk}")
    pd.testing.assert_frame_equal(truth(small)[1], truth(other)[1])


def test_region_equals_crop_of_larger_region():
    scene = make_scene(7, (700, 700))
    img, lab = render_region(scene, 0, 0, 700, 700)
    img2, lab2 = render_region(scene, 123, 301, 333, 257)
    np.testing.assert_array_equal(img2, img[:, 123:456, 301:558])
    np.testing.assert_array_equal(lab2, lab[123:456, 301:558])


def test_renderer_memory_is_bounded_by_chunk(tmp_path):
    shapes = []
    render_mod.set_array_hook(shapes.append)
    try:
        clear_cache()
        make_small(tmp_path, size=(640, 640), chunk=128)
    finally:
        render_mod.set_array_hook(None)
    scene = make_scene(3, (640, 640))
    bound = 128 + 2 * scene.margin_px  # a cell patch never exceeds chunk + margins
    assert shapes, "the hook saw no allocation"
    assert max(int(np.prod(s[-2:])) for s in shapes) <= bound * bound
    assert max(max(s[-2:]) for s in shapes) <= max(128, bound)
    # no array as large as the image was ever allocated by the renderer
    assert all(int(np.prod(s[-2:])) < 640 * 640 for s in shapes)


def test_table_matches_labels(small):
    labels, table = truth(small)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    assert len(table) > 30
    assert sorted(table.label_id) == ids.tolist()
    counts = ndimage.sum_labels(np.ones_like(labels), labels, table.label_id.to_numpy())
    np.testing.assert_array_equal(counts, table.area_px.to_numpy())
    assert set(table.cell_type) <= set(CELL_TYPES)
    assert table.label_id.is_unique


def test_types_and_proportions(small, tmp_path):
    big = make_small(tmp_path, size=896, seed=11, chunk=512)
    _, table = truth(big)
    frac = table.cell_type.value_counts(normalize=True)
    assert set(frac.index) == set(CELL_TYPES)
    assert 0.18 < frac["round_spermatid"] < 0.42
    assert frac["round_spermatid"] == frac.max()


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_sizes_within_biology(small, cell_type):
    _, table = truth(small)
    lo, hi = DIAMETER_UM[cell_type]
    d = table.loc[table.cell_type == cell_type, "diameter_um"]
    assert ((d >= lo) & (d <= hi)).all(), d.describe()


def _per_cell_mean(image: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.asarray(ndimage.mean(image.astype(float), labels, ids))


@pytest.mark.parametrize(("channel", "marker"), [(1, "PRM1"), (2, "PNA")])
def test_markers_match_truth(small, channel, marker):
    img = arrays(small)["0"]
    labels, table = truth(small)
    big = table[table.area_px >= 100]
    m = _per_cell_mean(img[channel], labels, big.label_id.to_numpy())
    pos = m[big[f"{marker}_positive"].to_numpy()]
    neg = m[~big[f"{marker}_positive"].to_numpy()]
    assert len(pos) >= 3 and len(neg) >= 3
    assert np.median(pos) > np.median(neg) + 25, (np.median(pos), np.median(neg))
    assert np.median(pos) > np.percentile(neg, 90)


def test_only_spermatids_are_positive(small):
    _, table = truth(small)
    others = table[~table.cell_type.isin(["round_spermatid", "elongated_spermatid"])]
    assert not others.PRM1_positive.any() and not others.PNA_positive.any()
    elongated = table[table.cell_type == "elongated_spermatid"]
    assert elongated.PRM1_positive.all() and elongated.PNA_positive.all()


def test_cells_darker_than_background(small):
    img = arrays(small)["0"][0].astype(float)
    labels, table = truth(small)
    rbc_or_hrs = table[table.cell_type.isin(["round_spermatid", "lymphocyte"])]
    inside = _per_cell_mean(img, labels, rbc_or_hrs.label_id.to_numpy())
    background = img[ndimage.binary_dilation(labels > 0, iterations=15) == 0].mean()
    assert np.median(inside) < 0.92 * background


def test_bad_arguments(tmp_path):
    from napari_hrs.synth import generate_acquisition

    with pytest.raises(ValueError, match="too small"):
        generate_acquisition(tmp_path / "x.ome.zarr", size=4)
    make_small(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite"):
        make_small(tmp_path)


def test_progress_and_cancel(tmp_path):
    from napari_hrs.errors import Cancelled

    calls = []
    make_small(tmp_path, size=(520, 530), chunk=256, progress=lambda d, t: calls.append((d, t)))
    # 3x3 level-0 chunks, then level 1 (260 x 265: 2x2 chunks) for the image and the labels
    assert calls[-1] == (9 + 4 + 4, 17)
    assert [d for d, _ in calls] == list(range(1, 18))
    target = tmp_path / "cancelled.ome.zarr"
    seen = []
    with pytest.raises(Cancelled):
        make_small(
            tmp_path,
            name=target.name,
            cancel=lambda: len(seen) > 1,
            progress=lambda d, t: seen.append(d),
        )
    assert not target.exists() and not list(tmp_path.glob(".cancelled*"))
