"""napari_hrs.io.ngff: NGFF 0.4 image / label groups, pyramids, atomic label writing."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_hrs.errors import Cancelled
from napari_hrs.io import open_acquisition, read_labels
from napari_hrs.io.ngff import (
    create_image,
    create_labels,
    fill_pyramid,
    labels_writer,
    n_levels_for,
)


@pytest.mark.parametrize(
    ("shape", "n"),
    [((256, 256), 1), ((511, 4000), 1), ((512, 512), 2), ((1024, 1100), 3), ((4096, 4096), 5)],
)
def test_n_levels(shape, n):
    assert n_levels_for(shape) == n


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (2, 520, 530), dtype=np.uint16)
    path = tmp_path / "img.ome.zarr"
    root = create_image(
        path,
        data.shape,
        chunks=(128, 128),
        pixel_size_um=0.5,
        n_levels=3,
        channel_names=["brightfield", "PNA"],
        colors=["FFFFFF", "FF00FF"],
    )
    root["0"][:] = data
    fill_pyramid(root, "image")
    return path, data


def test_image_pyramid_is_2x_mean(image):
    path, data = image
    root = zarr.open_group(str(path), mode="r")
    assert root["1"].shape == (2, 260, 265) and root["2"].shape == (2, 130, 133)
    expected = data[:, :2, :2].astype(float).mean(axis=(1, 2))
    np.testing.assert_array_equal(root["1"][:, 0, 0], np.rint(expected).astype(np.uint16))
    block = data[:, 100:102, 528:530].astype(float).mean(axis=(1, 2))
    np.testing.assert_array_equal(root["1"][:, 50, 264], np.rint(block))


def test_image_readable(image):
    path, _ = image
    acq = open_acquisition(path, strict=False)
    assert acq.channel_names == ["brightfield", "PNA"]
    assert acq.pixel_size_um == pytest.approx(0.5)
    assert len(acq.levels) == 3


def test_labels_inside_image_keep_image_untouched(image):
    path, data = image
    before = {
        p.relative_to(path): p.stat().st_mtime_ns
        for p in path.rglob("*")
        if p.is_file() and "labels" not in p.parts
    }
    with labels_writer(
        path, "cells", (520, 530), chunks=(128, 128), pixel_size_um=0.5, n_levels=3
    ) as arr:
        lab = np.zeros((520, 530), np.uint32)
        lab[10:40, 20:60] = 7
        lab[101:300, 301:333] = 9
        arr[:] = lab
    after = {
        p.relative_to(path): p.stat().st_mtime_ns
        for p in path.rglob("*")
        if p.is_file() and "labels" not in p.parts
    }
    assert before == after
    assert not [p for p in path.rglob(".*partial*")]
    got = read_labels(open_acquisition(path, strict=False))["cells"]
    assert len(got.levels) == 3
    np.testing.assert_array_equal(got.levels[0].compute(), lab)
    np.testing.assert_array_equal(got.levels[1].compute(), lab[::2, ::2])
    np.testing.assert_array_equal(got.levels[2].compute(), lab[::4, ::4])
    with pytest.raises(FileExistsError, match="overwrite"):
        create_labels(path, "cells", (520, 530), chunks=(128, 128))
    create_labels(path, "cells", (520, 530), chunks=(128, 128), overwrite=True)
    assert zarr.open_group(str(path / "labels"), mode="r").attrs["labels"] == ["cells"]


def test_labels_writer_cancel_leaves_nothing(image):
    path, _ = image
    with pytest.raises(Cancelled):
        with labels_writer(
            path, "cells", (520, 530), chunks=(128, 128), n_levels=2, cancel=lambda: True
        ) as arr:
            arr[:] = 1
    assert not (path / "labels" / "cells").exists()
    assert not [p for p in (path / "labels").glob(".*")]


def test_standalone_labels(tmp_path):
    target = tmp_path / "cells.zarr"
    arr = create_labels(target, "cells", (64, 80), chunks=(32, 32), n_levels=2)
    arr[:] = 3
    fill_pyramid(zarr.open_group(str(target), mode="r+"), "labels")
    root = zarr.open_group(str(target), mode="r")
    assert "image-label" in root.attrs
    axes = root.attrs["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["y", "x"] and "unit" not in axes[0]
    assert (root["1"][:] == 3).all() and root["1"].shape == (32, 40)


def test_create_image_refuses_existing(image):
    path, _ = image
    with pytest.raises(FileExistsError):
        create_image(path, (1, 8, 8), chunks=(8, 8))


def test_fill_pyramid_kind_checked(image):
    path, _ = image
    with pytest.raises(ValueError, match="kind"):
        fill_pyramid(zarr.open_group(str(path), mode="r+"), "mean")
