"""Ring geometry and per-segment statistics against obvious numpy / scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_hrs.markers.background import (
    ring_mask,
    ring_sqdist,
    segment_mean_sd,
    segment_median,
    segment_sort,
    segment_sum,
)


def _random_masks(n, h, w, seed):
    rng = np.random.default_rng(seed)
    return ndi.binary_opening(rng.random((n, h, w)) < 0.15, structure=np.ones((1, 1, 1)))


@pytest.mark.parametrize(
    ("radius", "margin"), [(1, True), (4, True), (8, False), (11, True), (12, False), (40, True)]
)
def test_ring_sqdist_is_the_exact_squared_edt_up_to_the_radius(radius, margin):
    n, h, w = 5, 30, 37
    ins = np.zeros((n, h, w), bool)
    core = (
        _random_masks(n, h - 2 * radius, w - 2 * radius, radius) if margin and radius < 12 else None
    )
    if core is not None:
        ins[:, radius : h - radius, radius : w - radius] = core
    else:  # cells touching the crop edges: the padded path
        ins = _random_masks(n, h, w, radius)
    ins[:, h // 2, w // 2] = True
    got = ring_sqdist(ins, radius)
    for i in range(n):
        ref = ndi.distance_transform_edt(~ins[i]) ** 2
        near = ref <= radius * radius
        np.testing.assert_array_equal(got[i][near], np.round(ref[near]))
        assert (got[i][~near] > radius * radius).all()


def test_ring_sqdist_2d_and_ring_mask():
    ins = np.zeros((15, 15), bool)
    ins[7, 7] = True
    d2 = ring_sqdist(ins, 3)
    assert d2.shape == (15, 15) and d2[7, 10] == 9 and d2[8, 8] == 2
    occ = ins.copy()
    occ[7, 9] = True  # a neighbour pixel
    ring = ring_mask(ins, occ, gap=1, width=2)
    yy, xx = np.mgrid[:15, :15]
    dist2 = (yy - 7) ** 2 + (xx - 7) ** 2
    expected = (dist2 > 1) & (dist2 <= 9)
    expected[7, 9] = False
    np.testing.assert_array_equal(ring, expected)


def _segments(dtype, seed, n=40):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 30, n)
    counts[3] = 0
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -(2**40)), min(info.max, 2**40)
        vals = rng.integers(lo, hi, counts.sum(), dtype=np.int64 if info.min < 0 else np.uint64)
        vals = vals.astype(dtype)
    else:
        vals = rng.normal(0, 1e3, counts.sum()).astype(dtype)
    return vals, counts


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.uint64, np.float32, np.float64]
)
def test_segment_stats_match_numpy(dtype):
    vals, counts = _segments(dtype, 7)
    splits = np.split(vals, np.cumsum(counts)[:-1])
    med = segment_median(vals, counts)
    mean, sd = segment_mean_sd(vals, counts)
    total = segment_sum(vals, counts)
    srt = segment_sort(vals, counts)
    assert srt.dtype == vals.dtype
    for i, s in enumerate(splits):
        np.testing.assert_array_equal(
            srt[np.cumsum(counts)[i] - counts[i] : np.cumsum(counts)[i]], np.sort(s)
        )
        if len(s) == 0:
            assert np.isnan(med[i]) and np.isnan(mean[i]) and np.isnan(sd[i]) and total[i] == 0
            continue
        f = s.astype(np.float64)
        assert med[i] == np.median(f)
        assert mean[i] == pytest.approx(f.mean(), rel=1e-12)
        assert sd[i] == pytest.approx(f.std(), rel=1e-9, abs=1e-9)
        assert total[i] == pytest.approx(f.sum(), rel=1e-12)


def test_segment_stats_on_empty_input():
    assert segment_median(np.zeros(0, np.uint16), np.zeros(0, int)).shape == (0,)
    assert np.isnan(segment_median(np.zeros(0, np.uint16), np.zeros(2, int))).all()
    assert segment_sort(np.zeros(0), np.zeros(0, int)).size == 0
