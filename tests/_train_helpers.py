"""Tiny hand-made datasets for the train / evaluate tests (no synthetic generator needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_hrs.train.dataset import encode_mask, mask_to_box

CATS = ("round_spermatid", "red_blood_cell", "lymphocyte")


def disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def square_polygon(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    """A polygon whose pycocotools rasterisation is the pixel block [x0, x1) x [y0, y1)."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def make_scene(
    rng: np.random.Generator, size: int = 64, n_cells: int = 4, classes: tuple[int, ...] = (0, 1, 2)
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """A uint16 brightfield-like image ``(Y, X)`` with non-overlapping bright / dark disks.

    round spermatids: bright ring with a dark centre; red blood cells: dark disks; lymphocytes:
    uniformly bright disks. Returns the image, the instance labels and label id -> class name.
    """
    img = rng.normal(1000, 20, (size, size))
    labels = np.zeros((size, size), np.int32)
    table: dict[int, str] = {}
    lid = 0
    for _ in range(60):
        if lid == n_cells:
            break
        r = rng.uniform(5, 7)
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        m = disk((size, size), cy, cx, r)
        if (labels[disk((size, size), cy, cx, r + 2)] > 0).any():
            continue
        lid += 1
        cls = CATS[classes[(lid - 1) % len(classes)]]
        labels[m] = lid
        table[lid] = cls
        if cls == "round_spermatid":
            img[m] += 600
            img[disk((size, size), cy, cx, r * 0.5)] -= 400
        elif cls == "red_blood_cell":
            img[m] -= 500
        else:
            img[m] += 300
    return np.clip(img, 0, 65535).astype(np.uint16), labels, table


def write_tiny_coco(
    folder: Path, n_images: int = 4, size: int = 64, seed: int = 0, polygons: bool = False
) -> Path:
    """A COCO dataset: ``folder/data.json`` + ``folder/data/img_*.tif`` (uint16), with
    PRM1/PNA attributes on the spermatids. Returns the JSON path."""
    import tifffile

    rng = np.random.default_rng(seed)
    img_dir = folder / "data"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        img, labels, table = make_scene(rng, size=size)
        name = f"img_{i:03d}.tif"
        tifffile.imwrite(img_dir / name, img)
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for lid, cls in table.items():
            m = labels == lid
            x0, y0, x1, y1 = mask_to_box(m)
            if polygons:  # the box polygon (a stand-in for a tool's polygon export)
                seg = square_polygon(int(x0), int(y0), int(x1), int(y1))
            else:
                seg = encode_mask(m)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": CATS.index(cls) + 1,
                    "segmentation": seg,
                    "area": float(m.sum()),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                    "attributes": {
                        "PRM1_positive": cls == "round_spermatid" and lid % 2 == 1,
                        "PNA_positive": cls == "round_spermatid",
                    },
                }
            )
    coco = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CATS)],
    }
    path = folder / "data.json"
    path.write_text(json.dumps(coco))
    return path


#: a very small compact model for fast tests (same architecture, narrower / fewer samples)
TINY_OVERRIDES = {
    "backbone.out_channels": [8, 16, 16, 32],
    "backbone.stem_out_channels": 8,
    "backbone.gn_groups": 4,
    "fpn.out_channels": 16,
    "rpn.batch_size_per_image": 64,
    "rpn.pre_nms_topk_train": 200,
    "rpn.post_nms_topk_train": 64,
    "rpn.pre_nms_topk_test": 100,
    "rpn.post_nms_topk_test": 50,
    "roi_heads.batch_size_per_image": 32,
    "roi_heads.fc_dim": 32,
    "mask_head.conv_dim": 16,
    "mask_head.num_conv": 1,
}

#: fit() keyword arguments for fast, deterministic tests
FAST_FIT = {
    "batch_size": 2,
    "num_workers": 0,
    "threads": 1,
    "warmup": 1,
    "lr": 0.02,
    "overrides": TINY_OVERRIDES,
    "class_names": ["round_spermatid"],
}
