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


@dataclass(frozen=True)
class IntensityRange:
    """A linear map from raw intensities to the 0..255 model scale.

    ``low`` maps to 0 and ``high`` to 255; values outside are kept (clipped to [-64, 319]) so
    bright halos and dark debris keep their contrast. Pixels without a value (NaN in float
    data, e.g. masked or stitched-out regions) become mid-scale (127.5), +inf / -inf the clip
    limits: one NaN would otherwise spread through the network and void the whole tile.
    """

    low: float
    high: float

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Return ``image`` (any shape, any numeric dtype) as float32 on the 0..255 scale."""
        scale = 255.0 / max(self.high - self.low, 1e-6)
        out = (np.asarray(image, dtype=np.float32) - np.float32(self.low)) * np.float32(scale)
        if not np.isfinite(out).all():
            np.nan_to_num(out, copy=False, nan=127.5, posinf=319.0, neginf=-64.0)
        return np.clip(out, -64.0, 319.0, out=out)

    @classmethod
    def identity(cls) -> IntensityRange:
        """The map for data already on a 0..255 scale (8-bit images, detectron2 models)."""
        return cls(0.0, 255.0)


def estimate_range(
    image, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, max_pixels: int = 4_000_000
) -> IntensityRange:
    """Estimate the intensity range of a 2-D image (numpy or dask, (Y, X)).

    Pass a low-resolution pyramid level for large images; at most ``max_pixels`` pixels are read
    (a regular subsample beyond that), so this never loads a whole slide.
    """
    shape = image.shape
    if len(shape) != 2:
        raise ValueError(f"estimate_range expects a 2-D (Y, X) image, got shape {shape}")
    step = max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / max_pixels))))
    sample = image[::step, ::step]
    if hasattr(sample, "compute"):
        sample = sample.compute()
    sample = np.asarray(sample, dtype=np.float64)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return IntensityRange.identity()
    low, high = np.percentile(finite, percentiles)
    if high - low < 1e-6:
        high = low + 1.0
    return IntensityRange(float(low), float(high))
