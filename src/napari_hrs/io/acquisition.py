"""The :class:`Acquisition`: one 2-D multichannel plane of a microscopy file, lazily.

Every module of napari-hrs consumes this: the engine tiles ``channel("brightfield")``, the
markers read ``channel("PRM1")`` and ``channel("PNA")``, the napari reader shows ``levels``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from napari_hrs.errors import ChannelRoleError
from napari_hrs.io.roles import ROLES, canonical_role


@dataclass(eq=False)
class Acquisition:
    """A lazily read multichannel image plane with channel roles.

    Parameters
    ----------
    path : Path
        The file or directory the plane comes from.
    levels : list of dask.array.Array
        Resolution levels, each ``(C, Y, X)``, full resolution first. NumPy arrays are wrapped
        in dask arrays. No pixel is read until a level (or a slice of it) is computed.
    channel_names : list of str
        One name per channel (C axis order).
    pixel_size_um : float or None
        Size of one full-resolution pixel in micrometres (X; Y when X is unknown); None when the
        file does not say (never a guess).
    roles : dict
        Role -> channel index, e.g. ``{"brightfield": 0, "PRM1": 2, "PNA": 1}``. PRM1 and PNA are
        optional.
    level_scales : list of (float, float), optional
        Downsample factor ``(y, x)`` of each level relative to level 0 (``(1.0, 1.0)`` first).
        Computed from the level shapes when not given.
    scene : str or None
        The scene (image series) the plane belongs to, when the file has names for them.
    plane : dict
        Indices chosen on the non-image axes, e.g. ``{"t": 0, "z": 3}`` (empty for 2-D files).
    format : str
        What was read, e.g. ``"ome-zarr 0.4"``, ``"zarr"``, ``"ome-tiff"``, ``"tiff"``.
    metadata : dict
        Format-specific extras (e.g. ``"zarr_group"``: the image group inside an OME-Zarr).
    """

    path: Path
    levels: list[da.Array]
    channel_names: list[str]
    pixel_size_um: float | None = None
    roles: dict[str, int] = field(default_factory=dict)
    level_scales: list[tuple[float, float]] | None = None
    scene: str | None = None
    plane: dict[str, int] = field(default_factory=dict)
    format: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    #: optional ``(level, c) -> (Y, X)`` builder of one-layer dask graphs (set by the readers)
    _channel_factory: Callable[[int, int], da.Array] | None = field(default=None, repr=False)
    _channel_cache: dict[tuple[int, int], da.Array] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.levels:
            raise ValueError(f"{self.path}: an Acquisition needs at least one level")
        self.levels = [lv if isinstance(lv, da.Array) else da.asarray(lv) for lv in self.levels]
        c0 = self.levels[0].shape[0]
        for i, lv in enumerate(self.levels):
            if lv.ndim != 3 or lv.shape[0] != c0:
                raise ValueError(
                    f"{self.path}: level {i} has shape {lv.shape}; every level must be "
                    f"(C, Y, X) with C = {c0}"
                )
        self.channel_names = [str(n) for n in self.channel_names]
        if len(self.channel_names) != c0:
            raise ValueError(
                f"{self.path}: {len(self.channel_names)} channel names {self.channel_names} "
                f"for {c0} channels"
            )
        for role, idx in self.roles.items():
            if role not in ROLES:
                raise ChannelRoleError(f"{self.path}: unknown role {role!r}; roles are {ROLES}")
            if not 0 <= idx < c0:
                raise ChannelRoleError(
                    f"{self.path}: role {role!r} -> channel {idx}, but there are {c0} channels"
                )
        if self.pixel_size_um is not None:
            self.pixel_size_um = float(self.pixel_size_um)
            if not np.isfinite(self.pixel_size_um) or self.pixel_size_um <= 0:
                raise ValueError(
                    f"{self.path}: pixel_size_um must be > 0, got {self.pixel_size_um}"
                )
        if self.level_scales is None:
            _, y0, x0 = self.levels[0].shape
            self.level_scales = [
                (y0 / max(lv.shape[1], 1), x0 / max(lv.shape[2], 1)) for lv in self.levels
            ]
        elif len(self.level_scales) != len(self.levels):
            raise ValueError(
                f"{self.path}: {len(self.level_scales)} level scales for {len(self.levels)} levels"
            )
        self.level_scales = [(float(fy), float(fx)) for fy, fx in self.level_scales]

    # --- shape and type ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, Y, X)`` of level 0, in pixels."""
        c, y, x = self.levels[0].shape
        return int(c), int(y), int(x)

    @property
    def n_channels(self) -> int:
        """Number of channels (C)."""
        return self.shape[0]

    @property
    def n_levels(self) -> int:
        """Number of resolution levels."""
        return len(self.levels)

    @property
    def dtype(self) -> np.dtype:
        """Pixel data type (the same on every level)."""
        return self.levels[0].dtype

    # --- channels and roles ------------------------------------------------------------------
    def has_role(self, role: str) -> bool:
        """Whether a channel has ``role`` (``"brightfield"``, ``"PRM1"``, ``"PNA"``, or alias)."""
        canon = canonical_role(role)
        return canon is not None and canon in self.roles

    def role_of(self, index: int) -> str | None:
        """The role of channel ``index``, or None."""
        for role, idx in self.roles.items():
            if idx == index:
                return role
        return None

    def channel_index(self, role_or_name: str | int) -> int:
        """Channel index of a role (``"brightfield"``, ``"PRM1"``, ``"PNA"``), a name or an index.

        Roles win over names; names match exactly first, then case-insensitively.

        Raises
        ------
        ChannelRoleError
            When nothing matches; the message lists the roles and channel names.
        """
        n = self.n_channels
        if isinstance(role_or_name, (int, np.integer)) and not isinstance(role_or_name, bool):
            if 0 <= int(role_or_name) < n:
                return int(role_or_name)
            raise ChannelRoleError(
                f"{self.path}: channel index {role_or_name} out of range 0..{n - 1}"
            )
        key = str(role_or_name)
        for role, idx in self.roles.items():
            if key.lower() == role.lower():
                return idx
        exact = [i for i, nm in enumerate(self.channel_names) if nm == key]
        loose = [i for i, nm in enumerate(self.channel_names) if nm.lower() == key.lower()]
        if len(exact or loose) == 1:
            return (exact or loose)[0]
        canon = canonical_role(key)
        if canon is not None and canon in self.roles:
            return self.roles[canon]
        raise ChannelRoleError(
            f"{self.path}: no channel {key!r}; roles found {self.roles}, channel names "
            f"{self.channel_names}"
            + (
                f"; reopen with channels={{{canon!r}: <index>}} to assign it"
                if canon is not None
                else ""
            )
        )

    def channel(self, role_or_name: str | int, level: int = 0) -> da.Array:
        """One channel of one level as a lazy dask array ``(Y, X)``.

        The array is cached and, for files read by napari-hrs, built directly on the store (a
        one-layer graph), so slicing a tile out of a whole-slide channel stays cheap.

        Parameters
        ----------
        role_or_name : str or int
            A role (``"brightfield"``, ``"PRM1"``, ``"PNA"``), a channel name, or an index.
        level : int
            Resolution level, 0 = full resolution; negative counts from the coarsest.
        """
        if not -self.n_levels <= level < self.n_levels:
            raise IndexError(f"{self.path}: level {level} out of range; {self.n_levels} levels")
        key = (level % self.n_levels, self.channel_index(role_or_name))
        if key not in self._channel_cache:
            if self._channel_factory is not None:
                self._channel_cache[key] = self._channel_factory(*key)
            else:
                self._channel_cache[key] = self.levels[key[0]][key[1]]
        return self._channel_cache[key]

    def pixel_size_at(self, level: int) -> float | None:
        """Pixel size (µm, X) of ``level``, or None when the pixel size is unknown."""
        if self.pixel_size_um is None:
            return None
        assert self.level_scales is not None
        return self.pixel_size_um * self.level_scales[level][1]

    # --- resources ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release open file handles (TIFF); the dask arrays must not be computed afterwards."""
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Acquisition:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c, y, x = self.shape
        px = "unknown" if self.pixel_size_um is None else f"{self.pixel_size_um:g} µm"
        return (
            f"Acquisition({str(self.path)!r}, {self.format or 'array'}, C={c} Y={y} X={x} "
            f"{self.dtype}, levels={self.n_levels}, channels={self.channel_names}, "
            f"roles={self.roles}, pixel size {px}"
            + (f", scene={self.scene!r}" if self.scene is not None else "")
            + (f", plane={self.plane}" if self.plane else "")
            + ")"
        )
