"""The npe2 reader: recognising paths and turning an Acquisition into napari layer data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from _io_helpers import NAMES, PIXEL_UM, build, count_reads, make_data, write_ngff
from napari_hrs._napari.reader import acquisition_layers, contrast_limits, get_reader
from napari_hrs.io import open_acquisition


@pytest.mark.parametrize("kind", ["ngff-0.4", "ngff-0.5", "zarr-v2-array", "ome-tiff", "tiff"])
def test_get_reader_accepts_our_formats(kind, tmp_path):
    case = build(kind, tmp_path)
    assert callable(get_reader(str(case.path)))
    assert callable(get_reader([str(case.path), str(case.path)]))


@pytest.mark.parametrize("kind", ["missing", "txt", "plain-dir", "png", "mixed-list", "empty-list"])
def test_get_reader_declines_other_paths(kind, tmp_path):
    good = build("ome-tiff", tmp_path).path
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    path = {
        "missing": str(tmp_path / "nope.zarr"),
        "txt": str(tmp_path / "a.txt"),
        "plain-dir": str(tmp_path / "folder"),
        "png": str(tmp_path / "a.png"),
        "mixed-list": [str(good), str(tmp_path / "a.txt")],
        "empty-list": [],
    }[kind]
    assert get_reader(path) is None


def test_layers_of_a_multiscale_ome_zarr(tmp_path):
    data = make_data()
    lab = np.zeros(data.shape[1:], dtype="uint32")
    lab[10:30, 10:40] = 3
    path = write_ngff(tmp_path / "a.ome.zarr", data, labels={"truth": lab})
    layers = get_reader(str(path))(str(path))
    assert [(kw["name"], t) for _, kw, t in layers] == [
        ("BF", "image"),
        ("PNA-FITC", "image"),
        ("PRM1", "image"),
        ("truth", "labels"),
    ]
    style = {kw["name"]: (kw["colormap"], kw["blending"]) for _, kw, t in layers if t == "image"}
    assert style == {
        "BF": ("gray", "translucent"),
        "PNA-FITC": ("magenta", "additive"),
        "PRM1": ("green", "additive"),
    }
    for d, kw, _ in layers:
        assert kw["multiscale"] is True and isinstance(d, list) and len(d) == 2
        assert kw["scale"] == pytest.approx((PIXEL_UM, PIXEL_UM))
        assert kw["metadata"]["acquisition_path"] == str(path)
        assert d[0].shape == (64, 96) and d[1].shape == (32, 48)
    roles = [kw["metadata"]["role"] for _, kw, _ in layers]
    assert roles == ["brightfield", "PNA", "PRM1", None]
    np.testing.assert_array_equal(layers[3][0][0].compute(), lab)
    # contrast limits: percentiles of the coarsest level
    coarse = data[:, ::2, ::2]
    lo, hi = layers[0][1]["contrast_limits"]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(coarse[0], [0.5, 99.5])))
    lo, hi = layers[2][1]["contrast_limits"]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(coarse[2], [1.0, 99.9])))


def test_acquisition_layers_read_only_the_coarsest_level(tmp_path, monkeypatch):
    path = write_ngff(tmp_path / "a.ome.zarr", make_data(), n_levels=3, chunk=16)
    acq = open_acquisition(path)
    with count_reads(monkeypatch) as log:
        layers = acquisition_layers(acq)
    assert len(layers) == 3
    assert log.chunks and all(k.startswith("2/") for k in log.chunks), log.chunks


def test_single_level_file_without_roles_or_pixel_size(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, make_data((4, 32, 48)))
    layers = get_reader(str(path))(str(path))
    assert [kw["name"] for _, kw, _ in layers] == ["C0", "C1", "C2", "C3"]
    assert [kw["colormap"] for _, kw, _ in layers] == ["cyan", "yellow", "red", "blue"]
    for d, kw, _ in layers:
        assert kw["multiscale"] is False and d.shape == (32, 48)
        assert "scale" not in kw and kw["metadata"]["role"] is None


def test_stack_shows_middle_plane_with_a_warning(tmp_path):
    data = make_data((1, 3, 5, 32, 48))
    path = write_ngff(tmp_path / "z.ome.zarr", data, axes="tczyx", n_levels=1)
    with pytest.warns(UserWarning, match="showing plane t=0, z=2"):
        layers = get_reader(str(path))(str(path))
    assert layers[0][1]["metadata"]["plane"] == {"t": 0, "z": 2}
    np.testing.assert_array_equal(layers[0][0].compute(), data[0, 0, 2])


def test_contrast_limits_of_a_flat_channel():
    import dask.array as da

    level = da.zeros((2, 10, 10), dtype="uint8")
    assert contrast_limits(level, [(0.5, 99.5), (1, 99)]) == [(0.0, 1.0), (0.0, 1.0)]


def test_layer_data_is_accepted_by_napari(tmp_path):
    """napari itself (no Qt needed for layer models) builds layers from our tuples."""
    layers_mod = pytest.importorskip("napari.layers")
    case = build("ngff-0.5", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        layers = [
            layers_mod.Layer.create(d, kw, t)
            for d, kw, t in get_reader(str(case.path))(str(case.path))
        ]
    assert [type(layer).__name__ for layer in layers] == ["Image"] * 3
    assert [layer.name for layer in layers] == NAMES
    assert layers[0].multiscale and layers[0].scale[-1] == pytest.approx(PIXEL_UM)


def test_a_detection_result_opens_as_labels_not_as_an_image(tmp_path):
    """A RESULT.zarr once opened as a grey image of label ids, and detect ran on it."""
    from _engine_fakes import FakeDiscModel, disc_image, make_acquisition, random_discs
    from _markers_helpers import write_ngff as write_labels_ngff
    from napari_hrs._napari.reader import read_paths
    from napari_hrs.engine.detect import detect
    from napari_hrs.errors import AcquisitionError

    img, _ = disc_image((192, 224), random_discs((192, 224), 6, seed=4), seed=4)
    res = detect(make_acquisition(img), FakeDiscModel(), tile=128, out=tmp_path / "RESULT.zarr")
    assert len(res.table) > 0
    with pytest.raises(AcquisitionError, match="is a label image"):
        open_acquisition(res.path)
    ((data, kwargs, kind),) = read_paths(str(res.path))
    assert kind == "labels" and kwargs["name"] == "RESULT"
    np.testing.assert_array_equal(np.asarray(data), np.asarray(res.labels))
    assert kwargs["features"]["index"].tolist() == res.table["id"].tolist()
    assert kwargs["features"]["class_name"].tolist() == res.table["class_name"].tolist()
    # NGFF labels of an image, opened on their own: a labels layer of the same ids
    lab = np.zeros((64, 80), np.uint32)
    lab[5:15, 5:15], lab[30:40, 50:60] = 1, 2
    gt = write_labels_ngff(tmp_path / "gt.ome.zarr", np.zeros((1, 64, 80), np.uint16),
                           ["brightfield"], lab) / "labels" / "cells"  # fmt: skip
    ((data, kwargs, kind),) = read_paths(str(gt))
    assert kind == "labels" and kwargs["name"] == "cells" and "features" not in kwargs
    np.testing.assert_array_equal(np.asarray(data), lab)
    # an acquisition still opens as images
    img_path = write_ngff(tmp_path / "img.ome.zarr", make_data())
    assert {k for _, _, k in read_paths(str(img_path))} == {"image"}
