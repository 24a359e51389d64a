"""The bundled compact model on a freshly generated acquisition (a seed it was not trained on),
scored against the generator's ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hrs.engine.checkpoint import bundled_model_path

pytestmark = pytest.mark.skipif(
    not bundled_model_path().is_file(), reason="bundled model not shipped in this install"
)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    from napari_hrs.engine.detect import detect
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth import generate_acquisition, read_ground_truth

    root = tmp_path_factory.mktemp("bundled")
    img = generate_acquisition(root / "img.ome.zarr", size=768, seed=12345, chunk=256)
    result = detect(open_acquisition(img), "compact", out=root / "det.zarr", tile=512)
    truth_labels, truth = read_ground_truth(img)
    truth_labels = np.asarray(truth_labels)
    table = result.table
    # the ground-truth cell under each detection's centroid
    ys = np.clip(table["centroid_y_px"].round().astype(int), 0, truth_labels.shape[0] - 1)
    xs = np.clip(table["centroid_x_px"].round().astype(int), 0, truth_labels.shape[1] - 1)
    hit = truth_labels[ys, xs]
    types = truth.set_index("label_id")["cell_type"]
    hit_type = [types.get(int(h), "background") if h else "background" for h in hit]
    return result, truth, hit, hit_type


def test_bundled_model_finds_most_round_spermatids(scored):
    result, truth, hit, _ = scored
    assert result.complete
    hrs_ids = set(truth.loc[truth["cell_type"] == "round_spermatid", "label_id"])
    assert len(hrs_ids) >= 10
    called = result.table["class_name"].to_numpy() == "round_spermatid"
    found = hrs_ids & {int(h) for h in np.asarray(hit)[called]}
    assert len(found) / len(hrs_ids) >= 0.85, f"recall {len(found)}/{len(hrs_ids)}"


def test_bundled_model_calls_are_cells_and_rarely_lookalikes(scored):
    """hRS calls sit on real cells, rarely on the named look-alikes; the look-alike classes
    the model learnt (red blood cells, lymphocytes) are found as themselves."""
    result, _, _, hit_type = scored
    hit_type = np.array(hit_type)
    cls = result.table["class_name"].to_numpy()
    assert set(cls) <= {"round_spermatid", "lymphocyte", "red_blood_cell"}
    hrs = hit_type[cls == "round_spermatid"]
    assert len(hrs) > 0
    assert (hrs != "background").mean() >= 0.9
    assert np.isin(hrs, ["red_blood_cell", "lymphocyte"]).mean() <= 0.05
    for name in ("red_blood_cell", "lymphocyte"):
        assert (cls == name).sum() > 0
        assert (hit_type[cls == name] == name).mean() >= 0.8


def test_bundled_model_keeps_every_cell_of_a_dense_large_tile(tmp_path):
    """The 1024² sample (~100 hRS, ~400 cells) in one 1024 px tile: the test-time proposal and
    detection caps grow with the tile area, so cells are not cut off at a fixed top-k."""
    from napari_hrs.engine.checkpoint import load_model
    from napari_hrs.engine.detect import detect
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth import read_ground_truth
    from napari_hrs.synth.sample import sample_path

    cfg = load_model("compact").cfg
    assert cfg.test_topk(256, 256) == (400, 200, 100)  # a training crop: the fixed minima
    assert min(cfg.test_topk(1024, 1024)) > 1000
    result = detect(open_acquisition(sample_path()), "compact", out=tmp_path / "d.zarr", tile=1024)
    assert result.metadata["tiles_total"] == 1
    truth_labels, truth = read_ground_truth(sample_path())
    truth_labels = np.asarray(truth_labels)
    hrs = result.table[result.table["class_name"] == "round_spermatid"]
    ys = hrs["centroid_y_px"].round().astype(int).clip(0, truth_labels.shape[0] - 1)
    xs = hrs["centroid_x_px"].round().astype(int).clip(0, truth_labels.shape[1] - 1)
    true_ids = set(truth.loc[truth["cell_type"] == "round_spermatid", "label_id"])
    found = true_ids & set(truth_labels[ys, xs].tolist())
    assert len(true_ids) > 80 and len(found) / len(true_ids) >= 0.9
    assert len(result.table) > 150


def test_mosaic_padding_around_a_field_does_not_change_its_calls(tmp_path):
    """A field in the middle of a canvas of zeros (the padding of a stitched mosaic), in one
    1024 px tile: its cells are called as in the field alone. Fed whole, the blank canvas
    changed the compact model's GroupNorm statistics: 9 hRS instead of 19."""
    import tifffile

    from napari_hrs.engine.checkpoint import load_model
    from napari_hrs.engine.detect import detect
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth import generate_acquisition

    model = load_model("compact")
    acq = generate_acquisition(tmp_path / "f.ome.zarr", size=512, seed=3, chunk=256)
    field = np.asarray(open_acquisition(acq).channel("brightfield"))
    canvas = np.zeros((1536, 1536), field.dtype)
    canvas[512:1024, 512:1024] = field
    calls = {}
    for name, img in (("alone", field), ("framed", canvas)):
        tifffile.imwrite(tmp_path / f"{name}.tif", img)
        res = detect(open_acquisition(tmp_path / f"{name}.tif", pixel_size_um=0.325), model,
                     tile=1024, out=tmp_path / f"{name}.zarr", device="cpu")  # fmt: skip
        calls[name] = res.table["class_name"].value_counts().to_dict()
    hrs = calls["alone"].get("round_spermatid", 0)
    assert hrs >= 10
    assert abs(calls["framed"].get("round_spermatid", 0) - hrs) <= 2, calls
    assert abs(sum(calls["framed"].values()) - sum(calls["alone"].values())) <= 3, calls
