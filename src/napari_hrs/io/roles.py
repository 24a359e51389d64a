"""Channel roles: which channel is brightfield, which is PRM1, which is PNA.

Roles come from the channel names (case-insensitive aliases, see :data:`ROLE_ALIASES`) or from the
user (``channels={"brightfield": 0, "PRM1": 2, "PNA": 1}``, or a list of names in channel order
that renames the channels first). Brightfield is required; PRM1 and PNA are optional.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from napari_hrs.errors import ChannelRoleError

#: the roles, in display order; brightfield is required, the markers optional
ROLES: tuple[str, ...] = ("brightfield", "PRM1", "PNA")
REQUIRED_ROLES: tuple[str, ...] = ("brightfield",)

#: human-readable aliases per role (documentation; matching uses the patterns below)
ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    "brightfield": (
        "BF",
        "brightfield",
        "bright field",
        "bright-field",
        "trans",
        "transmitted",
        "transmission",
        "TL",
        "TD",
        "T PMT",
        "DIC",
        "Hoffman",
        "HMC",
        "phase",
        "phase contrast",
        "PH",
    ),
    "PRM1": ("PRM1", "PRM-1", "anti-PRM1", "protamine", "protamine 1", "protamine-1"),
    "PNA": (
        "PNA",
        "FITC-PNA",
        "PNA-FITC",
        "PNA-488",
        "Alexa488-PNA",
        "lectin",
        "peanut agglutinin",
    ),
}

# Markers are tested first: "PNA (on brightfield)" is a PNA channel.
_COMPACT_PATTERNS: dict[str, re.Pattern[str]] = {
    # protamine 2 (PRM2) is another protein: reject a digit after the name
    "PRM1": re.compile(r"prm1(?!\d)|protamine1?(?!\d)"),
    "PNA": re.compile(r"pna|lectin|peanut"),
    "brightfield": re.compile(r"brightfi?eld|transmit|hoffman|phasecontrast|tpmt"),
}
_BRIGHTFIELD_TOKENS = frozenset(
    {"bf", "trans", "tl", "td", "dic", "hmc", "phase", "ph", "transmission", "transmitted"}
)


def _tokens(name: str) -> list[str]:
    """Lower-case alphanumeric tokens of ``name``, split at letter/digit boundaries too."""
    return re.findall(r"[a-z]+|\d+", name.lower())


def match_role(name: str) -> str | None:
    """The role a channel name stands for, or None.

    Parameters
    ----------
    name : str
        A channel name such as ``"BF"``, ``"PNA-FITC"``, ``"anti-PRM1 AF647"``, ``"DIC"``.

    Returns
    -------
    str or None
        ``"brightfield"``, ``"PRM1"``, ``"PNA"`` or None when the name matches no alias.

    Examples
    --------
    >>> match_role("Alexa488-PNA"), match_role("Bright Field"), match_role("DAPI")
    ('PNA', 'brightfield', None)
    """
    compact = re.sub(r"[^a-z0-9]", "", name.lower())
    if not compact:
        return None
    for role in ("PRM1", "PNA"):
        if _COMPACT_PATTERNS[role].search(compact):
            return role
    if _COMPACT_PATTERNS["brightfield"].search(compact):
        return "brightfield"
    if any(tok in _BRIGHTFIELD_TOKENS for tok in _tokens(name)):
        return "brightfield"
    return None


def canonical_role(role: str) -> str | None:
    """The canonical role for ``role`` (``"prm1"``, ``"BF"``, ``"Brightfield"`` ...), or None."""
    for canon in ROLES:
        if role.strip().lower() == canon.lower():
            return canon
    return match_role(role)


def _index_of(value: int | str, names: Sequence[str], role: str, source: str | Path) -> int:
    """The channel index the user means by ``value`` (an index or a channel name)."""
    n = len(names)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ChannelRoleError(
            f"{source}: channels[{role!r}] = {value!r} is neither a channel index nor a name; "
            f"pass an index 0..{n - 1} or one of {list(names)}"
        )
    if isinstance(value, str):
        exact = [i for i, nm in enumerate(names) if nm == value]
        loose = [i for i, nm in enumerate(names) if nm.lower() == value.lower()]
        found = exact or loose
        if len(found) != 1:
            raise ChannelRoleError(
                f"{source}: channels[{role!r}] = {value!r} names no single channel; the channels "
                f"are {list(names)}; pass an index, e.g. channels={{{role!r}: 0}}"
            )
        return found[0]
    if not 0 <= value < n:
        raise ChannelRoleError(
            f"{source}: channel index {value} for role {role!r} is out of range; the file has "
            f"{n} channel(s) {list(names)}; pass channels={{{role!r}: <0..{n - 1}>}}"
        )
    return int(value)


def resolve_roles(
    channel_names: Sequence[str],
    channels: Mapping[str, int | str] | Sequence[str] | None = None,
    *,
    source: str | Path = "<image>",
    strict: bool = True,
    rgb: bool = False,
) -> tuple[list[str], dict[str, int]]:
    """Final channel names and the role -> channel index map.

    Parameters
    ----------
    channel_names : sequence of str
        Names found in the file, one per channel (C axis order).
    channels : mapping or sequence of str, optional
        ``{"brightfield": 0, "PRM1": "AF647", "PNA": 1}`` (role -> index or name; roles not given
        are still detected from the names), or a list of names in channel order that replaces
        the names from the file.
    source : str or Path
        The file, for error messages.
    strict : bool
        When True (default), a missing brightfield channel or a role matched by two channels
        raises :class:`~napari_hrs.errors.ChannelRoleError`; when False such roles are left out.
    rgb : bool
        The file is a colour (RGB) picture: with no role given or found, its green channel
        (index 1) is the brightfield.

    Returns
    -------
    names : list of str
        Channel names (renamed when ``channels`` is a list).
    roles : dict
        Role -> channel index, e.g. ``{"brightfield": 0, "PNA": 1}``.

    Raises
    ------
    ChannelRoleError
        Missing brightfield, an ambiguous role, an out-of-range index, an unknown role, one
        channel given two roles, or a name list of the wrong length.
    """
    names = [str(nm) for nm in channel_names]
    n = len(names)
    roles: dict[str, int] = {}
    if isinstance(channels, str):
        channels = [channels]
    if channels is not None and not isinstance(channels, Mapping):
        given = [str(nm) for nm in channels]
        if len(given) != n:
            raise ChannelRoleError(
                f"{source}: channels={given} names {len(given)} channel(s) but the file has {n} "
                f"{names}; pass one name per channel, in channel order"
            )
        names = given
    elif channels is not None:
        for key, value in channels.items():
            role = canonical_role(str(key))
            if role is None:
                raise ChannelRoleError(
                    f"{source}: unknown role {key!r} in channels=; the roles are {list(ROLES)}"
                )
            if role in roles:
                raise ChannelRoleError(f"{source}: role {role!r} is given twice in channels=")
            roles[role] = _index_of(value, names, role, source)
        taken: dict[int, str] = {}
        for role, idx in roles.items():
            if idx in taken:
                raise ChannelRoleError(
                    f"{source}: channel {idx} ({names[idx]!r}) is given two roles, "
                    f"{taken[idx]!r} and {role!r}"
                )
            taken[idx] = role

    assigned = set(roles.values())
    for role in ROLES:
        if role in roles:
            continue
        hits = [i for i, nm in enumerate(names) if i not in assigned and match_role(nm) == role]
        if len(hits) == 1:
            roles[role] = hits[0]
            assigned.add(hits[0])
        elif len(hits) > 1 and strict:
            found = ", ".join(f"{i}: {names[i]!r}" for i in hits)
            raise ChannelRoleError(
                f"{source}: {len(hits)} channels look like {role} ({found}); "
                f"pass channels={{{role!r}: <index>}} to choose one"
            )
    if "brightfield" not in roles and n == 1 and not assigned:
        # a single-channel image can only be the brightfield image
        roles["brightfield"] = 0
    if "brightfield" not in roles and rgb and not assigned and n >= 3:
        # a colour camera's picture: its green channel carries most of the brightfield signal
        roles["brightfield"] = 1
    if strict and "brightfield" not in roles:
        raise ChannelRoleError(
            f"{source}: no brightfield channel among the channels {names}; "
            f"pass channels={{'brightfield': <index>}} (index 0..{n - 1}), or name the channels "
            f"with channels=[...] (brightfield aliases: BF, brightfield, trans, DIC, Hoffman, "
            f"phase...)"
        )
    return names, {role: roles[role] for role in ROLES if role in roles}
