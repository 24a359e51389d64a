"""Write a synthetic acquisition as OME-Zarr, chunk by chunk, with its ground truth.

Layout (NGFF 0.4, zarr format 2)::

    OUT.ome.zarr/
      0, 1, ...                      uint16 (C, Y, X): brightfield, PRM1, PNA; 2x mean pyramid
      labels/ground_truth/0, 1, ...  uint32 (Y, X) instance labels; stride-2 pyramid
      labels/ground_truth/cells.csv  one row per label id (the truth the images were drawn from)

Chunks are rendered by a small thread pool; at most ``2 * workers`` chunks are in flight at any
time, so memory depends on the chunk size and the number of workers, never on the image size.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr

from napari_hrs.errors import Cancelled
from napari_hrs.io.export._atomic import atomic_target, check_replaceable
from napari_hrs.io.ngff import (
    create_image,
    create_labels,
    fill_pyramid,
    n_levels_for,
    pyramid_chunk_count,
)
from napari_hrs.synth.render import CHANNELS, MAX_VALUE, render_region
from napari_hrs.synth.scene import SceneParams, make_scene
from napari_hrs.synth.truth import LABEL_NAME, TABLE_NAME, truth_table

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

#: omero colours: brightfield white (shown gray), PRM1 green, PNA magenta
COLORS = ("FFFFFF", "00FF00", "FF00FF")
#: omero display windows (counts, 12-bit data)
WINDOWS = ((300.0, 3600.0), (80.0, 1500.0), (80.0, 1500.0))
#: bumped whenever a change to the generator changes the pixels of a given seed
GENERATOR_VERSION = 3

#: called with the number of chunks in flight after each submission (tests check the bound)
_inflight_hook: Callable[[int], None] | None = None


def set_inflight_hook(hook: Callable[[int], None] | None) -> None:
    """Install (or remove, with None) a callback that sees the number of chunks in flight."""
    global _inflight_hook
    _inflight_hook = hook


def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        shape = (int(size), int(size))
    else:
        shape = (int(size[0]), int(size[1]))
    if min(shape) < 16:
        raise ValueError(f"size {size!r} is too small; pass at least 16 pixels per side")
    return shape


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _render_level0(
    scene: SceneParams,
    img0: zarr.Array,
    lab0: zarr.Array,
    chunks: tuple[int, int],
    workers: int,
    tick: Callable[[], None],
    cancel: Cancel | None,
    what: str = "synthetic acquisition",
) -> dict[int, int]:
    """Render and write every level-0 chunk; return label id -> visible pixel count."""
    shape = scene.shape
    tiles = [(y, x) for y in range(0, shape[0], chunks[0]) for x in range(0, shape[1], chunks[1])]

    def job(y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = min(chunks[0], shape[0] - y), min(chunks[1], shape[1] - x)
        image, labels = render_region(scene, y, x, h, w)
        img0[:, y : y + h, x : x + w] = image
        lab0[y : y + h, x : x + w] = labels
        return np.unique(labels, return_counts=True)

    areas: dict[int, int] = {}

    def collect(fut: Future) -> None:
        ids, counts = fut.result()
        for i, n in zip(ids.tolist(), counts.tolist(), strict=True):
            if i:
                areas[i] = areas.get(i, 0) + n
        tick()

    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synth") as pool:
        try:
            for y, x in tiles:
                if cancel is not None and cancel():
                    raise Cancelled(f"{what} cancelled; nothing was written")
                while len(pending) >= 2 * workers:
                    collect(pending.popleft())
                pending.append(pool.submit(job, y, x))
                if _inflight_hook is not None:
                    _inflight_hook(len(pending))
            while pending:
                collect(pending.popleft())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return areas


def is_synthetic_acquisition(path: str | os.PathLike) -> bool:
    """True when ``path`` is an OME-Zarr written by :func:`generate_acquisition` (its root
    group carries the ``napari_hrs_synth`` attributes)."""
    try:
        root = zarr.open_group(str(path), mode="r")
        return isinstance(root.attrs.get("napari_hrs_synth"), dict)
    except Exception:  # not a zarr group at all (a file, a plain folder, a broken store)
        return False


def generate_acquisition(
    path: str | os.PathLike,
    *,
    size: int | tuple[int, int] = 4096,
    seed: int = 0,
    pixel_size_um: float = 0.325,
    density: float = 1.0,
    chunk: int = 1024,
    overwrite: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Generate a synthetic hRS acquisition as an OME-Zarr with ground-truth labels.

    Parameters
    ----------
    path : path
        The new ``.ome.zarr`` directory (written aside, renamed into place on success).
    size : int or (int, int)
        Image size ``(Y, X)`` in pixels (an int gives a square).
    seed : int
        The same seed gives the same pixels, labels and table, whatever ``chunk`` and
        ``workers`` are.
    pixel_size_um : float
        Pixel size, µm (cell sizes are in µm, so this sets their size in pixels).
    density : float
        Scale factor on the default 3.5 cells per 1000 µm².
    chunk : int
        Zarr chunk side (pixels); rendering happens one chunk at a time (bounded memory).
    overwrite : bool
        Replace an existing ``path``; only a previous synthetic acquisition is replaced (any
        other file or folder raises :class:`FileExistsError` and is left untouched).
    workers : int, optional
        Rendering threads (default: the CPU count, at most 4).
    progress, cancel : callable, optional
        ``progress(done, total)`` per chunk (level 0, then the pyramids); ``cancel()``
        returning True stops with :class:`~napari_hrs.errors.Cancelled` (nothing written).

    Returns
    -------
    Path
        ``path``.
    """
    shape = _shape(size)
    if chunk < 16:
        raise ValueError(f"chunk {chunk} is too small; pass at least 16 (e.g. 1024)")
    if not (pixel_size_um > 0 and density > 0):
        raise ValueError(
            f"pixel_size_um ({pixel_size_um}) and density ({density}) must be positive"
        )
    workers = _default_workers() if workers is None else max(1, int(workers))
    scene = make_scene(seed, shape, pixel_size_um, density)
    n_levels = n_levels_for(shape)
    chunks = (min(chunk, shape[0]), min(chunk, shape[1]))
    n0 = -(-shape[0] // chunks[0]) * -(-shape[1] // chunks[1])
    n_pyr = pyramid_chunk_count(shape, chunks, n_levels)
    total = n0 + 2 * n_pyr
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def sub(offset: int) -> Progress | None:
        return None if progress is None else (lambda d, _t: progress(offset + d, total))

    path = Path(path)
    check_replaceable(path, overwrite, is_synthetic_acquisition,
                      "a synthetic acquisition written by napari-hrs synth")  # fmt: skip
    with atomic_target(path, overwrite=overwrite) as tmp:
        root = create_image(
            tmp,
            (len(CHANNELS), *shape),
            "uint16",
            chunks=chunks,
            pixel_size_um=pixel_size_um,
            n_levels=n_levels,
            channel_names=CHANNELS,
            colors=COLORS,
            windows=WINDOWS,
            name=path.name,
        )
        root.attrs["napari_hrs_synth"] = {
            "generator_version": GENERATOR_VERSION,
            "seed": int(seed),
            "size": list(shape),
            "pixel_size_um": float(pixel_size_um),
            "density": float(density),
            "chunk": int(chunk),
            "max_value": MAX_VALUE,
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
        areas = _render_level0(
            scene, root["0"], lab0, chunks, workers, tick, cancel, f"synthetic acquisition {path}"
        )
        fill_pyramid(root, "image", sub(n0), cancel)
        labels_group = zarr.open_group(str(tmp / "labels" / LABEL_NAME), mode="r+")
        fill_pyramid(labels_group, "labels", sub(n0 + n_pyr), cancel)
        truth_table(scene, areas).to_csv(tmp / "labels" / LABEL_NAME / TABLE_NAME, index=False)
    return path
