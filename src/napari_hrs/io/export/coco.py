"""Detections as a COCO dataset: compressed RLE masks (pycocotools), boxes, scores."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.io.export._atomic import Cancel, PathLike, Progress, _tick, _write_json
from napari_hrs.io.export.labels import _as_labels, _blocks
from napari_hrs.io.export.tables import _id_column

TILE = 2048  # pixels per side of the blocks read from a lazy label image


def label_boxes(
    labels: Any,
    *,
    tile: int = TILE,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> dict[int, tuple[int, int, int, int]]:
    """Bounding box ``(x0, y0, x1, y1)`` (pixels, half-open) of every label id > 0, tile by tile."""
    from scipy import ndimage as ndi

    arr = _as_labels(labels)
    blocks = _blocks(tuple(int(s) for s in arr.shape), tile)
    boxes: dict[int, list[int]] = {}
    for k, (sy, sx) in enumerate(blocks):
        block = np.asarray(arr[sy, sx].compute(scheduler="threads"))
        ids = np.unique(block)
        ids = ids[ids > 0]
        if len(ids):
            compact = np.searchsorted(ids, block) + 1
            compact[block <= 0] = 0
            for lab, sl in zip(ids, ndi.find_objects(compact), strict=True):
                b = [sl[1].start + sx.start, sl[0].start + sy.start,
                     sl[1].stop + sx.start, sl[0].stop + sy.start]  # fmt: skip
                old = boxes.get(int(lab))
                boxes[int(lab)] = b if old is None else [min(old[0], b[0]), min(old[1], b[1]),
                                                         max(old[2], b[2]), max(old[3], b[3])]  # fmt: skip
        _tick(progress, cancel, k + 1, len(blocks))
    return {k: (v[0], v[1], v[2], v[3]) for k, v in sorted(boxes.items())}


def rle_encode(mask: np.ndarray, offset: tuple[int, int], image_shape: tuple[int, int]) -> dict:
    """Compressed COCO RLE of a box-sized ``(h, w)`` mask placed at ``offset`` ``(y0, x0)`` in an
    image of ``image_shape`` ``(H, W)``, without building the full-image mask.

    Returns ``{"size": [H, W], "counts": str}`` (what ``pycocotools.mask.decode`` reads).
    """
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask, dtype=bool)
    big_h, big_w = (int(s) for s in image_shape)
    h, w = mask.shape
    y0, x0 = (int(v) for v in offset)
    # column-major walk of the crop; the "row" h stands for the H - h pixels between columns
    vals = np.zeros((h + 1, w), np.uint8)
    vals[:h] = mask
    lens = np.ones((h + 1, w), np.int64)
    lens[h] = big_h - h
    v, n = vals.ravel(order="F")[:-1], lens.ravel(order="F")[:-1]
    v, n = v[n > 0], n[n > 0]
    starts = np.r_[0, np.flatnonzero(np.diff(v)) + 1] if len(v) else np.zeros(0, int)
    run_v, run_n = v[starts], np.add.reduceat(n, starts) if len(v) else np.zeros(0, np.int64)
    lead = x0 * big_h + y0
    trail = big_h * big_w - lead - int(run_n.sum())
    runs_v = np.r_[0, run_v, 0]
    runs_n = np.r_[lead, run_n, trail]
    counts: list[int] = []
    last = 0
    for val, cnt in zip(runs_v.tolist(), runs_n.tolist(), strict=True):
        if cnt == 0:
            continue
        if counts and val == last:
            counts[-1] += cnt
        else:
            if not counts and val == 1:
                counts.append(0)  # COCO counts start with a (possibly empty) run of zeros
            counts.append(cnt)
            last = val
    rle = mask_utils.frPyObjects({"counts": counts, "size": [big_h, big_w]}, big_h, big_w)
    return {"size": [big_h, big_w], "counts": rle["counts"].decode("ascii")}


def coco_dataset(
    labels: Any,
    table: Any = None,
    *,
    image_name: str = "image",
    metadata: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> dict[str, Any]:
    """Detections as a COCO dataset (one image): masks as compressed RLE, boxes ``[x, y, w, h]``.

    Parameters
    ----------
    labels : (Y, X) integer array
        Instance labels; each id > 0 is one annotation, its mask read from the labels.
    table : DataFrame, optional
        Per-id ``class_id`` / ``class_name`` / ``score`` (id column ``id`` or ``label_id``);
        without it every instance is category ``cell``.
    image_name : str
        The image's ``file_name``.
    metadata : mapping, optional
        Provenance, stored as the dataset's ``info``.
    """
    arr = _as_labels(labels)
    big_h, big_w = (int(s) for s in arr.shape)
    boxes = label_boxes(arr, progress=None, cancel=cancel)
    info: dict[int, dict] = {}
    if table is not None and len(table):
        idc = _id_column(table)
        for rec in table.to_dict("records"):
            info[int(rec[idc])] = rec
    cats: dict[int, str] = {}
    anns = []
    for k, (lab, (x0, y0, x1, y1)) in enumerate(boxes.items()):
        rec = info.get(lab, {})
        cls = int(rec["class_id"]) if "class_id" in rec and not _isnan(rec["class_id"]) else 0
        cats.setdefault(cls + 1, str(rec.get("class_name", "cell")))
        mask = np.asarray(arr[y0:y1, x0:x1].compute(scheduler="threads")) == lab
        ann = {"id": lab, "image_id": 1, "category_id": cls + 1,
               "segmentation": rle_encode(mask, (y0, x0), (big_h, big_w)),
               "area": int(mask.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0}  # fmt: skip
        if "score" in rec and not _isnan(rec["score"]):
            ann["score"] = float(rec["score"])
        anns.append(ann)
        _tick(progress, cancel, k + 1, len(boxes))
    return {
        "info": {"description": "napari-hrs detections", **dict(metadata or {})},
        "images": [{"id": 1, "file_name": image_name, "width": big_w, "height": big_h}],
        "categories": [{"id": c, "name": n} for c, n in sorted(cats.items())],
        "annotations": anns,
    }


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def save_coco(labels: Any, path: PathLike, table: Any = None, *, overwrite: bool = False,
              **kwargs: Any) -> Path:  # fmt: skip
    """:func:`coco_dataset` written as JSON (keyword arguments go to it)."""
    data = coco_dataset(labels, table, **kwargs)
    return _write_json(Path(path), data, overwrite=overwrite)
