"""PNG / JPEG / BMP pictures: one plane, grey or colour, read through imageio.

Microscope cameras often save such pictures. Opening reads the header only; the pixels are decoded once, on first use, and kept
while the acquisition is open (a picture is one plane of a few megapixels, not a mosaic).
"""

from __future__ import annotations

import threading
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from napari_hrs.errors import AcquisitionError
from napari_hrs.io._raw import RGB_NAMES, RawImage

#: file suffixes read as pictures (lower case)
PICTURE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")


def is_picture(path: Path) -> bool:
    """Whether ``path`` is a file with a picture suffix (:data:`PICTURE_SUFFIXES`)."""
    return path.is_file() and path.suffix.lower() in PICTURE_SUFFIXES


class _Decoded:
    """The picture's pixels, decoded on the first call and kept until :meth:`close`."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype = path, shape, dtype
        self._array: np.ndarray | None = None
        self._lock = threading.Lock()

    def __call__(self) -> np.ndarray:
        with self._lock:
            if self._array is None:
                import imageio.v3 as iio

                try:
                    arr = np.asarray(iio.imread(self.path))
                except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's
                    raise AcquisitionError(
                        f"{self.path}: cannot decode the picture ({exc})"
                    ) from exc
                if arr.shape != self.shape or arr.dtype != self.dtype:
                    raise AcquisitionError(
                        f"{self.path}: decoded {arr.shape} {arr.dtype}, but its header said "
                        f"{self.shape} {self.dtype}"
                    )
                self._array = arr
            return self._array

    def __getstate__(self) -> dict:
        """Pickled (a dask graph sent to another process) without the pixels or the lock."""
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["shape"], state["dtype"])

    def close(self) -> None:
        with self._lock:
            self._array = None


def open_picture(path: Path) -> RawImage:
    """Read a picture's header (shape, dtype) and wrap its pixels as a lazy one-chunk array.

    Grey pictures are one channel; colour ones (``(Y, X, 3 | 4)``) get the channels ``red``,
    ``green``, ``blue`` (``alpha``) and ``metadata["rgb"]``, so that green is the brightfield
    (:func:`napari_hrs.io.roles.resolve_roles`). No pixel size: pictures do not carry one.
    """
    import imageio.v3 as iio

    try:
        props = iio.improps(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means: not a picture we read
        raise AcquisitionError(f"{path}: not a readable picture ({exc})") from exc
    shape, dtype = tuple(int(s) for s in props.shape), np.dtype(props.dtype)
    if len(shape) == 2:
        axes = "yx"
    elif len(shape) == 3 and shape[-1] in (3, 4):
        axes = "yxc"
    else:
        raise AcquisitionError(
            f"{path}: a picture of shape {shape}; expected (Y, X) grey or (Y, X, 3 | 4) colour"
        )
    decoded = _Decoded(path, shape, dtype)
    level = da.from_delayed(dask.delayed(decoded, pure=False)(), shape=shape, dtype=dtype)
    rgb = axes == "yxc"
    return RawImage(
        levels=[level],
        axes=axes,
        channel_names=list(RGB_NAMES[: shape[-1]]) if rgb else None,
        format=path.suffix.lower().lstrip(".").replace("jpg", "jpeg"),
        metadata={"rgb": rgb},
        closers=[decoded.close],
    )
