"""The npe2 labels writer (``.zarr`` / ``.tif``), directly and through napari's save."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from napari_hrs._napari.writer import write_labels


def _labels() -> np.ndarray:
    lab = np.zeros((40, 50), np.uint16)
    lab[5:15, 10:22] = 1
    lab[20:35, 30:45] = 2
    return lab


@pytest.mark.parametrize("name, written", [("cells.zarr", "cells.zarr"), ("cells.tif", "cells.tif"),
                                           ("cells", "cells.zarr")])  # fmt: skip
def test_write_labels(tmp_path, name, written):
    lab = _labels()
    meta = {"name": "detections", "metadata": {"pixel_size_um": 0.325, "acquisition_path": "s.zarr",
                                               "hrs_detection": {"model": {"name": "compact"}}}}  # fmt: skip
    paths = write_labels(str(tmp_path / name), [lab, lab[::2, ::2]], meta)
    assert paths == [str(tmp_path / written)]
    if written.endswith(".tif"):
        with tifffile.TiffFile(paths[0]) as tif:
            np.testing.assert_array_equal(tif.asarray(), lab)
            prov = json.loads(tif.pages[0].description)["napari_hrs"]
    else:
        group = zarr.open_group(paths[0], mode="r")
        np.testing.assert_array_equal(group["0"][:], lab)
        prov = group.attrs["napari_hrs"]
        ms = group.attrs["multiscales"][0]  # NGFF 0.4 label image
        assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.325, 0.325]
    assert prov["layer"] == "detections" and prov["source"] == "s.zarr"
    assert prov["detection"]["model"] == {"name": "compact"}


def test_write_labels_refuses_other_formats(tmp_path):
    with pytest.raises(ValueError, match=r"\.zarr, \.tif, \.tiff"):
        write_labels(str(tmp_path / "cells.png"), _labels(), {})


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_napari_saves_labels_with_the_plugin(tmp_path, suffix):
    import npe2
    from napari.layers import Labels

    npe2.PluginManager.instance().discover()  # what napari does at start-up
    layer = Labels(_labels(), name="cells")
    out = layer.save(str(tmp_path / f"cells{suffix}"), plugin="napari-hrs")
    assert out == [str(tmp_path / f"cells{suffix}")]
    back = (
        tifffile.imread(out[0]) if suffix == ".tif" else zarr.open_group(out[0], mode="r")["0"][:]
    )
    np.testing.assert_array_equal(back, _labels())
