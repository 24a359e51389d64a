"""Shared helpers for the synthetic-data tests: a small generated acquisition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from napari_hrs.synth import generate_acquisition, read_ground_truth

SMALL = {"size": (512, 576), "seed": 3, "chunk": 256}


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
    labels, table = read_ground_truth(path)
    return labels.compute(), table
