"""Batched inference: images (or tiles) in, :class:`~napari_hrs.engine.structures.Detections` out.

Unlike detectron2's ``DefaultPredictor`` (one image, a demo), :class:`Predictor` batches: it
stacks up to ``batch_size`` images of one size (rounded up to the model's ``size_divisibility``),
pads them at the bottom / right to it with each image's median, runs the model once under
``torch.inference_mode`` (fp16 autocast on CUDA), and clips every result back to its own image.
Outputs are numpy; masks stay box-relative ``(N, 28, 28)`` grids (never full-image masks).

torch is imported when a Predictor is built, not when this module is imported.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.engine.masks import reframe_mask
from napari_hrs.engine.structures import Detections

__all__ = ["Predictor", "config_hash", "resolve_device"]


def resolve_device(device: str | None = None) -> str:
    """``"cuda"`` when available and not overridden, else ``"cpu"``; validates ``device``."""
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    dev = str(device)
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={dev!r} but CUDA is not available here; pass device='cpu'")
    if not (dev == "cpu" or dev.startswith("cuda") or dev == "mps"):
        raise ValueError(f"unknown device {dev!r}; pass 'cpu', 'cuda' or 'cuda:N'")
    return dev


def _cfg_dict(cfg: Any) -> dict:
    if cfg is None:
        return {}
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    if hasattr(cfg, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(cfg)
    return dict(vars(cfg))


def config_hash(cfg: Any) -> str:
    """A short stable hash of a model config (sha256 of its sorted JSON)."""
    text = json.dumps(_cfg_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cfg_get(cfg: Any, name: str, default: Any) -> Any:
    """``cfg.name``, or ``cfg.model.name`` / ``cfg.input.name``, or ``default``."""
    for obj in (cfg, getattr(cfg, "model", None), getattr(cfg, "input", None)):
        if obj is not None and getattr(obj, name, None) is not None:
            return getattr(obj, name)
    return default


class Predictor:
    """Run a detection model on batches of images.

    Parameters
    ----------
    model_or_loaded : str, Path, Loaded or model
        A model spec for :func:`napari_hrs.engine.checkpoint.load_model` (``"compact"``, a
        checkpoint path), a ``Loaded`` (``model``, ``cfg``, ``meta``), or a model (an
        ``nn.Module`` or callable with the model's interface) with a ``cfg`` attribute.
    device : str, optional
        ``"cpu"``, ``"cuda"``; default CUDA when available, else CPU.
    score_threshold : float
        Detections below this score are dropped.
    max_detections : int, optional
        At most this many detections per image (highest scores); default the model's own cap
        (``cfg.roi_heads.detections_per_image``, raised with the image area when the config's
        ``detections_per_mpx`` says so).
    batch_size : int
        Images per forward pass.
    amp : bool, optional
        fp16 autocast; default on for CUDA, never on CPU.
    channels_last : bool, optional
        Use the channels-last memory format (model and inputs); default on for our
        :class:`~napari_hrs.engine.model.CascadeMaskRCNN` (7-17 % faster on CPU, see
        docs/detection.md), off for other models (detectron2's runs as detectron2 does).
    engine : str
        ``"native"`` (our Cascade Mask R-CNN on torch/torchvision, the default) or
        ``"detectron2"``: the same config and weights run by detectron2 itself (needs
        detectron2 installed; see :mod:`napari_hrs.engine.detectron2_backend`).
    """

    def __init__(
        self,
        model_or_loaded: Any,
        *,
        device: str | None = None,
        score_threshold: float = 0.5,
        max_detections: int | None = None,
        batch_size: int = 4,
        amp: bool | None = None,
        channels_last: bool | None = None,
        engine: str = "native",
    ) -> None:
        import torch

        from napari_hrs.engine.detectron2_backend import ENGINES

        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; use one of {ENGINES}")
        self.device = resolve_device(device)
        self.source: str = ""
        self.meta: dict = {}
        if isinstance(model_or_loaded, (str, Path)):
            from napari_hrs.engine.checkpoint import load_model

            self.source = str(model_or_loaded)
            model_or_loaded = load_model(model_or_loaded, device=self.device)
        if hasattr(model_or_loaded, "model") and hasattr(model_or_loaded, "cfg"):
            self.model = model_or_loaded.model
            self.cfg = model_or_loaded.cfg
            self.meta = dict(getattr(model_or_loaded, "meta", None) or {})
        else:
            self.model = model_or_loaded
            self.cfg = getattr(model_or_loaded, "cfg", None)
        if not callable(self.model):
            raise TypeError(f"not a model: {type(self.model).__name__} is not callable")
        if engine == "detectron2" and getattr(self.model, "engine", "native") != "detectron2":
            from napari_hrs.engine.detectron2_backend import Detectron2Model

            if self.cfg is None or not isinstance(self.model, torch.nn.Module):
                raise TypeError("engine='detectron2' needs a napari-hrs model with a config")
            self.model = Detectron2Model(self.cfg, self.model.state_dict(), device=self.device)
        self.engine = str(getattr(self.model, "engine", "native"))
        if batch_size < 1 or (max_detections is not None and max_detections < 1):
            raise ValueError(f"batch_size and max_detections must be >= 1, got {batch_size}, "
                             f"{max_detections}")  # fmt: skip
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        self.score_threshold = float(score_threshold)
        self.max_detections = None if max_detections is None else int(max_detections)
        self.batch_size = int(batch_size)
        on_cuda = self.device.startswith("cuda")
        self.amp = bool(on_cuda if amp is None else amp) and on_cuda
        if channels_last is None:
            from napari_hrs.engine.model import CascadeMaskRCNN

            channels_last = isinstance(self.model, CascadeMaskRCNN)
        self.channels_last = bool(channels_last)
        if isinstance(self.model, torch.nn.Module):
            self.model.eval()
            self.model.to(self.device)
            if self.channels_last:
                self.model.to(memory_format=torch.channels_last)

    # --- model properties ----------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(_cfg_get(self.cfg, "class_names", ("hRS",)))

    @property
    def input_channels(self) -> int:
        return int(_cfg_get(self.cfg, "input_channels", 1))

    @property
    def size_divisibility(self) -> int:
        return max(1, int(_cfg_get(self.cfg, "size_divisibility", 32) or 1))

    @property
    def pixel_size_um(self) -> float | None:
        """The training pixel size (µm) of the model, or None when unknown."""
        v = _cfg_get(self.cfg, "pixel_size_um", None)
        return None if v is None else float(v)

    @property
    def max_object_size_px(self) -> float | None:
        """The largest object diameter the model is meant for, in model pixels (or None)."""
        v = _cfg_get(self.cfg, "max_object_size_px", None)
        return None if v is None else float(v)

    def detection_cap(self, height: int, width: int) -> int | None:
        """Most detections one ``height`` x ``width`` pixel image can return (None: no cap
        known): ``max_detections`` when set, else the model config's cap for the padded size."""
        if self.max_detections is not None:
            return self.max_detections
        rh = getattr(self.cfg, "roi_heads", None)
        if rh is None or not hasattr(rh, "detection_cap"):
            return None
        div = self.size_divisibility
        return int(rh.detection_cap(-(-height // div) * div, -(-width // div) * div))

    def describe(self) -> dict:
        """Provenance: model name / path, class names, config hash, device, thresholds."""
        name = self.source or str(self.meta.get("name") or self.meta.get("path") or "")
        return {
            "model": name or type(self.model).__name__,
            "config_hash": config_hash(self.cfg),
            "class_names": list(self.class_names),
            "model_pixel_size_um": self.pixel_size_um,
            "device": self.device,
            "engine": self.engine,
            "amp": self.amp,
            "score_threshold": self.score_threshold,
            "max_detections": self.max_detections,
        }

    # --- inference ----------------------------------------------------------------------
    def _to_model_channels(self, image: np.ndarray) -> np.ndarray:
        img = np.asarray(image, dtype=np.float32)
        if img.ndim == 2:
            img = img[None]
        if img.ndim != 3:
            raise ValueError(f"expected an image (Y, X) or (C, Y, X), got shape {img.shape}")
        c, want = img.shape[0], self.input_channels
        if c == want:
            return img
        if c == 1:
            return np.repeat(img, want, axis=0)
        if c == 3 and want == 1:
            w = np.array([0.299, 0.587, 0.114], np.float32)[:, None, None]
            return (img * w).sum(axis=0, keepdims=True)
        raise ValueError(f"a {c}-channel image cannot feed a model with {want} input channels; "
                         "pass (Y, X) gray or (3, Y, X) RGB images")  # fmt: skip

    def _stack(self, images: list[np.ndarray]):
        import torch

        div = self.size_divisibility
        h = max(im.shape[1] for im in images)
        w = max(im.shape[2] for im in images)
        h, w = -(-h // div) * div, -(-w // div) * div
        batch = np.empty((len(images), images[0].shape[0], h, w), np.float32)
        for i, im in enumerate(images):
            if im.shape[1:] != (h, w):
                batch[i] = np.median(im)
            batch[i, :, : im.shape[1], : im.shape[2]] = im
        x = torch.from_numpy(batch).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _forward(self, x) -> list[dict]:
        import torch

        ctx = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        with torch.inference_mode(), ctx:
            if hasattr(self.model, "inference"):
                return self.model.inference(
                    x, score_thresh=self.score_threshold, max_detections=self.max_detections
                )
            return self.model(x)

    def _postprocess(self, out: dict, size: tuple[int, int]) -> Detections:
        def np_(key: str, dtype) -> np.ndarray:
            v = out[key]
            v = v.detach().float().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
            return v.astype(dtype, copy=False)

        boxes = np_("boxes", np.float32).reshape(-1, 4)
        scores = np_("scores", np.float32).reshape(-1)
        classes = np_("classes", np.int64).reshape(-1)
        masks = np_("mask_probs", np.float32)
        masks = masks.reshape(len(boxes), *masks.shape[-2:]) if len(boxes) else masks
        h, w = size
        clipped = boxes.copy()
        np.clip(clipped[:, 0::2], 0, w, out=clipped[:, 0::2])
        np.clip(clipped[:, 1::2], 0, h, out=clipped[:, 1::2])
        keep = (
            (scores >= self.score_threshold)
            & (clipped[:, 2] > clipped[:, 0])
            & (clipped[:, 3] > clipped[:, 1])
        )
        idx = np.nonzero(keep)[0]
        idx = idx[np.argsort(-scores[idx], kind="stable")][: self.max_detections]  # None: all
        masks = masks[idx].copy()
        for k, i in enumerate(idx):  # a box cut by the padding: re-grid its mask
            if not np.array_equal(clipped[i], boxes[i]):
                masks[k] = reframe_mask(masks[k], boxes[i], clipped[i])
        if len(idx) == 0:
            return Detections.empty(size, mask_size=masks.shape[-1] if masks.ndim == 3 else 28)
        return Detections(
            boxes=clipped[idx], scores=scores[idx], classes=classes[idx], mask_probs=masks,
            image_size=(int(h), int(w)),
        )  # fmt: skip

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect instances in each image.

        Parameters
        ----------
        images : sequence of arrays
            ``(Y, X)`` or ``(C, Y, X)`` float images on the model's 0..255 scale (map raw data
            with :mod:`napari_hrs.engine.intensity` first). Sizes may differ.

        Returns
        -------
        list of Detections
            One per image, boxes in that image's pixels, sorted by descending score.
        """
        prepared = [self._to_model_channels(im) for im in images]
        results: list[Detections | None] = [None] * len(prepared)
        for group in self._batches(prepared):
            chunk = [prepared[i] for i in group]
            outputs = self._forward(self._stack(chunk))
            for i, im, out in zip(group, chunk, outputs, strict=True):
                results[i] = self._postprocess(out, (im.shape[1], im.shape[2]))
        return results  # type: ignore[return-value]

    def _batches(self, images: list[np.ndarray]) -> list[list[int]]:
        """Indices of ``images`` in batches of at most ``batch_size`` that share one padded
        size: an image is never padded by more than the size divisibility, so what is found
        in it does not depend on the other images of its batch (the network's GroupNorm
        statistics span the whole padded input)."""
        div = self.size_divisibility
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            key = (-(-im.shape[1] // div) * div, -(-im.shape[2] // div) * div)
            by_size.setdefault(key, []).append(i)
        return [idx[k : k + self.batch_size] for idx in by_size.values()
                for k in range(0, len(idx), self.batch_size)]  # fmt: skip

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return self.predict(images)
