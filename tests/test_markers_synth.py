"""Quantification on a real synthetic acquisition: calls agree with the generator's truth."""

from __future__ import annotations

import pytest

synth = pytest.importorskip("napari_hrs.synth")
if not hasattr(synth, "generate_acquisition"):
    pytest.skip("napari_hrs.synth.generate_acquisition not available", allow_module_level=True)

from napari_hrs.io import open_acquisition  # noqa: E402
from napari_hrs.markers import call_markers, quantify_acquisition, summarize  # noqa: E402

#: agreement floors with the ground truth (measured values are in the report / docs)
FLOOR = {"otsu": 0.85, "background_sd": 0.85}


@pytest.fixture(scope="module")
def acquisition(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "scene.ome.zarr"
    synth.generate_acquisition(path, size=512, seed=3)
    labels, truth = synth.read_ground_truth(path)
    return open_acquisition(path), labels, truth


@pytest.mark.parametrize("method", ["otsu", "background_sd"])
def test_calls_agree_with_ground_truth(acquisition, method):
    acq, labels, truth = acquisition
    table = call_markers(quantify_acquisition(acq, labels, tile=256), method)
    merged = table.merge(truth, on="label_id", suffixes=("", "_true"))
    assert len(merged) == len(truth) > 5
    for m in ("PRM1", "PNA"):
        agree = (merged[f"{m}_positive"] == merged[f"{m}_positive_true"].astype(bool)).mean()
        print(f"{method} {m}: agreement {agree:.3f} over {len(merged)} cells")
        assert agree >= FLOOR[method], (m, agree)
    s = summarize(merged, hrs_only=False)
    assert s["n_cells"] == len(truth)
