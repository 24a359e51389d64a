"""Shared helpers for the synthetic-data tests: a small generated acquisition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from scipy import ndimage

from napari_hrs.synth import generate_acquisition, read_ground_truth

#: a small acquisition: two pyramid levels, 2 x 3 chunks of 256 (the last ones partial)
SMALL = {"size": (512, 576), "seed": 3, "chunk": 256, "workers": 2}


def make_small(directory: Path, name: str = "small.ome.zarr", **kw) -> Path:
    """Generate a small acquisition (default :data:`SMALL`) into ``directory``."""
    params = {**SMALL, **kw}
    return generate_acquisition(directory / name, **params)


def arrays(path: Path) -> dict[str, np.ndarray]:
    """All image and label level arrays of an acquisition, keyed by their store path."""
    root = zarr.open_group(str(path), mode="r")
    out = {}
    for prefix, group in (("", root), ("labels/ground_truth/", root["labels/ground_truth"])):
        for d in group.attrs["multiscales"][0]["datasets"]:
            out[prefix + d["path"]] = group[d["path"]][:]
    return out


def truth(path: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Level-0 labels (numpy) and the truth table of an acquisition."""
    labels, table = read_ground_truth(path)
    return labels.compute(), table


def assert_same_acquisition(a: Path, b: Path) -> None:
    """Every level of image and labels, and the table, are identical."""
    x, y = arrays(a), arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    pd.testing.assert_frame_equal(truth(a)[1], truth(b)[1])


def per_cell_mean(image: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mean of ``image`` over each label id in ``ids``."""
    return np.asarray(ndimage.mean(image.astype(float), labels, ids))
