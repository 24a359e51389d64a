"""``napari-hrs quantify``: end to end through a subprocess, errors in-process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from _markers_helpers import marker_scene, write_ngff
from napari_hrs.cli import main


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quantify")
    lab, chans, truth = marker_scene((160, 200), 30, seed=4)
    lab = lab.astype(np.uint32)
    bf = np.full(lab.shape, 200, np.uint16)
    image = np.stack([bf, chans["PRM1"], chans["PNA"]])
    ngff = write_ngff(tmp / "img.ome.zarr", image, ["brightfield", "PRM1", "PNA"], lab)
    # a detection result: RESULT.zarr (NGFF labels at the root) holding detections.csv
    write_ngff(tmp / "RESULT.zarr", None, [], lab)
    classes = np.where(truth["label_id"] % 3 == 0, "red_blood_cell", "round_spermatid")
    det = pd.DataFrame({"id": truth["label_id"], "class_name": classes, "score": 0.9})
    det.to_csv(tmp / "RESULT.zarr" / "detections.csv", index=False)
    det.assign(class_name="hRS").to_csv(tmp / "lab.csv", index=False)
    tifffile.imwrite(tmp / "img.tif", np.stack([chans["PNA"], bf, chans["PRM1"]]))
    tifffile.imwrite(tmp / "lab.tif", lab)
    return tmp, ngff, truth


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_hrs.cli", "quantify", *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_ngff_labels_with_detections_beside(scene):
    tmp, ngff, truth = scene
    out, js = tmp / "cells.csv", tmp / "summary.json"
    p = _run(ngff, tmp / "RESULT.zarr", "--out", out, "--summary-json", js, "--quiet")
    assert p.returncode == 0, p.stderr
    t = pd.read_csv(out)
    assert len(t) == len(truth) and {"class_name", "score", "category"} <= set(t.columns)
    merged = t.merge(truth, on="label_id")
    for m in ("PRM1", "PNA"):
        assert (merged[f"{m}_positive"] == merged[m]).mean() >= 0.95
    s = json.loads(js.read_text())
    n_hrs = int((truth["label_id"] % 3 != 0).sum())
    assert s["n_cells"] == n_hrs and s["n_total"] == len(truth)
    assert f"/ {n_hrs} =" in p.stdout and "detections.csv" in p.stdout
    assert (t["centroid_x_um"] / t["centroid_x_px"]).round(6).eq(0.325).all()


def test_cli_uses_the_detection_boxes_and_measures_the_same(scene, capsys):
    """A detection table with boxes replaces the labels pass; one whose boxes miss the cells
    is caught (a warning) and the cells are measured with the pass: the same table."""
    import warnings

    tmp, ngff, truth = scene
    lab = np.asarray(__import__("zarr").open_array(str(tmp / "RESULT.zarr" / "0"), mode="r"))
    rows = []
    for i in truth["label_id"]:
        ys, xs = np.nonzero(lab == i)
        rows.append((i, xs.min() + 0.3, ys.min() - 0.4, xs.max() + 0.6, ys.max() + 1.2))
    det = pd.DataFrame(rows, columns=["id", "x0", "y0", "x1", "y1"]).assign(score=0.9)
    det.to_csv(tmp / "boxes.csv", index=False)
    det.assign(x1=det.x0 + 1).to_csv(tmp / "bad_boxes.csv", index=False)
    from napari_hrs.cli.quantify import detection_boxes, read_detections

    assert len(detection_boxes(read_detections(tmp / "lab.tif", tmp / "boxes.csv")[0])) == len(det)
    beside = read_detections(tmp / "lab.tif", None)  # lab.csv: class names, no boxes
    assert beside[1] == tmp / "lab.csv" and detection_boxes(beside[0]) is None
    assert detection_boxes(read_detections(tmp / "lab.tif", tmp / "bad_boxes.csv")[0].assign(
        label_id=lambda d: d.label_id.where(d.index > 0, d.label_id[1]))) is None  # duplicate id
    outs = {}
    for name, extra in (("none", []), ("boxes", ["--detections", tmp / "boxes.csv"]),
                        ("bad", ["--detections", tmp / "bad_boxes.csv"])):  # fmt: skip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = main(["quantify", str(ngff), str(tmp / "lab.tif"), "--out",
                         str(tmp / f"{name}.csv"), "--quiet", *map(str, extra)])  # fmt: skip
        assert code == 0
        again = [w for w in caught if "measuring again" in str(w.message)]
        assert len(again) == (1 if name == "bad" else 0), name
        outs[name] = pd.read_csv(tmp / f"{name}.csv")
    measured = [c for c in outs["boxes"].columns if c not in ("class_name", "score", "category")]
    assert "PRM1_median" in measured and "bbox_y1" in measured
    for name in ("boxes", "bad"):
        pd.testing.assert_frame_equal(outs["none"][measured], outs[name][measured])


def test_cli_tiff_with_channel_roles_and_manual_thresholds(scene):
    tmp, _, truth = scene
    out = tmp / "tiff.csv"
    p = _run(
        tmp / "img.tif", tmp / "lab.tif", "--out", out, "--channels", "PNA=0,brightfield=1,PRM1=2",
        "--threshold-prm1", "30", "--threshold-pna", "20", "--ring", "1,4", "--tile", "64", "-q",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    t = pd.read_csv(out).merge(truth, on="label_id")
    assert (t["PRM1_positive"] == t["PRM1"]).mean() >= 0.95
    assert "threshold PRM1: manual (mean_bgsub), threshold = 30" in p.stdout
    assert "lab.csv" in p.stdout and (t["class_name"] == "hRS").all()  # found beside lab.tif


def test_cli_otsu_scale_is_passed_and_recorded(scene, capsys):
    tmp, ngff, truth = scene
    for scale in ("linear", "log"):
        js = tmp / f"s_{scale}.json"
        rc = main(["quantify", str(ngff), str(ngff), "--out", str(tmp / f"{scale}.csv"), "-q",
                   "--all-cells", "--otsu-scale", scale, "--summary-json", str(js)])  # fmt: skip
        assert rc == 0, capsys.readouterr().err
        s = json.loads(js.read_text())
        assert s["thresholds"]["PRM1"]["otsu_scale"] == scale
        assert s["thresholds"]["PNA"]["method"] == "otsu"


def test_cli_labels_of_the_image_itself_and_all_cells(scene, capsys):
    tmp, ngff, truth = scene
    rc = main(["quantify", str(ngff), str(ngff), "--out", str(tmp / "gt.csv"), "-q",
               "--method", "background_sd", "--all-cells"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and f"cells counted: {len(truth)} of {len(truth)} (all" in out
    assert len(pd.read_csv(tmp / "gt.csv")) == len(truth)


@pytest.mark.parametrize(
    ("extra", "labels", "message"),
    [
        ([], "small.tif", "(160, 200)"),
        (["--markers", "PRM1,DAPI"], None, "DAPI"),
        (["--method", "manual", "--threshold-prm1", "3"], None, "--threshold-pna"),
        (["--ring", "2"], None, "GAP,WIDTH"),
        (["--detections", "nope.csv"], None, "nope.csv"),
        (["--detections", "{tmp}/empty.csv"], None, "empty.csv is not a readable CSV"),
        ([], "empty.tif", "empty.tif: not a readable TIFF"),
        ([], "cut.tif", "cut.tif: cannot read the pixels of labels at rows 0-160"),
        (["--threshold-prm1", "nan"], None, "finite threshold value for PRM1"),
        (["--threshold-pna", "inf"], None, "finite threshold value for PNA"),
        (["--method", "background_sd", "--k", "-3"], None, "k = -3.0"),
        (["--channels", "brightfield=0,brightfield=1"], None, "'brightfield' is given twice"),
        ([], "intensity.tif", "the labels do not look like cells"),
    ],
)
def test_cli_user_errors_are_one_line(scene, capsys, extra, labels, message):
    tmp, ngff, _ = scene
    tifffile.imwrite(tmp / "small.tif", np.zeros((150, 200), np.uint16))
    (tmp / "empty.tif").write_bytes(b"")
    (tmp / "empty.csv").write_text("")
    whole = (tmp / "lab.tif").read_bytes()
    (tmp / "cut.tif").write_bytes(whole[: len(whole) // 3])  # header fine, strips missing
    tifffile.imwrite(tmp / "intensity.tif", tifffile.imread(tmp / "img.tif")[2])  # PRM1 pixels
    lab = tmp / labels if labels else ngff / "labels" / "cells"
    extra = [e.format(tmp=tmp) for e in extra]
    rc = main(["quantify", str(ngff), str(lab), "--out", str(tmp / "x.csv"), "-q", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert "Traceback" not in err


def test_cli_truncated_image_is_named(scene, capsys):
    tmp, _, _ = scene
    whole = (tmp / "img.tif").read_bytes()
    (tmp / "img_cut.tif").write_bytes(whole[: len(whole) * 2 // 3])
    rc = main(["quantify", str(tmp / "img_cut.tif"), str(tmp / "lab.tif"), "--out",
               str(tmp / "x.csv"), "-q", "--channels", "PNA=0,brightfield=1,PRM1=2"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "img_cut.tif: cannot read the pixels of channel" in err, err


def test_cli_one_marker_reports_only_that_marker(scene, capsys):
    """--markers PRM1 once reported 'PNA+: 0.0%' and a PNA_positive column of False."""
    tmp, ngff, truth = scene
    out, js = tmp / "prm1.csv", tmp / "prm1.json"
    rc = main(["quantify", str(ngff), str(ngff / "labels" / "cells"), "--out", str(out), "-q",
               "--markers", "PRM1", "--summary-json", str(js)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0 and "PNA not measured" in text and "PNA+:" not in text, text
    t = pd.read_csv(out)
    assert "PRM1_positive" in t and "PNA_positive" not in t and "category" not in t
    s = json.loads(js.read_text())
    assert s["markers"] == ["PRM1"] and s["n_marker_positive"] == int(t["PRM1_positive"].sum())
    assert np.isnan(s["fraction_PNA_positive"]) and s["counts"]["neither"] is None


@pytest.mark.parametrize("target", ["img.tif", "lab.tif", "."])
@pytest.mark.parametrize("option", ["--out", "--summary-json"])
def test_cli_outputs_never_replace_the_inputs(scene, capsys, target, option):
    tmp, _, _ = scene
    before = {p: (tmp / p).read_bytes() for p in ("img.tif", "lab.tif")}
    out = [] if option == "--out" else ["--out", str(tmp / "ok.csv")]
    rc = main(["quantify", str(tmp / "img.tif"), str(tmp / "lab.tif"), *out, option,
               str(tmp / target), "-q", "--channels", "PNA=0,brightfield=1,PRM1=2"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and ("would replace the input" in err or "is a directory" in err), err
    assert {p: (tmp / p).read_bytes() for p in before} == before
