"""Per-cell quantification: exact numbers, tiling invariance, inputs, errors."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr

from _markers_helpers import disk_scene, naive_quantify
from napari_hrs.errors import AcquisitionError, Cancelled, ChannelRoleError
from napari_hrs.markers import MEASURES, quantify, quantify_acquisition


def _hand_made() -> tuple[np.ndarray, np.ndarray]:
    """Cell 1: 2x2 at rows/cols 4-5, values 10..40; cell 2 above it sits in cell 1's ring."""
    lab = np.zeros((12, 12), np.int32)
    lab[4:6, 4:6] = 1
    lab[1:3, 4:6] = 2
    ch = np.full((12, 12), 1000, np.uint16)
    ch[4:6, 4:6] = [[10, 20], [30, 40]]
    ch[1:3, 4:6] = 500
    # the ring of cell 1 for gap 1, width 1 (1 < d <= 2), minus the two pixels of cell 2
    ring = [(3, 3), (3, 6), (6, 3), (6, 6), (7, 4), (7, 5), (4, 2), (5, 2), (4, 7), (5, 7)]
    for v, (y, x) in enumerate(ring, start=1):
        ch[y, x] = v
    return lab, ch


def test_hand_made_cell_exact_numbers():
    lab, ch = _hand_made()
    t = quantify({"PRM1": ch}, lab, ring_px=(1, 1))
    r = t.set_index("label_id").loc[1]
    assert r["area_px"] == 4
    assert (r["centroid_y_px"], r["centroid_x_px"]) == (4.5, 4.5)
    assert (r["bbox_x0"], r["bbox_y0"], r["bbox_x1"], r["bbox_y1"]) == (4, 4, 6, 6)
    assert r["ring_area_px"] == 10
    assert r["PRM1_mean"] == 25.0
    assert r["PRM1_median"] == 25.0
    assert r["PRM1_integrated"] == 100.0
    assert r["PRM1_background"] == 5.5
    assert r["PRM1_background_sd"] == pytest.approx(np.sqrt(8.25))
    assert r["PRM1_mean_bgsub"] == 19.5
    assert r["PRM1_integrated_bgsub"] == 100.0 - 5.5 * 4
    assert r["PRM1_sbr"] == pytest.approx(25.0 / 5.5)
    assert list(t["label_id"]) == [1, 2]
    assert t.set_index("label_id").loc[2, "PRM1_mean"] == 500.0


def test_column_layout_and_pixel_size():
    lab, ch = _hand_made()
    t = quantify({"PRM1": ch, "PNA": ch}, lab, pixel_size_um=0.5)
    geometry = ["label_id", "area_px", "centroid_y_px", "centroid_x_px"]
    assert list(t.columns[:4]) == geometry
    assert [c for c in t.columns if c.startswith("PNA_")] == [f"PNA_{m}" for m in MEASURES]
    r = t.set_index("label_id").loc[1]
    assert r["area_um2"] == pytest.approx(1.0)
    assert r["centroid_y_um"] == pytest.approx(2.25)
    assert t["label_id"].dtype == np.int64 and t["area_px"].dtype == np.int64


@pytest.mark.parametrize(
    ("ring", "dtype"),
    [((2, 6), np.uint16), ((0, 1), np.uint8), ((1, 3), np.float32), ((3, 2), np.int16)],
)
def test_matches_naive_reference(ring, dtype):
    lab = disk_scene((96, 120), 30, seed=3)
    rng = np.random.default_rng(1)
    lo = -500 if dtype == np.int16 else 0
    hi = 250 if dtype == np.uint8 else 3000
    ch = rng.integers(lo, hi, lab.shape).astype(dtype)
    if dtype == np.float32:
        ch = (ch + rng.random(lab.shape)).astype(np.float32)
    got = quantify({"M": ch}, lab, ring_px=ring, tile=40)
    ref = naive_quantify({"M": ch}, lab, *ring)
    for col in ref.columns:
        np.testing.assert_allclose(got[col], ref[col], rtol=1e-9, err_msg=col)


@pytest.mark.parametrize("tile", [16, 23, 50, 64, 127])
def test_tiled_equals_whole_image_exactly(tile):
    lab = disk_scene((150, 170), 45, radius=(3.0, 14.0), seed=5)
    lab[60:75, 58:100] = 999  # a wide cell across several tile borders
    rng = np.random.default_rng(2)
    chans = {
        "PRM1": rng.integers(0, 4096, lab.shape).astype(np.uint16),
        "PNA": rng.normal(100, 20, lab.shape).astype(np.float32),
    }
    whole = quantify(chans, lab, tile=4096)
    tiled = quantify(chans, lab, tile=tile)
    pd.testing.assert_frame_equal(whole, tiled, check_exact=True)


def test_threads_change_nothing():
    lab = disk_scene((200, 260), 700, radius=(2.0, 5.0), seed=9)  # > 256 cells per tile
    rng = np.random.default_rng(4)
    chans = {"PRM1": rng.integers(0, 4096, lab.shape).astype(np.uint16)}
    one = quantify(chans, lab, threads=1)
    three = quantify(chans, lab, threads=3)
    assert len(one) > 512 and three.attrs["quantify"]["threads"] == 3
    pd.testing.assert_frame_equal(one, three, check_exact=True)


@pytest.mark.parametrize(("chunks", "tile"), [(25, 32), (64, 16), ((40, 70), 100), (30, 4096)])
def test_chunked_dask_input_equals_whole_image(chunks, tile):
    lab = disk_scene((150, 170), 45, radius=(3.0, 14.0), seed=6)
    ch = np.random.default_rng(3).integers(0, 4096, lab.shape).astype(np.uint16)
    whole = quantify({"PRM1": ch}, lab, tile=4096)
    lazy = {"PRM1": da.from_array(ch, chunks=chunks)}
    got = quantify(lazy, da.from_array(lab, chunks=chunks), tile=tile, cache_labels_mb=0)
    pd.testing.assert_frame_equal(whole, got, check_exact=True)
    cached = quantify(lazy, da.from_array(lab, chunks=chunks), tile=tile)
    pd.testing.assert_frame_equal(whole, cached, check_exact=True)


def test_labels_pass_workers_find_the_same_boxes_and_cache():
    from napari_hrs.markers import _tiles

    lab = disk_scene((150, 170), 45, radius=(3.0, 14.0), seed=6)
    src = _tiles.Source.of(da.from_array(lab, chunks=20), "labels")
    grid = _tiles.tile_grid(src.shape, 20)  # 72 tiles, most cells on several
    runs = {}
    for w in (1, 2, 5):
        steps = []
        boxes, cached = _tiles.label_boxes(
            src, grid, step=lambda s=steps: s.append(1), check=lambda: None, cache_bytes=10**6,
            workers=w,
        )  # fmt: skip
        assert len(steps) == len(grid)
        runs[w] = (boxes, cached)
    ref, ref_cache = runs[1]
    assert len(ref) == len(np.unique(lab)) - 1
    np.testing.assert_array_equal(ref_cache, lab)
    for boxes, cached in runs.values():
        for f in ("ids", "y0", "y1", "x0", "x1"):
            np.testing.assert_array_equal(getattr(boxes, f), getattr(ref, f))
        np.testing.assert_array_equal(cached, lab)
    calls = []
    with pytest.raises(Cancelled):  # tiles still queued are dropped, the threads stop
        _tiles.label_boxes(
            src, grid, step=lambda: None, workers=3,
            check=lambda: calls.append(1) or (len(calls) > 5 and _raise_cancelled()),
        )  # fmt: skip


@pytest.mark.parametrize("ids_max", [None, 100_000])
def test_label_cache_renumbers_large_ids_and_changes_no_number(monkeypatch, ids_max):
    """Ids beyond 65535 (few cells) are cached as codes 1..N, here uint8 (the tiles stored before
    the first large id recoded); past the code table's limit the cache holds ids again. The
    table is that of the numpy labels either way."""
    from napari_hrs.markers import _tiles

    if ids_max is not None:
        monkeypatch.setattr(_tiles, "_CODE_IDS_MAX", ids_max)
    lab = disk_scene((150, 170), 45, radius=(3.0, 14.0), seed=6).astype(np.uint32)
    ids = np.unique(lab)[1:]
    # small ids in the top rows (stored raw first), large sparse ones below, one > 100_000
    big = np.where(np.arange(len(ids)) % 2 == 0, ids + 70_000, ids + 5)
    big[-1] = 150_007
    lut = np.zeros(int(ids.max()) + 1, np.uint32)
    lut[ids] = big
    top = lut[lab]
    top[:40][top[:40] > 0] = lab[:40][top[:40] > 0]  # cells in the top rows keep small ids
    ch = np.random.default_rng(3).integers(0, 4096, lab.shape).astype(np.uint16)
    want = quantify({"PRM1": ch}, top)
    lazy = da.from_array(top, chunks=30)
    src = _tiles.Source.of(lazy, "labels")
    boxes, cached = _tiles.label_boxes(src, _tiles.tile_grid(src.shape, 30), step=lambda: None,
                                       check=lambda: None, cache_bytes=10**6)  # fmt: skip
    assert cached is not None
    if ids_max is None:  # renumbered: codes 1..N, 2 bytes a pixel
        assert cached.dtype == np.uint8 and boxes.codes is not None  # 40 codes
        assert sorted(boxes.codes) == list(range(1, len(boxes) + 1))
        code_of = dict(zip(boxes.ids.tolist(), boxes.codes.tolist(), strict=True))
        recoded = np.vectorize(lambda v: code_of.get(v, 0))(top)
        np.testing.assert_array_equal(cached, recoded)
    else:  # an id past the table's limit: the ids themselves
        assert boxes.codes is None and cached.dtype == np.uint32
        np.testing.assert_array_equal(cached, top)
    got = quantify({"PRM1": da.from_array(ch, chunks=30)}, lazy, tile=30)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def _raise_cancelled() -> None:
    raise Cancelled("stop")


def test_cell_larger_than_tile_and_on_corners():
    lab = np.zeros((90, 90), np.int32)
    yy, xx = np.mgrid[:90, :90]
    lab[(yy - 45) ** 2 + (xx - 45) ** 2 < 30**2] = 7  # 60 px across, tiles of 16
    lab[0:5, 0:6] = 3  # touches the image corner: ring truncated
    lab[85:90, 80:90] = 4
    ch = (yy * 90 + xx).astype(np.float32)
    got = quantify({"c": ch}, lab, ring_px=(2, 4), tile=16)
    ref = naive_quantify({"c": ch}, lab, 2, 4)
    for col in ref.columns:
        np.testing.assert_allclose(got[col], ref[col], rtol=1e-12, err_msg=col)


def test_ring_excludes_neighbouring_cells():
    lab = np.zeros((40, 40), np.int32)
    lab[15:25, 10:20] = 1
    lab[15:25, 22:32] = 2  # 2 px away, well inside cell 1's ring
    ch = np.full(lab.shape, 100, np.uint16)
    ch[lab == 1] = 300
    ch[lab == 2] = 10000
    r = quantify({"PNA": ch}, lab, ring_px=(1, 6)).set_index("label_id")
    assert r.loc[1, "PNA_background"] == 100
    assert r.loc[1, "PNA_background_sd"] == 0
    assert r.loc[1, "PNA_mean_bgsub"] == 200
    assert r.loc[2, "PNA_background"] == 100


def test_cell_without_background_ring():
    lab = np.ones((8, 8), np.int32)
    lab[:, 4:] = 2
    t = quantify({"PRM1": np.full((8, 8), 7, np.uint8)}, lab)
    assert (t["ring_area_px"] == 0).all()
    assert t["PRM1_background"].isna().all() and t["PRM1_sbr"].isna().all()
    assert (t["PRM1_mean"] == 7).all()


def _variants(lab, ch):
    z = zarr.create_array(store={}, shape=ch.shape, chunks=(32, 32), dtype=ch.dtype)
    z[:] = ch
    zl = zarr.create_array(store={}, shape=lab.shape, chunks=(20, 50), dtype=lab.dtype)
    zl[:] = lab
    return {
        "numpy": (ch, lab),
        "dask": (da.from_array(ch, chunks=25), da.from_array(lab, chunks=30)),
        "zarr": (z, zl),
        "leading-1": (ch[None], lab[None, None]),
    }


@pytest.mark.parametrize("kind", ["numpy", "dask", "zarr", "leading-1"])
def test_array_kinds_give_the_same_table(kind):
    lab = disk_scene((70, 90), 15, seed=8)
    ch = np.random.default_rng(0).integers(0, 999, lab.shape).astype(np.uint16)
    ref = quantify({"PRM1": ch}, lab, tile=32)
    c, lb = _variants(lab, ch)[kind]
    pd.testing.assert_frame_equal(quantify({"PRM1": c}, lb, tile=32), ref, check_exact=True)


@pytest.mark.parametrize(
    ("dtype", "offset"),
    [(np.uint8, 0), (np.uint16, 0), (np.uint32, 0), (np.int64, 0), (np.uint64, 2**40), (bool, 0)],
)
def test_label_dtypes_and_huge_ids(dtype, offset):
    lab = disk_scene((60, 80), 12 if dtype is not bool else 1, seed=4)
    ch = np.random.default_rng(0).integers(0, 999, lab.shape).astype(np.uint16)
    ref = quantify({"c": ch}, lab)
    lab2 = np.where(lab > 0, lab.astype(np.uint64) + offset, 0).astype(dtype)
    got = quantify({"c": ch}, lab2, tile=32)
    assert list(got["label_id"]) == [int(i) + offset for i in ref["label_id"]]
    cols = [c for c in ref.columns if c != "label_id"]
    pd.testing.assert_frame_equal(got[cols], ref[cols], check_exact=True)


@pytest.mark.parametrize("top", [255, 256, 65535, 65536, 2**32 - 1, 2**32])
def test_streamed_label_type_boundaries(top):
    """Streamed regions keep labels in the narrowest type holding the ids: a cell on the image
    edge (next to the padding) with an id on either side of a type change is measured alike."""
    lab = disk_scene((60, 80), 12, seed=4)
    ch = np.random.default_rng(0).integers(0, 999, lab.shape).astype(np.uint16)
    ref = quantify({"c": ch}, lab)
    big = lab.astype(np.int64)
    edge = big[0][big[0] > 0][0]  # a cell on the image's edge, where the padding is
    big[big == edge] = top
    big[lab == top] = edge
    got = quantify({"c": ch}, big, tile=32)
    assert top in set(got["label_id"])
    back = {top: edge, edge: top}  # undo the swap, compare cell by cell
    got["label_id"] = [back.get(int(i), int(i)) for i in got["label_id"]]
    got = got.sort_values("label_id", ignore_index=True)
    pd.testing.assert_frame_equal(got, ref, check_exact=True)


def test_channels_of_different_types_are_measured_as_each_alone():
    """Channels of one dtype are measured in one kernel call; mixed dtypes in groups: each
    channel's numbers equal those of quantifying it alone."""
    lab = disk_scene((70, 90), 15, seed=8)
    rng = np.random.default_rng(1)
    chans = {
        "a": rng.integers(0, 4000, lab.shape).astype(np.uint16),
        "b": rng.normal(100, 20, lab.shape).astype(np.float32),
        "c": rng.integers(0, 4000, lab.shape).astype(np.uint16),
        "d": rng.integers(0, 2, lab.shape).astype(bool),
    }
    both = quantify(chans, lab, tile=32)
    for name, ch in chans.items():
        alone = quantify({name: ch}, lab, tile=32)
        cols = [c for c in alone.columns if c.startswith(f"{name}_")]
        pd.testing.assert_frame_equal(both[cols], alone[cols], check_exact=True)
    same = quantify({"a": chans["a"], "c": chans["c"]}, lab, tile=32)  # one (C, H, W) stack
    pd.testing.assert_frame_equal(same, both[same.columns], check_exact=True)


def test_no_cells_gives_an_empty_table_with_all_columns():
    t = quantify({"PRM1": np.zeros((20, 20), np.uint16)}, np.zeros((20, 20), np.int32))
    assert len(t) == 0
    assert "PRM1_background_sd" in t.columns and "ring_area_px" in t.columns


def test_progress_reports_every_tile_and_cancel_stops():
    lab = disk_scene((64, 64), 10, seed=1)
    ch = np.ones_like(lab, dtype=np.uint8)
    seen = []
    quantify({"c": ch}, lab, tile=16, progress=lambda d, n: seen.append((d, n)))
    done = [d for d, _ in seen]
    assert done == list(range(1, len(seen) + 1))  # one call per tile or region, in order
    assert seen[-1][0] == seen[-1][1] >= 32  # 16 label tiles + 16 channel tiles (+ big cells)
    with pytest.raises(Cancelled):
        quantify({"c": ch}, lab, tile=16, cancel=lambda: len(seen) > 40,
                 progress=lambda d, n: seen.append((d, n)))  # fmt: skip


@pytest.mark.parametrize(
    ("channels", "labels", "ring", "match"),
    [
        ({"PRM1": np.zeros((10, 12))}, np.zeros((10, 11), int), (2, 6), r"\(10, 12\).*\(10, 11\)"),
        ({"PRM1": np.zeros((10, 12))}, np.zeros((10, 12), float), (2, 6), "integer"),
        ({"PRM1": np.zeros((2, 10, 12))}, np.zeros((10, 12), int), (2, 6), "2-D"),
        ({"PRM1": np.zeros((10, 12))}, -np.ones((10, 12), int), (2, 6), ">= 0"),
        ({"PRM1": np.zeros((10, 12))}, np.zeros((10, 12), int), (2, 0), "width >= 1"),
    ],
)
def test_clear_errors(channels, labels, ring, match):
    with pytest.raises(ValueError, match=match):
        quantify(channels, labels, ring_px=ring)


def test_quantify_acquisition_uses_roles_and_pixel_size():
    from napari_hrs.io import Acquisition

    lab = disk_scene((50, 60), 8, seed=2)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 500, (3, 50, 60)).astype(np.uint16)
    acq = Acquisition(
        path="mem.zarr", levels=[data], channel_names=["BF", "Cy5", "FITC"],
        pixel_size_um=0.25, roles={"brightfield": 0, "PRM1": 1, "PNA": 2},
    )  # fmt: skip
    t = quantify_acquisition(acq, lab, tile=32)
    ref = quantify({"PRM1": data[1], "PNA": data[2]}, lab, pixel_size_um=0.25)
    pd.testing.assert_frame_equal(t, ref, check_exact=True)
    acq.roles = {"brightfield": 0}
    acq.channel_names = ["BF", "a", "b"]
    with pytest.raises(ChannelRoleError, match="BF"):
        quantify_acquisition(acq, lab)
    with pytest.raises(AcquisitionError):
        quantify_acquisition(acq, lab[:-1], markers=("a",))


def test_no_channel_gives_the_geometry_alone():
    lab = disk_scene((70, 90), 15, seed=8)
    ch = np.random.default_rng(0).integers(0, 999, lab.shape).astype(np.uint16)
    full = quantify({"PRM1": ch}, lab, tile=32)
    geometry = quantify({}, lab, tile=32)
    assert not any(c.startswith("PRM1_") for c in geometry.columns)
    pd.testing.assert_frame_equal(geometry, full[geometry.columns], check_exact=True)


# --------------------------------------------------------------------------- given boxes
def _boxes_scene():
    lab = disk_scene((150, 170), 45, radius=(3.0, 14.0), seed=5)
    lab[60:75, 58:100] = 999  # a wide cell across tile borders
    rng = np.random.default_rng(2)
    chans = {
        "PRM1": rng.integers(0, 4096, lab.shape).astype(np.uint16),
        "PNA": rng.normal(100, 20, lab.shape).astype(np.float32),
    }
    return lab, chans


def _as_hints(table: pd.DataFrame, jitter: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A detection-table-like box per cell: the exact box, each edge moved by up to
    ``jitter`` pixels outwards or inwards (fractional, as a detector's boxes are)."""
    rng = np.random.default_rng(seed)
    out = pd.DataFrame({"id": table["label_id"]})
    for c in ("x0", "y0", "x1", "y1"):
        out[c] = table[f"bbox_{c}"] + rng.uniform(-jitter, jitter, len(table))
    return out


@pytest.mark.parametrize("tile", [32, 64, 4096])
def test_given_boxes_skip_the_labels_pass_and_change_nothing(tile, monkeypatch):
    """Boxes a detector would give (fractional, within a pixel of the cell) skip pass 1: the
    labels are read once, the table is the same to the last bit."""
    from napari_hrs.markers import _tiles

    lab, chans = _boxes_scene()
    ref = quantify(chans, lab, tile=tile)
    hints = _as_hints(ref, jitter=0.9)

    def no_pass_1(*args, **kwargs):
        raise AssertionError("the labels pass ran although boxes were given")

    with monkeypatch.context() as m, warnings.catch_warnings():
        m.setattr(_tiles, "label_boxes", no_pass_1)
        warnings.simplefilter("error")  # no fallback
        got = quantify(chans, da.from_array(lab, chunks=40), tile=tile, boxes=hints)
    assert got.attrs["quantify"]["boxes_given"]
    pd.testing.assert_frame_equal(ref, got, check_exact=True)
    # larger boxes (any box holding the cell will do) and a table with an id without pixels
    wide = _as_hints(ref).assign(x0=lambda d: d.x0 - 5, y1=lambda d: d.y1 + 7)
    wide.loc[len(wide)] = [5000, 10, 10, 20, 20]
    got = quantify(chans, lab, tile=tile, boxes=wide.rename(columns={"id": "label_id"}))
    pd.testing.assert_frame_equal(ref, got, check_exact=True)


@pytest.mark.parametrize("break_it", ["box too small", "id missing", "larger id"])
def test_boxes_that_miss_pixels_are_measured_again(break_it):
    lab, chans = _boxes_scene()
    ref = quantify(chans, lab, tile=64)
    hints = _as_hints(ref)
    if break_it == "box too small":
        i = int(np.flatnonzero(ref["label_id"] == 999)[0])
        hints.loc[i, "x1"] -= 6
    elif break_it == "id missing":
        hints = hints[hints["id"] != 999]
    else:
        lab = lab.copy()
        lab[lab == 999] = 70_000  # over the largest id given: must not wrap onto another id
        ref = quantify(chans, lab, tile=64)
    with pytest.warns(UserWarning, match="measuring again with the labels pass"):
        got = quantify(chans, lab, tile=64, boxes=hints)
    assert not got.attrs["quantify"]["boxes_given"]
    pd.testing.assert_frame_equal(ref, got, check_exact=True)


@pytest.mark.parametrize(
    ("boxes", "match"),
    [
        (pd.DataFrame({"id": [1], "x0": [0], "y0": [0], "x1": [5]}), "missing column"),
        (pd.DataFrame({"id": [1, 1], "x0": 0, "y0": 0, "x1": 5, "y1": 5}), "once"),
        (pd.DataFrame({"id": [0], "x0": 0, "y0": 0, "x1": 5, "y1": 5}), ">= 1"),
        (pd.DataFrame({"id": [1], "x0": np.nan, "y0": 0, "x1": 5, "y1": 5}), "finite"),
    ],
)
def test_bad_boxes_are_refused(boxes, match):
    lab, chans = _boxes_scene()
    with pytest.raises(ValueError, match=match):
        quantify(chans, lab, boxes=boxes)


def test_boxes_check_sees_cells_in_tiles_no_box_needs():
    """A labelled cell far from every given box (in tiles no crop needs) is not missed."""
    lab = np.zeros((256, 256), np.int32)
    lab[10:20, 10:20] = 1
    lab[200:210, 220:230] = 2  # only the labels of its tile would tell
    ch = np.arange(lab.size, dtype=np.uint16).reshape(lab.shape)
    ref = quantify({"c": ch}, lab, tile=64)
    only_1 = pd.DataFrame({"id": [1], "x0": [10.0], "y0": [10.0], "x1": [20.0], "y1": [20.0]})
    with pytest.warns(UserWarning, match="measuring again"):
        got = quantify({"c": ch}, lab, tile=64, boxes=only_1)
    pd.testing.assert_frame_equal(ref, got, check_exact=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = quantify({"c": ch[:100, :100]}, lab[:100, :100], tile=64, boxes=only_1)
    assert list(got["label_id"]) == [1] and got.attrs["quantify"]["boxes_given"]
