"""Read OME-Zarr (NGFF 0.1-0.5, zarr v2 and v3) and plain zarr arrays/groups, metadata only.

NGFF metadata is parsed here rather than by bioio-ome-zarr: bioio 3.x reports a unitless
``scale`` as a pixel size (we return None unless the axis unit is a length) and, without
``omero`` metadata, one channel name for all channels. Arrays are opened with zarr and wrapped
lazily by :func:`napari_hrs.io._raw.plane_levels`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zarr
import zarr.storage

from napari_hrs.errors import AcquisitionError
from napari_hrs.io._raw import RawImage, to_um

_ZARR_MARKERS = (".zgroup", ".zarray", ".zattrs", "zarr.json")


def is_zarr(path: Path) -> bool:
    """Whether ``path`` is a zarr store directory (v2 or v3), judged from its metadata files."""
    return path.is_dir() and (
        path.suffix.lower() == ".zarr" or any((path / m).is_file() for m in _ZARR_MARKERS)
    )


def open_store(path: Path) -> zarr.storage.LocalStore:
    """A read-only store for a local zarr directory."""
    return zarr.storage.LocalStore(path, read_only=True)


def open_node(path: Path) -> zarr.Array | zarr.Group:
    """The root array or group of the zarr store at ``path``."""
    try:
        return zarr.open(store=open_store(path), mode="r")
    except Exception as exc:  # zarr raises several types for "not a zarr store"
        raise AcquisitionError(f"{path}: not a readable zarr store ({exc})") from exc


def ome_attrs(node: zarr.Array | zarr.Group) -> dict[str, Any]:
    """NGFF attributes: under ``"ome"`` (0.5, zarr v3) or at the top level (0.1-0.4)."""
    attrs = node.attrs.asdict()
    ome = attrs.get("ome")
    return ome if isinstance(ome, dict) else attrs


def _scale(transforms: Any, ndim: int) -> list[float] | None:
    """The ``scale`` of an NGFF coordinateTransformations list (None when absent)."""
    if not isinstance(transforms, list):
        return None
    for tr in transforms:
        if isinstance(tr, dict) and tr.get("type") == "scale" and "scale" in tr:
            values = [float(v) for v in tr["scale"]]
            return values if len(values) == ndim else None
    return None


def parse_multiscale(group: zarr.Group, ms: dict[str, Any], source: Path) -> dict[str, Any]:
    """Levels, axes, per-level scales and units of one NGFF ``multiscales`` entry."""
    datasets = ms.get("datasets") or []
    if not datasets:
        raise AcquisitionError(f"{source}: NGFF multiscales entry without datasets")
    try:
        levels = [group[str(d["path"])] for d in datasets]
    except (KeyError, TypeError) as exc:
        raise AcquisitionError(f"{source}: NGFF dataset missing from the store ({exc})") from exc
    for d, lv in zip(datasets, levels, strict=True):
        if not isinstance(lv, zarr.Array):
            raise AcquisitionError(
                f"{source}: NGFF dataset path {d['path']!r} is a group, not an array; the "
                "multiscales metadata must name the arrays of each resolution level"
            )
    ndim = levels[0].ndim
    raw_axes = ms.get("axes")
    if raw_axes is None:
        names = list("tczyx"[-ndim:]) if ndim <= 5 else []  # NGFF 0.1/0.2: always TCZYX
        units: dict[str, str | None] = {}
    else:
        names = [str(a["name"] if isinstance(a, dict) else a).lower() for a in raw_axes]
        units = {str(a["name"]).lower(): a.get("unit") for a in raw_axes if isinstance(a, dict)}
    if len(names) != ndim or any(lv.ndim != ndim for lv in levels):
        raise AcquisitionError(
            f"{source}: NGFF axes {names} do not match the array dimensions {levels[0].shape}"
        )
    glob = _scale(ms.get("coordinateTransformations"), ndim) or [1.0] * ndim
    scales = []
    for d in datasets:
        s = _scale(d.get("coordinateTransformations"), ndim)
        scales.append(None if s is None else [a * b for a, b in zip(s, glob, strict=True)])
    axes = "".join(n if len(n) == 1 else "?" for n in names)
    return {"levels": levels, "axes": axes, "scales": scales, "units": units, "names": names}


def pixel_size(parsed: dict[str, Any]) -> float | None:
    """The pixel size in µm of a :func:`parse_multiscale` entry (level 0, X or Y axis with a
    length unit), or None."""
    axes, scale = parsed["axes"], parsed["scales"][0]
    if scale is None:
        return None
    for a in "xy":
        if a in axes:
            size = to_um(scale[axes.index(a)], parsed["units"].get(a))
            if size is not None:
                return size
    return None


def _level_scales(parsed: dict[str, Any]) -> list[tuple[float, float]] | None:
    axes, scales = parsed["axes"], parsed["scales"]
    if any(s is None for s in scales) or "y" not in axes or "x" not in axes:
        return None
    iy, ix = axes.index("y"), axes.index("x")
    s0 = scales[0]
    return [(s[iy] / s0[iy], s[ix] / s0[ix]) for s in scales]


def _pick(options: list[str], scene: int | str | None, source: Path, what: str) -> int:
    if scene is None:
        return 0
    if isinstance(scene, str) and scene in options:
        return options.index(scene)
    if isinstance(scene, int) and not isinstance(scene, bool) and 0 <= scene < len(options):
        return scene
    raise AcquisitionError(
        f"{source}: scene {scene!r} not found; the file has {len(options)} {what} {options}; "
        f"pass scene=<0..{len(options) - 1}> or a name (--scene on the command line)"
    )


def _plain_axes(shape: tuple[int, ...], dims: list[str] | None, source: Path) -> str:
    """Axes of a zarr array without NGFF metadata: dimension names, else by ndim."""
    if dims and len(dims) == len(shape):
        letters = "".join(str(d).lower()[:1] for d in dims)
        if {"y", "x"} <= set(letters) and len(set(letters)) == len(letters):
            return letters
    if len(shape) == 2:
        return "yx"
    if len(shape) == 3:
        return "yxc" if shape[-1] <= 4 and shape[0] > 4 else "cyx"
    raise AcquisitionError(
        f"{source}: a zarr array of shape {shape} without NGFF metadata; only (Y, X), (C, Y, X) "
        f"and (Y, X, C) are understood. Write it as OME-Zarr with axes, or open one 2-D/3-D array"
    )


def _dims(array: zarr.Array) -> list[str] | None:
    names = getattr(array.metadata, "dimension_names", None)  # zarr v3
    if names and all(names):
        return [str(n) for n in names]
    dims = array.attrs.get("_ARRAY_DIMENSIONS")  # xarray convention, zarr v2
    return [str(n) for n in dims] if isinstance(dims, list) else None


def _plain(levels: list[zarr.Array], source: Path, group_path: str) -> RawImage:
    axes = _plain_axes(levels[0].shape, _dims(levels[0]), source)
    return RawImage(
        levels=list(levels),
        axes=axes,
        format="zarr",
        metadata={"zarr_group": group_path},
    )


def _plain_group(group: zarr.Group, source: Path) -> RawImage:
    arrays = sorted(group.arrays(), key=lambda kv: kv[0])
    if len(arrays) == 1:
        return _plain([arrays[0][1]], source, "")
    numeric = sorted((int(k), a) for k, a in arrays if k.isdigit())
    if len(numeric) == len(arrays) > 1:
        lv = [a for _, a in numeric]
        ndim = lv[0].ndim
        shrinking = all(
            b.ndim == ndim and b.shape[-1] <= a.shape[-1] and b.shape[-2] <= a.shape[-2]
            for a, b in zip(lv, lv[1:], strict=False)
        )
        if shrinking:  # a pyramid stored as arrays 0, 1, 2 ... without NGFF metadata
            return _plain(lv, source, "")
    found = [k for k, _ in arrays] or "none"
    raise AcquisitionError(
        f"{source}: a zarr group without NGFF 'multiscales' metadata holding arrays {found}; "
        f"open one array, e.g. {source / (arrays[0][0] if arrays else '<array>')}"
    )


def _series_group(root: zarr.Group, scene: int | str | None, source: Path) -> tuple[str, str]:
    """(group path, scene name) in a bioformats2raw layout (series 0, 1, ...)."""
    series: list[str] = []
    if "OME" in root:
        series = [str(s) for s in ome_attrs(root["OME"]).get("series", [])]
    if not series:
        series = sorted((k for k, _ in root.groups() if k.isdigit()), key=int)
    if not series:
        raise AcquisitionError(f"{source}: bioformats2raw layout without image series")
    i = _pick(series, scene, source, "series")
    return series[i], series[i]


def open_zarr(path: Path, scene: int | str | None = None) -> RawImage:
    """Read the metadata of an OME-Zarr image or a plain zarr array/group at ``path``.

    Parameters
    ----------
    path : Path
        The store directory.
    scene : int or str, optional
        Image series (bioformats2raw layout) or multiscales entry; default the first.
    """
    root = open_node(path)
    if isinstance(root, zarr.Array):
        return _plain([root], path, "")
    attrs = ome_attrs(root)
    group, group_path, scene_name = root, "", None
    if "bioformats2raw.layout" in attrs:
        group_path, scene_name = _series_group(root, scene, path)
        group = root[group_path]
        attrs = ome_attrs(group)
        scene = None
    if "plate" in attrs or "well" in attrs:
        raise AcquisitionError(
            f"{path}: an NGFF HCS {'plate' if 'plate' in attrs else 'well'}; open one field "
            f"image group instead, e.g. {path / 'A' / '1' / '0'}"
        )
    if "image-label" in attrs:
        raise AcquisitionError(
            f"{path} is a label image (a detection result or NGFF labels: cell ids, not "
            "pixels); detect on the acquisition it was made from, and pass this path as LABELS "
            "to quantify"
        )
    multiscales = attrs.get("multiscales")
    if not multiscales:
        if group_path:
            raise AcquisitionError(f"{path}: series {group_path} has no NGFF multiscales")
        return _plain_group(root, path)
    names = [str(ms.get("name") or i) for i, ms in enumerate(multiscales)]
    idx = _pick(names, scene, path, "multiscales images")
    if scene_name is None and len(multiscales) > 1:
        scene_name = names[idx]
    parsed = parse_multiscale(group, multiscales[idx], path)
    version = str(attrs.get("version") or multiscales[idx].get("version") or "").strip()
    n_c = dict(zip(parsed["axes"], parsed["levels"][0].shape, strict=True)).get("c", 1)
    omero = attrs.get("omero") if isinstance(attrs.get("omero"), dict) else {}
    labels = [str(ch.get("label", "")) for ch in omero.get("channels", []) or []]
    channel_names = labels if len(labels) == n_c and all(labels) else None
    return RawImage(
        levels=parsed["levels"],
        axes=parsed["axes"],
        channel_names=channel_names,
        pixel_size_um=pixel_size(parsed),
        level_scales=_level_scales(parsed),
        scene=scene_name,
        format=f"ome-zarr {version}".strip(),
        metadata={
            "zarr_group": group_path,
            "multiscales_index": idx,
            "ngff_axes": parsed["names"],
            "ngff_scale": parsed["scales"][0],
            "ngff_units": parsed["units"],
        },
    )
