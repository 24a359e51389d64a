"""Our checkpoint format, and :func:`load_model` for every model spec the app accepts.

A napari-hrs checkpoint is one torch file holding::

    {"format": "napari-hrs-checkpoint", "format_version": 1,
     "config": ModelConfig.to_dict(), "class_names": [...],
     "state_dict": {name: tensor}, "provenance": {"napari_hrs_version", "torch_version",
     "date", ...}, "extra": {...}}

It is written atomically (temporary sibling + ``os.replace``) and read with
``torch.load(weights_only=True)``. Every load checks the format, the config and that the
weights fit the model built from it; problems raise :class:`napari_hrs.errors.CheckpointError`.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_hrs.engine.config import ModelConfig, get_preset
from napari_hrs.engine.detectron2_compat import (
    check_state,
    infer_detectron2_shape,
    load_detectron2_checkpoint,
    map_detectron2_state,
    read_detectron2_state,
)
from napari_hrs.errors import CheckpointError

__all__ = ["FORMAT", "FORMAT_VERSION", "Loaded", "bundled_model_path", "load_checkpoint",
           "load_model", "save_checkpoint"]  # fmt: skip

FORMAT = "napari-hrs-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Loaded:
    """A loaded model (eval mode), its config and the checkpoint's metadata (``path``,
    ``name``, ``format``, ``provenance``, ``extra``)."""

    model: torch.nn.Module
    cfg: ModelConfig
    meta: dict = field(default_factory=dict)


def bundled_model_path() -> Path:
    """Where the bundled compact model lives (``napari_hrs/models/compact.pt``)."""
    return Path(__file__).resolve().parent.parent / "models" / "compact.pt"


def save_checkpoint(path: str | Path, model: torch.nn.Module, cfg: ModelConfig, *,
                    provenance: dict | None = None, extra: dict | None = None) -> Path:  # fmt: skip
    """Write ``model``'s weights and ``cfg`` to ``path`` atomically; returns the path."""
    from napari_hrs import __version__

    path = Path(path)
    prov = {
        "napari_hrs_version": __version__,
        "torch_version": str(torch.__version__),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    prov.update(provenance or {})
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "class_names": list(cfg.class_names),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "provenance": _plain(prov),
        "extra": _plain(dict(extra or {})),
    }
    from napari_hrs.io.export._atomic import atomic_target

    with atomic_target(path, overwrite=True) as tmp:  # a sibling, renamed when complete
        torch.save(payload, tmp)
    return path


def _plain(v: Any) -> Any:
    """Containers of plain Python values and tensors only (``weights_only`` loading): str
    subclasses (e.g. ``torch.__version__``) and paths become str, numpy values Python/tensors."""
    import numpy as np

    if isinstance(v, dict):
        return {
            (_plain(k) if not isinstance(k, (int, float)) else k): _plain(x) for k, x in v.items()
        }
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v) if type(v) in (list, tuple) else [_plain(x) for x in v]
    if isinstance(v, torch.Tensor) or v is None or type(v) in (bool, int, float, str, bytes):
        return v
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (str, os.PathLike)):
        return str(v)
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)


def _read(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; pass a .pt written by "
                              "napari-hrs train, a detectron2 .pth / .pkl, or 'compact'")  # fmt: skip
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); the file is corrupt, "
                              "truncated or not a checkpoint: re-copy or re-train it") from exc  # fmt: skip


def _from_payload(data: Any, path: Path, device: str) -> Loaded:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a napari-hrs checkpoint (format "
                              f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r}); "
                              "pass a file written by napari-hrs train or use load_model for "
                              "detectron2 files")  # fmt: skip
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}, this napari-hrs "
                              f"reads version {FORMAT_VERSION}; update napari-hrs")  # fmt: skip
    try:
        cfg = ModelConfig.from_dict(data["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model config in the checkpoint ({exc}); it was "
                              "written by an incompatible napari-hrs version") from exc  # fmt: skip
    state = data.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the checkpoint has no state_dict")
    if list(data.get("class_names") or cfg.class_names) != list(cfg.class_names):
        raise CheckpointError(f"{path}: class_names {data.get('class_names')} disagree with the "
                              f"config's {list(cfg.class_names)}; the file was edited or is corrupt")  # fmt: skip
    from napari_hrs.engine.model import build_model

    model = build_model(cfg)
    check_state(model, state, str(path))
    model.load_state_dict(state)
    model.to(device).eval()
    meta = {
        "path": str(path),
        "name": path.stem,
        "format": FORMAT,
        "class_names": list(cfg.class_names),
        "provenance": dict(data.get("provenance") or {}),
        "extra": dict(data.get("extra") or {}),
    }
    return Loaded(model=model, cfg=cfg, meta=meta)


def load_checkpoint(path: str | Path, *, device: str = "cpu") -> Loaded:
    """Load a napari-hrs checkpoint (model in eval mode on ``device``)."""
    path = Path(path)
    return _from_payload(_read(path), path, device)


def _load_d2(path: Path, data: Any, device: str, preset: str | None,
             class_names: tuple[str, ...] | list[str] | None) -> Loaded:  # fmt: skip
    from napari_hrs.engine.detectron2_compat import _tensors

    raw = read_detectron2_state(path) if data is None else _tensors(data, str(path))
    state = map_detectron2_state(raw)
    try:
        num_classes, in_ch = infer_detectron2_shape(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if class_names is None:
        class_names = ("round_spermatid",) if num_classes == 1 else tuple(
            f"class_{i}" for i in range(num_classes))  # fmt: skip
    if len(class_names) != num_classes:
        raise CheckpointError(f"{path}: the checkpoint has {num_classes} classes but "
                              f"{len(class_names)} class names were given ({list(class_names)})")  # fmt: skip
    cfg = get_preset(preset or "paper", class_names=tuple(class_names))
    if in_ch != cfg.input_channels:
        raise CheckpointError(f"{path}: the checkpoint takes {in_ch} input channels but preset "
                              f"{preset or 'paper'!r} has {cfg.input_channels}")  # fmt: skip
    model = load_detectron2_checkpoint(state, cfg).to(device).eval()
    meta = {"path": str(path), "name": path.stem, "format": "detectron2",
            "class_names": list(cfg.class_names), "provenance": {}, "extra": {}}  # fmt: skip
    return Loaded(model=model, cfg=cfg, meta=meta)


def load_model(spec: str | Path | Loaded, *, device: str | None = None, preset: str | None = None,
               class_names: tuple[str, ...] | list[str] | None = None) -> Loaded:  # fmt: skip
    """Load a model from a spec.

    Parameters
    ----------
    spec : str, Path or Loaded
        ``"compact"`` (the bundled model), a napari-hrs ``.pt`` checkpoint, or a detectron2
        ``.pth`` / ``.pkl`` Cascade Mask R-CNN checkpoint (BGR, 3 channels).
    device : str, optional
        Default ``"cpu"``.
    preset, class_names
        For detectron2 files only: the architecture (default ``"paper"``) and the class names
        (default: read the number of classes off the file).
    """
    dev = device or "cpu"
    if isinstance(spec, Loaded):
        spec.model.to(dev).eval()
        return spec
    if isinstance(spec, str) and spec == "compact":
        path = bundled_model_path()
        if not path.is_file():
            raise CheckpointError(f"the bundled compact model {path} is missing; reinstall "
                                  "napari-hrs or pass a checkpoint path (train one with "
                                  "`napari-hrs train`)")  # fmt: skip
        loaded = load_checkpoint(path, device=dev)
        loaded.meta["name"] = "compact"
        return loaded
    path = Path(spec)
    if path.suffix == ".pkl":
        return _load_d2(path, None, dev, preset, class_names)
    data = _read(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return _from_payload(data, path, dev)
    if isinstance(data, dict) and ("model" in data or any(k.startswith("backbone.") for k in data)):
        return _load_d2(path, data, dev, preset, class_names)
    raise CheckpointError(f"{path}: neither a napari-hrs checkpoint nor a detectron2 one; pass a "
                          ".pt from napari-hrs train or a detectron2 .pth / .pkl")  # fmt: skip
