"""Tiny test images in every format napari-hrs reads, and a store-read counter.

All writers take a ``(C, Y, X)`` (or n-D with ``axes``) numpy array and write it with explicit
metadata, so tests know exactly what the reader must find.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import tifffile.zarr
import zarr
import zarr.storage

from napari_hrs.io.chunks import ChunkReader

NAMES = ["BF", "PNA-FITC", "PRM1"]
PIXEL_UM = 0.325
METADATA_KEYS = (".zarray", ".zgroup", ".zattrs", "zarr.json", ".zmetadata")


def make_data(
    shape: Sequence[int] = (3, 64, 96), dtype: str = "uint16", seed: int = 0
) -> np.ndarray:
    """Random but reproducible pixels; channel c is offset by 1000*c so channels differ."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 500, size=tuple(shape)).astype(dtype)
    if len(shape) >= 3:
        c_axis = len(shape) - 3
        offs = (np.arange(shape[c_axis]) * 1000).reshape(
            [-1 if i == c_axis else 1 for i in range(len(shape))]
        )
        data = (data + offs).astype(dtype)
    return data


def _pyramid(data: np.ndarray, n_levels: int) -> list[np.ndarray]:
    return [data[..., :: 2**i, :: 2**i] for i in range(n_levels)]


def _axes_meta(axes: str, unit: str | None) -> list[dict[str, Any]]:
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    out = []
    for a in axes:
        entry: dict[str, Any] = {"name": a, "type": kinds[a]}
        if a in "yx" and unit is not None:
            entry["unit"] = unit
        out.append(entry)
    return out


def _multiscales(axes: str, n: int, pixel: float | None, unit: str | None, version: str | None):
    datasets = []
    for i in range(n):
        scale = [(pixel or 1.0) * 2**i if a in "yx" else 1.0 for a in axes]
        datasets.append(
            {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    ms: dict[str, Any] = {"name": "image", "axes": _axes_meta(axes, unit), "datasets": datasets}
    if version == "0.4":
        ms["version"] = "0.4"
    return [ms]


def _create(group: zarr.Group, name: str, data: np.ndarray, chunks, axes: str, v3: bool):
    kwargs: dict[str, Any] = {}
    if v3:
        kwargs["dimension_names"] = list(axes)
    else:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    chunks = tuple(min(c, s) for c, s in zip(chunks, data.shape, strict=True))
    arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks, **kwargs)
    arr[...] = data
    return arr


def write_ngff(
    path: Path,
    data: np.ndarray,
    *,
    version: str = "0.4",
    axes: str = "cyx",
    channel_names: Sequence[str] | None = NAMES,
    pixel_size_um: float | None = PIXEL_UM,
    unit: str | None = "micrometer",
    n_levels: int = 2,
    chunk: int = 32,
    labels: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write an OME-Zarr image (NGFF 0.4 on zarr v2 or 0.5 on zarr v3) with hand-made metadata."""
    v3 = version == "0.5"
    group = zarr.open_group(path, mode="w", zarr_format=3 if v3 else 2)
    chunks = tuple(chunk if a in "yx" else 1 for a in axes)
    for i, level in enumerate(_pyramid(data, n_levels)):
        _create(group, str(i), level, chunks, axes, v3)
    meta: dict[str, Any] = {
        "multiscales": _multiscales(axes, n_levels, pixel_size_um, unit, version)
    }
    if channel_names is not None:
        meta["omero"] = {"channels": [{"label": n, "active": True} for n in channel_names]}
    group.attrs.update({"ome": {"version": "0.5", **meta}} if v3 else meta)
    for name, lab in (labels or {}).items():
        lgroup = group.require_group("labels")
        lmeta = {
            "labels": sorted({*(lgroup.attrs.get("ome", lgroup.attrs).get("labels", [])), name})
        }
        lgroup.attrs.update({"ome": {"version": "0.5", **lmeta}} if v3 else lmeta)
        g = lgroup.require_group(name)
        laxes = axes.replace("c", "")
        for i, level in enumerate(_pyramid(lab, n_levels)):
            _create(g, str(i), level, tuple(chunk if a in "yx" else 1 for a in laxes), laxes, v3)
        m = {
            "multiscales": _multiscales(laxes, n_levels, pixel_size_um, unit, version),
            "image-label": {"source": {"image": "../../"}},
        }
        g.attrs.update({"ome": {"version": "0.5", **m}} if v3 else m)
    return path


def write_plain_zarr(
    path: Path, data: np.ndarray, *, zarr_format: int = 2, group: bool = False, chunk: int = 32
) -> Path:
    """A zarr array (or a group holding array ``"0"``) with no NGFF metadata."""
    chunks = tuple(min(chunk, s) if i >= data.ndim - 2 else 1 for i, s in enumerate(data.shape))
    if data.ndim == 3 and data.shape[-1] <= 4:
        chunks = (min(chunk, data.shape[0]), min(chunk, data.shape[1]), data.shape[2])
    if group:
        g = zarr.open_group(path, mode="w", zarr_format=zarr_format)
        arr = g.create_array("0", shape=data.shape, dtype=data.dtype, chunks=chunks)
    else:
        arr = zarr.create_array(
            path, shape=data.shape, dtype=data.dtype, chunks=chunks, zarr_format=zarr_format
        )
    arr[...] = data
    return path


def write_ome_tiff(
    path: Path,
    data: np.ndarray,
    *,
    axes: str = "CYX",
    channel_names: Sequence[str] | None = NAMES,
    pixel_size_um: float | None = PIXEL_UM,
    n_levels: int = 1,
    tile: int = 32,
) -> Path:
    """An OME-TIFF (tiled; ``n_levels`` > 1 writes SubIFD pyramid levels)."""
    md: dict[str, Any] = {"axes": axes}
    if channel_names is not None:
        md["Channel"] = {"Name": list(channel_names)}
    if pixel_size_um is not None:
        md.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
        md.update(PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    levels = _pyramid(data, n_levels)
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(levels[0], tile=(tile, tile), subifds=n_levels - 1, metadata=md)
        for lv in levels[1:]:
            tw.write(lv, tile=(tile, tile), subfiletype=1)
    return path


def write_plain_tiff(path: Path, data: np.ndarray, **kwargs: Any) -> Path:
    """A TIFF without OME metadata (tifffile's own shape metadata only)."""
    tifffile.imwrite(path, data, **kwargs)
    return path


class ReadLog:
    """Keys read from zarr / TIFF-zarr stores while :func:`count_reads` is active."""

    def __init__(self) -> None:
        self.metadata: list[str] = []
        self.chunks: list[str] = []

    def clear(self) -> None:
        self.metadata.clear()
        self.chunks.clear()


@contextlib.contextmanager
def count_reads(monkeypatch: Any) -> Iterator[ReadLog]:
    """Record every ``get`` of zarr's LocalStore, of napari-hrs' chunk reader
    (:mod:`napari_hrs.io.chunks`, which reads local stores itself) and of tifffile's
    ZarrTiffStore.

    Keys ending in zarr metadata names (and TIFF-store keys served from its in-memory
    metadata) go to ``log.metadata``; everything else is a chunk read, ``log.chunks``.
    """
    log = ReadLog()
    local_get = zarr.storage.LocalStore.get
    local_partial = zarr.storage.LocalStore.get_partial_values
    tiff_get = tifffile.zarr.ZarrTiffStore.get
    chunk_get = ChunkReader.get

    def record(key: str, is_meta: bool) -> None:
        (log.metadata if is_meta else log.chunks).append(key)

    async def get_local(self, key, *args, **kwargs):
        record(key, key.rsplit("/", 1)[-1] in METADATA_KEYS)
        return await local_get(self, key, *args, **kwargs)

    async def partial_local(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        for key, _ in key_ranges:
            record(key, key.rsplit("/", 1)[-1] in METADATA_KEYS)
        return await local_partial(self, prototype, key_ranges)

    def get_chunk(self, key):
        record(key, False)
        return chunk_get(self, key)

    async def get_tiff(self, key, *args, **kwargs):
        record(key, key in self._store or key.rsplit("/", 1)[-1] in METADATA_KEYS)
        return await tiff_get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", get_local)
    monkeypatch.setattr(zarr.storage.LocalStore, "get_partial_values", partial_local)
    monkeypatch.setattr(tifffile.zarr.ZarrTiffStore, "get", get_tiff)
    monkeypatch.setattr(ChunkReader, "get", get_chunk)
    yield log


@dataclass
class Case:
    """A written test file and what :func:`open_acquisition` must find in it."""

    path: Path
    data: np.ndarray  # (C, Y, X) level 0
    kwargs: dict[str, Any]
    n_levels: int
    pixel_size_um: float | None
    format: str
    names: list[str]
    exact_levels: bool = True  # lower levels are data[:, ::2**i, ::2**i]


FORMATS = [
    "ngff-0.4",
    "ngff-0.5",
    "ome-zarr-py-0.4",
    "ome-zarr-py-0.5",
    "bioio-sharded-0.5",
    "zarr-v2-array",
    "zarr-v3-array",
    "zarr-v2-group",
    "zarr-yxc",
    "ome-tiff",
    "ome-tiff-pyramid",
    "tiff",
    "tiff-2d",
    "imagej-tiff",
]


def _ome_zarr_py(path: Path, data: np.ndarray, version: str) -> None:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_image

    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(path, mode="w", zarr_format=fmt.zarr_format)
    channels = [
        {"label": n, "color": "FFFFFF", "window": {"start": 0, "end": 9, "min": 0, "max": 9}}
        for n in NAMES
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(
            data,
            group,
            axes="cyx",
            fmt=fmt,
            scale_factors=[2],
            method=Methods.NEAREST,
            scale={"y": PIXEL_UM, "x": PIXEL_UM},
            axes_units={"y": "micrometer", "x": "micrometer"},
            storage_options={"chunks": (1, 32, 32)},
            omero={"channels": channels},
        )


def _bioio_sharded(path: Path, data: np.ndarray) -> None:
    from bioio_ome_zarr.writers import Channel, OMEZarrWriter

    c, y, x = data.shape
    writer = OMEZarrWriter(
        str(path),
        level_shapes=[(c, y, x), (c, y // 2, x // 2)],
        dtype=data.dtype,
        chunk_shape=(1, 16, 16),
        shard_shape=(1, 32, 32),
        channels=[Channel(label=n, color="FFFFFF") for n in NAMES],
        axes_names=["c", "y", "x"],
        axes_types=["channel", "space", "space"],
        axes_units=[None, "micrometer", "micrometer"],
        physical_pixel_size=[1.0, PIXEL_UM, PIXEL_UM],
    )
    writer.write_full_volume(data)


def build(kind: str, tmp: Path, data: np.ndarray | None = None) -> Case:
    """Write ``data`` (default :func:`make_data`) as ``kind`` (one of :data:`FORMATS`)."""
    data = make_data() if data is None else data
    names = list(NAMES)
    rename = {"channels": list(NAMES)}
    if kind in ("ngff-0.4", "ngff-0.5"):
        version = kind.split("-")[1]
        path = write_ngff(tmp / f"img{version}.ome.zarr", data, version=version)
        return Case(path, data, {}, 2, PIXEL_UM, f"ome-zarr {version}", names)
    if kind.startswith("ome-zarr-py"):
        version = kind.rsplit("-", 1)[1]
        path = tmp / f"omezarrpy{version}.ome.zarr"
        _ome_zarr_py(path, data, version)
        return Case(path, data, {}, 2, PIXEL_UM, f"ome-zarr {version}", names, False)
    if kind == "bioio-sharded-0.5":
        path = tmp / "sharded.ome.zarr"
        _bioio_sharded(path, data)
        return Case(path, data, {}, 2, PIXEL_UM, "ome-zarr 0.5", names, False)
    if kind.startswith("zarr-v"):
        fmt = int(kind[6])
        path = write_plain_zarr(tmp / f"{kind}.zarr", data, zarr_format=fmt, group="group" in kind)
        return Case(path, data, rename, 1, None, "zarr", names)
    if kind == "zarr-yxc":
        path = write_plain_zarr(tmp / "yxc.zarr", np.ascontiguousarray(np.moveaxis(data, 0, -1)))
        return Case(path, data, rename, 1, None, "zarr", names)
    if kind in ("ome-tiff", "ome-tiff-pyramid"):
        n = 2 if kind.endswith("pyramid") else 1
        path = write_ome_tiff(tmp / f"{kind}.ome.tif", data, n_levels=n)
        return Case(path, data, {}, n, PIXEL_UM, "ome-tiff", names)
    if kind == "tiff":
        path = write_plain_tiff(tmp / "plain.tif", data, tile=(32, 32))
        return Case(path, data, rename, 1, None, "tiff", names)
    if kind == "tiff-2d":
        path = write_plain_tiff(tmp / "plain2d.tiff", data[0])
        return Case(path, data[:1], {}, 1, None, "tiff", ["C0"])
    if kind == "imagej-tiff":
        path = tmp / "imagej.tif"
        tifffile.imwrite(
            path,
            data,
            imagej=True,
            resolution=(1 / PIXEL_UM, 1 / PIXEL_UM),
            metadata={"axes": "CYX", "unit": "um", "Labels": NAMES},
        )
        return Case(path, data, {}, 1, PIXEL_UM, "imagej-tiff", names)
    raise ValueError(kind)
