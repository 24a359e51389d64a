"""Synthetic acquisitions as files: ome-zarr-py, bioio, NGFF models, open_acquisition, the CLI,
the committed sample and the napari sample-data command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _synth_helpers import arrays, make_small
from napari_hrs.io import open_acquisition, read_labels
from napari_hrs.synth import read_ground_truth
from napari_hrs.synth.sample import SAMPLE_PARAMS, repo_sample, sample_path

CLI = Path(sys.executable).with_name("napari-hrs")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small(tmp_path_factory.mktemp("synth_io"))


def test_readable_by_ome_zarr_py(small):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import OMERO, Label, Multiscales, Reader

    nodes = list(Reader(parse_url(str(small)))())
    image = nodes[0]
    assert any(isinstance(s, Multiscales) for s in image.specs)
    assert any(isinstance(s, OMERO) for s in image.specs)
    assert image.metadata["channel_names"] == ["brightfield", "PRM1", "PNA"]
    assert [d.shape for d in image.data] == [(3, 512, 576), (3, 256, 288)]
    assert image.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, 0.325, 0.325]
    label = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert len(label) == 1 and label[0].data[0].shape == (512, 576)
    assert label[0].data[0].dtype == np.uint32


def test_readable_by_bioio(small):
    from bioio import BioImage
    from bioio_ome_zarr import Reader

    img = BioImage(small, reader=Reader)
    assert img.channel_names == ["brightfield", "PRM1", "PNA"]
    assert img.physical_pixel_sizes.Y == pytest.approx(0.325)
    assert img.physical_pixel_sizes.X == pytest.approx(0.325)
    assert (img.dims.C, img.dims.Y, img.dims.X) == (3, 512, 576)
    assert img.dtype == np.uint16
    data = img.get_image_data("CYX")
    np.testing.assert_array_equal(data, arrays(small)["0"])


def test_metadata_validates_against_ngff_04(small):
    models = pytest.importorskip("ome_zarr_models.v04.image")
    labels_model = pytest.importorskip("ome_zarr_models.v04.image_label")
    import zarr

    image = models.Image.from_zarr(zarr.open_group(str(small), mode="r"))
    axes = image.attributes.multiscales[0].axes
    assert [a.name for a in axes] == ["c", "y", "x"] and axes[1].unit == "micrometer"
    group = zarr.open_group(str(small / "labels" / "ground_truth"), mode="r")
    label = labels_model.ImageLabel.from_zarr(group)
    assert label.attributes.image_label.source.image == "../../"
    omero = zarr.open_group(str(small), mode="r").attrs["omero"]["channels"]
    assert [c["color"] for c in omero] == ["FFFFFF", "00FF00", "FF00FF"]
    assert all(c["window"]["end"] > c["window"]["start"] for c in omero)


def test_readable_by_open_acquisition(small):
    acq = open_acquisition(small)
    assert acq.channel_names == ["brightfield", "PRM1", "PNA"]
    assert acq.roles == {"brightfield": 0, "PRM1": 1, "PNA": 2}
    assert acq.pixel_size_um == pytest.approx(0.325)
    assert [lv.shape for lv in acq.levels] == [(3, 512, 576), (3, 256, 288)]
    labels = read_labels(acq)
    assert list(labels) == ["ground_truth"]
    truth, table = read_ground_truth(small)
    np.testing.assert_array_equal(labels["ground_truth"].levels[0].compute(), truth.compute())
    assert list(table.columns[:9]) == [
        "label_id",
        "cell_type",
        "PRM1_positive",
        "PNA_positive",
        "centroid_y_px",
        "centroid_x_px",
        "centroid_y_um",
        "centroid_x_um",
        "diameter_um",
    ]
    np.testing.assert_allclose(table.centroid_x_um, table.centroid_x_px * 0.325, atol=1e-3)


def test_read_ground_truth_requires_synthetic(tmp_path):
    from napari_hrs.errors import AcquisitionError

    with pytest.raises(AcquisitionError, match="ground truth"):
        read_ground_truth(tmp_path)


def test_cli_writes_acquisition(tmp_path):
    out = tmp_path / "cli.ome.zarr"
    args = [
        "synth",
        str(out),
        "--size",
        "300x260",
        "--seed",
        "5",
        "--chunk",
        "128",
        "--workers",
        "1",
    ]
    res = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert open_acquisition(out).levels[0].shape == (3, 300, 260)


def test_cli_errors_and_overwrite(tmp_path, capsys):
    from napari_hrs.cli import main

    out = tmp_path / "cli.ome.zarr"
    args = ["synth", str(out), "--size", "64", "--chunk", "32", "--quiet"]
    assert main(args) == 0
    assert main(args) == 2 and "overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    with pytest.raises(SystemExit):
        main(["synth", str(out), "--size", "ax"])
    assert "size 'ax'" in capsys.readouterr().err


def test_overwrite_replaces_only_a_previous_synthetic_output(tmp_path, capsys):
    """--overwrite once deleted whatever the output path named (a user's folder or file)."""
    from napari_hrs.cli import main

    mine = tmp_path / "my_data"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    afile = tmp_path / "my_table.csv"
    afile.write_text("a,b\n1,2\n")
    acq = ["--size", "64", "--chunk", "32", "--quiet", "--overwrite"]
    coco = ["--coco", "--n-images", "3", "--image-size", "32", "--quiet", "--overwrite"]
    for target in (mine, afile):
        for extra in (acq, coco):
            assert main(["synth", str(target), *extra]) == 2
            assert "remove it yourself" in capsys.readouterr().err or target == afile
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(mine.iterdir()) == [
        mine / "notes.txt"
    ]
    assert afile.read_text() == "a,b\n1,2\n"
    # a COCO export into a non-empty folder without --overwrite is refused, not mixed in
    assert main(["synth", str(mine), *coco[:-1]]) == 2 and "exists; pass" in capsys.readouterr().err
    # previous synthetic outputs are replaced as a whole
    out, data = tmp_path / "a.ome.zarr", tmp_path / "coco"
    assert main(["synth", str(out), *acq[:-1]]) == 0
    assert main(["synth", str(out), *acq]) == 0
    assert main(["synth", str(data), *coco[:-1]]) == 0
    (data / "train" / "stale.tif").write_bytes(b"")
    assert main(["synth", str(data), *coco]) == 0
    assert not (data / "train" / "stale.tif").exists() and (data / "train.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_writes_coco(tmp_path):
    out = tmp_path / "coco"
    res = subprocess.run(
        [
            str(CLI),
            "synth",
            str(out),
            "--coco",
            "--n-images",
            "4",
            "--image-size",
            "64",
            "--seed",
            "1",
            "--splits",
            "0.5,0.25,0.25",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.glob("*.json")) == ["test.json", "train.json", "val.json"]
    assert [len(list((out / s).glob("*.tif"))) for s in ("train", "val", "test")] == [2, 1, 1]


def test_cli_rejects_bad_splits(tmp_path, capsys):
    from napari_hrs.cli import main

    assert main(["synth", str(tmp_path / "c"), "--coco", "--splits", "0.8,0.2", "--quiet"]) == 2
    assert "--splits" in capsys.readouterr().err


def test_committed_sample_regenerates_identically(tmp_path):
    repo = repo_sample()
    if not repo.exists():
        pytest.skip("no committed sample in this installation")
    readme = (repo.parent / "README.md").read_text()
    cmd = re.search(r"napari-hrs synth (\S+) (.*)", readme)
    assert cmd is not None, "sample_data/README.md must give the regeneration command"
    args = cmd.group(2).split()
    assert args == ["--size", "1024", "--seed", "0", "--chunk", "512"]
    assert SAMPLE_PARAMS["size"] == 1024 and SAMPLE_PARAMS["chunk"] == 512
    out = tmp_path / "again.ome.zarr"
    res = subprocess.run(
        [str(CLI), "synth", str(out), *args, "--quiet"], capture_output=True, text=True, timeout=240
    )
    assert res.returncode == 0, res.stderr
    # nothing else in the committed sample (e.g. a detection written into it with --in-image)
    files = [
        sorted(str(f.relative_to(d)) for f in d.rglob("*") if f.is_file()) for d in (repo, out)
    ]
    assert files[0] == files[1]
    a, b = arrays(repo), arrays(out)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    pd.testing.assert_frame_equal(read_ground_truth(repo)[1], read_ground_truth(out)[1])


def test_sample_path_generates_into_cache(tmp_path, monkeypatch):
    import napari_hrs.synth.sample as sample

    monkeypatch.setattr(sample, "repo_sample", lambda: tmp_path / "missing.ome.zarr")
    monkeypatch.setenv("NAPARI_HRS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sample.SAMPLE_PARAMS, "size", 128)
    p = sample_path()
    assert p == tmp_path / "cache" / "synthetic_hrs.ome.zarr"
    mtime = (p / ".zattrs").stat().st_mtime_ns
    assert sample_path() == p and (p / ".zattrs").stat().st_mtime_ns == mtime  # made once


def test_sample_data_layers():
    from napari_hrs._napari.sample_data import sample_acquisition

    layers = sample_acquisition()
    kinds = [(kw.get("name"), kind) for _, kw, kind in layers]
    assert ("ground_truth", "labels") in kinds
    assert {n for n, k in kinds if k == "image"} >= {"brightfield", "PRM1", "PNA"}
