"""COCO export of synthetic brightfield scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_hrs.synth import CELL_TYPES, export_coco
from napari_hrs.synth.coco import MIN_AREA_PX, split_counts


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco")
    export_coco(out, n_images=10, image_size=128, seed=2, splits=(0.6, 0.2, 0.2))
    return out


@pytest.mark.parametrize(
    ("n", "splits", "expected"),
    [
        (200, (0.8, 0.1, 0.1), [160, 20, 20]),
        (10, (0.6, 0.2, 0.2), [6, 2, 2]),
        (7, (1, 1, 1), [3, 2, 2]),
        (3, (1, 0, 0), [3, 0, 0]),
    ],
)
def test_split_counts(n, splits, expected):
    assert split_counts(n, splits) == expected


def test_split_counts_rejects_bad_fractions():
    with pytest.raises(ValueError, match="splits"):
        split_counts(10, (0.5, 0.5))


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_loads_with_pycocotools(coco_dir, split):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    coco = COCO(str(coco_dir / f"{split}.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CELL_TYPES)
    assert coco.getCatIds() == list(range(1, 8))
    for img in coco.loadImgs(coco.getImgIds()):
        pixels = tifffile.imread(coco_dir / split / img["file_name"])
        assert pixels.shape == (img["height"], img["width"]) == (128, 128)
        assert pixels.dtype == np.uint16
        assert 0.325 * 0.92 <= img["pixel_size_um"] <= 0.325 * 1.08  # jittered per scene
        masks = []
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            m = coco.annToMask(ann)
            assert m.sum() == ann["area"] >= MIN_AREA_PX
            assert isinstance(ann["segmentation"]["counts"], str)
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(m)
            assert (x, y, w, h) == (
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            )
            assert ann["iscrowd"] == 0
            assert set(ann["attributes"]) == {"PRM1_positive", "PNA_positive"}
            assert mask_utils.area(ann["segmentation"]) == ann["area"]
            masks.append(m)
        if masks:  # instances do not overlap (occluded parts belong to the upper cell)
            assert np.stack(masks).sum(axis=0).max() == 1


def test_splits_disjoint_and_complete(coco_dir):
    seen = []
    for split in ("train", "val", "test"):
        data = json.loads((coco_dir / f"{split}.json").read_text())
        seen += [im["scene_index"] for im in data["images"]]
        assert len(list((coco_dir / split).glob("*.tif"))) == len(data["images"])
    assert sorted(seen) == list(range(10))


def test_annotations_plentiful_and_typed(coco_dir):
    data = json.loads((coco_dir / "train.json").read_text())
    cats = {a["category_id"] for a in data["annotations"]}
    assert len(data["annotations"]) > 20
    assert 1 in cats and len(cats) >= 4
    for a in data["annotations"]:
        if a["category_id"] not in (1, 2):
            assert not any(a["attributes"].values())


def test_deterministic(coco_dir, tmp_path):
    export_coco(tmp_path, n_images=10, image_size=128, seed=2, splits=(0.6, 0.2, 0.2))
    for split in ("train", "val", "test"):
        assert (tmp_path / f"{split}.json").read_text() == (coco_dir / f"{split}.json").read_text()
    a = tifffile.imread(coco_dir / "val" / "img_00000.tif")
    np.testing.assert_array_equal(a, tifffile.imread(tmp_path / "val" / "img_00000.tif"))


def test_density_jitter_adds_sparse_fields(tmp_path):
    """Each image's density factor is drawn from density_jitter: the default keeps the earlier
    draws (same scenes for a seed), a low range gives fields with few cells."""
    from napari_hrs.synth.scene import make_scene

    a = make_scene(5, (256, 256), 0.325, 1.0, jitter=True)
    assert make_scene(5, (256, 256), 0.325, 1.0, jitter=True, density_jitter=(0.6, 1.5)) == a
    assert 0.6 <= a.density <= 1.5
    sparse = make_scene(5, (256, 256), 0.325, 1.0, jitter=True, density_jitter=(0.1, 0.1))
    assert sparse.density == pytest.approx(0.1)
    counts = {}
    for name, jit in (("dense", (1.0, 1.0)), ("sparse", (0.1, 0.1))):
        export_coco(tmp_path / name, n_images=6, image_size=128, seed=2, splits=(1, 0, 0),
                    density_jitter=jit)  # fmt: skip
        counts[name] = len(json.loads((tmp_path / name / "train.json").read_text())["annotations"])
    assert counts["sparse"] < 0.3 * counts["dense"], counts


def test_cli_density_jitter_is_checked(tmp_path, capsys):
    from napari_hrs.cli import main

    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path / "c"), "--coco", "--density-jitter", "0,1"])
    assert "--density-jitter '0,1'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("bad", [(0.0, 1.0), (1.5, 0.6), (-1.0, 2.0)])
def test_make_scene_rejects_bad_density_jitter(bad):
    from napari_hrs.synth.scene import make_scene

    with pytest.raises(ValueError, match="density_jitter"):
        make_scene(5, (256, 256), jitter=True, density_jitter=bad)
