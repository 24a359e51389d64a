"""open_acquisition over every format: pixels, metadata, planes, scenes and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from _io_helpers import FORMATS, NAMES, PIXEL_UM, build, make_data, write_ngff, write_plain_zarr
from napari_hrs.errors import AcquisitionError, ChannelRoleError
from napari_hrs.io import AcquisitionNotFoundError, open_acquisition, plane_sizes

ROLES = {"brightfield": 0, "PRM1": 2, "PNA": 1}


@pytest.mark.parametrize("kind", FORMATS)
def test_open_every_format(kind, tmp_path):
    case = build(kind, tmp_path)
    acq = open_acquisition(case.path, **case.kwargs)
    c = case.data.shape[0]
    assert acq.shape == case.data.shape
    assert acq.dtype == case.data.dtype
    assert acq.n_levels == case.n_levels
    assert acq.channel_names == case.names
    assert acq.roles == (ROLES if c == 3 else {"brightfield": 0})
    assert acq.format.startswith(case.format)
    if case.pixel_size_um is None:
        assert acq.pixel_size_um is None
    else:
        assert acq.pixel_size_um == pytest.approx(case.pixel_size_um)
    np.testing.assert_array_equal(acq.levels[0].compute(), case.data)
    np.testing.assert_array_equal(acq.channel("brightfield").compute(), case.data[0])
    for level in (0, acq.n_levels - 1):  # the one-layer channel graphs equal the level arrays
        for c in range(acq.n_channels):
            np.testing.assert_array_equal(
                acq.channel(c, level).compute(), acq.levels[level][c].compute()
            )
    for i in range(1, acq.n_levels):
        assert acq.level_scales[i] == pytest.approx((2.0**i, 2.0**i), rel=0.05)
        expected = case.data[:, :: 2**i, :: 2**i]
        assert acq.levels[i].shape == expected.shape
        if case.exact_levels:
            np.testing.assert_array_equal(acq.levels[i].compute(), expected)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngff_stack_needs_a_plane(version, tmp_path):
    data = make_data((2, 3, 4, 32, 48))  # T, C, Z, Y, X
    path = write_ngff(tmp_path / "stack.ome.zarr", data, version=version, axes="tczyx")
    assert plane_sizes(path) == {"t": 2, "c": 3, "z": 4, "y": 32, "x": 48}
    with pytest.raises(AcquisitionError) as info:
        open_acquisition(path)
    msg = str(info.value)
    for fragment in ["stack.ome.zarr", "T=2", "Z=4", "t=<0..1>", "z=<0..3>"]:
        assert fragment in msg
    acq = open_acquisition(path, t=1, z=2)
    assert acq.plane == {"t": 1, "z": 2}
    np.testing.assert_array_equal(acq.levels[0].compute(), data[1, :, 2])
    np.testing.assert_array_equal(acq.levels[1].compute(), data[1, :, 2, ::2, ::2])
    np.testing.assert_array_equal(acq.channel("PNA", 1).compute(), data[1, 1, 2, ::2, ::2])
    with pytest.raises(AcquisitionError, match=r"z=4 is out of range.*Z=4.*z=<0..3>"):
        open_acquisition(path, t=0, z=4)
    with pytest.raises(AcquisitionError, match="must be an integer"):
        open_acquisition(path, t=0, z=1.5)


def test_ome_tiff_stack(tmp_path):
    data = make_data((3, 2, 3, 32, 48), dtype="uint8")  # T, Z, C, Y, X
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, data, metadata={"axes": "TZCYX", "Channel": {"Name": NAMES}})
    with pytest.raises(AcquisitionError, match=r"T=3, Z=2.*t=<0..2> and z=<0..1>"):
        open_acquisition(path)
    acq = open_acquisition(path, t=2, z=1)
    np.testing.assert_array_equal(acq.levels[0].compute(), data[2, 1])
    assert acq.channel_names == NAMES


def test_single_plane_file_accepts_zero_and_rejects_others(tmp_path):
    case = build("ngff-0.4", tmp_path)
    assert open_acquisition(case.path, z=0, t=0).plane == {}
    with pytest.raises(AcquisitionError, match="z=1 is out of range"):
        open_acquisition(case.path, z=1)


@pytest.mark.parametrize(
    ("unit", "scale", "expected"),
    [
        ("micrometer", 0.325, 0.325),
        ("nanometer", 325.0, 0.325),
        ("millimeter", 0.000325, 0.325),
        (None, 0.325, None),  # a scale without a unit is not a pixel size
        ("pixel", 1.0, None),
    ],
)
def test_ngff_pixel_size_units(unit, scale, expected, tmp_path):
    path = write_ngff(tmp_path / "u.ome.zarr", make_data(), pixel_size_um=scale, unit=unit)
    acq = open_acquisition(path)
    assert acq.pixel_size_um == (pytest.approx(expected) if expected else None)
    assert open_acquisition(path, pixel_size_um=0.5).pixel_size_um == 0.5


def test_ngff_without_channel_names_gets_default_names(tmp_path):
    path = write_ngff(tmp_path / "n.ome.zarr", make_data(), channel_names=None)
    with pytest.raises(ChannelRoleError, match=r"n.ome.zarr.*\['C0', 'C1', 'C2'\]"):
        open_acquisition(path)
    acq = open_acquisition(path, channels={"brightfield": 1})
    assert acq.channel_names == ["C0", "C1", "C2"] and acq.roles == {"brightfield": 1}


def test_ngff_dataset_path_naming_a_group_is_a_clear_error(tmp_path):
    path = write_ngff(tmp_path / "g.ome.zarr", make_data())
    group = zarr.open_group(path, mode="r+")
    group.create_group("sub")
    attrs = group.attrs.asdict()
    attrs["multiscales"][0]["datasets"][0]["path"] = "sub"
    group.attrs.update(attrs)
    with pytest.raises(AcquisitionError, match=r"g.ome.zarr.*'sub' is a group, not an array"):
        open_acquisition(path)


def test_multiscales_with_global_transform_and_translation(tmp_path):
    path = write_ngff(tmp_path / "g.ome.zarr", make_data(), pixel_size_um=1.0)
    group = zarr.open_group(path, mode="r+")
    attrs = group.attrs.asdict()
    ms = attrs["multiscales"][0]
    ms["coordinateTransformations"] = [{"type": "scale", "scale": [1.0, 0.25, 0.25]}]
    for d in ms["datasets"]:
        d["coordinateTransformations"].append({"type": "translation", "translation": [0, 3, 3]})
    group.attrs.update(attrs)
    acq = open_acquisition(path)
    assert acq.pixel_size_um == pytest.approx(0.25)
    assert acq.level_scales == [(1.0, 1.0), (2.0, 2.0)]


def test_bioformats2raw_layout_and_scenes(tmp_path):
    root = tmp_path / "b2r.ome.zarr"
    zarr.open_group(root, mode="w", zarr_format=2).attrs.update({"bioformats2raw.layout": 3})
    a, b = make_data(seed=1), make_data((3, 32, 48), seed=2)
    write_ngff(root / "0", a)
    write_ngff(root / "1", b)
    acq = open_acquisition(root)
    assert acq.scene == "0" and acq.metadata["zarr_group"] == "0"
    np.testing.assert_array_equal(acq.levels[0].compute(), a)
    acq1 = open_acquisition(root, scene=1)
    assert acq1.scene == "1" and acq1.shape == (3, 32, 48)
    assert open_acquisition(root, scene="1").shape == (3, 32, 48)
    with pytest.raises(AcquisitionError, match=r"scene 5 not found.*2 series \['0', '1'\]"):
        open_acquisition(root, scene=5)


def test_multi_series_ome_tiff(tmp_path):
    path = tmp_path / "two.ome.tif"
    a, b = make_data(seed=1), make_data((3, 32, 48), seed=2)
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(a, metadata={"axes": "CYX", "Name": "first", "Channel": {"Name": NAMES}})
        tw.write(b, metadata={"axes": "CYX", "Name": "second", "Channel": {"Name": NAMES[::-1]}})
    acq = open_acquisition(path)
    assert acq.scene == "first"
    acq = open_acquisition(path, scene="second")
    np.testing.assert_array_equal(acq.levels[0].compute(), b)
    assert acq.channel_names == NAMES[::-1] and acq.roles["brightfield"] == 2


def test_plain_zarr_pyramid_group(tmp_path):
    data = make_data()
    group = zarr.open_group(tmp_path / "pyr.zarr", mode="w", zarr_format=3)
    for i in range(3):
        lv = data[:, :: 2**i, :: 2**i]
        group.create_array(str(i), shape=lv.shape, dtype=lv.dtype, chunks=(1, 16, 16))[...] = lv
    acq = open_acquisition(tmp_path / "pyr.zarr", channels=NAMES)
    assert acq.n_levels == 3
    np.testing.assert_array_equal(acq.levels[2].compute(), data[:, ::4, ::4])


def test_plain_zarr_dimension_names_are_used(tmp_path):
    data = make_data((3, 2, 32, 48))  # C, Z, Y, X
    zarr.create_array(
        tmp_path / "dims.zarr", data=data, chunks=(1, 1, 16, 16), dimension_names=list("czyx")
    )
    acq = open_acquisition(tmp_path / "dims.zarr", channels=NAMES, z=1)
    np.testing.assert_array_equal(acq.levels[0].compute(), data[:, 1])


def test_rgb_tiff_samples_are_channels(tmp_path):
    rgb = make_data((64, 96, 3), dtype="uint8")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    acq = open_acquisition(tmp_path / "rgb.tif", channels={"brightfield": 1})
    np.testing.assert_array_equal(acq.channel("brightfield").compute(), rgb[..., 1])


def test_colour_camera_tiff_is_brightfield_from_its_green(tmp_path):
    """An 8-bit interleaved RGB picture (a colour camera's brightfield) opens without
    channels=: its channels are named red / green / blue and green is the brightfield."""
    rgb = make_data((64, 96, 3), dtype="uint8")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    acq = open_acquisition(tmp_path / "rgb.tif")
    assert acq.channel_names == ["red", "green", "blue"] and acq.roles == {"brightfield": 1}
    np.testing.assert_array_equal(acq.channel("brightfield").compute(), rgb[..., 1])
    chosen = open_acquisition(tmp_path / "rgb.tif", channels={"brightfield": "red"})
    assert chosen.roles == {"brightfield": 0}  # the user's choice wins


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_camera_pictures_open_lazily_with_green_as_brightfield(suffix, tmp_path):
    import imageio.v3 as iio

    yy, xx = np.mgrid[0:64, 0:96]  # smooth, so that JPEG keeps it close
    rgb = np.stack([yy * 3, 60 + xx, 200 - yy - xx // 2], axis=-1).astype(np.uint8)
    path = tmp_path / f"cells{suffix}"
    iio.imwrite(path, rgb, **({"quality": 100} if suffix == ".jpg" else {}))
    acq = open_acquisition(path)
    assert acq.channel_names == ["red", "green", "blue"] and acq.roles == {"brightfield": 1}
    assert acq.shape == (3, 64, 96) and acq.pixel_size_um is None
    green = acq.channel("brightfield").compute()
    if suffix == ".jpg":  # lossy
        assert np.abs(green.astype(int) - rgb[..., 1]).mean() < 3
    else:
        np.testing.assert_array_equal(green, rgb[..., 1])
        np.testing.assert_array_equal(acq.channel("blue")[10:20, 5:9].compute(), rgb[10:20, 5:9, 2])


def test_grey_picture_is_the_brightfield_and_bad_pictures_are_named(tmp_path):
    import imageio.v3 as iio

    grey = make_data((40, 50), dtype="uint16")
    iio.imwrite(tmp_path / "g.png", grey)
    acq = open_acquisition(tmp_path / "g.png")
    assert acq.roles == {"brightfield": 0} and acq.dtype == np.uint16
    np.testing.assert_array_equal(acq.channel("brightfield").compute(), grey)
    (tmp_path / "bad.jpg").write_bytes(b"no JPEG here")
    with pytest.raises(AcquisitionError, match="bad.jpg"):
        open_acquisition(tmp_path / "bad.jpg")
    with pytest.raises(AcquisitionError, match="one scene"):
        open_acquisition(tmp_path / "g.png", scene=1)
    import pickle

    again = pickle.loads(pickle.dumps(acq.channel("brightfield")))  # a graph sent to a worker
    np.testing.assert_array_equal(again.compute(), grey)


@pytest.mark.parametrize(
    ("data", "kw"),
    [
        (make_data((3, 64, 96), dtype="uint8"), {"photometric": "minisblack", "metadata": {"axes": "CYX"}}),
        (make_data((3, 64, 96), dtype="uint16"), {}),  # tifffile tags it planar RGB by default
        (make_data((3, 64, 96), dtype="uint8"), {"photometric": "rgb", "planarconfig": "separate"}),
        (make_data((64, 96, 3), dtype="uint16"), {"photometric": "rgb"}),
    ],
)  # fmt: skip
def test_grey_channel_stacks_are_not_taken_for_colour(data, kw, tmp_path):
    """Unnamed 3-channel stacks that are not 8-bit interleaved RGB (fluorescence stacks, as
    tifffile writes them by default) still need channels=."""
    tifffile.imwrite(tmp_path / "c3.tif", data, **kw)
    with pytest.raises(ChannelRoleError, match="brightfield"):
        open_acquisition(tmp_path / "c3.tif")


def test_tiff_resolution_tags(tmp_path):
    data = make_data((64, 96))
    tifffile.imwrite(
        tmp_path / "cm.tif", data, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER"
    )
    tifffile.imwrite(tmp_path / "dpi.tif", data, resolution=(72, 72), resolutionunit="INCH")
    assert open_acquisition(tmp_path / "cm.tif").pixel_size_um == pytest.approx(0.5)
    assert open_acquisition(tmp_path / "dpi.tif").pixel_size_um is None  # a default, not a size


def _bad_path(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "nope.ome.zarr"
    if kind == "text":
        (tmp_path / "notes.txt").write_text("hello")
        return tmp_path / "notes.txt"
    if kind == "dir":
        (tmp_path / "folder").mkdir()
        return tmp_path / "folder"
    if kind == "bad-tiff":
        (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
        return tmp_path / "bad.tif"
    if kind == "4d-zarr":
        return write_plain_zarr(tmp_path / "4d.zarr", make_data((2, 3, 16, 16)))
    if kind == "group-of-arrays":
        g = zarr.open_group(tmp_path / "many.zarr", mode="w")
        g.create_array("image", shape=(8, 8), dtype="u1")
        g.create_array("mask", shape=(4, 4), dtype="u1")
        return tmp_path / "many.zarr"
    if kind == "plate":
        zarr.open_group(tmp_path / "plate.ome.zarr", mode="w").attrs["plate"] = {"rows": []}
        return tmp_path / "plate.ome.zarr"
    if kind == "bad-axes":
        path = write_ngff(tmp_path / "ax.ome.zarr", make_data())
        (path / ".zattrs").write_text(
            json.dumps({"multiscales": [{"axes": ["y", "x"], "datasets": [{"path": "0"}]}]})
        )
        return path
    raise ValueError(kind)


@pytest.mark.parametrize(
    ("kind", "error", "fragment"),
    [
        ("missing", AcquisitionNotFoundError, "no such file or directory"),
        ("text", AcquisitionError, "unrecognised image format (suffix '.txt')"),
        ("dir", AcquisitionError, "not a zarr store"),
        ("bad-tiff", AcquisitionError, "not a readable TIFF"),
        ("4d-zarr", AcquisitionError, "(Y, X), (C, Y, X) and (Y, X, C)"),
        ("group-of-arrays", AcquisitionError, "arrays ['image', 'mask']"),
        ("plate", AcquisitionError, "HCS plate"),
        ("bad-axes", AcquisitionError, "do not match the array dimensions"),
    ],
)
def test_errors_name_the_file(kind, error, fragment, tmp_path):
    path = _bad_path(tmp_path, kind)
    with pytest.raises(error) as info:
        open_acquisition(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_path_is_also_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_acquisition(tmp_path / "x.tif")


def test_missing_brightfield_names_file_and_channels(tmp_path):
    path = write_ngff(tmp_path / "m.ome.zarr", make_data(), channel_names=["DAPI", "PNA", "PRM1"])
    with pytest.raises(ChannelRoleError) as info:
        open_acquisition(path)
    msg = str(info.value)
    assert "m.ome.zarr" in msg and "['DAPI', 'PNA', 'PRM1']" in msg
    assert "channels={'brightfield': <index>}" in msg
    acq = open_acquisition(path, strict=False)
    assert acq.roles == {"PRM1": 2, "PNA": 1}


def test_bioio_fallback_reads_what_tifffile_reads(tmp_path):
    """The bioio path (used for formats we do not read ourselves) agrees with ours."""
    import bioio_ome_tiff

    from napari_hrs.io._bioio import open_bioio

    case = build("ome-tiff", tmp_path)
    raw = open_bioio(case.path, reader=bioio_ome_tiff.Reader)
    assert raw.axes == "tczyx" and raw.channel_names == NAMES
    assert raw.pixel_size_um == pytest.approx(PIXEL_UM)
    np.testing.assert_array_equal(np.asarray(raw.levels[0][0, :, 0]), case.data)


RESOURCES = Path(__file__).parent / "resources"


@pytest.mark.parametrize("name", ["tiny.ome.zarr", "tiny.ome.tif"])
def test_committed_resources(name):
    acq = open_acquisition(RESOURCES / name)
    assert acq.channel_names == ["Brightfield", "PNA-FITC", "PRM1-AF647"]
    assert acq.roles == {"brightfield": 0, "PRM1": 2, "PNA": 1}
    assert acq.pixel_size_um == pytest.approx(0.65)
    assert acq.shape == (3, 16, 24)
    assert acq.dtype == np.uint8
    bf = acq.channel("brightfield").compute()
    assert bf[0, 0] == 0 and bf[15, 23] == 15 + 23


@pytest.mark.parametrize("version", ["0.3", "0.2"])
def test_older_ngff_versions(version, tmp_path):
    """0.3 has axes as strings, 0.1/0.2 none (always TCZYX); neither has units."""
    data = make_data((1, 3, 1, 32, 48))
    path = write_ngff(tmp_path / "old.ome.zarr", data, axes="tczyx")
    attrs = json.loads((path / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    ms["version"] = version
    if version == "0.3":
        ms["axes"] = list("tczyx")
    else:
        del ms["axes"]
    for d in ms["datasets"]:
        del d["coordinateTransformations"]
    (path / ".zattrs").write_text(json.dumps(attrs))
    acq = open_acquisition(path)
    assert acq.format == f"ome-zarr {version}"
    assert acq.pixel_size_um is None and acq.channel_names == NAMES
    np.testing.assert_array_equal(acq.levels[0].compute(), data[0, :, 0])
