"""Tiles cut to their data (napari_hrs.engine.tile_io): padding and NaN regions are not fed to
the network, all-blank tiles are not predicted, and what is found maps back to image pixels."""

from __future__ import annotations

import numpy as np
import pytest

from _engine_fakes import FakeDiscModel, disc_image, make_acquisition, match_labels, random_discs
from napari_hrs.engine.detect import detect
from napari_hrs.engine.intensity import IntensityRange, estimate_range
from napari_hrs.engine.tile_io import TileReader, content_window
from napari_hrs.engine.tiling import TileGrid


def test_content_window():
    m = np.zeros((200, 300), bool)
    assert content_window(m, margin=8, min_side=32) is None
    m[50:60, 100:180] = True
    assert content_window(m, margin=8, min_side=32) == (39, 92, 71, 188)  # 10 rows grown to 32
    assert content_window(m, margin=0, min_side=1) == (50, 100, 60, 180)
    m[:] = False
    m[0:5, 290:300] = True  # in a corner: grown against the border, inside the mask
    assert content_window(m, margin=4, min_side=40) == (0, 260, 40, 300)
    m[:] = False
    m[5:195, 5:295] = True  # nearly all of it: the whole mask
    assert content_window(m, margin=2, min_side=32) == (0, 0, 200, 300)


def test_no_data_mask():
    rng = IntensityRange(0.0, 100.0, padding=0.0)
    assert rng.no_data(np.full((4, 4), 7, np.uint16)) is None
    img = np.array([[0, 5], [7, 0]], np.uint16)
    np.testing.assert_array_equal(rng.no_data(img), [[True, False], [False, True]])
    f = np.array([[np.nan, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(IntensityRange(0.0, 1.0).no_data(f), [[True, False], [False, False]])
    assert IntensityRange(0.0, 1.0).no_data(np.ones((3, 3), np.uint8)) is None


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_reader_cuts_a_tile_to_its_data(scale):
    img = np.zeros((256, 512), np.uint16)  # padding ...
    img[:, :96] = np.random.default_rng(0).integers(500, 4000, (256, 96))  # ... beside data
    rng = estimate_range(img)
    assert rng.padding == 0.0
    grid = TileGrid(img.shape, 256, 16)
    reader = TileReader(make_acquisition(img).channel("brightfield"), rng, scale)
    loaded = {lt.tile.index: lt for lt in reader.load(list(grid))}
    margin = round(16 / scale)
    for lt in loaded.values():
        t = lt.tile
        if t.x0 >= 96 + margin:  # all padding: not predicted
            assert lt.image is None
            continue
        y0, x0, y1, x1 = lt.window
        assert (y0, x0, y1) == (t.y0, t.x0, t.y1)  # rows all hold data
        # cut at the data + margin (or the smallest window), never cutting data off
        assert x1 == max(min(t.x1, 96 + margin), min(t.x1, x0 + round(64 / scale))) or \
            (x0, x1) == (t.x0, t.x1)  # fmt: skip
        assert x0 == t.x0 and not img[y0:y1, x1 : t.x1].any()
        want = rng.apply(img[y0:y1, x0:x1])
        if scale == 1.0:
            np.testing.assert_array_equal(lt.image, want)
        else:
            assert lt.image.shape == (round((y1 - y0) * scale), round((x1 - x0) * scale))
    assert any(lt.image is None for lt in loaded.values())
    assert any(lt.window[3] - lt.window[1] < lt.tile.shape[1] for lt in loaded.values()
               if lt.image is not None)  # fmt: skip


@pytest.mark.parametrize("pixel_size", [0.5, 0.25])
def test_a_field_in_padding_gives_the_field_alone_result(tmp_path, pixel_size):
    """The same discs, alone and in the middle of a canvas of zeros five times as large
    (stitched-mosaic padding): the same cells, at the same place in the field; the tiles that
    hold only padding are not predicted and the model never sees a whole padded tile."""
    shape = (300, 340)
    discs = random_discs(shape, 16, seed=5, r=(9.0, 13.0))
    field, gt = disc_image(shape, discs, seed=5, background=2000.0, dark=600.0)
    canvas = np.zeros((5 * shape[0], 5 * shape[1]), field.dtype)
    oy, ox = 2 * shape[0], 2 * shape[1]
    canvas[oy : oy + shape[0], ox : ox + shape[1]] = field
    alone = detect(make_acquisition(field, pixel_size_um=pixel_size), FakeDiscModel(), tile=256,
                   out=tmp_path / "alone.zarr")  # fmt: skip
    model = FakeDiscModel()
    framed = detect(make_acquisition(canvas, pixel_size_um=pixel_size), model, tile=256,
                    out=tmp_path / "framed.zarr")  # fmt: skip
    assert framed.metadata["parameters"]["intensity"]["padding"] == 0.0
    assert framed.metadata["stats"]["tiles_without_data"] > 0
    tile_model_px = 256
    assert any(c[2] < tile_model_px or c[3] < tile_model_px for c in model.calls)
    assert len(model.calls) < framed.metadata["tiles_total"]
    assert len(alone.table) == len(framed.table) == len(discs)
    inner = framed.labels.compute()[oy : oy + shape[0], ox : ox + shape[1]]
    assert set(match_labels(gt, inner).values()) == set(framed.table["id"])
    a = alone.table.sort_values(["y0", "x0"])[["x0", "y0", "x1", "y1"]].to_numpy()
    b = framed.table.sort_values(["y0", "x0"])[["x0", "y0", "x1", "y1"]].to_numpy()
    scale = framed.metadata["parameters"]["scale"]  # resampled: the sampling phase differs
    np.testing.assert_allclose(b - [ox, oy, ox, oy], a, atol=1.0 / min(scale, 1.0))


def test_an_all_blank_image_predicts_nothing(tmp_path):
    img = np.full((300, 300), np.nan, np.float32)
    img[0, 0] = 1.0
    model = FakeDiscModel()
    res = detect(make_acquisition(img), model, tile=128, out=tmp_path / "b.zarr")
    assert len(res.table) == 0 and res.complete
    assert res.metadata["stats"]["tiles_without_data"] == res.metadata["tiles_total"] - 1
