"""Model configuration of the Cascade Mask R-CNN: dataclasses, presets and dotted overrides.

Two presets:

``paper``
    detectron2's ``Misc/cascade_mask_rcnn_R_50_FPN_3x``: ResNet-50-FPN (FrozenBN, 256-channel
    FPN), 3 cascade stages at IoU 0.5 / 0.6 / 0.7, 512 ROIs per image, BGR input (3 channels,
    0..255, ImageNet means). ~71.7 M parameters with one class. Meant for GPUs and for loading
    detectron2 checkpoints.
``compact``
    The bundled model: a narrow basic-block ResNet (16/32/64/128 channels, one block per stage,
    GroupNorm) with a 64-channel FPN, 128 ROIs per image, 256-wide box heads and a 2-conv mask
    head, on one gray channel at 0.325 µm/px (an hRS spans ~20-28 px). It trains on 2 CPU cores.

Configs are plain dataclasses; :meth:`ModelConfig.to_dict` / :meth:`ModelConfig.from_dict`
round-trip through JSON-able dicts (stored in checkpoints) and :meth:`ModelConfig.override`
returns a changed copy from ``{"dotted.key": value}`` (a leading ``model.`` is accepted).
This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AnchorConfig",
    "BackboneConfig",
    "FPNConfig",
    "MaskHeadConfig",
    "ModelConfig",
    "PRESETS",
    "ROIHeadsConfig",
    "RPNConfig",
    "get_preset",
]

PRESETS = ("paper", "compact")


@dataclass
class BackboneConfig:
    """ResNet bottom-up network. ``block`` is ``"bottleneck"`` (ResNet-50/101) or ``"basic"``
    (ResNet-18/34); ``norm`` is ``"FrozenBN"``, ``"BN"``, ``"GN"`` or ``""`` (none)."""

    block: str = "bottleneck"
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3)
    stem_out_channels: int = 64
    stem_kernel: int = 7
    out_channels: tuple[int, ...] = (256, 512, 1024, 2048)  # res2..res5
    bottleneck_channels: tuple[int, ...] = (64, 128, 256, 512)  # bottleneck blocks only
    stride_in_1x1: bool = True
    norm: str = "FrozenBN"
    gn_groups: int = 32
    freeze_at: int = 2  # 0 none, 1 stem, 2 stem + res2, ...


@dataclass
class FPNConfig:
    """Feature pyramid on res2..res5 (P2..P5) plus P6 = max-pool(P5, k=1, s=2)."""

    out_channels: int = 256
    norm: str = ""
    fuse_type: str = "sum"


@dataclass
class AnchorConfig:
    """One tuple of sizes (pixels) per level P2..P6; the same aspect ratios (h / w) everywhere."""

    sizes: tuple[tuple[float, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    offset: float = 0.0


@dataclass
class RPNConfig:
    """Region proposal network: anchor labelling (IoU below / above ``iou_thresholds``:
    negative / positive), sampling, box weights, top-k before NMS (per level) and after NMS
    (per image).

    ``topk_test_per_mpx`` > 0 lets the test-time top-k grow with the input: both test top-ks
    become at least that many per megapixel of (padded) input, so a 1024² or 4096² tile gets
    as many proposals per cell as a 256² training crop. 0 keeps them fixed, as detectron2 does.
    """

    iou_thresholds: tuple[float, float] = (0.3, 0.7)
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    bbox_reg_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    smooth_l1_beta: float = 0.0
    pre_nms_topk_train: int = 2000  # per level
    pre_nms_topk_test: int = 1000  # per level
    post_nms_topk_train: int = 2000  # per image (the cascade configs raise Base-RCNN-FPN's 1000)
    post_nms_topk_test: int = 1000  # per image
    nms_thresh: float = 0.7
    min_size: float = 0.0
    loss_weight: float = 1.0
    topk_test_per_mpx: float = 0.0

    def test_topk(self, height: int, width: int) -> tuple[int, int]:
        """``(pre-NMS top-k per level, post-NMS top-k)`` at test time for a ``height`` x
        ``width`` pixel input."""
        pre, post = self.pre_nms_topk_test, self.post_nms_topk_test
        if self.topk_test_per_mpx > 0:
            k = math.ceil(self.topk_test_per_mpx * height * width / 1e6)
            pre, post = max(pre, k), max(post, k)
        return int(pre), int(post)


@dataclass
class ROIHeadsConfig:
    """Cascade box heads: one (IoU threshold, box weights) pair per stage; box regression is
    class-agnostic (as detectron2 requires for cascades). ``score_thresh``, ``nms_thresh`` and
    ``detections_per_image`` are the test-time defaults; ``detections_per_mpx`` > 0 raises the
    detection cap to that many per megapixel of input when that is more (0: fixed)."""

    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    proposal_append_gt: bool = True
    iou_thresholds: tuple[float, ...] = (0.5, 0.6, 0.7)
    bbox_reg_weights: tuple[tuple[float, ...], ...] = (
        (10.0, 10.0, 5.0, 5.0),
        (20.0, 20.0, 10.0, 10.0),
        (30.0, 30.0, 15.0, 15.0),
    )
    pooler_resolution: int = 7
    pooler_sampling_ratio: int = 0
    canonical_box_size: int = 224
    canonical_level: int = 4
    num_fc: int = 2
    fc_dim: int = 1024
    smooth_l1_beta: float = 0.0
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    detections_per_mpx: float = 0.0

    def detection_cap(self, height: int, width: int) -> int:
        """Detections kept per image at test time for a ``height`` x ``width`` pixel input."""
        top = self.detections_per_image
        if self.detections_per_mpx > 0:
            top = max(top, math.ceil(self.detections_per_mpx * height * width / 1e6))
        return int(top)


@dataclass
class MaskHeadConfig:
    """Mask head: ``num_conv`` 3x3 convs of ``conv_dim`` channels on 14x14 ROIAlign features,
    a 2x deconv and a 1x1 predictor (one 28x28 map per class, or one if ``cls_agnostic``)."""

    pooler_resolution: int = 14
    pooler_sampling_ratio: int = 0
    num_conv: int = 4
    conv_dim: int = 256
    norm: str = ""
    cls_agnostic: bool = False

    @property
    def resolution(self) -> int:
        """Side of the predicted mask grid (2 x the pooled size)."""
        return 2 * self.pooler_resolution


_SUB = {
    "backbone": BackboneConfig,
    "fpn": FPNConfig,
    "anchors": AnchorConfig,
    "rpn": RPNConfig,
    "roi_heads": ROIHeadsConfig,
    "mask_head": MaskHeadConfig,
}
# flat names others read (cfg.score_thresh ...) -> where they live
_ALIASES = {
    "score_thresh": "roi_heads.score_thresh",
    "nms_thresh": "roi_heads.nms_thresh",
    "detections_per_image": "roi_heads.detections_per_image",
    "in_channels": "input_channels",
}


@dataclass
class ModelConfig:
    """Everything needed to build a :class:`~napari_hrs.engine.model.CascadeMaskRCNN`.

    Image fields: ``input_channels`` (1 gray or 3 colour), ``input_format`` (``"L"``, ``"BGR"``
    or ``"RGB"``; the order of the channels the model expects), ``pixel_mean`` / ``pixel_std``
    (one per channel, on the 0..255 scale), ``size_divisibility`` (inputs are zero-padded to a
    multiple of it, pixels), ``pixel_size_um`` (the training pixel size, µm, or None) and
    ``max_object_size_px`` (the largest object diameter the model is meant for, model pixels).
    """

    name: str = "paper"
    class_names: tuple[str, ...] = ("round_spermatid",)
    input_channels: int = 3
    input_format: str = "BGR"
    pixel_mean: tuple[float, ...] = (103.53, 116.28, 123.675)
    pixel_std: tuple[float, ...] = (1.0, 1.0, 1.0)
    size_divisibility: int = 32
    pixel_size_um: float | None = None
    max_object_size_px: float | None = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: ROIHeadsConfig = field(default_factory=ROIHeadsConfig)
    mask_head: MaskHeadConfig = field(default_factory=MaskHeadConfig)

    def __post_init__(self) -> None:
        for sub in (self.backbone, self.fpn, self.mask_head):  # "none" is short for ""
            if isinstance(sub.norm, str) and sub.norm.lower() == "none":
                sub.norm = ""
        self.validate()

    # --- derived ------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self.input_channels

    @property
    def num_stages(self) -> int:
        return len(self.roi_heads.iou_thresholds)

    @property
    def score_thresh(self) -> float:
        return self.roi_heads.score_thresh

    @property
    def nms_thresh(self) -> float:
        return self.roi_heads.nms_thresh

    @property
    def detections_per_image(self) -> int:
        return self.roi_heads.detections_per_image

    @property
    def mask_resolution(self) -> int:
        return self.mask_head.resolution

    def test_topk(self, height: int, width: int) -> tuple[int, int, int]:
        """``(pre-NMS top-k per level, post-NMS top-k, detection cap)`` at test time for an
        input of ``height`` x ``width`` pixels (see ``topk_test_per_mpx``)."""
        return (*self.rpn.test_topk(height, width), self.roi_heads.detection_cap(height, width))

    # --- checks -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when the config is inconsistent."""
        if not self.class_names:
            raise ValueError("class_names is empty; pass at least one class name")
        if self.input_channels not in (1, 3):
            raise ValueError(f"input_channels must be 1 or 3, got {self.input_channels}")
        fmt_channels = {"L": 1, "BGR": 3, "RGB": 3}
        if fmt_channels.get(self.input_format) != self.input_channels:
            raise ValueError(f"input_format {self.input_format!r} does not fit input_channels "
                             f"{self.input_channels}; use 'L' for 1 channel, 'BGR' or 'RGB' for 3")  # fmt: skip
        if self.pixel_size_um is not None and not self.pixel_size_um > 0:
            raise ValueError(f"pixel_size_um must be positive or None, got {self.pixel_size_um}")
        for key in ("pixel_mean", "pixel_std"):
            if len(getattr(self, key)) != self.input_channels:
                raise ValueError(f"{key} has {len(getattr(self, key))} values but "
                                 f"input_channels is {self.input_channels}; give one per channel")  # fmt: skip
        if any(s <= 0 for s in self.pixel_std):
            raise ValueError(f"pixel_std must be positive, got {self.pixel_std}")
        if len(self.anchors.sizes) != 5:
            raise ValueError(f"anchors.sizes needs one tuple per level P2..P6 (5), got "
                             f"{len(self.anchors.sizes)}")  # fmt: skip
        if len({len(s) for s in self.anchors.sizes}) != 1:
            raise ValueError(f"every level needs the same number of anchor sizes, got "
                             f"{self.anchors.sizes}")  # fmt: skip
        rh = self.roi_heads
        if len(rh.bbox_reg_weights) != len(rh.iou_thresholds) or not rh.iou_thresholds:
            raise ValueError(f"roi_heads: {len(rh.iou_thresholds)} IoU thresholds but "
                             f"{len(rh.bbox_reg_weights)} bbox_reg_weights; give one per stage")  # fmt: skip
        b = self.backbone
        if b.block not in ("bottleneck", "basic"):
            raise ValueError(f"backbone.block must be 'bottleneck' or 'basic', got {b.block!r}")
        if len(b.stage_blocks) != 4 or len(b.out_channels) != 4:
            raise ValueError("backbone.stage_blocks and backbone.out_channels need 4 values "
                             "(res2..res5)")  # fmt: skip
        for key, norm in (("backbone", b.norm), ("fpn", self.fpn.norm),
                          ("mask_head", self.mask_head.norm)):  # fmt: skip
            if norm not in ("", "FrozenBN", "BN", "GN", "SyncBN"):
                raise ValueError(f"unknown {key}.norm {norm!r}; use 'FrozenBN', 'BN', 'GN' or "
                                 "'none'")  # fmt: skip

    # --- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        return _listify(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        data = dict(data)
        kwargs: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        for key, value in data.items():
            if key in _SUB:
                sub = _SUB[key]
                sub_names = {f.name for f in dataclasses.fields(sub)}
                bad = set(value) - sub_names
                if bad:
                    raise ValueError(
                        f"unknown model config keys {sorted(f'{key}.{b}' for b in bad)}"
                    )
                kwargs[key] = sub(**{k: _tuplify(v) for k, v in value.items()})
            else:
                kwargs[key] = _tuplify(value)
        return cls(**kwargs)

    def override(self, changes: dict[str, Any]) -> ModelConfig:
        """A copy with ``{"dotted.key": value}`` applied (e.g. ``"roi_heads.fc_dim"``,
        ``"model.roi_heads.batch_size_per_image"``, ``"score_thresh"``).

        Changing ``input_channels`` alone also sets ``input_format`` (1: ``"L"``, 3: ``"BGR"``);
        ``pixel_mean`` / ``pixel_std`` must then be given too (one value per channel).
        """
        data = self.to_dict()
        touched: set[str] = set()
        for raw_key, value in changes.items():
            key = str(raw_key)
            if key.startswith("model.") and key.split(".")[1] not in ("",):
                key = key[len("model.") :]
            key = _ALIASES.get(key, key)
            touched.add(key)
            parts = key.split(".")
            node = data
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ValueError(f"unknown model config key {raw_key!r}")
                node = node[part]
            if parts[-1] not in node:
                raise ValueError(f"unknown model config key {raw_key!r}; known: "
                                 f"{sorted(_flat_keys(self.to_dict()))}")  # fmt: skip
            node[parts[-1]] = _listify(value)
        if "input_channels" in touched and "input_format" not in touched:
            data["input_format"] = {1: "L", 3: data["input_format"]}.get(
                data["input_channels"], data["input_format"]
            )
            if data["input_channels"] == 3 and data["input_format"] == "L":
                data["input_format"] = "BGR"
        return ModelConfig.from_dict(data)


def _listify(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _listify(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_listify(x) for x in v]
    return v


def _tuplify(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_tuplify(x) for x in v)
    return v


def _flat_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat_keys(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def _compact(class_names: tuple[str, ...]) -> ModelConfig:
    return ModelConfig(
        name="compact",
        class_names=class_names,
        input_channels=1,
        input_format="L",
        pixel_mean=(128.0,),
        pixel_std=(64.0,),
        size_divisibility=32,
        pixel_size_um=0.325,
        max_object_size_px=72,
        backbone=BackboneConfig(
            block="basic",
            stage_blocks=(1, 1, 1, 1),
            stem_out_channels=16,
            stem_kernel=7,
            out_channels=(16, 32, 64, 128),
            bottleneck_channels=(16, 32, 64, 128),
            norm="GN",
            gn_groups=8,
            freeze_at=0,
        ),
        fpn=FPNConfig(out_channels=64),
        # two sizes per level, 2**0.5 apart: any object of 12..390 px has an anchor within
        # a factor 1.19 of its side; hRS (~20-28 px) fall on P2/P3
        anchors=AnchorConfig(
            sizes=((12, 17), (24, 34), (48, 68), (96, 136), (192, 272)),
            aspect_ratios=(0.5, 1.0, 2.0),
        ),
        # test-time top-k: at least 400 / 200 (a 256² crop), else ~1000 per megapixel, so a
        # dense 1024² tile (several hundred cells) keeps a proposal and a detection per cell
        rpn=RPNConfig(
            pre_nms_topk_train=600,
            post_nms_topk_train=300,
            pre_nms_topk_test=400,
            post_nms_topk_test=200,
            topk_test_per_mpx=1000.0,
        ),
        roi_heads=ROIHeadsConfig(batch_size_per_image=128, fc_dim=256, detections_per_mpx=1000.0),
        mask_head=MaskHeadConfig(num_conv=2, conv_dim=64),
    )


def get_preset(name: str, *, class_names: tuple[str, ...] | list[str] = ("round_spermatid",)
               ) -> ModelConfig:  # fmt: skip
    """The ``"paper"`` or ``"compact"`` model config for ``class_names``."""
    names = tuple(str(c) for c in class_names)
    if name == "paper":
        return ModelConfig(name="paper", class_names=names)
    if name == "compact":
        return _compact(names)
    raise ValueError(f"unknown preset {name!r}; use one of {PRESETS}")
