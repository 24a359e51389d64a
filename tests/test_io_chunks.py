"""napari_hrs.io.chunks: chunk-level reads of local zarr arrays equal zarr's own reads."""

from __future__ import annotations

import pickle

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

from napari_hrs.io.chunks import ChunkReader, chunk_reader

SHAPE, CHUNKS = (2, 37, 45), (1, 16, 16)  # edge chunks are partial along Y and X


def _fill(arr: zarr.Array, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = (rng.random(arr.shape) * 1000).astype(arr.dtype)
    arr[...] = data
    return data


def _v2(path, dtype="uint16", compressor=None, **kw) -> zarr.Array:
    return zarr.create_array(store=str(path), shape=SHAPE, chunks=CHUNKS, dtype=dtype,
                             zarr_format=2, compressors=compressor, fill_value=7, **kw)  # fmt: skip


def _v3(path, dtype="uint16", compressors=None, **kw) -> zarr.Array:
    return zarr.create_array(store=str(path), shape=SHAPE, chunks=CHUNKS, dtype=dtype,
                             compressors=compressors, fill_value=7, **kw)  # fmt: skip


SELECTIONS = [
    (slice(None), slice(None), slice(None)),
    (0, slice(3, 30), slice(10, 45)),
    (1, slice(16, 32), slice(0, 16)),  # exactly one chunk
    (-1, slice(30, None), slice(None, 5)),
    (slice(1, 2), 20, slice(None)),
    (0, slice(5, 5), slice(None)),  # empty
    (1,),
    (Ellipsis, slice(7, 9)),
    (0, Ellipsis),
]

LAYOUTS = [
    ("v2 blosc", lambda p, d: _v2(p, d, numcodecs.Blosc("zstd", 5, numcodecs.Blosc.BITSHUFFLE))),
    ("v2 blosc lz4", lambda p, d: _v2(p, d, numcodecs.Blosc("lz4", 1, numcodecs.Blosc.SHUFFLE))),
    ("v2 zstd", lambda p, d: _v2(p, d, numcodecs.Zstd(3))),
    ("v2 zlib", lambda p, d: _v2(p, d, numcodecs.Zlib(1))),
    ("v2 raw", lambda p, d: _v2(p, d, None)),
    ("v2 nested /", lambda p, d: _v2(p, d, numcodecs.Blosc(), chunk_key_encoding={"name": "v2", "separator": "/"})),
    ("v3 blosc", lambda p, d: _v3(p, d, [BloscCodec(cname="zstd", shuffle="bitshuffle")])),
    ("v3 zstd", lambda p, d: _v3(p, d, [ZstdCodec(level=1, checksum=True)])),
    ("v3 gzip", lambda p, d: _v3(p, d, [GzipCodec()])),
    ("v3 raw", lambda p, d: _v3(p, d, None)),
    ("v3 v2-keys", lambda p, d: _v3(p, d, [BloscCodec()], chunk_key_encoding={"name": "v2", "separator": "/"})),
]  # fmt: skip


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "uint8"])
@pytest.mark.parametrize("name,make", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_reads_equal_zarr(tmp_path, name, make, dtype):
    arr = make(tmp_path / "a.zarr", dtype)
    data = _fill(arr)
    reader = chunk_reader(arr)
    assert isinstance(reader, ChunkReader), name
    for sel in SELECTIONS:
        got = reader[sel]
        want = np.asarray(arr[sel])
        assert got.dtype == want.dtype and got.shape == want.shape, sel
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(reader[:, :, :], data)


def test_missing_chunks_read_as_fill_value(tmp_path):
    arr = _v2(tmp_path / "a.zarr", "uint16", numcodecs.Blosc())
    arr[0, :16, :16] = 3  # one chunk written, the rest never
    got = chunk_reader(arr)[0, :20, :20]
    np.testing.assert_array_equal(got, np.asarray(arr[0, :20, :20]))
    assert got[0, 0] == 3 and got[19, 19] == 7


@pytest.mark.parametrize(
    "make",
    [
        lambda p: zarr.create_array(store=str(p), shape=(8, 8), chunks=(4, 4), dtype="u2",
                                    zarr_format=2, order="F"),
        lambda p: zarr.create_array(store=str(p), shape=(8, 8), chunks=(4, 4), dtype="u2",
                                    zarr_format=2, filters=[numcodecs.Delta("u2")]),
        lambda p: zarr.create_array(store=str(p), shape=(8, 8), chunks=(4, 4), dtype="u2",
                                    serializer=BytesCodec(endian="big")),
        lambda p: zarr.create_array(store=str(p), shape=(8, 8), chunks=(2, 2), shards=(4, 4),
                                    dtype="u2"),
        lambda p: zarr.create_array(store=zarr.storage.MemoryStore(), shape=(8, 8),
                                    chunks=(4, 4), dtype="u2"),
    ],
    ids=["v2 F order", "v2 filters", "v3 big endian", "v3 sharded", "memory store"],
)  # fmt: skip
def test_other_layouts_are_left_to_zarr(tmp_path, make):
    assert chunk_reader(make(tmp_path / "a.zarr")) is None


def test_bad_selection_and_corrupt_chunk_raise(tmp_path):
    arr = _v2(tmp_path / "a.zarr", "uint16", numcodecs.Blosc())
    _fill(arr)
    reader = chunk_reader(arr)
    with pytest.raises(IndexError):
        reader[0, ::2]
    with pytest.raises(IndexError):
        reader[2]
    chunk = tmp_path / "a.zarr" / "1.0.0"
    chunk.write_bytes(chunk.read_bytes()[:40])  # truncated
    np.asarray(reader[0])  # other chunks still read
    with pytest.raises(ValueError, match=r"chunk .*1\.0\.0"):
        reader[1]


def test_plane_view_reads_chunks_and_pickles(tmp_path):
    """Acquisition channels read through the chunk reader; a pickled view (a dask worker)
    rebuilds it."""
    from napari_hrs.io._raw import _PlaneView

    arr = _v2(tmp_path / "a.zarr", "uint16", numcodecs.Blosc())
    data = _fill(arr)
    view = _PlaneView(arr, "cyx", {"c": 1})
    np.testing.assert_array_equal(view[slice(2, 30), slice(None)], data[1, 2:30])
    assert isinstance(view.reader, ChunkReader)
    again = pickle.loads(pickle.dumps(view))
    assert again._reader is None
    np.testing.assert_array_equal(again[slice(None), slice(None)], data[1])


def test_scratch_buffers_are_pooled_and_bounded(tmp_path, monkeypatch):
    from napari_hrs.io import chunks

    monkeypatch.setattr(chunks, "POOL_BYTES", 3 * 16 * 16 * 8)
    monkeypatch.setattr(chunks, "_POOL", [])
    for i, dtype in enumerate(["uint16", "float64", "uint8", "float64"]):
        arr = _v2(tmp_path / f"{i}.zarr", dtype, numcodecs.Blosc())
        data = _fill(arr, seed=i)
        np.testing.assert_array_equal(chunk_reader(arr)[:, :, :], data)
        assert sum(b.nbytes for b in chunks._POOL) <= chunks.POOL_BYTES
    assert chunks._POOL  # idle buffers are kept for the next read


@pytest.mark.parametrize(
    "name,make", LAYOUTS[:3] + LAYOUTS[6:7], ids=lambda v: v if isinstance(v, str) else ""
)
def test_read_into_writes_a_view_and_casts(tmp_path, name, make):
    """read_into fills any writable view of the selection's shape (a strided window of a
    larger int64 array: values cast as numpy assigns), and nothing else of that array."""
    arr = make(tmp_path / "a.zarr", "uint16")
    data = _fill(arr)
    reader = chunk_reader(arr)
    for sel in [(0, slice(3, 30), slice(10, 45)), (slice(None), slice(5, 37), 7), (1,)]:
        want = np.asarray(arr[sel])
        big = np.full((want.shape[0] + 4, want.shape[1] + 6, 2), -1, np.int64)
        window = (slice(2, 2 + want.shape[0]), slice(3, 3 + want.shape[1]), 1)
        reader.read_into(sel, big[window])
        np.testing.assert_array_equal(big[window], want)
        outside = np.ones(big.shape, bool)
        outside[window] = False
        assert (big[outside] == -1).all()
    with pytest.raises(ValueError, match="shape"):
        reader.read_into((0, slice(0, 4), slice(0, 4)), np.zeros((4, 5), np.uint16))
    np.testing.assert_array_equal(reader[:, :, :], data)
