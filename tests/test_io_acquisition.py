"""The Acquisition dataclass: validation, channel access, properties."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_hrs.errors import ChannelRoleError
from napari_hrs.io import Acquisition


def _acq(**kw) -> Acquisition:
    data = np.arange(3 * 8 * 12, dtype="uint16").reshape(3, 8, 12)
    args = dict(
        path="mem.zarr",
        levels=[data, data[:, ::2, ::2], data[:, ::4, ::4]],
        channel_names=["BF", "PNA-FITC", "AF647"],
        pixel_size_um=0.5,
        roles={"brightfield": 0, "PNA": 1, "PRM1": 2},
    )
    args.update(kw)
    return Acquisition(**args)


def test_numpy_levels_become_dask_and_properties():
    acq = _acq()
    assert all(isinstance(lv, da.Array) for lv in acq.levels)
    assert acq.path == Path("mem.zarr")
    assert acq.shape == (3, 8, 12)
    assert acq.n_channels == 3
    assert acq.n_levels == 3
    assert acq.dtype == np.uint16
    assert acq.level_scales == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    assert acq.pixel_size_at(2) == pytest.approx(2.0)
    assert "mem.zarr" in repr(acq) and "0.5 µm" in repr(acq)


@pytest.mark.parametrize(
    ("key", "index"),
    [("brightfield", 0), ("BF", 0), ("bf", 0), ("PNA", 1), ("pna", 1), ("PNA-FITC", 1),
     ("PRM1", 2), ("prm1", 2), ("AF647", 2), ("af647", 2), (2, 2), (np.int64(1), 1)],
)  # fmt: skip
def test_channel_index(key, index):
    acq = _acq()
    assert acq.channel_index(key) == index
    np.testing.assert_array_equal(acq.channel(key).compute(), acq.levels[0][index].compute())


def test_channel_levels():
    acq = _acq()
    assert acq.channel("PNA", level=1).shape == (4, 6)
    assert acq.channel("PNA", level=-1).shape == (2, 3)
    with pytest.raises(IndexError, match="level 3 out of range"):
        acq.channel("PNA", level=3)


def test_roles():
    acq = _acq(roles={"brightfield": 0})
    assert acq.has_role("brightfield") and acq.has_role("BF")
    assert not acq.has_role("PRM1")
    assert acq.role_of(0) == "brightfield" and acq.role_of(1) is None
    with pytest.raises(ChannelRoleError, match=r"no channel 'PRM1'.*channels=\{'PRM1': <index>\}"):
        acq.channel("PRM1")
    with pytest.raises(ChannelRoleError, match="no channel 'DAPI'"):
        acq.channel("DAPI")
    with pytest.raises(ChannelRoleError, match="out of range"):
        acq.channel(7)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"levels": []}, "at least one level"),
        ({"levels": [np.zeros((8, 12))]}, "must be"),
        ({"levels": [np.zeros((3, 8, 12)), np.zeros((2, 4, 6))]}, "level 1"),
        ({"channel_names": ["a"]}, "1 channel names"),
        ({"roles": {"brightfield": 3}}, "3 channels"),
        ({"roles": {"DAPI": 0}}, "unknown role"),
        ({"pixel_size_um": 0.0}, "must be > 0"),
        ({"level_scales": [(1.0, 1.0)]}, "1 level scales"),
    ],
)
def test_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        _acq(**kw)


def test_explicit_level_scales_and_close():
    closed = []
    acq = _acq(level_scales=[(1, 1), (2, 2), (4, 4.0)], _closers=[lambda: closed.append(1)])
    assert acq.level_scales[2] == (4.0, 4.0)
    with acq:
        pass
    assert closed == [1]
    acq.close()
    assert closed == [1]
