"""Run a model through detectron2 itself (``engine="detectron2"``), when detectron2 is installed.

Our :class:`~napari_hrs.engine.model.CascadeMaskRCNN` re-implements detectron2's Cascade Mask
R-CNN; this module is the cross-check and the escape hatch: it translates a
:class:`~napari_hrs.engine.config.ModelConfig` into detectron2's config keys
(:func:`detectron2_config_dict`, plain Python, no detectron2 needed), builds detectron2's own
``GeneralizedRCNN`` from them, loads the same weights (our module names are detectron2's) and
wraps it as :class:`Detectron2Model`, which the :class:`~napari_hrs.engine.predictor.Predictor`
drives exactly like our model (same padded batches in, same box-relative 28 x 28 mask
probabilities out).

ResNets that detectron2's config can describe (depth 18/34/50/101/152, channels doubling per
stage, 7x7 stem, GroupNorm with 32 groups) are built by detectron2's ``build_backbone``; others,
such as the ``compact`` preset (one basic block per stage, 16-channel stem, GroupNorm with 8
groups), are assembled from detectron2's own ``BasicStem`` / ``BasicBlock`` /
``BottleneckBlock`` / ``ResNet`` / ``FPN`` classes. Everything after the backbone (RPN, cascade
heads, mask head) always comes from detectron2's config.

detectron2 is never a dependency: it is imported on first use only, and
:func:`detectron2_available` says whether it can be.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from napari_hrs.engine.config import ModelConfig
from napari_hrs.errors import HRSError

__all__ = [
    "ENGINES",
    "Detectron2Model",
    "detectron2_available",
    "detectron2_config_dict",
    "to_detectron2_config",
    "to_detectron2_model",
]

#: inference engines a Predictor accepts
ENGINES = ("native", "detectron2")

_DEPTHS = {
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("bottleneck", (3, 8, 36, 3)): 152,
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
}
_LEVELS = ("p2", "p3", "p4", "p5", "p6")


class Detectron2Unavailable(HRSError, ImportError):
    """detectron2 is not importable, or cannot express the model config."""


def detectron2_available() -> bool:
    """True when ``import detectron2`` (with its compiled ops) can succeed."""
    if importlib.util.find_spec("detectron2") is None:
        return False
    try:
        import detectron2._C  # noqa: F401  (the compiled ops: ROIAlign, NMS ...)
    except ImportError:
        return False
    return True


def _require() -> None:
    if not detectron2_available():
        raise Detectron2Unavailable(
            "engine='detectron2' needs detectron2, which is not installed (or was built without "
            "its compiled ops); use engine='native' (the default: the same Cascade Mask R-CNN, "
            "re-implemented on torch/torchvision), or build detectron2 from source for this "
            "torch version"
        )


def _standard_depth(cfg: ModelConfig) -> int | None:
    """detectron2's ``RESNETS.DEPTH`` when ``cfg.backbone`` is a ResNet its config can build."""
    b = cfg.backbone
    depth = _DEPTHS.get((b.block, tuple(b.stage_blocks)))
    if depth is None or b.stem_kernel != 7 or (b.norm == "GN" and b.gn_groups != 32):
        return None
    doubling = all(b.out_channels[i] == b.out_channels[0] * 2**i for i in range(4))
    if b.block == "basic":
        return depth if doubling and b.out_channels[0] == 64 else None
    mids = all(b.bottleneck_channels[i] == b.bottleneck_channels[0] * 2**i for i in range(4))
    return depth if doubling and mids else None


def detectron2_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """detectron2 config keys (``"MODEL.RPN.NMS_THRESH"`` -> value) for ``cfg``'s inference.

    Plain Python: no detectron2 needed. Test-time top-k values are the fixed minima; the
    growth with the input area (``topk_test_per_mpx``, ``detections_per_mpx``; detectron2 has
    no such keys) is applied per call by :class:`Detectron2Model`.
    ``MODEL.BACKBONE.NAME`` is ``build_resnet_fpn_backbone``
    when detectron2's ResNet config can describe ``cfg.backbone``, else ``None`` (the backbone
    is then assembled from detectron2's classes by :func:`to_detectron2_model`).

    Raises
    ------
    Detectron2Unavailable
        For settings detectron2 cannot express (pooler canonical box size / level).
    """
    rh, mh, b = cfg.roi_heads, cfg.mask_head, cfg.backbone
    if (rh.canonical_box_size, rh.canonical_level) != (224, 4):
        raise Detectron2Unavailable(
            f"detectron2's ROIPooler fixes canonical_box_size=224, canonical_level=4; this model "
            f"uses {rh.canonical_box_size} / {rh.canonical_level}: run it with engine='native'"
        )
    depth = _standard_depth(cfg)
    d = {
        "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
        "MODEL.MASK_ON": True,
        "MODEL.PIXEL_MEAN": list(cfg.pixel_mean),
        "MODEL.PIXEL_STD": list(cfg.pixel_std),
        "INPUT.FORMAT": cfg.input_format,
        "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone" if depth else None,
        "MODEL.BACKBONE.FREEZE_AT": b.freeze_at,
        "MODEL.RESNETS.DEPTH": depth or 50,
        "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
        "MODEL.RESNETS.NORM": b.norm,
        "MODEL.RESNETS.STEM_OUT_CHANNELS": b.stem_out_channels,
        "MODEL.RESNETS.RES2_OUT_CHANNELS": b.out_channels[0],
        "MODEL.RESNETS.WIDTH_PER_GROUP": b.bottleneck_channels[0],
        "MODEL.RESNETS.NUM_GROUPS": 1,
        "MODEL.RESNETS.STRIDE_IN_1X1": b.stride_in_1x1,
        "MODEL.FPN.IN_FEATURES": ["res2", "res3", "res4", "res5"],
        "MODEL.FPN.OUT_CHANNELS": cfg.fpn.out_channels,
        "MODEL.FPN.NORM": cfg.fpn.norm,
        "MODEL.FPN.FUSE_TYPE": cfg.fpn.fuse_type,
        "MODEL.ANCHOR_GENERATOR.SIZES": [list(s) for s in cfg.anchors.sizes],
        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [list(cfg.anchors.aspect_ratios)],
        "MODEL.ANCHOR_GENERATOR.OFFSET": cfg.anchors.offset,
        "MODEL.PROPOSAL_GENERATOR.NAME": "RPN",
        "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": cfg.rpn.min_size,
        "MODEL.RPN.IN_FEATURES": list(_LEVELS),
        "MODEL.RPN.IOU_THRESHOLDS": list(cfg.rpn.iou_thresholds),
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE": cfg.rpn.batch_size_per_image,
        "MODEL.RPN.POSITIVE_FRACTION": cfg.rpn.positive_fraction,
        "MODEL.RPN.BBOX_REG_WEIGHTS": list(cfg.rpn.bbox_reg_weights),
        "MODEL.RPN.SMOOTH_L1_BETA": cfg.rpn.smooth_l1_beta,
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN": cfg.rpn.pre_nms_topk_train,
        "MODEL.RPN.PRE_NMS_TOPK_TEST": cfg.rpn.pre_nms_topk_test,
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": cfg.rpn.post_nms_topk_train,
        "MODEL.RPN.POST_NMS_TOPK_TEST": cfg.rpn.post_nms_topk_test,
        "MODEL.RPN.NMS_THRESH": cfg.rpn.nms_thresh,
        "MODEL.RPN.LOSS_WEIGHT": cfg.rpn.loss_weight,
        "MODEL.ROI_HEADS.NAME": "CascadeROIHeads",
        "MODEL.ROI_HEADS.NUM_CLASSES": cfg.num_classes,
        "MODEL.ROI_HEADS.IN_FEATURES": list(_LEVELS[:4]),
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": rh.batch_size_per_image,
        "MODEL.ROI_HEADS.POSITIVE_FRACTION": rh.positive_fraction,
        "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT": rh.proposal_append_gt,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST": rh.score_thresh,
        "MODEL.ROI_HEADS.NMS_THRESH_TEST": rh.nms_thresh,
        "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
        "MODEL.ROI_BOX_HEAD.NUM_FC": rh.num_fc,
        "MODEL.ROI_BOX_HEAD.NUM_CONV": 0,
        "MODEL.ROI_BOX_HEAD.FC_DIM": rh.fc_dim,
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": rh.pooler_resolution,
        "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": rh.pooler_sampling_ratio,
        "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlignV2",
        "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True,
        "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": rh.smooth_l1_beta,
        "MODEL.ROI_BOX_CASCADE_HEAD.IOUS": list(rh.iou_thresholds),
        "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS": [list(w) for w in rh.bbox_reg_weights],
        "MODEL.ROI_MASK_HEAD.NAME": "MaskRCNNConvUpsampleHead",
        "MODEL.ROI_MASK_HEAD.NUM_CONV": mh.num_conv,
        "MODEL.ROI_MASK_HEAD.CONV_DIM": mh.conv_dim,
        "MODEL.ROI_MASK_HEAD.NORM": mh.norm,
        "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": mh.pooler_resolution,
        "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": mh.pooler_sampling_ratio,
        "MODEL.ROI_MASK_HEAD.POOLER_TYPE": "ROIAlignV2",
        "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK": mh.cls_agnostic,
        "TEST.DETECTIONS_PER_IMAGE": rh.detections_per_image,
    }
    return d


def to_detectron2_config(cfg: ModelConfig, device: str = "cpu") -> Any:
    """detectron2's ``CfgNode`` (``get_cfg()`` defaults + :func:`detectron2_config_dict`)."""
    _require()
    from detectron2.config import get_cfg

    d2 = get_cfg()
    for key, value in detectron2_config_dict(cfg).items():
        if value is None:
            continue
        node = d2
        *parents, leaf = key.split(".")
        for p in parents:
            node = getattr(node, p)
        setattr(node, leaf, value)
    d2.MODEL.DEVICE = device
    return d2


def _norm(cfg: ModelConfig) -> Any:
    """The backbone norm as detectron2's ``get_norm`` takes it (a name, or a factory)."""
    b = cfg.backbone
    if b.norm == "GN" and b.gn_groups != 32:  # our group count (detectron2's "GN" is 32 groups)
        from napari_hrs.engine.backbone import get_norm

        return lambda channels: get_norm("GN", channels, b.gn_groups)
    return b.norm


def _custom_backbone(cfg: ModelConfig) -> Any:
    """A ResNet-FPN from detectron2's classes for a ResNet its config cannot describe."""
    from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
    from detectron2.modeling.backbone.resnet import (
        BasicBlock,
        BasicStem,
        BottleneckBlock,
        ResNet,
    )

    b = cfg.backbone
    if b.stem_kernel != 7:
        raise Detectron2Unavailable(f"detectron2's BasicStem is 7x7; this model's stem is "
                                    f"{b.stem_kernel}x{b.stem_kernel}: use engine='native'")  # fmt: skip
    norm = _norm(cfg)
    stem = BasicStem(in_channels=cfg.input_channels, out_channels=b.stem_out_channels, norm=norm)
    stages, in_ch = [], b.stem_out_channels
    for i, (n, out_ch) in enumerate(zip(b.stage_blocks, b.out_channels, strict=True)):
        stride = 1 if i == 0 else 2
        kwargs: dict[str, Any] = {"in_channels": in_ch, "out_channels": out_ch, "norm": norm,
                                  "stride_per_block": [stride] + [1] * (n - 1)}  # fmt: skip
        if b.block == "basic":
            if in_ch == out_ch and stride != 1:
                raise Detectron2Unavailable("detectron2's BasicBlock has no shortcut for a strided "
                                            "block of equal width: use engine='native'")  # fmt: skip
            kwargs["block_class"] = BasicBlock
        else:
            kwargs.update(block_class=BottleneckBlock, bottleneck_channels=b.bottleneck_channels[i],
                          stride_in_1x1=b.stride_in_1x1, num_groups=1)  # fmt: skip
        stages.append(ResNet.make_stage(num_blocks=n, **kwargs))
        in_ch = out_ch
    bottom_up = ResNet(stem, stages, out_features=["res2", "res3", "res4", "res5"],
                       freeze_at=b.freeze_at)  # fmt: skip
    return FPN(bottom_up=bottom_up, in_features=["res2", "res3", "res4", "res5"],
               out_channels=cfg.fpn.out_channels, norm=cfg.fpn.norm,
               top_block=LastLevelMaxPool(), fuse_type=cfg.fpn.fuse_type)  # fmt: skip


def to_detectron2_model(cfg: ModelConfig, state_dict: dict | None = None, device: str = "cpu"
                        ) -> Any:  # fmt: skip
    """detectron2's ``GeneralizedRCNN`` for ``cfg`` (eval mode), with our ``state_dict``."""
    _require()
    from detectron2.modeling import build_backbone
    from detectron2.modeling.meta_arch.rcnn import GeneralizedRCNN
    from detectron2.modeling.proposal_generator import build_proposal_generator
    from detectron2.modeling.roi_heads import build_roi_heads

    d2cfg = to_detectron2_config(cfg, device)
    if d2cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone" and _standard_depth(cfg):
        backbone = build_backbone(d2cfg)
    else:
        backbone = _custom_backbone(cfg)
    shape = backbone.output_shape()
    model = GeneralizedRCNN(
        backbone=backbone,
        proposal_generator=build_proposal_generator(d2cfg, shape),
        roi_heads=build_roi_heads(d2cfg, shape),
        pixel_mean=list(cfg.pixel_mean),
        pixel_std=list(cfg.pixel_std),
        input_format=cfg.input_format,
    )
    if state_dict is not None:
        from napari_hrs.engine.detectron2_compat import check_state

        check_state(model, state_dict, "detectron2 model built from the config")
        model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()


class Detectron2Model(torch.nn.Module):
    """detectron2's model behind our model's interface.

    ``inference(images (B, C, H, W) 0..255, score_thresh, nms_thresh, max_detections)`` returns
    one dict per image with ``boxes`` ``(N, 4)``, ``scores``, ``classes`` (0-based) and
    ``mask_probs`` ``(N, 28, 28)`` (box-relative), as
    :meth:`napari_hrs.engine.model.CascadeMaskRCNN.inference` does.

    Parameters
    ----------
    cfg : ModelConfig
        Our config (kept as ``.cfg``; the Predictor reads class names, pixel size ... from it).
    state_dict : dict, optional
        Weights with our (= detectron2's) module names.
    """

    engine = "detectron2"

    def __init__(self, cfg: ModelConfig, state_dict: dict | None = None, device: str = "cpu"):
        super().__init__()
        self.cfg = cfg
        self.d2 = to_detectron2_model(cfg, state_dict, device)

    @classmethod
    def from_loaded(cls, loaded: Any, device: str = "cpu") -> Detectron2Model:
        """Wrap a :class:`~napari_hrs.engine.checkpoint.Loaded` model's weights."""
        return cls(loaded.cfg, loaded.model.state_dict(), device)

    def inference(self, images: torch.Tensor, score_thresh: float | None = None,
                  nms_thresh: float | None = None, max_detections: int | None = None
                  ) -> list[dict]:  # fmt: skip
        rh = self.cfg.roi_heads
        h, w = int(images.shape[-2]), int(images.shape[-1])
        pre, post, cap = self.cfg.test_topk(h, w)  # our area rule, applied to detectron2's RPN
        rpn = self.d2.proposal_generator
        rpn.pre_nms_topk[False], rpn.post_nms_topk[False] = pre, post
        for p in self.d2.roi_heads.box_predictor:
            p.test_score_thresh = rh.score_thresh if score_thresh is None else float(score_thresh)
            p.test_nms_thresh = rh.nms_thresh if nms_thresh is None else float(nms_thresh)
            p.test_topk_per_image = cap if max_detections is None else int(max_detections)
        device = next(self.d2.parameters()).device
        images = images.to(device, torch.float32)
        batch = [{"image": im, "height": h, "width": w} for im in images]
        with torch.no_grad():
            outputs = self.d2.inference(batch, do_postprocess=False)
        results = []
        for inst in outputs:
            masks = inst.pred_masks
            results.append({
                "boxes": inst.pred_boxes.tensor.float(),
                "scores": inst.scores.float(),
                "classes": inst.pred_classes.to(torch.int64),
                "mask_probs": masks[:, 0].float() if masks.ndim == 4 else masks.float(),
            })  # fmt: skip
        return results

    def forward(self, images: torch.Tensor) -> list[dict]:
        return self.inference(images)
