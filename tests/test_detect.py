"""Tiled whole-image detection (napari_hrs.engine.detect) with the fake disc model."""

from __future__ import annotations

import numpy as np
import pytest

from _engine_fakes import (
    FakeDiscModel,
    disc_image,
    make_acquisition,
    match_labels,
    random_discs,
)
from napari_hrs.engine.detect import detect, intensity_range
from napari_hrs.engine.predictor import Predictor
from napari_hrs.engine.results import TABLE_COLUMNS, read_detection_result
from napari_hrs.errors import AcquisitionError, ChannelRoleError

SHAPE = (520, 600)


@pytest.fixture(scope="module")
def scene():
    discs = random_discs(SHAPE, 45, seed=7)
    img, gt = disc_image(SHAPE, discs, seed=7)
    return img, gt, discs


def _same_segmentation(a: np.ndarray, b: np.ndarray) -> None:
    """Equal label images up to a renumbering of the ids."""
    m = match_labels(a, b)
    assert len(set(m.values())) == len(m) and 0 not in m.values()
    relabel = np.zeros(a.max() + 1, b.dtype)
    relabel[list(m)] = list(m.values())
    np.testing.assert_array_equal(relabel[a], b)


def test_tiled_equals_single_tile(scene, tmp_path):
    img, gt, discs = scene
    acq = make_acquisition(img)
    one = detect(acq, FakeDiscModel(), tile=1024, out=tmp_path / "one.zarr")
    tiled = detect(acq, FakeDiscModel(), tile=160, batch=3, out=tmp_path / "tiled.zarr")
    assert one.metadata["tiles_total"] == 1 and tiled.metadata["tiles_total"] >= 16
    assert tiled.metadata["stats"]["not_owned"] > 0  # cells cut by tile edges were dropped
    assert len(one.table) == len(tiled.table) == len(discs)
    _same_segmentation(one.labels.compute(), tiled.labels.compute())
    # the single tile run is the Predictor on the whole (globally normalised) image
    x = intensity_range(acq).apply(img)
    dets = Predictor(FakeDiscModel()).predict([x])[0]
    np.testing.assert_allclose(np.sort(one.table[["x0", "y0", "x1", "y1"]].to_numpy(), axis=0),
                               np.sort(dets.boxes, axis=0), atol=1e-3)  # fmt: skip
    # and it finds the ground truth
    labels = one.labels.compute()
    ious = [((gt == g) & (labels == r)).sum() / ((gt == g) | (labels == r)).sum()
            for g, r in match_labels(gt, labels).items()]  # fmt: skip
    assert len(ious) == len(discs) and min(ious) > 0.85


@pytest.mark.parametrize("axis", ["x", "y"])
def test_cell_on_a_tile_border_found_once_with_its_mask(tmp_path, axis):
    acq0 = make_acquisition(np.zeros((400, 400), np.uint16))
    probe = detect(acq0, FakeDiscModel(), tile=200, overlap=72, out=tmp_path / "p.zarr")
    from napari_hrs.engine.tiling import TileGrid

    grid = TileGrid((400, 400), 200, 72)
    assert probe.metadata["grid"] == [grid.n_rows, grid.n_cols]
    edge = grid.xs[1] if axis == "x" else grid.ys[1]  # the left / top edge of the second tile
    border = grid.core_x[1] if axis == "x" else grid.core_y[1]
    discs = [(200, edge, 11, 0), (200, border + 0.5, 11, 1)]
    if axis == "y":
        discs = [(e, c, r, k) for c, e, r, k in discs]
    img, gt = disc_image((400, 400), discs)
    res = detect(make_acquisition(img), FakeDiscModel(), tile=200, overlap=72,
                 out=tmp_path / "r.zarr")  # fmt: skip
    labels = res.labels.compute()
    assert len(res.table) == 2
    for g, r in match_labels(gt, labels).items():
        iou = ((gt == g) & (labels == r)).sum() / ((gt == g) | (labels == r)).sum()
        assert iou > 0.9


def test_cross_tile_duplicates_are_merged(tmp_path):
    """The jittered fake sees cells near a core border on both sides of it: both owned."""
    from napari_hrs.engine.tiling import TileGrid

    grid = TileGrid((300, 500), 256, 72)
    border = grid.core_x[1]
    discs = [(60, border - 0.5, 10, 0), (150, border + 1.0, 12, 1), (240, border, 9, 0)]
    img, gt = disc_image((300, 500), discs)
    acq = make_acquisition(img)
    kw = dict(tile=256, overlap=72)
    merged = detect(acq, FakeDiscModel(jitter=1.5), out=tmp_path / "m.zarr", **kw)
    assert len(merged.table) == 3
    assert merged.metadata["stats"]["merged_duplicates"] == 3
    kept = detect(acq, FakeDiscModel(jitter=1.5), out=tmp_path / "k.zarr", merge_iou=1.01, **kw)
    assert len(kept.table) == 6  # what merging prevents


def test_ids_unique_contiguous_deterministic(scene, tmp_path):
    img, _, discs = scene
    acq = make_acquisition(img)
    a = detect(acq, FakeDiscModel(), tile=192, batch=2, out=tmp_path / "a.zarr")
    b = detect(acq, FakeDiscModel(), tile=192, batch=5, out=tmp_path / "b.zarr")
    ids = a.table["id"].to_numpy()
    np.testing.assert_array_equal(ids, np.arange(1, len(discs) + 1))
    labels = a.labels.compute()
    assert labels.dtype == np.uint32
    assert set(np.unique(labels)) - {0} == set(ids)
    assert list(a.table.columns) == list(TABLE_COLUMNS)
    np.testing.assert_array_equal(labels, b.labels.compute())
    assert a.table.equals(b.table)
    # the table describes the labels
    for row in a.table.itertuples():
        ys, xs = np.nonzero(labels == row.id)
        assert row.area_px == ys.size
        assert row.centroid_y_px == pytest.approx(ys.mean(), abs=1e-3)
        assert row.area_um2 == pytest.approx(ys.size * 0.25, rel=1e-3)
        assert row.centroid_x_um == pytest.approx(xs.mean() * 0.5, abs=1e-3)
        assert row.class_name == ("hRS", "RBC")[row.class_id]


@pytest.mark.parametrize("pixel_size, scale", [(0.25, 0.5), (1.0, 2.0), (0.51, 1.0), (None, 1.0)])
def test_resampling_maps_boxes_back(tmp_path, pixel_size, scale):
    shape = (360, 400)
    discs = random_discs(shape, 14, seed=11, r=(9.0, 14.0))
    img, gt = disc_image(shape, discs, seed=11)
    res = detect(make_acquisition(img, pixel_size_um=pixel_size), FakeDiscModel(), tile=256,
                 out=tmp_path / "r.zarr")  # fmt: skip
    params = res.metadata["parameters"]
    assert params["scale"] == pytest.approx(scale)
    assert params["tile_image_px"] == round(256 / scale)
    assert len(res.table) == len(discs)
    labels = res.labels.compute()
    for g, r in match_labels(gt, labels).items():
        cy, cx, rad, _ = discs[g - 1]
        row = res.table.set_index("id").loc[r]
        assert row.centroid_y_px + 0.5 == pytest.approx(cy, abs=1.0)
        assert row.centroid_x_px + 0.5 == pytest.approx(cx, abs=1.0)
        assert (row.x0 + row.x1) / 2 == pytest.approx(cx, abs=1.5)
        assert row.x1 - row.x0 == pytest.approx(2 * rad, abs=2.5 / min(scale, 1.0))
        assert row.area_px == pytest.approx(np.pi * rad**2, rel=0.2)


def test_cancel_leaves_an_incomplete_valid_result(scene, tmp_path):
    img, _, _ = scene
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2  # two batches run

    out = tmp_path / "c.zarr"
    res = detect(make_acquisition(img), FakeDiscModel(), tile=160, batch=2, out=out,
                 cancel=cancel)  # fmt: skip
    assert res.status == "incomplete" and not res.complete
    assert res.metadata["tiles_done"] == 4 < res.metadata["tiles_total"]
    again = read_detection_result(out)
    labels = again.labels.compute()
    assert set(np.unique(labels)) - {0} == set(again.table["id"])
    assert 0 < len(again.table) < 45
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]  # no partial store left


def test_progress_counts_increase(scene, tmp_path):
    img, _, _ = scene
    seen = []
    res = detect(make_acquisition(img), FakeDiscModel(), tile=160, batch=3,
                 out=tmp_path / "p.zarr", progress=lambda d, t: seen.append((d, t)))  # fmt: skip
    total = res.metadata["tiles_total"]
    assert [t for _, t in seen] == [total] * len(seen)
    done = [d for d, _ in seen]
    assert done == sorted(set(done)) and done[-1] == total and done[0] == 3


def test_memory_is_bounded_independently_of_image_size(tmp_path):
    stats = []
    for k, height in enumerate((300, 1200)):
        img, _ = disc_image((height, 400), random_discs((height, 400), height // 12, seed=k))
        res = detect(make_acquisition(img), FakeDiscModel(), tile=128, batch=2,
                     out=tmp_path / f"{height}.zarr", chunk=128)  # fmt: skip
        cols = res.metadata["grid"][1]
        s = res.metadata["stats"]
        assert s["max_tiles_in_memory"] <= 2 * 2  # the batch running + the batch being read
        assert s["max_pending_tiles"] <= 2 * cols  # a band of two tile rows
        stats.append((s["max_tiles_in_memory"], s["max_pending_tiles"]))
        assert s["max_pending_instances"] < len(res.table) or height == 300
    assert res.metadata["grid"][0] >= 10
    assert stats[0] == stats[1]


def test_writes_labels_into_an_ome_zarr(tmp_path):
    import zarr

    from napari_hrs.io import open_acquisition, read_labels

    img, gt = disc_image((256, 300), random_discs((256, 300), 8, seed=2))
    path = tmp_path / "img.ome.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.create_array("0", data=img[None], chunks=(1, 128, 128))
    unit = {"type": "space", "unit": "micrometer"}
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", **unit}, {"name": "x", **unit}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.5, 0.5]}]}],
    }], "omero": {"channels": [{"label": "BF"}]}}  # fmt: skip
    before = (path / "0").stat().st_mtime_ns, np.asarray(root["0"]).copy()
    acq = open_acquisition(path)
    res = detect(acq, FakeDiscModel(), tile=128)
    assert res.path == path / "labels" / "detections"
    assert len(res.table) == 8
    assert np.array_equal(np.asarray(zarr.open_group(str(path))["0"]), before[1])
    labels = read_labels(open_acquisition(path))
    assert list(labels) == ["detections"]
    np.testing.assert_array_equal(labels["detections"].levels[0].compute(), res.labels.compute())
    assert read_detection_result(path).path == res.path
    with pytest.raises(FileExistsError, match="overwrite"):
        detect(acq, FakeDiscModel(), tile=128)
    again = detect(acq, FakeDiscModel(), tile=128, overwrite=True, score_threshold=0.9)
    assert len(again.table) < 8 and list(read_labels(open_acquisition(path))) == ["detections"]


def test_errors_and_cleanup(scene, tmp_path):
    img, _, _ = scene
    acq = make_acquisition(img)
    with pytest.raises(AcquisitionError, match="out="):
        detect(acq, FakeDiscModel())
    with pytest.raises(ValueError, match="overlap"):
        detect(acq, FakeDiscModel(), tile=64, overlap=64, out=tmp_path / "x.zarr")
    from napari_hrs.io import Acquisition

    fluo = Acquisition(path="mem", levels=[img[None]], channel_names=["PNA"], roles={"PNA": 0})
    with pytest.raises(ChannelRoleError):
        detect(fluo, FakeDiscModel(), out=tmp_path / "x.zarr")

    class Boom(FakeDiscModel):
        def inference(self, images, **kw):
            if len(self.calls) >= 2:
                raise RuntimeError("boom")
            return super().inference(images, **kw)

    with pytest.raises(RuntimeError, match="boom"):
        detect(acq, Boom(), tile=128, batch=1, out=tmp_path / "b.zarr")
    assert list(tmp_path.iterdir()) == []  # neither the result nor a partial store
    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(FileExistsError):
        detect(acq, FakeDiscModel(), out=tmp_path / "exists.zarr")


def test_small_overlap_warns_and_module_is_callable(scene, tmp_path):
    import napari_hrs.engine.detect as detect_module

    img, _, _ = scene
    with pytest.warns(UserWarning, match="largest object"):
        res = detect_module(make_acquisition(img), FakeDiscModel(), tile=256, overlap=16,
                            out=tmp_path / "w.zarr")  # fmt: skip
    assert res.metadata["parameters"]["overlap"] == 16


@pytest.mark.parametrize("levels", [1, 3])
def test_one_intensity_range_from_a_low_resolution_sample(scene, levels):
    from napari_hrs.engine.intensity import estimate_range

    img, _, _ = scene
    acq = make_acquisition(img, levels=levels)
    full = estimate_range(img)
    # a pyramid level when one is small enough, else a grid of windows: never the whole image
    for max_pixels in (10_000_000, 20_000):
        rng = intensity_range(acq, max_pixels=max_pixels)
        assert rng.low == pytest.approx(full.low, rel=0.05)
        assert rng.high == pytest.approx(full.high, rel=0.05)


def test_result_table_agrees_with_the_painted_labels(tmp_path):
    """Overlapping instances: the higher score owns the shared pixels, ``area_px`` counts the
    pixels each owns, and one hidden entirely under a higher-scoring one leaves the table."""
    from napari_hrs.engine.results import ResultWriter, read_detection_result
    from napari_hrs.engine.tiling import Instance

    def inst(y0, x0, h, w, score):
        box = np.array([x0, y0, x0 + w, y0 + h], float)
        return Instance(box, score, 0, np.ones((h, w), bool), (y0, x0))

    writer = ResultWriter(tmp_path / "r.zarr", (64, 64), class_names=["hRS"], chunk=32,
                          pixel_size_um=0.5)  # fmt: skip
    big, partly, hidden = inst(10, 10, 20, 20, 0.9), inst(25, 25, 10, 10, 0.8), inst(12, 12, 5, 5, 0.7)
    writer.add([big, partly, hidden])
    writer.finish("complete")
    res = read_detection_result(tmp_path / "r.zarr")
    labels = np.asarray(res.labels)
    table = res.table.set_index("id")
    assert set(table.index) == set(np.unique(labels[labels > 0])) == {big.id, partly.id}
    assert table.loc[big.id, "area_px"] == 400
    assert table.loc[partly.id, "area_px"] == 100 - 25  # 5 x 5 under the big one
    assert table.loc[partly.id, "area_um2"] == pytest.approx(75 * 0.25)
    assert res.metadata["n_hidden"] == 1 and res.metadata["n_instances"] == 2


def test_tiles_that_hit_the_detection_cap_are_reported(scene, tmp_path):
    img, _, discs = scene
    acq = make_acquisition(img)
    full = detect(acq, FakeDiscModel(), tile=1024, out=tmp_path / "full.zarr")
    assert full.metadata["stats"]["tiles_at_detection_cap"] == 0
    with pytest.warns(UserWarning, match="1 of 1 tiles returned as many detections as the cap"):
        capped = detect(acq, FakeDiscModel(), tile=1024, max_detections=10,
                        out=tmp_path / "capped.zarr")  # fmt: skip
    assert len(capped.table) == 10 < len(discs)
    assert capped.metadata["stats"]["tiles_at_detection_cap"] == 1


def test_a_truncated_file_is_reported_with_its_name_and_leaves_no_result(scene, tmp_path):
    import tifffile

    from napari_hrs.io import open_acquisition

    img, _, _ = scene
    path = tmp_path / "cut short.tif"
    tifffile.imwrite(path, img.astype(np.uint16), rowsperstrip=16)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # the header survives, most strips do not
    acq = open_acquisition(path, channels={"brightfield": 0})
    with pytest.raises(
        AcquisitionError, match=r"cut short\.tif: cannot read the brightfield pixels"
    ):
        detect(acq, FakeDiscModel(), tile=128, out=tmp_path / "r.zarr")
    assert not (tmp_path / "r.zarr").exists()


def test_output_never_replaces_the_input_or_a_folder_that_is_not_a_result(scene, tmp_path):
    import tifffile

    from napari_hrs.io import open_acquisition

    img, _, _ = scene
    folder = tmp_path / "slides"
    folder.mkdir()
    path = folder / "slide.tif"
    tifffile.imwrite(path, img.astype(np.uint16))
    data = path.read_bytes()
    acq = open_acquisition(path, channels={"brightfield": 0})
    for out in (path, folder, tmp_path):
        with pytest.raises(AcquisitionError, match="is the input image"):
            detect(acq, FakeDiscModel(), out=out, overwrite=True)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a napari-hrs detection result"):
        detect(acq, FakeDiscModel(), out=user, overwrite=True)
    with pytest.raises(AcquisitionError, match="one path component"):
        detect(acq, FakeDiscModel(), name="../0")
    assert path.read_bytes() == data and (user / "notes.txt").read_text() == "keep"
    first = detect(acq, FakeDiscModel(), out=tmp_path / "r.zarr")
    again = detect(acq, FakeDiscModel(), out=tmp_path / "r.zarr", overwrite=True)  # a result
    assert len(again.table) == len(first.table) > 0
