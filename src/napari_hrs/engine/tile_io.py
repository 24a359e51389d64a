"""One tile from the brightfield channel to owned instances: read, map, crop, predict, map back.

:class:`TileReader` reads grid tiles of a lazy ``(Y, X)`` channel, maps their intensities with
the acquisition's one :class:`~napari_hrs.engine.intensity.IntensityRange` and resamples them
to the model's pixel size. A tile that holds "no data" (the zero padding around a stitched
mosaic, NaN) is cut to the *window* of its pixels that hold data (plus a margin), and a tile
with no data at all is not predicted. The network's GroupNorm layers normalise over the whole
input, so a large blank area in a tile changed the class calls of the cells beside it; cut to
its data, a tile at the edge of a mosaic is seen like a tile inside it (and costs less).

:func:`predict_loaded` runs a :class:`~napari_hrs.engine.predictor.Predictor` on loaded tiles
and returns each tile's owned instances (:func:`tile_instances`) in image pixels. Single-process
detection (:mod:`napari_hrs.engine.detect`) and batch workers (:mod:`napari_hrs.batch.tasks`)
both go through it, so they give the same result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_hrs.engine.intensity import IntensityRange
from napari_hrs.engine.masks import paste_mask
from napari_hrs.engine.tiling import Instance, Tile
from napari_hrs.errors import AcquisitionError, HRSError

__all__ = [
    "TILE_IO_VERSION",
    "LoadedTile",
    "TileOutput",
    "TileReader",
    "content_window",
    "predict_loaded",
    "reading",
    "tile_instances",
]

#: bumped when what a tile yields changes (2: tiles cut to their data); batch resume compares it
TILE_IO_VERSION = 2
#: a tile whose data covers at least this fraction of it is predicted whole
WHOLE_TILE_FRACTION = 0.9
#: blank margin (model pixels) kept around the data when a tile is cut to its window
WINDOW_MARGIN = 16
#: smallest window side (model pixels)
MIN_WINDOW = 64


@contextmanager
def reading(source: Any, where: str) -> Iterator[None]:
    """Re-raise any error of the reader libraries while the brightfield pixels ``where`` of the
    file ``source`` are read as an :class:`AcquisitionError` naming both (a truncated or
    corrupted file fails when its pixels are read, not when it is opened)."""
    try:
        yield
    except HRSError:  # ours already names what is wrong (a missing channel...)
        raise
    except Exception as exc:  # noqa: BLE001 - whatever tifffile / zarr / imageio raise
        raise AcquisitionError(f"{source}: cannot read the brightfield pixels of {where} (a "
                               f"truncated or corrupted file?): {exc}") from exc  # fmt: skip


def content_window(has_data: np.ndarray, margin: int, min_side: int
                   ) -> tuple[int, int, int, int] | None:  # fmt: skip
    """The box ``(y0, x0, y1, x1)`` (pixels of the ``(Y, X)`` mask ``has_data``, end
    exclusive) around its True pixels, grown by ``margin`` on each side and to at least
    ``min_side`` (both clipped to the mask); None when no pixel holds data. The whole mask
    when the box would cover at least :data:`WHOLE_TILE_FRACTION` of it."""
    h, w = has_data.shape
    rows = np.flatnonzero(has_data.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(has_data.any(axis=0))

    def span(lo: int, hi: int, n: int) -> tuple[int, int]:
        lo, hi = max(0, lo - margin), min(n, hi + margin)
        need = min(n, min_side)
        if hi - lo < need:  # grow about the middle, kept inside the mask
            lo = min(max(0, (lo + hi) // 2 - need // 2), n - need)
            hi = lo + need
        return lo, hi

    y0, y1 = span(int(rows[0]), int(rows[-1]) + 1, h)
    x0, x1 = span(int(cols[0]), int(cols[-1]) + 1, w)
    if (y1 - y0) * (x1 - x0) >= WHOLE_TILE_FRACTION * h * w:
        return 0, 0, h, w
    return y0, x0, y1, x1


@dataclass
class LoadedTile:
    """A grid tile as the model sees it.

    ``window`` ``(y0, x0, y1, x1)`` is the part of the tile that was read into ``image``, in
    image pixels of the detected level (the whole tile unless the tile holds blank padding);
    ``image`` is float32 on the 0..255 model scale, resampled to model pixels, ``(Y, X)``;
    None when the tile holds no data at all (nothing to predict).
    """

    tile: Tile
    window: tuple[int, int, int, int]
    image: np.ndarray | None


class TileReader:
    """Reads, maps (:class:`IntensityRange`), cuts to their data and resamples tiles of a lazy
    ``(Y, X)`` channel; counts the tiles held in memory. A tile whose pixels cannot be read
    (a truncated or corrupted file) raises an :class:`AcquisitionError` naming ``source`` (the
    file) and the tile's pixel rows / columns. ``scale`` is model pixels per image pixel."""

    def __init__(
        self, channel: Any, rng: IntensityRange, scale: float, source: Any = "image"
    ) -> None:
        self.channel, self.rng, self.scale, self.source = channel, rng, scale, source
        self.lock = threading.Lock()
        self.held = 0
        self.max_held = 0
        self.seconds = 0.0

    def load(self, tiles: list[Tile]) -> list[LoadedTile]:
        t0 = time.perf_counter()
        out = []
        for t in tiles:
            with reading(self.source, f"rows {t.y0}:{t.y1}, columns {t.x0}:{t.x1}"):
                raw = np.asarray(
                    self.channel[t.y0 : t.y1, t.x0 : t.x1].compute(scheduler="synchronous")
                )
            out.append(self._prepare(t, raw))
        with self.lock:
            self.held += len(tiles)
            self.max_held = max(self.max_held, self.held)
            self.seconds += time.perf_counter() - t0
        return out

    def _prepare(self, t: Tile, raw: np.ndarray) -> LoadedTile:
        win = (0, 0) + raw.shape
        blank = self.rng.no_data(raw)
        if blank is not None:
            px = 1.0 / self.scale  # image pixels per model pixel
            found = content_window(~blank, margin=round(WINDOW_MARGIN * px),
                                   min_side=round(MIN_WINDOW * px))  # fmt: skip
            if found is None:
                return LoadedTile(t, (t.y0, t.x0, t.y0, t.x0), None)
            win = found
            raw = raw[win[0] : win[2], win[1] : win[3]]
        img = self.rng.apply(raw)
        if self.scale != 1.0:
            img = resize(img, self.scale)
        y0, x0, y1, x1 = win
        return LoadedTile(t, (t.y0 + y0, t.x0 + x0, t.y0 + y1, t.x0 + x1), img)

    def release(self, n: int) -> None:
        with self.lock:
            self.held -= n


def resize(img: np.ndarray, scale: float) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of a (Y, X) float32 image by ``scale``."""
    import torch
    import torch.nn.functional as F

    h, w = img.shape
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    return out[0, 0].numpy()


def tile_instances(dets: Any, tile: Tile, image_shape: tuple[int, int],
                   window: tuple[int, int, int, int] | None = None
                   ) -> tuple[list[Instance], int]:  # fmt: skip
    """Owned detections of one tile, boxes mapped to image pixels, masks pasted; and the number
    of detections not owned by the tile. ``dets`` were predicted on ``window`` ``(y0, x0, y1,
    x1)`` (image pixels; default: the whole tile), at whatever scale."""
    if len(dets) == 0:
        return [], 0
    y0, x0, y1, x1 = window if window is not None else (tile.y0, tile.x0, tile.y1, tile.x1)
    mh, mw = dets.image_size
    sx, sy = (x1 - x0) / mw, (y1 - y0) / mh
    boxes = dets.boxes.astype(np.float64) * np.array([sx, sy, sx, sy])
    boxes += np.array([x0, y0, x0, y0], np.float64)
    mine = tile.owns((boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2)
    out = []
    for i in np.nonzero(mine)[0]:
        mask, offset = paste_mask(dets.mask_probs[i], boxes[i], image_shape)
        inst = Instance(boxes[i], float(dets.scores[i]), int(dets.classes[i]), mask, offset)
        if inst.area:
            out.append(inst)
    return out, int((~mine).sum())


@dataclass
class TileOutput:
    """A tile's owned instances (image pixels), how many detections it did not own, whether
    it returned as many detections as the model's cap (cells may be missing), and whether it
    held no data (not predicted)."""

    tile: Tile
    instances: list[Instance]
    not_owned: int = 0
    at_cap: bool = False
    blank: bool = False


def predict_loaded(predictor: Any, loaded: list[LoadedTile], image_shape: tuple[int, int]
                   ) -> list[TileOutput]:  # fmt: skip
    """Predict the tiles that hold data (one :meth:`Predictor.predict` call) and return every
    tile's owned instances in image pixels of an image of ``image_shape`` ``(Y, X)``."""
    todo = [lt for lt in loaded if lt.image is not None]
    dets = iter(predictor.predict([lt.image for lt in todo]) if todo else [])
    out = []
    for lt in loaded:
        if lt.image is None:
            out.append(TileOutput(lt.tile, [], blank=True))
            continue
        d = next(dets)
        cap = predictor.detection_cap(*lt.image.shape[-2:])
        inst, n_out = tile_instances(d, lt.tile, image_shape, lt.window)
        out.append(TileOutput(lt.tile, inst, n_out, at_cap=cap is not None and len(d) >= cap))
    return out
