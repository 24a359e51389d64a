"""Detection engine: the Cascade Mask R-CNN (config, model, checkpoints) and inference.

Importing this package does not import torch; the names below load their module on first use:

- :func:`get_preset`, :class:`ModelConfig` (``napari_hrs.engine.config``, torch-free)
- :func:`build_model`, :class:`CascadeMaskRCNN` (``napari_hrs.engine.model``)
- :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`load_model`, :class:`Loaded`
  (``napari_hrs.engine.checkpoint``)
- :func:`load_detectron2_checkpoint` (``napari_hrs.engine.detectron2_compat``)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "ModelConfig": "config",
    "get_preset": "config",
    "PRESETS": "config",
    "build_model": "model",
    "CascadeMaskRCNN": "model",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_model": "checkpoint",
    "Loaded": "checkpoint",
    "load_detectron2_checkpoint": "detectron2_compat",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"napari_hrs.engine.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'napari_hrs.engine' has no attribute {name!r}")
