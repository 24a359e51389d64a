"""npe2 reader: OME-Zarr / zarr / OME-TIFF / TIFF -> napari layers, one image layer per channel.

No Qt and no napari import: layers are returned as ``(data, kwargs, layer_type)`` tuples.
:func:`acquisition_layers` is reused by the sample-data command.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from napari_hrs.io import Acquisition, open_acquisition, plane_sizes, read_labels
from napari_hrs.io._tiff import is_tiff
from napari_hrs.io._zarr import is_zarr
from napari_hrs.io.labels import is_label_image, open_label_image

LayerData = tuple[Any, dict[str, Any], str]
PathLike = str | Path

#: colormap and blending per role; other channels cycle through OTHER_COLORMAPS
ROLE_STYLE: dict[str, dict[str, Any]] = {
    "brightfield": {"colormap": "gray", "blending": "translucent", "percentiles": (0.5, 99.5)},
    "PRM1": {"colormap": "green", "blending": "additive", "percentiles": (1.0, 99.9)},
    "PNA": {"colormap": "magenta", "blending": "additive", "percentiles": (1.0, 99.9)},
}
OTHER_COLORMAPS = ("cyan", "yellow", "red", "blue")
#: pixels per side of the central crop used for contrast limits when the coarsest level is large
CONTRAST_CROP = 2048
#: at most this many pixels per channel enter the percentiles (a regular subsample of the crop)
MAX_SAMPLES = 1_000_000


def _recognised(path: PathLike) -> bool:
    p = Path(path)
    return is_zarr(p) or is_tiff(p)


def get_reader(path: PathLike | list[PathLike]) -> Callable[[Any], list[LayerData]] | None:
    """The reader function for ``path`` (one path or a list), or None if it is not ours.

    Recognises zarr directories (``*.zarr``, or any directory with zarr metadata files) and TIFF
    files, judging from the path only (no pixels, no parsing).
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_recognised(p) for p in paths):
        return None
    return read_paths


def read_paths(path: PathLike | list[PathLike]) -> list[LayerData]:
    """Open each path and return its channel (and NGFF label) layers."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        if is_label_image(Path(p)):  # a detection result / NGFF labels: cell ids, not pixels
            layers.append(label_image_layer(Path(p)))
        else:
            layers.extend(acquisition_layers(open_for_viewing(p)))
    return layers


def label_image_layer(path: Path) -> LayerData:
    """A ``labels`` layer for an NGFF label image opened on its own: a detection result
    ``RESULT.zarr`` (shown as the Detect widget shows one: its table as the features), or any
    ``IMAGE.ome.zarr/labels/NAME``; lazy, multiscale when it has levels, ``scale`` = pixel size
    in µm when known."""
    from napari_hrs._widgets._display import result_layer_data
    from napari_hrs.engine.results import META_NAME, read_detection_result

    levels, px = open_label_image(path)
    if (path / META_NAME).is_file():
        data, kwargs = result_layer_data(read_detection_result(path))
    else:
        data, kwargs = (levels if len(levels) > 1 else levels[0]), {"multiscale": len(levels) > 1}
    kwargs.update(name=path.name.removesuffix(".zarr") or path.name,
                  metadata={"label_image_path": str(path)})  # fmt: skip
    if px is not None:
        kwargs["scale"] = (px, px)
    return (data, kwargs, "labels")


def open_for_viewing(path: PathLike) -> Acquisition:
    """Open ``path`` leniently: roles may be missing; a stack shows T=0 and its middle Z plane."""
    sizes = plane_sizes(path)
    t = 0 if sizes["t"] > 1 else None
    z = sizes["z"] // 2 if sizes["z"] > 1 else None
    if t is not None or z is not None:
        warnings.warn(
            f"{path}: a stack (T={sizes['t']}, Z={sizes['z']}); showing plane t={t or 0}, "
            f"z={z or 0}. Use napari_hrs.io.open_acquisition(path, t=..., z=...) for another",
            stacklevel=2,
        )
    return open_acquisition(path, t=t, z=z, strict=False)


def contrast_limits(
    level: da.Array, percentiles: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Per-channel contrast limits of a ``(C, Y, X)`` level (use the coarsest), from percentiles.

    At most a central ``CONTRAST_CROP`` square is read, so this is cheap on any file.
    """
    _, h, w = level.shape
    y0, x0 = max(0, (h - CONTRAST_CROP) // 2), max(0, (w - CONTRAST_CROP) // 2)
    crop = np.asarray(
        level[:, y0 : y0 + CONTRAST_CROP, x0 : x0 + CONTRAST_CROP].compute(scheduler="threads")
    )
    out = []
    for c, (plo, phi) in enumerate(percentiles):
        values = crop[c].ravel()
        values = values[:: max(1, values.size // MAX_SAMPLES)].astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            out.append((0.0, 1.0))
            continue
        lo, hi = (float(v) for v in np.percentile(values, [plo, phi]))
        if hi <= lo:
            hi = lo + 1.0
        out.append((lo, hi))
    return out


def _style(acq: Acquisition, index: int, n_other: int) -> dict[str, Any]:
    role = acq.role_of(index)
    if role is not None:
        return dict(ROLE_STYLE[role])
    return {
        "colormap": OTHER_COLORMAPS[n_other % len(OTHER_COLORMAPS)],
        "blending": "additive",
        "percentiles": (1.0, 99.9),
    }


def acquisition_layers(acq: Acquisition, *, labels: bool = True) -> list[LayerData]:
    """napari layer data for an :class:`~napari_hrs.io.Acquisition`.

    One ``image`` layer per channel (brightfield first, gray, translucent; PRM1 green and PNA
    magenta, additive; other channels additive in cyan, yellow ...), multiscale when the file has
    more than one level, ``scale`` = pixel size in µm when known. With ``labels``, NGFF label
    images of an OME-Zarr follow as ``labels`` layers.

    Returns
    -------
    list of (data, kwargs, layer_type)
        ``data`` is a dask ``(Y, X)`` array or a list of them (multiscale).
    """
    order = sorted(range(acq.n_channels), key=lambda i: (acq.role_of(i) != "brightfield", i))
    styles, n_other = {}, 0
    for i in order:
        styles[i] = _style(acq, i, n_other)
        n_other += acq.role_of(i) is None
    limits = contrast_limits(
        acq.levels[-1], [styles[i]["percentiles"] for i in range(acq.n_channels)]
    )
    px = acq.pixel_size_um
    common: dict[str, Any] = {"scale": (px, px)} if px is not None else {}
    base_meta = {
        "acquisition_path": str(acq.path),
        "pixel_size_um": px,
        "scene": acq.scene,
        "plane": dict(acq.plane),
        "roles": dict(acq.roles),
        "channel_names": list(acq.channel_names),
    }
    multiscale = acq.n_levels > 1
    layers: list[LayerData] = []
    for i in order:
        style = styles[i]
        data: Any = [acq.channel(i, lv) for lv in range(acq.n_levels)]
        data = data if multiscale else data[0]
        kwargs = {
            "name": acq.channel_names[i],
            "colormap": style["colormap"],
            "blending": style["blending"],
            "contrast_limits": limits[i],
            "rgb": False,
            "multiscale": multiscale,
            "metadata": {**base_meta, "role": acq.role_of(i), "channel_index": i},
            **common,
        }
        layers.append((data, kwargs, "image"))
    if labels:
        for name, lab in read_labels(acq).items():
            sy, sx = lab.scale
            scale = (sy * px, sx * px) if px is not None else (sy, sx)
            kwargs = {
                "name": name,
                "multiscale": len(lab.levels) > 1,
                "scale": scale,
                "metadata": {**base_meta, "ngff_label": name, "role": None},
            }
            data = lab.levels if len(lab.levels) > 1 else lab.levels[0]
            layers.append((data, kwargs, "labels"))
    return layers
