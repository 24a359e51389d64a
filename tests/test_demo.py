"""The main job: the pipeline behind ``napari-hrs demo`` and a real render under Xvfb."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_hrs.synth.sample import sample_path


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """A compact model with random weights (seeded): at a low threshold it detects things."""
    import torch

    from napari_hrs.engine import build_model, get_preset
    from napari_hrs.engine.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = get_preset("compact")
    path = tmp_path_factory.mktemp("model") / "random.pt"
    save_checkpoint(path, build_model(cfg), cfg)
    return path


def test_pipeline_detects_quantifies_and_writes(random_checkpoint, tmp_path):
    from napari_hrs.pipeline import run_pipeline

    out = tmp_path / "result.zarr"
    before = sorted(p.name for p in sample_path().rglob("*"))
    with warnings.catch_warnings():  # the detection boxes hold every cell: no second try
        warnings.filterwarnings("error", message=".*measuring again with the labels pass")
        res = run_pipeline(sample_path(), random_checkpoint, out=out, score_threshold=0.2)
    assert res.detection.complete
    assert len(res.cells) > 0
    # the detection boxes replaced the labels pass; measuring with it gives the same numbers
    from napari_hrs.io import open_acquisition
    from napari_hrs.markers import quantify_acquisition

    again = quantify_acquisition(open_acquisition(sample_path()), res.detection.labels,
                                 markers=("PRM1", "PNA"))  # fmt: skip
    got = res.cells.set_index("label_id").loc[again["label_id"]]
    for col in ("bbox_x0", "bbox_y1", "ring_area_px", "PRM1_mean", "PNA_median"):
        np.testing.assert_array_equal(got[col].to_numpy(), again[col].to_numpy(), err_msg=col)
    # every detected cell was measured in both markers and called; background-subtracted
    # values wherever the cell has a background ring (packed cells have none: NaN, documented)
    for col in ("PRM1_mean", "PNA_mean", "PRM1_positive", "PNA_positive", "category"):
        assert res.cells[col].notna().all(), col
    ringed = res.cells["ring_area_px"] > 0
    assert ringed.mean() > 0.5
    for col in ("PRM1_mean_bgsub", "PNA_mean_bgsub"):
        assert res.cells.loc[ringed, col].notna().all(), col
        assert res.cells.loc[~ringed, col].isna().all(), col
    assert set(res.cells["label_id"]) == set(res.detection.table["id"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_detections"] == len(res.cells)
    assert (out / "cells.csv").is_file()
    assert "PRM1+ and/or PNA+" in res.summary_text()
    # the sample itself is untouched
    assert sorted(p.name for p in sample_path().rglob("*")) == before


def test_pipeline_with_nothing_detected_says_so(random_checkpoint, tmp_path):
    from napari_hrs.pipeline import run_pipeline

    res = run_pipeline(
        sample_path(), random_checkpoint, out=tmp_path / "r.zarr", score_threshold=0.99
    )
    assert len(res.cells) == 0
    assert res.summary_text().startswith("0 cells detected")


def test_demo_headless_cli(random_checkpoint):
    result = subprocess.run(
        [sys.executable, "-m", "napari_hrs.cli", "demo", "--headless", "--model",
         str(random_checkpoint), "--score-threshold", "0.2"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "cells detected" in result.stdout


@pytest.mark.xvfb
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (Debian xvfb)")
def test_demo_renders_detection_outlines(random_checkpoint, tmp_path):
    """Render the demo for real under Xvfb, with and without detections: the outlines of the
    detected cells must change the picture where the cells are."""
    from imageio.v3 import imread

    def shot(name: str, *extra: str) -> np.ndarray:
        png = tmp_path / name
        env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
        result = subprocess.run(
            ["xvfb-run", "-a", "-s", "-screen 0 1400x1000x24", sys.executable, "-m",
             "napari_hrs.cli", "demo", "--model", str(random_checkpoint), "--score-threshold",
             "0.2", "--screenshot", str(png), "--exit", *extra],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return imread(png)[..., :3].astype(int)

    with_cells = shot("with.png")
    without = shot("without.png", "--no-detect")
    assert with_cells.shape == without.shape
    assert with_cells.std() > 10  # something was drawn, not a black canvas
    changed = np.abs(with_cells - without).sum(axis=-1) > 30
    assert changed.mean() > 0.002, f"outlines changed only {changed.mean():.4%} of the pixels"
