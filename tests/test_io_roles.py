"""Channel roles from names (aliases) and from the user."""

from __future__ import annotations

import pytest

from napari_hrs.errors import ChannelRoleError
from napari_hrs.io.roles import ROLE_ALIASES, canonical_role, match_role, resolve_roles


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("BF", "brightfield"),
        ("bf", "brightfield"),
        ("Brightfield", "brightfield"),
        ("Bright Field", "brightfield"),
        ("bright-field", "brightfield"),
        ("TL Brightfield", "brightfield"),
        ("Trans", "brightfield"),
        ("Transmitted light", "brightfield"),
        ("DIC", "brightfield"),
        ("Hoffman", "brightfield"),
        ("HMC 40x", "brightfield"),
        ("Phase contrast", "brightfield"),
        ("Ph3", "brightfield"),
        ("T PMT", "brightfield"),
        ("PRM1", "PRM1"),
        ("prm-1", "PRM1"),
        ("anti-PRM1 AF647", "PRM1"),
        ("Protamine 1", "PRM1"),
        ("protamine", "PRM1"),
        ("PNA", "PNA"),
        ("FITC-PNA", "PNA"),
        ("PNA-FITC", "PNA"),
        ("PNA-488", "PNA"),
        ("Alexa488-PNA", "PNA"),
        ("lectin", "PNA"),
        ("Peanut agglutinin", "PNA"),
        ("PNA on BF", "PNA"),  # markers win over brightfield
        ("PRM2", None),  # protamine 2 is another protein
        ("Protamine 2", None),
        ("DAPI", None),
        ("Hoechst", None),
        ("C0", None),
        ("Channel:0:1", None),
        ("gray", None),  # a LUT name, not an illumination
        ("", None),
    ],
)
def test_match_role(name, role):
    assert match_role(name) == role


@pytest.mark.parametrize("role", list(ROLE_ALIASES))
def test_every_documented_alias_matches(role):
    for alias in ROLE_ALIASES[role]:
        assert match_role(alias) == role, alias


@pytest.mark.parametrize(
    ("key", "canon"),
    [("brightfield", "brightfield"), ("BF", "brightfield"), ("prm1", "PRM1"), ("pna", "PNA")],
)
def test_canonical_role(key, canon):
    assert canonical_role(key) == canon


@pytest.mark.parametrize(
    ("names", "channels", "expected_names", "expected_roles"),
    [
        (["BF", "PNA-FITC", "PRM1"], None, None, {"brightfield": 0, "PRM1": 2, "PNA": 1}),
        (["DIC", "Hoechst"], None, None, {"brightfield": 0}),
        (["C0", "C1", "C2"], {"brightfield": 0, "PRM1": 2, "PNA": 1}, None,
         {"brightfield": 0, "PRM1": 2, "PNA": 1}),
        (["C0", "PNA", "C2"], {"brightfield": 2}, None, {"brightfield": 2, "PNA": 1}),
        (["a", "b", "c"], {"bf": "c", "pna": "A"}, None, {"brightfield": 2, "PNA": 0}),
        (["C0", "C1", "C2"], ["PNA", "trans", "x"], ["PNA", "trans", "x"],
         {"brightfield": 1, "PNA": 0}),
        (["C0"], None, None, {"brightfield": 0}),  # a single channel is the brightfield
        (["BF", "DIC"], {"brightfield": 1}, None, {"brightfield": 1}),  # user resolves a clash
    ],
)  # fmt: skip
def test_resolve_roles(names, channels, expected_names, expected_roles):
    out_names, roles = resolve_roles(names, channels, source="x.zarr")
    assert out_names == (expected_names or names)
    assert roles == expected_roles


@pytest.mark.parametrize(
    ("names", "channels", "fragments"),
    [
        (["DAPI", "PNA"], None, ["x.zarr", "no brightfield", "'DAPI'", "channels={'brightfield': <index>}"]),
        (["BF", "DIC", "PNA"], None, ["x.zarr", "2 channels look like brightfield", "'BF'", "'DIC'"]),
        (["BF", "PNA", "lectin"], None, ["2 channels look like PNA", "channels={'PNA': <index>}"]),
        (["BF", "PNA"], {"PRM1": 5}, ["index 5", "out of range", "2 channel(s)", "<0..1>"]),
        (["BF", "PNA"], {"PRM1": -1}, ["index -1", "out of range"]),
        (["BF", "PNA"], {"PRM1": "Cy5"}, ["'Cy5' names no single channel", "['BF', 'PNA']"]),
        (["BF", "PNA"], {"brightfield": 0, "PNA": 0}, ["channel 0 ('BF') is given two roles"]),
        (["BF", "PNA"], {"DAPI": 1}, ["unknown role 'DAPI'"]),
        (["BF", "PNA"], {"PRM1": 1.0}, ["neither a channel index nor a name"]),
        (["C0", "C1"], ["BF"], ["names 1 channel(s) but the file has 2"]),
    ],
)  # fmt: skip
def test_resolve_roles_errors(names, channels, fragments):
    with pytest.raises(ChannelRoleError) as info:
        resolve_roles(names, channels, source="x.zarr")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_not_strict_leaves_problem_roles_out():
    names, roles = resolve_roles(["BF", "DIC", "PNA", "Hoechst"], None, strict=False)
    assert roles == {"PNA": 2}
    assert resolve_roles(["DAPI", "Cy5"], None, strict=False)[1] == {}


def test_error_is_a_value_error():
    with pytest.raises(ValueError):
        resolve_roles(["DAPI"], {"brightfield": 3})
