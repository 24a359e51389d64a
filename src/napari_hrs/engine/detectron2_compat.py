"""Load detectron2 checkpoints into our :class:`~napari_hrs.engine.model.CascadeMaskRCNN`.

Our module names mirror detectron2's, so the mapping is near-identity:

- detectron2 ``.pkl`` (model zoo) files hold ``{"model": {name: numpy array}, "__author__": ...}``;
  ``.pth`` files written by detectron2 training hold ``{"model": state_dict, ...}``;
- ``module.`` prefixes (DistributedDataParallel) are stripped; ``pixel_mean`` / ``pixel_std``,
  ``anchor_generator.cell_anchors.*`` and BatchNorm ``num_batches_tracked`` are dropped;
- Caffe2-named ImageNet backbones (``res2_0_branch2a_w``, ``res_conv1_bn_s`` ... as in
  detectron2's ``R-50.pkl``) are renamed to ``backbone.bottom_up.*``;
- every remaining name and shape is checked against the model built from the config.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_hrs.errors import CheckpointError

__all__ = [
    "convert_c2_names",
    "load_detectron2_checkpoint",
    "map_detectron2_state",
    "read_detectron2_state",
]

_DROP = re.compile(
    r"(^|\.)(pixel_mean|pixel_std|num_batches_tracked)$|anchor_generator\.cell_anchors"
)


def read_detectron2_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The raw ``{name: tensor}`` weights of a detectron2 ``.pkl`` / ``.pth`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as fh:
                data = pickle.load(fh, encoding="latin1")  # noqa: S301 - detectron2 format
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a pickle, foreign objects ...
        raise CheckpointError(f"{path}: cannot read it as a detectron2 checkpoint ({exc}); "
                              "pass a detectron2 .pth / .pkl or a napari-hrs .pt file") from exc  # fmt: skip
    return _tensors(data, str(path))


def _tensors(data: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if isinstance(data, Mapping) and isinstance(data.get("blobs"), Mapping):  # Caffe2 files
        data = data["blobs"]
    if not isinstance(data, Mapping) or not data:
        raise CheckpointError(f"{source}: holds no weights (expected a dict of arrays, possibly "
                              "under 'model'); is it a detectron2 checkpoint?")  # fmt: skip
    out = {}
    for k, v in data.items():
        if isinstance(v, np.ndarray):
            out[str(k)] = torch.from_numpy(np.ascontiguousarray(v))
        elif isinstance(v, torch.Tensor):
            out[str(k)] = v
        # scalars / strings (e.g. Caffe2 momentum blobs, metadata) carry no weights
    if not out:
        raise CheckpointError(f"{source}: holds no arrays; is it a detectron2 checkpoint?")
    return out


def convert_c2_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Caffe2 ResNet names (detectron2's ImageNet ``R-50.pkl``) to ours."""
    out: dict[str, torch.Tensor] = {}
    branch = {"branch2a": "conv1", "branch2b": "conv2", "branch2c": "conv3", "branch1": "shortcut"}
    bn = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
    for k, v in state.items():
        if k.startswith("fc1000") or k.endswith("_momentum"):
            continue
        if k == "conv1_w":
            out["backbone.bottom_up.stem.conv1.weight"] = v
            continue
        m = re.fullmatch(r"res_conv1_bn_(s|b|rm|riv)", k)
        if m:
            out[f"backbone.bottom_up.stem.conv1.norm.{bn[m.group(1)]}"] = v
            continue
        m = re.fullmatch(
            r"res(\d)_(\d+)_(branch2a|branch2b|branch2c|branch1)_(w|bn_s|bn_b|bn_rm|bn_riv)", k
        )
        if m:
            stage, block, br, what = m.groups()
            base = f"backbone.bottom_up.res{stage}.{block}.{branch[br]}"
            out[base + (".weight" if what == "w" else f".norm.{bn[what[3:]]}")] = v
            continue
        out[k] = v
    return out


def map_detectron2_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """detectron2 names -> ours (strip ``module.``, drop non-weights, rename Caffe2 names)."""
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    if any(re.match(r"res\d_\d+_branch|conv1_w$|res_conv1_bn", k) for k in state):
        state = convert_c2_names(state)
    return {k: v for k, v in state.items() if not _DROP.search(k)}


def check_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str,
                *, strict: bool = True) -> None:  # fmt: skip
    """Raise :class:`CheckpointError` naming missing / unexpected / mis-shaped tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if tuple(state[k].shape) != tuple(own[k].shape)]  # fmt: skip
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({'; '.join(shapes[:4])})")
    if strict and missing:
        problems.append(f"{len(missing)} missing tensors ({', '.join(missing[:4])}...)")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors ({', '.join(unexpected[:4])}...)")
    if problems:
        raise CheckpointError(f"{source}: the weights do not fit the model config: "
                              + "; ".join(problems)
                              + ". Pass the preset / class names the checkpoint was trained with "
                              "(preset=, class_names=) or retrain.")  # fmt: skip


def load_detectron2_checkpoint(path_or_state_dict: str | Path | Mapping[str, Any], cfg: Any,
                               *, strict: bool = True) -> torch.nn.Module:  # fmt: skip
    """Build the model for ``cfg`` and load detectron2 weights into it (eval mode, CPU).

    Parameters
    ----------
    path_or_state_dict : path or mapping
        A detectron2 ``.pth`` / ``.pkl`` file, or its (possibly ``{"model": ...}``-wrapped)
        dict of tensors / numpy arrays.
    cfg : ModelConfig
        Must match the checkpoint (classes, input channels, architecture).
    strict : bool
        Require every model tensor to be present (False: e.g. an ImageNet backbone only).
    """
    from napari_hrs.engine.model import build_model

    if isinstance(path_or_state_dict, (str, Path)):
        source = str(path_or_state_dict)
        raw = read_detectron2_state(path_or_state_dict)
    else:
        source = "detectron2 state dict"
        raw = _tensors(path_or_state_dict, source)
    state = map_detectron2_state(raw)
    model = build_model(cfg)
    check_state(model, state, source, strict=strict)
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) for k, v in state.items() if k in own}
    model.load_state_dict(state, strict=False)
    return model.eval()


def infer_detectron2_shape(state: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """``(num_classes, input_channels)`` read off a mapped detectron2 state dict."""
    cls = state.get("roi_heads.box_predictor.0.cls_score.weight")
    if cls is None:
        raise CheckpointError("the detectron2 checkpoint has no roi_heads.box_predictor.0.cls_score "
                              "(not a Cascade R-CNN? plain Mask R-CNN checkpoints are not "
                              "supported); pass a cascade_mask_rcnn checkpoint")  # fmt: skip
    stem = state.get("backbone.bottom_up.stem.conv1.weight")
    return int(cls.shape[0]) - 1, int(stem.shape[1]) if stem is not None else 3
