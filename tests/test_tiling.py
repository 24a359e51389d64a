"""Tile grid geometry, ownership and the cross-tile merge (napari_hrs.engine.tiling)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hrs.engine.masks import paste_mask
from napari_hrs.engine.tiling import Instance, Stitcher, TileGrid, axis_starts


@pytest.mark.parametrize(
    "length, tile, overlap",
    [(100, 256, 32), (256, 256, 32), (257, 256, 32), (1000, 256, 64), (4096, 1024, 96),
     (777, 128, 127), (5000, 300, 0)],
)  # fmt: skip
def test_axis_starts_cover_with_overlap(length, tile, overlap):
    starts = axis_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts == sorted(set(starts))
    ends = [min(s + tile, length) for s in starts]
    assert ends[-1] == length
    if length >= tile:  # full-size tiles everywhere
        assert all(e - s == tile for s, e in zip(starts, ends, strict=True))
    for e0, s1 in zip(ends, starts[1:], strict=False):
        assert e0 - s1 >= overlap


@pytest.mark.parametrize("tile, overlap", [(0, 0), (64, 64), (64, 100), (64, -1)])
def test_axis_starts_rejects_bad_sizes(tile, overlap):
    with pytest.raises(ValueError, match="tile"):
        axis_starts(500, tile, overlap)


@pytest.mark.parametrize(
    "shape, tile, overlap",
    [((100, 120), 256, 32), ((300, 500), 128, 40), ((513, 257), 256, 48), ((1000, 64), 64, 16)],
)
def test_cores_partition_the_image_and_tiles_cover_it(shape, tile, overlap):
    grid = TileGrid(shape, tile, overlap)
    owner = np.zeros(shape, np.int32)
    covered = np.zeros(shape, np.int32)
    for t in grid:
        cy0, cy1, cx0, cx1 = t.core
        owner[cy0:cy1, cx0:cx1] += 1
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
        # the core is inside the tile, at least half the overlap from every inner edge
        assert t.y0 <= cy0 < cy1 <= t.y1 and t.x0 <= cx0 < cx1 <= t.x1
        if t.y0 > 0:
            assert cy0 - t.y0 >= overlap // 2
        if t.y1 < shape[0]:
            assert t.y1 - cy1 >= overlap // 2
        if t.x1 < shape[1]:
            assert t.x1 - cx1 >= overlap // 2
    assert (owner == 1).all()
    assert (covered >= 1).all()
    assert len(grid) == grid.n_rows * grid.n_cols


def test_owner_matches_cores():
    grid = TileGrid((700, 900), 256, 64)
    rng = np.random.default_rng(0)
    for y, x in rng.uniform(0, [700, 900], size=(200, 2)):
        t = grid.owner(y, x)
        assert t.owns(np.array(y), np.array(x))
        assert sum(bool(o.owns(np.array(y), np.array(x))) for o in grid) == 1


def _disc_instance(cy, cx, r, score, shift=0.0, cls=0):
    box = np.array([cx - r + shift, cy - r, cx + r + shift, cy + r], np.float64)
    yy, xx = np.mgrid[:28, :28]
    probs = (((yy + 0.5) / 28 - 0.5) ** 2 + ((xx + 0.5) / 28 - 0.5) ** 2 <= 0.25).astype(np.float32)
    mask, off = paste_mask(probs, box)
    return Instance(box, score, cls, mask, off)


def test_stitcher_merges_duplicates_across_a_core_border():
    grid = TileGrid((200, 400), 256, 80)  # one row, two tiles; core border near x = 200
    assert grid.n_cols == 2
    border = grid.core_x[1]
    left, right = grid.tiles
    # the same cell, seen by each tile with its centre 2 px to that tile's side of the border
    a = _disc_instance(100, border - 2, 12, 0.90)
    b = _disc_instance(100, border + 2, 12, 0.80)
    far = _disc_instance(50, 330, 10, 0.70)  # owned by the right tile only
    cut = _disc_instance(50, 330, 10, 0.99)  # the left tile's view of it is not its own
    st = Stitcher(grid, merge_iou=0.5)
    st.add(left, [a, cut])
    st.add(right, [b, far])
    assert st.n_not_owned == 1
    assert st.end_row(0) == []  # row 0 is final only when the image ends
    final = st.flush()
    assert [i.score for i in final] == [0.90, 0.70]
    assert st.n_merged == 1


def test_stitcher_keeps_distinct_cells_and_one_instance_per_cell_in_a_tile():
    grid = TileGrid((200, 400), 256, 80)
    border = grid.core_x[1]
    left, right = grid.tiles
    a = _disc_instance(100, border - 14, 12, 0.9)  # two touching cells across the border
    b = _disc_instance(100, border + 14, 12, 0.8)
    c = _disc_instance(100, border - 30, 12, 0.5)  # overlaps a a little: another cell
    d = _disc_instance(101, border - 15, 12, 0.7, cls=1)  # a again, as another class
    st = Stitcher(grid)
    st.add(left, [a, c, d])
    st.add(right, [b])
    st.end_row(0)
    final = st.flush()
    assert [i.score for i in final] == [0.9, 0.5, 0.8]
    assert st.n_merged == 0 and st.n_suppressed == 1


def test_stitcher_holds_two_rows_at_most():
    grid = TileGrid((2000, 300), 256, 64)
    st = Stitcher(grid)
    released = 0
    for r in range(grid.n_rows):
        for t in grid.row(r):
            cy, cx = (t.core[0] + t.core[1]) / 2, (t.core[2] + t.core[3]) / 2
            st.add(t, [_disc_instance(cy, cx, 8, 0.9)])
        released += len(st.end_row(r))
        assert st.pending_tiles <= 2 * grid.n_cols
    released += len(st.flush())
    assert released == len(grid)
    assert st.max_pending_tiles == 2 * grid.n_cols
