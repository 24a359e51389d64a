"""Laziness, proved by counting store reads: opening reads no chunk; a tile reads its chunks."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from _io_helpers import FORMATS, build, count_reads, make_data, write_ngff
from napari_hrs.io import open_acquisition, read_labels

#: chunk keys of the tile [0:32, 32:64] of channel 1 (where the layout is known exactly)
TILE_KEYS = {
    "ngff-0.4": "0/1/0/1",
    "ngff-0.5": "0/c/1/0/1",
    "ome-zarr-py-0.4": "s0/1/0/1",
    "ome-zarr-py-0.5": "s0/c/1/0/1",
    "zarr-v2-array": "1.0.1",
    "zarr-v3-array": "c/1/0/1",
    "zarr-v2-group": "0/1.0.1",
}


@pytest.mark.parametrize("kind", FORMATS)
def test_open_reads_no_chunk_and_a_tile_reads_only_its_chunks(kind, tmp_path, monkeypatch):
    case = build(kind, tmp_path)
    channel = 1 if case.data.shape[0] > 1 else 0
    with count_reads(monkeypatch) as log:
        acq = open_acquisition(case.path, **case.kwargs)
        view = acq.channel(channel)[0:32, 32:64]  # slicing is lazy too
        assert log.chunks == [], f"opening {kind} read chunks {log.chunks}"
        tile = view.compute()
    np.testing.assert_array_equal(tile, case.data[channel, 0:32, 32:64])
    assert len(set(log.chunks)) == 1, log.chunks
    if kind in TILE_KEYS:
        assert set(log.chunks) == {TILE_KEYS[kind]}


@pytest.mark.parametrize("kind", ["ngff-0.4", "ngff-0.5", "bioio-sharded-0.5", "ome-tiff-pyramid"])
def test_coarse_level_reads_no_full_resolution_chunk(kind, tmp_path, monkeypatch):
    case = build(kind, tmp_path)
    acq = open_acquisition(case.path)
    with count_reads(monkeypatch) as log:
        acq.levels[-1].compute()
    assert log.chunks
    assert not [k for k in log.chunks if k.startswith("0/")], log.chunks  # level 0 is "0"


def test_labels_are_lazy(tmp_path, monkeypatch):
    data = make_data()
    lab = np.zeros(data.shape[1:], dtype="uint32")
    lab[5:20, 40:70] = 7
    path = write_ngff(tmp_path / "l.ome.zarr", data, labels={"cells": lab})
    acq = open_acquisition(path)
    with count_reads(monkeypatch) as log:
        labels = read_labels(acq)
        assert log.chunks == []
    assert list(labels) == ["cells"]
    assert labels["cells"].scale == (1.0, 1.0)
    np.testing.assert_array_equal(labels["cells"].levels[0].compute(), lab)
    np.testing.assert_array_equal(labels["cells"].levels[1].compute(), lab[::2, ::2])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_whole_slide_opens_from_metadata_only(zarr_format, tmp_path, monkeypatch):
    """A 30000 x 30000 x 3 OME-Zarr (metadata only, no chunk on disk) opens without reads."""
    path = tmp_path / "slide.ome.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    datasets = []
    for i in range(4):
        size = 30000 // 2**i
        group.create_array(str(i), shape=(3, size, size), chunks=(1, 1024, 1024), dtype="uint16")
        scale = [1.0, 0.325 * 2**i, 0.325 * 2**i]
        datasets.append(
            {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "yx"
    ]
    ms = {"multiscales": [{"axes": axes, "datasets": datasets, "version": "0.4"}]}
    ms["omero"] = {"channels": [{"label": n} for n in ("BF", "PNA", "PRM1")]}
    group.attrs.update({"ome": {"version": "0.5", **ms}} if zarr_format == 3 else ms)
    with count_reads(monkeypatch) as log:
        acq = open_acquisition(path)
        assert log.chunks == []
        assert acq.shape == (3, 30000, 30000) and acq.n_levels == 4
        assert acq.pixel_size_um == pytest.approx(0.325)
        tile = acq.channel("PNA")[20000:20100, 5000:5100].compute()
    assert tile.shape == (100, 100) and not tile.any()  # missing chunks read as fill value
    assert len(set(log.chunks)) == 1
