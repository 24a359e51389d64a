"""Augmentations keep masks, boxes and image content aligned."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_hrs.train.augment import AugmentConfig, augment, masks_to_boxes


def _image_with_masks(size=(40, 52), n=3, seed=0):
    """An image whose pixels inside each instance hold a distinct bright value."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size[0], : size[1]]
    img = np.full((1, *size), 20.0, np.float32)
    masks = []
    for k in range(n):
        cy, cx = rng.uniform(8, size[0] - 8), rng.uniform(8, size[1] - 8)
        m = ((yy - cy) ** 2 / 36 + (xx - cx) ** 2 / 16) <= 1  # elongated: orientation matters
        m &= ~np.any(masks, axis=0) if masks else True
        masks.append(m)
        img[0][m] = 100.0 + 40 * k
    return img, np.stack(masks)


GEOMETRIC = [
    AugmentConfig.none(),
    AugmentConfig(
        scale=(1.0, 1.0), brightness=0, contrast=(1, 1), gamma=(1, 1), blur_prob=0, noise_prob=0
    ),
    AugmentConfig(
        flip=1.0,
        rot90=True,
        scale=(0.8, 1.25),
        brightness=0,
        contrast=(1, 1),
        gamma=(1, 1),
        blur_prob=0,
        noise_prob=0,
    ),
    AugmentConfig(
        flip=0.5,
        scale=(0.9, 1.1),
        brightness=0,
        contrast=(1, 1),
        gamma=(1, 1),
        blur_prob=0,
        noise_prob=0,
        crop_size=32,
    ),
]


@pytest.mark.parametrize("cfg", GEOMETRIC)
@pytest.mark.parametrize("seed", range(6))
def test_masks_follow_image(cfg, seed):
    img, masks = _image_with_masks(seed=seed)
    out, out_masks, keep = augment(img, masks, np.random.default_rng(seed), cfg)
    expected = (cfg.crop_size, cfg.crop_size) if cfg.crop_size else img.shape[-2:]
    assert out.shape == (1, *expected) and out_masks.shape[-2:] == tuple(expected)
    assert out_masks.shape[0] == keep.size
    for m, k in zip(out_masks, keep, strict=True):
        value = 100.0 + 40 * k
        if m.sum() >= 20:  # slivers cut by a crop are mostly interpolated edge
            assert np.median(out[0][m]) == pytest.approx(value, abs=8)
        # interior pixels carry the instance's value (edges may be interpolated)
        core = ndimage.binary_erosion(m)
        if core.any():
            assert (np.abs(out[0][core] - value) < 20).mean() > 0.95
    # pixels away from every mask are background (a dropped sliver at a crop edge aside)
    bg = ~ndimage.binary_dilation(out_masks.any(axis=0), iterations=2)
    assert (np.abs(out[0][bg] - 20.0) < 1).mean() > 0.99
    boxes = masks_to_boxes(out_masks)
    for m, b in zip(out_masks, boxes, strict=True):
        ys, xs = np.nonzero(m)
        assert tuple(b) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_identity_config_changes_nothing():
    img, masks = _image_with_masks()
    out, out_masks, keep = augment(img, masks, np.random.default_rng(0), AugmentConfig.none())
    assert np.array_equal(out, img) and np.array_equal(out_masks, masks)
    assert keep.tolist() == [0, 1, 2]


def test_same_seed_same_result_and_photometry_varies():
    img, masks = _image_with_masks()
    a = augment(img, masks, np.random.default_rng(7))
    b = augment(img, masks, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    outs = [augment(img, masks, np.random.default_rng(s))[0].mean() for s in range(8)]
    assert np.std(outs) > 0.5


def test_crop_drops_instances_outside():
    img, masks = _image_with_masks(size=(120, 120), n=6, seed=3)
    cfg = AugmentConfig.none(crop_size=30)
    _, out_masks, keep = augment(img, masks, np.random.default_rng(1), cfg)
    assert keep.size < 6
    assert all(m.sum() >= cfg.min_area for m in out_masks)


def test_small_image_is_padded():
    img, masks = _image_with_masks(size=(30, 30), n=1)
    out, out_masks, _ = augment(
        img, masks, np.random.default_rng(0), AugmentConfig.none(crop_size=40)
    )
    assert out.shape == (1, 40, 40)
    assert out_masks.sum() == masks.sum()
    assert out[0, 0, 0] == pytest.approx(20.0)  # padded with the median


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same size"):
        augment(np.zeros((1, 10, 10)), np.zeros((1, 9, 10), bool), np.random.default_rng(0))
