"""Write a synthetic acquisition as OME-Zarr, chunk by chunk, and read its ground truth back.

Layout (NGFF 0.4, zarr format 2)::

    OUT.ome.zarr/
      0, 1, ...                      uint16 (C, Y, X): brightfield, PRM1, PNA; 2x mean pyramid
      labels/ground_truth/0, 1, ...  uint32 (Y, X) instance labels; stride-2 pyramid
      labels/ground_truth/cells.csv  one row per label id (the truth the images were drawn from)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import zarr

from napari_hrs.errors import AcquisitionError, Cancelled
from napari_hrs.io.export._atomic import atomic_target
from napari_hrs.io.ngff import create_image, create_labels, fill_pyramid, n_levels_for
from napari_hrs.synth.render import CHANNELS, render_region
from napari_hrs.synth.scene import SceneParams, block_cells, make_scene

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

LABEL_NAME = "ground_truth"
TABLE_NAME = "cells.csv"
COLORS = ("FFFFFF", "00FF00", "FF00FF")
WINDOWS = ((300.0, 3600.0), (80.0, 1500.0), (80.0, 1500.0))
TABLE_COLUMNS = (
    "label_id",
    "cell_type",
    "PRM1_positive",
    "PNA_positive",
    "centroid_y_px",
    "centroid_x_px",
    "centroid_y_um",
    "centroid_x_um",
    "diameter_um",
    "area_px",
)


def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        shape = (int(size), int(size))
    else:
        shape = (int(size[0]), int(size[1]))
    if min(shape) < 16:
        raise ValueError(f"size {size!r} is too small; pass at least 16 pixels per side")
    return shape


def truth_table(scene: SceneParams, areas: dict[int, int]) -> pd.DataFrame:
    """The cells of ``scene`` that have visible pixels (``areas``: label id -> pixel count)."""
    px = scene.pixel_size_um
    rows = []
    nby, nbx = scene.n_blocks
    for by in range(nby):
        for bx in range(nbx):
            for c in block_cells(scene, by, bx):
                n = areas.get(c.label_id, 0)
                if n == 0:
                    continue
                rows.append(
                    (
                        c.label_id,
                        c.type,
                        c.prm1,
                        c.pna,
                        round(c.cy, 3),
                        round(c.cx, 3),
                        round(c.cy * px, 4),
                        round(c.cx * px, 4),
                        round(c.diameter_um, 3),
                        n,
                    )
                )
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return df.sort_values("label_id", ignore_index=True)


def generate_acquisition(
    path: str | os.PathLike,
    *,
    size: int | tuple[int, int] = 4096,
    seed: int = 0,
    pixel_size_um: float = 0.325,
    density: float = 1.0,
    chunk: int = 1024,
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Generate a synthetic hRS acquisition as an OME-Zarr with ground-truth labels.

    Parameters
    ----------
    path : path
        The new ``.ome.zarr`` directory (written atomically).
    size : int or (int, int)
        Image size ``(Y, X)`` in pixels (an int gives a square).
    seed : int
        The same seed gives the same pixels, labels and table, whatever ``chunk`` is.
    pixel_size_um : float
        Pixel size, µm (cell sizes are in µm, so this sets their size in pixels).
    density : float
        Scale factor on the default 3.5 cells per 1000 µm².
    chunk : int
        Zarr chunk side (pixels); rendering happens one chunk at a time (bounded memory).
    overwrite : bool
        Replace an existing ``path``.
    progress, cancel : callable, optional
        ``progress(done, total)`` per chunk; ``cancel()`` returning True stops (nothing written).

    Returns
    -------
    Path
        ``path``.
    """
    shape = _shape(size)
    if chunk < 16:
        raise ValueError(f"chunk {chunk} is too small; pass at least 16 (e.g. 1024)")
    if pixel_size_um <= 0 or density <= 0:
        raise ValueError(
            f"pixel_size_um ({pixel_size_um}) and density ({density}) must be positive"
        )
    scene = make_scene(seed, shape, pixel_size_um, density)
    n_levels = n_levels_for(shape)
    chunks = (min(chunk, shape[0]), min(chunk, shape[1]))
    tiles = [(y, x) for y in range(0, shape[0], chunks[0]) for x in range(0, shape[1], chunks[1])]
    n_pyr = 0
    for i in range(1, n_levels):
        ly, lx = (-(-n // 2**i) for n in shape)  # ceil: each level halves, rounding up
        n_pyr += -(-ly // chunks[0]) * -(-lx // chunks[1])
    total = len(tiles) + 2 * n_pyr
    path = Path(path)
    with atomic_target(path, overwrite=overwrite) as tmp:
        root = create_image(
            tmp,
            (len(CHANNELS), *shape),
            chunks=chunks,
            pixel_size_um=pixel_size_um,
            n_levels=n_levels,
            channel_names=CHANNELS,
            colors=COLORS,
            windows=WINDOWS,
            name=path.name,
        )
        root.attrs["napari_hrs_synth"] = {
            "seed": int(seed),
            "size": list(shape),
            "pixel_size_um": float(pixel_size_um),
            "density": float(density),
            "chunk": int(chunk),
        }
        lab0 = create_labels(
            tmp,
            LABEL_NAME,
            shape,
            chunks=chunks,
            pixel_size_um=pixel_size_um,
            n_levels=n_levels,
            image_label={"source": {"image": "../../"}},
        )
        img0 = root["0"]
        areas: dict[int, int] = {}
        for done, (y, x) in enumerate(tiles, start=1):
            if cancel is not None and cancel():
                raise Cancelled(f"synthetic acquisition {path} cancelled; nothing was written")
            h, w = min(chunks[0], shape[0] - y), min(chunks[1], shape[1] - x)
            image, labels = render_region(scene, y, x, h, w)
            img0[:, y : y + h, x : x + w] = image
            lab0[y : y + h, x : x + w] = labels
            ids, counts = np.unique(labels, return_counts=True)
            for i, n in zip(ids.tolist(), counts.tolist(), strict=True):
                if i:
                    areas[i] = areas.get(i, 0) + n
            if progress is not None:
                progress(done, total)

        def sub(offset: int) -> Progress | None:
            return None if progress is None else (lambda d, _t: progress(offset + d, total))

        fill_pyramid(root, "image", sub(len(tiles)), cancel)
        fill_pyramid(
            zarr.open_group(str(tmp / "labels" / LABEL_NAME), mode="r+"),
            "labels",
            sub(len(tiles) + n_pyr),
            cancel,
        )
        truth_table(scene, areas).to_csv(tmp / "labels" / LABEL_NAME / TABLE_NAME, index=False)
    return path


def read_ground_truth(path: str | os.PathLike) -> tuple[da.Array, pd.DataFrame]:
    """The ground truth of a synthetic acquisition.

    Returns
    -------
    labels : dask.array.Array
        uint32 ``(Y, X)`` level-0 instance labels (lazy).
    table : pandas.DataFrame
        One row per label id: ``cell_type``, ``PRM1_positive``, ``PNA_positive``, centroid in
        pixels and µm, ``diameter_um``, ``area_px`` (visible pixels).
    """
    group = Path(path) / "labels" / LABEL_NAME
    table = group / TABLE_NAME
    if not table.is_file():
        raise AcquisitionError(
            f"{path}: no synthetic ground truth ({table} missing); pass an acquisition written "
            "by napari_hrs.synth.generate_acquisition / `napari-hrs synth`"
        )
    arr = zarr.open_array(store=str(group / "0"), mode="r")
    return da.from_zarr(arr), pd.read_csv(table)
