"""Shared builders for the markers tests: tiny scenes and an independent, naive reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi


def disk_scene(
    shape: tuple[int, int] = (160, 200),
    n: int = 40,
    radius: tuple[float, float] = (3.0, 10.0),
    seed: int = 0,
    id_step: int = 1,
) -> np.ndarray:
    """(Y, X) int32 labels: random, possibly touching discs (later discs do not overwrite)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for i in range(1, n + 1):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r = rng.uniform(*radius)
        m = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) & (lab == 0)
        lab[m] = i * id_step
    return lab


def marker_scene(
    shape: tuple[int, int] = (192, 256), n: int = 36, seed: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray], pd.DataFrame]:
    """Labels, uint16 PRM1 / PNA channels and the truth (which cells were made positive).

    Background ~ N(100, 4); a positive cell gets +60 (PRM1) / +40 (PNA) on all its pixels.
    """
    rng = np.random.default_rng(seed)
    lab = disk_scene(shape, n, (4.0, 9.0), seed)
    ids = np.unique(lab)[1:]
    truth = pd.DataFrame(
        {
            "label_id": ids,
            "PRM1": rng.random(len(ids)) < 0.5,
            "PNA": rng.random(len(ids)) < 0.4,
        }
    )
    chans = {}
    for name, gain in (("PRM1", 60.0), ("PNA", 40.0)):
        img = rng.normal(100.0, 4.0, shape)
        lut = np.zeros(int(lab.max()) + 1)
        lut[truth["label_id"]] = np.where(truth[name], gain, 0.0)
        img += lut[lab]
        chans[name] = np.clip(np.round(img), 0, 65535).astype(np.uint16)
    return lab, chans, truth


def naive_quantify(
    channels: dict[str, np.ndarray], labels: np.ndarray, gap: int, width: int
) -> pd.DataFrame:
    """Per-cell loop with a full-image Euclidean distance transform per cell (slow, obvious)."""
    rows = []
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    for lid in np.unique(labels):
        if lid == 0:
            continue
        cell = labels == lid
        d = ndi.distance_transform_edt(~cell)
        ring = (d > gap) & (d <= gap + width) & (labels == 0)
        row = {
            "label_id": int(lid),
            "area_px": int(cell.sum()),
            "centroid_y_px": yy[cell].mean(),
            "centroid_x_px": xx[cell].mean(),
            "bbox_x0": int(xx[cell].min()),
            "bbox_y0": int(yy[cell].min()),
            "bbox_x1": int(xx[cell].max()) + 1,
            "bbox_y1": int(yy[cell].max()) + 1,
            "ring_area_px": int(ring.sum()),
        }
        for name, ch in channels.items():
            v = ch[cell].astype(np.float64)
            b = ch[ring].astype(np.float64)
            bg = np.median(b) if b.size else np.nan
            row[f"{name}_mean"] = v.mean()
            row[f"{name}_median"] = np.median(v)
            row[f"{name}_integrated"] = v.sum()
            row[f"{name}_background"] = bg
            row[f"{name}_background_sd"] = b.std() if b.size else np.nan
            row[f"{name}_mean_bgsub"] = v.mean() - bg
            row[f"{name}_integrated_bgsub"] = v.sum() - bg * v.size
        rows.append(row)
    return pd.DataFrame(rows)


def write_ngff(
    path, image: np.ndarray | None, names: list[str], labels: np.ndarray | None = None,
    pixel_size_um: float = 0.325, label_name: str = "cells",
):  # fmt: skip
    """A minimal OME-Zarr 0.4 (zarr v2): ``image`` (C, Y, X) with omero channel names, and
    ``labels/<label_name>`` (Y, X) when given; with ``image=None``, only the label image at the
    root (the layout of a detection ``RESULT.zarr``). Returns the path."""
    import zarr

    def axes(spec: str) -> list[dict]:
        return [
            {"name": a, "type": "channel"} if a == "c" else
            {"name": a, "type": "space", "unit": "micrometer"}
            for a in spec
        ]  # fmt: skip

    def multiscales(spec: str) -> list[dict]:
        scale = [1.0] * (len(spec) - 2) + [pixel_size_um, pixel_size_um]
        return [{
            "version": "0.4", "axes": axes(spec),
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        }]  # fmt: skip

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    if image is None:  # a bare NGFF label image, as a detection RESULT.zarr is
        root.attrs.update({"multiscales": multiscales("yx"), "image-label": {}})
        la = root.create_array("0", shape=labels.shape, chunks=(64, 64), dtype=labels.dtype)
        la[:] = labels
        return path
    root.attrs.update(
        {"multiscales": multiscales("cyx"), "omero": {"channels": [{"label": n} for n in names]}}
    )
    arr = root.create_array("0", shape=image.shape, chunks=(1, 64, 64), dtype=image.dtype)
    arr[:] = image
    if labels is not None:
        lg = root.create_group("labels")
        lg.attrs["labels"] = [label_name]
        g = lg.create_group(label_name)
        g.attrs.update({"multiscales": multiscales("yx"), "image-label": {}})
        la = g.create_array("0", shape=labels.shape, chunks=(64, 64), dtype=labels.dtype)
        la[:] = labels
    return path
