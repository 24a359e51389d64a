"""Map raw microscope intensities to the model's 0..255 input scale.

Brightfield cameras give uint8, uint16 (often 12-bit in a 16-bit container) or float data with
arbitrary offsets. The model is trained and run on the same mapping: the intensities at two
percentiles of the image (the whole acquisition, estimated once from a low-resolution level, never
per tile, so that tiles stitch without seams) are sent to 0 and 255, linearly, without clipping
beyond a small headroom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: default percentiles (low, high) of the intensity range
DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)
#: the darkest value on at least this fraction of the pixels is a blank canvas (the padding
#: of a stitched mosaic), not signal: it is left out of the percentiles
PADDING_FRACTION = 0.2


@dataclass(frozen=True)
class IntensityRange:
    """A linear map from raw intensities to the 0..255 model scale.

    ``low`` maps to 0 and ``high`` to 255; values outside are kept (clipped to [-64, 319]) so
    bright halos and dark debris keep their contrast. Pixels without a value (NaN in float
    data, e.g. masked or stitched-out regions) become mid-scale (127.5), +inf / -inf the clip
    limits: one NaN would otherwise spread through the network and void the whole tile.
    Pixels equal to ``padding`` (a blank canvas value found by :func:`estimate_range`, e.g. the
    zeros around a stitched mosaic) are "no data" as well, and become mid-scale too.
    """

    low: float
    high: float
    padding: float | None = None

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Return ``image`` (any shape, any numeric dtype) as float32 on the 0..255 scale."""
        scale = 255.0 / max(self.high - self.low, 1e-6)
        raw = np.asarray(image)
        out = (raw.astype(np.float32) - np.float32(self.low)) * np.float32(scale)
        blank = self.no_data(raw)
        if blank is not None:
            out[blank] = 127.5
        if not np.isfinite(out).all():
            np.nan_to_num(out, copy=False, nan=127.5, posinf=319.0, neginf=-64.0)
        return np.clip(out, -64.0, 319.0, out=out)

    def no_data(self, image: np.ndarray) -> np.ndarray | None:
        """Boolean mask of the pixels of ``image`` that hold no data (equal to ``padding``, or
        NaN); None when every pixel holds data (the common case, cheap to test)."""
        raw = np.asarray(image)
        blank = None
        if self.padding is not None:
            blank = raw == self.padding
        if raw.dtype.kind == "f":
            nan = np.isnan(raw)
            blank = nan if blank is None else blank | nan
        if blank is None or not blank.any():
            return None
        return blank

    @classmethod
    def identity(cls) -> IntensityRange:
        """The map for data already on a 0..255 scale (8-bit images, detectron2 models)."""
        return cls(0.0, 255.0)


def estimate_range(
    image, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, max_pixels: int = 4_000_000
) -> IntensityRange:
    """Estimate the intensity range of a 2-D image (numpy or dask, (Y, X)).

    Pass a low-resolution pyramid level for large images; at most ``max_pixels`` pixels are read
    (a regular subsample beyond that), so this never loads a whole slide. When the image's
    minimum covers at least :data:`PADDING_FRACTION` of the pixels (the zero padding of a
    stitched mosaic; camera noise and offset never give that) it is left out, so padding does
    not change the map of the pixels that hold cells, and is recorded as the range's
    ``padding`` (mapped to mid-grey, as "no data"). A bright value on many pixels (a saturated
    background) is signal and stays. A constant image maps to mid-grey (127.5):
    nothing to detect, rather than a black image the model may misread.
    """
    shape = image.shape
    if len(shape) != 2:
        raise ValueError(f"estimate_range expects a 2-D (Y, X) image, got shape {shape}")
    step = max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / max_pixels))))
    sample = image[::step, ::step]
    if hasattr(sample, "compute"):
        sample = sample.compute(scheduler="threads")  # local, whatever Client is default
    sample = np.asarray(sample, dtype=np.float64)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return IntensityRange.identity()
    finite, padding = _without_padding(finite)
    low, high = np.percentile(finite, percentiles)
    if high - low < 1e-6:  # over 99 % of the pixels share one value
        low, high = float(finite.min()), float(finite.max())
        if high - low < 1e-6:  # a constant image
            return IntensityRange(low - 0.5, low + 0.5)
    return IntensityRange(float(low), float(high), padding)


def _without_padding(
    values: np.ndarray, max_probe: int = 100_000
) -> tuple[np.ndarray, float | None]:
    """``values`` without their minimum when it covers >= :data:`PADDING_FRACTION` of them
    (counted exactly), and that value; ``(values, None)`` when it does not or nothing else
    would be left. ``max_probe`` bounds a cheap first look on a regular subsample."""
    probe = values[:: max(1, values.size // max_probe)]
    if np.count_nonzero(probe == probe.min()) < 0.5 * PADDING_FRACTION * probe.size:
        return values, None
    vmin = values.min()
    pad = values == vmin
    n_pad = int(np.count_nonzero(pad))
    if n_pad < PADDING_FRACTION * values.size or values.size - n_pad < 16:
        return values, None
    return values[~pad], float(vmin)
