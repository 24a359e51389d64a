"""ResNet + FPN backbone with detectron2's module names.

``ResNet`` (``backbone.bottom_up``) has a stem (``stem.conv1`` + norm, max-pool) and stages
``res2``..``res5`` of bottleneck or basic blocks (``conv1``, ``conv2``, [``conv3``],
``shortcut``; each conv carries its normalisation as ``.norm``). ``FPN`` adds
``fpn_lateral{2..5}`` (1x1) and ``fpn_output{2..5}`` (3x3) convs, nearest top-down upsampling,
and P6 = max-pool(P5, kernel 1, stride 2). Feature maps are ``(B, C, H, W)``; strides 4..64 px.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from napari_hrs.engine.config import BackboneConfig, FPNConfig

__all__ = ["FPN", "Conv2d", "FrozenBatchNorm2d", "ResNet", "build_backbone", "get_norm"]


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (buffers, never trained)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` per channel: the layer is ``x * scale + shift``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, bias = self.scale_shift()
        return x * scale.reshape(1, -1, 1, 1).to(x.dtype) + bias.reshape(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        state_dict.pop(prefix + "num_batches_tracked", None)  # from a BatchNorm2d checkpoint
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def get_norm(norm: str, channels: int, gn_groups: int = 32) -> nn.Module | None:
    """A normalisation layer by name: ``"FrozenBN"``, ``"BN"``, ``"GN"`` or ``""`` (None)."""
    if not norm:
        return None
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm in ("BN", "SyncBN"):
        return nn.BatchNorm2d(channels)
    if norm == "GN":
        groups = min(gn_groups, channels)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"unknown norm {norm!r}; use 'FrozenBN', 'BN', 'GN' or ''")


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with an optional ``norm`` sub-module (detectron2's layout)."""

    def __init__(self, *args, norm: nn.Module | None = None, **kwargs) -> None:  # noqa: ANN002
        super().__init__(*args, **kwargs)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        if isinstance(norm, FrozenBatchNorm2d) and not torch.is_grad_enabled():
            # inference: fold the frozen affine into the convolution (one pass over x, not two)
            scale, shift = norm.scale_shift()
            weight = self.weight * scale.reshape(-1, 1, 1, 1)
            bias = shift if self.bias is None else self.bias * scale + shift
            return self._conv_forward(x, weight, bias)
        x = super().forward(x)
        return norm(x) if norm is not None else x


def _msra(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _xavier(conv: nn.Module) -> None:  # detectron2's c2_xavier_fill
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class BasicStem(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, norm: str, groups: int) -> None:
        super().__init__()
        self.conv1 = Conv2d(in_ch, out_ch, kernel, stride=2, padding=kernel // 2, bias=False,
                            norm=get_norm(norm, out_ch, groups))  # fmt: skip
        _msra(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, mid: int, stride: int, norm: str, groups: int,
                 stride_in_1x1: bool) -> None:  # fmt: skip
        super().__init__()
        self.shortcut = (
            Conv2d(in_ch, out_ch, 1, stride=stride, bias=False, norm=get_norm(norm, out_ch, groups))
            if in_ch != out_ch else None
        )  # fmt: skip
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_ch, mid, 1, stride=s1, bias=False, norm=get_norm(norm, mid, groups))
        self.conv2 = Conv2d(mid, mid, 3, stride=s3, padding=1, bias=False,
                            norm=get_norm(norm, mid, groups))  # fmt: skip
        self.conv3 = Conv2d(mid, out_ch, 1, bias=False, norm=get_norm(norm, out_ch, groups))
        for c in (self.conv1, self.conv2, self.conv3, self.shortcut):
            if c is not None:
                _msra(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        short = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + short)


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str, groups: int) -> None:
        super().__init__()
        self.shortcut = (
            Conv2d(in_ch, out_ch, 1, stride=stride, bias=False, norm=get_norm(norm, out_ch, groups))
            if in_ch != out_ch or stride != 1 else None
        )  # fmt: skip
        self.conv1 = Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False,
                            norm=get_norm(norm, out_ch, groups))  # fmt: skip
        self.conv2 = Conv2d(out_ch, out_ch, 3, padding=1, bias=False,
                            norm=get_norm(norm, out_ch, groups))  # fmt: skip
        for c in (self.conv1, self.conv2, self.shortcut):
            if c is not None:
                _msra(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        short = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + short)


class ResNet(nn.Module):
    """Bottom-up ResNet; ``forward`` returns ``{"res2": ..., ..., "res5": ...}``."""

    def __init__(self, cfg: BackboneConfig, in_channels: int) -> None:
        super().__init__()
        g = cfg.gn_groups
        self.stem = BasicStem(in_channels, cfg.stem_out_channels, cfg.stem_kernel, cfg.norm, g)
        self.stage_names = ("res2", "res3", "res4", "res5")
        self.strides = (4, 8, 16, 32)
        in_ch = cfg.stem_out_channels
        for i, name in enumerate(self.stage_names):
            blocks = []
            for b in range(cfg.stage_blocks[i]):
                stride = 2 if (b == 0 and i > 0) else 1
                out_ch = cfg.out_channels[i]
                if cfg.block == "bottleneck":
                    blk = BottleneckBlock(in_ch, out_ch, cfg.bottleneck_channels[i], stride,
                                          cfg.norm, g, cfg.stride_in_1x1)  # fmt: skip
                else:
                    blk = BasicBlock(in_ch, out_ch, stride, cfg.norm, g)
                blocks.append(blk)
                in_ch = out_ch
            self.add_module(name, nn.Sequential(*blocks))
        self.out_channels = tuple(cfg.out_channels)
        self.freeze(cfg.freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients of the stem (``freeze_at >= 1``) and of res2.. (``>= 2`` ...)."""
        parts = [self.stem] + [getattr(self, n) for n in self.stage_names]
        for part in parts[:freeze_at]:
            for p in part.parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out


class FPN(nn.Module):
    """Feature pyramid; ``forward`` returns ``[P2, P3, P4, P5, P6]`` (strides 4..64)."""

    def __init__(self, bottom_up: ResNet, cfg: FPNConfig) -> None:
        super().__init__()
        self.bottom_up = bottom_up
        c = cfg.out_channels
        use_bias = cfg.norm == ""
        for lvl, in_ch in zip((2, 3, 4, 5), bottom_up.out_channels, strict=True):
            lat = Conv2d(in_ch, c, 1, bias=use_bias, norm=get_norm(cfg.norm, c))
            out = Conv2d(c, c, 3, padding=1, bias=use_bias, norm=get_norm(cfg.norm, c))
            _xavier(lat)
            _xavier(out)
            self.add_module(f"fpn_lateral{lvl}", lat)
            self.add_module(f"fpn_output{lvl}", out)
        self.fuse_type = cfg.fuse_type
        self.out_channels = c
        self.strides = (4, 8, 16, 32, 64)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.bottom_up(x)
        prev = self.fpn_lateral5(feats["res5"])
        outs = [self.fpn_output5(prev)]
        for lvl in (4, 3, 2):
            lat = getattr(self, f"fpn_lateral{lvl}")(feats[f"res{lvl}"])
            top = F.interpolate(prev, scale_factor=2.0, mode="nearest")
            prev = lat + top
            if self.fuse_type == "avg":
                prev = prev / 2
            outs.insert(0, getattr(self, f"fpn_output{lvl}")(prev))
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2, padding=0))
        return outs


def build_backbone(cfg, in_channels: int) -> FPN:  # noqa: ANN001 - ModelConfig
    """ResNet-FPN from a :class:`~napari_hrs.engine.config.ModelConfig`."""
    return FPN(ResNet(cfg.backbone, in_channels), cfg.fpn)
