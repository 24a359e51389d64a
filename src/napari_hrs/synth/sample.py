"""The sample acquisition: the committed ``sample_data/synthetic_hrs.ome.zarr`` of the source
checkout, or the same file generated once into the user cache (installed packages)."""

from __future__ import annotations

import os
from pathlib import Path

import napari_hrs

SAMPLE_NAME = "synthetic_hrs.ome.zarr"
#: the parameters of the committed sample (sample_data/README.md gives the command)
SAMPLE_PARAMS: dict = {
    "size": 1024,
    "seed": 0,
    "pixel_size_um": 0.325,
    "density": 1.0,
    "chunk": 512,
}


def repo_sample() -> Path:
    """Where the committed sample lives in a source checkout (it may not exist)."""
    return Path(napari_hrs.__file__).resolve().parents[2] / "sample_data" / SAMPLE_NAME


def cache_dir() -> Path:
    """The napari-hrs user cache folder (``NAPARI_HRS_CACHE`` overrides it)."""
    env = os.environ.get("NAPARI_HRS_CACHE")
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("napari-hrs"))
    except ImportError:  # pragma: no cover
        return Path.home() / ".cache" / "napari-hrs"


def sample_path() -> Path:
    """Path of the sample synthetic acquisition (1024 x 1024 px, seed 0, 0.325 µm/px).

    The repository copy when present; otherwise it is generated once (a few seconds) into
    :func:`cache_dir` and reused.
    """
    repo = repo_sample()
    if (repo / ".zattrs").is_file():
        return repo
    cached = cache_dir() / SAMPLE_NAME
    if not (cached / "labels" / "ground_truth" / "cells.csv").is_file():
        from napari_hrs.synth.writer import generate_acquisition

        generate_acquisition(cached, overwrite=cached.exists(), **SAMPLE_PARAMS)
    return cached
