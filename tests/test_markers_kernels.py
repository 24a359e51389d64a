"""The compiled per-cell kernels: box finding, non-convex rings, 16-bit radix medians."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from _markers_helpers import disk_scene, naive_quantify
from napari_hrs.markers import quantify
from napari_hrs.markers._kernels import channel_stats, disk_half_widths, tile_boxes


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.int64])
def test_tile_boxes_equal_find_objects(dtype):
    lab = disk_scene((70, 90), 25, radius=(2.0, 12.0), seed=4).astype(dtype)
    lab[5, 80:90] = 3  # a second, disconnected piece of label 3 on the right edge
    lab[60:70, 0] = 11  # a vertical line on the left edge
    got = tile_boxes(lab, 1, int(lab.max()))
    want = [
        (i + 1, s[0].start, s[0].stop, s[1].start, s[1].stop)
        for i, s in enumerate(ndi.find_objects(lab))
        if s is not None
    ]
    np.testing.assert_array_equal(got, np.asarray(want, np.int64).reshape(-1, 5))
    first = int(lab[lab > 0].min())
    np.testing.assert_array_equal(tile_boxes(lab, first, int(lab.max())), got)  # from `first`
    assert tile_boxes(np.zeros((4, 4), dtype), 1, 0).shape == (0, 5)


def test_disk_half_widths():
    k_outer, k_gap = disk_half_widths(2, 5)
    assert list(k_outer) == [0, 3, 4, 4, 4, 5, 4, 4, 4, 3, 0]
    assert list(k_gap) == [-1, -1, -1, 0, 1, 2, 1, 0, -1, -1, -1]


def _non_convex_scene() -> np.ndarray:
    lab = np.zeros((80, 90), np.int32)
    yy, xx = np.mgrid[:80, :90]
    ring = ((yy - 25) ** 2 + (xx - 25) ** 2 < 15**2) & ((yy - 25) ** 2 + (xx - 25) ** 2 >= 7**2)
    lab[ring] = 1  # an annulus: two runs on its middle rows, a hole of background inside
    lab[50:70, 10:14] = 2
    lab[50:70, 24:28] = 2  # one label, two disconnected bars
    lab[66:70, 10:28] = 2  # ... joined at the bottom: a U
    lab[10:40, 55:85][np.eye(30, dtype=bool)] = 3  # a diagonal line (8-connected only)
    lab[50:60, 60:62] = 4
    lab[56:66, 66:68] = 4  # two bars that do not touch: not row-convex
    return lab


@pytest.mark.parametrize("ring", [(2, 6), (0, 3), (4, 1)])
def test_non_convex_cells_match_the_naive_reference(ring):
    lab = _non_convex_scene()
    rng = np.random.default_rng(7)
    ch = rng.integers(0, 5000, lab.shape).astype(np.uint16)
    got = quantify({"M": ch}, lab, ring_px=ring, tile=32)
    ref = naive_quantify({"M": ch}, lab, *ring)
    for col in ref.columns:
        np.testing.assert_allclose(got[col], ref[col], rtol=1e-12, err_msg=col)


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (np.uint16, [255, 256]),  # the two middle values in different high-byte bins
        (np.uint16, [0, 65535]),
        (np.uint16, [7, 7, 7, 300, 300]),
        (np.int16, [-32768, -1, 0, 32767]),
        (np.int16, [-5, -300, 12]),
        (np.uint8, [0, 255, 3, 200]),
        (np.int8, [-128, 127, -1, 0, 5, 5]),
    ],
)
def test_radix_median_matches_numpy(dtype, values):
    vals = np.asarray(values, dtype)
    n = len(vals)
    lab = np.zeros((12, 12 + n), np.int32)
    lab[5, 6 : 6 + n] = 1
    ch = np.zeros(lab.shape, dtype)
    ch[5, 6 : 6 + n] = vals
    ch[0, :] = vals[0]  # ring values too
    t = quantify({"M": ch}, lab, ring_px=(0, 5))
    assert t.loc[0, "M_median"] == np.median(vals.astype(np.float64))
    ring = ch[(ndi.distance_transform_edt(lab == 0) <= 5) & (lab == 0)]
    assert t.loc[0, "M_background"] == np.median(ring.astype(np.float64))


def test_cell_ids_of_every_size_and_wide_cells():
    lab = disk_scene((120, 300), 20, radius=(4.0, 40.0), seed=8, id_step=2**20 + 3)
    lab = lab.astype(np.int64)
    lab[100:110, 0:300] = 2**40  # wider than any crop bucket, across the whole image
    ch = np.random.default_rng(0).normal(1000, 50, lab.shape)  # float64
    got = quantify({"M": ch}, lab, ring_px=(1, 3), tile=64)
    ref = naive_quantify({"M": ch}, lab, 1, 3)
    for col in ref.columns:
        np.testing.assert_allclose(got[col], ref[col], rtol=1e-9, err_msg=col)


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
    "dtype",
    [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.uint64,
     np.float32, np.float64],
)  # fmt: skip
def test_channel_stats_match_numpy_for_every_dtype(dtype):
    vals, counts = _segments(dtype, 7)
    counts = counts.astype(np.int64)
    starts = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    offsets = np.arange(vals.size, dtype=np.int32)
    kind, size = np.dtype(dtype).kind, np.dtype(dtype).itemsize
    shift = (1 << (8 * size - 1) if kind == "i" else 0) if kind in "iu" and size <= 2 else -1
    out = [np.empty(len(counts)) for _ in range(5)]
    # the same segments as the cells' pixels and as their rings
    channel_stats(vals[None], starts, offsets, counts, offsets, counts, shift, kind in "iu", *out)
    total, med, bg_med, bg_mean, bg_sd = out
    for i, c in enumerate(counts):
        s = vals[starts[i] : starts[i] + c].astype(np.float64)
        if c == 0:
            assert total[i] == 0 and np.isnan(med[i]) and np.isnan(bg_med[i])
            assert np.isnan(bg_mean[i]) and np.isnan(bg_sd[i])
            continue
        assert med[i] == np.median(s) == bg_med[i]
        assert total[i] == pytest.approx(s.sum(), rel=1e-12)
        assert bg_mean[i] == pytest.approx(s.mean(), rel=1e-12)
        assert bg_sd[i] == pytest.approx(s.std(), rel=1e-9, abs=1e-9)


def test_bright_flat_background_keeps_its_precision():
    vals = np.array([65000, 65001] * 500, np.uint16)  # SD exactly 0.5
    counts = np.array([vals.size], np.int64)
    offsets = np.arange(vals.size, dtype=np.int32)
    out = [np.empty(1) for _ in range(5)]
    zero = np.zeros(1, np.int64)
    channel_stats(vals[None], zero, offsets, counts, offsets, counts, 0, True, *out)
    assert out[4][0] == 0.5 and out[3][0] == 65000.5 and out[1][0] == 65000.5


def test_high_but_narrow_ids_use_an_offset_range():
    lab = disk_scene((60, 80), 12, radius=(3.0, 8.0), seed=2).astype(np.int64)
    ch = np.random.default_rng(3).integers(0, 3000, lab.shape).astype(np.uint16)
    base = quantify({"M": ch}, lab)
    lab[lab > 0] += 5_000_000  # above 2**22, within a range of a few ids
    high = quantify({"M": ch}, lab)
    assert (high["label_id"] == base["label_id"] + 5_000_000).all()
    pd.testing.assert_frame_equal(high.drop(columns="label_id"), base.drop(columns="label_id"))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8])
def test_radix_medians_of_many_random_segments(dtype):
    """Segments of 1..3000 values: narrow and wide spreads, heavy ties, middle values in the
    same / adjacent / distant high-byte bins: medians equal numpy's, sums and SD exact."""
    rng = np.random.default_rng(17)
    info = np.iinfo(dtype)
    segs = []
    for k in range(300):
        n = int(rng.integers(1, 3000))
        kind = k % 4
        if kind == 0:  # narrow: one high-byte bin
            v = rng.integers(400, 460, n)
        elif kind == 1:  # two clusters far apart: middle values in distant bins
            v = np.where(rng.random(n) < 0.5, rng.integers(0, 30, n), rng.integers(9000, 9100, n))
        elif kind == 2:  # heavy ties around a bin edge
            v = rng.choice([254, 255, 256, 257], n)
        else:  # the whole range
            v = rng.integers(int(info.min), int(info.max) + 1, n)
        segs.append(np.clip(v, info.min, info.max).astype(dtype))
    vals = np.concatenate(segs)
    counts = np.array([len(s) for s in segs], np.int64)
    starts = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    offsets = np.arange(vals.size, dtype=np.int32)
    shift = 1 << (8 * np.dtype(dtype).itemsize - 1) if np.dtype(dtype).kind == "i" else 0
    out = [np.empty(len(counts)) for _ in range(5)]
    channel_stats(vals[None], starts, offsets, counts, offsets, counts, shift, True, *out)
    total, med, bg_med, bg_mean, bg_sd = out
    for i, s in enumerate(segs):
        f = s.astype(np.float64)
        assert med[i] == np.median(f) == bg_med[i]
        assert total[i] == f.sum() and bg_mean[i] == pytest.approx(f.mean(), rel=1e-15)
        assert bg_sd[i] == pytest.approx(f.std(), rel=1e-12, abs=1e-12)
