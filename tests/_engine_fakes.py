"""A fake detection model and tiny disc images for the predictor / tiling / detect tests.

:class:`FakeDiscModel` has the real model's interface (``(B, C, H, W)`` float32 on a 0..255 scale
in, a list of dicts with ``boxes`` / ``scores`` / ``classes`` / ``mask_probs`` out, plus
``inference(images, score_thresh=, nms_thresh=, max_detections=)`` and a ``cfg``) and "detects"
dark discs (class 0, ``hRS``) and bright discs (class 1, ``RBC``) by thresholding against the
image median and labelling connected components. Discs cut by the image edge are reported cut,
as a real model would see them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage as ndi


@dataclass
class FakeConfig:
    class_names: tuple[str, ...] = ("hRS", "RBC")
    input_channels: int = 1
    pixel_size_um: float | None = 0.5
    max_object_size_px: int = 40
    score_thresh: float = 0.05
    detections_per_image: int = 100
    size_divisibility: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


def component_mask_grid(mask: np.ndarray, m: int = 28) -> np.ndarray:
    """An ``(m, m)`` grid of the fraction of each grid cell covered by ``mask`` (Y, X)."""
    h, w = mask.shape
    up = 4 * m  # supersample cell centres
    yy = np.minimum(((np.arange(up) + 0.5) * h / up).astype(int), h - 1)
    xx = np.minimum(((np.arange(up) + 0.5) * w / up).astype(int), w - 1)
    fine = mask[np.ix_(yy, xx)].astype(np.float32)
    return fine.reshape(m, 4, m, 4).mean(axis=(1, 3))


class FakeDiscModel(torch.nn.Module):
    """Threshold + connected components with the detection model's interface.

    Parameters
    ----------
    delta : float
        A pixel is dark / bright when it differs from the image median by more than this
        (0..255 scale).
    min_area : int
        Smaller components are ignored (pixels).
    jitter : float
        Shift every box (and its mask) by this many pixels towards the image centre along X,
        mimicking how context moves a real model's boxes near a tile edge.
    """

    def __init__(self, cfg: FakeConfig | None = None, delta: float = 40.0, min_area: int = 12,
                 jitter: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.cfg = cfg or FakeConfig()
        self.delta, self.min_area, self.jitter = float(delta), int(min_area), float(jitter)
        self.calls: list[tuple[int, ...]] = []  # input shapes seen (for batching tests)
        self.register_buffer("_dummy", torch.zeros(1))

    def _one(self, img: np.ndarray) -> dict:
        gray = img.mean(axis=0)
        med = float(np.median(gray))
        boxes, scores, classes, masks = [], [], [], []
        for cls, sel in ((0, gray < med - self.delta), (1, gray > med + self.delta)):
            lab, n = ndi.label(sel)
            for k, sl in enumerate(ndi.find_objects(lab), start=1):
                if sl is None:
                    continue
                comp = lab[sl] == k
                area = int(comp.sum())
                if area < self.min_area:
                    continue
                y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
                shift = self.jitter if (x0 + x1) / 2 < gray.shape[1] / 2 else -self.jitter
                boxes.append([x0 + shift, y0, x1 + shift, y1])
                # a deterministic score from the disc's size: bigger discs score higher
                scores.append(0.55 + 0.4 * area / (area + 300.0))
                classes.append(cls)
                masks.append(component_mask_grid(comp))
        n = len(boxes)
        return {
            "boxes": torch.tensor(np.array(boxes, np.float32).reshape(n, 4)),
            "scores": torch.tensor(np.array(scores, np.float32).reshape(n)),
            "classes": torch.tensor(np.array(classes, np.int64).reshape(n)),
            "mask_probs": torch.tensor(np.array(masks, np.float32).reshape(n, 28, 28)),
        }

    def inference(self, images: torch.Tensor, score_thresh: float | None = None,
                  nms_thresh: float | None = None, max_detections: int | None = None) -> list[dict]:  # fmt: skip
        self.calls.append(tuple(images.shape))
        thr = self.cfg.score_thresh if score_thresh is None else score_thresh
        top = self.cfg.detections_per_image if max_detections is None else max_detections
        out = []
        for img in images.detach().float().cpu().numpy():
            d = self._one(img)
            order = torch.argsort(-d["scores"], stable=True)
            order = order[d["scores"][order] >= thr][:top]
            out.append({k: v[order] for k, v in d.items()})
        return out

    def forward(self, images: torch.Tensor) -> list[dict]:
        return self.inference(images)


# ------------------------------------------------------------------------------------ images
def disc_image(
    shape: tuple[int, int],
    discs: list[tuple[float, float, float, int]],
    *,
    background: float = 2000.0,
    dark: float = 500.0,
    bright: float = 3500.0,
    noise: float = 0.0,
    seed: int = 0,
    dtype=np.uint16,
) -> tuple[np.ndarray, np.ndarray]:
    """A raw (Y, X) image with discs ``(cy, cx, radius, kind)`` (kind 0 dark, 1 bright) and the
    matching ground-truth labels (disc ``i`` has label ``i + 1``; later discs on top)."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, background, np.float32) + rng.normal(0, noise, shape).astype(np.float32)
    gt = np.zeros(shape, np.int32)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    for i, (cy, cx, r, kind) in enumerate(discs):
        inside = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r
        img[inside] = dark if kind == 0 else bright
        gt[inside] = i + 1
    return np.clip(img, 0, np.iinfo(dtype).max).astype(dtype), gt


def random_discs(shape: tuple[int, int], n: int, seed: int = 0, r=(7.0, 12.0), margin: int = 2):
    """``n`` non-touching discs ``(cy, cx, r, kind)`` placed at random inside ``shape``."""
    rng = np.random.default_rng(seed)
    discs: list[tuple[float, float, float, int]] = []
    tries = 0
    while len(discs) < n and tries < 100 * n:
        tries += 1
        rad = float(rng.uniform(*r))
        cy = float(rng.uniform(rad + margin, shape[0] - rad - margin))
        cx = float(rng.uniform(rad + margin, shape[1] - rad - margin))
        if all((cy - y) ** 2 + (cx - x) ** 2 > (rad + rr + 4) ** 2 for y, x, rr, _ in discs):
            discs.append((cy, cx, rad, int(rng.integers(0, 2))))
    return discs


def make_acquisition(image: np.ndarray, pixel_size_um: float | None = 0.5, levels: int = 3,
                     path: str = "mem"):  # fmt: skip
    """An in-memory :class:`napari_hrs.io.Acquisition` (one brightfield channel, a 2x pyramid)."""
    import dask.array as da

    from napari_hrs.io import Acquisition

    base = da.from_array(image[None], chunks=(1, 256, 256))
    lv = [base]
    for _ in range(levels - 1):
        lv.append(lv[-1][:, ::2, ::2])
    return Acquisition(path=path, levels=lv, channel_names=["BF"], roles={"brightfield": 0},
                       pixel_size_um=pixel_size_um)  # fmt: skip


def match_labels(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """For each label of ``a``, the label of ``b`` it overlaps most (0 if none)."""
    out = {}
    for lab in np.unique(a):
        if lab == 0:
            continue
        vals, counts = np.unique(b[a == lab], return_counts=True)
        nz = vals != 0
        out[int(lab)] = int(vals[nz][np.argmax(counts[nz])]) if nz.any() else 0
    return out
