"""What a dask worker runs: predict a group of tiles of one acquisition.

A task carries only small, picklable data (:class:`TileJob`: the file path, the tiles, the
intensity range, the model spec); the worker opens the acquisition lazily and reads just its
tiles. The model is loaded once per worker process and kept (:func:`worker_predictor`), as is
the opened acquisition (a handful, least recently used first out).

The result is each tile's owned instances (:func:`napari_hrs.engine.tile_io.predict_loaded`),
box-sized masks in image pixels: the same objects single-process detection stitches, so a
cluster run and :func:`napari_hrs.engine.detect` produce the same result.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from napari_hrs.engine.intensity import IntensityRange
from napari_hrs.engine.tile_io import TileOutput
from napari_hrs.engine.tiling import Tile

__all__ = ["TileJob", "predict_tiles", "worker_device", "worker_predictor"]

_LOCK = threading.Lock()
_PREDICTORS: dict[tuple, Any] = {}
_ACQUISITIONS: OrderedDict[tuple, Any] = OrderedDict()
_MAX_OPEN = 4


@dataclass(frozen=True)
class TileJob:
    """One task: tiles of one acquisition and how to predict them.

    ``tiles`` are grid tiles in image pixels of pyramid ``level``; ``scale`` is model pixels per
    image pixel; ``model`` a checkpoint path or ``"compact"``; ``device`` ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``, ``"auto"`` (CUDA when the worker has it) or ``"local-gpu"`` (the GPU numbered
    like the worker in a LocalCluster).
    """

    path: str
    channels: dict | None
    level: int
    shape: tuple[int, int]
    tiles: tuple[Tile, ...]
    scale: float
    intensity: IntensityRange
    model: str
    device: str = "auto"
    score_threshold: float = 0.5
    max_detections: int | None = None
    batch: int = 4
    threads: int | None = None
    pixel_size_um: float | None = None
    plane: dict | None = None  # scene / t / z for open_acquisition
    stamp: str = ""  # the input's fingerprint (batch.run.input_stamp): a new one reopens it


def worker_device(spec: str) -> str:
    """The torch device a worker uses for ``spec`` (see :class:`TileJob`)."""
    import torch

    if spec == "local-gpu":
        n = torch.cuda.device_count()
        if n == 0:
            return "cpu"
        try:
            from distributed import get_worker

            name = get_worker().name
            index = int(name) if str(name).isdigit() else 0
        except (ImportError, ValueError):
            index = 0
        return f"cuda:{index % n}"
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


def worker_predictor(model: str, device: str, score_threshold: float,
                     max_detections: int | None, batch: int, threads: int | None = None
                     ) -> Any:  # fmt: skip
    """The :class:`~napari_hrs.engine.predictor.Predictor` of this process for these settings,
    loaded on first use and kept for the next tasks."""
    import torch

    from napari_hrs.engine.predictor import Predictor

    dev = worker_device(device)
    key = (model, dev, float(score_threshold), max_detections, int(batch))
    with _LOCK:
        if threads:
            torch.set_num_threads(int(threads))
        pred = _PREDICTORS.get(key)
        if pred is None:
            pred = Predictor(model, device=dev, score_threshold=score_threshold,
                             max_detections=max_detections, batch_size=batch)  # fmt: skip
            _PREDICTORS[key] = pred
        return pred


def _acquisition(path: str, channels: dict | None, pixel_size_um: float | None,
                 plane: dict | None = None, stamp: str = "") -> Any:  # fmt: skip
    from napari_hrs.io import open_acquisition

    plane = plane or {}  # run_batch already dropped the unset keys
    key = (path, tuple(sorted((channels or {}).items())), pixel_size_um,
           tuple(sorted(plane.items())), stamp, os.getpid())  # fmt: skip
    with _LOCK:
        acq = _ACQUISITIONS.get(key)
        if acq is not None:
            _ACQUISITIONS.move_to_end(key)
            return acq
    acq = open_acquisition(path, channels=channels, strict=False, pixel_size_um=pixel_size_um,
                           **plane)  # fmt: skip
    with _LOCK:
        _ACQUISITIONS[key] = acq
        while len(_ACQUISITIONS) > _MAX_OPEN:
            _ACQUISITIONS.popitem(last=False)
    return acq


def predict_tiles(job: TileJob) -> list[TileOutput]:
    """Read, normalise and predict ``job.tiles``; return each tile's owned instances.

    Runs on a dask worker (or anywhere): it has no side effects besides the per-process model
    and file caches, so a task lost with its worker can simply run again elsewhere.
    """
    from napari_hrs.engine.tile_io import TileReader, predict_loaded

    predictor = worker_predictor(job.model, job.device, job.score_threshold, job.max_detections,
                                 job.batch, job.threads)  # fmt: skip
    acq = _acquisition(job.path, job.channels, job.pixel_size_um, job.plane, job.stamp)
    channel = acq.channel("brightfield", job.level)
    if tuple(int(s) for s in channel.shape) != tuple(job.shape):
        raise ValueError(f"{job.path}: the brightfield channel is {tuple(channel.shape)} but was "
                         f"{tuple(job.shape)} when the batch was planned; the file changed")  # fmt: skip
    reader = TileReader(channel, job.intensity, job.scale, job.path)
    return predict_loaded(predictor, reader.load(list(job.tiles)), job.shape)
