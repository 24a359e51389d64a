"""``open_acquisition``: any supported file -> :class:`~napari_hrs.io.Acquisition`, lazily.

Dispatch: zarr directories (OME-Zarr 0.1-0.5 or plain arrays/groups) -> :mod:`._zarr`;
TIFF files (OME-TIFF, ImageJ, plain, pyramidal) -> :mod:`._tiff`; anything else -> bioio plugins
(:mod:`._bioio`). Only metadata is read; pixels are read when a dask array is computed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from napari_hrs.errors import AcquisitionError
from napari_hrs.io._bioio import open_bioio
from napari_hrs.io._picture import is_picture, open_picture
from napari_hrs.io._raw import RawImage, channel_factory, choose_plane, plane_levels
from napari_hrs.io._tiff import is_tiff, open_tiff
from napari_hrs.io._zarr import is_zarr, open_zarr
from napari_hrs.io.acquisition import Acquisition
from napari_hrs.io.roles import resolve_roles


class AcquisitionNotFoundError(AcquisitionError, FileNotFoundError):
    """The image path does not exist (an :class:`AcquisitionError` and a FileNotFoundError)."""


def _path(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        parent = p.parent if p.parent.exists() else None
        hint = f"; the folder {parent} exists" if parent is not None else ""
        raise AcquisitionNotFoundError(f"{p}: no such file or directory{hint}")
    return p


def open_raw(path: str | os.PathLike[str], scene: int | str | None = None) -> RawImage:
    """The format reader's view of ``path`` (all axes, all levels); metadata only."""
    p = _path(path)
    if is_zarr(p):
        raw = open_zarr(p, scene)
    elif is_tiff(p):
        raw = open_tiff(p, scene)
    elif is_picture(p):
        if scene not in (None, 0):
            raise AcquisitionError(f"{p}: a picture has one scene; got scene={scene!r}")
        raw = open_picture(p)
    elif p.is_dir():
        raise AcquisitionError(
            f"{p}: a directory that is not a zarr store (no .zgroup, .zarray or zarr.json); "
            f"pass an OME-Zarr / zarr directory or an image file"
        )
    else:
        raw = open_bioio(p, scene)
    # unique per open: napari's dask cache must never serve chunks of a rewritten file
    raw.token = f"{p.resolve()}:{raw.scene}:{uuid.uuid4().hex}"
    return raw


def plane_sizes(path: str | os.PathLike[str], *, scene: int | str | None = None) -> dict[str, int]:
    """Axis sizes of ``path`` at full resolution, e.g. ``{"t": 1, "c": 3, "z": 5, "y": ..}``.

    Use it to offer a Z / T choice before :func:`open_acquisition`; reads metadata only.
    """
    raw = open_raw(path, scene)
    try:
        sizes = raw.sizes()
    finally:
        for close in raw.closers:
            close()
    return {a: sizes.get(a, 1) for a in "tczyx"}


def open_acquisition(
    path: str | os.PathLike[str],
    *,
    channels: Mapping[str, int | str] | Sequence[str] | None = None,
    scene: int | str | None = None,
    t: int | None = None,
    z: int | None = None,
    pixel_size_um: float | None = None,
    strict: bool = True,
) -> Acquisition:
    """Open one 2-D multichannel plane of an image file, lazily (no pixel is read).

    Parameters
    ----------
    path : str or PathLike
        OME-Zarr (NGFF 0.4 / zarr v2, 0.5 / zarr v3, multiscale, bioformats2raw layout), a plain
        zarr array or group, an OME-TIFF / TIFF file (pyramids included), or another format a
        bioio plugin reads.
    channels : mapping or list of str, optional
        Roles by index or name, ``{"brightfield": 0, "PRM1": 2, "PNA": 1}`` (roles not given are
        still found from the channel names), or a list of channel names in channel order (for
        plain zarr / TIFF without names).
    scene : int or str, optional
        Image series / scene; default the first.
    t, z : int, optional
        Time point and Z plane; required when the file has more than one.
    pixel_size_um : float, optional
        Pixel size in µm; overrides the file's (which may be missing).
    strict : bool
        When False, a missing brightfield channel or an ambiguous role is left unassigned instead
        of raising (the napari reader uses this to show any file).

    Returns
    -------
    Acquisition
        ``levels`` are ``(C, Y, X)`` dask arrays, full resolution first.

    Raises
    ------
    AcquisitionNotFoundError
        ``path`` does not exist (also a FileNotFoundError).
    AcquisitionError
        Unrecognised format, unsupported layout, or a Z/T stack without ``z=`` / ``t=``.
    ChannelRoleError
        No brightfield channel, an ambiguous role, or a bad index in ``channels``.

    Examples
    --------
    >>> acq = open_acquisition("slide.ome.zarr", channels={"brightfield": 0})  # doctest: +SKIP
    >>> tile = acq.channel("brightfield")[0:512, 0:512].compute()  # doctest: +SKIP
    """
    raw = open_raw(path, scene)
    p = Path(path).expanduser()
    try:
        plane = choose_plane(raw, p, t, z)
        levels = plane_levels(raw, plane)
        n_c = int(levels[0].shape[0])
        found = raw.channel_names or [f"C{i}" for i in range(n_c)]
        names, roles = resolve_roles(
            found, channels, source=p, strict=strict, rgb=bool(raw.metadata.get("rgb"))
        )
        return Acquisition(
            path=p,
            levels=levels,
            channel_names=names,
            pixel_size_um=pixel_size_um if pixel_size_um is not None else raw.pixel_size_um,
            roles=roles,
            level_scales=raw.level_scales,
            scene=raw.scene,
            plane={a: v for a, v in plane.items() if a in "tz"},
            format=raw.format,
            metadata=dict(raw.metadata),
            _closers=list(raw.closers),
            _channel_factory=channel_factory(raw, plane),
        )
    except Exception:
        for close in raw.closers:
            close()
        raise
