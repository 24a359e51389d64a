"""``napari-hrs detect`` through subprocess: user errors, and a run with a real checkpoint."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from _engine_fakes import disc_image, random_discs


def _cli(*args, timeout=240):
    """Run ``napari-hrs detect ARGS`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "napari_hrs.cli", "detect", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _main(capsys, *args):
    """Run ``napari-hrs detect ARGS`` in this process; (status, stderr)."""
    from napari_hrs.cli import main

    status = main(["detect", *map(str, args)])
    return status, capsys.readouterr().err


@pytest.fixture(scope="module")
def tiff(tmp_path_factory):
    img, _ = disc_image((192, 224), random_discs((192, 224), 6, seed=4))
    path = tmp_path_factory.mktemp("cli") / "bf.tif"
    tifffile.imwrite(path, img)
    return path


def test_help_lists_the_options():
    r = _cli("--help")
    assert r.returncode == 0
    for opt in ("--out", "--model", "--device", "--tile", "--batch", "--score-threshold",
                "--channels", "--overwrite"):  # fmt: skip
        assert opt in r.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tile", "8"], "--tile must be >= 32"),
        (["--score-threshold", "1.5"], "--score-threshold"),
        (["--model", "no_such_model.pt"], "no such checkpoint"),
        (["--channels", "brightfield"], "ROLE=INDEX"),
        (["--level", "3"], "no level 3"),
    ],
)
def test_user_errors_are_one_line(capsys, tiff, tmp_path, extra, message):
    status, err = _main(capsys, tiff, "--out", tmp_path / "r.zarr", *extra)
    assert status == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "r.zarr").exists()


def test_missing_input_existing_output_and_no_brightfield(capsys, tiff, tmp_path):
    status, err = _main(capsys, tmp_path / "nope.tif", "--out", tmp_path / "r.zarr")
    assert status == 2 and "no such file" in err
    (tmp_path / "exists.zarr").mkdir()
    status, err = _main(capsys, tiff, "--out", tmp_path / "exists.zarr")
    assert status == 2 and "--overwrite" in err
    two = tmp_path / "two.tif"
    tifffile.imwrite(two, np.zeros((2, 64, 64), np.uint16))
    status, err = _main(capsys, two, "--out", tmp_path / "r.zarr")
    assert status == 2 and "brightfield" in err and "C0" in err
    status, err = _main(capsys, tiff, "--in-image")
    assert status == 2 and "OME-Zarr" in err


def test_batch_zero_is_refused():
    import argparse

    from napari_hrs.cli import CLIError
    from napari_hrs.cli.detect import _check_args

    args = argparse.Namespace(tile=256, batch=0, score_threshold=0.5, overlap=None,
                              input=None, out=None, overwrite=False, model="compact")  # fmt: skip
    with pytest.raises(CLIError, match="--batch must be >= 1"):
        _check_args(args)


def test_a_stack_needs_z_and_detects_on_that_plane(capsys, tiff, tmp_path):
    """The stack error asked for z= but the CLI had no way to pass it."""
    import pandas as pd

    plane = tifffile.imread(tiff)
    stack = tmp_path / "stack.ome.tif"
    tifffile.imwrite(stack, np.stack([np.zeros_like(plane), plane]), metadata={"axes": "ZYX"})
    status, err = _main(capsys, stack, "--out", tmp_path / "s.zarr", "--pixel-size", "0.325")
    assert status == 2 and "Z=2" in err and "--z N" in err, err
    px = ("--pixel-size", "0.325", "-q")
    status, err = _main(capsys, stack, "--out", tmp_path / "s.zarr", "--z", "1", *px)
    assert status == 0, err
    status, err = _main(capsys, tiff, "--out", tmp_path / "p.zarr", *px)
    assert status == 0, err
    a = pd.read_csv(tmp_path / "s.zarr" / "detections.csv")
    b = pd.read_csv(tmp_path / "p.zarr" / "detections.csv")
    assert a.drop(columns="score").equals(b.drop(columns="score"))
