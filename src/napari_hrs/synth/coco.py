"""COCO instance-segmentation datasets of small synthetic brightfield scenes.

Each image is an independent scene (its own seed; illumination, vignetting, noise, defocus,
density and pixel size varied a little) rendered in memory with the same renderer as
:func:`~napari_hrs.synth.generate_acquisition`. Only brightfield is saved as pixels (training
uses brightfield); the marker truth travels in the annotations. Output::

    OUT_DIR/train.json, val.json, test.json     COCO, file_name relative to OUT_DIR/<split>/
    OUT_DIR/<split>/img_00000.tif               uint16 (Y, X) brightfield

Categories 1..7 follow :data:`napari_hrs.synth.cells.CELL_TYPES`; every annotation carries an
RLE mask, ``area``, ``bbox`` ``[x, y, w, h]`` (pixels) and
``attributes = {"PRM1_positive": bool, "PNA_positive": bool}``. Masks of occluded cells are
their visible part; instances with fewer than :data:`MIN_AREA_PX` visible pixels are left out
(not marked ``iscrowd``: nothing a detector could be asked to find).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_hrs.errors import Cancelled
from napari_hrs.io.export._atomic import atomic_target, check_replaceable
from napari_hrs.synth.cells import CELL_TYPES
from napari_hrs.synth.render import render_region
from napari_hrs.synth.scene import DENSITY_JITTER, block_cells, make_scene
from napari_hrs.synth.writer import GENERATOR_VERSION

SPLITS = ("train", "val", "test")
#: instances with fewer visible pixels are not annotated
MIN_AREA_PX = 15


def categories() -> list[dict[str, Any]]:
    """COCO categories: ids 1..7 in :data:`CELL_TYPES` order."""
    return [{"id": i + 1, "name": t, "supercategory": "cell"} for i, t in enumerate(CELL_TYPES)]


def split_counts(n: int, splits: Sequence[float]) -> list[int]:
    """Images per split for ``n`` images and fractions ``splits`` (they are normalised)."""
    if len(splits) != 3 or any(f < 0 for f in splits) or sum(splits) <= 0:
        raise ValueError(f"splits must be three non-negative fractions, got {tuple(splits)}")
    f = np.asarray(splits, float) / sum(splits)
    counts = np.floor(f * n).astype(int)
    for i in np.argsort(-(f * n - counts))[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _annotations(labels: np.ndarray, cells: dict[int, Any], image_id: int, next_id: int):
    from pycocotools import mask as mask_utils

    out = []
    ids, counts = np.unique(labels, return_counts=True)
    for lid, n in zip(ids.tolist(), counts.tolist(), strict=True):
        if lid == 0 or n < MIN_AREA_PX or lid not in cells:
            continue
        c = cells[lid]
        m = labels == lid
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        out.append(
            {
                "id": next_id + len(out),
                "image_id": image_id,
                "category_id": CELL_TYPES.index(c.type) + 1,
                "segmentation": rle,
                "area": int(n),
                "bbox": [x, y, w, h],
                "iscrowd": 0,
                "attributes": {"PRM1_positive": bool(c.prm1), "PNA_positive": bool(c.pna)},
            }
        )
    return out


def export_coco(
    out_dir: str | os.PathLike,
    *,
    n_images: int = 200,
    image_size: int = 256,
    seed: int = 0,
    pixel_size_um: float = 0.325,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    density: float = 1.0,
    density_jitter: tuple[float, float] = DENSITY_JITTER,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Path]:
    """Write a COCO dataset of ``n_images`` synthetic brightfield images.

    Parameters
    ----------
    out_dir : path
        Output folder: new, empty, or (with ``overwrite``) a previous synthetic export, which
        is replaced as a whole. The export is written aside and renamed into place, so a
        failure or cancel leaves no half-written dataset.
    image_size : int
        Side of each square image, pixels.
    pixel_size_um : float
        Mean pixel size, µm; each image varies it by up to ±8 % and stores its own as
        ``pixel_size_um``.
    splits : (float, float, float)
        Fractions of train, val and test images.
    density : float
        Density scale; each image multiplies it by a factor drawn uniformly from
        ``density_jitter`` (default 0.6-1.5x; e.g. ``(0.1, 1.5)`` adds sparse fields).
    overwrite : bool
        Replace ``out_dir`` when it holds a previous synthetic export; any other non-empty
        folder or a file raises :class:`FileExistsError` and is left untouched.

    Returns
    -------
    dict
        split name -> path of its COCO JSON.
    """
    if n_images < 1 or image_size < 16:
        raise ValueError(
            f"n_images ({n_images}) must be >= 1 and image_size ({image_size}) >= 16 pixels"
        )
    final = Path(out_dir).expanduser().absolute()
    if not (final.is_dir() and not any(final.iterdir())):  # a new or empty folder is fine
        check_replaceable(final, overwrite, _is_coco_export,
                          "a synthetic COCO export written by napari-hrs synth")  # fmt: skip
    counts = split_counts(n_images, splits)
    order = np.random.default_rng(np.random.SeedSequence([seed, 0xC0C0])).permutation(n_images)
    done = 0
    paths: dict[str, Path] = {}
    start = 0
    with atomic_target(final, overwrite=True) as out:
        for split, k in zip(SPLITS, counts, strict=True):
            (out / split).mkdir(parents=True, exist_ok=True)
            images, anns = [], []
            for j, idx in enumerate(sorted(order[start : start + k].tolist())):
                if cancel is not None and cancel():
                    raise Cancelled(f"COCO export to {final} cancelled; nothing was written")
                record, image_anns = _write_image(out / split, j + 1, idx, seed, image_size,
                                                  pixel_size_um, density, len(anns) + 1,
                                                  density_jitter)  # fmt: skip
                images.append(record)
                anns.extend(image_anns)
                done += 1
                if progress is not None:
                    progress(done, n_images)
            start += k
            data = {
                "info": {
                    "description": f"napari-hrs synthetic hRS, split {split}",
                    "seed": seed,
                    "generator_version": GENERATOR_VERSION,
                },
                "images": images,
                "annotations": anns,
                "categories": categories(),
            }
            (out / f"{split}.json").write_text(json.dumps(data))
            paths[split] = final / f"{split}.json"
    return paths


def _write_image(folder: Path, image_id: int, idx: int, seed: int, image_size: int,
                 pixel_size_um: float, density: float, first_ann_id: int,
                 density_jitter: tuple[float, float],
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """Render scene ``idx`` of the export, write it as ``folder/img_{image_id - 1:05d}.tif``;
    return its COCO image record and annotations (ids from ``first_ann_id``)."""
    scene = make_scene(
        int(np.random.SeedSequence([seed, idx]).generate_state(1)[0]),
        (image_size, image_size),
        pixel_size_um,
        density,
        jitter=True,
        density_jitter=density_jitter,
    )
    image, labels = render_region(scene, 0, 0, image_size, image_size)
    name = f"img_{image_id - 1:05d}.tif"
    tifffile.imwrite(folder / name, image[0])
    cells = {
        c.label_id: c
        for by in range(scene.n_blocks[0])
        for bx in range(scene.n_blocks[1])
        for c in block_cells(scene, by, bx)
    }
    record = {
        "id": image_id,
        "file_name": name,
        "width": image_size,
        "height": image_size,
        "pixel_size_um": round(scene.pixel_size_um, 5),
        "scene_index": int(idx),
    }
    return record, _annotations(labels, cells, image_id, first_ann_id)


def _is_coco_export(path: Path) -> bool:
    """True when ``path`` holds a COCO export written by :func:`export_coco`."""
    for split in SPLITS:
        try:
            info = json.loads((path / f"{split}.json").read_text()).get("info", {})
        except (OSError, ValueError, AttributeError):
            continue
        if str(info.get("description", "")).startswith("napari-hrs synthetic"):
            return True
    return False
