"""Turn batch inputs (paths, globs, folders, OME-Zarr plates) into a list of acquisitions.

Each acquisition gets a short unique ``name`` used for its result (``OUT/<name>.zarr``) and its
manifest entry. Expansion only lists files and reads small metadata (``.zattrs`` /
``zarr.json``); no pixel is read.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from napari_hrs.io._picture import PICTURE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "BatchInput", "expand_inputs"]

#: file names taken from a folder (OME-Zarr directories are recognised by their metadata)
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".ome.zarr", ".zarr", ".ome.tif", ".ome.tiff", ".tif", ".tiff", *PICTURE_SUFFIXES,
)  # fmt: skip


@dataclass(frozen=True)
class BatchInput:
    """One acquisition of a batch: its ``path`` and the ``name`` of its result."""

    path: Path
    name: str


def _zarr_attrs(path: Path) -> dict | None:
    """The group attributes of a zarr directory (v2 ``.zattrs`` or v3 ``zarr.json``), else None."""
    for meta, key in ((path / ".zattrs", None), (path / "zarr.json", "attributes")):
        if meta.is_file():
            try:
                data = json.loads(meta.read_text())
            except (OSError, ValueError):
                return {}
            attrs = data.get(key, {}) if key else data
            return attrs.get("ome", attrs) if isinstance(attrs, dict) else {}
    if (path / ".zgroup").is_file() or (path / ".zarray").is_file():
        return {}
    return None


def _plate_fields(path: Path, attrs: dict) -> list[Path]:
    """Every field image of an NGFF HCS plate (``row/column/field``)."""
    fields = []
    for well in attrs["plate"].get("wells", []):
        well_dir = path / well["path"]
        well_attrs = _zarr_attrs(well_dir) or {}
        for image in well_attrs.get("well", {}).get("images", []):
            fields.append(well_dir / str(image["path"]))
    return fields


def _expand_one(path: Path) -> list[Path]:
    attrs = _zarr_attrs(path) if path.is_dir() else None
    if attrs is not None:
        if "plate" in attrs:
            return _plate_fields(path, attrs)
        return [path]
    if path.is_dir():  # a folder of acquisitions
        found = []
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            lower = child.name.lower()
            if child.is_dir() and _zarr_attrs(child) is not None:
                found.extend(_expand_one(child))
            elif child.is_file() and lower.endswith(IMAGE_SUFFIXES):
                found.append(child)
        return found
    return [path]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "image"


def expand_inputs(inputs: list[str | os.PathLike[str]]) -> list[BatchInput]:
    """Paths, glob patterns (``"scans/*.ome.zarr"``), folders of acquisitions and OME-Zarr HCS
    plates -> one :class:`BatchInput` per acquisition, in the given order, without duplicates.

    A path that does not exist is kept (the batch reports it as a failed input instead of
    dropping it silently); a glob that matches nothing raises :class:`FileNotFoundError`.
    Names are the file stems, made unique with the parent folder or a counter (plate fields:
    ``plate_A_1_0``).
    """
    paths: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text)))
            if not matches:
                raise FileNotFoundError(f"{text!r} matches no file")
            for m in matches:
                paths.extend(_expand_one(Path(m)))
        else:
            paths.extend(_expand_one(Path(text).expanduser()))
    seen: set[Path] = set()
    unique = []
    for p in paths:
        key = p.resolve() if p.exists() else p.absolute()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    names: dict[str, int] = {}
    out = []
    for p in unique:
        parts = [_stem(p)]
        # plate fields: plate/row/col/field -> plate_row_col_field
        if len(p.parts) >= 4 and (_zarr_attrs(p.parent.parent.parent) or {}).get("plate"):
            parts = [_stem(p.parent.parent.parent), p.parent.parent.name, p.parent.name, p.name]
        base = "_".join(parts)
        n = names.get(base, 0)
        names[base] = n + 1
        out.append(BatchInput(p, base if n == 0 else f"{base}-{n + 1}"))
    return out
