"""The Predictor, detect() and the CLI with the real compact model (random weights) on real
synthetic acquisitions (napari_hrs.synth)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_hrs.engine.checkpoint import Loaded, bundled_model_path, save_checkpoint  # noqa: E402
from napari_hrs.engine.config import get_preset  # noqa: E402
from napari_hrs.engine.detect import detect  # noqa: E402
from napari_hrs.engine.model import build_model  # noqa: E402
from napari_hrs.engine.predictor import Predictor, config_hash  # noqa: E402
from napari_hrs.engine.results import read_detection_result  # noqa: E402
from napari_hrs.io import open_acquisition, read_labels  # noqa: E402
from napari_hrs.synth import generate_acquisition  # noqa: E402

CLASSES = ("round_spermatid", "red_blood_cell")


@pytest.fixture(scope="module")
def loaded():
    torch.manual_seed(0)
    cfg = get_preset("compact", class_names=CLASSES)
    return Loaded(model=build_model(cfg).eval(), cfg=cfg, meta={"name": "compact-random"})


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return {
        px: generate_acquisition(
            root / f"s{px}.ome.zarr", size=(320, 400), seed=3, pixel_size_um=px
        )
        for px in (0.325, 0.65)
    }


def _gray(seed, shape=(128, 160)):
    rng = np.random.default_rng(seed)
    return rng.uniform(40, 220, shape).astype(np.float32)


def test_real_batching_matches_one_by_one_and_is_deterministic(loaded):
    p = Predictor(loaded, device="cpu", score_threshold=0.3, max_detections=25, batch_size=2)
    images = [_gray(i) for i in range(2)]
    batched = p.predict(images)
    assert len(loaded.model.cfg.class_names) == 2 and p.class_names == CLASSES
    for im, b in zip(images, batched, strict=True):
        single = p.predict([im])[0]
        assert len(b) == len(single) > 0
        np.testing.assert_allclose(b.boxes, single.boxes, atol=0.05)
        np.testing.assert_allclose(b.scores, single.scores, atol=1e-4)
        np.testing.assert_array_equal(b.classes, single.classes)
        assert b.mask_probs.shape[1:] == (28, 28)
        assert (b.boxes[:, 2] <= im.shape[1]).all() and (b.boxes[:, 3] <= im.shape[0]).all()
    again = p.predict(images)
    for a, b in zip(batched, again, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.mask_probs, b.mask_probs)


def test_real_detect_into_the_image(loaded, synth, tmp_path):
    path = shutil.copytree(synth[0.325], tmp_path / "img.ome.zarr")
    acq = open_acquisition(path)
    seen = []
    res = detect(acq, Predictor(loaded, score_threshold=0.3, max_detections=25, batch_size=2),
                 tile=192, progress=lambda d, t: seen.append(d))  # fmt: skip
    meta = res.metadata
    assert res.complete and meta["tiles_done"] == meta["tiles_total"] == seen[-1] > 1
    assert meta["parameters"]["scale"] == 1.0 and meta["parameters"]["overlap"] == 72 + 32
    assert meta["model"]["config_hash"] == config_hash(loaded.cfg)
    assert meta["model"]["model"] == "compact-random"
    assert sorted(read_labels(open_acquisition(path))) == ["detections", "ground_truth"]
    table = res.table
    assert len(table) > 0
    np.testing.assert_array_equal(table["id"], np.arange(1, len(table) + 1))
    assert set(table["class_name"]) <= set(CLASSES) and (table["score"] >= 0.3).all()
    painted = set(np.unique(res.labels.compute())) - {0}
    assert painted <= set(table["id"]) and len(painted) >= 0.9 * len(table)
    assert table["centroid_x_um"].to_numpy() == pytest.approx(
        table["centroid_x_px"] * 0.325, abs=1e-3
    )
    assert (table["x1"] <= 400).all() and (table["y1"] <= 320).all()


def test_real_resampling_to_the_model_pixel_size(loaded, synth, tmp_path):
    acq = open_acquisition(synth[0.65])  # model: 0.325 um/px -> tiles upsampled 2x
    res = detect(acq, loaded, tile=256, score_threshold=0.3, max_detections=25,
                 out=tmp_path / "r.zarr")  # fmt: skip
    p = res.metadata["parameters"]
    assert p["scale"] == pytest.approx(2.0) and p["tile_image_px"] == 128
    assert p["overlap_image_px"] == 52
    assert res.labels.shape == (320, 400)
    t = res.table
    assert len(t) > 0 and (t["x1"] <= 400).all() and (t["y1"] <= 320).all()
    assert t["area_um2"].to_numpy() == pytest.approx(t["area_px"] * 0.65**2, abs=1e-3)


def test_cli_detect_with_a_checkpoint(loaded, synth, tmp_path):
    ckpt = save_checkpoint(tmp_path / "model.pt", loaded.model, loaded.cfg)
    out = tmp_path / "result.zarr"
    cmd = [sys.executable, "-m", "napari_hrs.cli", "detect", str(synth[0.325]), "--out", str(out),
           "--model", str(ckpt), "--device", "cpu", "--tile", "256", "--batch", "2",
           "--score-threshold", "0.3", "--max-detections", "25"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "status: complete" in r.stdout and str(out) in r.stdout
    res = read_detection_result(out)
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["model"]["model"] == str(ckpt)
    assert len(res.table) > 0 and res.labels.shape == (320, 400)


def test_cli_refuses_existing_output_and_missing_bundled_model(capsys, synth, tmp_path):
    from napari_hrs.cli import main

    (tmp_path / "r.zarr").mkdir()
    args = ["detect", str(synth[0.325]), "--out", str(tmp_path / "r.zarr"), "--tile", "128"]
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    if not bundled_model_path().is_file():
        assert main([*args, "--overwrite", "--model", "compact"]) == 2
        err = capsys.readouterr().err
        assert "bundled compact model" in err and "missing" in err
        assert (tmp_path / "r.zarr").is_dir()  # the existing output is untouched


@pytest.mark.gpu
def test_cuda_with_and_without_amp_agrees_with_cpu(loaded):
    images = [_gray(i, (256, 256)) for i in range(2)]
    cpu = Predictor(loaded, device="cpu", score_threshold=0.3, max_detections=25).predict(images)
    for amp in (False, True):
        p = Predictor(loaded, device="cuda", score_threshold=0.3, max_detections=25, amp=amp)
        assert p.amp is amp
        for c, g in zip(cpu, p.predict(images), strict=True):
            assert g.boxes.dtype == np.float32 and g.mask_probs.dtype == np.float32
            assert abs(len(g) - len(c)) <= max(2, len(c) // 5)
            if len(c) and len(g):
                from napari_hrs.engine.masks import box_iou

                assert box_iou(c.boxes[:1], g.boxes).max() > 0.9
    loaded.model.to("cpu")


def test_nan_pixels_do_not_void_the_tile(synth, tmp_path):
    """A float brightfield with a small NaN patch (a masked region) is detected as without it,
    away from the patch; NaN used to spread through the network and leave the tile empty."""
    import tifffile

    from napari_hrs.engine.checkpoint import load_checkpoint
    from napari_hrs.engine.intensity import IntensityRange

    x = IntensityRange(0.0, 255.0).apply(np.array([np.nan, np.inf, -np.inf, 10.0], np.float32))
    np.testing.assert_array_equal(x, [127.5, 319.0, -64.0, 10.0])

    acq = open_acquisition(synth[0.325])
    bf = np.asarray(acq.levels[0][acq.roles["brightfield"]]).astype(np.float32)
    holed = bf.copy()
    holed[:12, :12] = np.nan
    model = load_checkpoint(bundled_model_path())
    tables = []
    for name, img in (("plain", bf), ("holed", holed)):
        tifffile.imwrite(tmp_path / f"{name}.tif", img)
        res = detect(open_acquisition(tmp_path / f"{name}.tif"), model, tile=512,
                     out=tmp_path / f"{name}.zarr")  # fmt: skip
        tables.append(res.table)
    plain, holed_t = tables
    far = plain[(plain["x0"] > 60) | (plain["y0"] > 60)]
    assert len(far) > 5
    assert len(holed_t[(holed_t["x0"] > 60) | (holed_t["y0"] > 60)]) == len(far)


def test_padding_and_blank_images(synth, tmp_path):
    """Zero padding around a field (a stitched mosaic) once set the intensity range (the field
    was squeezed: 42 -> 5 detections on a 512² field in a 1536² frame) and entered the model as
    black; a constant image gave one red_blood_cell in its corner (the model's reading of an
    all-black input)."""
    import tifffile

    from napari_hrs.engine.checkpoint import load_checkpoint
    from napari_hrs.engine.intensity import PADDING_FRACTION, estimate_range

    acq = open_acquisition(synth[0.325])
    bf = np.asarray(acq.levels[0][acq.roles["brightfield"]])
    framed = np.zeros((960, 1200), bf.dtype)
    framed[320:640, 400:800] = bf  # 1/9 of the pixels hold the field
    rng, own = estimate_range(framed), estimate_range(bf)
    assert (rng.low, rng.high) == (own.low, own.high) and rng.padding == 0.0
    assert own.padding is None  # camera noise: no value covers PADDING_FRACTION of a field
    bright = bf.copy()
    bright[: bf.shape[0] // 2] = bf.max()  # a saturated background is signal, not padding
    assert estimate_range(bright).padding is None
    assert 0 < PADDING_FRACTION < 1
    mapped = rng.apply(framed[310:330, 390:410])
    assert (mapped[:10] == 127.5).all() and (mapped[10:, 10:] != 127.5).any()
    # a constant image maps to mid-grey, where the bundled model finds nothing
    flat = np.full((256, 256), 1000, np.uint16)
    assert estimate_range(flat).apply(flat).max() == 127.5
    tifffile.imwrite(tmp_path / "flat.tif", flat)
    res = detect(open_acquisition(tmp_path / "flat.tif"), load_checkpoint(bundled_model_path()),
                 out=tmp_path / "flat.zarr")  # fmt: skip
    assert len(res.table) == 0
