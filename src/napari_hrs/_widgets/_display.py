"""How a labels layer of cells is shown: its features table, and a colour per cell.

The display state lives on the layer, so every widget reads and writes the same thing:

- ``layer.features``: one row per cell, ``index`` = label id (napari's lookup column), then the
  detection columns (``class_name``, ``score``, box, centroid, area) and, after the Markers
  widget, the marker columns (``PRM1_mean_bgsub``..., ``PRM1_positive``, ``category``).
- ``layer.metadata["hrs_score_threshold"]``: cells scoring below it are hidden (transparent);
  the Detect widget's slider sets it without re-running the model.

:func:`refresh_colors` rebuilds the layer's :class:`~napari.utils.colormaps.DirectLabelColormap`
from both: a random colour per cell, or the marker category colour once cells are called.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

THRESHOLD_KEY = "hrs_score_threshold"
TRANSPARENT = np.zeros(4, np.float32)
UNLISTED = np.array([0.6, 0.6, 0.6, 1.0], np.float32)  # label ids without a table row


def features_table(table: pd.DataFrame, id_column: str = "id") -> pd.DataFrame:
    """A copy of ``table`` with napari's ``index`` column (= label id) first."""
    out = table.reset_index(drop=True).copy()
    ids = out[id_column].to_numpy(dtype=np.int64)
    out = out.drop(columns=[c for c in ("index",) if c in out.columns])
    out.insert(0, "index", ids)
    if "category" in out.columns:
        out["category"] = out["category"].astype(str)
    return out


def result_layer_data(result: Any) -> tuple[Any, dict[str, Any]]:
    """Labels layer data of a :class:`~napari_hrs.engine.results.DetectionResult` (lazy;
    multiscale when the result has a pyramid) and its kwargs (``features``: the table).

    Ids fit in uint16 for fewer than 65 535 cells: the labels are then viewed as uint16
    (lazily), which keeps the GPU colour texture small.
    """
    levels = list(result.levels) or [result.labels]
    if len(result.table) < np.iinfo(np.uint16).max:
        levels = [lv.astype(np.uint16) for lv in levels]
    data = levels if len(levels) > 1 else levels[0]
    kwargs = {"multiscale": len(levels) > 1,
              "features": features_table(result.table, "id")}  # fmt: skip
    return data, kwargs


def merge_features(
    features: pd.DataFrame, table: pd.DataFrame, key: str = "label_id"
) -> pd.DataFrame:
    """Join a per-cell ``table`` (ids in ``key``) onto a layer's ``features`` (ids in ``index``).

    Columns of ``table`` replace same-named ones; cells missing from ``features`` are added.
    """
    new = features_table(table, key)
    if features is None or "index" not in getattr(features, "columns", ()) or not len(features):
        return new
    keep = [c for c in features.columns if c == "index" or c not in new.columns]
    merged = features[keep].merge(new, on="index", how="outer", sort=True)
    return merged.reset_index(drop=True)


def hidden_ids(features: pd.DataFrame, threshold: float | None) -> np.ndarray:
    """Label ids whose ``score`` is below ``threshold`` (empty without a threshold or scores)."""
    if threshold is None or features is None or "score" not in features.columns:
        return np.zeros(0, np.int64)
    score = pd.to_numeric(features["score"], errors="coerce").to_numpy(float)
    return features["index"].to_numpy(np.int64)[score < float(threshold)]


def cell_colors(features: pd.DataFrame, threshold: float | None = None) -> dict[Any, np.ndarray]:
    """Label id -> RGBA: category colours when called, else random; hidden cells transparent."""
    from napari.utils.colormaps import label_colormap

    from napari_hrs.markers import CATEGORY_COLORS

    ids = features["index"].to_numpy(np.int64)
    if "category" in features.columns:
        from napari.utils.colormaps.standardize_color import transform_color

        table = {c: transform_color(v)[0] for c, v in CATEGORY_COLORS.items()}
        colors = np.array([table.get(str(c), UNLISTED) for c in features["category"]], np.float32)
    else:
        colors = label_colormap(49, seed=0.5).map(ids).astype(np.float32)
    colors = colors.reshape(len(ids), 4)
    colors[np.isin(ids, hidden_ids(features, threshold))] = TRANSPARENT
    out: dict[Any, np.ndarray] = {None: UNLISTED, 0: TRANSPARENT}
    out.update(zip(ids.tolist(), colors, strict=True))
    return out


def refresh_colors(layer: Any) -> None:
    """Recolour a labels layer from its features and score threshold (see the module doc)."""
    from napari.utils.colormaps import DirectLabelColormap

    feats = layer.features
    if feats is None or "index" not in feats.columns:
        return
    threshold = layer.metadata.get(THRESHOLD_KEY)
    layer.colormap = DirectLabelColormap(color_dict=cell_colors(feats, threshold))


def set_score_threshold(layer: Any, threshold: float | None) -> int:
    """Hide the cells of ``layer`` scoring below ``threshold``; return how many are shown."""
    layer.metadata[THRESHOLD_KEY] = None if threshold is None else float(threshold)
    refresh_colors(layer)
    feats = layer.features
    return int(len(feats) - len(hidden_ids(feats, threshold))) if feats is not None else 0


def shown_table(layer: Any) -> pd.DataFrame:
    """The features rows of the cells shown (not hidden by the score threshold)."""
    feats = layer.features
    hidden = hidden_ids(feats, layer.metadata.get(THRESHOLD_KEY))
    return feats[~feats["index"].isin(hidden)].reset_index(drop=True)


def cell_box(layer: Any, label: int) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` pixels of cell ``label``: from the layer's features (detection or
    marker columns), else from the pixels of an in-memory (numpy) layer; None otherwise."""
    feats = layer.features
    rows = feats[feats["index"] == int(label)] if "index" in feats.columns else feats.iloc[:0]
    if not len(rows):
        data = layer.data[0] if layer.multiscale else layer.data
        if not isinstance(data, np.ndarray) or label == 0:
            return None
        ys, xs = np.nonzero(data == label)
        if not len(ys):
            return None
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    for cols in (("x0", "y0", "x1", "y1"), ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1")):
        if all(c in rows.columns for c in cols):
            vals = rows.iloc[0][list(cols)].to_numpy(float)
            if np.isfinite(vals).all():
                return (int(np.floor(vals[0])), int(np.floor(vals[1])),
                        int(np.ceil(vals[2])), int(np.ceil(vals[3])))  # fmt: skip
    return None


def cell_centroid(layer: Any, label: int) -> tuple[float, float] | None:
    """``(y, x)`` centroid of cell ``label`` in data pixels (from the features), or None."""
    feats = layer.features
    if feats is None or "index" not in feats.columns or "centroid_y_px" not in feats.columns:
        box = cell_box(layer, label)
        return None if box is None else ((box[1] + box[3]) / 2, (box[0] + box[2]) / 2)
    rows = feats[feats["index"] == int(label)]
    if not len(rows):
        return None
    return float(rows.iloc[0]["centroid_y_px"]), float(rows.iloc[0]["centroid_x_px"])
