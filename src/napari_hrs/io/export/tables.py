"""Per-cell tables as CSV, and the picking list (hRS centroids in µm, best score first)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.errors import AcquisitionError
from napari_hrs.io.export._atomic import PathLike, _write_json, atomic_target

#: detection class names that count as hRS in the picking list (case-insensitive)
HRS_CLASSES: tuple[str, ...] = ("hRS", "round_spermatid", "round spermatid", "spermatid")
#: columns of :func:`picking_list` (marker columns only when the table has them)
PICKING_COLUMNS: tuple[str, ...] = (
    "rank", "id", "class_name", "score", "x_um", "y_um", "area_um2",
    "PRM1_positive", "PNA_positive", "category", "x_px", "y_px",
)  # fmt: skip


def save_table(
    table: Any,
    path: PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a per-cell table as CSV (no index column); provenance in ``<stem>.provenance.json``.

    Categorical columns are written as their labels; units are those of the column names
    (``_px`` pixels, ``_um`` µm, ``_um2`` µm²).
    """
    path = Path(path)
    with atomic_target(path, overwrite=overwrite) as tmp:
        table.to_csv(tmp, index=False)
    if metadata is not None:
        _write_json(path.with_name(f"{path.stem}.provenance.json"), dict(metadata))
    return path


def _id_column(table: Any) -> str:
    for col in ("id", "label_id", "index"):
        if col in table.columns:
            return col
    raise ValueError(f"the table has no cell id column ('id', 'label_id' or 'index'); columns: "
                     f"{list(table.columns)}")  # fmt: skip


def picking_list(
    table: Any,
    *,
    pixel_size_um: float | None = None,
    hrs_only: bool = True,
    min_score: float | None = None,
) -> Any:
    """hRS to pick, best first: centroids in µm ranked by detection score, with marker calls.

    Parameters
    ----------
    table : DataFrame
        A detection table (``id``, ``class_name``, ``score``, ``centroid_y_px``,
        ``centroid_x_px``...), optionally joined with marker calls (``PRM1_positive``,
        ``PNA_positive``, ``category``).
    pixel_size_um : float, optional
        Converts pixel centroids to µm; default the table's ``centroid_*_um`` columns.
    hrs_only : bool
        Keep the rows whose ``class_name`` is one of :data:`HRS_CLASSES` (when the column exists).
    min_score : float, optional
        Drop rows scoring below this.

    Returns
    -------
    DataFrame
        :data:`PICKING_COLUMNS` (marker columns only when present): ``rank`` 1..N, ``x_um`` /
        ``y_um`` from the image's top-left corner (x = column), ``x_px`` / ``y_px`` in pixels.
    """
    import pandas as pd

    idc = _id_column(table)
    rows = table
    if hrs_only and "class_name" in rows.columns:
        wanted = {c.lower() for c in HRS_CLASSES}
        rows = rows[rows["class_name"].astype(str).str.lower().isin(wanted).to_numpy()]
    if min_score is not None and "score" in rows.columns:
        rows = rows[(rows["score"] >= float(min_score)).to_numpy()]
    missing = [c for c in ("centroid_y_px", "centroid_x_px") if c not in rows.columns]
    if missing:
        raise ValueError(f"the table has no {missing} column(s); pass a detection or marker "
                         "table (napari_hrs.engine.detect / napari_hrs.markers.quantify)")  # fmt: skip
    out = pd.DataFrame({"id": rows[idc].to_numpy()})
    out["class_name"] = rows["class_name"].astype(str).to_numpy() if "class_name" in rows else "cell"  # fmt: skip
    out["score"] = rows["score"].to_numpy(float) if "score" in rows else np.nan
    y_px = rows["centroid_y_px"].to_numpy(float)
    x_px = rows["centroid_x_px"].to_numpy(float)
    if pixel_size_um:
        x_um, y_um = x_px * pixel_size_um, y_px * pixel_size_um
        area = rows["area_px"].to_numpy(float) * pixel_size_um**2 if "area_px" in rows else np.nan
    elif "centroid_x_um" in rows and np.isfinite(rows["centroid_x_um"].to_numpy(float)).all():
        x_um, y_um = rows["centroid_x_um"].to_numpy(float), rows["centroid_y_um"].to_numpy(float)
        area = rows["area_um2"].to_numpy(float) if "area_um2" in rows else np.nan
    else:
        raise AcquisitionError("the pixel size is unknown, so centroids cannot be given in µm; "
                               "pass pixel_size_um (µm per pixel)")  # fmt: skip
    out["x_um"], out["y_um"], out["area_um2"] = x_um, y_um, area
    for col in ("PRM1_positive", "PNA_positive", "category"):
        if col in rows.columns:
            vals = rows[col].to_numpy()
            out[col] = vals.astype(str) if col == "category" else vals.astype(bool)
    out["x_px"], out["y_px"] = x_px, y_px
    out = out.sort_values(["score", "id"], ascending=[False, True], kind="stable")
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)


def save_picking_list(table: Any, path: PathLike, *, metadata: Mapping[str, Any] | None = None,
                      overwrite: bool = False, **kwargs: Any) -> Path:  # fmt: skip
    """:func:`picking_list` of ``table`` written as CSV (keyword arguments go to it)."""
    return save_table(picking_list(table, **kwargs), path, metadata=metadata, overwrite=overwrite)
