"""Fallback reader for other formats through bioio plugins (CZI, ND2, LIF ... when installed).

bioio's ``BioImage`` gives lazy dask data with named dimensions, channel names and physical
pixel sizes in micrometres. How lazy the data is depends on the plugin; the formats napari-hrs
reads itself (zarr, TIFF) never come here. bioio is imported only when this path is taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_hrs.errors import AcquisitionError
from napari_hrs.io._raw import RawImage


def open_bioio(path: Path, scene: int | str | None = None, reader: Any = None) -> RawImage:
    """Open ``path`` with bioio (any installed plugin, or ``reader``) as a :class:`RawImage`.

    Parameters
    ----------
    path : Path
        The image file or directory.
    scene : int or str, optional
        Scene index or id; default the first.
    reader : bioio Reader class, optional
        Force a plugin (e.g. ``bioio_ome_tiff.Reader``); default: let bioio choose.
    """
    try:
        from bioio import BioImage
        from bioio_base.exceptions import UnsupportedFileFormatError
    except ImportError as exc:  # pragma: no cover - bioio is a dependency
        raise AcquisitionError(f"{path}: unrecognised format (bioio unavailable)") from exc
    try:
        img = BioImage(path, reader=reader) if reader is not None else BioImage(path)
    except UnsupportedFileFormatError as exc:
        raise AcquisitionError(
            f"{path}: unrecognised image format (suffix {path.suffix!r}); napari-hrs reads "
            f"OME-Zarr / zarr directories and (OME-)TIFF files, and other formats through "
            f"installed bioio plugins (e.g. pip install bioio-czi)"
        ) from exc
    except Exception as exc:
        raise AcquisitionError(f"{path}: bioio could not read the file ({exc})") from exc
    scenes = [str(s) for s in img.scenes]
    if scene is not None:
        if isinstance(scene, str) and scene in scenes:
            img.set_scene(scene)
        elif isinstance(scene, int) and not isinstance(scene, bool) and 0 <= scene < len(scenes):
            img.set_scene(scene)
        else:
            raise AcquisitionError(
                f"{path}: scene {scene!r} not found; the file has scenes {scenes}; "
                f"pass scene=<0..{len(scenes) - 1}> or a name (--scene on the command line)"
            )
    levels = []
    for level in img.resolution_levels:
        img.set_resolution_level(level)
        levels.append(img.get_image_dask_data("TCZYX"))
    img.set_resolution_level(0)
    n_c = int(levels[0].shape[1])
    names = [str(n) for n in (img.channel_names or [])]
    sizes = img.physical_pixel_sizes
    size = sizes.X if sizes.X is not None else sizes.Y
    return RawImage(
        levels=levels,
        axes="tczyx",
        channel_names=names if len(names) == n_c else None,
        pixel_size_um=float(size) if size else None,
        scene=str(img.current_scene) if len(scenes) > 1 else None,
        format=f"bioio ({type(img.reader).__module__.split('.')[0]})",
        metadata={"bioio_reader": type(img.reader).__module__},
        closers=[],
    )
