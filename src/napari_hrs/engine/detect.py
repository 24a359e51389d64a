"""Whole-image detection: tile, predict, stitch without seams, stream the result to disk.

:func:`detect` reads the brightfield channel of an :class:`~napari_hrs.io.Acquisition` lazily,
tile by tile (row-major), maps intensities with one range estimated on a low-resolution level
(never per tile), cuts a tile that holds blank padding to its data and resamples it to the
model's pixel size when they differ (one tile: :mod:`napari_hrs.engine.tile_io`), runs the
:class:`~napari_hrs.engine.predictor.Predictor` on batches of tiles (the next batch is read
while the current one runs), keeps each instance only in the tile that owns it, merges the
duplicates of neighbouring tiles (:mod:`napari_hrs.engine.tiling`), and writes labels and
table rows as soon as they are final (:class:`~napari_hrs.engine.results.ResultWriter`).

Memory is bounded by the tile size, the batch size and one band of tile rows, whatever the
image size: at most ``2 * batch`` tiles of pixels and two tile rows of (small, box-sized)
instance masks are held.
"""

from __future__ import annotations

import math
import sys
import time
import types
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.engine.intensity import IntensityRange, estimate_range
from napari_hrs.engine.results import DetectionResult, ResultWriter, read_detection_result
from napari_hrs.engine.tile_io import TileOutput, TileReader, predict_loaded, reading
from napari_hrs.engine.tiling import Stitcher, TileGrid
from napari_hrs.errors import AcquisitionError
from napari_hrs.io.export._atomic import check_replaceable

__all__ = [
    "RESAMPLE_TOLERANCE",
    "DetectionPlan",
    "StitchedOutput",
    "default_overlap",
    "detect",
    "intensity_range",
    "plan_detection",
    "resolve_output",
]

#: resample tiles when image and model pixel sizes differ by more than this fraction
RESAMPLE_TOLERANCE = 0.05
#: extra overlap (model pixels, each side) beyond the largest object diameter
OVERLAP_MARGIN = 16
#: largest object diameter assumed when the model does not say (model pixels)
FALLBACK_OBJECT_SIZE = 96


def default_overlap(max_object_size_px: float | None) -> int:
    """Tile overlap (model pixels): the largest object diameter plus a margin on each side."""
    size = FALLBACK_OBJECT_SIZE if max_object_size_px is None else float(max_object_size_px)
    return int(math.ceil(size)) + 2 * OVERLAP_MARGIN


def intensity_range(acq: Any, level: int = 0, max_pixels: int = 4_000_000) -> IntensityRange:
    """One intensity range for the whole brightfield channel, from a low-resolution level.

    The finest level at or below ``level`` with at most ``4 * max_pixels`` pixels is sampled;
    without such a level (no pyramid), a regular grid of small windows is read instead, so a
    whole slide is never loaded.
    """
    with reading(acq.path, "the sample for the intensity range"):
        return _intensity_range(acq, level, max_pixels)


def _intensity_range(acq: Any, level: int, max_pixels: int) -> IntensityRange:
    n = len(acq.levels)
    candidates = [lv for lv in range(level, n) if math.prod(acq.levels[lv].shape[1:]) <= 4 * max_pixels]  # fmt: skip
    if candidates:
        return estimate_range(acq.channel("brightfield", candidates[0]), max_pixels=max_pixels)
    chan = acq.channel("brightfield", n - 1)
    h, w = chan.shape
    win, k = min(128, h, w), 16  # 16 x 16 windows of 128 x 128 = 4 M pixels at most
    ys = np.linspace(0, h - win, k).astype(int)
    xs = np.linspace(0, w - win, k).astype(int)
    rows = [np.concatenate([np.asarray(chan[y : y + win, x : x + win]) for x in xs], axis=1) for y in ys]  # fmt: skip
    return estimate_range(np.concatenate(rows, axis=0), max_pixels=max_pixels)


def resolve_output(acq: Any, out: str | Path | None, name: str) -> tuple[Path, Path | None, int]:
    """(result path, labels group of the image or None, zarr format)."""
    if out is not None:
        target = Path(out).expanduser()
        source = Path(str(acq.path)).expanduser().resolve()
        if target.resolve() == source or target.resolve() in source.parents:
            raise AcquisitionError(f"out={str(out)!r} is the input image {acq.path} or a folder "
                                   "holding it; choose another output path")  # fmt: skip
        return target, None, 3
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise AcquisitionError(f"name={name!r}: a label image name is one path component "
                               "(not '.' or '..', without '/' or '\\'), e.g. 'detections'")  # fmt: skip
    fmt = str(getattr(acq, "format", "") or "")
    if not fmt.startswith("ome-zarr"):
        raise AcquisitionError(
            f"{acq.path} is not an OME-Zarr ({fmt or 'in memory'}), so the labels cannot be "
            "stored inside it; pass out='RESULT.zarr'"
        )
    group_dir = Path(acq.path) / (acq.metadata.get("zarr_group") or "")
    import os

    if not os.access(group_dir, os.W_OK):
        raise AcquisitionError(f"{group_dir} is not writable; pass out='RESULT.zarr'")
    zarr_format = 3 if fmt.split()[-1].startswith("0.5") else 2
    return group_dir / "labels" / name, group_dir / "labels", zarr_format


@dataclass
class DetectionPlan:
    """How an image is tiled for a model: everything fixed before the first tile is read.

    ``shape`` is the detected level's ``(Y, X)`` in pixels; ``scale`` is model pixels per image
    pixel; ``tile_px`` / ``overlap_px`` are in image pixels, ``overlap_model_px`` in model
    pixels; ``pixel_size_um`` is the image's (µm per pixel, None when unknown).
    """

    shape: tuple[int, int]
    level: int
    scale: float
    tile: int
    tile_px: int
    overlap_model_px: int
    overlap_px: int
    resample: bool
    intensity: IntensityRange
    grid: TileGrid
    pixel_size_um: float | None

    def metadata(self, acq: Any, predictor: Any, *, merge_iou: float) -> dict:
        """The ``run.json`` provenance of a result made with this plan (status ``running``)."""
        from napari_hrs import __version__

        return {
            "napari_hrs_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": {"path": str(acq.path), "format": getattr(acq, "format", ""),
                       "level": self.level, "shape": list(self.shape),
                       "pixel_size_um": self.pixel_size_um},
            "model": predictor.describe(),
            "parameters": {"tile": self.tile, "overlap": self.overlap_model_px,
                           "tile_image_px": self.tile_px, "overlap_image_px": self.overlap_px,
                           "batch": predictor.batch_size, "resample": self.resample,
                           "scale": self.scale, "merge_iou": merge_iou,
                           "score_threshold": predictor.score_threshold,
                           "intensity": {"low": self.intensity.low, "high": self.intensity.high,
                                         "padding": self.intensity.padding}},
            "grid": [self.grid.n_rows, self.grid.n_cols],
            "tiles_total": len(self.grid),
            "tiles_done": 0,
            "coordinates": "pixels of the detected level; boxes x0 y0 x1 y1 half-open",
        }  # fmt: skip


def plan_detection(
    acq: Any,
    predictor: Any,
    *,
    tile: int = 1024,
    overlap: int | None = None,
    level: int = 0,
    resample: bool = True,
    intensity: IntensityRange | None = None,
) -> DetectionPlan:
    """Tile grid, resampling factor and intensity range for detecting ``acq`` with
    ``predictor`` (anything with ``pixel_size_um`` and ``max_object_size_px``).

    ``tile`` and ``overlap`` are model-input pixels; see :func:`detect`. Reads only a
    low-resolution level (for the intensity range), never the whole image.
    """
    channel = acq.channel("brightfield", level)
    shape = (int(channel.shape[0]), int(channel.shape[1]))
    px_image = acq.pixel_size_at(level % len(acq.levels))
    px_model = predictor.pixel_size_um
    scale = 1.0  # model pixels per image pixel
    if resample and px_image and px_model:
        ratio = px_image / px_model
        if abs(ratio - 1.0) > RESAMPLE_TOLERANCE:
            scale = ratio
    ov_model = default_overlap(predictor.max_object_size_px) if overlap is None else int(overlap)
    if predictor.max_object_size_px and ov_model < predictor.max_object_size_px:
        warnings.warn(
            f"overlap {ov_model} px is smaller than the model's largest object "
            f"({predictor.max_object_size_px:g} px): cells on tile borders may be cut or "
            f"missed; pass overlap >= {default_overlap(predictor.max_object_size_px)}",
            stacklevel=3,
        )
    tile_px = max(1, round(tile / scale))
    overlap_px = int(math.ceil(ov_model / scale))
    if overlap_px >= tile_px:
        raise ValueError(f"overlap {ov_model} px must be smaller than tile {tile} px (model "
                         f"pixels); pass a larger tile or a smaller overlap")  # fmt: skip
    rng = intensity if intensity is not None else intensity_range(acq, level % len(acq.levels))
    return DetectionPlan(shape=shape, level=level, scale=scale, tile=tile, tile_px=tile_px,
                         overlap_model_px=ov_model, overlap_px=overlap_px, resample=resample,
                         intensity=rng, grid=TileGrid(shape, tile_px, overlap_px),
                         pixel_size_um=px_image)  # fmt: skip


class StitchedOutput:
    """Tiles' owned instances in, final instances out to a :class:`ResultWriter`.

    Feed :meth:`add` each tile's :class:`~napari_hrs.engine.tile_io.TileOutput` in row-major
    tile order (as :attr:`TileGrid.tiles`); each finished tile row is merged with its neighbours
    (:class:`~napari_hrs.engine.tiling.Stitcher`) and written. :meth:`finish` flushes the last
    rows and renames the result into place; its statistics count the detections tiles did not
    own, the tiles at the detection cap and the tiles without data.
    """

    def __init__(self, grid: TileGrid, writer: ResultWriter, merge_iou: float = 0.5) -> None:
        self.grid, self.writer = grid, writer
        self.stitcher = Stitcher(grid, merge_iou=merge_iou)
        self.not_owned = self.at_cap = self.blank = 0
        self.stitch_s = 0.0
        self.write_s = 0.0

    def add(self, out: TileOutput) -> None:
        t0 = time.perf_counter()
        tile = out.tile
        self.not_owned += out.not_owned
        self.at_cap += out.at_cap
        self.blank += out.blank
        self.stitcher.add(tile, out.instances)
        if tile.col == self.grid.n_cols - 1:
            final = self.stitcher.end_row(tile.row)
            t1 = time.perf_counter()
            self.writer.add(final)
            self.writer.advance(self.grid.ys[tile.row])
            self.write_s += time.perf_counter() - t1
            self.stitch_s += t1 - t0
        else:
            self.stitch_s += time.perf_counter() - t0

    def finish(self, status: str, tiles_done: int, timing: dict[str, float], t_start: float,
               stats: dict[str, Any] | None = None) -> Path:  # fmt: skip
        """Write what is pending, then the result with ``status`` and run statistics."""
        t0 = time.perf_counter()
        self.writer.add(self.stitcher.flush())
        self.writer.advance(self.grid.shape[0])
        self.write_s += time.perf_counter() - t0
        timing = {**timing, "stitch_s": self.stitch_s, "write_s": self.write_s,
                  "total_s": time.perf_counter() - t_start}  # fmt: skip
        return self.writer.finish(status, {
            "tiles_done": tiles_done,
            "timing": {k: round(v, 3) for k, v in timing.items()},
            "stats": {**(stats or {}),
                      "max_pending_tiles": self.stitcher.max_pending_tiles,
                      "max_pending_instances": self.writer.max_pending,
                      "merged_duplicates": self.stitcher.n_merged,
                      "suppressed_in_tile": self.stitcher.n_suppressed,
                      "not_owned": self.not_owned,
                      "tiles_at_detection_cap": self.at_cap,
                      "tiles_without_data": self.blank},
        })  # fmt: skip


def detect(
    acquisition: Any,
    model: Any,
    *,
    tile: int = 1024,
    overlap: int | None = None,
    batch: int | None = None,
    out: str | Path | None = None,
    level: int = 0,
    resample: bool = True,
    score_threshold: float = 0.5,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    name: str = "detections",
    overwrite: bool = False,
    merge_iou: float = 0.5,
    max_detections: int | None = None,
    intensity: IntensityRange | None = None,
    chunk: int = 1024,
    engine: str = "native",
) -> DetectionResult:
    """Detect instances in a whole acquisition, tile by tile, and write the result.

    Parameters
    ----------
    acquisition : Acquisition or path
        The image (its brightfield channel is used); a path is opened with
        :func:`napari_hrs.io.open_acquisition`.
    model : Predictor, Loaded, model, or spec
        Anything :class:`~napari_hrs.engine.predictor.Predictor` accepts (``"compact"``, a
        checkpoint path, a loaded model), or a ready Predictor (then ``score_threshold``,
        ``batch``, ``device`` and ``max_detections`` are its own).
    tile : int
        Tile edge in model-input pixels (image pixels unless resampling).
    overlap : int, optional
        Tile overlap in model-input pixels; default the model's largest object diameter
        (``cfg.max_object_size_px``) plus 2 x 16 pixels.
    batch : int, optional
        Tiles per forward pass; default 4 on CUDA, 1 on the CPU (measured ~10 % faster there
        than batches of 4, docs/detection.md).
    out : path, optional
        A new result store (``RESULT.zarr``); default ``labels/<name>`` inside the image when
        it is a writable OME-Zarr (the image arrays are never modified).
    level : int
        Pyramid level to detect on (0 = full resolution); result pixels are that level's.
    resample : bool
        Resample tiles to the model's pixel size when both pixel sizes are known and differ by
        more than 5 %; results are mapped back to image pixels.
    score_threshold : float
        Minimum detection score.
    device : str, optional
        ``"cpu"`` / ``"cuda"``; default CUDA when available.
    progress : callable, optional
        ``progress(tiles_done, tiles_total)`` after every batch.
    cancel : callable, optional
        Return True to stop; the result is then written with ``status: "incomplete"``.
    name : str
        Label image name inside an OME-Zarr (``labels/<name>``).
    overwrite : bool
        Replace an existing result at the target path.
    merge_iou : float
        Mask IoU from which two instances of neighbouring tiles are one cell.
    max_detections : int, optional
        Per tile; default the model's cap for the tile size (``detections_per_image``, raised
        with the tile area when the config's ``detections_per_mpx`` is set).
    intensity : IntensityRange, optional
        Override the intensity mapping (default: estimated once on a low-resolution level).
    chunk : int
        Chunk edge of the label image (pixels).
    engine : str
        ``"native"`` or ``"detectron2"`` (see :class:`~napari_hrs.engine.predictor.Predictor`).

    Returns
    -------
    DetectionResult
        The written result, read back lazily.
    """
    from napari_hrs.engine.predictor import Predictor, resolve_device

    t_start = time.perf_counter()
    if isinstance(acquisition, (str, Path)):
        from napari_hrs.io import open_acquisition

        acquisition = open_acquisition(acquisition)
    acq = acquisition
    target, labels_group, zarr_format = resolve_output(acq, out, name)
    check_replaceable(  # before the (slow) model load
        target,
        overwrite,
        lambda p: labels_group is not None or (p / "run.json").is_file(),
        "a napari-hrs detection result (a folder with run.json)",
    )
    if isinstance(model, Predictor):
        predictor = model
    else:
        if batch is None:  # batches pay on a GPU; on a CPU one tile at a time is ~10 % faster
            batch = 4 if resolve_device(device).startswith("cuda") else 1
        predictor = Predictor(model, device=device, score_threshold=score_threshold,
                              max_detections=max_detections, batch_size=batch,
                              engine=engine)  # fmt: skip
    plan = plan_detection(acq, predictor, tile=tile, overlap=overlap, level=level,
                          resample=resample, intensity=intensity)  # fmt: skip
    meta = plan.metadata(acq, predictor, merge_iou=merge_iou)
    writer = ResultWriter(target, plan.shape, class_names=predictor.class_names,
                          pixel_size_um=plan.pixel_size_um, chunk=chunk, zarr_format=zarr_format,
                          labels_group=labels_group, overwrite=overwrite, metadata=meta)  # fmt: skip
    output = StitchedOutput(plan.grid, writer, merge_iou=merge_iou)
    reader = TileReader(acq.channel("brightfield", level), plan.intensity, plan.scale, acq.path)
    grid = plan.grid
    batches = [grid.tiles[i : i + predictor.batch_size] for i in range(0, len(grid), predictor.batch_size)]  # fmt: skip
    timing = {"predict_s": 0.0}
    done, cancelled = 0, False
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hrs-tiles") as pool:
            future = pool.submit(reader.load, batches[0]) if batches else None
            for k, tiles in enumerate(batches):
                if cancel is not None and cancel():
                    cancelled = True
                    break
                loaded = future.result()
                if k + 1 < len(batches):  # read the next batch while this one runs
                    future = pool.submit(reader.load, batches[k + 1])
                t0 = time.perf_counter()
                outputs = predict_loaded(predictor, loaded, plan.shape)
                timing["predict_s"] += time.perf_counter() - t0
                for o in outputs:
                    output.add(o)
                reader.release(len(loaded))
                del loaded
                done += len(tiles)
                if progress is not None:
                    progress(done, len(grid))
            if cancelled and future is not None:
                future.cancel()
        timing["read_s"] = reader.seconds
        status = "incomplete" if cancelled or done < len(grid) else "complete"
        if output.at_cap:
            warnings.warn(f"{output.at_cap} of {done} tiles returned as many detections as the cap "
                          "(max_detections, or the model's cap for the tile size): cells may be "
                          "missing there; use smaller tiles (--tile) or a higher max_detections",
                          stacklevel=2)  # fmt: skip
        path = output.finish(
            status, done, timing, t_start, {"max_tiles_in_memory": reader.max_held}
        )
    except BaseException:
        writer.abort()
        raise
    return read_detection_result(path)


class _CallableModule(types.ModuleType):
    """``napari_hrs.engine.detect`` is both this module and, called, :func:`detect`."""

    def __call__(self, *args: Any, **kwargs: Any) -> DetectionResult:
        return detect(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
