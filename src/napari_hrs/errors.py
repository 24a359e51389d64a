"""Exceptions for user errors: the message names the file, the channel, what was found and what
to do. The CLI prints them as one line; widgets show them as napari notifications."""

from __future__ import annotations


class HRSError(Exception):
    """Base class of napari-hrs user errors."""


class AcquisitionError(HRSError, ValueError):
    """An image file cannot be used as asked (unknown format, missing channel, bad plane...)."""


class PixelReadError(AcquisitionError):
    """Pixels of an opened image cannot be read (a truncated or corrupted file); ``what`` names
    the array (``"labels"``, ``"channel 'PRM1'"``)."""

    def __init__(self, message: str, what: str = "") -> None:
        super().__init__(message)
        self.what = what


class ChannelRoleError(AcquisitionError):
    """A channel role (brightfield, PRM1, PNA) is missing, ambiguous or out of range."""


class ParameterError(HRSError, ValueError):
    """A parameter is out of its range or not one of its choices (the message says which)."""


class CheckpointError(HRSError, ValueError):
    """A model checkpoint is corrupt, of an unknown format, or does not match the config."""


class DatasetError(HRSError, ValueError):
    """A training / evaluation dataset is malformed."""


class ClusterError(HRSError):
    """A dask scheduler cannot be reached or used (the message names its address)."""


class Cancelled(HRSError):
    """A long-running job was cancelled by the user."""
