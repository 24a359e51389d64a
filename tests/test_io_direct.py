"""Direct store reads behind registered dask arrays (napari_hrs.io.direct)."""

from __future__ import annotations

import gc
import warnings

import dask.array as da
import numpy as np
import pandas as pd
import zarr

from _markers_helpers import write_ngff
from napari_hrs.io import open_acquisition
from napari_hrs.io.direct import DirectPlane, direct_reader, lazy_from_zarr, register_direct
from napari_hrs.markers import quantify, quantify_acquisition


def test_acquisition_channels_have_direct_readers_with_equal_values(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4000, (3, 70, 90)).astype(np.uint16)
    lab = np.zeros((70, 90), np.int32)
    lab[20:30, 30:45] = 5
    path = write_ngff(tmp_path / "a.ome.zarr", img, ["BF", "PRM1", "PNA"], labels=lab)
    acq = open_acquisition(path)
    for c, name in enumerate(["BF", "PRM1", "PNA"]):
        arr = acq.channel(name)
        reader = direct_reader(arr)
        assert isinstance(reader, DirectPlane)
        assert reader.shape == (70, 90) and reader.dtype == np.uint16
        np.testing.assert_array_equal(reader[5:60, 7:88], img[c, 5:60, 7:88])
        np.testing.assert_array_equal(reader[5:60, 7:88], arr[5:60, 7:88].compute())
    # derived arrays read through dask: no reader
    assert direct_reader(acq.channel("PRM1")[10:20]) is None
    assert direct_reader(acq.channel("PRM1") + 1) is None
    # quantification through the readers equals quantification of the numpy arrays
    direct = quantify_acquisition(acq, lab, tile=32)
    plain = quantify({"PRM1": img[1], "PNA": img[2]}, lab, pixel_size_um=acq.pixel_size_um)
    pd.testing.assert_frame_equal(direct, plain, check_exact=True)
    assert direct.loc[0, "PRM1_mean"] == img[1][lab == 5].mean()


def test_lazy_from_zarr_registers_and_forgets(tmp_path):
    z = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=(1, 40, 50), chunks=(1, 16, 16),
                        dtype=np.uint32)  # fmt: skip
    z[0, 3:9, 4:30] = 7
    arr = lazy_from_zarr(z)
    reader = direct_reader(arr)
    assert reader is not None and reader.shape == (1, 40, 50) and reader.chunks == (1, 16, 16)
    np.testing.assert_array_equal(reader[0, 0:20, 0:40], z[0, 0:20, 0:40])
    name = arr.name
    del arr, reader, z
    gc.collect()
    from napari_hrs.io import direct as mod

    assert name not in mod._READERS  # gone with the store object


def test_unregistered_and_mismatched():
    assert direct_reader(np.zeros((4, 4))) is None
    assert direct_reader(da.zeros((4, 4), chunks=2)) is None
    src = np.zeros((4, 5), np.uint16)
    try:
        register_direct(da.zeros((4, 4), chunks=2, dtype=np.uint16), src)
    except ValueError as exc:
        assert "does not match" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a reader of another shape was accepted")


def test_quantify_decodes_channels_into_its_regions_and_names_a_corrupt_chunk(
    tmp_path, monkeypatch
):
    """The streamed channel tiles are decoded straight into the region buffers (read_into,
    not a tile then a copy), with the numbers of a plain numpy run; a truncated chunk of one
    channel is reported with that channel's name and where."""
    import pytest

    from napari_hrs.errors import PixelReadError
    from napari_hrs.io.chunks import ChunkReader

    rng = np.random.default_rng(1)
    img = rng.integers(0, 4000, (3, 200, 260)).astype(np.uint16)
    lab = np.zeros((200, 260), np.int32)
    for k, (y, x) in enumerate([(20, 30), (90, 120), (150, 200), (60, 230), (170, 20)], 1):
        lab[y : y + 14, x : x + 11] = k
    path = write_ngff(tmp_path / "a.ome.zarr", img, ["BF", "PRM1", "PNA"], labels=lab)
    acq = open_acquisition(path)
    into = []
    real = ChunkReader.read_into
    monkeypatch.setattr(
        ChunkReader, "read_into", lambda self, key, out: into.append(key) or real(self, key, out)
    )
    got = quantify_acquisition(acq, lab, tile=64)
    plain = quantify({"PRM1": img[1], "PNA": img[2]}, lab, pixel_size_um=acq.pixel_size_um)
    pd.testing.assert_frame_equal(got, plain, check_exact=True)
    assert len(into) >= 2 * 5  # both channels, every tile with a cell (4 x 5 tiles of 64²)
    # view reads: one plane of the (C, Y, X) store, into a window of a bigger buffer
    buf = np.zeros((40, 50), np.uint16)
    direct_reader(acq.channel("PNA")).read_into((slice(10, 40), slice(100, 140)), buf[5:35, 3:43])
    np.testing.assert_array_equal(buf[5:35, 3:43], img[2, 10:40, 100:140])
    assert not buf[:5].any() and not buf[:, :3].any()
    chunk = path / "0" / "2" / "1" / "1"  # PNA, rows 64-127, columns 64-127
    if not chunk.exists():
        chunk = path / "0" / "2.1.1"
    chunk.write_bytes(chunk.read_bytes()[:30])
    with pytest.raises(PixelReadError, match=r"channel 'PNA' at rows 64-128, columns 64-128"):
        quantify_acquisition(open_acquisition(path), lab, tile=64)


def test_lazy_labels_read_again_and_the_boxes_check(tmp_path):
    """Store labels read again in pass 2 (not cached) and read only there (boxes given) give
    the numbers of numpy labels, for ids of a uint16 and of a uint32 region; the boxes check
    sees every labelled pixel: wrong boxes fall back to the labels pass."""
    import pytest

    rng = np.random.default_rng(2)
    img = rng.integers(0, 4000, (3, 150, 190)).astype(np.uint16)
    for big in (False, True):  # ids < 2**16 (uint16 canvas) and > 2**16 (uint32 canvas)
        lab = np.zeros((150, 190), np.uint32)
        ids = [70_001, 70_002, 90_000] if big else [3, 4, 9]
        for k, (y, x) in zip(ids, [(10, 20), (70, 90), (120, 160)], strict=True):
            lab[y : y + 12, x : x + 15] = k
        path = write_ngff(tmp_path / f"{big}.ome.zarr", img, ["BF", "PRM1", "PNA"], labels=lab)
        acq = open_acquisition(path)
        lazy = lazy_from_zarr(zarr.open_array(str(path / "labels" / "cells" / "0"), mode="r"))
        plain = quantify({"PRM1": img[1], "PNA": img[2]}, lab, pixel_size_um=acq.pixel_size_um)
        got = quantify_acquisition(acq, lazy, tile=64, cache_labels_mb=0)
        pd.testing.assert_frame_equal(got, plain, check_exact=True)
        boxes = plain.rename(columns={"bbox_x0": "x0", "bbox_y0": "y0", "bbox_x1": "x1",
                                      "bbox_y1": "y1"})  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # right boxes: no fallback
            hinted = quantify_acquisition(acq, lazy, tile=64, boxes=boxes)
        assert hinted.attrs["quantify"]["boxes_given"]
        pd.testing.assert_frame_equal(hinted, plain, check_exact=True)
        wrong = boxes.assign(x1=boxes["x0"] + 3)  # too narrow: pixels outside their box
        with pytest.warns(UserWarning, match="measuring again with the labels pass"):
            again = quantify_acquisition(acq, lazy, tile=64, boxes=wrong)
        pd.testing.assert_frame_equal(again, plain, check_exact=True)
