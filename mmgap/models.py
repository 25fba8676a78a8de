"""Audio and visual ResNet-18 encoders, concat fusion and the per-modality logit split (Eq. 1-2).

Shapes: audio spectrograms ``[B, 1, F, T]``; visual clips ``[B, T, 3, H, W]``; each encoder returns a feature
vector ``[B, 8w]`` (``w`` = width of the first stage, 64 for the paper's ResNet-18, so 512-d features). The
encoders assume no dtype (they run under bf16 autocast, with channels_last weights); the concat head always
runs in float32, so the logits the gaps and posteriors are computed from are never rounded to bf16.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from mmgap.config import ModelConfig


class ModelOutput(NamedTuple):
    """Fused logits f [B, M], audio and visual logits l^a, l^v [B, M] (Eq. 2), features [B, d] (for t-SNE)."""

    fused: torch.Tensor
    logit_a: torch.Tensor
    logit_v: torch.Tensor
    feat_a: torch.Tensor
    feat_v: torch.Tensor


def init_weights(module: nn.Module) -> None:
    """The field's initialisation: kaiming (fan_out, ReLU) for conv, xavier for linear, BN at (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet18Trunk(ResNet):
    """torchvision's ResNet-18 (BasicBlock, [2, 2, 2, 2]) with a width knob and no pooling/fc head.

    Why a subclass that re-runs the stage construction instead of building ``ResNet(BasicBlock, [2,2,2,2])``
    and swapping layers afterwards: torchvision hard-codes 64/128/256/512 channels, and building the full
    11.7 M-parameter network only to throw it away costs ~0.2 s per encoder. We reuse torchvision's own
    ``BasicBlock`` and ``_make_layer`` (so blocks, downsampling and stride placement are torchvision's),
    and set the few attributes ``_make_layer`` reads, exactly as ``ResNet.__init__`` sets them.
    """

    def __init__(self, in_channels: int, width: int = 64) -> None:
        nn.Module.__init__(self)
        if in_channels < 1 or width < 1:
            raise ValueError(f"ResNet-18 needs in_channels >= 1 and width >= 1, got {in_channels}, {width}")
        # Attributes read by ResNet._make_layer (same values ResNet.__init__ uses for ResNet-18).
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # BasicBlock only accepts 64 here; it is not the channel count
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)
        self.out_channels = 8 * width
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch [N, C, H, W] -> feature map [N, 8w, H/32, W/32] (rounded up)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18_encoder(in_channels: int, width: int = 64) -> nn.Module:
    """ResNet-18 from scratch (weights=None) with stages w/2w/4w/8w; returns the spatial feature map."""
    return ResNet18Trunk(in_channels, width)


class AudioEncoder(nn.Module):
    """Spectrogram [B, 1, F, T] -> ResNet-18 (1-channel conv1) -> global average pool -> [B, 8w]."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.trunk = resnet18_encoder(1, width)
        self.out_dim = 8 * width

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio features φ^a [B, 8w]."""
        if audio.dim() != 4 or audio.shape[1] != 1:
            raise ValueError(f"audio must be [B, 1, F, T]; got shape {tuple(audio.shape)}")
        return self.trunk(audio).mean(dim=(2, 3))


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VisualEncoder(nn.Module):
    """Frames [B, T, 3, H, W] -> ResNet-18 on the B*T images -> average over time and space -> [B, 8w].

    uint8 frames (raw pixels, as the fast data path delivers them) are normalised here with the ImageNet
    mean/std, on the model's device; float frames are taken as already normalised.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.trunk = resnet18_encoder(3, width)
        self.out_dim = 8 * width
        # not persistent: constants, kept out of checkpoints
        self.register_buffer("pixel_scale", 1.0 / (255.0 * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)),
                             persistent=False)
        self.register_buffer("pixel_shift", (torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Visual features φ^v [B, 8w]."""
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, T, 3, H, W]; got shape {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        images = frames.flatten(0, 1)
        if images.dtype == torch.uint8:  # (x / 255 - mean) / std in one fused multiply-add
            images = torch.addcmul(-self.pixel_shift, images.float(), self.pixel_scale)
        maps = self.trunk(images)  # [B*T, C, h, w]
        return maps.mean(dim=(2, 3)).reshape(b, t, -1).mean(dim=1)


class ConcatHead(nn.Linear):
    """Concat fusion ``f = W[φa; φv] + b`` (Eq. 1), an ``nn.Linear(d_a + d_v, M)`` that also splits W (Eq. 2).

    It subclasses ``nn.Linear`` so that ``head.weight`` is W and ``head.bias`` is b, as in the paper and the
    field's code (baselines read and modulate them directly).
    """

    def __init__(self, dim_a: int, dim_v: int, num_classes: int) -> None:
        super().__init__(dim_a + dim_v, num_classes)
        self.dim_a, self.dim_v = dim_a, dim_v
        init_weights(self)

    def forward(  # type: ignore[override]
        self, feat_a: torch.Tensor, feat_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fused, logit_a, logit_v): Eq. 1 and the split l^a = W^a φa + b/2, l^v = W^v φv + b/2 (Eq. 2).

        Always in float32, autocast or not: the gaps (Eq. 5-6) and posteriors (Eq. 9) are computed from these
        logits, and bf16's 8-bit mantissa would move w1 of clips near the boundary (the head costs nothing).
        """
        dev = feat_a.device.type
        with torch.autocast(device_type=dev, enabled=False) if dev in ("cpu", "cuda") else contextlib.nullcontext():
            feat_a, feat_v = feat_a.float(), feat_v.float()
            fused = nn.functional.linear(torch.cat([feat_a, feat_v], dim=1), self.weight, self.bias)
            half_b = self.bias / 2
            logit_a = nn.functional.linear(feat_a, self.weight[:, : self.dim_a], half_b)
            logit_v = nn.functional.linear(feat_v, self.weight[:, self.dim_a :], half_b)
        return fused, logit_a, logit_v


class AVClassifier(nn.Module):
    """Audio and visual ResNet-18 encoders with a concat head; forward returns ModelOutput (Eq. 1-2)."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.width = width
        self.audio_encoder = AudioEncoder(width)
        self.visual_encoder = VisualEncoder(width)
        self.feature_dim = 8 * width
        self.head = ConcatHead(self.feature_dim, self.feature_dim, num_classes)

    def encode(self, audio: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (φ^a [B, 8w], φ^v [B, 8w])."""
        return self.audio_encoder(audio), self.visual_encoder(frames)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor, keep: torch.Tensor | None = None) -> ModelOutput:
        """Fused and per-modality logits plus features (Eq. 1-2).

        ``keep`` [B, 2] (audio, visual; 1 kept, 0 dropped) zeroes a dropped modality's features before the head,
        as the sample-level methods' code does (SMV, Remix): the encoders still run (BatchNorm sees every
        clip), but a dropped modality gets no gradient from that row.
        """
        feat_a, feat_v = self.encode(audio, frames)
        if keep is not None:
            keep = keep.to(feat_a.dtype)
            feat_a, feat_v = feat_a * keep[:, :1], feat_v * keep[:, 1:2]
        fused, logit_a, logit_v = self.head(feat_a, feat_v)
        return ModelOutput(fused, logit_a, logit_v, feat_a, feat_v)


def build_model(num_classes: int, model_cfg: ModelConfig) -> AVClassifier:
    """The AVClassifier of a preset's ModelConfig (width only; input shapes are the data's business)."""
    return AVClassifier(num_classes, width=model_cfg.width)
