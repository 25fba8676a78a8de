"""Encoders, concat head and the logit split of Eq. 1-2."""

from __future__ import annotations

import math

import pytest
import torch

from mmgap.config import ModelConfig
from mmgap.models import (
    AudioEncoder,
    AVClassifier,
    ConcatHead,
    ModelOutput,
    VisualEncoder,
    build_model,
    resnet18_encoder,
)


def test_concat_head_hand_values() -> None:
    head = ConcatHead(1, 1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        head.bias.copy_(torch.tensor([1.0, -1.0]))
    fused, la, lv = head(torch.tensor([[1.0]]), torch.tensor([[2.0]]))
    # l^a = W^a φa + b/2 = [1 + 0.5, 3 - 0.5]; l^v = W^v φv + b/2 = [4 + 0.5, 8 - 0.5]; f = W[φa; φv] + b
    assert torch.allclose(la, torch.tensor([[1.5, 2.5]]))
    assert torch.allclose(lv, torch.tensor([[4.5, 7.5]]))
    assert torch.allclose(fused, torch.tensor([[6.0, 10.0]]))


def test_eq2_split_sums_to_fused_for_random_inputs() -> None:
    torch.manual_seed(0)
    head = ConcatHead(7, 5, 4)
    with torch.no_grad():
        head.bias.normal_()  # the init zeroes the bias; a non-zero one tests the b/2 split
    fa, fv = torch.randn(9, 7), torch.randn(9, 5)
    fused, la, lv = head(fa, fv)
    assert torch.allclose(la + lv, fused, atol=1e-5)
    eq1 = torch.nn.functional.linear(torch.cat([fa, fv], 1), head.weight, head.bias)
    assert torch.allclose(fused, eq1, atol=1e-6)
    assert not torch.allclose(la, lv)


@pytest.mark.parametrize("width", [4, 8])
def test_encoder_shapes_and_stage_widths(width: int) -> None:
    trunk = resnet18_encoder(1, width)
    assert trunk.conv1.in_channels == 1 and trunk.conv1.out_channels == width
    for i, mult in enumerate([1, 2, 4, 8], start=1):
        layer = getattr(trunk, f"layer{i}")
        assert len(layer) == 2  # ResNet-18: [2, 2, 2, 2] basic blocks
        assert layer[1].conv2.out_channels == mult * width
    assert not hasattr(trunk, "fc") and not hasattr(trunk, "avgpool")
    fmap = trunk(torch.randn(2, 1, 64, 64))
    assert fmap.shape == (2, 8 * width, 2, 2)  # stride 32
    assert AudioEncoder(width)(torch.randn(3, 1, 40, 32)).shape == (3, 8 * width)
    assert VisualEncoder(width)(torch.randn(3, 2, 3, 20, 20)).shape == (3, 8 * width)


def test_width_64_is_torchvision_resnet18_without_fc() -> None:
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    ref_params = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith("fc."))
    ours = resnet18_encoder(3, 64)
    assert sum(p.numel() for p in ours.parameters()) == ref_params == 11_176_512
    assert resnet18_encoder(1, 64).conv1.weight.shape == (64, 1, 7, 7)


def test_visual_encoder_averages_over_time() -> None:
    torch.manual_seed(0)
    enc = VisualEncoder(4).eval()
    frames = torch.randn(2, 3, 3, 20, 20)
    with torch.no_grad():
        out = enc(frames)
        permuted = enc(frames[:, [2, 0, 1]])
        per_frame = torch.stack([enc(frames[:, t : t + 1]) for t in range(3)]).mean(0)
    assert torch.allclose(out, permuted, atol=1e-5)
    assert torch.allclose(out, per_frame, atol=1e-5)


def test_av_classifier_output_and_gradients() -> None:
    torch.manual_seed(0)
    model = build_model(6, ModelConfig(width=4, num_frames=2, image_size=20))
    assert isinstance(model, AVClassifier) and model.feature_dim == 32
    assert isinstance(model.head, torch.nn.Linear)
    out = model(torch.randn(5, 1, 40, 32), torch.randn(5, 2, 3, 20, 20))
    assert isinstance(out, ModelOutput)
    assert out.fused.shape == out.logit_a.shape == out.logit_v.shape == (5, 6)
    assert out.feat_a.shape == out.feat_v.shape == (5, 32)
    assert torch.allclose(out.logit_a + out.logit_v, out.fused, atol=1e-5)
    out.fused.sum().backward()
    assert model.audio_encoder.trunk.conv1.weight.grad.abs().sum() > 0
    assert model.visual_encoder.trunk.conv1.weight.grad.abs().sum() > 0


def test_initialisation_is_kaiming_and_xavier() -> None:
    torch.manual_seed(0)
    model = AVClassifier(10, width=16)
    conv = model.visual_encoder.trunk.layer4[0].conv1.weight  # 128 -> 128, 3x3
    fan_out = conv.shape[0] * 9
    assert abs(conv.std().item() / math.sqrt(2.0 / fan_out) - 1) < 0.05
    w = model.head.weight  # xavier normal: std = sqrt(2 / (fan_in + fan_out))
    assert abs(w.std().item() / math.sqrt(2.0 / (w.shape[0] + w.shape[1])) - 1) < 0.1
    assert torch.all(model.head.bias == 0)


def test_channels_last_and_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = AVClassifier(3, width=4).to(memory_format=torch.channels_last)
    audio = torch.randn(2, 1, 40, 32).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(audio, torch.randn(2, 2, 3, 20, 20))
    assert out.feat_a.dtype == torch.bfloat16  # the encoders run in bf16
    assert out.fused.dtype == out.logit_a.dtype == torch.float32  # the head never rounds the logits (issue 23)
    assert torch.isfinite(out.fused).all()


def test_bad_shapes_raise_clear_errors() -> None:
    model = AVClassifier(3, width=4)
    with pytest.raises(ValueError, match=r"audio must be \[B, 1, F, T\]"):
        model(torch.randn(2, 40, 32), torch.randn(2, 2, 3, 20, 20))
    with pytest.raises(ValueError, match=r"frames must be \[B, T, 3, H, W\]"):
        model(torch.randn(2, 1, 40, 32), torch.randn(2, 3, 20, 20))
    with pytest.raises(ValueError, match="num_classes"):
        AVClassifier(1)


def test_uint8_frames_are_normalised_inside_the_model() -> None:
    """Raw uint8 pixels give the same output as frames normalised by hand with the ImageNet mean/std."""
    from mmgap.models import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(0)
    model = AVClassifier(5, width=4).eval()
    pixels = torch.randint(0, 256, (3, 2, 3, 16, 16), dtype=torch.uint8)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    by_hand = (pixels.float() / 255.0 - mean) / std
    audio = torch.randn(3, 1, 20, 16)
    torch.testing.assert_close(model(audio, pixels).fused, model(audio, by_hand).fused, atol=1e-5, rtol=1e-5)
    assert not any("pixel" in k for k in model.state_dict()), "normalisation constants must stay out of checkpoints"
