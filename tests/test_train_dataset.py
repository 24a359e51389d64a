"""COCO <-> napari labels conversions, image loading and the train/val split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _train_helpers import CATS, make_scene, square_polygon, write_tiny_coco
from napari_hrs.errors import DatasetError
from napari_hrs.train.dataset import (
    InstanceDataset,
    coco_to_labels,
    decode_segmentation,
    encode_mask,
    labels_to_coco,
    read_image,
    split_dataset,
    to_channels,
    write_coco,
)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two label images describe the same instances (ids may differ)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = set(zip(a[a > 0].tolist(), b[b > 0].tolist(), strict=True))
    return len(pairs) == len(np.unique(a[a > 0])) == len(np.unique(b[b > 0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_coco_labels_round_trip(seed):
    rng = np.random.default_rng(seed)
    img, labels, table = make_scene(rng, size=48, n_cells=3)
    coco = labels_to_coco([img], [labels], [table], CATS)
    assert len(coco["annotations"]) == len(table)
    back, classes = coco_to_labels(coco, image_id=1)
    assert _same_partition(labels, back)
    for lid in np.unique(labels[labels > 0]):
        new = int(np.bincount(back[labels == lid]).argmax())
        assert classes[new] == table[int(lid)]


def test_class_labels_array_and_index_tables():
    rng = np.random.default_rng(5)
    img, labels, table = make_scene(rng, size=48, n_cells=3)
    class_arr = np.zeros_like(labels)
    for lid, name in table.items():
        class_arr[labels == lid] = CATS.index(name) + 1  # 1-based
    index_table = {lid: CATS.index(name) for lid, name in table.items()}  # 0-based
    a = labels_to_coco([img], [labels], [class_arr], CATS)
    b = labels_to_coco([img], [labels], [index_table], CATS)
    c = labels_to_coco([img], [labels], [table], CATS)
    cats = [[x["category_id"] for x in d["annotations"]] for d in (a, b, c)]
    assert cats[0] == cats[1] == cats[2]


def test_missing_class_is_a_clear_error():
    rng = np.random.default_rng(0)
    img, labels, table = make_scene(rng, size=48, n_cells=2)
    table.pop(2)
    with pytest.raises(DatasetError, match="instance 2"):
        labels_to_coco([img], [labels], [table], CATS)


def test_polygon_and_rle_decode_agree():
    h, w = 20, 24
    poly = decode_segmentation(square_polygon(3, 4, 10, 12), h, w)
    rle = decode_segmentation(encode_mask(poly), h, w)
    counts = {"size": [h, w], "counts": _uncompressed(poly)}
    raw = decode_segmentation(counts, h, w)
    assert poly.sum() > 0
    assert np.array_equal(poly, rle) and np.array_equal(poly, raw)
    ys, xs = np.nonzero(poly)
    assert abs(int(xs.min()) - 3) <= 1 and abs(int(ys.min()) - 4) <= 1


def _uncompressed(mask: np.ndarray) -> list[int]:
    flat = mask.T.reshape(-1).astype(np.uint8)  # column-major, as COCO
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return counts


@pytest.mark.parametrize("polygons", [False, True])
def test_from_coco_loads_masks_and_attributes(tmp_path, polygons):
    path = write_tiny_coco(tmp_path, n_images=2, size=48, polygons=polygons)
    ds = InstanceDataset.from_coco(path)
    assert len(ds) == 2 and ds.category_names == list(CATS)
    s = ds[0]
    assert s.image.shape == (1, 48, 48) and s.image.dtype == np.uint16
    assert s.masks.shape[0] == len(s.category_ids) == len(s.attributes) > 0
    coco = json.loads(path.read_text())
    first = [a for a in coco["annotations"] if a["image_id"] == 1]
    for m, a in zip(s.masks, first, strict=True):
        x, y, bw, bh = a["bbox"]
        ys, xs = np.nonzero(m)
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
    assert any(att["PNA_positive"] for att in s.attributes)


def test_missing_image_file_names_it(tmp_path):
    path = write_tiny_coco(tmp_path, n_images=1, size=32)
    (tmp_path / "data" / "img_000.tif").unlink()
    with pytest.raises(FileNotFoundError, match="img_000.tif"):
        InstanceDataset.from_coco(path)


def test_from_labels_and_write_coco_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    scenes = [make_scene(rng, size=40, n_cells=2) for _ in range(2)]
    ds = InstanceDataset.from_labels(
        [s[0] for s in scenes], [s[1] for s in scenes], [s[2] for s in scenes], CATS
    )
    out = write_coco(ds, tmp_path / "exported.json")
    back = InstanceDataset.from_coco(out)
    assert len(back) == 2
    for i in range(2):
        assert np.array_equal(back[i].image, ds[i].image)
        assert np.array_equal(back[i].masks, ds[i].masks)
    assert back.fingerprint() == InstanceDataset.from_coco(out).fingerprint()


@pytest.mark.parametrize(
    "shape, in_ch, out_shape",
    [((1, 8, 9), 1, (1, 8, 9)), ((3, 8, 9), 1, (1, 8, 9)), ((1, 8, 9), 3, (3, 8, 9))],
)
def test_to_channels(shape, in_ch, out_shape):
    img = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    out = to_channels(img, in_ch)
    assert out.shape == out_shape
    if shape[0] == 1 and in_ch == 3:
        assert np.array_equal(out[0], out[2])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_read_rgb_image(tmp_path, suffix):
    rgb = (np.random.default_rng(0).random((10, 12, 3)) * 255).astype(np.uint8)
    path = tmp_path / f"x{suffix}"
    if suffix == ".png":
        import imageio.v3 as iio

        iio.imwrite(path, rgb)
    else:
        import tifffile

        tifffile.imwrite(path, rgb)
    out = read_image(path)
    assert out.shape == (3, 10, 12)
    assert np.array_equal(out[1], rgb[..., 1])


def _strat_dataset(n_a: int, n_b: int) -> InstanceDataset:
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    for i in range(n_a + n_b):
        coco["images"].append({"id": i + 1, "file_name": f"{i}.tif", "height": 8, "width": 8})
        coco["annotations"].append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1 if i < n_a else 2,
                "segmentation": square_polygon(1, 1, 4, 4),
                "iscrowd": 0,
            }
        )
    return InstanceDataset.from_coco(coco)


@pytest.mark.parametrize("n_a, n_b, frac", [(10, 5, 0.2), (8, 2, 0.25), (3, 3, 0.5)])
def test_stratified_split(n_a, n_b, frac):
    ds = _strat_dataset(n_a, n_b)
    train, val = split_dataset(ds, frac, seed=1, class_names=["a", "b"])
    tr_ids = {r.image_id for r in train.records}
    va_ids = {r.image_id for r in val.records}
    assert not tr_ids & va_ids and len(tr_ids | va_ids) == n_a + n_b
    assert val.counts()["a"] == max(1, round(frac * n_a))
    assert val.counts()["b"] == max(1, round(frac * n_b))
    again = split_dataset(ds, frac, seed=1, class_names=["a", "b"])[1]
    assert [r.image_id for r in again.records] == [r.image_id for r in val.records]
    other = split_dataset(ds, frac, seed=2, class_names=["a", "b"])[1]
    assert len(other) == len(val)


def test_split_needs_two_images():
    with pytest.raises(DatasetError, match="at least 2"):
        split_dataset(_strat_dataset(1, 0), 0.5)
