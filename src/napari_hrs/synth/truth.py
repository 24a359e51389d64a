"""Ground truth of a synthetic acquisition: the per-cell table and reading it back.

The table (``labels/ground_truth/cells.csv``) is the truth the images were drawn from: one row
per label id that has visible pixels in the label image.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import pandas as pd
import zarr

from napari_hrs.errors import AcquisitionError
from napari_hrs.io.direct import lazy_from_zarr
from napari_hrs.synth.scene import SceneParams, block_cells

#: name of the NGFF label image holding the instance labels
LABEL_NAME = "ground_truth"
#: the per-cell table, inside the label group's folder
TABLE_NAME = "cells.csv"
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
    "defocus_um",
)


def truth_table(scene: SceneParams, areas: dict[int, int]) -> pd.DataFrame:
    """The cells of ``scene`` that have visible pixels, sorted by label id.

    Parameters
    ----------
    scene : SceneParams
        The scene the image was rendered from.
    areas : dict
        Label id -> number of visible level-0 pixels (cells missing from it are left out).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TABLE_COLUMNS`; centroids are the drawn cell centres (level-0 pixels and
        µm), ``diameter_um`` the drawn diameter (elongated spermatid: head length; debris:
        nominal size), ``area_px`` the visible pixel count, ``defocus_um`` the blur (0 = sharp).
    """
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
                        round(c.defocus_um, 3),
                    )
                )
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return df.sort_values("label_id", ignore_index=True)


def read_ground_truth(path: str | os.PathLike) -> tuple[da.Array, pd.DataFrame]:
    """The ground truth of a synthetic acquisition written by ``generate_acquisition``.

    Parameters
    ----------
    path : path
        The ``.ome.zarr`` image folder.

    Returns
    -------
    labels : dask.array.Array
        uint32 ``(Y, X)`` level-0 instance labels (lazy; 0 = background).
    table : pandas.DataFrame
        One row per label id present in ``labels`` (columns :data:`TABLE_COLUMNS`):
        ``cell_type``, ``PRM1_positive``, ``PNA_positive`` (bool), centroid in pixels and µm,
        ``diameter_um``, ``area_px`` (visible pixels), ``defocus_um``.
    """
    group = Path(path) / "labels" / LABEL_NAME
    table = group / TABLE_NAME
    if not table.is_file():
        raise AcquisitionError(
            f"{path}: no synthetic ground truth ({table} missing); pass an acquisition written "
            "by napari_hrs.synth.generate_acquisition / `napari-hrs synth`"
        )
    arr = zarr.open_array(store=str(group / "0"), mode="r")
    df = pd.read_csv(table)
    for col in ("PRM1_positive", "PNA_positive"):
        df[col] = df[col].astype(bool)
    return lazy_from_zarr(arr), df
