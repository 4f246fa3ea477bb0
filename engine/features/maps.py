"""`FeatureMaps`: the PCA-reduced 2D features of every image of a scene, and how to read
them at image pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F


@dataclass
class FeatureMaps:
    maps: torch.Tensor
    """[N, h, w, D] float16, one per dataset image, L2-normalised per feature pixel."""
    image_size: tuple[int, int]
    """(H, W) of the dataset images the maps cover (each map spans its whole image)."""
    pca_mean: torch.Tensor          # [C] backbone-channel mean
    pca_components: torch.Tensor    # [C, D]
    key: dict = field(default_factory=dict)
    """What the maps were computed from (backbone, weights, images, sizes, dims)."""
    path: Path | None = None
    """The cache file they were read from or written to."""

    @property
    def dims(self) -> int:
        return self.maps.shape[-1]

    @property
    def map_size(self) -> tuple[int, int]:
        return tuple(self.maps.shape[1:3])

    def to(self, device) -> "FeatureMaps":
        return FeatureMaps(self.maps.to(device), self.image_size, self.pca_mean, self.pca_components,
                           self.key, self.path)

    def sample(self, image_ids: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Features [R, D] (float32) at integer pixels, bilinear between feature pixels.

        Same convention as `F.interpolate(..., align_corners=False)`: pixel centres at +0.5,
        coordinates clamped at the border, so `sample` agrees with `image`."""
        H, W = self.image_size
        h, w = self.map_size
        x = ((cols.float() + 0.5) * (w / W) - 0.5).clamp(0, w - 1)
        y = ((rows.float() + 0.5) * (h / H) - 0.5).clamp(0, h - 1)
        x0, y0 = x.floor().long(), y.floor().long()
        x1, y1 = (x0 + 1).clamp_max(w - 1), (y0 + 1).clamp_max(h - 1)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        m = self.maps
        top = m[image_ids, y0, x0].float() * (1 - fx) + m[image_ids, y0, x1].float() * fx
        bottom = m[image_ids, y1, x0].float() * (1 - fx) + m[image_ids, y1, x1].float() * fx
        return top * (1 - fy) + bottom * fy

    def image(self, index: int) -> torch.Tensor:
        """Image `index`'s features at full image resolution: [H, W, D] float32."""
        chw = self.maps[index].permute(2, 0, 1)[None].float()
        return F.interpolate(chw, size=self.image_size, mode="bilinear",
                             align_corners=False)[0].permute(1, 2, 0)
